//! Any bytes as a webhook body: parse, translate and encode must never panic, and every
//! event they produce must be one PagerDuty accepts (`fuzz/checks/body_to_outcome.rs`).
#![no_main]

include!("../checks/body_to_outcome.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| body_to_outcome(data));
