#![no_main]
//! Fuzz target `setup`: `harness::setup` on each input.

#[macro_use]
#[allow(dead_code)]
#[path = "../harness.rs"]
mod harness;

fuzz_target_of!(setup);
