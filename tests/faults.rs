//! The faults production meets, injected against the real handler and dispatcher with
//! moto and the PagerDuty stand-in: an AWS peer that accepts and never answers, a
//! dispatcher stopped mid-batch and its batch replayed, a routing key rotated away, a
//! body with one bad event, `Retry-After: 0`, a character SQS refuses, a token rotation.
//! Each one lost, doubled or hid a page before; each test says what must hold instead.

mod support;

use guance_pagerduty::adapters::metrics::Memory;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::event_source::EventSource;
use support::pagerduty::{Accepted, Fault};
use support::*;

fn alert(n: usize) -> Value {
    json!({"df_status": "critical", "df_title": format!("alert {n}"),
           "df_event_id": format!("event-{n}"), "df_monitor_checker_event_ref": format!("alert-{n}"),
           "df_dimension_tags": "{\"host\":\"h\"}", "timestamp": 1_693_034_940})
}

fn recovery(n: usize) -> Value {
    json!({"df_status": "ok", "df_title": format!("alert {n}"),
           "df_event_id": format!("event-{n}-ok"), "df_monitor_checker_event_ref": format!("alert-{n}"),
           "df_dimension_tags": "{\"host\":\"h\"}", "timestamp": 1_693_034_940})
}

/// A recovery Guance sent with nothing to match it to its alert.
fn unmatched_recovery() -> Value {
    json!({"df_status": "ok", "df_title": "recovered", "df_event_id": "event-orphan"})
}

fn post(w: &World, events: &[Value]) -> Value {
    with_body(
        w.event("alert.json"),
        &Value::from(events.to_vec()).to_string(),
    )
}

/// (action, dedup_key) of what PagerDuty took, in order.
fn seen(accepted: &[Accepted]) -> Vec<(String, String)> {
    accepted
        .iter()
        .map(|a| (a.event_action.clone(), a.dedup_key.clone()))
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, k)| (a.to_string(), k.to_string()))
        .collect()
}

fn queue_app(
    w: &World,
    queues: &Queues,
    metrics: Memory,
) -> guance_pagerduty::entry::app::App<guance_pagerduty::adapters::secret::SecretsManagerSource> {
    w.app(AppOptions {
        queue: Some(QueueOptions::new(queues)),
        metrics,
        ..AppOptions::default()
    })
}

async fn dead_letter_count(w: &World, queues: &Queues) -> u64 {
    EventSource::new(w.moto.sqs(), &queues.dlq)
        .await
        .depth()
        .await
}

