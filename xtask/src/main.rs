//! `cargo xtask <command>`:
//! * `serve [ARGS...]`: build the guest modules and the host (release), then start
//!   `easyrpc serve --demo` on the bundled modules (extra ARGS go to `easyrpc serve`);
//! * `modules`: build the guest modules in modules/ into components (installing the wasm
//!   targets when missing) and print where the .wasm files are;
//! * `examples`: build the guest crates of examples/ and print where they are;
//! * `demo`: build the modules and show their functions with `easyrpc inspect`.
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    let result = match args.first().map(String::as_str) {
        Some("modules") => xtask::build_modules().map(|dir| println!("{}", dir.display())),
        Some("examples") => xtask::build_examples().map(|dir| println!("{}", dir.display())),
        Some("serve") => xtask::build_modules().and_then(|_| easyrpc(&["serve", "--demo"], rest)),
        Some("demo") => xtask::build_modules().and_then(|dir| {
            let modules: Vec<String> = ["math", "peer", "hostile"]
                .iter()
                .map(|m| dir.join(format!("{m}.wasm")).display().to_string())
                .collect();
            let modules: Vec<&str> = modules.iter().map(String::as_str).collect();
            easyrpc(&[&["inspect"], modules.as_slice()].concat(), rest)
        }),
        _ => Err("usage: cargo xtask serve [easyrpc serve args] | modules | examples | demo".to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the release `easyrpc` binary from the project root.
fn easyrpc(args: &[&str], extra: &[String]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .current_dir(xtask::project_root())
        .args(["run", "--quiet", "--release", "--package", "easyrpc", "--"])
        .args(args)
        .args(extra)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    status.success().then_some(()).ok_or_else(|| format!("easyrpc exited with {status}"))
}
