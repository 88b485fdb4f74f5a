//! `make soak`: 10,000 events, alerts and their recoveries interleaved, through the real
//! handler while the PagerDuty stand-in answers 20% 429, 10% 500, drops 5% of connections
//! and stalls 2% past the attempt timeout. Loopback only, bounded in count and time.
//!
//! Usage: soak [--events N] [--workers N] [--seed N]

#[path = "../tests/support/pagerduty.rs"]
mod pagerduty;

use guance_pagerduty::adapters::delivery::{PagerDutyClient, RetryPolicy};
use guance_pagerduty::adapters::guance_openapi::GuanceOpenApi;
use guance_pagerduty::adapters::metrics::{Memory, Metrics};
use guance_pagerduty::adapters::pagerduty_rest::PagerDutyRest;
use guance_pagerduty::adapters::secret::{
    RoutingKey, SecretCache, StaticSource, WebhookSecrets, WebhookToken,
};
use guance_pagerduty::domain::translate::Settings;
use guance_pagerduty::entry::app::{App, Invocation, TwoWay};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TOKEN: &str = "soak-webhook-token";
const ROUTING_KEY: &str = "soakR0utingKey000000000000000000";
/// A recovery sent in a request of its own follows its alert this many requests later,
/// as Guance sends it minutes later; concurrent workers may still race the two.
const RECOVERY_GAP: usize = 100;
/// The whole soak stops by itself after this, whatever is left.
const TIME_LIMIT: Duration = Duration::from_secs(600);

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One Guance event of problem `n`: its own monitor reference, so its own dedup_key.
fn guance_event(example: &Value, n: u64, recovery: bool) -> Value {
    let mut e = example.clone();
    e["df_monitor_checker_event_ref"] = json!(format!("soak-problem-{n:06}"));
    e["df_event_id"] = json!(format!(
        "event-{n:06}-{}",
        if recovery { "ok" } else { "alert" }
    ));
    e["df_status"] = json!(if recovery { "ok" } else { "critical" });
    e
}

fn request(body: &Value) -> lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/events/alert.json");
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    event["queryStringParameters"] = json!({"token": TOKEN});
    event["body"] = json!(body.to_string());
    serde_json::from_value(event).unwrap()
}

