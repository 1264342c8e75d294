//! Deploying, replacing and removing modules while the host serves.
//!
//! Owns the host's set of modules and where they came from: files found in the module
//! directories and config (watched: a changed file is reloaded once it has stopped changing)
//! and modules deployed over the wire by an admin. Every change builds a complete new
//! [`RegistrySnapshot`] from the configured tenants and groups plus the current modules, and
//! publishes it in one swap: calls and generators already running finish on the version they
//! started with, later calls see the new one, and a version that fails to compile or load
//! leaves the old one serving. Modules are reused by content hash, so only changed bytes are
//! compiled (and the runtime's disk cache skips even that for bytes seen before). It does not
//! parse frames or decide who may deploy (the session checks the admin secret), and reads no
//! config file (`config` hands it [`ModuleSource`]s).
//!
//! Directory layout of a module source: `DIR/*.wasm` go to the `DEFAULT` namespace and
//! `DIR/<ns>/*.wasm` to namespace `<ns>`.
//!
//! With a data directory ([`Deployer::keep_in`]), deploys and removals survive restarts
//! (`kept`): they are written down before they are published, and read back by
//! [`Deployer::load_all`].

pub mod kept;

use crate::registry::{Registry, RegistrySnapshot, DEFAULT_NAMESPACE};
use crate::runtime::{content_hash, LoadError, Module, Runtime};
use anyhow::Context;
use kept::{KeptDeploys, KeptModule, Manifest, Removal};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// How often module directories are looked at for changes.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// What a file looked like at one look: a file is loaded only after two looks agree, so a
/// file still being written is not loaded half-way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
}

fn stamp(path: &PathBuf) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp { len: meta.len(), modified: meta.modified().ok() })
}

#[derive(Default)]
struct State {
    /// Files from the sources: the stamp they were loaded at and their module (none: the file
    /// never loaded).
    files: HashMap<PathBuf, (FileStamp, Option<Arc<Module>>)>,
    /// Stamps seen at the previous look for files not yet (re)loaded.
    pending: HashMap<PathBuf, FileStamp>,
    /// Modules deployed over the wire, by (namespace, module name), in deploy order.
    deployed: Vec<Deployment>,
    /// Module files an admin removed from a namespace (until the file changes).
    removed: Vec<Removal>,
    /// Every loaded module by content hash, to reuse instead of recompiling.
    by_hash: HashMap<String, Arc<Module>>,
}

/// A module deployed over the wire into a namespace.
struct Deployment {
    namespace: String,
    module: Arc<Module>,
    size: u64,
    /// Seconds since the Unix epoch.
    at: u64,
}

impl State {
    /// What is kept of it: the deploys, in order, and the removals.
    fn manifest(&self) -> Manifest {
        let deployed = self
            .deployed
            .iter()
            .map(|d| KeptModule {
                namespace: d.namespace.clone(),
                name: d.module.name().to_owned(),
                hash: d.module.hash().to_owned(),
                size: d.size,
                deployed_at: d.at,
            })
            .collect();
        Manifest { deployed, removed: self.removed.clone() }
    }

    /// Whether an admin removed `module` (this version of it) from `namespace`.
    fn is_removed(&self, namespace: &str, module: &Module) -> bool {
        self.removed.iter().any(|r| r.namespace == namespace && r.name == module.name() && r.hash == module.hash())
    }
}

/// One module a namespace holds, and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct ModuleInfo {
    pub namespace: String,
    pub name: String,
    pub hash: String,
    pub size: u64,
    /// When it was deployed, or its file last changed (seconds since the Unix epoch).
    pub since: Option<u64>,
    /// `deployed` (over the wire), or the file's path.
    pub source: String,
}

/// One source of modules.
#[derive(Clone, Debug, PartialEq)]
pub enum ModuleSource {
    /// A directory scanned by the layout rule (see the module header).
    Dir(PathBuf),
    /// One file served in the given namespaces.
    File { path: PathBuf, namespaces: Vec<String> },
}

/// Every (file, namespace) pair the sources name, in a stable order.
pub fn placements(sources: &[ModuleSource]) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    for source in sources {
        match source {
            ModuleSource::File { path, namespaces } => {
                out.extend(namespaces.iter().map(|ns| (path.clone(), ns.clone())));
            }
            ModuleSource::Dir(dir) => {
                let entries =
                    std::fs::read_dir(dir).with_context(|| format!("reading modules directory {}", dir.display()))?;
                let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
                entries.sort();
                for entry in entries {
                    if entry.is_dir() {
                        let ns = entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                        let mut files: Vec<PathBuf> = std::fs::read_dir(&entry)?
                            .filter_map(|e| e.ok().map(|e| e.path()))
                            .filter(|p| is_wasm(p))
                            .collect();
                        files.sort();
                        out.extend(files.into_iter().map(|f| (f, ns.clone())));
                    } else if is_wasm(&entry) {
                        out.push((entry, DEFAULT_NAMESPACE.to_owned()));
                    }
                }
            }
        }
    }
    Ok(out)
}

