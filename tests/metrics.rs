//! The metric lines: every outcome an event can have is counted, each line follows the
//! Embedded Metric Format specification, the counts match what PagerDuty and the queue
//! saw, and no secret is in them. Driven through the real handler and dispatcher against
//! moto and the PagerDuty stand-in.
//!
//! With `METRICS_CATALOG=<file>`, writes what the code emits (namespace variable, metric
//! names, units, dimension sets, outcomes) for `tests/check_template.py`, which checks
//! that every alarm and dashboard widget refers to a metric the code really emits.

mod support;

use guance_pagerduty::adapters::metrics::{Memory, Outcome, RestoreOutcome, WebhookOutcome};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use support::emf::{validate, Declared};
use support::event_source::EventSource;
use support::pagerduty::Fault;
use support::*;

type Totals = BTreeMap<(String, String), u64>;

/// `Events` per (Route, Outcome), summed over the lines; every line checked against EMF.
fn totals(lines: &[String]) -> Totals {
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    support::emf::events(&lines, METRICS_NAMESPACE)
}

fn expect(rows: &[(&str, &str, u64)]) -> Totals {
    rows.iter()
        .map(|(route, outcome, n)| ((route.to_string(), outcome.to_string()), *n))
        .collect()
}

/// The samples of `metric` over the lines, for lines of this outcome.
fn samples(lines: &[String], outcome: &str, metric: &str) -> Vec<u64> {
    lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["Outcome"] == outcome)
        .flat_map(|l| l[metric].as_array().cloned().unwrap_or_default())
        .map(|v| v.as_u64().unwrap())
        .collect()
}

fn alert(n: usize) -> Value {
    json!({"df_status": "critical", "df_title": format!("alert {n}"),
           "df_event_id": format!("event-{n}"), "df_monitor_checker_event_ref": format!("alert-{n}")})
}

fn recovery(n: usize) -> Value {
    json!({"df_status": "ok", "df_title": format!("alert {n}"),
           "df_event_id": format!("event-{n}-ok"), "df_monitor_checker_event_ref": format!("alert-{n}")})
}

