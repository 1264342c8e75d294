//! `cargo xtask <command>`:
//! * `modules`: build the guest modules in modules/ for wasm32-wasip2 (installing the target
//!   when missing) and print where the .wasm files are;
//! * `demo`: build the modules and the host, then show the bundled functions with
//!   `easyrpc inspect`.
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("modules") => xtask::build_modules().map(|dir| println!("{}", dir.display())),
        Some("demo") => demo(&args[1..]),
        _ => Err("usage: cargo xtask modules | demo".to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo(extra: &[String]) -> Result<(), String> {
    let dir = xtask::build_modules()?;
    let modules: Vec<_> = ["math", "peer", "hostile"].iter().map(|m| dir.join(format!("{m}.wasm"))).collect();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .current_dir(xtask::project_root())
        .args(["run", "--quiet", "--release", "--package", "easyrpc", "--", "inspect"])
        .args(&modules)
        .args(extra)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    status.success().then_some(()).ok_or_else(|| format!("easyrpc exited with {status}"))
}
