//! Queue mode against moto's SQS FIFO (group order, deduplication, visibility, redrive)
//! and the contract-enforcing PagerDuty stand-in. moto cannot run an event source
//! mapping, so `support::drain` plays its part with real `ReceiveMessage` answers.

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::event_source::EventSource;
use support::pagerduty::{Accepted, Fault};
use support::*;

const ROUTES: [Option<&str>; 3] = [None, Some("payments"), Some("search")];

/// A world whose secret has the default route and two named ones, each its own key.
async fn routed_world() -> (World, Vec<String>) {
    let keys = vec![secret_value(32), secret_value(32)];
    let (payments, search) = (keys[0].clone(), keys[1].clone());
    let w = world_with_secret(move |key, token| {
        json!({"routing_key": key, "webhook_token": token,
               "routes": {"payments": payments, "search": search}})
        .to_string()
    })
    .await;
    let mut all = vec![w.routing_key.clone()];
    all.extend(keys);
    (w, all)
}

/// One Guance event: an alert (`critical`) or its recovery (`ok`) for alert `n`.
fn guance(route: Option<&str>, n: usize, status: &str) -> Value {
    let lane = route.unwrap_or("default");
    json!({
        "df_status": status,
        "df_title": format!("{lane} alert {n}"),
        "df_event_id": format!("event-{lane}-{n}-{status}"),
        "df_monitor_checker_event_ref": format!("{lane}-alert-{n}"),
        "df_dimension_tags": "{\"host\":\"h\"}",
        "timestamp": 1_693_034_940,
    })
}

fn request(w: &World, route: Option<&str>, body: &Value) -> Value {
    let event = with_body(w.event("alert.json"), &body.to_string());
    match route {
        Some(route) => with_path(event, &format!("/{route}")),
        None => event,
    }
}

fn queue_app(
    w: &World,
    queues: &Queues,
) -> guance_pagerduty::entry::app::App<guance_pagerduty::adapters::secret::SecretsManagerSource> {
    w.app(AppOptions {
        queue: Some(QueueOptions::new(queues)),
        ..AppOptions::default()
    })
}

/// What PagerDuty received for one routing key, as (action, dedup_key).
fn lane(accepted: &[Accepted], routing_key: &str) -> Vec<(String, String)> {
    accepted
        .iter()
        .filter(|a| a.routing_key == routing_key)
        .map(|a| (a.event_action.clone(), a.dedup_key.clone()))
        .collect()
}

fn expected_lane(route: Option<&str>, sent: &[(usize, &str)]) -> Vec<(String, String)> {
    let lane = route.unwrap_or("default");
    sent.iter()
        .map(|(n, status)| {
            let action = if *status == "ok" {
                "resolve"
            } else {
                "trigger"
            };
            (action.to_owned(), format!("{lane}-alert-{n}"))
        })
        .collect()
}

/// The order every route's events are posted in: alerts and recoveries interleaved, a
/// recovery always after its alert.
fn script(alerts: usize) -> Vec<(usize, &'static str)> {
    let mut sent = Vec::new();
    for n in 0..alerts {
        sent.push((n, "critical"));
        if n > 0 {
            sent.push((n - 1, "ok"));
        }
    }
    sent.push((alerts - 1, "ok"));
    sent
}

async fn dead_letters(w: &World, queues: &Queues) -> Vec<Value> {
    let source = EventSource::new(w.moto.sqs(), &queues.dlq).await;
    let mut letters = Vec::new();
    loop {
        let messages = source.receive(0).await;
        if messages.is_empty() {
            return letters;
        }
        for m in &messages {
            letters.push(serde_json::from_str(m.body().unwrap()).unwrap());
        }
    }
}

