//! `easyrpc list` and `easyrpc call`: the Rust client on the command line.

use crate::client::{ClientConfig, EasyRpcProxy};
use crate::value::{json, Value};
use crate::wire::Serialization;
use anyhow::{bail, Context};

/// Where and how to connect.
#[derive(clap::Args, Debug)]
pub struct ConnectArgs {
    /// Websocket URL of the host.
    #[arg(long, default_value = "ws://127.0.0.1:8220/ws/easy")]
    pub url: String,
    /// Shared secret (or the EASYRPC_SECRET environment variable).
    #[arg(long)]
    pub secret: Option<String>,
    /// Namespace (or namespace group) to use.
    #[arg(long, short = 'n', default_value = crate::registry::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Use pickle frames instead of json.
    #[arg(long)]
    pub pickle: bool,
}

impl ConnectArgs {
    async fn connect(&self) -> anyhow::Result<EasyRpcProxy> {
        let secret = match self.secret.clone().or_else(|| std::env::var(super::serve::SECRET_ENV).ok()) {
            Some(s) => s,
            None => bail!("no secret: pass --secret or set {}", super::serve::SECRET_ENV),
        };
        let mut config = ClientConfig::new(&self.url, &secret, &self.namespace);
        if self.pickle {
            config.serialization = Serialization::Pickle;
        }
        Ok(EasyRpcProxy::connect_with(config).await?)
    }

    /// Connects, runs `work`, then closes the connection with a close frame whatever `work`
    /// returned: the process ends right after, too soon for the proxy's drop to close it.
    async fn run<T>(&self, work: impl AsyncFnOnce(&EasyRpcProxy) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let proxy = self.connect().await?;
        let outcome = work(&proxy).await;
        proxy.close().await;
        outcome
    }
}

/// List the functions of a namespace as signatures.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print the descriptors as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn list(args: ListArgs) -> anyhow::Result<()> {
    let functions = args.connect.run(async |proxy| Ok(proxy.functions())).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&*functions)?);
        return Ok(());
    }
    for d in functions.iter() {
        println!("{d}");
        for line in d.doc.iter().flat_map(|doc| doc.lines()) {
            println!("    {line}");
        }
    }
    Ok(())
}

/// Call a function: `easyrpc call add 1 --kw b=5`. Arguments are JSON (a bare word that is not
/// JSON is taken as a string); the result is printed as JSON, a generator's items one per line
/// as they come.
#[derive(clap::Args, Debug)]
pub struct CallArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Function name.
    pub function: String,
    /// Positional arguments, each a JSON value.
    pub args: Vec<String>,
    /// Keyword argument `name=<json>`; repeat for several.
    #[arg(long = "kw")]
    pub kwargs: Vec<String>,
}

fn parse_arg(text: &str) -> Value {
    json::parse(text).unwrap_or_else(|_| Value::Str(text.to_owned()))
}

pub async fn call(args: CallArgs) -> anyhow::Result<()> {
    let positional: Vec<Value> = args.args.iter().map(|a| parse_arg(a)).collect();
    let mut keywords = Vec::new();
    for kw in &args.kwargs {
        let (name, value) = kw.split_once('=').with_context(|| format!("--kw {kw:?}: write name=value"))?;
        keywords.push((name.to_owned(), parse_arg(value)));
    }
    args.connect
        .run(async |proxy| {
            let is_generator =
                proxy.function(&args.function).is_some_and(|d| d.kind == crate::signature::FunctionKind::Generator);
            if is_generator {
                // Items are printed as they arrive, one JSON value per line.
                let mut items = proxy.stream(&args.function, positional, keywords).await?;
                while let Some(item) = futures_util::StreamExt::next(&mut items).await {
                    println!("{}", item?.to_json());
                }
                return Ok(());
            }
            let result = proxy.call(&args.function, positional, keywords).await?;
            println!("{}", result.to_json());
            Ok(())
        })
        .await
}

/// Deploy a module into a namespace of a running host (needs the admin secret): it replaces a
/// module of the same name there without a restart. Calls already running finish on the old
/// version.
#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The component file.
    pub file: std::path::PathBuf,
    /// Module name (default: the file stem).
    #[arg(long)]
    pub name: Option<String>,
}

pub async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let name = match &args.name {
        Some(n) => n.clone(),
        None => args.file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
    };
    let summary =
        args.connect.run(async |proxy| Ok(proxy.deploy(&args.connect.namespace, &name, &bytes).await?)).await?;
    println!("{}", summary.to_json());
    Ok(())
}

/// Remove a module from a namespace of a running host (needs the admin secret).
#[derive(clap::Args, Debug)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Module name.
    pub module: String,
}

pub async fn remove(args: RemoveArgs) -> anyhow::Result<()> {
    args.connect.run(async |proxy| Ok(proxy.remove(&args.connect.namespace, &args.module).await?)).await?;
    println!("removed {} from {}", args.module, args.connect.namespace);
    Ok(())
}
