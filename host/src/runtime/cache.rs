//! On-disk cache of compiled components, keyed by content hash.
//!
//! Owns the cache directory layout: one file per (module bytes, engine configuration), named
//! `<sha256 of the .wasm>-<engine compatibility hash>.cwasm`, written atomically (temp file +
//! rename) so a crash never leaves a half-written entry that a later start would trust, and read
//! into memory (never memory-mapped) so an entry changed under a running host cannot crash it. A
//! corrupt or stale entry is recompiled and overwritten, never fatal. Only files this cache
//! wrote are ever deserialized, which is what makes wasmtime's unsafe `deserialize` sound here.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Where a compiled component came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Compiled now (no cache configured).
    Compiled,
    /// Compiled now and stored in the cache.
    CompiledAndStored,
    /// Loaded from the cache without compiling.
    Hit,
}

pub struct ComponentCache {
    dir: PathBuf,
    engine_tag: String,
}

/// Hex SHA-256 of a module's bytes: its identity in the cache and in logs.
pub fn content_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl ComponentCache {
    pub fn new(engine: &Engine, dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self { dir, engine_tag: format!("{:016x}", hasher.finish()) })
    }

    fn entry_path(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}-{}.cwasm", self.engine_tag))
    }

    /// Loads the compiled form of `bytes` (whose hash is `hash`) from the cache, or compiles it
    /// and stores the result. A failure to store is logged, not returned.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        hash: &str,
        compile: impl FnOnce() -> anyhow::Result<Component>,
    ) -> anyhow::Result<(Component, CacheOutcome)> {
        let path = self.entry_path(hash);
        // Read into memory rather than `deserialize_file`: a memory-mapped entry that someone
        // truncates or rewrites in place would crash the host with SIGBUS.
        if let Ok(serialized) = std::fs::read(&path) {
            // SAFETY: the file was written by `store` below from `Component::serialize` of this
            // engine configuration (the engine tag is in the name); wasmtime additionally checks
            // the header and rejects incompatible or truncated artifacts with an error.
            match unsafe { Component::deserialize(engine, &serialized) } {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "discarding unreadable cache entry"),
            }
        }
        let component = compile()?;
        match self.store(&path, &component) {
            Ok(()) => Ok((component, CacheOutcome::CompiledAndStored)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not write compiled module to cache");
                Ok((component, CacheOutcome::Compiled))
            }
        }
    }

    fn store(&self, path: &Path, component: &Component) -> anyhow::Result<()> {
        let serialized = component.serialize()?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, serialized)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}
