//! docs/guide.md run as a reader would: every file it shows written, every command it shows run
//! in order, each printed result it states checked. The rules are the guide's own last section
//! ("How this guide is tested").

use easyrpc_tests::{built_easyrpc, fenced_blocks, python_with_easyrpc, test_redis, ScratchDir};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Ports the guide names, each replaced by a free one.
const GUIDE_PORTS: [&str; 4] = ["8220", "8221", "8222", "9220"];
/// Where the guide says the repository is.
const REPOSITORY: &str = "/path/to/easyrpc";
/// The Redis the guide names.
const GUIDE_REDIS: &str = "redis://127.0.0.1:6379";
/// The Redis database the guide's hosts share.
const GUIDE_REDIS_DB: &str = "3";
/// How long one command may run (the guest's first build is the longest).
const COMMAND_LIMIT: &str = "300";

/// A host the guide started: its command line, its process and the lines it logged.
type Host = (String, Child, Arc<Mutex<Vec<String>>>);

/// The hosts the guide started; stopped when the test ends, pass or fail.
#[derive(Default)]
struct Hosts(Vec<Host>);

impl Hosts {
    fn logs(&self) -> String {
        self.0
            .iter()
            .map(|(command, _, log)| format!("--- {command}\n{}", log.lock().unwrap().join("\n")))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What a command's comment says it does.
enum Expect {
    Succeeds,
    Prints(String),
    FailsWith(String),
}

fn expectation(line: &str) -> (String, Expect) {
    let Some((command, comment)) = line.split_once(" # ") else { return (line.trim().to_owned(), Expect::Succeeds) };
    let comment = comment.trim();
    let expect = if let Some(text) = comment.strip_prefix("→ ") {
        Expect::Prints(text.trim().to_owned())
    } else if let Some(text) = comment.strip_prefix("error: ") {
        Expect::FailsWith(text.trim().to_owned())
    } else {
        Expect::Succeeds
    };
    (command.trim().to_owned(), expect)
}

fn free_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port().to_string()
}

/// The `host:port` of a Redis URL (`redis://[user:password@]host:port[/db]`).
fn redis_address(url: &str) -> &str {
    let authority = url.trim_start_matches("redis://").split(['/', '?']).next().unwrap_or_default();
    authority.rsplit('@').next().unwrap_or_default()
}

/// Empties database `db` of the Redis at `url` (RESP spoken by hand: `SELECT`, `FLUSHDB`).
fn empty_redis_db(url: &str, db: &str) {
    let address = redis_address(url);
    let mut redis = std::net::TcpStream::connect(address).expect("Redis answers");
    redis.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let request = format!("*2\r\n$6\r\nSELECT\r\n${}\r\n{db}\r\n*1\r\n$7\r\nFLUSHDB\r\n", db.len());
    redis.write_all(request.as_bytes()).unwrap();
    let mut replies = String::new();
    let mut buf = [0u8; 64];
    while replies.matches("\r\n").count() < 2 {
        let n = redis.read(&mut buf).expect("Redis replies");
        assert!(n > 0, "Redis closed: {replies}");
        replies.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert_eq!(replies, "+OK\r\n+OK\r\n", "SELECT and FLUSHDB");
}

#[test]
fn the_guide_runs_as_written() {
    let Some(redis) = test_redis("the guide's cluster shares state in Redis") else { return };
    let _builds = easyrpc_tests::NO_BUILDS_BESIDE.blocking_lock();
    let root = xtask::project_root();
    let guide = std::fs::read_to_string(root.join("docs").join("guide.md")).expect("docs/guide.md");
    let mut guide = guide.replace(REPOSITORY, root.to_str().unwrap());
    // Through placeholders, so that a free port never holds a port the guide names.
    let ports: Vec<String> = GUIDE_PORTS.iter().map(|_| free_port()).collect();
    for (i, named) in GUIDE_PORTS.iter().enumerate() {
        guide = guide.replace(named, &format!("\u{0}port{i}\u{0}"));
    }
    for (i, free) in ports.iter().enumerate() {
        guide = guide.replace(&format!("\u{0}port{i}\u{0}"), free);
    }
    let suite_redis = redis.split_once("://").map_or(redis.as_str(), |(_, rest)| rest);
    let suite_redis = format!("redis://{}", suite_redis.split(['/', '?']).next().unwrap_or_default());
    guide = guide.replace(GUIDE_REDIS, &suite_redis);
    empty_redis_db(&redis, GUIDE_REDIS_DB);

    // `easyrpc` is the binary this suite built; `python3` and `pip` the suite's virtualenv.
    let built = built_easyrpc();
    let work = ScratchDir::new("guide");
    let bin = work.0.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(&built, bin.join("easyrpc")).unwrap();
    let python = python_with_easyrpc();
    let venv_bin = python.parent().unwrap();
    let path = format!("{}:{}:{}", bin.display(), venv_bin.display(), std::env::var("PATH").unwrap_or_default());
    let default_url = format!("ws://127.0.0.1:{}/ws/easy", ports[0]);
    let home = work.0.join("home");
    xtask::ensure_wasm_target(xtask::WASI_TARGET).expect("the wasm32-wasip2 target");

    let mut hosts = Hosts::default();
    let mut cwd: PathBuf = work.0.clone();
    let mut ran = 0;
    for block in fenced_blocks(&guide) {
        let mut info = block.info.split_whitespace();
        let language = info.next().unwrap_or_default();
        if let Some(file) = info.find_map(|word| word.strip_prefix("file=")) {
            let target = cwd.join(file);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::write(&target, &block.text).unwrap();
            continue;
        }
        if language == "rust" {
            // An excerpt of the guide's Rust caller, which the suite builds as an example.
            let client = std::fs::read_to_string(root.join("docs").join("guide").join("client.rs")).unwrap();
            for line in block.text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                assert!(client.contains(line), "docs/guide/client.rs has no `{line}`");
            }
            continue;
        }
        if language != "sh" {
            continue;
        }
        for line in block.text.lines().filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')) {
            let (command, expect) = expectation(line);
            ran += 1;
            if command.starts_with("cargo install") {
                // The suite's own build of the same source stands in for a release build.
                continue;
            }
            if let Some(dir) = command.strip_prefix("cd ") {
                cwd = cwd.join(dir.trim());
                continue;
            }
            if command.starts_with("cargo build") && !cwd.join("target").exists() {
                // The guest's build directory lives on between runs of the suite.
                let kept = root.join("target").join("guide-guest");
                std::fs::create_dir_all(&kept).unwrap();
                std::os::unix::fs::symlink(&kept, cwd.join("target")).unwrap();
            }
            // A shell in the reader's directory, with the reader's environment.
            let shell = |program: &str, args: &[&str]| {
                let mut shell = Command::new(program);
                shell
                    .args(args)
                    .current_dir(&cwd)
                    .env("PATH", &path)
                    .env("EASYRPC_URL", &default_url)
                    .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
                    .env("XDG_DATA_HOME", home.join("data"))
                    .env("XDG_CACHE_HOME", home.join("cache"))
                    .env("RUST_LOG", "info");
                shell
            };
            if let Some(background) = command.strip_suffix('&') {
                // exec: the host is the process the test stops; no time limit.
                let mut child = shell("bash", &["-c", &format!("exec {}", background.trim())])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("bash runs");
                let log = Arc::new(Mutex::new(Vec::new()));
                let (kept, stderr) = (log.clone(), child.stderr.take().unwrap());
                std::thread::spawn(move || {
                    BufReader::new(stderr).lines().map_while(Result::ok).for_each(|l| kept.lock().unwrap().push(l))
                });
                hosts.0.push((command.clone(), child, log.clone()));
                let deadline = Instant::now() + Duration::from_secs(120);
                while !log.lock().unwrap().iter().any(|l| l.contains("address=")) {
                    let exited = hosts.0.last_mut().and_then(|(_, child, _)| child.try_wait().ok().flatten());
                    assert!(
                        exited.is_none() && Instant::now() < deadline,
                        "`{command}` did not start listening:\n{}",
                        hosts.logs()
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
                continue;
            }
            let out = shell("timeout", &[COMMAND_LIMIT, "bash", "-o", "pipefail", "-c", &command])
                .output()
                .expect("bash runs");
            let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            let context =
                || format!("`{command}` in {}\nstdout: {stdout}\nstderr: {stderr}\n{}", cwd.display(), hosts.logs());
            match &expect {
                Expect::Succeeds => assert!(out.status.success(), "failed: {}", context()),
                Expect::Prints(text) => {
                    assert!(out.status.success(), "failed: {}", context());
                    assert_eq!(stdout.trim(), text, "printed otherwise: {}", context());
                }
                Expect::FailsWith(text) => {
                    assert!(!out.status.success(), "succeeded: {}", context());
                    assert!(stderr.contains(text.as_str()), "failed otherwise: {}", context());
                }
            }
        }
    }
    assert!(ran > 30, "the guide's commands ran: {ran}");
}
