//! The fuzz targets' checks, compiled into the test build and run over the seed corpus
//! `make fuzz` starts from (`events/` and the contract's example): a target that no
//! longer compiles against the crate, or a seed that fails it, fails `make test`, with no
//! fuzzing time spent. `make fuzz` itself builds the targets with cargo-fuzz and fails on
//! a build failure or a crash.

mod body_to_outcome {
    include!("../fuzz/checks/body_to_outcome.rs");
}
mod handler {
    include!("../fuzz/checks/handler.rs");
}

const EVENTS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/events");
const CONTRACT_EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/contract-example-alert.json"
);

/// Each sample function URL event, whole and as the body it carries.
fn seeds() -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let mut seeds: Vec<_> = std::fs::read_dir(EVENTS_DIR)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let event = std::fs::read(&path).unwrap();
            let value: serde_json::Value = serde_json::from_slice(&event).unwrap();
            let body = value["body"]
                .as_str()
                .unwrap_or_default()
                .as_bytes()
                .to_vec();
            (path.display().to_string(), event, body)
        })
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 8, "the seed corpus is events/");
    seeds
}

#[test]
fn the_body_to_outcome_target_passes_every_seed() {
    for (name, _event, body) in seeds() {
        println!("{name}");
        body_to_outcome::body_to_outcome(&body);
    }
    body_to_outcome::body_to_outcome(&std::fs::read(CONTRACT_EXAMPLE).unwrap());
    body_to_outcome::body_to_outcome(b"");
    body_to_outcome::body_to_outcome(b"[{\"df_status\":\"ok\"}, 7]");
}

#[test]
fn the_handler_target_passes_every_seed() {
    for (name, event, body) in seeds() {
        println!("{name}");
        handler::handler(&event);
        handler::handler(&body);
    }
    handler::handler(b"\xff\xfe not even UTF-8");
}