fn is_wasm(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "wasm")
}

/// The host's modules and how to change them.
pub struct Deployer {
    runtime: Runtime,
    registry: Arc<Registry>,
    /// Tenants and groups, without modules: every snapshot starts from it.
    base: RegistrySnapshot,
    sources: Vec<ModuleSource>,
    state: Mutex<State>,
    /// Where deploys are kept across restarts (none: they last as long as the process).
    kept: Option<KeptDeploys>,
}

/// Result of deploying one module.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployed {
    pub module: String,
    pub hash: String,
    pub functions: Vec<String>,
}

impl Deployer {
    pub fn new(runtime: Runtime, registry: Arc<Registry>, base: RegistrySnapshot, sources: Vec<ModuleSource>) -> Self {
        Self { runtime, registry, base, sources, state: Mutex::new(State::default()), kept: None }
    }

    /// Keeps deploys and removals in `data_dir`, so that a restart serves what was deployed.
    pub fn keep_in(mut self, data_dir: &Path) -> Self {
        self.kept = Some(KeptDeploys::new(data_dir));
        self
    }

    /// Writes down `state`'s deploys and removals, if they are kept.
    fn keep(&self, state: &State) -> anyhow::Result<()> {
        match &self.kept {
            Some(kept) => kept.write(&state.manifest()),
            None => Ok(()),
        }
    }

    /// Reads back the kept deploys and removals into `state`; a kept module that no longer
    /// loads (or whose namespace no longer grants what it imports) is reported and left out.
    fn restore(&self, state: &mut State, failures: &mut Vec<String>) -> anyhow::Result<()> {
        let Some(kept) = &self.kept else { return Ok(()) };
        let manifest = kept.read()?;
        state.removed = manifest.removed;
        for entry in manifest.deployed {
            let loaded = kept
                .bytes(&entry.hash)
                .map_err(|e| e.to_string())
                .and_then(|bytes| self.load_bytes(state, &entry.name, &bytes).map_err(|e| e.to_string()))
                .and_then(|module| self.base.check_grants(&entry.namespace, &module).map(|()| module));
            match loaded {
                Ok(module) => state.deployed.push(Deployment {
                    namespace: entry.namespace,
                    module,
                    size: entry.size,
                    at: entry.deployed_at,
                }),
                Err(error) => {
                    tracing::error!(module = %entry.name, namespace = %entry.namespace, %error, "a kept deploy is not served");
                    failures.push(format!("kept deploy {} in {}: {error}", entry.name, entry.namespace));
                }
            }
        }
        Ok(())
    }

