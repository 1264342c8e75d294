//! Project chores shared by the `cargo xtask` command, the test suite and the benchmarks:
//! building the guest modules in `modules/` into components (wasm32-wasip2 for guests that
//! use WASI, wasm32-unknown-unknown linked by wasm-component-ld for those that do not).
//!
//! Owns the one place that shells out to cargo/rustup. The host binary never does: it serves
//! `.wasm` files it is given.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Target of guests that use WASI (stdout/stderr, clocks, panic messages on stderr).
pub const WASI_TARGET: &str = "wasm32-wasip2";
/// Target of guests that need nothing from WASI. Linked by `wasm-component-ld` (which rustup
/// ships with the toolchain) they become components without WASI imports: one core instance
/// instead of three and no WASI context, so a fresh instance per call costs less.
pub const PLAIN_TARGET: &str = "wasm32-unknown-unknown";

/// The project root (the directory holding the workspace Cargo.toml).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

fn rustc() -> String {
    std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned())
}

/// Installs a guest target through rustup when the toolchain lacks it.
pub fn ensure_wasm_target(target: &str) -> Result<(), String> {
    let rustc = rustc();
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", target])
        .output()
        .map_err(|e| format!("cannot run {rustc}: {e}"))?;
    let libdir = String::from_utf8_lossy(&libdir.stdout).trim().to_owned();
    let installed = !libdir.is_empty() && std::fs::read_dir(&libdir).is_ok_and(|mut d| d.next().is_some());
    if installed {
        return Ok(());
    }
    eprintln!("xtask: installing the {target} target (rustup target add {target})");
    let status = Command::new("rustup")
        .args(["target", "add", target])
        .status()
        .map_err(|e| format!("the {target} target is missing and rustup could not be run: {e}"))?;
    if !status.success() {
        return Err(format!("rustup target add {target} failed ({status})"));
    }
    Ok(())
}

