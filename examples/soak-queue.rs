//! `make soak-queue`: queue mode under faults. Events (alerts and their recoveries) over
//! several routes go through the real webhook into moto's SQS FIFO queue while the
//! PagerDuty stand-in fails a third of the attempts and is down entirely for a while;
//! the real dispatcher drains the queue as Lambda's event source mapping would drive it,
//! and dies mid-batch `--crashes` times (killed while PagerDuty holds its third request,
//! as a crash or timeout would end it; the mapping then deletes nothing).
//! Prints delivered, at risk (answered 5xx to Guance), lost, out of order and duplicated;
//! exits 1 unless all of those are 0. Loopback only.
//!
//! Usage: soak-queue [--events N] [--routes N] [--outage-seconds N] [--rate N] [--crashes N] [--seed N]
//!
//! Guance and the dispatcher run side by side; PagerDuty is down from `--outage-seconds`
//! after the start until twice that.

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::pagerduty::{Fault, RandomFaults};
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
    // Guance's pace, events per second over all routes (0: as fast as the webhook answers).
    let rate = arg("--rate", 50);
    let crash_target = arg("--crashes", 3);
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
    let w = world_on(Moto::start_fast_clock(), move |key, token| {
        json!({"routing_key": key, "webhook_token": token, "routes": route_keys}).to_string()
    })
    .await;
    let queues = w.moto.create_queues(30, 1000).await;
    let app = w.app(AppOptions {
        queue: Some(QueueOptions {
            attempts: 3,
            ..QueueOptions::new(&queues)
        }),
        retry: guance_pagerduty::adapters::delivery::RetryPolicy {
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

    // Guance and the event source mapping run at the same time, as deployed: each route
    // posts alert n, then the recovery of n-1 (so every recovery follows its alert),
    // while the dispatcher drains. PagerDuty goes down `outage` after the start and
    // stays down for `outage`, so a backlog builds and must drain in order.
    let source = support::event_source::EventSource::new(w.moto.sqs(), &queues.url).await;
    let per_route = events / routes as u64 / 2;
    let done = std::sync::atomic::AtomicBool::new(false);
    let answered: Arc<Mutex<HashMap<(String, String), Instant>>> = Default::default();
    let app = Arc::new(app);
    let template = w.event("alert.json");
    let started = Instant::now();
    let lanes: Vec<_> = names
        .iter()
        .cloned()
        .map(|route| {
            let (app, template, answered) =
                (Arc::clone(&app), template.clone(), Arc::clone(&answered));
            tokio::spawn(async move {
                // Posts one body; `events` are its (action, dedup_key) pairs, in order.
                let post = |body: Vec<Value>, events: Vec<(String, String)>| {
                    let event = with_path(
                        with_body(template.clone(), &json!(body).to_string()),
                        &format!("/{route}"),
                    );
                    let (app, answered) = (&app, &answered);
                    async move {
                        let status = call(app, &event).await.status;
                        let now = Instant::now();
                        let mut answered = answered.lock().unwrap();
                        for event in &events {
                            answered.insert(event.clone(), now);
                        }
                        if status >= 500 {
                            events.len() as u64
                        } else {
                            0
                        }
                    }
                };
                let (mut sent, mut at_risk) = (Vec::new(), 0);
                let lane_rate = rate as f64 / routes as f64;
                for n in 0..per_route {
                    if rate > 0 {
                        let due = Duration::from_secs_f64(sent.len() as f64 / lane_rate);
                        tokio::time::sleep_until((started + due).into()).await;
                    }
                    let before = sent.len();
                    let mut body = vec![guance(&route, n, false)];
                    sent.push(("trigger".to_owned(), format!("soak-{route}-{n:06}")));
                    if n > 0 {
                        body.push(guance(&route, n - 1, true));
                        sent.push(("resolve".to_owned(), format!("soak-{route}-{:06}", n - 1)));
                    }
                    at_risk += post(body, sent[before..].to_vec()).await;
                }
                let last = (
                    "resolve".to_owned(),
                    format!("soak-{route}-{:06}", per_route - 1),
                );
                sent.push(last.clone());
                at_risk += post(vec![guance(&route, per_route - 1, true)], vec![last]).await;
                (route, sent, at_risk)
            })
        })
        .collect();
    let producer = async {
        let mut finished = Vec::new();
        for lane in lanes {
            finished.push(lane.await.expect("a route's webhook calls"));
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        (finished, started.elapsed())
    };
    // Lambda's event source mapping, as `support::drain_until_done` plays it, except that
    // now and then the invocation dies mid-batch: once PagerDuty took two records of a
    // batch of three or more and holds the third, the invocation is dropped, and the
    // mapping deletes nothing of the batch.
    let consumer = async {
        let (mut invocations, mut crashes) = (0u64, 0u64);
        let crash_every = (events / 10 / crash_target.max(1)).max(5);
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(3600),
                "the queue did not drain within an hour"
            );
            let messages = source.receive(1).await;
            if messages.is_empty() {
                if done.load(std::sync::atomic::Ordering::SeqCst) && source.depth().await == 0 {
                    return (invocations, crashes);
                }
                continue;
            }
            invocations += 1;
            let event = serde_json::from_value(source.sqs_event(&messages)).unwrap();
            let lambda = invocation(Duration::from_secs(30));
            let dispatch = app.dispatch(event, &lambda);
            let crash =
                crashes < crash_target && messages.len() >= 3 && invocations % crash_every == 0;
            if !crash {
                let response = serde_json::to_value(dispatch.await).unwrap();
                source.settle(&messages, Some(&response)).await;
                continue;
            }
            let before = w.standin.requests();
            w.standin.script([
                Fault::Pass,
                Fault::Pass,
                Fault::Stall(Duration::from_secs(3)),
            ]);
            tokio::pin!(dispatch);
            let died = loop {
                tokio::select! {
                    response = &mut dispatch => {
                        break Err(serde_json::to_value(response).unwrap());
                    }
                    _ = tokio::time::sleep(Duration::from_millis(2)) => {
                        if w.standin.requests() >= before + 3 {
                            break Ok(());
                        }
                    }
                }
            };
            match died {
                Ok(()) => {
                    crashes += 1;
                    source.settle(&messages, None).await;
                }
                Err(response) => {
                    source.settle(&messages, Some(&response)).await;
                }
            }
        }
    };
    let backlog = async {
        let mut peak = 0;
        loop {
            let depth = source.depth().await;
            peak = peak.max(depth);
            if depth == 0 && done.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        peak
    };
    let pagerduty_down = async {
        tokio::time::sleep(outage).await;
        w.standin.set_outage(true);
        tokio::time::sleep(outage).await;
        w.standin.set_outage(false);
    };
    let (((lanes, accepted_in), (invocations, crashes), peak_backlog), ()) = tokio::join!(
        async { tokio::join!(producer, consumer, backlog) },
        pagerduty_down
    );
    let drained_in = started.elapsed();
    let at_risk: u64 = lanes.iter().map(|(_, _, r)| r).sum();
    let sent: HashMap<String, Vec<(String, String)>> =
        lanes.into_iter().map(|(r, s, _)| (r, s)).collect();

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
    // Accept (the webhook's 202) to PagerDuty's 202, per event, first delivery.
    let answered = answered.lock().unwrap();
    let mut first = HashSet::new();
    let mut waits: Vec<Duration> = accepted
        .iter()
        .filter(|a| first.insert((a.event_action.clone(), a.dedup_key.clone())))
        .filter_map(|a| {
            let t = answered.get(&(a.event_action.clone(), a.dedup_key.clone()))?;
            Some(a.at.saturating_duration_since(*t))
        })
        .collect();
    waits.sort();
    let wait = |p: f64| {
        waits
            .get(((waits.len().max(1) - 1) as f64 * p).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    println!("soak (queue mode): {total} events over {routes} routes, seed {seed}");
    println!(
        "  PagerDuty faults: 20% 429, 10% 500, 5% dropped, 2% stalled; down from {0} s to {1} s after the start",
        outage.as_secs(),
        2 * outage.as_secs()
    );
    println!("  dispatcher killed mid-batch {crashes} times (PagerDuty holding the third request of a batch)");
    println!(
        "  webhook: all answered in {:.1} s; drained in {:.1} s by {invocations} dispatcher invocations; peak backlog {peak_backlog} messages",
        accepted_in.as_secs_f64(),
        drained_in.as_secs_f64()
    );
    println!(
        "  accept to PagerDuty: p50 {:.2} s, p99 {:.2} s, max {:.2} s",
        wait(0.5),
        wait(0.99),
        wait(1.0)
    );
    println!(
        "  PagerDuty requests {}, events taken {}",
        w.standin.requests(),
        accepted.len()
    );
    println!("| delivered | at risk (5xx to Guance) | lost | out of order | resolve before trigger | duplicated | dead-lettered |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {} | {at_risk} | {lost} | {out_of_order} | {early_resolves} | {duplicates} | {dead} |",
        total - lost
    );
    if lost + out_of_order + early_resolves + duplicates > 0 || at_risk > 0 || dead > 0 {
        std::process::exit(1);
    }
}
