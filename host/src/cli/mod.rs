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
    Serve(Box<serve::ServeArgs>),
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

/// Logs to stderr, filtered by `RUST_LOG` (default: info), and for `serve` with an OTLP
/// endpoint exports call spans there; keep the export until the process ends. Called before
/// the async runtime starts (the exporter's client runs its own).
pub fn init_logging(cli: &Cli) -> anyhow::Result<Option<crate::telemetry::SpanExport>> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let log = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi).with_filter(filter);
    let endpoint = match &cli.command {
        Command::Serve(args) => serve::otlp_endpoint(args),
        _ => None,
    };
    let (spans, export) = match &endpoint {
        Some(endpoint) => {
            let (layer, export) = crate::telemetry::export_to(endpoint)?;
            (Some(layer), Some(export))
        }
        None => (None, None),
    };
    let _ = tracing_subscriber::registry().with(log).with(spans).try_init();
    if let Some(endpoint) = endpoint {
        tracing::info!(to = %crate::telemetry::traces_url(&endpoint), "exporting call spans over OTLP");
    }
    Ok(export)
}
