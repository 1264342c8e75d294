//! The guest's global allocator on wasm32-unknown-unknown (not on wasm32-wasip2, whose libc
//! allocator already does this).
//!
//! std's allocator on wasm32-unknown-unknown asks for whole 64 KiB pages and grows linear
//! memory on a call's first allocation, leaving the free tail of the initial memory (after the
//! stack and data) unused. The host gives every call a fresh instance, so each call that
//! allocates would pay for a memory grow: page faults, and pages the host must give back when
//! the instance ends, a large share of a fresh call's cost. This allocator is the same
//! dlmalloc, fed the initial memory's tail first, in small steps, and grows memory only past it.

use core::alloc::{GlobalAlloc, Layout};
use core::arch::wasm32;
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};

#[cfg(target_feature = "atomics")]
compile_error!("easyrpc-guest's allocator assumes a single-threaded guest (no atomics)");

/// Linear memory's page size.
const WASM_PAGE: usize = 64 * 1024;
/// What dlmalloc is told the system page is: its requests are rounded to this, so the tail of
/// the initial memory (often less than a wasm page) serves them.
const STEP: usize = 4096;

extern "C" {
    /// Set by the linker: the first byte after the stack and the data.
    static __heap_base: u8;
}

/// The next unused byte of linear memory handed to dlmalloc (0: not started).
static NEXT: AtomicUsize = AtomicUsize::new(0);

struct TailFirst;

unsafe impl dlmalloc::Allocator for TailFirst {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        let end = wasm32::memory_size(0) * WASM_PAGE;
        let mut next = NEXT.load(Ordering::Relaxed);
        if next == 0 {
            // Only the symbol's address is taken (the linker defines it), never its value.
            let base = ptr::addr_of!(__heap_base) as usize;
            next = (base + STEP - 1) & !(STEP - 1);
        }
        let Some(want_end) = next.checked_add(size) else { return (ptr::null_mut(), 0, 0) };
        if want_end > end {
            let pages = (want_end - end).div_ceil(WASM_PAGE);
            let previous = wasm32::memory_grow(0, pages);
            if previous == usize::MAX {
                return (ptr::null_mut(), 0, 0);
            }
            if previous * WASM_PAGE != end {
                // Memory grew elsewhere meanwhile (nothing in a Rust guest does, but stay
                // correct): serve this request from the fresh pages alone.
                let start = previous * WASM_PAGE;
                let have = pages * WASM_PAGE;
                if have < size && wasm32::memory_grow(0, (size - have).div_ceil(WASM_PAGE)) == usize::MAX {
                    return (ptr::null_mut(), 0, 0);
                }
                NEXT.store(start + size, Ordering::Relaxed);
                return (start as *mut u8, size, 0);
            }
        }
        NEXT.store(want_end, Ordering::Relaxed);
        (next as *mut u8, size, 0)
    }

    fn remap(&self, _ptr: *mut u8, _oldsize: usize, _newsize: usize, _can_move: bool) -> *mut u8 {
        ptr::null_mut()
    }

    fn free_part(&self, _ptr: *mut u8, _oldsize: usize, _newsize: usize) -> bool {
        false
    }

    fn free(&self, _ptr: *mut u8, _size: usize) -> bool {
        false
    }

    fn can_release_part(&self, _flags: u32) -> bool {
        false
    }

    fn allocates_zeros(&self) -> bool {
        // Linear memory beyond the data starts zeroed in every fresh instance, and grown pages
        // are zero.
        true
    }

    fn page_size(&self) -> usize {
        STEP
    }
}

struct Global(UnsafeCell<dlmalloc::Dlmalloc<TailFirst>>);

// SAFETY: a guest without atomics has one thread; the allocator is never re-entered.
unsafe impl Sync for Global {}

#[global_allocator]
static GLOBAL: Global = Global(UnsafeCell::new({
    let mut heap = dlmalloc::Dlmalloc::new_with_allocator(TailFirst);
    // dlmalloc otherwise rounds every request to the system up to 64 KiB, more than the
    // initial memory's tail usually holds.
    heap.set_granularity(STEP);
    heap
}));

unsafe impl GlobalAlloc for Global {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { (*self.0.get()).malloc(layout.size(), layout.align()) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { (*self.0.get()).calloc(layout.size(), layout.align()) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { (*self.0.get()).free(ptr, layout.size(), layout.align()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe { (*self.0.get()).realloc(ptr, layout.size(), layout.align(), new_size) }
    }
}
