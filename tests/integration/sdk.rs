//! The guest SDK is ready to publish: `cargo publish --dry-run` packages it (its WIT included,
//! through the `guest-sdk/wit` link to `wit/guest`) and builds the package on its own.

#[test]
fn the_guest_sdk_packages_and_builds_as_published() {
    let _builds = easyrpc_tests::NO_BUILDS_BESIDE.blocking_lock();
    let root = xtask::project_root();
    let out = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["publish", "--dry-run", "--allow-dirty", "--quiet", "--manifest-path"])
        .arg(root.join("guest-sdk").join("Cargo.toml"))
        .arg("--target-dir")
        .arg(root.join("target").join("publish-check"))
        .output()
        .expect("cargo runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cargo publish --dry-run failed: {stderr}");
}

/// Every Rust snippet in the SDK's docs compiles (`cargo test --doc`: on the host, where the
/// bindings compile but are not run).
#[test]
fn the_guest_sdk_s_doc_snippets_compile() {
    let _builds = easyrpc_tests::NO_BUILDS_BESIDE.blocking_lock();
    let root = xtask::project_root();
    let out = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["test", "--doc", "--quiet", "--manifest-path"])
        .arg(root.join("guest-sdk").join("Cargo.toml"))
        .arg("--target-dir")
        .arg(root.join("target").join("sdk-doc"))
        .output()
        .expect("cargo runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the SDK's doc snippets: {stdout}\n{stderr}");
    // The one snippet left to the walk below: a whole guest's src/lib.rs, built for wasm.
    assert!(!stdout.contains(" 0 passed") && stdout.contains("; 1 ignored;"), "no other snippet is left out: {stdout}");
}

/// The SDK's walk "From `cargo new` to a deployed function", done as it says: its Cargo.toml
/// lines, WIT, src/lib.rs and .cargo/config.toml in a crate `cargo new` made, built for
/// wasm32-wasip2, inspected, served and called with the commands it gives.
#[test]
fn the_guest_sdk_s_walk_from_cargo_new_builds_serves_and_answers() {
    let _builds = easyrpc_tests::NO_BUILDS_BESIDE.blocking_lock();
    let root = xtask::project_root();
    let docs: String = std::fs::read_to_string(root.join("guest-sdk").join("src").join("lib.rs"))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| {
            let l = l.strip_prefix(' ').unwrap_or(l);
            format!("{}\n", l.strip_prefix("   ").unwrap_or(l))
        })
        .collect();
    let walk = docs.split("## From `cargo new`").nth(1).and_then(|rest| rest.split("## Generators").next()).unwrap();
    let blocks: Vec<(String, String)> =
        easyrpc_tests::fenced_blocks(walk).into_iter().map(|block| (block.info, block.text)).collect();
    let kinds: Vec<&str> = blocks.iter().map(|(info, _)| info.as_str()).collect();
    assert_eq!(kinds, ["toml", "wit", "ignore", "toml", "sh", "sh"], "the walk's steps");

    let work = easyrpc_tests::ScratchDir::new("sdk-walk");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let run = |dir: &std::path::Path, program: &str, args: &[&str], env: &[(&str, String)]| {
        let out = std::process::Command::new(program)
            .current_dir(dir)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("runs");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{program} {args:?}: {text}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&work.0, &cargo, &["new", "--lib", "--vcs", "none", "--quiet", "hello"], &[]);
    let crate_dir = work.0.join("hello");
    // Step 1: the lines it shows, with the path to this repository's SDK.
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap().replace("[dependencies]\n", "");
    let sdk = root.join("guest-sdk");
    let lines = blocks[0].1.replace("../easyrpc/guest-sdk", sdk.to_str().unwrap());
    std::fs::write(crate_dir.join("Cargo.toml"), format!("{manifest}{lines}")).unwrap();
    // Steps 2 to 4.
    std::fs::create_dir_all(crate_dir.join("wit").join("deps").join("easyrpc-guest")).unwrap();
    let types = root.join("wit").join("guest").join("types.wit");
    std::fs::copy(types, crate_dir.join("wit").join("deps").join("easyrpc-guest").join("types.wit")).unwrap();
    std::fs::write(crate_dir.join("wit").join("world.wit"), &blocks[1].1).unwrap();
    std::fs::write(crate_dir.join("src").join("lib.rs"), &blocks[2].1).unwrap();
    std::fs::create_dir_all(crate_dir.join(".cargo")).unwrap();
    std::fs::write(crate_dir.join(".cargo").join("config.toml"), &blocks[3].1).unwrap();
    xtask::ensure_wasm_target(xtask::WASI_TARGET).expect("the wasm32-wasip2 target");
    let target = root.join("target").join("sdk-walk");
    std::os::unix::fs::symlink(&target, crate_dir.join("target")).ok();
    std::fs::create_dir_all(&target).unwrap();
    run(&crate_dir, &cargo, &["build", "--quiet", "--release", "--target", xtask::WASI_TARGET], &[]);
    // The WASI-free build of step 4, as its command says.
    xtask::ensure_wasm_target("wasm32-unknown-unknown").expect("the wasm32-unknown-unknown target");
    run(&crate_dir, "bash", &["-c", blocks[4].1.trim()], &[]);

    // Step 5: what inspect prints; step 6: serve and call as shown (on a free port).
    let easyrpc = easyrpc_tests::built_easyrpc();
    let easyrpc = easyrpc.to_str().unwrap();
    let inspected = run(&crate_dir, easyrpc, &["inspect", "target/wasm32-wasip2/release/hello.wasm"], &[]);
    assert!(inspected.contains(r#"greet(name: string, greeting: string = "hello") -> string"#), "{inspected}");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let mut steps = blocks[5].1.lines().map(|l| l.split(" # ").next().unwrap().trim().replacen("easyrpc", easyrpc, 1));
    let serve = format!("{} --port {port} --data-dir {}", steps.next().unwrap(), work.0.join("data").display());
    let mut server = std::process::Command::new("bash")
        .current_dir(&crate_dir)
        .args(["-c", &format!("exec {serve}")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let call = steps.next().unwrap();
    let env = [("EASYRPC_URL", format!("ws://127.0.0.1:{port}/ws/easy"))];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let answer = loop {
        let out = std::process::Command::new("bash").args(["-c", &call]).envs(env.clone()).output().unwrap();
        if out.status.success() || std::time::Instant::now() > deadline {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(answer.trim(), r#""hello, ada!""#, "step 6's call");
}
