//! Hostile behaviours for the sandbox tests: infinite loop, memory bomb, unbounded recursion,
//! panic, huge output, and attempts to reach files, environment and network.
easyrpc_guest::wit_bindgen::generate!({
    world: "easyrpc-modules:hostile/hostile",
    path: "wit",
    runtime_path: "easyrpc_guest::wit_bindgen::rt",
});
easyrpc_guest::embed_wit!(include_str!("../wit/world.wit"));

use std::io::Write;

struct Hostile;

/// State that would leak from one call to the next if an instance were reused.
static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Recursion whose frames live on the wasm stack (no address-taken locals), so it runs into
/// the engine's stack limit rather than the guest's linear-memory stack.
#[inline(never)]
fn deeper(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    // Two operations after the call keep LLVM from turning the recursion into a loop, and no
    // local has its address taken (black_box would put one on the linear-memory stack).
    deeper(depth + 1).wrapping_mul(3).wrapping_add(depth)
}

/// Recursion with a large address-taken frame: overflows the linear-memory stack first.
#[inline(never)]
fn deeper_in_memory(depth: u64, pad: &mut [u64; 64]) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    pad[(depth % 64) as usize] = depth;
    let mut next = *pad;
    std::hint::black_box(&mut next);
    deeper_in_memory(depth + 1, &mut next).wrapping_add(next[0])
}

impl Guest for Hostile {
    fn ok() -> String {
        "ok".to_owned()
    }

    fn bump() -> u32 {
        CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }

    fn hoard(mib: u32) -> u32 {
        std::hint::black_box(vec![1u8; (mib as usize) << 20]).leak();
        Self::bump()
    }

    fn spin() -> u64 {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }

    fn memory_bomb() -> u64 {
        let mut held: Vec<Vec<u8>> = Vec::new();
        let mut total = 0u64;
        loop {
            let chunk = vec![1u8; 1 << 20];
            total += chunk.len() as u64;
            held.push(std::hint::black_box(chunk));
            if total > (1 << 40) {
                return total;
            }
        }
    }

    fn recurse(depth: u64) -> u64 {
        deeper(depth)
    }

    fn recurse_in_memory(depth: u64) -> u64 {
        let mut pad = [0u64; 64];
        deeper_in_memory(depth, &mut pad)
    }

    fn panic(msg: String) {
        panic!("{msg}");
    }

    fn pad(kib: u32) -> String {
        "x".repeat(kib as usize * 1024)
    }

    fn shout(mib: u32) -> u64 {
        let line = [b'x'; 1023];
        let mut written = 0u64;
        let mut out = std::io::stdout();
        let mut err = std::io::stderr();
        for _ in 0..(mib as u64 * 1024) {
            let _ = out.write_all(&line).and_then(|_| out.write_all(b"\n"));
            let _ = err.write_all(&line).and_then(|_| err.write_all(b"\n"));
            written += 2048;
        }
        written
    }

    fn read_file(path: String) -> Result<String, String> {
        std::fs::read_to_string(&path).map_err(|e| e.to_string())
    }

    fn read_env(name: String) -> (Option<String>, Vec<String>, Vec<String>) {
        let all = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
        (std::env::var(&name).ok(), all, std::env::args().collect())
    }

    fn list_root() -> Result<Vec<String>, String> {
        std::fs::read_dir("/")
            .map_err(|e| e.to_string())
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path().display().to_string()).collect())
    }

    fn connect(port: u16) -> Result<String, String> {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .map(|_| "connected".to_owned())
            .map_err(|e| e.to_string())
    }
}

use exports::easyrpc_modules::hostile::streams::{GuestTicks, Ticks};

/// Ticks up to `count`, then does `after` inside `next`; `ballast` is memory held while open.
pub struct TickState {
    next: std::cell::Cell<u32>,
    count: u32,
    after: After,
    _ballast: Vec<u8>,
}

#[derive(Clone, Copy)]
enum After {
    Panic,
    Spin,
    Nothing,
}

impl exports::easyrpc_modules::hostile::streams::Guest for Hostile {
    type Ticks = TickState;

    fn ticks_then_panic(n: u32) -> Ticks {
        Ticks::new(TickState { next: 0.into(), count: n, after: After::Panic, _ballast: Vec::new() })
    }

    fn ticks_then_spin(n: u32) -> Ticks {
        Ticks::new(TickState { next: 0.into(), count: n, after: After::Spin, _ballast: Vec::new() })
    }

    fn endless(mib: u32) -> Ticks {
        let ballast = vec![7u8; mib as usize * (1 << 20)];
        Ticks::new(TickState { next: 0.into(), count: u32::MAX, after: After::Nothing, _ballast: ballast })
    }
}

impl GuestTicks for TickState {
    fn next(&self) -> Option<u32> {
        let i = self.next.get();
        if i < self.count {
            self.next.set(i + 1);
            return Some(i);
        }
        match self.after {
            After::Panic => panic!("ticks gave out after {i}"),
            After::Spin => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            After::Nothing => None,
        }
    }
}

export!(Hostile);
