//! The `easyrpc` binary: parse flags, hand over to the library.
use clap::Parser;

/// See host/Cargo.toml: faster than glibc malloc on the per-call instance churn.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = easyrpc::cli::Cli::parse();
    let result = easyrpc::cli::init_logging(&cli).and_then(|span_export| {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let ran = runtime.block_on(easyrpc::cli::run(cli));
        // The runtime stops first: the span export sends what is left from outside it.
        drop(runtime);
        drop(span_export);
        ran
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
