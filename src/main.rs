//! The Lambda entry point. Wiring only; it grows the handler in the next step.

fn main() {
    eprintln!(
        "guance-pagerduty {}: the Lambda handler is not wired yet",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(1);
}
