#![no_main]
//! Fuzz target `json`: `harness::json_frames` on each input.

#[macro_use]
#[allow(dead_code)]
#[path = "../harness.rs"]
mod harness;

fuzz_target_of!(json_frames);
