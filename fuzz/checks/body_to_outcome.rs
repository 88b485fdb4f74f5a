// The body of the `body_to_outcome` fuzz target, shared with `tests/fuzz_seeds.rs`, which
// compiles it into `make test` and runs it over the seed corpus: a target that no longer
// builds, or a seed that fails it, fails the tests, not only `make fuzz`.

use guance_pagerduty::domain::pagerduty::{MAX_BODY_BYTES, MAX_DEDUP_KEY_CHARS, MAX_SUMMARY_CHARS};
use guance_pagerduty::domain::guance::parse_body;
use guance_pagerduty::domain::pagerduty::Severity;
use guance_pagerduty::domain::translate::{translate, InfoEvents, Outcome, Settings};

const BODY_ROUTING_KEY: &str = "R0UT1NGKEY0123456789abcdefghijkl";

/// Any bytes as a webhook body: parse, translate and encode must never panic, and every
/// event they produce must be one PagerDuty accepts.
pub fn body_to_outcome(data: &[u8]) {
    let Ok(events) = parse_body(data) else { return };
    let settings = [
        Settings::default(),
        Settings {
            nodata_severity: Severity::Info,
            unknown_status_severity: Severity::Critical,
            info_events: InfoEvents::Drop,
        },
    ];
    for event in &events {
        for settings in &settings {
            if let Outcome::Send(pd) = translate(event, settings).outcome {
                let body = pd.encode(BODY_ROUTING_KEY).expect("a built event always fits");
                assert!(body.len() <= MAX_BODY_BYTES);
                assert!(pd.payload.summary.chars().count() <= MAX_SUMMARY_CHARS);
                assert!(!pd.payload.source.trim().is_empty());
                assert!(!pd.dedup_key.is_empty() && pd.dedup_key.chars().count() <= MAX_DEDUP_KEY_CHARS);
                let reparsed: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
                assert_eq!(reparsed["routing_key"], BODY_ROUTING_KEY);
            }
        }
    }
}
