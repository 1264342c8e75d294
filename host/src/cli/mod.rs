//! The `easyrpc` command line: one file per subcommand, doc comments are the `--help` text.
//!
//! Owns flag parsing and printing only; every subcommand calls into the library.

mod inspect;
mod new;
mod remote;
mod serve;

use clap::{Parser, Subcommand};

/// EasyRpc: serve WebAssembly component functions to easyrpc callers.
#[derive(Parser, Debug)]
#[command(name = "easyrpc", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    Inspect(inspect::InspectArgs),
    Serve(serve::ServeArgs),
    List(remote::ListArgs),
    Call(remote::CallArgs),
    Deploy(remote::DeployArgs),
    Remove(remote::RemoveArgs),
    Modules(remote::ModulesArgs),
    New(new::NewArgs),
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect(args) => inspect::run(args),
        Command::Serve(args) => serve::run(args).await,
        Command::List(args) => remote::list(args).await,
        Command::Call(args) => remote::call(args).await,
        Command::Deploy(args) => remote::deploy(args).await,
        Command::Remove(args) => remote::remove(args).await,
        Command::Modules(args) => remote::modules(args).await,
        Command::New(args) => new::run(args),
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default: info).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
}