/// The toolchain's `wasm-component-ld` (in `<sysroot>/lib/rustlib/<host>/bin`).
fn component_linker() -> Result<PathBuf, String> {
    let rustc = rustc();
    let run = |args: &[&str]| -> Result<String, String> {
        let out = Command::new(&rustc).args(args).output().map_err(|e| format!("cannot run {rustc}: {e}"))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let sysroot = run(&["--print", "sysroot"])?;
    let version = run(&["-vV"])?;
    let host = version.lines().find_map(|l| l.strip_prefix("host: ")).ok_or("rustc -vV names no host")?;
    let linker = Path::new(sysroot.trim()).join("lib/rustlib").join(host.trim()).join("bin/wasm-component-ld");
    linker
        .is_file()
        .then_some(linker.clone())
        .ok_or_else(|| format!("{} not found (it comes with rustc 1.82+)", linker.display()))
}

/// Builds every module in `modules/` (release) and returns the directory that holds the
/// components, one `<crate_name>.wasm` each. Cargo makes this a no-op when nothing changed.
pub fn build_modules() -> Result<PathBuf, String> {
    build_guest_workspace("modules")
}

/// Builds the guest crates of `examples/` the same way, into their own target directory (so
/// `easyrpc serve` with no arguments serves only the bundled modules).
pub fn build_examples() -> Result<PathBuf, String> {
    build_guest_workspace("examples")
}

/// The crates of a guest workspace that use WASI, from its Cargo.toml:
/// `[workspace.metadata.easyrpc] wasi = ["crate", ...]`. None when the workspace does not say:
/// then every crate is built for [`WASI_TARGET`].
fn wasi_crates(manifest: &str) -> Option<Vec<String>> {
    let section = manifest.split("[workspace.metadata.easyrpc]").nth(1)?;
    let line = section
        .lines()
        .take_while(|l| !l.trim_start().starts_with('['))
        .find(|l| l.trim_start().starts_with("wasi"))?;
    let list = line.split_once('=')?.1.trim().strip_prefix('[')?.strip_suffix(']')?;
    Some(list.split(',').map(|c| c.trim().trim_matches('"').to_owned()).filter(|c| !c.is_empty()).collect())
}

fn build_guest_workspace(dir: &str) -> Result<PathBuf, String> {
    let root = project_root();
    let manifest_path = root.join(dir).join("Cargo.toml");
    let manifest =
        std::fs::read_to_string(&manifest_path).map_err(|e| format!("cannot read {}: {e}", manifest_path.display()))?;
    let target_dir = root.join(dir).join("target");
    let cargo_build = |target: &str, selection: &[String]| -> Result<PathBuf, String> {
        ensure_wasm_target(target)?;
        let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
        command
            .current_dir(&root)
            .args(["build", "--quiet", "--release", "--target", target, "--manifest-path"])
            .arg(&manifest_path)
            .arg("--target-dir")
            .arg(&target_dir)
            .args(selection)
            // Settings meant for the host build must not leak into the guest build.
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
        if target == PLAIN_TARGET {
            command.env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", component_linker()?);
        }
        let status = command.status().map_err(|e| format!("cannot run cargo to build {dir}/: {e}"))?;
        if !status.success() {
            return Err(format!("building the guest crates in {dir}/ for {target} failed ({status})"));
        }
        Ok(target_dir.join(target).join("release"))
    };
    // Which built files come from which target directory: a crate moved between targets
    // leaves a stale file in the other one.
    let mut sources: Vec<(PathBuf, Pick)> = Vec::new();
    match wasi_crates(&manifest) {
        None => sources.push((cargo_build(WASI_TARGET, &[])?, Pick::Except(Vec::new()))),
        Some(wasi) => {
            let wasi_files: Vec<String> =
                wasi.iter().map(|krate| format!("{}.wasm", krate.replace('-', "_"))).collect();
            let mut plain = vec!["--workspace".to_owned()];
            plain.extend(wasi.iter().flat_map(|c| ["--exclude".to_owned(), c.clone()]));
            sources.push((cargo_build(PLAIN_TARGET, &plain)?, Pick::Except(wasi_files.clone())));
            if !wasi.is_empty() {
                let selection: Vec<String> = wasi.iter().flat_map(|c| ["--package".to_owned(), c.clone()]).collect();
                sources.push((cargo_build(WASI_TARGET, &selection)?, Pick::Only(wasi_files)));
            }
        }
    }
    let components = target_dir.join("components");
    std::fs::create_dir_all(&components).map_err(|e| format!("cannot create {}: {e}", components.display()))?;
    for (from, wanted) in &sources {
        let entries = std::fs::read_dir(from).map_err(|e| format!("cannot list {}: {e}", from.display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".wasm") && wanted.wants(&name) {
                copy_if_changed(&entry.path(), &components.join(&name))?;
            }
        }
    }
    Ok(components)
}

/// Which `.wasm` files of a target directory belong to the build.
enum Pick {
    Only(Vec<String>),
    Except(Vec<String>),
}

impl Pick {
    fn wants(&self, file: &str) -> bool {
        match self {
            Pick::Only(files) => files.iter().any(|f| f == file),
            Pick::Except(files) => !files.iter().any(|f| f == file),
        }
    }
}

/// Copies unless the destination already holds the same bytes, so an unchanged module keeps
/// its modification time (the host's directory watcher reloads on changes).
fn copy_if_changed(from: &Path, to: &Path) -> Result<(), String> {
    let bytes = std::fs::read(from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
    if std::fs::read(to).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    // Write then rename: a host watching the directory never sees half a file, and two
    // processes building at once never write into the same partial file.
    let partial = to.with_extension(format!("wasm.{}.partial", std::process::id()));
    std::fs::write(&partial, &bytes).map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
    std::fs::rename(&partial, to).map_err(|e| format!("cannot write {}: {e}", to.display()))
}

/// [`build_modules`] once per process; later calls return the same directory.
pub fn modules_dir() -> Result<&'static Path, String> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(build_modules).as_ref().map(PathBuf::as_path).map_err(Clone::clone)
}

/// Path of a built module, e.g. `module_path("math")`.
pub fn module_path(name: &str) -> Result<PathBuf, String> {
    Ok(modules_dir()?.join(format!("{name}.wasm")))
}

/// [`build_examples`] once per process; the path of one built example guest.
pub fn example_path(name: &str) -> Result<PathBuf, String> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = DIR.get_or_init(build_examples).as_ref().map_err(Clone::clone)?;
    Ok(dir.join(format!("{name}.wasm")))
}