/// What the caller was told about one event.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Told {
    Sent,
    Failed5xx,
    Other,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let events = arg("--events", 10_000);
    let workers = arg("--workers", 8);
    let seed = arg(
        "--seed",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );

    let standin = pagerduty::StandIn::start().await;
    let attempt_timeout = Duration::from_millis(250);
    standin.random_faults(pagerduty::RandomFaults {
        rate_limited: 20,
        server_error: 10,
        dropped: 5,
        stalled: 2,
        stall: attempt_timeout * 4,
        seed,
    });
    let metric_lines = Memory::default();
    let app = Arc::new(App {
        queue: None,
        settings: Settings::default(),
        secrets: SecretCache::new(
            StaticSource(WebhookSecrets {
                routing_key: RoutingKey::new(ROUTING_KEY).unwrap(),
                webhook_tokens: WebhookToken::new(TOKEN).into_iter().collect(),
                routes: Default::default(),
                two_way: None,
            }),
            Duration::from_secs(300),
            Duration::from_secs(60),
        ),
        pagerduty: PagerDutyClient::new(
            PagerDutyClient::http_client().unwrap(),
            standin.events_url(),
            RetryPolicy {
                attempt_timeout,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(80),
                max_attempts: 6,
            },
        ),
        max_body_bytes: 1 << 20,
        allow_unauthenticated: false,
        dry_run: false,
        deadline_margin: Duration::from_millis(100),
        default_budget: Duration::from_secs(3),
        metrics: Metrics::new("guance-pagerduty/soak", Arc::new(metric_lines.clone())),
        two_way: TwoWay {
            pagerduty_rest: PagerDutyRest::new(
                PagerDutyClient::http_client().unwrap(),
                "http://127.0.0.1:9",
            ),
            guance: GuanceOpenApi::new(PagerDutyClient::http_client().unwrap()),
            progress: Default::default(),
        },
    });

    // Requests: a third carry an alert and its recovery together (order within the
    // request matters); the rest carry one event, the recovery coming in a later request.
    let example: Value = serde_json::from_str(include_str!(
        "../tests/fixtures/contract-example-alert.json"
    ))
    .unwrap();
    let mut requests: Vec<Vec<(u64, bool)>> = Vec::new();
    let mut pending_recoveries = Vec::new();
    let mut n = 0;
    let mut made = 0;
    while made < events {
        if n % 3 == 0 && made + 2 <= events {
            requests.push(vec![(n, false), (n, true)]);
            made += 2;
        } else {
            requests.push(vec![(n, false)]);
            pending_recoveries.push(n);
            made += 1;
            if pending_recoveries.len() >= RECOVERY_GAP && made < events {
                requests.push(vec![(pending_recoveries.remove(0), true)]);
                made += 1;
            }
        }
        n += 1;
    }
    for recovery in pending_recoveries {
        if made < events {
            requests.push(vec![(recovery, true)]);
            made += 1;
        }
    }
    let total_events: usize = requests.iter().map(Vec::len).sum();

    let started = Instant::now();
    let queue = Arc::new(tokio::sync::Mutex::new(requests.into_iter().enumerate()));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (queue, app, example) = (Arc::clone(&queue), Arc::clone(&app), example.clone());
        tasks.push(tokio::spawn(async move {
            let mut told: Vec<((u64, bool), Told, usize)> = Vec::new();
            loop {
                if started.elapsed() > TIME_LIMIT {
                    break;
                }
                let Some((index, request_events)) = queue.lock().await.next() else {
                    break;
                };
                let body = if request_events.len() == 1 {
                    guance_event(&example, request_events[0].0, request_events[0].1)
                } else {
                    Value::Array(
                        request_events
                            .iter()
                            .map(|(n, r)| guance_event(&example, *n, *r))
                            .collect(),
                    )
                };
                let deadline = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as u64
                    + 3_000;
                let response = app
                    .handle(
                        request(&body),
                        &Invocation::new(format!("soak-{index}"), deadline),
                    )
                    .await;
                let answer: Value = match &response.body {
                    Some(lambda_http::Body::Text(t)) => {
                        serde_json::from_str(t).unwrap_or(Value::Null)
                    }
                    _ => Value::Null,
                };
                let results = answer["results"].as_array().cloned().unwrap_or_default();
                for (i, event) in request_events.iter().enumerate() {
                    let outcome = results
                        .get(i)
                        .and_then(|r| r["outcome"].as_str())
                        .unwrap_or("");
                    let status = response.status_code;
                    let t = match (status, outcome) {
                        (202 | 500..=599, "sent") => Told::Sent,
                        (500..=599, _) => Told::Failed5xx,
                        _ => Told::Other,
                    };
                    told.push((*event, t, index));
                }
            }
            told
        }));
    }
    let mut told = Vec::new();
    for task in tasks {
        told.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();

    // What PagerDuty (the stand-in) took, in the order it took them.
    let accepted = standin.accepted();
    let mut accepted_triggers: HashMap<String, usize> = HashMap::new();
    let mut accepted_resolves: HashSet<String> = HashSet::new();
    let mut resolve_before_trigger = 0;
    for a in &accepted {
        match a.event_action.as_str() {
            "trigger" => *accepted_triggers.entry(a.dedup_key.clone()).or_default() += 1,
            "resolve" => {
                accepted_resolves.insert(a.dedup_key.clone());
                if !a.resolved_open_alert {
                    resolve_before_trigger += 1;
                }
            }
            _ => {}
        }
    }
    let key = |n: u64| format!("soak-problem-{n:06}");
    let (mut delivered, mut failed, mut failed_but_arrived, mut lost, mut other) = (0, 0, 0, 0, 0);
    for ((n, recovery), t, _) in &told {
        let arrived = if *recovery {
            accepted_resolves.contains(&key(*n))
        } else {
            accepted_triggers.contains_key(&key(*n))
        };
        match t {
            Told::Sent if arrived => delivered += 1,
            Told::Sent => lost += 1,
            Told::Failed5xx => {
                failed += 1;
                failed_but_arrived += usize::from(arrived);
            }
            Told::Other => other += 1,
        }
    }
    let resolves_accepted = accepted
        .iter()
        .filter(|a| a.event_action == "resolve")
        .count();
    let duplicate_resolves = resolves_accepted - accepted_resolves.len();
    let unanswered = total_events - told.len();
    // A resolve accepted with no open alert is "before its trigger" only when its trigger
    // was in the same request and was delivered; across requests the caller may have
    // been told the trigger failed.
    let same_request_pairs: HashSet<u64> = told
        .iter()
        .filter(|((_, r), _, _)| *r)
        .filter_map(|((n, _), _, idx)| {
            told.iter()
                .any(|((m, r2), _, idx2)| m == n && !r2 && idx2 == idx)
                .then_some(*n)
        })
        .collect();
    let in_request_inversions = accepted
        .iter()
        .filter(|a| a.event_action == "resolve" && !a.resolved_open_alert)
        .filter(|a| same_request_pairs.iter().any(|n| key(*n) == a.dedup_key))
        .count();
    let duplicate_triggers: usize = accepted_triggers
        .values()
        .map(|c| c.saturating_sub(1))
        .sum();

    println!(
        "soak: {total_events} events in {} requests, {workers} workers, seed {seed}, {:.1} s",
        told.iter().map(|t| t.2).collect::<HashSet<_>>().len(),
        elapsed.as_secs_f64()
    );
    println!("stand-in: {} requests, {} connections, {} events accepted; faults 20% 429, 10% 500, 5% dropped, 2% stalled {} ms past a {} ms timeout", standin.requests(), standin.connections(), accepted.len(), (attempt_timeout * 4).as_millis(), attempt_timeout.as_millis());
    println!();
    println!("| outcome | events |");
    println!("|---|---|");
    println!("| delivered (caller told sent, PagerDuty has it) | {delivered} |");
    println!("| reported failed to the caller with a 5xx | {failed} |");
    println!("| of those, PagerDuty had it anyway (an answer lost to a timeout; the caller's retry is harmless) | {failed_but_arrived} |");
    println!(
        "| silently lost (told sent, never arrived, or no answer) | {} |",
        lost + unanswered
    );
    println!("| other answers (4xx) | {other} |");
    println!(
        "| resolve delivered before its trigger within one request | {in_request_inversions} |"
    );
    println!("| resolves that found no open alert (their trigger failed, or raced it from another request) | {resolve_before_trigger} |");
    println!("| duplicate triggers | {duplicate_triggers} |");
    println!("| duplicate resolves | {duplicate_resolves} |");
    // The metric lines must tell the same story as the answers.
    let mut by_outcome: std::collections::BTreeMap<String, u64> = Default::default();
    for line in metric_lines.lines() {
        let line: Value = serde_json::from_str(&line).unwrap();
        if let Some(events) = line["Events"].as_u64() {
            *by_outcome
                .entry(line["Outcome"].as_str().unwrap_or_default().to_owned())
                .or_default() += events;
        }
    }
    let counted = |outcome: &str| by_outcome.get(outcome).copied().unwrap_or(0);
    println!("| CloudWatch metric `Events` by outcome (EMF lines) | {by_outcome:?} |");
    let metrics_agree =
        counted("delivered") == delivered as u64 && counted("received") == total_events as u64;
    let ok = metrics_agree
        && lost + unanswered == 0
        && in_request_inversions == 0
        && other == 0
        && delivered + failed == total_events;
    println!();
    println!(
        "soak: {}",
        if ok {
            "PASS: nothing lost, nothing out of order"
        } else {
            "FAIL"
        }
    );
    std::process::exit(if ok { 0 } else { 1 });
}
