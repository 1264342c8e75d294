//! The `easyrpc` binary end to end: `serve` on a --modules directory, `list` and `call` against
//! it (exit codes and error text), the secret requirement, and shutdown on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const EASYRPC: &str = env!("CARGO_BIN_EXE_easyrpc");

/// A modules directory of the test `tag`: peer in namespace `peer`, math at the top (namespace
/// DEFAULT).
fn modules_dir(tag: &str) -> PathBuf {
    let built = xtask::modules_dir().expect("modules build");
    let dir = std::env::temp_dir().join(format!("easyrpc-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("peer")).unwrap();
    std::fs::copy(built.join("peer.wasm"), dir.join("peer").join("peer.wasm")).unwrap();
    std::fs::copy(built.join("math.wasm"), dir.join("math.wasm")).unwrap();
    dir
}

/// Starts `easyrpc serve` on a free port and returns it with its URL.
fn serve(dir: &Path) -> (Child, String) {
    serve_with(dir, &[])
}

/// [`serve`] with more flags. The host keeps its state in `DIR.data` unless `extra` names a
/// `--data-dir`: never in the user's own data directory.
fn serve_with(dir: &Path, extra: &[&str]) -> (Child, String) {
    let own_data = dir.with_extension("data");
    let data: &[&str] = if extra.contains(&"--data-dir") { &[] } else { &["--data-dir", own_data.to_str().unwrap()] };
    let mut child = Command::new(EASYRPC)
        .args(["serve", "--secret", "cli-secret", "--port", "0", "--modules"])
        .arg(dir)
        .args(data)
        .args(extra)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("easyrpc serve starts");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let address = loop {
        assert!(Instant::now() < deadline, "server did not report its address");
        let line = lines.next().expect("server still running").unwrap();
        if let Some(rest) = line.split("address=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, format!("ws://{address}/ws/easy"))
}

fn easyrpc(args: &[&str]) -> Output {
    Command::new(EASYRPC).args(args).env_remove("EASYRPC_SECRET").output().expect("easyrpc runs")
}

fn easyrpc_owned(command: &str, args: Vec<String>) -> Output {
    Command::new(EASYRPC).arg(command).args(args).env_remove("EASYRPC_SECRET").output().expect("easyrpc runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn serve_list_call_and_stop() {
    let dir = modules_dir("serve");
    let (mut server, url) = serve(&dir);
    let url_arg = url.clone();
    let remote = move |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["--url".to_owned(), url_arg.clone(), "--secret".to_owned(), "cli-secret".to_owned()];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };

    let out = easyrpc_owned("list", remote(&["-n", "peer"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    assert!(listing.contains("add(a: s64, b: s64 = 2) -> s64\n    Return a + b."), "{listing}");

    let out = easyrpc_owned("call", remote(&["-n", "peer", "add", "1", "--kw", "b=5"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "6\n");

    let out = easyrpc_owned("call", remote(&["-n", "peer", "concat", "a", "b", "--kw", "sep=\"+\""]));
    assert_eq!(text(&out.stdout), "\"a+b\"\n");

    // A generator's items, one per line.
    let out = easyrpc_owned("call", remote(&["-n", "peer", "count", "3"]));
    assert_eq!(text(&out.stdout), "0\n1\n2\n", "{}", text(&out.stderr));

    // Top-level modules serve namespace DEFAULT, the default of --namespace.
    let out = easyrpc_owned("call", remote(&["add", "2", "3"]));
    assert_eq!(text(&out.stdout), "5\n", "{}", text(&out.stderr));

    // Errors: non-zero exit and the error text.
    let out = easyrpc_owned("call", remote(&["-n", "peer", "fail", "kaput"]));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("Error('kaput')"), "{}", text(&out.stderr));
    let out = easyrpc_owned("call", remote(&["-n", "peer", "add", "\"x\""]));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("a: expected s64, got \"x\""), "{}", text(&out.stderr));
    let out = easyrpc(&["call", "--url", &url, "--secret", "wrong", "-n", "peer", "add", "1"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("server_secret may not match"), "{}", text(&out.stderr));
    // Negative numbers need no `--`; results print as indented JSON.
    let out = easyrpc_owned("call", remote(&["-n", "peer", "add", "-1", "-2"]));
    assert_eq!(text(&out.stdout), "-3\n", "{}", text(&out.stderr));
    let out = easyrpc_owned("call", remote(&["-n", "peer", "echo", r#"{"a": [1, 2]}"#]));
    assert_eq!(text(&out.stdout), "{\n  \"a\": [\n    1,\n    2\n  ]\n}\n", "{}", text(&out.stderr));
    // A namespace that lists nothing is an error, not an empty success.
    let out = easyrpc_owned("list", remote(&["-n", "nowhere"]));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("namespace nowhere has no functions"), "{}", text(&out.stderr));

    // Deploy and remove while serving (the server's secret is the admin secret).
    let v1 = xtask::module_path("swap_v1").unwrap();
    let out = easyrpc_owned("deploy", remote(&["-n", "live", "--name", "swap", v1.to_str().unwrap()]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(r#""functions":["version","scale"]"#), "{}", text(&out.stdout));
    let out = easyrpc_owned("call", remote(&["-n", "live", "version"]));
    assert_eq!(text(&out.stdout), "\"v1\"\n", "{}", text(&out.stderr));
    let out = easyrpc_owned("remove", remote(&["-n", "live", "swap"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = easyrpc_owned("call", remote(&["-n", "live", "version"]));
    assert!(!out.status.success());
    // A module file dropped into the watched directory is served without a restart.
    std::fs::copy(xtask::module_path("swap_v2").unwrap(), dir.join("peer").join("swap.wasm")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = easyrpc_owned("call", remote(&["-n", "peer", "version"]));
        if text(&out.stdout) == "\"v2\"\n" {
            break;
        }
        assert!(Instant::now() < deadline, "the new file was not picked up: {}", text(&out.stderr));
        std::thread::sleep(Duration::from_millis(100));
    }

    // SIGTERM: the server stops by itself, cleanly.
    let status = Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(s) = server.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "server ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "server exit status {exit}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(dir.with_extension("data"));
}

#[test]
fn serve_refuses_to_run_without_a_secret() {
    let out = Command::new(EASYRPC).args(["serve", "--port", "0"]).env_remove("EASYRPC_SECRET").output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no secret"), "{}", text(&out.stderr));
}

#[test]
fn inspect_prints_signatures_and_json() {
    let math = xtask::module_path("math").unwrap();
    let out = easyrpc(&["inspect", math.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("shapes.area(s: shape) -> f64\n    The area of a shape."));
    // math needs nothing from the host; peer sleeps through EasyRpc's host interface.
    assert!(text(&out.stdout).contains("imports: none\n"), "{}", text(&out.stdout));
    let peer = xtask::module_path("peer").unwrap();
    let out = easyrpc(&["inspect", peer.to_str().unwrap()]);
    assert!(text(&out.stdout).contains("easyrpc:guest/host@0.1.0"), "{}", text(&out.stdout));
    assert!(!text(&out.stdout).contains("wasi:"), "{}", text(&out.stdout));
    let out = easyrpc(&["inspect", "--json", math.to_str().unwrap()]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["math"][0]["name"], "add");
    let out = easyrpc(&["inspect", "/nonexistent.wasm"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("cannot read module"));
}

/// `--link`: a child host (math in namespace `peer`) linked to a parent (peer in `peer`); a
/// client of the child calls the parent's function. Two parents for one namespace are refused.
#[test]
fn serve_links_a_namespace_to_a_parent_host() {
    let dir = modules_dir("link");
    let (mut parent, parent_url) = serve(&dir);
    let child_dir = std::env::temp_dir().join(format!("easyrpc-cli-child-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&child_dir);
    std::fs::create_dir_all(child_dir.join("peer")).unwrap();
    std::fs::copy(dir.join("math.wasm"), child_dir.join("peer").join("math.wasm")).unwrap();
    let link = format!("{parent_url}#peer");
    let (mut child, child_url) = serve_with(&child_dir, &["--link", &link]);

    let call = |function: &str, arg: &str| {
        easyrpc(&["call", "--url", &child_url, "--secret", "cli-secret", "-n", "peer", function, arg])
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let out = call("echo", "\"linked\"");
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "\"linked\"\n");
    let out = call("sum", "[1, 2, 3]");
    assert_eq!(text(&out.stdout), "6\n", "the child's own function: {}", text(&out.stderr));

    let two = format!("{parent_url}#peer");
    let out = Command::new(EASYRPC)
        .args(["serve", "--secret", "cli-secret", "--port", "0", "--modules"])
        .arg(&child_dir)
        .args(["--link", &link, "--link", &two])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("namespace peer has 2 parent links"), "{}", text(&out.stderr));

    for server in [&mut child, &mut parent] {
        let _ = server.kill();
        let _ = server.wait();
    }
    let _ = std::fs::remove_dir_all(&child_dir);
}

/// The log lines a host wrote, collected as they come.
type Log = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Two hosts, linked: the parent serves `modules_dir(tag)` (peer in namespace `peer`); the
/// child serves math in its own `peer`, linked to the parent's. Both stop when it is dropped.
struct LinkedPair {
    parent: Child,
    child: Child,
    child_url: String,
    parent_log: Log,
    child_log: Log,
    child_dir: PathBuf,
}

impl LinkedPair {
    /// Starts both with the flags `extra` and the environment `env`.
    fn start(tag: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = modules_dir(tag);
        let data = dir.with_extension("data");
        let mut args = vec!["--modules", ".", "--data-dir", data.to_str().unwrap()];
        args.extend_from_slice(extra);
        let (parent, parent_url, parent_log) = spawn_serve_with_env(&args, &dir, env);
        let child_dir = std::env::temp_dir().join(format!("easyrpc-cli-{tag}-child-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&child_dir);
        std::fs::create_dir_all(child_dir.join("peer")).unwrap();
        std::fs::copy(dir.join("math.wasm"), child_dir.join("peer").join("math.wasm")).unwrap();
        let link = format!("{parent_url}#peer");
        let child_data = child_dir.with_extension("data");
        let mut args = vec!["--modules", ".", "--data-dir", child_data.to_str().unwrap(), "--link", &link];
        args.extend_from_slice(extra);
        let (child, child_url, child_log) = spawn_serve_with_env(&args, &child_dir, env);
        Self { parent, child, child_url, parent_log, child_log, child_dir }
    }
}

impl Drop for LinkedPair {
    fn drop(&mut self) {
        for server in [&mut self.child, &mut self.parent] {
            let _ = server.kill();
            let _ = server.wait();
        }
        let _ = std::fs::remove_dir_all(&self.child_dir);
    }
}

/// A call relayed over a link is one trace: the child's span and the parent's name the request
/// id the caller sent to the child, though each hop sends its own request id.
#[test]
fn the_hops_of_a_relayed_call_share_the_first_caller_s_request_id_as_trace() {
    let pair = LinkedPair::start("trace", &[], &[("RUST_LOG", "easyrpc=debug")]);
    let (child_url, parent_log, child_log) = (&pair.child_url, &pair.parent_log, &pair.child_log);

    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        let answer = call_at(child_url, "peer", &["echo", "\"traced\""]);
        if answer.is_ok() || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(answer.as_deref(), Ok("\"traced\""));

    // `call{namespace=peer function=echo request=R trace=T outcome=ok}`: on the child R = T,
    // the id our client sent; on the parent R is the child's own id and T the same.
    let field = |line: &str, name: &str| {
        line.split(&format!(" {name}=")).nth(1).and_then(|rest| rest.split(['}', ' ']).next()).map(str::to_owned)
    };
    let spans = |log: &std::sync::Mutex<Vec<String>>| -> Vec<(String, String)> {
        let lines = log.lock().unwrap();
        lines
            .iter()
            .filter(|line| line.contains("call{namespace=peer function=echo"))
            .filter_map(|line| Some((field(line, "request")?, field(line, "trace")?)))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let (on_child, on_parent) = loop {
        let (on_child, on_parent) = (spans(child_log), spans(parent_log));
        if (!on_child.is_empty() && !on_parent.is_empty()) || Instant::now() > deadline {
            break (on_child, on_parent);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (child_request, trace) = on_child.last().cloned().expect("the child logged the call's span");
    assert_eq!(child_request, trace, "the first host's trace is its caller's request id");
    assert!(
        on_parent.iter().any(|(request, t)| t == &trace && request != &child_request),
        "the parent's span names the same trace under the child's own request id: {on_parent:?}, trace {trace}"
    );
}

/// A collector stand-in: takes OTLP/HTTP posts on a free port and keeps their JSON bodies.
fn otlp_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let kept = kept.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut length = 0;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            if name.eq_ignore_ascii_case("content-length") {
                                length = value.trim().parse().unwrap();
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    kept.lock().unwrap().push(serde_json::from_slice(&body).expect("OTLP JSON"));
                    let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                    if stream.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, bodies)
}

/// The exported spans named `call` in `bodies`, each with its attributes as text.
fn exported_calls(bodies: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let mut spans = Vec::new();
    for body in bodies {
        for resource in body["resourceSpans"].as_array().into_iter().flatten() {
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    if span["name"] == "call" {
                        spans.push(span.clone());
                    }
                }
            }
        }
    }
    spans
}

fn attribute(span: &serde_json::Value, key: &str) -> Option<String> {
    let found = span["attributes"].as_array()?.iter().find(|a| a["key"] == key)?;
    found["value"]["stringValue"].as_str().map(str::to_owned)
}

/// `--otlp-endpoint`: both hosts of a relayed call export its spans to the collector, as one
/// trace (the parent's span a child of the child host's), with namespace, function, trace and
/// outcome; a failed call's span has an error status.
#[test]
fn serve_exports_call_spans_over_otlp_as_one_trace_across_a_link() {
    let (collector, bodies) = otlp_receiver();
    // No HOSTNAME: the two hosts of one machine tell themselves apart by the ids they draw.
    let env = [("RUST_LOG", "info"), ("OTEL_BSP_SCHEDULE_DELAY", "100"), ("HOSTNAME", "")];
    let refused = easyrpc(&["serve", "--secret", "s", "--port", "0", "--otlp-endpoint", "https://collector:4318"]);
    assert!(!refused.status.success() && text(&refused.stderr).contains("plain http://"), "{}", text(&refused.stderr));
    let pair = LinkedPair::start("otlp", &["--otlp-endpoint", &collector], &env);
    let child_url = &pair.child_url;
    assert!(pair.child_log.lock().unwrap().iter().any(|l| l.contains("exporting call spans over OTLP")));

    let deadline = Instant::now() + Duration::from_secs(20);
    while call_at(child_url, "peer", &["echo", "\"exported\""]).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(call_at(child_url, "peer", &["div", "1", "0"]).is_err(), "a call that fails");

    let deadline = Instant::now() + Duration::from_secs(20);
    let spans = loop {
        let spans = exported_calls(&bodies.lock().unwrap());
        let echoes = spans.iter().filter(|s| attribute(s, "function").as_deref() == Some("echo")).count();
        let failed = spans.iter().any(|s| attribute(s, "function").as_deref() == Some("div"));
        if (echoes >= 2 && failed) || Instant::now() > deadline {
            break spans;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let echoes: Vec<_> = spans.iter().filter(|s| attribute(s, "function").as_deref() == Some("echo")).collect();
    let outer = echoes.iter().find(|s| s["parentSpanId"].as_str().unwrap_or("").is_empty()).expect("the child's span");
    let inner = echoes.iter().find(|s| s["parentSpanId"] == outer["spanId"]).expect("the parent's span, below it");
    assert_eq!(inner["traceId"], outer["traceId"], "one trace: {echoes:?}");
    let instances: std::collections::HashSet<String> = bodies
        .lock()
        .unwrap()
        .iter()
        .flat_map(|body| body["resourceSpans"].as_array().cloned().unwrap_or_default())
        .filter_map(|resource| attribute(&resource["resource"], "service.instance.id"))
        .collect();
    assert_eq!(instances.len(), 2, "each host names itself: {instances:?}");
    assert_eq!(attribute(inner, "trace"), attribute(outer, "trace"));
    assert_eq!(attribute(outer, "namespace").as_deref(), Some("peer"));
    assert_eq!(attribute(outer, "outcome").as_deref(), Some("ok"));
    let failed = spans.iter().find(|s| attribute(s, "function").as_deref() == Some("div")).unwrap();
    assert!(attribute(failed, "outcome").is_some_and(|o| o != "ok"), "{failed}");
    let code = &failed["status"]["code"];
    assert!(code == 2 || code == "STATUS_CODE_ERROR", "an error status: {failed}");
}

/// Starts `easyrpc serve --config FILE` (with `extra` flags) and returns it, its URL and the
/// log lines it writes (collected as they come).
fn serve_config(config: &Path, extra: &[&str]) -> (Child, String, Log) {
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    spawn_serve(&args, Path::new("."))
}

/// Starts `easyrpc serve --secret cli-secret --port 0 ARGS` in `dir` and returns it, its URL and
/// the log lines it writes (collected as they come).
fn spawn_serve(args: &[&str], dir: &Path) -> (Child, String, Log) {
    spawn_serve_with_env(args, dir, &[("RUST_LOG", "info")])
}

/// [`spawn_serve`] with `env` set.
fn spawn_serve_with_env(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> (Child, String, Log) {
    let mut child = Command::new(EASYRPC)
        .current_dir(dir)
        .args(["serve", "--secret", "cli-secret", "--port", "0"])
        .args(args)
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("easyrpc serve starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut before = Vec::new();
    let address = loop {
        assert!(Instant::now() < deadline, "server did not report its address");
        let line = lines.next().expect("server still running").unwrap();
        assert!(!line.contains("ERROR"), "the server logged an error at start: {line}");
        if let Some(rest) = line.split("address=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
        before.push(line);
    };
    let log = std::sync::Arc::new(std::sync::Mutex::new(before));
    let kept = log.clone();
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(|line| kept.lock().unwrap().push(line)));
    (child, format!("ws://{address}/ws/easy"), log)
}

/// `easyrpc call -n NS ARGS...` against `url`; stdout on success, else the error text.
fn call_at(url: &str, namespace: &str, args: &[&str]) -> Result<String, String> {
    let mut all = vec!["--url", url, "--secret", "cli-secret", "-n", namespace];
    all.extend_from_slice(args);
    let out = easyrpc_owned("call", all.iter().map(|s| s.to_string()).collect());
    if out.status.success() {
        Ok(text(&out.stdout).trim().to_owned())
    } else {
        Err(text(&out.stderr))
    }
}

/// A config serving the stateful module in namespace `kv`, granted key-value state, logging
/// and config, with its state in `data_dir`.
fn stateful_config(tag: &str, data_dir: &Path) -> PathBuf {
    let module = xtask::module_path("stateful").expect("modules build");
    let dir = std::env::temp_dir().join(format!("easyrpc-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("easyrpc.toml");
    let text = format!(
        r#"
data_dir = "{data}"

[[namespace]]
name = "kv"
grants = ["wasi:keyvalue", "wasi:logging", "wasi:config"]
log_lines_per_second = 20
[namespace.config]
greeting = "hello"

[[module]]
file = "{module}"
namespaces = ["kv"]
"#,
        data = data_dir.display(),
        module = module.display()
    );
    std::fs::write(&config, text).unwrap();
    config
}

#[test]
fn embedded_state_survives_a_killed_host_and_guest_logs_reach_the_host_log() {
    let data_dir = std::env::temp_dir().join(format!("easyrpc-cli-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let config = stateful_config("state", &data_dir);

    let (mut server, url, log) = serve_config(&config, &["--no-cache"]);
    for expected in ["1", "2", "3"] {
        assert_eq!(call_at(&url, "kv", &["incr", "visits"]).as_deref(), Ok(expected));
    }
    assert_eq!(call_at(&url, "kv", &["set", "name", "\"ada\""]).as_deref(), Ok("true"));
    assert_eq!(call_at(&url, "kv", &["setting", "greeting"]).as_deref(), Ok("\"hello\""));

    // A guest's log line reaches the host's log with its namespace, module, function and
    // request; a guest that floods is cut to the namespace's rate (20 lines per second).
    assert_eq!(call_at(&url, "kv", &["log", "warn", "\"disk almost full\""]).as_deref(), Ok("true"));
    assert_eq!(call_at(&url, "kv", &["log", "info", "\"flood\"", "--kw", "times=500"]).as_deref(), Ok("true"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let (line, floods) = loop {
        let lines = log.lock().unwrap().clone();
        let line = lines.iter().find(|l| l.contains("disk almost full")).cloned();
        let floods = lines.iter().filter(|l| l.contains("flood")).count();
        if line.is_some() && floods > 0 || Instant::now() > deadline {
            break (line.unwrap_or_default(), floods);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for field in ["WARN", "namespace=kv", "module=stateful", "function=log", "context=stateful", "request="] {
        assert!(line.contains(field), "{field} missing from the guest's log line: {line}");
    }
    assert!((1..=40).contains(&floods), "500 lines logged at once, {floods} reached the log (20 per second allowed)");

    // Compiling said how long it took; a failed call's log line sits in the call's span, which
    // names the request and the outcome.
    assert!(call_at(&url, "kv", &["incr", "name"]).is_err(), "name holds text, not a counter");
    let lines_with =
        |needle: &str| log.lock().unwrap().iter().filter(|l| l.contains(needle)).cloned().collect::<Vec<_>>();
    let compiled = lines_with("compiled");
    assert!(compiled.iter().any(|l| l.contains("module=stateful") && l.contains("took=")), "{compiled:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let failed = loop {
        if let Some(line) = lines_with("call failed").into_iter().find(|l| l.contains("function=incr")) {
            break line;
        }
        assert!(Instant::now() < deadline, "no call failed line");
        std::thread::sleep(Duration::from_millis(20));
    };
    for field in ["call{namespace=kv function=incr request=", "outcome=\"Error\"", "not a decimal integer"] {
        assert!(failed.contains(field), "{field} missing: {failed}");
    }

    // Killed, not stopped: every answered write is on disk.
    server.kill().unwrap();
    server.wait().unwrap();
    let (mut server, url, _) = serve_config(&config, &[]);
    assert_eq!(call_at(&url, "kv", &["get", "visits"]).as_deref(), Ok("\"3\""));
    assert_eq!(call_at(&url, "kv", &["get", "name"]).as_deref(), Ok("\"ada\""));
    assert_eq!(call_at(&url, "kv", &["incr", "visits"]).as_deref(), Ok("4"));
    server.kill().unwrap();
    server.wait().unwrap();
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[test]
fn a_module_that_imports_a_capability_its_namespace_lacks_is_not_served() {
    let module = xtask::module_path("stateful").expect("modules build");
    let dir = std::env::temp_dir().join(format!("easyrpc-cli-ungranted-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("easyrpc.toml");
    let toml = format!(
        "[[namespace]]\nname = \"kv\"\ngrants = [\"wasi:keyvalue\"]\n\n[[module]]\nfile = \"{}\"\nnamespaces = [\"kv\"]\n",
        module.display()
    );
    std::fs::write(&config, toml).unwrap();
    let out = Command::new(EASYRPC)
        .args(["serve", "--secret", "cli-secret", "--port", "0", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .output()
        .expect("easyrpc serve runs");
    assert!(!out.status.success(), "nothing else to serve: the host stops");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("module stateful imports wasi:logging/logging@0.1.0-draft, wasi:config/store@0.2.0-draft, which namespace kv does not grant")
            && stderr.contains("\"wasi:config\", \"wasi:logging\""),
        "{stderr}"
    );
    let out = easyrpc(&["inspect", module.to_str().unwrap()]);
    assert!(
        text(&out.stdout)
            .contains("capabilities: wasi:keyvalue, wasi:logging, wasi:config (its namespace must grant them)"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn modules_lists_what_each_namespace_holds_and_where_it_came_from() {
    let dir = modules_dir("modules");
    let data = std::env::temp_dir().join(format!("easyrpc-cli-modules-data-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let (mut server, url) = serve_with(&dir, &["--data-dir", data.to_str().unwrap()]);
    let admin = |extra: &[&str]| {
        let mut args = vec!["--url".to_owned(), url.clone(), "--secret".to_owned(), "cli-secret".to_owned()];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let wasm = dir.join("math.wasm");
    let out = easyrpc_owned("deploy", admin(&["-n", "extra", wasm.to_str().unwrap(), "--name", "calc"]));
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = easyrpc_owned("modules", admin(&[]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    let lines: Vec<&str> = listing.lines().collect();
    assert!(lines[0].starts_with("NAMESPACE") && lines[0].ends_with("SOURCE"), "{listing}");
    let line = |ns: &str, name: &str| lines.iter().find(|l| l.starts_with(ns) && l.contains(name)).copied();
    let math = line("DEFAULT", "math").unwrap_or_else(|| panic!("{listing}"));
    assert!(
        math.ends_with("math.wasm") && math.contains(&std::fs::metadata(&wasm).unwrap().len().to_string()),
        "{math}"
    );
    assert!(line("peer", "peer").is_some_and(|l| l.ends_with("peer.wasm")), "{listing}");
    assert!(line("extra", "calc").is_some_and(|l| l.ends_with("deployed")), "{listing}");

    let out = easyrpc_owned("modules", admin(&["-n", "peer"]));
    assert_eq!(text(&out.stdout).lines().count(), 2, "the header and peer's one module: {}", text(&out.stdout));
    let out = easyrpc_owned("modules", admin(&["-n", "nowhere"]));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("namespace nowhere holds no module"), "{}", text(&out.stderr));
    server.kill().unwrap();
    server.wait().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

/// GET `path` from `addr` over plain HTTP: the whole answer.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("the metrics endpoint listens");
    write!(stream, "GET {path} HTTP/1.1\r\nhost: test\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn serve_answers_health_and_metrics_on_metrics_addr() {
    let dir = modules_dir("metrics");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let (mut server, url) = serve_with(&dir, &["--metrics-addr", &addr]);
    assert!(http_get(&addr, "/healthz").starts_with("HTTP/1.1 200 OK"));
    assert!(http_get(&addr, "/readyz").ends_with("ready\n"), "no links configured: ready once loaded");
    let out = easyrpc(&["call", "--url", &url, "--secret", "cli-secret", "-n", "peer", "add", "1", "2"]);
    assert_eq!(text(&out.stdout), "3\n", "{}", text(&out.stderr));
    let metrics = http_get(&addr, "/metrics");
    assert!(metrics.contains("content-type: application/openmetrics-text"), "{metrics}");
    assert!(metrics.contains(r#"easyrpc_calls_total{namespace="peer",function="add"} 1"#), "{metrics}");
    server.kill().unwrap();
    server.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(dir.with_extension("data"));
}

#[test]
fn serve_speaks_wss_with_a_certificate_and_call_trusts_a_ca_file() {
    let dir = modules_dir("tls");
    let certs = dir.with_extension("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (ca, cert, key) = xtask::test_certificates(&certs).expect("test certificates");
    let (mut server, url) =
        serve_with(&dir, &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    let wss = url.replacen("ws://", "wss://", 1);
    let call = |extra: &[&str]| {
        let mut args = vec!["call", "--url", &wss, "--secret", "cli-secret", "-n", "peer"];
        args.extend_from_slice(extra);
        easyrpc(&args)
    };
    let out = call(&["--ca-file", ca.to_str().unwrap(), "add", "1", "2"]);
    assert_eq!(text(&out.stdout), "3\n", "{}", text(&out.stderr));
    let out = call(&["add", "1", "2"]);
    assert!(!out.status.success(), "a host whose CA is not trusted is refused");
    assert!(text(&out.stderr).to_lowercase().contains("certificate"), "{}", text(&out.stderr));
    // Half a TLS configuration is an error at start.
    let out = Command::new(EASYRPC)
        .args(["serve", "--secret", "s", "--port", "0", "--tls-cert", cert.to_str().unwrap(), "--modules"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("TLS needs both a certificate and its key"), "{}", text(&out.stderr));
    server.kill().unwrap();
    server.wait().unwrap();
    for d in [dir.clone(), dir.with_extension("data"), certs] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn new_scaffolds_a_guest_that_builds_tests_serves_and_answers() {
    let root = xtask::project_root();
    let work = std::env::temp_dir().join(format!("easyrpc-cli-new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let sdk = root.join("guest-sdk");
    let out =
        Command::new(EASYRPC).current_dir(&work).args(["new", "hello-world", "--sdk"]).arg(&sdk).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = Command::new(EASYRPC).current_dir(&work).args(["new", "hello-world"]).output().unwrap();
    assert!(!out.status.success() && text(&out.stderr).contains("exists already"), "{}", text(&out.stderr));
    let out = Command::new(EASYRPC).current_dir(&work).args(["new", "Bad Name"]).output().unwrap();
    assert!(!out.status.success());

    // Built as the scaffold says (a target directory kept between runs of this test).
    xtask::ensure_wasm_target(xtask::WASI_TARGET).expect("the wasm32-wasip2 target");
    let crate_dir = work.join("hello-world");
    let target_dir = root.join("target").join("scaffold-test");
    let cargo = |args: &[&str]| {
        let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&crate_dir)
            .args(args)
            .env("CARGO_TARGET_DIR", &target_dir)
            .output()
            .expect("cargo runs");
        assert!(out.status.success(), "cargo {args:?}: {}", text(&out.stderr));
        out
    };
    cargo(&["build", "--quiet", "--release", "--target", xtask::WASI_TARGET]);
    let out = cargo(&["test", "--quiet", "--lib"]);
    assert!(text(&out.stdout).contains("1 passed"), "the scaffold's own test: {}", text(&out.stdout));

    let wasm = target_dir.join(xtask::WASI_TARGET).join("release").join("hello_world.wasm");
    let modules = work.join("modules");
    std::fs::create_dir_all(modules.join("hello")).unwrap();
    std::fs::copy(&wasm, modules.join("hello").join("hello_world.wasm")).unwrap();
    let (mut server, url) = serve_with(&modules, &[]);
    let call = |args: &[&str]| {
        let mut all = vec!["call", "--url", &url, "--secret", "cli-secret", "-n", "hello"];
        all.extend_from_slice(args);
        easyrpc(&all)
    };
    assert_eq!(text(&call(&["greet", "ada"]).stdout), "\"hello, ada!\"\n");
    assert_eq!(text(&call(&["greet", "ada", "--kw", "greeting=\"hi\""]).stdout), "\"hi, ada!\"\n");
    assert_eq!(text(&call(&["count", "3"]).stdout), "0\n1\n2\n");
    assert_eq!(text(&call(&["echo", "[1, 2]"]).stdout), "[\n  1,\n  2\n]\n");
    server.kill().unwrap();
    server.wait().unwrap();
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all(modules.with_extension("data"));
}

#[test]
fn the_bundled_modules_serve_with_their_grants() {
    xtask::modules_dir().expect("modules build");
    let data = std::env::temp_dir().join(format!("easyrpc-cli-bundled-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let (mut server, url, log) = spawn_serve(&["--data-dir", data.to_str().unwrap()], &xtask::project_root());
    let call = |namespace: &str, args: &[&str]| call_at(&url, namespace, args);
    assert_eq!(call("stateful", &["incr", "visits"]).as_deref(), Ok("1"));
    assert_eq!(call("stateful", &["setting", "greeting"]).as_deref(), Ok("\"hello from the bundled modules\""));
    assert_eq!(call("chain", &["forward", "math", "add", "[20, 22]"]).as_deref(), Ok("42"));
    let refused = call("chain", &["forward", "hostile", "ok", "[]"]).expect_err("hostile is not granted to chain");
    assert!(refused.contains("NotGranted"), "{refused}");
    assert!(!log.lock().unwrap().iter().any(|l| l.contains("ERROR")), "no module failed to load");
    server.kill().unwrap();
    server.wait().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}
