//! The host-wide budget of guest linear memory.
//!
//! Owns one count of the bytes that every live instance's linear memories have been granted
//! (calls, instances made ahead, kept and retired ones, and generators alike), against a
//! limit, and within it the share that open generators may hold. Each store's memory limiter
//! charges its growth here and gives it back when the store is dropped; a growth the budget
//! cannot take is refused, and the call reports `Busy` rather than out-of-memory, since the
//! guest asked for no more than its own limit. It does not know about calls or namespaces.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Guest linear memory across the host by default: 64 calls or generators at the default
/// per-call limit of 64 MiB at once, or a few thousand instances of a typical guest (a Rust
/// guest starts near 1 MiB), on a server of 8 GiB or more.
pub const DEFAULT_GUEST_MEMORY: usize = 4 << 30;
/// Open generators may hold at most one part in this of the budget: they hold memory for as
/// long as their caller keeps them, and calls must still find room.
pub const GENERATOR_SHARE_OF_BUDGET: usize = 2;

/// Bytes of guest memory granted host-wide, against a limit.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
    /// The part of `used` that open generators hold.
    held_by_generators: AtomicUsize,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Self {
        Self { limit, used: AtomicUsize::new(0), held_by_generators: AtomicUsize::new(0) }
    }

    /// The budget's limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes granted now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// Bytes open generators hold now.
    pub fn held_by_generators(&self) -> usize {
        self.held_by_generators.load(Ordering::Acquire)
    }

    /// Takes `bytes` more for a store (a generator's when `generator`); false, with nothing
    /// taken, if the budget (or the generators' share) cannot give them.
    pub fn charge(&self, bytes: usize, generator: bool) -> bool {
        if !take(&self.used, bytes, self.limit) {
            return false;
        }
        if generator && !take(&self.held_by_generators, bytes, self.limit / GENERATOR_SHARE_OF_BUDGET) {
            self.used.fetch_sub(bytes, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Counts `bytes` a store already holds as a generator's; false if the generators' share
    /// cannot take them.
    pub fn hold_for_generator(&self, bytes: usize) -> bool {
        take(&self.held_by_generators, bytes, self.limit / GENERATOR_SHARE_OF_BUDGET)
    }

    /// Gives back `bytes` a store held.
    pub fn release(&self, bytes: usize, generator: bool) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
        if generator {
            self.held_by_generators.fetch_sub(bytes, Ordering::AcqRel);
        }
    }
}

/// Adds `bytes` to `counter` unless that passes `limit`.
fn take(counter: &AtomicUsize, bytes: usize, limit: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| now.checked_add(bytes).filter(|&after| after <= limit))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_stay_within_the_limit_and_the_generators_share() {
        let budget = MemoryBudget::new(100);
        assert!(budget.charge(60, false));
        assert!(!budget.charge(41, false), "over the limit");
        assert_eq!(budget.used(), 60);
        assert!(budget.charge(40, false));
        budget.release(100, false);
        assert!(budget.charge(50, true));
        assert!(!budget.charge(1, true), "generators hold half at most");
        assert!(budget.charge(50, false), "calls still find the other half");
        assert_eq!(budget.held_by_generators(), 50);
        budget.release(50, true);
        budget.release(50, false);
        assert!(budget.charge(10, false));
        assert!(budget.hold_for_generator(10));
        assert!(!budget.hold_for_generator(41));
        budget.release(10, true);
        assert_eq!((budget.used(), budget.held_by_generators()), (0, 0));
    }
}
