#![no_main]
//! Fuzz target `convert`: see `harness::convert_values`.

#[path = "../harness.rs"]
#[allow(dead_code)]
mod harness;

#[global_allocator]
static ALLOCATOR: harness::Counting = harness::Counting;

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    if let Err(broken) = harness::run_checked(harness::convert_values, input, 1) {
        panic!("{broken}");
    }
});