/// The first messages in the queue, put back at once. (Received with a visibility
/// timeout of 0, moto would keep them "in flight" and later hand their group out of
/// order; made visible by ChangeMessageVisibility, they are not.)
async fn peek(w: &World, queues: &Queues) -> Vec<String> {
    let source = EventSource::new(w.moto.sqs(), &queues.url).await;
    let messages = source.receive(0).await;
    source.settle(&messages, None).await;
    messages
        .iter()
        .map(|m| m.body().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_loses_nothing_and_keeps_every_lane_in_order() {
    let (w, keys) = routed_world().await;
    let queues = w.moto.create_queues(30, 1000).await;
    let app = queue_app(&w, &queues);
    w.standin.set_outage(true);

    let sent = script(9); // 18 events per route, 54 in all
    let mut answers = Vec::new();
    for (n, status) in &sent {
        for route in ROUTES {
            let a = call(&app, &request(&w, route, &guance(route, *n, status))).await;
            assert_eq!(a.status, 202, "{}", a.text);
            assert_eq!(a.body["results"][0]["outcome"], "queued");
            answers.push(a);
        }
    }
    assert_eq!(answers.len(), 54);
    for body in peek(&w, &queues).await {
        for secret in keys.iter().chain([&w.token]) {
            assert!(
                !body.contains(secret.as_str()),
                "a secret in a queued message"
            );
        }
        let message: Value = serde_json::from_str(&body).unwrap();
        assert!(message["event"]["dedup_key"].is_string(), "{message}");
        assert!(
            message.get("routing_key").is_none() && message["event"].get("routing_key").is_none()
        );
    }

    // PagerDuty stays down for a few deliveries, then comes back.
    let source = EventSource::new(w.moto.sqs(), &queues.url).await;
    for _ in 0..3 {
        let messages = source.receive(1).await;
        let response = dispatch(&app, &source.sqs_event(&messages)).await;
        assert_eq!(
            response["batchItemFailures"].as_array().unwrap().len(),
            messages.len(),
            "nothing delivered while PagerDuty is down"
        );
        source.settle(&messages, Some(&response)).await;
    }
    assert!(w.standin.accepted().is_empty());
    w.standin.set_outage(false);
    drain(&app, &source, Duration::from_secs(120)).await;

    let accepted = w.standin.accepted();
    assert_eq!(accepted.len(), 54, "every event delivered once");
    for (route, key) in ROUTES.iter().zip(&keys) {
        assert_eq!(
            lane(&accepted, key),
            expected_lane(*route, &sent),
            "{route:?}"
        );
    }
    assert!(accepted
        .iter()
        .filter(|a| a.event_action == "resolve")
        .all(|a| a.resolved_open_alert));
    assert!(dead_letters(&w, &queues).await.is_empty());
    let answers: Vec<&Answer> = answers.iter().collect();
    w.finish(&answers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_under_the_rate_limit_is_delivered_whole_and_in_order() {
    let (w, keys) = routed_world().await;
    let queues = w.moto.create_queues(30, 1000).await;
    let app = queue_app(&w, &queues);
    // PagerDuty's 120 events per 60 s per routing key, scaled down in time: 40 per 2 s.
    w.standin.rate_limit(40, Duration::from_secs(2));

    let sent = script(84); // 168 events per route, 504 in all
    for route in ROUTES {
        let body: Vec<Value> = sent.iter().map(|(n, s)| guance(route, *n, s)).collect();
        let a = call(&app, &request(&w, route, &json!(body))).await;
        assert_eq!(a.status, 202, "{}", a.text);
    }
    let started = Instant::now();
    let source = EventSource::new(w.moto.sqs(), &queues.url).await;
    let invocations = drain(&app, &source, Duration::from_secs(240)).await;
    println!(
        "storm: 504 events drained in {:.1} s, {invocations} dispatcher invocations, {} answered 429",
        started.elapsed().as_secs_f64(),
        w.standin.rate_limited()
    );
    assert!(w.standin.rate_limited() > 0, "the storm met the rate limit");
    let accepted = w.standin.accepted();
    assert_eq!(accepted.len(), 504);
    for (route, key) in ROUTES.iter().zip(&keys) {
        assert_eq!(
            lane(&accepted, key),
            expected_lane(*route, &sent),
            "{route:?}"
        );
    }
    assert!(dead_letters(&w, &queues).await.is_empty());
    w.finish(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_pagerduty_refuses_goes_to_the_dead_letter_queue_and_the_lane_goes_on() {
    let w = world().await;
    let queues = w.moto.create_queues(30, 1000).await;
    let app = queue_app(&w, &queues);
    let sent = script(4);
    let body: Vec<Value> = sent.iter().map(|(n, s)| guance(None, *n, s)).collect();
    let a = call(&app, &request(&w, None, &json!(body))).await;
    assert_eq!(a.status, 202, "{}", a.text);

    // PagerDuty refuses the first event it sees for good.
    w.standin.script([Fault::Status(400)]);
    let source = EventSource::new(w.moto.sqs(), &queues.url).await;
    drain(&app, &source, Duration::from_secs(60)).await;

    // The refused trigger is parked, and its resolve (later in the same batch) follows
    // it there, in order, instead of reaching PagerDuty ahead of a redrive.
    let letters = dead_letters(&w, &queues).await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert_eq!(letters[0]["pagerduty_status"], 400);
    assert_eq!(letters[0]["errors"], json!(["scripted failure"]));
    let parked: Vec<(&str, &str)> = letters
        .iter()
        .map(|l| {
            let event = &l["queued_event"]["event"];
            (
                event["event_action"].as_str().unwrap(),
                event["dedup_key"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        parked,
        [
            ("trigger", "default-alert-0"),
            ("resolve", "default-alert-0")
        ]
    );
    assert!(letters[1]["errors"][0]
        .as_str()
        .unwrap()
        .contains("earlier event of this alert"));
    assert!(!letters[0].to_string().contains(&w.routing_key));

    let rest: Vec<(usize, &str)> = sent.iter().copied().filter(|(n, _)| *n != 0).collect();
    let expected = expected_lane(None, &rest);
    assert_eq!(lane(&w.standin.accepted(), &w.routing_key), expected);
    w.finish(&[&a]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_webhook_twice_reaches_pagerduty_once() {
    let w = world().await;
    let queues = w.moto.create_queues(30, 1000).await;
    let app = queue_app(&w, &queues);
    let body = json!([
        guance(None, 1, "critical"),
        guance(None, 2, "critical"),
        guance(None, 1, "ok")
    ]);
    let first = call(&app, &request(&w, None, &body)).await;
    let again = call(&app, &request(&w, None, &body)).await;
    assert_eq!((first.status, again.status), (202, 202));
    let source = EventSource::new(w.moto.sqs(), &queues.url).await;
    drain(&app, &source, Duration::from_secs(60)).await;
    assert_eq!(
        lane(&w.standin.accepted(), &w.routing_key),
        expected_lane(None, &[(1, "critical"), (2, "critical"), (1, "ok")])
    );
    w.finish(&[&first, &again]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_body_of_1000_events_is_queued_whole_and_delivered_in_order() {
    let w = world().await;
    let queues = w.moto.create_queues(30, 1000).await;
    let app = queue_app(&w, &queues);
    let sent = script(500);
    assert_eq!(sent.len(), 1000);
    let body: Vec<Value> = sent.iter().map(|(n, s)| guance(None, *n, s)).collect();
    // 100 SendMessageBatch calls in order: moto takes far longer over them than SQS.
    let started = Instant::now();
    let a = call_within(
        &app,
        &request(&w, None, &json!(body)),
        Duration::from_secs(300),
    )
    .await;
    println!(
        "1000 events queued in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(a.status, 202, "{}", &a.text[..a.text.len().min(300)]);
    assert_eq!(a.body["results"].as_array().unwrap().len(), 1000);

    let direct = w.app(AppOptions::default());
    let refused = call(&direct, &request(&w, None, &json!(body))).await;
    assert_eq!(refused.status, 400, "direct delivery keeps its cap of 100");

    let source = EventSource::new(w.moto.sqs(), &queues.url).await;
    drain(&app, &source, Duration::from_secs(180)).await;
    assert_eq!(
        lane(&w.standin.accepted(), &w.routing_key),
        expected_lane(None, &sent)
    );
    w.finish(&[&refused]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_unreachable_is_a_503_and_the_resend_duplicates_nothing() {
    let w = world().await;
    let queues = w.moto.create_queues(30, 1000).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let broken = w.app(AppOptions {
        queue: Some(QueueOptions {
            sqs_endpoint: Some(closed_endpoint),
            ..QueueOptions::new(&queues)
        }),
        ..AppOptions::default()
    });
    let body = json!([guance(None, 1, "critical"), guance(None, 1, "ok")]);
    let down = call(&broken, &request(&w, None, &body)).await;
    assert_eq!(down.status, 503, "{}", down.text);
    assert_eq!(down.body["error"], "queue_unavailable");
    assert!(down.response.headers.get("retry-after").is_some());

    let app = queue_app(&w, &queues);
    let resend = call(&app, &request(&w, None, &body)).await;
    let again = call(&app, &request(&w, None, &body)).await;
    assert_eq!((resend.status, again.status), (202, 202));
    let source = EventSource::new(w.moto.sqs(), &queues.url).await;
    drain(&app, &source, Duration::from_secs(60)).await;
    assert_eq!(
        lane(&w.standin.accepted(), &w.routing_key),
        expected_lane(None, &[(1, "critical"), (1, "ok")])
    );
    w.finish(&[&down, &resend, &again]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_that_dies_mid_batch_loses_nothing_and_reorders_nothing() {
    let w = world().await;
    // A short visibility timeout: what the crashed invocation held comes back quickly.
    let queues = w.moto.create_queues(2, 1000).await;
    let app = queue_app(&w, &queues);
    let sent = script(4);
    let body: Vec<Value> = sent.iter().map(|(n, s)| guance(None, *n, s)).collect();
    let a = call(&app, &request(&w, None, &json!(body))).await;
    assert_eq!(a.status, 202);

    // The third delivery stalls, and the invocation dies while it waits.
    w.standin.script([
        Fault::Pass,
        Fault::Pass,
        Fault::Stall(Duration::from_secs(5)),
    ]);
    let source = EventSource::new(w.moto.sqs(), &queues.url).await;
    let messages = source.receive(1).await;
    assert!(
        messages.len() >= 3,
        "one batch of the lane: {}",
        messages.len()
    );
    let payload = source.sqs_event(&messages);
    let event = serde_json::from_value(payload).unwrap();
    let crashed = tokio::time::timeout(
        Duration::from_millis(1000),
        app.dispatch(event, &invocation(Duration::from_secs(30))),
    )
    .await;
    assert!(crashed.is_err(), "the invocation died mid-batch");
    source.settle(&messages, None).await;

    drain(&app, &source, Duration::from_secs(60)).await;
    let received = lane(&w.standin.accepted(), &w.routing_key);
    let expected = expected_lane(None, &sent);
    // At least once: what was delivered before the crash may come again, in order.
    let mut first_seen: Vec<(String, String)> = Vec::new();
    for event in &received {
        if !first_seen.contains(event) {
            first_seen.push(event.clone());
        }
    }
    assert_eq!(
        first_seen, expected,
        "nothing lost, nothing reordered: {received:?}"
    );
    assert!(
        w.standin
            .accepted()
            .iter()
            .filter(|a| a.event_action == "resolve")
            .all(|a| a.resolved_open_alert),
        "no resolve before its trigger"
    );
    w.finish(&[&a]);
}
