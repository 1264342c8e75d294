#![no_main]
//! Fuzz target `convert`: `harness::convert_values` on each input.

#[macro_use]
#[allow(dead_code)]
#[path = "../harness.rs"]
mod harness;

fuzz_target_of!(convert_values);
