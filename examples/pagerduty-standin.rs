//! The PagerDuty stand-in as a process, for `make demo` and `make bench`: enforces the
//! Events API v2 contract on loopback, prints each event it accepts, and lists them at
//! `GET /_received`.
//!
//! Usage: `cargo run --example pagerduty-standin -- [PORT]` (default 45662).

#[path = "../tests/support/pagerduty.rs"]
mod pagerduty;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(45662);
    let standin = pagerduty::StandIn::start_on(([127, 0, 0, 1], port).into()).await;
    standin.echo();
    println!("PagerDuty stand-in listening on {}", standin.events_url());
    let _ = tokio::signal::ctrl_c().await;
}
