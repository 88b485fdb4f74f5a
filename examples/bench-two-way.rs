//! `make bench`'s two-way figures: a signed `incident.resolved` through the real handler
//! (signature, decision, PagerDuty's REST API for the incident's alerts, Guance's restore)
//! against the PagerDuty and Guance stand-ins on loopback, and the signature check alone.
//! Prints a Markdown section for BENCHMARKS.md.
//!
//! Usage: `cargo run --release --example bench-two-way -- [--deliveries N]`

#[path = "../tests/support/guance.rs"]
mod guance;
#[path = "../tests/support/pagerduty.rs"]
mod pagerduty;

use guance_pagerduty::adapters::delivery::{PagerDutyClient, RetryPolicy};
use guance_pagerduty::adapters::guance_openapi::GuanceOpenApi;
use guance_pagerduty::adapters::metrics::{Memory, Metrics};
use guance_pagerduty::adapters::pagerduty_rest::PagerDutyRest;
use guance_pagerduty::adapters::secret::{
    Credential, GuanceWorkspace, RoutingKey, SecretCache, StaticSource, TwoWaySecrets,
    WebhookSecrets,
};
use guance_pagerduty::domain::pagerduty_webhook::signature_matches;
use guance_pagerduty::entry::app::{App, Invocation, TwoWay};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROUTING_KEY: &str = "benchR0utingKey00000000000000000";
const SIGNING_SECRET: &str = "bench-pagerduty-signing-secret-0123456789";
const API_TOKEN: &str = "bench-pagerduty-rest-api-key";
const WORKSPACE: &str = "wksp_00000000000000000000000000000bec";
const GUANCE_KEY: &str = "benchGuanceApiKey0123456789abcdef";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let deliveries: usize = std::env::args()
        .skip_while(|a| a != "--deliveries")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(500);
    let standin = pagerduty::StandIn::start().await;
    standin.allow_api_token(API_TOKEN);
    let guance = guance::StandIn::start().await;
    guance.add_workspace(WORKSPACE, GUANCE_KEY);
    // The bench measures the bridge, not Guance's limit of 20 a minute.
    guance.set_limits(usize::MAX, usize::MAX, Duration::from_secs(60));

    // One incident per delivery, each from a Guance alert of its own.
    let http = PagerDutyClient::http_client().unwrap();
    let mut incidents = Vec::with_capacity(deliveries);
    for n in 0..deliveries {
        let event_ref = format!("bench-ref-{n}");
        let event = json!({"routing_key": ROUTING_KEY, "event_action": "trigger", "dedup_key": event_ref,
                           "payload": {"summary": "bench", "source": "bench", "severity": "error",
                                       "custom_details": {"df_workspace_uuid": WORKSPACE, "df_monitor_checker_event_ref": event_ref}}});
        let status = http
            .post(standin.events_url())
            .header("content-type", "application/json")
            .body(event.to_string())
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 202);
        let incident = standin.incident_for(&event_ref).unwrap();
        standin.resolve_as_person(&incident);
        incidents.push(incident);
    }

    let secrets = WebhookSecrets {
        routing_key: RoutingKey::new(ROUTING_KEY).unwrap(),
        webhook_tokens: Vec::new(),
        routes: Default::default(),
        two_way: Some(TwoWaySecrets {
            signing_secrets: Credential::new(SIGNING_SECRET).into_iter().collect(),
            pagerduty_api_token: Credential::new(API_TOKEN),
            guance_workspaces: [(
                WORKSPACE.to_owned(),
                GuanceWorkspace {
                    api_key: Credential::new(GUANCE_KEY).unwrap(),
                    openapi_url: guance.openapi_url(),
                },
            )]
            .into(),
        }),
    };
    let app = App {
        queue: None,
        settings: Default::default(),
        secrets: SecretCache::new(
            StaticSource(secrets),
            Duration::from_secs(300),
            Duration::from_secs(60),
        ),
        pagerduty: PagerDutyClient::new(http.clone(), standin.events_url(), RetryPolicy::default()),
        max_body_bytes: 6 << 20,
        allow_unauthenticated: false,
        dry_run: false,
        deadline_margin: Duration::from_millis(500),
        default_budget: Duration::from_secs(10),
        metrics: Metrics::new("guance-pagerduty/bench", Arc::new(Memory::default())),
        two_way: TwoWay {
            pagerduty_rest: PagerDutyRest::new(http.clone(), standin.api_url()),
            guance: GuanceOpenApi::new(http),
            progress: Default::default(),
        },
    };

    let template: serde_json::Value =
        serde_json::from_str(include_str!("../events/resolved-in-pagerduty.json")).unwrap();
    let mut took = Vec::with_capacity(deliveries);
    let mut body_bytes = 0;
    for incident in &incidents {
        let body = pagerduty::webhook_delivery(
            "incident.resolved",
            incident,
            Some("user_reference"),
            false,
        )
        .to_string();
        body_bytes = body.len();
        let mut event = template.clone();
        event["headers"]["x-pagerduty-signature"] =
            json!(pagerduty::sign(body.as_bytes(), SIGNING_SECRET));
        event["body"] = json!(body);
        let request = serde_json::from_value(event).unwrap();
        let started = Instant::now();
        let response = app.handle(request, &Invocation::new("bench", 0)).await;
        took.push(started.elapsed());
        assert_eq!(response.status_code, 200, "{:?}", response.body);
    }
    assert_eq!(
        guance.restores().len(),
        deliveries,
        "every event restored once"
    );
    took.sort();

    // The signature check alone: one secret, and two during a rotation (the worst case:
    // the signature is the second secret's).
    let body =
        pagerduty::webhook_delivery("incident.resolved", "QBENCH", Some("user_reference"), false)
            .to_string();
    let signature = pagerduty::sign(body.as_bytes(), SIGNING_SECRET);
    let check = |secrets: &[&str]| {
        let rounds = 20_000;
        let started = Instant::now();
        for _ in 0..rounds {
            assert!(signature_matches(
                std::hint::black_box(body.as_bytes()),
                &signature,
                secrets
            ));
        }
        started.elapsed().as_secs_f64() * 1e6 / rounds as f64
    };
    let one = check(&[SIGNING_SECRET]);
    let two = check(&["the-old-secret-still-listed", SIGNING_SECRET]);

    println!(
        "
## Two-way: PagerDuty's webhook to Guance's restore

Measured by `examples/bench-two-way.rs` (release build, in process, both stand-ins on
loopback, no TLS): {deliveries} signed `incident.resolved` deliveries of {body_bytes} bytes,
each for an incident of its own holding one Guance alert. Each is checked (HMAC-SHA256),
decided, its alerts read from PagerDuty's REST API (one page), its event checked against
PagerDuty for an open incident of the same key, and restored in Guance: three HTTP round
trips on loopback.

| Figure | p50 | p99 |
|---|---|---|
| signed delivery to its answer (REST call and restore included) | {p50:.2} ms | {p99:.2} ms |

| Signature check alone (the {body_bytes}-byte delivery) | per delivery |
|---|---|
| one signing secret | {one:.2} µs |
| two, during a rotation (both computed, as always) | {two:.2} µs |

On AWS each of the three calls adds a TLS round trip to PagerDuty's and Guance's hosts:
tens of milliseconds, well inside PagerDuty's 5 s (the bridge's own budget is 4 s).",
        p50 = ms(percentile(&took, 0.5)),
        p99 = ms(percentile(&took, 0.99)),
    );
}
