//! `easyrpc new NAME`: a guest crate in `./NAME` that builds for `wasm32-wasip2` and deploys as
//! it is: its WIT (a function with a default, one taking any JSON, a generator), the code, a
//! test, the stack-size setting, and EasyRpc's `types.wit` where `wit-bindgen` looks for it.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// Create a guest crate `NAME` in the current directory, ready to build and serve.
#[derive(clap::Args, Debug)]
pub struct NewArgs {
    /// The crate's name (letters, digits, `-`, `_`); also its directory and module name.
    pub name: String,
    /// The easyrpc-guest crate to depend on (default: this build's own guest-sdk directory,
    /// when it still exists).
    #[arg(long)]
    pub sdk: Option<PathBuf>,
}

const WORLD: &str = include_str!("scaffold/world.wit");
const LIB: &str = include_str!("scaffold/lib.rs");
const CARGO: &str = include_str!("scaffold/Cargo.toml");
const CARGO_CONFIG: &str = include_str!("scaffold/config.toml");
const TYPES: &str = include_str!("../../../wit/guest/types.wit");

pub fn run(args: NewArgs) -> anyhow::Result<()> {
    let name = &args.name;
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        bail!("{name:?}: a guest's name starts with a lowercase letter and has lowercase letters, digits, - and _");
    }
    let sdk = match args.sdk {
        Some(sdk) => sdk,
        None => {
            let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("guest-sdk");
            if !built_from.join("Cargo.toml").exists() {
                bail!("pass --sdk PATH: the easyrpc-guest crate (guest-sdk/ in EasyRpc's repository)");
            }
            built_from
        }
    };
    let sdk = sdk.canonicalize().with_context(|| format!("the SDK at {}", sdk.display()))?;
    let dir = Path::new(name);
    if dir.exists() {
        bail!("{} exists already", dir.display());
    }
    // WIT names use `-`, Rust's `_`.
    let wit_name = name.replace('_', "-");
    let module = wit_name.replace('-', "_");
    let fill = |template: &str| {
        template
            .replace("{{name}}", &wit_name)
            .replace("{{crate}}", &module)
            .replace("{{module}}", &module)
            .replace("{{sdk}}", &sdk.display().to_string())
    };
    let files = [
        ("Cargo.toml", fill(CARGO)),
        (".cargo/config.toml", CARGO_CONFIG.to_owned()),
        ("wit/world.wit", fill(WORLD)),
        ("wit/deps/easyrpc-guest/types.wit", TYPES.to_owned()),
        ("src/lib.rs", fill(LIB)),
    ];
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("created {}: cd {name} && cargo build --release --target wasm32-wasip2", dir.display());
    println!("then: easyrpc serve --secret s3cret target/wasm32-wasip2/release/{module}.wasm");
    println!("tests: cargo test --lib");
    Ok(())
}
