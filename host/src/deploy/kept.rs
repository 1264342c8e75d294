//! Deploys kept across restarts: the modules admins deployed over the wire, and the removals
//! of module files, in the host's data directory, read back at start.
//!
//! Owns the files under `DATA_DIR/deploys/`: `modules/<hash>.wasm` (each module's bytes once,
//! by content hash) and `deploys.json` (what is deployed where, in deploy order, and which
//! files were removed from which namespace). Every change rewrites `deploys.json` whole
//! (written beside it, then renamed over it), so a crash leaves the old list or the new one,
//! never half of one. It does not load modules or decide what is served (`deploy` does).

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What is kept: deployed modules in deploy order, and removed module files.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub deployed: Vec<KeptModule>,
    #[serde(default)]
    pub removed: Vec<Removal>,
}

/// A module deployed over the wire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeptModule {
    pub namespace: String,
    pub name: String,
    /// Hex SHA-256 of its bytes, the name of its file.
    pub hash: String,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub deployed_at: u64,
}

/// A module file an admin removed from a namespace: it stays removed until the file changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Removal {
    pub namespace: String,
    pub name: String,
    pub hash: String,
}

/// The deploys kept in one data directory.
pub struct KeptDeploys {
    dir: PathBuf,
}

impl KeptDeploys {
    pub fn new(data_dir: &Path) -> Self {
        Self { dir: data_dir.join("deploys") }
    }

    fn manifest_path(&self) -> PathBuf {
        self.dir.join("deploys.json")
    }

    fn module_path(&self, hash: &str) -> anyhow::Result<PathBuf> {
        // The hash names a file: only what `content_hash` writes may (the file could be edited).
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("{hash:?} is not a module hash");
        }
        Ok(self.dir.join("modules").join(format!("{hash}.wasm")))
    }

    /// What is kept; nothing when nothing was ever kept here.
    pub fn read(&self) -> anyhow::Result<Manifest> {
        let path = self.manifest_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!("{} is damaged; move it away to start without the deploys it lists", path.display())
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The bytes of a kept module.
    pub fn bytes(&self, hash: &str) -> anyhow::Result<Vec<u8>> {
        let path = self.module_path(hash)?;
        std::fs::read(&path).with_context(|| format!("reading the kept module {}", path.display()))
    }

    /// Keeps `bytes` under their hash (once).
    pub fn keep_bytes(&self, hash: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let path = self.module_path(hash)?;
        if path.exists() {
            return Ok(());
        }
        write_whole(&path, bytes)
    }

    /// Replaces the kept list with `manifest`, then deletes module files it no longer names.
    pub fn write(&self, manifest: &Manifest) -> anyhow::Result<()> {
        let text = serde_json::to_vec_pretty(manifest)?;
        write_whole(&self.manifest_path(), &text)?;
        let named: std::collections::HashSet<String> =
            manifest.deployed.iter().map(|m| format!("{}.wasm", m.hash)).collect();
        if let Ok(entries) = std::fs::read_dir(self.dir.join("modules")) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".wasm") && !named.contains(&name) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` through a file beside it, synced and renamed over it.
fn write_whole(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let partial = path.with_extension("partial");
    let mut file = std::fs::File::create(&partial).with_context(|| format!("writing {}", partial.display()))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("renaming {} to {}", partial.display(), path.display()))
}

/// Seconds since the Unix epoch, now.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_round_trips_and_unnamed_module_files_go() {
        let dir = std::env::temp_dir().join(format!("easyrpc-kept-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let kept = KeptDeploys::new(&dir);
        assert_eq!(kept.read().unwrap(), Manifest::default());
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        kept.keep_bytes(&a, b"first").unwrap();
        kept.keep_bytes(&b, b"second").unwrap();
        let module = |hash: &str| KeptModule {
            namespace: "ns".into(),
            name: "m".into(),
            hash: hash.into(),
            size: 5,
            deployed_at: 1,
        };
        let manifest = Manifest { deployed: vec![module(&a)], removed: vec![] };
        kept.write(&manifest).unwrap();
        assert_eq!(kept.read().unwrap(), manifest);
        assert_eq!(kept.bytes(&a).unwrap(), b"first");
        assert!(kept.bytes(&b).is_err(), "a module no deploy names is deleted");
        assert!(kept.bytes("../../etc/passwd").is_err(), "only hashes name files");
        std::fs::write(kept.manifest_path(), "{not json").unwrap();
        assert!(kept.read().unwrap_err().to_string().contains("is damaged"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
