//! `make soak-queue`: queue mode under faults. Events (alerts and their recoveries) over
//! several routes go through the real webhook into moto's SQS FIFO queue while the
//! PagerDuty stand-in fails a third of the attempts and is down entirely for a while;
//! the real dispatcher drains the queue as Lambda's event source mapping would drive it.
//! Prints delivered, at risk (answered 5xx to Guance), lost and out of order; exits 1
//! unless lost, at risk and out of order are all 0. Loopback only.
//!
//! Usage: soak-queue [--events N] [--routes N] [--outage-seconds N] [--seed N]

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::pagerduty::RandomFaults;
use support::*;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn guance(route: &str, n: u64, recovery: bool) -> Value {
    json!({
        "df_status": if recovery { "ok" } else { "critical" },
        "df_title": format!("soak {route} problem {n}"),
        "df_event_id": format!("event-{route}-{n}-{}", if recovery { "ok" } else { "alert" }),
        "df_monitor_checker_event_ref": format!("soak-{route}-{n:06}"),
        "df_dimension_tags": "{\"host\":\"soak\"}",
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let events = arg("--events", 10_000);
    let routes = arg("--routes", 8) as usize;
    let outage = Duration::from_secs(arg("--outage-seconds", 10));
    let seed = arg(
        "--seed",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    let names: Vec<String> = (0..routes).map(|r| format!("route{r}")).collect();
    let keys: Vec<String> = (0..routes).map(|_| random_text(32)).collect();
    let route_keys: serde_json::Map<String, Value> = names
        .iter()
        .zip(&keys)
        .map(|(n, k)| (n.clone(), json!(k)))
        .collect();
    let w = world_with_secret(move |key, token| {
        json!({"routing_key": key, "webhook_token": token, "routes": route_keys}).to_string()
    })
    .await;
    let queues = w.moto.create_queues(30, 1000).await;
    let app = w.app(AppOptions {
        queue: Some(QueueOptions {
            attempts: 3,
            ..QueueOptions::new(&queues)
        }),
        retry: guance_pagerduty::delivery::RetryPolicy {
            attempt_timeout: Duration::from_millis(250),
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
            max_attempts: 3,
        },
        ..AppOptions::default()
    });
    w.standin.random_faults(RandomFaults {
        rate_limited: 20,
        server_error: 10,
        dropped: 5,
        stalled: 2,
        stall: Duration::from_millis(1000),
        seed,
    });

    // Per route: alert n, then the recovery of n-1, so every recovery follows its alert.
    let mut sent: HashMap<String, Vec<(String, String)>> = HashMap::new();
    let mut at_risk = 0u64;
    let started = Instant::now();
    w.standin.set_outage(true);
    let per_route = events / routes as u64 / 2;
    for n in 0..per_route {
        for (route, _) in names.iter().zip(&keys) {
            let mut body = vec![guance(route, n, false)];
            if n > 0 {
                body.push(guance(route, n - 1, true));
            }
            let event = with_path(
                with_body(w.event("alert.json"), &json!(body).to_string()),
                &format!("/{route}"),
            );
            let answer = call(&app, &event).await;
            if answer.status >= 500 {
                at_risk += body.len() as u64;
            }
            let lane = sent.entry(route.clone()).or_default();
            lane.push(("trigger".into(), format!("soak-{route}-{n:06}")));
            if n > 0 {
                lane.push(("resolve".into(), format!("soak-{route}-{:06}", n - 1)));
            }
        }
    }
    for route in &names {
        sent.get_mut(route).unwrap().push((
            "resolve".into(),
            format!("soak-{route}-{:06}", per_route - 1),
        ));
        let body = guance(route, per_route - 1, true);
        let event = with_path(
            with_body(w.event("alert.json"), &body.to_string()),
            &format!("/{route}"),
        );
        if call(&app, &event).await.status >= 500 {
            at_risk += 1;
        }
    }
    let accepted_in = started.elapsed();

    // PagerDuty stays down for the first `outage` of the drain, then comes back.
    let source = support::event_source::EventSource::new(w.moto.sqs(), &queues.url).await;
    let (invocations, ()) = tokio::join!(drain(&app, &source, Duration::from_secs(3600)), async {
        tokio::time::sleep(outage).await;
        w.standin.set_outage(false);
    });
    let drained_in = started.elapsed();

    let accepted = w.standin.accepted();
    let total: usize = sent.values().map(Vec::len).sum();
    let (mut lost, mut out_of_order, mut duplicates) = (0usize, 0usize, 0usize);
    for (route, key) in names.iter().zip(&keys) {
        let received: Vec<(String, String)> = accepted
            .iter()
            .filter(|a| &a.routing_key == key)
            .map(|a| (a.event_action.clone(), a.dedup_key.clone()))
            .collect();
        let mut first_seen = Vec::new();
        let mut seen = HashSet::new();
        for event in &received {
            if seen.insert(event.clone()) {
                first_seen.push(event.clone());
            } else {
                duplicates += 1;
            }
        }
        let expected = &sent[route];
        lost += expected.iter().filter(|e| !seen.contains(*e)).count();
        let position: HashMap<&(String, String), usize> =
            expected.iter().enumerate().map(|(i, e)| (e, i)).collect();
        out_of_order += first_seen
            .windows(2)
            .filter(|p| position.get(&p[0]) > position.get(&p[1]))
            .count();
    }
    let early_resolves = accepted
        .iter()
        .filter(|a| a.event_action == "resolve" && !a.resolved_open_alert)
        .count();
    let dead = w
        .moto
        .sqs()
        .receive_message()
        .queue_url(&queues.dlq)
        .send()
        .await;
    let dead = dead.map(|o| o.messages().len()).unwrap_or(0);
    println!("soak (queue mode): {total} events over {routes} routes, seed {seed}");
    println!(
        "  PagerDuty faults: 20% 429, 10% 500, 5% dropped, 2% stalled; down for the first {} s of the drain",
        outage.as_secs()
    );
    println!("  all answered by the webhook in {:.1} s; drained in {:.1} s, {invocations} dispatcher invocations", accepted_in.as_secs_f64(), drained_in.as_secs_f64());
    println!(
        "  PagerDuty requests {}, events taken {}",
        w.standin.requests(),
        accepted.len()
    );
    println!("| delivered | at risk (5xx to Guance) | lost | out of order | resolve before trigger | duplicates (at least once) | dead-lettered |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {} | {at_risk} | {lost} | {out_of_order} | {early_resolves} | {duplicates} | {dead} |",
        total - lost
    );
    if lost + out_of_order + early_resolves > 0 || at_risk > 0 {
        std::process::exit(1);
    }
}
