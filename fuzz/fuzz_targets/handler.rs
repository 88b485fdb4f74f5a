//! The whole handler on arbitrary requests: the answer is always JSON with an expected
//! status, never a panic, and never holds a secret (`fuzz/checks/handler.rs`).
#![no_main]

include!("../checks/handler.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| handler(data));
