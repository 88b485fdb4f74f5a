//! The real handler against a real Secrets Manager emulator (moto) and a PagerDuty
//! stand-in that enforces PagerDuty's contract.

mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::pagerduty::Fault;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_then_recovery_arrive_as_trigger_then_resolve_with_one_dedup_key() {
    let w = world().await;
    let app = w.app(AppOptions::default());
    let alert = call(&app, &w.event("alert.json")).await;
    let recovery = call(&app, &w.event("recovery.json")).await;
    assert_eq!(
        (alert.status, recovery.status),
        (202, 202),
        "{} {}",
        alert.text,
        recovery.text
    );
    assert_eq!(alert.body["results"][0]["outcome"], "sent");
    assert_eq!(alert.body["results"][0]["action"], "trigger");
    assert_eq!(recovery.body["results"][0]["action"], "resolve");

    let accepted = w.standin.accepted();
    assert_eq!(accepted.len(), 2);
    let (trigger, resolve) = (&accepted[0], &accepted[1]);
    assert_eq!(
        (trigger.event_action.as_str(), resolve.event_action.as_str()),
        ("trigger", "resolve")
    );
    assert_eq!(trigger.dedup_key, "13713ac25e993a37d2ca5899e2a7bba6");
    assert_eq!(resolve.dedup_key, trigger.dedup_key);
    assert!(
        resolve.resolved_open_alert,
        "the resolve closes the alert the trigger opened"
    );
    assert_eq!(trigger.routing_key, w.routing_key);
    assert_eq!(trigger.body["payload"]["severity"], "critical");
    assert_eq!(
        trigger.body["payload"]["summary"],
        "实例名称为 share 磁盘使用率过高"
    );
    assert_eq!(
        alert.body["results"][0]["dedup_key"],
        trigger.dedup_key.as_str()
    );
    w.finish(&[&alert, &recovery]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_or_with_a_wrong_token_never_reach_pagerduty() {
    let w = world().await;
    let app = w.app(AppOptions::default());
    let wrong = secret_value(40);
    let cases = [
        ("no token", with_token(event_file("alert.json"), None)),
        ("the shipped no-token event", event_file("no-token.json")),
        (
            "wrong token",
            w.event("alert.json").pipe(|e| with_token(e, Some(&wrong))),
        ),
        (
            "token in the wrong case",
            w.event("alert.json")
                .pipe(|e| with_token(e, Some(&w.token.to_uppercase()))),
        ),
        (
            "token with a suffix",
            w.event("alert.json")
                .pipe(|e| with_token(e, Some(&format!("{}x", w.token)))),
        ),
        (
            "empty token",
            w.event("alert.json").pipe(|e| with_token(e, Some(""))),
        ),
    ];
    let mut answers = Vec::new();
    for (name, event) in &cases {
        let a = call(&app, event).await;
        assert_eq!(a.status, 401, "{name}: {}", a.text);
        assert_eq!(a.body["error"], "unauthorized", "{name}");
        answers.push(a);
    }
    // Bearer header works as well as the query string.
    let mut bearer = with_token(event_file("alert.json"), None);
    bearer["headers"]["authorization"] = json!(format!("Bearer {}", w.token));
    let a = call(&app, &bearer).await;
    assert_eq!(a.status, 202, "{}", a.text);
    let mut wrong_bearer = with_token(event_file("alert.json"), None);
    wrong_bearer["headers"]["authorization"] = json!(format!("Bearer {wrong}"));
    let b = call(&app, &wrong_bearer).await;
    assert_eq!(b.status, 401);

    assert_eq!(
        w.standin.accepted().len(),
        1,
        "only the authenticated request got through"
    );
    assert_eq!(w.standin.requests(), 1);
    // Strangers cannot make the function hammer Secrets Manager: one forced refresh.
    assert_eq!(app.secrets.fetch_count(), 2);
    answers.extend([a, b]);
    w.finish(&answers.iter().collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_twice_then_accepted_is_one_delivered_event_and_a_202() {
    let w = world().await;
    let app = w.app(AppOptions::default());
    w.standin
        .script([Fault::Status(429), Fault::StatusRetryAfter(429, 0)]);
    let a = call(&app, &w.event("alert.json")).await;
    assert_eq!(a.status, 202, "{}", a.text);
    assert_eq!(a.body["results"][0]["outcome"], "sent");
    assert_eq!(w.standin.requests(), 3);
    assert_eq!(w.standin.accepted().len(), 1);
    assert!(
        captured_logs().contains(r#""attempts":3"#),
        "the log line counts the attempts"
    );
    w.finish(&[&a]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagerduty_down_gives_a_503_and_nothing_reported_as_sent() {
    let w = world().await;
    let app = w.app(AppOptions {
        retry: guance_pagerduty::adapters::delivery::RetryPolicy {
            max_attempts: 4,
            ..fast_retries()
        },
        ..AppOptions::default()
    });
    let body = json!([
        serde_json::from_str::<Value>(event_file("alert.json")["body"].as_str().unwrap()).unwrap(),
        serde_json::from_str::<Value>(event_file("recovery.json")["body"].as_str().unwrap())
            .unwrap(),
    ]);
    w.standin.script([
        Fault::Status(500),
        Fault::Drop,
        Fault::Status(503),
        Fault::Status(502),
    ]);
    let a = call(&app, &with_body(w.event("alert.json"), &body.to_string())).await;
    assert_eq!(a.status, 503, "{}", a.text);
    assert_eq!(a.body["error"], "pagerduty_unavailable");
    assert!(a.response.headers.get("retry-after").is_some());
    let outcomes: Vec<&str> = a.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["failed", "not_sent"],
        "the resolve must not overtake its failed trigger"
    );
    assert_eq!(w.standin.requests(), 4);
    assert!(w.standin.accepted().is_empty());

    // Once PagerDuty is back, the same request goes through whole, in order.
    let b = call(&app, &with_body(w.event("alert.json"), &body.to_string())).await;
    assert_eq!(b.status, 202, "{}", b.text);
    let actions: Vec<String> = w
        .standin
        .accepted()
        .iter()
        .map(|e| e.event_action.clone())
        .collect();
    assert_eq!(actions, ["trigger", "resolve"]);
    w.finish(&[&a, &b]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_before_the_lambda_deadline() {
    let w = world().await;
    let app = w.app(AppOptions {
        retry: guance_pagerduty::adapters::delivery::RetryPolicy {
            max_attempts: 50,
            attempt_timeout: Duration::from_millis(300),
            ..fast_retries()
        },
        deadline_margin: Duration::from_secs(1),
        ..AppOptions::default()
    });
    w.standin.script(std::iter::repeat_n(
        Fault::Stall(Duration::from_secs(5)),
        50,
    ));
    let started = std::time::Instant::now();
    let response = app
        .handle(
            request(&w.event("alert.json")),
            &invocation(Duration::from_millis(3000)),
        )
        .await;
    let elapsed = started.elapsed();
    let a = answer(response);
    assert_eq!(a.status, 503, "{}", a.text);
    // Retries stop by the deadline less the 1 s margin (2 s), so the answer comes before
    // the Lambda deadline (3 s) with the margin to spare on a busy machine.
    assert!(elapsed < Duration::from_millis(3000), "{elapsed:?}");
    assert!(w.standin.requests() >= 2);
    assert!(w.standin.accepted().is_empty());
    w.finish(&[&a]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_attempt_times_out_and_the_retry_delivers() {
    let w = world().await;
    let app = w.app(AppOptions {
        retry: guance_pagerduty::adapters::delivery::RetryPolicy {
            attempt_timeout: Duration::from_millis(300),
            ..fast_retries()
        },
        ..AppOptions::default()
    });
    w.standin.script([Fault::Stall(Duration::from_secs(2))]);
    let a = call(&app, &w.event("nodata.json")).await;
    assert_eq!(a.status, 202, "{}", a.text);
    let accepted = w.standin.accepted();
    assert_eq!(accepted.len(), 1);
    assert_eq!(
        accepted[0].body["payload"]["severity"], "error",
        "nodata defaults to error"
    );
    w.finish(&[&a]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagerduty_400_is_not_retried_and_gives_a_422_with_its_errors() {
    let w = world().await;
    let app = w.app(AppOptions::default());
    w.standin.script([Fault::Status(400)]);
    let a = call(&app, &w.event("alert.json")).await;
    assert_eq!(a.status, 422, "{}", a.text);
    assert_eq!(a.body["errors"], json!(["scripted failure"]));
    assert_eq!(a.body["results"][0]["outcome"], "failed");
    assert_eq!(w.standin.requests(), 1, "a 400 is never retried");
    w.finish(&[&a]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_route_uses_its_own_routing_key() {
    let payments = secret_value(32);
    let payments_for_secret = payments.clone();
    let w = world_with_secret(move |key, token| {
        json!({"routing_key": key, "webhook_token": token, "routes": {"payments": payments_for_secret}}).to_string()
    })
    .await;
    let app = w.app(AppOptions::default());
    let a = call(&app, &with_path(w.event("alert.json"), "/payments")).await;
    let b = call(&app, &w.event("alert.json")).await;
    let c = call(&app, &with_path(w.event("alert.json"), "/unknown")).await;
    let d = call(&app, &with_path(w.event("alert.json"), "/..%2Fpayments")).await;
    let e = call(
        &app,
        &with_path(with_token(event_file("alert.json"), None), "/unknown"),
    )
    .await;
    assert_eq!(
        (a.status, b.status, c.status, d.status),
        (202, 202, 404, 404)
    );
    assert_eq!(
        e.status, 401,
        "strangers learn nothing about which routes exist"
    );
    let keys: Vec<String> = w
        .standin
        .accepted()
        .iter()
        .map(|e| e.routing_key.clone())
        .collect();
    assert_eq!(keys, [payments, w.routing_key.clone()]);
    w.finish(&[&a, &b, &c, &d, &e]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_is_accepted_without_waiting_for_the_ttl() {
    let w = world().await;
    let app = w.app(AppOptions::default());
    let before = call(&app, &w.event("alert.json")).await;
    assert_eq!(before.status, 202);

    let new_token = secret_value(40);
    w.moto
        .put_secret(
            &w.secret_id,
            &json!({"routing_key": w.routing_key, "webhook_token": new_token}).to_string(),
        )
        .await;
    let after = call(
        &app,
        &with_token(event_file("recovery.json"), Some(&new_token)),
    )
    .await;
    assert_eq!(after.status, 202, "{}", after.text);
    let old = call(&app, &w.event("alert.json")).await;
    assert_eq!(old.status, 401, "the old token stops working");
    assert_eq!(
        app.secrets.fetch_count(),
        2,
        "one read at start, one forced by the rotation"
    );
    assert_eq!(w.standin.accepted().len(), 2);
    w.finish(&[&before, &after, &old]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_json_errors_and_send_nothing() {
    let w = world().await;
    let app = w.app(AppOptions {
        max_body_bytes: 4096,
        ..AppOptions::default()
    });
    let recovery_without_key =
        json!({"df_status": "ok", "df_event_id": "e1", "df_title": "t"}).to_string();
    let cases: Vec<(&str, Value, i64, &str)> = vec![
        (
            "malformed",
            w.event("malformed-body.json"),
            400,
            "bad_request",
        ),
        (
            "too large",
            with_body(w.event("alert.json"), &"x".repeat(5000)),
            413,
            "payload_too_large",
        ),
        (
            "not an event",
            with_body(w.event("alert.json"), "42"),
            400,
            "bad_request",
        ),
        (
            "empty batch",
            with_body(w.event("alert.json"), "[]"),
            400,
            "bad_request",
        ),
        (
            "empty body",
            with_body(w.event("alert.json"), ""),
            400,
            "bad_request",
        ),
        (
            "resolve without key",
            with_body(w.event("alert.json"), &recovery_without_key),
            400,
            "untranslatable_event",
        ),
        (
            "no element is an event",
            with_body(w.event("alert.json"), "[7, null]"),
            400,
            "untranslatable_event",
        ),
        (
            "bad base64",
            {
                let mut e = with_body(w.event("alert.json"), "%%%not base64%%%");
                e["isBase64Encoded"] = json!(true);
                e
            },
            400,
            "bad_request",
        ),
        (
            "GET a route",
            {
                let mut e = with_path(w.event("alert.json"), "/payments");
                e["requestContext"]["http"]["method"] = json!("GET");
                e
            },
            405,
            "method_not_allowed",
        ),
    ];
    let mut answers = Vec::new();
    for (name, event, status, code) in cases {
        let a = call(&app, &event).await;
        assert_eq!(
            (a.status, a.body["error"].as_str().unwrap()),
            (status, code),
            "{name}: {}",
            a.text
        );
        assert!(!a.body["message"].as_str().unwrap().is_empty());
        answers.push(a);
    }
    assert_eq!(w.standin.requests(), 0, "nothing was sent");
    w.finish(&answers.iter().collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base64_bodies_health_check_and_dry_run() {
    use base64::Engine;
    let w = world().await;
    let app = w.app(AppOptions::default());
    let mut encoded = w.event("alert.json");
    let body = encoded["body"].as_str().unwrap().to_owned();
    encoded["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
    encoded["isBase64Encoded"] = json!(true);
    let a = call(&app, &encoded).await;
    assert_eq!(a.status, 202, "{}", a.text);

    let health = call(&app, &event_file("health.json")).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body["status"], "ok");
    assert_eq!(health.body["version"], env!("CARGO_PKG_VERSION"));

    let dry = w.app(AppOptions {
        dry_run: true,
        ..AppOptions::default()
    });
    let d = call(&dry, &w.event("recovery.json")).await;
    assert_eq!(d.status, 202);
    assert_eq!(d.body["results"][0]["outcome"], "dry_run");
    assert_eq!(w.standin.accepted().len(), 1, "the dry run sent nothing");
    assert!(captured_logs().contains("DRY_RUN"));
    w.finish(&[&a, &health, &d]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_configured_token_requests_are_refused_unless_allowed() {
    let w = world_with_secret(|key, _| key.to_owned()).await;
    let refused = call(&w.app(AppOptions::default()), &w.event("alert.json")).await;
    assert_eq!(refused.status, 401);
    let open = w.app(AppOptions {
        allow_unauthenticated: true,
        ..AppOptions::default()
    });
    let allowed = call(&open, &with_token(event_file("alert.json"), None)).await;
    assert_eq!(allowed.status, 202, "{}", allowed.text);
    assert_eq!(
        w.standin.accepted()[0].routing_key,
        w.routing_key,
        "a bare routing key works"
    );
    w.finish(&[&refused, &allowed]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_secret_gives_a_503_and_sends_nothing() {
    let w = world().await;
    let app = app(
        &w.moto,
        "no-such-secret",
        &w.standin.events_url(),
        AppOptions::default(),
    );
    let a = call(&app, &w.event("alert.json")).await;
    assert_eq!(a.status, 503, "{}", a.text);
    assert_eq!(a.body["error"], "secret_unavailable");
    assert!(a.response.headers.get("retry-after").is_some());
    assert_eq!(w.standin.requests(), 0);
    w.finish(&[&a]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_logs_say_what_happened_and_hold_no_secret() {
    let w = world().await;
    let app = w.app(AppOptions::default());
    let a = call(&app, &w.event("alert.json")).await;
    assert_eq!(a.status, 202);
    let logs = captured_logs();
    let line: Value = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| {
            l["message"] == "event delivered to PagerDuty"
                && l["df_event_id"] == "event-f20a38aa58b54c6c8d4c9a84e655db1a"
        })
        .expect("one log line per delivered event");
    for field in [
        "request_id",
        "df_event_id",
        "dedup_key",
        "action",
        "severity",
        "pagerduty_status",
        "attempts",
        "ms",
    ] {
        assert!(!line[field].is_null(), "the line has {field}: {line}");
    }
    w.finish(&[&a]);
}
