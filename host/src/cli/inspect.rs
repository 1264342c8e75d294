//! `easyrpc inspect FILE.wasm...`: print what a component imports (WASI, EasyRpc's host
//! functions) and each export as a readable signature with its docs, or the descriptors as JSON.

use crate::runtime::{Grant, Runtime, RuntimeConfig};
use anyhow::Context;
use std::path::PathBuf;

/// Show the functions a component exports, as callers will see them.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Component files (.wasm) to describe.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print the descriptors as JSON instead of signatures.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let runtime = Runtime::new(RuntimeConfig::default()).context("starting the WASM runtime")?;
    let mut all = serde_json::Map::new();
    for file in &args.files {
        let module = runtime.load_file(file)?;
        if args.json {
            let descriptors: Vec<_> = module.descriptors().collect();
            all.insert(module.name().to_owned(), serde_json::to_value(descriptors)?);
            continue;
        }
        println!("# {} ({})", module.name(), file.display());
        let imports = module.imports();
        println!("imports: {}", if imports.is_empty() { "none".to_owned() } else { imports.join(", ") });
        let mut grants: Vec<Grant> = imports.iter().filter_map(|i| Grant::needed_by(i)).collect();
        grants.sort_unstable();
        grants.dedup();
        let needs: Vec<&str> = grants.into_iter().map(Grant::name).collect();
        println!(
            "capabilities: {}",
            if needs.is_empty() {
                "none".to_owned()
            } else {
                format!("{} (its namespace must grant them)", needs.join(", "))
            }
        );
        for d in module.descriptors() {
            println!("{d}");
            for line in d.doc.iter().flat_map(|doc| doc.lines()) {
                println!("    {line}");
            }
        }
        println!();
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    }
    Ok(())
}