    /// Every module each namespace holds (or only `namespace`'s), files first, then deploys
    /// in order: the order snapshots are built in.
    pub fn modules(&self, namespace: Option<&str>) -> Vec<ModuleInfo> {
        let state = self.state();
        let wanted = |ns: &str| namespace.is_none_or(|n| n == ns);
        let mut out = Vec::new();
        for (path, ns) in placements(&self.sources).unwrap_or_default() {
            if let (true, Some((stamp, Some(module)))) = (wanted(&ns), state.files.get(&path)) {
                out.push(ModuleInfo {
                    namespace: ns,
                    name: module.name().to_owned(),
                    hash: module.hash().to_owned(),
                    size: stamp.len,
                    since: stamp
                        .modified
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_secs()),
                    source: path.display().to_string(),
                });
            }
        }
        for d in state.deployed.iter().filter(|d| wanted(&d.namespace)) {
            out.push(ModuleInfo {
                namespace: d.namespace.clone(),
                name: d.module.name().to_owned(),
                hash: d.module.hash().to_owned(),
                size: d.size,
                since: Some(d.at),
                source: "deployed".to_owned(),
            });
        }
        out
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Loads every source file now (no stability wait) and publishes. Returns the load errors.
    pub fn load_all(&self) -> anyhow::Result<Vec<String>> {
        let mut failures = Vec::new();
        let mut state = self.state();
        if state.files.is_empty() && state.deployed.is_empty() {
            self.restore(&mut state, &mut failures)?;
        }
        for (path, namespace) in placements(&self.sources)? {
            if state.files.contains_key(&path) {
                continue;
            }
            let Some(now) = stamp(&path) else { continue };
            let module = match self.load_for(&mut state, &path, &namespace) {
                Ok(m) => Self::unless_removed(&state, &namespace, m),
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "module not loaded");
                    failures.push(e.to_string());
                    None
                }
            };
            state.files.insert(path, (now, module));
        }
        self.publish(&state)?;
        Ok(failures)
    }

    /// Loads the file at `path` to serve in `namespace`, which must grant what it imports.
    fn load_for(&self, state: &mut State, path: &PathBuf, namespace: &str) -> Result<Arc<Module>, LoadError> {
        let module = self.load(state, path)?;
        self.base.check_grants(namespace, &module).map_err(|message| LoadError::NotGranted { message })?;
        Ok(module)
    }

    /// `module` unless an admin removed this version of it from `namespace`.
    fn unless_removed(state: &State, namespace: &str, module: Arc<Module>) -> Option<Arc<Module>> {
        if state.is_removed(namespace, &module) {
            tracing::info!(module = %module.name(), %namespace, "module file not served: an admin removed it");
            return None;
        }
        Some(module)
    }

    fn load(&self, state: &mut State, path: &PathBuf) -> Result<Arc<Module>, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Io { path: path.display().to_string(), source })?;
        let name = path.file_stem().map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned());
        self.load_bytes(state, &name, &bytes)
    }

    fn load_bytes(&self, state: &mut State, name: &str, bytes: &[u8]) -> Result<Arc<Module>, LoadError> {
        let hash = content_hash(bytes);
        if let Some(m) = state.by_hash.get(&hash).filter(|m| m.name() == name) {
            return Ok(m.clone());
        }
        let module = self.runtime.load_bytes(name, bytes)?;
        state.by_hash.insert(hash, module.clone());
        Ok(module)
    }

    /// Looks at the source files once: files that changed and then stayed the same since the
    /// previous look are reloaded (a failed reload keeps the previous version), removed files
    /// are dropped. Publishes a new snapshot when anything changed; returns whether it did.
    pub fn rescan(&self) -> anyhow::Result<bool> {
        let mut state = self.state();
        let placements = placements(&self.sources)?;
        let placed: Vec<&PathBuf> = placements.iter().map(|(p, _)| p).collect();
        let mut changed = false;
        let gone: Vec<PathBuf> = state.files.keys().filter(|p| !placed.contains(p)).cloned().collect();
        for path in gone {
            tracing::info!(file = %path.display(), "module file removed; unloading");
            state.files.remove(&path);
            changed = true;
        }
        for (path, namespace) in placements {
            let Some(now) = stamp(&path) else { continue };
            if state.files.get(&path).is_some_and(|(loaded_at, _)| *loaded_at == now) {
                state.pending.remove(&path);
                continue;
            }
            // Changed since it was loaded: wait until two looks agree.
            if state.pending.insert(path.clone(), now) != Some(now) {
                continue;
            }
            state.pending.remove(&path);
            match self.load_for(&mut state, &path, &namespace).map(|m| Self::unless_removed(&state, &namespace, m)) {
                Ok(module) => {
                    tracing::info!(file = %path.display(), hash = ?module.as_ref().map(|m| m.hash()), "module file changed; swapping in the new version");
                    state.files.insert(path, (now, module));
                    changed = true;
                }
                Err(e) => {
                    let previous = state.files.get(&path).and_then(|(_, m)| m.clone());
                    match &previous {
                        Some(_) => {
                            tracing::error!(file = %path.display(), error = %e, "changed module does not load; the previous version keeps serving")
                        }
                        None => {
                            tracing::error!(file = %path.display(), error = %e, "module file does not load; nothing of it is served")
                        }
                    }
                    state.files.insert(path, (now, previous));
                }
            }
        }
        if changed {
            self.publish(&state)?;
        }
        Ok(changed)
    }

    /// Deploys `bytes` as module `name` into `namespace` (a group: every member), replacing a
    /// module of that name deployed there before. A module that does not load changes nothing.
    pub fn deploy(&self, namespace: &str, name: &str, bytes: &[u8]) -> Result<Deployed, LoadError> {
        let deployed = self.deploy_unrecorded(namespace, name, bytes);
        crate::metrics::metrics().record_deploy(if deployed.is_ok() { "deployed" } else { "failed" });
        deployed
    }

    fn deploy_unrecorded(&self, namespace: &str, name: &str, bytes: &[u8]) -> Result<Deployed, LoadError> {
        let mut state = self.state();
        let module = self.load_bytes(&mut state, name, bytes)?;
        self.base.check_grants(namespace, &module).map_err(|message| LoadError::NotGranted { message })?;
        let not_kept = |e: anyhow::Error| LoadError::NotKept { name: name.to_owned(), message: format!("{e:#}") };
        if let Some(kept) = &self.kept {
            kept.keep_bytes(module.hash(), bytes).map_err(not_kept)?;
        }
        let previous = state.deployed.iter().position(|d| d.namespace == namespace && d.module.name() == name);
        let replaced = previous.map(|i| state.deployed.remove(i));
        let at = kept::now();
        state.deployed.push(Deployment {
            namespace: namespace.to_owned(),
            module: module.clone(),
            size: bytes.len() as u64,
            at,
        });
        if let Err(e) = self.keep(&state) {
            // Not written down: not deployed either.
            state.deployed.pop();
            if let (Some(i), Some(d)) = (previous, replaced) {
                state.deployed.insert(i, d);
            }
            return Err(not_kept(e));
        }
        self.publish(&state).map_err(|e| LoadError::Describe { name: name.to_owned(), message: e.to_string() })?;
        tracing::info!(module = %name, %namespace, hash = %module.hash(), "module deployed");
        Ok(Deployed {
            module: name.to_owned(),
            hash: module.hash().to_owned(),
            functions: module.descriptors().map(|d| d.name.clone()).collect(),
        })
    }

    /// Removes module `name` deployed into `namespace` over the wire, or served from a file
    /// in it (the file itself stays; a directory source picks it up again if it changes).
    pub fn remove(&self, namespace: &str, name: &str) -> Result<(), String> {
        let mut state = self.state();
        let before = state.deployed.len();
        state.deployed.retain(|d| !(d.namespace == namespace && d.module.name() == name));
        let mut removed = state.deployed.len() != before;
        let mut removals = Vec::new();
        if let Ok(placed) = placements(&self.sources) {
            for (path, ns) in placed {
                if ns == namespace {
                    if let Some((_, module)) = state.files.get_mut(&path) {
                        if let Some(m) = module.take_if(|m| m.name() == name) {
                            removals.push(Removal {
                                namespace: ns.clone(),
                                name: name.to_owned(),
                                hash: m.hash().to_owned(),
                            });
                            removed = true;
                        }
                    }
                }
            }
        }
        state.removed.extend(removals);
        if !removed {
            return Err(format!("no module {name} in namespace {namespace}"));
        }
        self.keep(&state).map_err(|e| format!("the removal could not be written down in the data directory: {e:#}"))?;
        crate::metrics::metrics().record_deploy("removed");
        self.publish(&state).map_err(|e| e.to_string())?;
        tracing::info!(module = %name, %namespace, "module removed");
        Ok(())
    }

    /// Builds the snapshot for `state` and swaps it in.
    fn publish(&self, state: &State) -> anyhow::Result<()> {
        let mut snapshot = self.base.clone();
        for (path, namespace) in placements(&self.sources)? {
            if let Some((_, Some(module))) = state.files.get(&path) {
                snapshot.add_module(&namespace, module);
            }
        }
        for d in &state.deployed {
            snapshot.add_module(&d.namespace, &d.module);
        }
        self.registry.publish(snapshot);
        Ok(())
    }
}

/// Rescans the module sources every [`WATCH_INTERVAL`] until `stop` completes.
pub async fn watch(deployer: Arc<Deployer>, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {}
        }
        let d = deployer.clone();
        // Loading compiles: keep it off the async workers.
        match tokio::task::spawn_blocking(move || d.rescan()).await {
            Ok(Err(e)) => tracing::warn!(error = %e, "module directory scan failed"),
            Err(e) => tracing::warn!(error = %e, "module directory scan panicked"),
            Ok(Ok(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_layout_maps_to_namespaces() {
        let dir = std::env::temp_dir().join(format!("easyrpc-layout-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("public")).unwrap();
        for f in ["top.wasm", "notes.txt", "public/a.wasm", "public/b.wasm"] {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        let got = placements(&[ModuleSource::Dir(dir.clone())]).unwrap();
        let got: Vec<(String, String)> =
            got.into_iter().map(|(p, ns)| (p.strip_prefix(&dir).unwrap().display().to_string(), ns)).collect();
        assert_eq!(
            got,
            vec![
                ("public/a.wasm".to_owned(), "public".to_owned()),
                ("public/b.wasm".to_owned(), "public".to_owned()),
                ("top.wasm".to_owned(), "DEFAULT".to_owned()),
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
