#![no_main]
//! Fuzz target `pickle`: `harness::pickle_frames` on each input.

#[macro_use]
#[allow(dead_code)]
#[path = "../harness.rs"]
mod harness;

fuzz_target_of!(pickle_frames);
