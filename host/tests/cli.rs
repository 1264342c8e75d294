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

/// [`serve`] with more flags.
fn serve_with(dir: &Path, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(EASYRPC)
        .args(["serve", "--secret", "cli-secret", "--port", "0", "--modules"])
        .arg(dir)
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
