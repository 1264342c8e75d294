//! The guest SDK is ready to publish: `cargo publish --dry-run` packages it (its WIT included,
//! through the `guest-sdk/wit` link to `wit/guest`) and builds the package on its own.

#[test]
fn the_guest_sdk_packages_and_builds_as_published() {
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
