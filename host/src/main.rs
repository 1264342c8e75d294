//! The `easyrpc` binary: parse flags, hand over to the library.
use clap::Parser;

/// See host/Cargo.toml: faster than glibc malloc on the per-call instance churn.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    easyrpc::cli::init_logging();
    let cli = easyrpc::cli::Cli::parse();
    match easyrpc::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