fn events_of(metrics: &Memory) -> std::collections::BTreeMap<(String, String), u64> {
    let lines = metrics.lines();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    support::emf::events(&lines, METRICS_NAMESPACE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_sqs_gets_guance_a_503_before_the_deadline_and_a_metric_line() {
    let w = world().await;
    let queues = w.moto.create_queues(30, 1000).await;
    let stalled = Stalled::start();
    let metrics = Memory::default();
    let app = w.app(AppOptions {
        queue: Some(QueueOptions {
            sqs_endpoint: Some(stalled.endpoint.clone()),
            ..QueueOptions::new(&queues)
        }),
        metrics: metrics.clone(),
        deadline_margin: Duration::from_millis(1000),
        ..AppOptions::default()
    });
    let started = Instant::now();
    let a = call_within(
        &app,
        &post(&w, &[alert(1), recovery(1)]),
        Duration::from_secs(5),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(a.status, 503, "{}", a.text);
    assert_eq!(a.body["error"], "queue_unavailable");
    assert!(a.response.headers.get("retry-after").is_some());
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    assert_eq!(
        events_of(&metrics),
        [
            (("/".to_owned(), "received".to_owned()), 2),
            (("/".to_owned(), "failed".to_owned()), 2)
        ]
        .into(),
        "the lost pages are counted where an alarm sees them"
    );
    w.finish(&[&a]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_secrets_manager_gets_guance_a_503_before_the_deadline() {
    let w = world().await;
    let stalled = Stalled::start();
    let metrics = Memory::default();
    let app = w.app(AppOptions {
        secrets_endpoint: Some(stalled.endpoint.clone()),
        metrics: metrics.clone(),
        deadline_margin: Duration::from_millis(1000),
        ..AppOptions::default()
    });
    let started = Instant::now();
    let a = call_within(&app, &post(&w, &[alert(1)]), Duration::from_secs(4)).await;
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(a.status, 503, "{}", a.text);
    assert_eq!(a.body["error"], "secret_unavailable");
    let lines = metrics.lines();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_eq!(
        support::emf::refused_requests(&lines),
        [("secret_unavailable".to_owned(), 1)].into()
    );
    w.finish(&[&a]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_sqs_never_makes_the_dispatcher_time_out() {
    let w = world().await;
    let queues = w.moto.create_queues(30, 1000).await;
    let app = queue_app(&w, &queues, Memory::default());
    let a = call(
        &app,
        &post(&w, &[alert(1), alert(2), recovery(1), recovery(2)]),
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.text);

    // The dispatcher's SQS (deletes, backoffs, dead letters) accepts and never answers.
    let stalled = Stalled::start();
    let broken = w.app(AppOptions {
        queue: Some(QueueOptions {
            sqs_endpoint: Some(stalled.endpoint.clone()),
            ..QueueOptions::new(&queues)
        }),
        deadline_margin: Duration::from_millis(1000),
        ..AppOptions::default()
    });
    let source = EventSource::new(w.moto.sqs(), &queues.url).await;
    let messages = source.receive(1).await;
    assert_eq!(messages.len(), 4);
    // PagerDuty takes the first, then fails the second for good measure (a backoff to set).
    w.standin
        .script([Fault::Pass, Fault::Status(503), Fault::Status(503)]);
    let event = serde_json::from_value(source.sqs_event(&messages)).unwrap();
    let started = Instant::now();
    let response = tokio::time::timeout(
        Duration::from_secs(6),
        broken.dispatch(event, &invocation(Duration::from_secs(6))),
    )
    .await
    .expect("the dispatcher answered before Lambda's deadline");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(6), "{took:?}");
    let response = serde_json::to_value(response).unwrap();
    let failed: Vec<&str> = response["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap())
        .collect();
    let ids: Vec<&str> = messages.iter().map(|m| m.message_id().unwrap()).collect();
    assert_eq!(
        failed,
        ids[1..],
        "the delivered record is reported done, every other one comes back"
    );
    source.settle(&messages, Some(&response)).await;
    // Their backoff could not be set, so they would come back with the visibility
    // timeout, all at once, where moto (unlike SQS) slips a group's order: made visible
    // now instead, as `settle` does after a crash.
    source.settle(&messages[1..], None).await;
    drain(&app, &source, Duration::from_secs(60)).await;
    assert_eq!(
        seen(&w.standin.accepted()),
        pairs(&[
            ("trigger", "alert-1"),
            ("trigger", "alert-2"),
            ("resolve", "alert-1"),
            ("resolve", "alert-2")
        ])
    );
    w.finish(&[&a]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_replayed_after_a_crash_reaches_pagerduty_once() {
    let w = world().await;
    // A short visibility timeout: what the crashed invocation held comes back quickly.
    let queues = w.moto.create_queues(2, 1000).await;
    let app = queue_app(&w, &queues, Memory::default());
    let sent = [alert(1), alert(2), recovery(1), recovery(2)];
    let a = call(&app, &post(&w, &sent)).await;
    assert_eq!(a.status, 202, "{}", a.text);

    // Alert 1's trigger and resolve go through; the fourth delivery stalls and the
    // invocation dies while it waits, as a Lambda timeout or crash would end it.
    w.standin.script([
        Fault::Pass,
        Fault::Pass,
        Fault::Pass,
        Fault::Stall(Duration::from_secs(5)),
    ]);
    let source = EventSource::new(w.moto.sqs(), &queues.url).await;
    let messages = source.receive(1).await;
    assert_eq!(messages.len(), 4, "the lane in one batch");
    let event = serde_json::from_value(source.sqs_event(&messages)).unwrap();
    let crashed = tokio::time::timeout(
        Duration::from_millis(1500),
        app.dispatch(event, &invocation(Duration::from_secs(30))),
    )
    .await;
    assert!(crashed.is_err(), "the invocation died mid-batch");
    source.settle(&messages, None).await;

    drain(&app, &source, Duration::from_secs(60)).await;
    // Each event once, in order: a replayed trigger after its resolve would open a
    // second incident and page again.
    assert_eq!(
        seen(&w.standin.accepted()),
        pairs(&[
            ("trigger", "alert-1"),
            ("trigger", "alert-2"),
            ("resolve", "alert-1"),
            ("resolve", "alert-2"),
        ])
    );
    w.finish(&[&a]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routing_key_rotated_away_holds_the_lane_until_the_secret_is_fixed() {
    let w = world().await;
    let queues = w.moto.create_queues(30, 1000).await;
    let metrics = Memory::default();
    let app = queue_app(&w, &queues, metrics.clone());
    let a = call(
        &app,
        &post(&w, &[alert(1), alert(2), recovery(1), recovery(2)]),
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.text);

    // The service's integration is replaced: the old key is deleted in PagerDuty, and
    // the secret still holds it.
    w.standin.revoke_key(&w.routing_key);
    let source = EventSource::new(w.moto.sqs(), &queues.url).await;
    for _ in 0..2 {
        let messages = source.receive(3).await;
        assert!(!messages.is_empty());
        let response = dispatch(&app, &source.sqs_event(&messages)).await;
        assert_eq!(
            response["batchItemFailures"].as_array().unwrap().len(),
            messages.len(),
            "the lane waits, nothing is set aside"
        );
        source.settle(&messages, Some(&response)).await;
    }
    assert!(w.standin.key_refusals() >= 2);
    assert!(w.standin.accepted().is_empty());
    assert_eq!(dead_letter_count(&w, &queues).await, 0);

    // The operator puts the new integration's key in the secret: the lane flows at
    // the next try, in order.
    let new_key = secret_value(32);
    w.moto
        .put_secret(
            &w.secret_id,
            &json!({"routing_key": new_key, "webhook_token": w.token}).to_string(),
        )
        .await;
    drain(&app, &source, Duration::from_secs(60)).await;
    let accepted = w.standin.accepted();
    assert!(accepted.iter().all(|a| a.routing_key == new_key));
    assert_eq!(
        seen(&accepted),
        pairs(&[
            ("trigger", "alert-1"),
            ("trigger", "alert-2"),
            ("resolve", "alert-1"),
            ("resolve", "alert-2")
        ])
    );
    assert_eq!(dead_letter_count(&w, &queues).await, 0);
    let counts = events_of(&metrics);
    assert!(
        counts
            .get(&("/".to_owned(), "key_refused".to_owned()))
            .is_some_and(|n| *n >= 2),
        "counted as its own outcome: {counts:?}"
    );
    w.finish(&[&a]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routing_key_rotated_in_direct_mode_is_picked_up_at_once() {
    let w = world().await;
    let app = w.app(AppOptions::default());
    assert_eq!(call(&app, &post(&w, &[alert(1)])).await.status, 202);

    // Rotated: the new key is in the secret, the old integration deleted; the cache
    // still holds the old key. The refusal makes the function read the secret again.
    let new_key = secret_value(32);
    w.moto
        .put_secret(
            &w.secret_id,
            &json!({"routing_key": new_key, "webhook_token": w.token}).to_string(),
        )
        .await;
    w.standin.revoke_key(&w.routing_key);
    let a = call(&app, &post(&w, &[recovery(1), alert(2)])).await;
    assert_eq!(a.status, 202, "{}", a.text);
    let accepted = w.standin.accepted();
    assert_eq!(accepted.len(), 3);
    assert!(accepted[1..].iter().all(|a| a.routing_key == new_key));
    assert_eq!(
        seen(&accepted),
        pairs(&[
            ("trigger", "alert-1"),
            ("resolve", "alert-1"),
            ("trigger", "alert-2")
        ])
    );
    w.finish(&[&a]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_event_does_not_refuse_the_rest_of_its_body_in_either_mode() {
    let w = world().await;
    let queues = w.moto.create_queues(30, 1000).await;
    let body = [alert(1), unmatched_recovery(), alert(2)];
    let mut answers = Vec::new();
    for queued in [true, false] {
        let metrics = Memory::default();
        let app = if queued {
            queue_app(&w, &queues, metrics.clone())
        } else {
            w.app(AppOptions {
                metrics: metrics.clone(),
                ..AppOptions::default()
            })
        };
        let a = call(&app, &post(&w, &body)).await;
        assert_eq!(a.status, 202, "{}", a.text);
        assert_eq!(a.body["not_taken"], 1, "{}", a.text);
        assert!(a.body["message"]
            .as_str()
            .unwrap()
            .contains("not every event was taken"));
        let outcomes: Vec<&str> = a.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["outcome"].as_str().unwrap())
            .collect();
        let taken = if queued { "queued" } else { "sent" };
        assert_eq!(outcomes, [taken, "rejected", taken]);
        assert!(a.body["results"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("cannot be identified"));
        let counts = events_of(&metrics);
        assert_eq!(
            counts.get(&("/".to_owned(), "rejected".to_owned())),
            Some(&1),
            "{counts:?}"
        );
        answers.push(a);
    }
    let source = EventSource::new(w.moto.sqs(), &queues.url).await;
    let app = queue_app(&w, &queues, Memory::default());
    drain(&app, &source, Duration::from_secs(60)).await;
    assert_eq!(
        seen(&w.standin.accepted()),
        pairs(&[
            ("trigger", "alert-1"),
            ("trigger", "alert-2"),
            ("trigger", "alert-1"),
            ("trigger", "alert-2")
        ]),
        "queued (delivered by the drain after the direct ones) and direct: both alerts each"
    );
    w.finish(&answers.iter().collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_element_that_is_not_an_event_does_not_refuse_the_rest_of_its_body() {
    let w = world().await;
    let app = w.app(AppOptions::default());
    let a = call(&app, &post(&w, &[alert(1), Value::Null, alert(2)])).await;
    assert_eq!(a.status, 202, "{}", a.text);
    assert_eq!(a.body["not_taken"], 1);
    assert_eq!(a.body["results"][1]["outcome"], "rejected");
    assert!(a.body["results"][1]["reason"]
        .as_str()
        .unwrap()
        .contains("found null"));
    assert_eq!(
        seen(&w.standin.accepted()),
        pairs(&[("trigger", "alert-1"), ("trigger", "alert-2")])
    );
    w.finish(&[&a]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_direct_mode_an_event_pagerduty_refuses_does_not_stop_the_others() {
    let w = world().await;
    let app = w.app(AppOptions::default());
    // The first event is refused for good: its alert's resolve is not sent after it,
    // the other alert goes through.
    w.standin.script([Fault::Status(400)]);
    let a = call(&app, &post(&w, &[alert(1), alert(2), recovery(1)])).await;
    assert_eq!(a.status, 422, "{}", a.text);
    let outcomes: Vec<&str> = a.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["failed", "sent", "not_sent"]);
    assert!(a.body["results"][2]["reason"]
        .as_str()
        .unwrap()
        .contains("refused an earlier event of this alert"));
    assert_eq!(
        seen(&w.standin.accepted()),
        pairs(&[("trigger", "alert-2")])
    );
    w.finish(&[&a]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_zero_is_a_floor_not_a_shortcut_past_the_backoff() {
    let w = world().await;
    // Five receives and the record would be dead-lettered.
    let queues = w.moto.create_queues(30, 5).await;
    let app = queue_app(&w, &queues, Memory::default());
    let a = call(&app, &post(&w, &[alert(1), recovery(1)])).await;
    assert_eq!(a.status, 202);
    // PagerDuty throttles for 3 s, each time advising to retry at once.
    w.standin.set_throttled(true);
    let started = Instant::now();
    let standin = &w.standin;
    let source = EventSource::new(w.moto.sqs(), &queues.url).await;
    let drained = async {
        drain(&app, &source, Duration::from_secs(60)).await;
    };
    let recover = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        standin.set_throttled(false);
    };
    tokio::join!(drained, recover);
    println!("delivered after {:?}", started.elapsed());
    assert_eq!(
        dead_letter_count(&w, &queues).await,
        0,
        "nothing spent its receives at the poller's pace"
    );
    assert_eq!(
        seen(&w.standin.accepted()),
        pairs(&[("trigger", "alert-1"), ("resolve", "alert-1")])
    );
    w.finish(&[&a]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn characters_sqs_refuses_are_queued_escaped_and_reach_pagerduty_intact() {
    let w = world().await;
    let queues = w.moto.create_queues(30, 1000).await;
    let app = queue_app(&w, &queues, Memory::default());
    let mut event = alert(1);
    event["df_title"] = json!("disk \u{FFFF} full \u{FFFE} on h \u{1F525}");
    let a = call(&app, &post(&w, &[event])).await;
    assert_eq!(a.status, 202, "{}", a.text);
    let source = EventSource::new(w.moto.sqs(), &queues.url).await;
    drain(&app, &source, Duration::from_secs(60)).await;
    let accepted = w.standin.accepted();
    assert_eq!(accepted.len(), 1);
    assert_eq!(
        accepted[0].body["payload"]["summary"],
        "disk \u{FFFF} full \u{FFFE} on h \u{1F525}"
    );
    w.finish(&[&a]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_token_rotation_both_tokens_are_accepted() {
    let old = secret_value(40);
    let new = secret_value(40);
    let (old_for_secret, new_for_secret) = (old.clone(), new.clone());
    let w = world_with_secret(move |key, _token| {
        json!({"routing_key": key, "webhook_token": [new_for_secret, old_for_secret]}).to_string()
    })
    .await;
    let metrics = Memory::default();
    let app = w.app(AppOptions {
        metrics: metrics.clone(),
        ..AppOptions::default()
    });
    let mut answers = Vec::new();
    for (token, status) in [(&old, 202), (&new, 202), (&w.token, 401)] {
        let a = call(&app, &with_token(post(&w, &[alert(1)]), Some(token))).await;
        assert_eq!(a.status, status, "{}", a.text);
        answers.push(a);
    }
    let lines = metrics.lines();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_eq!(
        support::emf::refused_requests(&lines),
        [("unauthorized".to_owned(), 1)].into()
    );
    w.finish(&answers.iter().collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_checked_before_the_body_is_read() {
    let w = world().await;
    let app = w.app(AppOptions::default());
    let mut huge = with_token(post(&w, &[alert(1)]), Some("wrong"));
    huge["body"] = json!("x".repeat((1 << 20) + 1));
    let a = call(&app, &huge).await;
    assert_eq!(a.status, 401, "a stranger learns nothing about the body");
    let b = call(&app, &with_token(with_body(post(&w, &[]), "{"), None)).await;
    assert_eq!(b.status, 401);
    w.finish(&[&a, &b]);
}

/// The dead-letter messages, as (action, dedup_key) of their queued events, in order.
async fn parked(w: &World, queues: &Queues) -> Vec<(String, String)> {
    let source = EventSource::new(w.moto.sqs(), &queues.dlq).await;
    let mut parked = Vec::new();
    loop {
        let messages = source.receive(0).await;
        if messages.is_empty() {
            return parked;
        }
        for m in &messages {
            let letter: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            let event = &letter["queued_event"]["event"];
            parked.push((
                event["event_action"].as_str().unwrap().to_owned(),
                event["dedup_key"].as_str().unwrap().to_owned(),
            ));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_triggers_resolve_follows_it_even_when_its_lane_has_stopped() {
    let w = world().await;
    let queues = w.moto.create_queues(30, 1000).await;
    let app = queue_app(&w, &queues, Memory::default());
    let a = call(&app, &post(&w, &[alert(1), alert(2), recovery(1)])).await;
    assert_eq!(a.status, 202, "{}", a.text);
    // Alert 1's trigger is refused for good; alert 2's meets two 503s, which stops the
    // lane before alert 1's resolve comes up.
    w.standin
        .script([Fault::Status(400), Fault::Status(503), Fault::Status(503)]);
    let source = EventSource::new(w.moto.sqs(), &queues.url).await;
    let messages = source.receive(1).await;
    assert_eq!(messages.len(), 3);
    let response = dispatch(&app, &source.sqs_event(&messages)).await;
    source.settle(&messages, Some(&response)).await;
    drain(&app, &source, Duration::from_secs(60)).await;
    assert_eq!(
        parked(&w, &queues).await,
        pairs(&[("trigger", "alert-1"), ("resolve", "alert-1")]),
        "the resolve follows its refused trigger, not ahead of its redrive to PagerDuty"
    );
    assert_eq!(
        seen(&w.standin.accepted()),
        pairs(&[("trigger", "alert-2")])
    );
    w.finish(&[&a]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_record_sqs_would_not_delete_holds_its_lane() {
    let w = world().await;
    let queues = w.moto.create_queues(2, 1000).await;
    let app = queue_app(&w, &queues, Memory::default());
    let a = call(&app, &post(&w, &[alert(1), recovery(1), alert(2)])).await;
    assert_eq!(a.status, 202, "{}", a.text);
    // The dispatcher's SQS accepts and never answers: the trigger is delivered, its
    // delete fails, and then the invocation dies.
    let stalled = Stalled::start();
    let broken = w.app(AppOptions {
        queue: Some(QueueOptions {
            sqs_endpoint: Some(stalled.endpoint.clone()),
            ..QueueOptions::new(&queues)
        }),
        ..AppOptions::default()
    });
    let source = EventSource::new(w.moto.sqs(), &queues.url).await;
    let messages = source.receive(1).await;
    assert_eq!(messages.len(), 3);
    let event = serde_json::from_value(source.sqs_event(&messages)).unwrap();
    let crashed = tokio::time::timeout(
        Duration::from_millis(2500),
        broken.dispatch(event, &invocation(Duration::from_secs(30))),
    )
    .await;
    assert!(crashed.is_err(), "the invocation died");
    assert_eq!(
        seen(&w.standin.accepted()),
        pairs(&[("trigger", "alert-1")]),
        "nothing more of the lane went while the trigger could be sent again"
    );
    source.settle(&messages, None).await;
    drain(&app, &source, Duration::from_secs(60)).await;
    // The replay repeats the trigger (folded into the open alert), never a trigger
    // after its resolve (a second incident).
    assert_eq!(
        seen(&w.standin.accepted()),
        pairs(&[
            ("trigger", "alert-1"),
            ("trigger", "alert-1"),
            ("resolve", "alert-1"),
            ("trigger", "alert-2")
        ])
    );
    w.finish(&[&a]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_over_an_hour_still_holds_the_record() {
    let w = world().await;
    let queues = w.moto.create_queues(30, 1000).await;
    let app = queue_app(&w, &queues, Memory::default());
    let a = call(&app, &post(&w, &[alert(1)])).await;
    assert_eq!(a.status, 202);
    w.standin.script([
        Fault::StatusRetryAfter(429, 7200),
        Fault::StatusRetryAfter(429, 7200),
    ]);
    let source = EventSource::new(w.moto.sqs(), &queues.url).await;
    let messages = source.receive(1).await;
    let response = dispatch(&app, &source.sqs_event(&messages)).await;
    assert_eq!(response["batchItemFailures"].as_array().unwrap().len(), 1);
    source.settle(&messages, Some(&response)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        source.receive(0).await.is_empty(),
        "PagerDuty asked for two hours (taken as one): not back within seconds"
    );
    w.finish(&[&a]);
}