/// Files of a test CA and of a certificate for `127.0.0.1` and `localhost` it signed, written
/// into `dir`: (CA certificate, host certificate, host key), all PEM. For TLS tests.
pub fn test_certificates(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf), String> {
    use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair};
    let e = |e: rcgen::Error| e.to_string();
    // Distinct names: a certificate whose subject is its issuer's looks self-signed to OpenSSL.
    let named = |name: &str| {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn
    };
    let ca_key = KeyPair::generate().map_err(e)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name = named("easyrpc test CA");
    let ca_cert = ca_params.self_signed(&ca_key).map_err(e)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let host_key = KeyPair::generate().map_err(e)?;
    let mut host_params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).map_err(e)?;
    host_params.distinguished_name = named("easyrpc test host");
    let host_cert = host_params.signed_by(&host_key, &issuer).map_err(e)?;
    let (ca, cert, key) = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
    let write = |path: &Path, text: String| std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()));
    write(&ca, ca_cert.pem())?;
    write(&cert, host_cert.pem())?;
    write(&key, host_key.serialize_pem())?;
    Ok((ca, cert, key))
}

/// Checks that the workspace and the fuzz crate are formatted as `rustfmt.toml` says
/// (`cargo fmt --check`), installing rustfmt through rustup when the toolchain lacks it. The
/// error holds the diff.
pub fn check_formatting() -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let has_rustfmt = Command::new(&cargo).args(["fmt", "--version"]).output().is_ok_and(|o| o.status.success());
    if !has_rustfmt {
        eprintln!("xtask: installing rustfmt (rustup component add rustfmt)");
        let status = Command::new("rustup")
            .args(["component", "add", "rustfmt"])
            .status()
            .map_err(|e| format!("rustfmt is missing and rustup could not be run: {e}"))?;
        if !status.success() {
            return Err(format!("rustup component add rustfmt failed ({status})"));
        }
    }
    let root = project_root();
    for manifest in [root.join("Cargo.toml"), root.join("fuzz").join("Cargo.toml")] {
        let out = Command::new(&cargo)
            .args(["fmt", "--all", "--check", "--manifest-path"])
            .arg(&manifest)
            .output()
            .map_err(|e| format!("cannot run cargo fmt: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{} is not formatted (run `cargo fmt --all --manifest-path {}`):\n{}{}",
                manifest.display(),
                manifest.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::wasi_crates;

    #[test]
    fn wasi_crates_come_from_the_workspace_metadata() {
        let manifest = "[workspace]\nmembers = [\"a\", \"b\"]\n\n[workspace.metadata.easyrpc]\n# comment\nwasi = [\"hostile\", \"peer\"]\n\n[profile.release]\nlto = true\n";
        assert_eq!(wasi_crates(manifest), Some(vec!["hostile".to_owned(), "peer".to_owned()]));
        assert_eq!(wasi_crates("[workspace.metadata.easyrpc]\nwasi = []\n"), Some(vec![]));
        // Without the table every crate is built for WASI; a key in a later table is not ours.
        assert_eq!(wasi_crates("[workspace]\nmembers = [\"a\"]\n"), None);
        assert_eq!(wasi_crates("[workspace.metadata.easyrpc]\n[other]\nwasi = [\"x\"]\n"), None);
    }
}