fn post(w: &World, route: Option<&str>, events: &[Value]) -> Value {
    let event = with_body(
        w.event("alert.json"),
        &Value::from(events.to_vec()).to_string(),
    );
    match route {
        Some(route) => with_path(event, &format!("/{route}")),
        None => event,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outcome_is_counted_in_emf_lines_that_match_what_happened() {
    let payments_key = secret_value(32);
    let key = payments_key.clone();
    let w = world_with_secret(move |routing_key, token| {
        json!({"routing_key": routing_key, "webhook_token": token, "routes": {"payments": key}})
            .to_string()
    })
    .await;
    let mut all_lines = Vec::new();

    // Direct delivery: delivered, refused, failed (and the event after it), rejected
    // (while the rest of its body is delivered), key refused.
    let direct = Memory::default();
    let app = w.app(AppOptions {
        metrics: direct.clone(),
        ..AppOptions::default()
    });
    assert_eq!(
        call(&app, &post(&w, None, &[alert(1), recovery(1)]))
            .await
            .status,
        202
    );
    assert_eq!(
        call(&app, &post(&w, Some("payments"), &[alert(2)]))
            .await
            .status,
        202
    );
    w.standin.script([Fault::Status(400)]);
    assert_eq!(
        call(&app, &post(&w, None, &[alert(3)])).await.status / 100,
        4
    );
    w.standin.script(vec![Fault::Status(503); 8]);
    assert_eq!(
        call(&app, &post(&w, None, &[alert(4), recovery(4)]))
            .await
            .status,
        503
    );
    let unresolvable = json!({"df_status": "ok", "df_title": "no id"});
    assert_eq!(
        call(&app, &post(&w, None, &[alert(5), unresolvable.clone()]))
            .await
            .status,
        202
    );
    assert_eq!(
        call(&app, &post(&w, None, &[unresolvable])).await.status,
        400
    );
    // The default route's integration is deleted: the last direct-mode call.
    w.standin.revoke_key(&w.routing_key);
    assert_eq!(
        call(&app, &post(&w, None, &[alert(9), recovery(9)]))
            .await
            .status,
        503
    );
    // Refused before any event is read: no event counted, no route from the request,
    // the request counted by its reason.
    assert_eq!(
        call(&app, &post(&w, Some("nope"), &[alert(6)]))
            .await
            .status,
        404
    );
    assert_eq!(
        call(
            &app,
            &with_token(post(&w, None, &[alert(7)]), Some("wrong"))
        )
        .await
        .status,
        401
    );
    assert_eq!(
        call(
            &app,
            &with_path(post(&w, None, &[alert(7)]), "/wp-login.php")
        )
        .await
        .status,
        404
    );
    let mut too_large = post(&w, None, &[alert(8)]);
    too_large["body"] = json!("x".repeat((1 << 20) + 1));
    assert_eq!(call(&app, &too_large).await.status, 413);
    assert_eq!(
        call(&app, &with_body(post(&w, None, &[]), "{not json"))
            .await
            .status,
        400
    );
    let lines = direct.lines();
    assert_eq!(
        totals(&lines),
        expect(&[
            ("/", "received", 2 + 1 + 2 + 2 + 1 + 2),
            ("/", "delivered", 3),
            ("/", "refused", 1),
            ("/", "failed", 2 + 1),
            ("/", "rejected", 2),
            ("/", "key_refused", 1),
            ("/payments", "received", 1),
            ("/payments", "delivered", 1),
        ])
    );
    let texts: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_eq!(
        support::emf::refused_requests(&texts),
        [
            ("bad_request", 1),
            ("invalid_path", 1),
            ("not_found", 1),
            ("payload_too_large", 1),
            ("unauthorized", 1)
        ]
        .into_iter()
        .map(|(reason, n)| (reason.to_owned(), n))
        .collect(),
        "every request refused whole is counted by its reason"
    );
    let latency = samples(&lines, "delivered", "PagerDutyLatency");
    assert_eq!(latency.len(), 4, "one latency sample per delivered event");
    assert_eq!(
        samples(&lines, "failed", "PagerDutyAttempts"),
        [8],
        "all 8 attempts"
    );
    assert_eq!(
        samples(&lines, "key_refused", "PagerDutyAttempts"),
        [1],
        "a refused key is not retried"
    );
    assert_eq!(
        samples(&lines, "refused", "PagerDutyAttempts"),
        [1],
        "a 400 is not retried"
    );
    all_lines.extend(lines);

    // Dropped (info events set to drop) and DRY_RUN.
    let settings = guance_pagerduty::domain::translate::Settings {
        info_events: guance_pagerduty::domain::translate::InfoEvents::Drop,
        ..Default::default()
    };
    let quiet = Memory::default();
    let app = w.app(AppOptions {
        settings,
        metrics: quiet.clone(),
        ..AppOptions::default()
    });
    let info = json!({"df_status": "info", "df_title": "fyi", "df_monitor_checker_event_ref": "i"});
    assert_eq!(call(&app, &post(&w, None, &[info])).await.status, 202);
    let app = w.app(AppOptions {
        dry_run: true,
        metrics: quiet.clone(),
        ..AppOptions::default()
    });
    assert_eq!(call(&app, &post(&w, None, &[alert(8)])).await.status, 202);
    let lines = quiet.lines();
    assert_eq!(
        totals(&lines),
        expect(&[
            ("/", "received", 2),
            ("/", "dropped", 1),
            ("/", "dry_run", 1)
        ])
    );
    all_lines.extend(lines);

    // Queue mode: queued by the webhook; delivered, retrying and refused by the dispatcher;
    // failed when SQS cannot be reached.
    let queues = w.moto.create_queues(30, 1000).await;
    let queued = Memory::default();
    let app = w.app(AppOptions {
        queue: Some(QueueOptions::new(&queues)),
        metrics: queued.clone(),
        ..AppOptions::default()
    });
    let a = call(
        &app,
        &post(&w, Some("payments"), &[alert(10), recovery(10), alert(11)]),
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.text);
    // First attempt round: 503 twice (the dispatcher's 2 attempts), the record waits;
    // then the trigger and its resolve go through, and alert 11 is refused (400).
    w.standin.script([
        Fault::Status(503),
        Fault::Status(503),
        Fault::Pass,
        Fault::Pass,
        Fault::Status(400),
    ]);
    let source = EventSource::new(w.moto.sqs(), &queues.url).await;
    drain(&app, &source, Duration::from_secs(60)).await;
    let lines = queued.lines();
    assert_eq!(
        totals(&lines),
        expect(&[
            ("/payments", "received", 3),
            ("/payments", "queued", 3),
            ("/payments", "retrying", 1),
            ("/payments", "delivered", 2),
            ("/payments", "refused", 1),
        ])
    );
    assert_eq!(
        samples(&lines, "retrying", "RetryingAge").len(),
        1,
        "a failed attempt says how long its event has waited"
    );
    let waits = samples(&lines, "delivered", "QueueWait");
    assert_eq!(
        waits.len(),
        2,
        "the time in the queue of each delivered event"
    );
    assert!(
        waits.iter().all(|&ms| ms >= 1000),
        "the retried lane waited its backoff (1 s jittered, in whole seconds): {waits:?}"
    );
    all_lines.extend(lines);

    let unreachable = Memory::default();
    let app = w.app(AppOptions {
        queue: Some(QueueOptions {
            sqs_endpoint: Some(format!(
                "http://127.0.0.1:{}",
                support::emulator::free_port()
            )),
            ..QueueOptions::new(&queues)
        }),
        metrics: unreachable.clone(),
        ..AppOptions::default()
    });
    assert_eq!(call(&app, &post(&w, None, &[alert(12)])).await.status, 503);
    let lines = unreachable.lines();
    assert_eq!(
        totals(&lines),
        expect(&[("/", "received", 1), ("/", "failed", 1)])
    );
    all_lines.extend(lines);

    // Two-way: a delivery with a bad signature, a ping, a person's resolve whose events
    // are restored, refused by Guance and of a workspace with no key, and one retried.
    let guance = support::guance::StandIn::start().await;
    let (signing, api_token, guance_key) = (secret_value(40), secret_value(20), secret_value(32));
    guance.add_workspace("wksp_metrics", &guance_key);
    w.moto
        .put_secret(
            &w.secret_id,
            &json!({"routing_key": w.routing_key, "webhook_token": w.token,
                    "routes": {"payments": payments_key},
                    "pagerduty_webhook_secrets": signing, "pagerduty_api_token": api_token,
                    "guance_workspaces": {"wksp_metrics": {"api_key": guance_key, "openapi_url": guance.openapi_url()}}})
            .to_string(),
        )
        .await;
    w.standin.allow_api_token(&api_token);
    let two_way = Memory::default();
    let app = w.app(AppOptions {
        metrics: two_way.clone(),
        api_url: Some(w.standin.api_url()),
        ..AppOptions::default()
    });
    let page = json!({"df_status": "critical", "df_title": "two-way", "df_workspace_uuid": "wksp_metrics",
                      "df_monitor_checker_event_ref": "ref-metrics-1"});
    // The payments route: the default route's key was revoked above.
    assert_eq!(
        call(&app, &post(&w, Some("payments"), &[page]))
            .await
            .status,
        202
    );
    let incident = w.standin.incident_for("ref-metrics-1").unwrap();
    w.standin.resolve_as_person(&incident);
    for (n, workspace) in [(2, "wksp_metrics"), (3, "wksp_no_key")] {
        w.standin.add_alert(
            &incident,
            json!({"df_workspace_uuid": workspace, "df_monitor_checker_event_ref": format!("ref-metrics-{n}")}),
        );
    }
    let signed = |body: &Value, secret: &str| {
        let body = body.to_string();
        let mut event = with_path(
            with_token(w.event("alert.json"), None),
            "/pagerduty/webhook",
        );
        event["headers"] =
            json!({"x-pagerduty-signature": support::pagerduty::sign(body.as_bytes(), secret)});
        with_body(event, &body)
    };
    let resolved = support::pagerduty::webhook_delivery(
        "incident.resolved",
        &incident,
        Some("user_reference"),
        false,
    );
    let ping = support::pagerduty::webhook_delivery("pagey.ping", "", None, false);
    assert_eq!(call(&app, &signed(&ping, "wrong")).await.status, 401);
    assert_eq!(call(&app, &signed(&ping, &signing)).await.status, 200);
    w.standin.script_rest([Fault::Status(500)]);
    assert_eq!(call(&app, &signed(&resolved, &signing)).await.status, 503);
    guance.script([
        support::guance::Fault::Pass,
        support::guance::Fault::Error(403, support::guance::INVALID_API_KEY),
    ]);
    let answer = call(&app, &signed(&resolved, &signing)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let lines = two_way.lines();
    let count = |metric: &str, outcome: &str| -> u64 {
        lines
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|l| l["Outcome"] == outcome)
            .filter_map(|l| l[metric].as_u64())
            .sum()
    };
    assert_eq!(count("PagerDutyWebhooks", "ignored"), 1);
    assert_eq!(count("PagerDutyWebhooks", "retry"), 1);
    assert_eq!(count("PagerDutyWebhooks", "recovered"), 1);
    assert_eq!(count("GuanceRestores", "restored"), 1);
    assert_eq!(count("GuanceRestores", "refused"), 1);
    assert_eq!(count("GuanceRestores", "no_key"), 1);
    let texts: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_eq!(
        support::emf::refused_requests(&texts).get("bad_signature"),
        Some(&1)
    );
    assert_eq!(samples(&lines, "restored", "GuanceLatency").len(), 1);
    for secret in [&signing, &api_token, &guance_key] {
        assert!(lines.iter().all(|l| !l.contains(secret.as_str())));
    }
    all_lines.extend(lines);

    // What the code emits, over every scenario: each outcome, and nothing else.
    let declared: BTreeSet<Declared> = all_lines
        .iter()
        .flat_map(|l| validate(l).unwrap())
        .collect();
    let reasons: BTreeSet<String> = declared
        .iter()
        .filter_map(|d| {
            let at = d.dimensions.iter().position(|k| k == "Reason")?;
            Some(d.values[at].clone())
        })
        .collect();
    let outcomes: BTreeSet<String> = declared
        .iter()
        .filter(|d| d.metric == "Events" && d.dimensions.contains(&"Outcome".to_owned()))
        .map(|d| d.values[d.dimensions.iter().position(|k| k == "Outcome").unwrap()].clone())
        .collect();
    let every: BTreeSet<String> = Outcome::ALL.iter().map(|o| o.as_str().to_owned()).collect();
    assert_eq!(outcomes, every, "every outcome was seen, and no other");
    assert!(declared.iter().all(|d| d.namespace == METRICS_NAMESPACE));
    let shapes: BTreeSet<(String, String, Vec<String>)> = declared
        .iter()
        .map(|d| (d.metric.clone(), d.unit.clone(), d.dimensions.clone()))
        .collect();
    let texts: Vec<&str> = all_lines.iter().map(String::as_str).collect();
    assert_no_secret_leaked(&texts);
    assert!(
        all_lines.iter().all(|l| !l.contains(&payments_key)),
        "a route's key is in a metric line"
    );
    w.finish(&[]);

    if let Ok(path) = std::env::var("METRICS_CATALOG") {
        let metrics: Vec<Value> = shapes
            .iter()
            .map(|(metric, unit, dimensions)| json!({"metric": metric, "unit": unit, "dimensions": dimensions}))
            .collect();
        let catalog = json!({
            "namespace_variable": "METRICS_NAMESPACE",
            "metrics": metrics,
            "outcomes": {
                "Events": every,
                "PagerDutyWebhooks": WebhookOutcome::ALL.map(WebhookOutcome::as_str),
                "GuanceRestores": RestoreOutcome::ALL.map(RestoreOutcome::as_str),
            },
            "reasons": reasons,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&catalog).unwrap()).unwrap();
    }
}
