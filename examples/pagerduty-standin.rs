//! The PagerDuty stand-in as a process, for `make demo` and `make bench`: enforces the
//! Events API v2 contract on loopback, prints each event it accepts, and lists them at
//! `GET /_received`. It also plays PagerDuty's REST API and webhooks v3 (incidents and
//! their alerts, webhook subscriptions, signed `incident.resolved` deliveries); a person's
//! resolve is `POST /_resolve` with `{"incident_id": ...}` or `{"dedup_key": ...}`.
//!
//! It also keeps services and their integrations for `make setup` (`GET /services`, `GET
//! /services/{id}`, `POST /services/{id}/integrations`): `--service NAME` (repeatable)
//! adds a service at start and prints `service <id> <name>`; the integration key of an
//! Events API v2 integration made on it routes events to it.
//!
//! Usage: `cargo run --example pagerduty-standin -- [PORT] [--api-token TOKEN]...
//! [--service NAME]...` (default port 45662). `STANDIN_API_TOKEN` allows one more REST API
//! token; without any, every REST request is answered 401.

#[path = "../tests/support/pagerduty.rs"]
mod pagerduty;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut port: u16 = 45662;
    let mut tokens: Vec<String> = std::env::var("STANDIN_API_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .into_iter()
        .collect();
    let mut services: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--api-token" {
            match args.next() {
                Some(token) if !token.is_empty() => tokens.push(token),
                _ => usage("--api-token needs a value"),
            }
        } else if let Some(token) = arg.strip_prefix("--api-token=") {
            tokens.push(token.to_owned());
        } else if arg == "--service" {
            match args.next() {
                Some(name) if !name.trim().is_empty() => services.push(name),
                _ => usage("--service needs a name"),
            }
        } else if let Some(name) = arg.strip_prefix("--service=") {
            if name.trim().is_empty() {
                usage("--service needs a name");
            }
            services.push(name.to_owned());
        } else if let Ok(number) = arg.parse() {
            port = number;
        } else {
            usage(&format!("unknown argument {arg:?}"));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for name in &services {
        if !seen.insert(name.as_str()) {
            usage(&format!(
                "--service {name:?} given twice (service names are unique)"
            ));
        }
    }
    let standin = pagerduty::StandIn::start_on(([127, 0, 0, 1], port).into()).await;
    standin.echo();
    for token in &tokens {
        standin.allow_api_token(token);
    }
    println!("PagerDuty stand-in listening on {}", standin.events_url());
    println!(
        "REST API and webhooks v3 on {} ({} API token(s) allowed)",
        standin.api_url(),
        tokens.len()
    );
    for name in &services {
        let id = standin.add_service(name);
        println!("service {id} {name}");
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "pagerduty-standin: {problem}\nusage: pagerduty-standin [PORT] [--api-token TOKEN]... [--service NAME]..."
    );
    std::process::exit(2)
}
