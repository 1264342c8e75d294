//! Project chores shared by the `cargo xtask` command, the test suite and the benchmarks:
//! building the guest modules in `modules/` for `wasm32-wasip2`.
//!
//! Owns the one place that shells out to cargo/rustup. The host binary never does: it serves
//! `.wasm` files it is given.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The guest target; the toolchain installs it on first use.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// The project root (the directory holding the workspace Cargo.toml).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Installs the wasm32-wasip2 target through rustup when the toolchain lacks it.
pub fn ensure_wasm_target() -> Result<(), String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .output()
        .map_err(|e| format!("cannot run {rustc}: {e}"))?;
    let libdir = String::from_utf8_lossy(&libdir.stdout).trim().to_owned();
    let installed = !libdir.is_empty() && std::fs::read_dir(&libdir).is_ok_and(|mut d| d.next().is_some());
    if installed {
        return Ok(());
    }
    eprintln!("xtask: installing the {WASM_TARGET} target (rustup target add {WASM_TARGET})");
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .map_err(|e| format!("the {WASM_TARGET} target is missing and rustup could not be run: {e}"))?;
    if !status.success() {
        return Err(format!("rustup target add {WASM_TARGET} failed ({status})"));
    }
    Ok(())
}

/// Builds every module in `modules/` (release, wasm32-wasip2) and returns the directory that
/// holds the `.wasm` files. Cargo makes this a no-op when nothing changed.
pub fn build_modules() -> Result<PathBuf, String> {
    build_guest_workspace("modules")
}

/// Builds the guest crates of `examples/` the same way, into their own target directory (so
/// `easyrpc serve` with no arguments serves only the bundled modules).
pub fn build_examples() -> Result<PathBuf, String> {
    build_guest_workspace("examples")
}

fn build_guest_workspace(dir: &str) -> Result<PathBuf, String> {
    ensure_wasm_target()?;
    let root = project_root();
    let target_dir = root.join(dir).join("target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--quiet", "--release", "--target", WASM_TARGET, "--manifest-path"])
        .arg(root.join(dir).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // Settings meant for the host build must not leak into the guest build.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .map_err(|e| format!("cannot run cargo to build {dir}/: {e}"))?;
    if !status.success() {
        return Err(format!("building the guest crates in {dir}/ failed ({status})"));
    }
    Ok(target_dir.join(WASM_TARGET).join("release"))
}

/// [`build_modules`] once per process; later calls return the same directory.
pub fn modules_dir() -> Result<&'static Path, String> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(build_modules).as_ref().map(PathBuf::as_path).map_err(Clone::clone)
}

/// Path of a built module, e.g. `module_path("math")`.
pub fn module_path(name: &str) -> Result<PathBuf, String> {
    Ok(modules_dir()?.join(format!("{name}.wasm")))
}

/// [`build_examples`] once per process; the path of one built example guest.
pub fn example_path(name: &str) -> Result<PathBuf, String> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = DIR.get_or_init(build_examples).as_ref().map_err(Clone::clone)?;
    Ok(dir.join(format!("{name}.wasm")))
}
