//! `easyrpc list` and `easyrpc call`: the Rust client on the command line.

use crate::client::{ClientConfig, EasyRpcProxy};
use crate::value::{json, Value};
use crate::wire::Serialization;
use anyhow::{bail, Context};

/// Where and how to connect.
#[derive(clap::Args, Debug)]
pub struct ConnectArgs {
    /// Websocket URL of the host (or the EASYRPC_URL environment variable).
    #[arg(long, env = "EASYRPC_URL", default_value = "ws://127.0.0.1:8220/ws/easy")]
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
    /// For a wss:// URL: certificates (PEM) to trust besides Mozilla's roots, e.g. a private CA.
    #[arg(long)]
    pub ca_file: Option<std::path::PathBuf>,
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
        config.ca_file = self.ca_file.clone();
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
    if functions.is_empty() {
        bail!("namespace {} has no functions (is the name right?)", args.connect.namespace);
    }
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
/// JSON is taken as a string); the result is printed as indented JSON, a generator's items one
/// compact JSON value per line as they come.
#[derive(clap::Args, Debug)]
pub struct CallArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Function name.
    pub function: String,
    /// Positional arguments, each a JSON value (negative numbers need no `--`).
    #[arg(allow_negative_numbers = true)]
    pub args: Vec<String>,
    /// Keyword argument `name=<json>`; repeat for several.
    #[arg(long = "kw")]
    pub kwargs: Vec<String>,
}

/// `value` as JSON indented by two spaces per level (lists and objects over several lines);
/// scalars as the compact JSON the host speaks (big integers exact, `NaN` as Python writes it).
fn pretty(value: &Value) -> String {
    fn write(out: &mut String, value: &Value, depth: usize) {
        let indent = |out: &mut String, depth: usize| out.extend(std::iter::repeat_n("  ", depth));
        match value {
            Value::List(items) if !items.is_empty() => {
                out.push_str("[\n");
                for (i, item) in items.iter().enumerate() {
                    indent(out, depth + 1);
                    write(out, item, depth + 1);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                indent(out, depth);
                out.push(']');
            }
            Value::Dict(entries) if !entries.is_empty() => {
                out.push_str("{\n");
                for (i, (key, item)) in entries.iter().enumerate() {
                    indent(out, depth + 1);
                    json::write_str(out, key);
                    out.push_str(": ");
                    write(out, item, depth + 1);
                    out.push_str(if i + 1 < entries.len() { ",\n" } else { "\n" });
                }
                indent(out, depth);
                out.push('}');
            }
            scalar => out.push_str(&scalar.to_json()),
        }
    }
    let mut out = String::new();
    write(&mut out, value, 0);
    out
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
            println!("{}", pretty(&result));
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

/// List the modules each namespace of a running host holds: name, hash, size, when it came
/// and where from (a file, or deployed over the wire). Needs the admin secret.
#[derive(clap::Args, Debug)]
pub struct ModulesArgs {
    /// Websocket URL of the host (or the EASYRPC_URL environment variable).
    #[arg(long, env = "EASYRPC_URL", default_value = "ws://127.0.0.1:8220/ws/easy")]
    pub url: String,
    /// The host's admin secret (or the EASYRPC_SECRET environment variable).
    #[arg(long)]
    pub secret: Option<String>,
    /// Only this namespace's modules.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// For a wss:// URL: certificates (PEM) to trust besides Mozilla's roots.
    #[arg(long)]
    pub ca_file: Option<std::path::PathBuf>,
}

pub async fn modules(args: ModulesArgs) -> anyhow::Result<()> {
    let connect = ConnectArgs {
        url: args.url,
        secret: args.secret,
        namespace: args.namespace.clone().unwrap_or_else(|| crate::registry::DEFAULT_NAMESPACE.to_owned()),
        pickle: false,
        ca_file: args.ca_file,
    };
    let listing = connect.run(async |proxy| Ok(proxy.modules(args.namespace.as_deref()).await?)).await?;
    let Value::List(modules) = listing else { bail!("the host answered {}", listing.to_json()) };
    if modules.is_empty() {
        match &args.namespace {
            Some(ns) => bail!("namespace {ns} holds no module"),
            None => bail!("the host holds no module"),
        }
    }
    let text = |m: &Value, key: &str| m.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    println!("{:<16} {:<20} {:<12} {:>10}  {:<20} SOURCE", "NAMESPACE", "MODULE", "HASH", "BYTES", "SINCE (UTC)");
    for m in &modules {
        let hash = text(m, "hash");
        let size = match m.get("size") {
            Some(Value::Int(n)) => n.to_string(),
            _ => String::new(),
        };
        let since = match m.get("since") {
            Some(Value::Int(secs)) => utc(i64::try_from(*secs).unwrap_or(0)),
            _ => "-".to_owned(),
        };
        println!(
            "{:<16} {:<20} {:<12} {:>10}  {:<20} {}",
            text(m, "namespace"),
            text(m, "name"),
            &hash[..hash.len().min(12)],
            size,
            since,
            text(m, "source")
        );
    }
    Ok(())
}

/// `secs` since the Unix epoch as `YYYY-MM-DD HH:MM:SS` (UTC), by the civil-from-days rule.
fn utc(secs: i64) -> String {
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_print_as_indented_json() {
        use crate::value::Value;
        let value = crate::value::json::parse(r#"{"a": [1, {"b": null}], "c": {}, "d": [], "e": "x\"y"}"#).unwrap();
        let expected = "{\n  \"a\": [\n    1,\n    {\n      \"b\": null\n    }\n  ],\n  \"c\": {},\n  \"d\": [],\n  \"e\": \"x\\\"y\"\n}";
        assert_eq!(super::pretty(&value), expected);
        assert_eq!(super::pretty(&Value::Int(6)), "6");
    }

    #[test]
    fn utc_times_read_as_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(super::utc(1_796_601_600), "2026-12-07 00:00:00");
    }
}
