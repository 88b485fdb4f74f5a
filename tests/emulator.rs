//! The built `bootstrap` through AWS's Lambda Runtime Interface Emulator: the runtime loop
//! Lambda runs (event deserialization, error reporting, the runtime's own logging), which
//! tests calling `App::handle` never pass through. Logging is at TRACE for every crate.

mod support;

use serde_json::{json, Value};
use support::emulator::Emulator;
use support::*;

const BOOTSTRAP: &str = env!("CARGO_BIN_EXE_bootstrap");

/// Each file in `events/`, in the order sent, and the status its name promises.
const EVENT_FILES: &[(&str, i64)] = &[
    ("health.json", 200),
    ("alert.json", 202),
    ("recovery.json", 202),
    // Signed with the demo's secret; names the incident alert.json opened.
    ("resolved-in-pagerduty.json", 200),
    ("nodata.json", 202),
    ("test-button.json", 202),
    ("empty-object.json", 202),
    ("mixed-body.json", 202),
    ("malformed-body.json", 400),
    ("bad-base64.json", 400),
    ("no-token.json", 401),
];

fn function_env(w: &World) -> Vec<(&'static str, String)> {
    vec![
        ("PAGERDUTY_SECRET_ID", w.secret_id.clone()),
        ("PAGERDUTY_EVENTS_URL", w.standin.events_url()),
        ("PAGERDUTY_API_URL", w.standin.api_url()),
        ("AWS_ENDPOINT_URL", w.moto.endpoint.clone()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("RUST_LOG", "trace".into()),
        ("METRICS_NAMESPACE", "guance-pagerduty/emulator".into()),
    ]
}

/// `Events` per outcome in the function's metric lines (stdout, among its logs), each
/// line checked against the Embedded Metric Format and its namespace against the one
/// configured.
fn events_by_outcome(output: &str) -> std::collections::BTreeMap<String, u64> {
    let lines = support::emf::metric_lines(output);
    let mut counts = std::collections::BTreeMap::new();
    for ((_route, outcome), n) in support::emf::events(&lines, "guance-pagerduty/emulator") {
        *counts.entry(outcome).or_default() += n;
    }
    counts
}

/// The event file with the demo token replaced by this test's (files without a token
/// stay without one).
fn event_with_test_token(w: &World, name: &str) -> Value {
    let event = event_file(name);
    if event["queryStringParameters"]["token"].is_string() {
        with_token(event, Some(&w.token))
    } else {
        event
    }
}

/// The function's answer, checked to be a function URL response with a JSON body.
fn response(answer: &Value, name: &str) -> (i64, Value) {
    let status = answer["statusCode"]
        .as_i64()
        .unwrap_or_else(|| panic!("{name}: not a function URL response: {answer}"));
    let body = serde_json::from_str(answer["body"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{name}: body is not JSON ({e}): {answer}"));
    assert_eq!(
        answer["headers"]["content-type"], "application/json",
        "{name}"
    );
    (status, body)
}

fn assert_no_secret_in(w: &World, texts: &[&str]) {
    for text in texts {
        for (what, secret) in [("routing key", &w.routing_key), ("token", &w.token)] {
            if let Some(line) = text.lines().find(|l| l.contains(secret.as_str())) {
                panic!(
                    "the {what} leaked: {}",
                    line.replace(secret.as_str(), "<SECRET>")
                );
            }
        }
    }
}

/// The signing secret `events/resolved-in-pagerduty.json` is signed with (the demo's:
/// public, so not registered as a secret).
const DEMO_SIGNING_SECRET: &str = "demo-pagerduty-signing-secret";
/// The workspace and ref of `events/alert.json` (CONTRACT.md's example).
const EXAMPLE_WORKSPACE: &str = "wksp_968577392a1c4714a464cd2f6ee42a9c";
const EXAMPLE_REF: &str = "13713ac25e993a37d2ca5899e2a7bba6";
/// A second workspace, with a key of its own.
const OTHER_WORKSPACE: &str = "wksp_0000000000000000000000000000000b";

/// Two-way's credentials for a world: the API token and the example workspace's key.
struct TwoWaySecrets {
    api_token: String,
    guance_key: String,
    other_key: String,
    guance: support::guance::StandIn,
}

async fn two_way_world(signing_secret: &str) -> (World, TwoWaySecrets) {
    let guance = support::guance::StandIn::start().await;
    let (api_token, guance_key, other_key) = (secret_value(24), secret_value(32), secret_value(32));
    let openapi_url = guance.openapi_url();
    let w = world_with_secret(|routing_key, token| {
        json!({"routing_key": routing_key, "webhook_token": token,
               "pagerduty_webhook_secrets": [signing_secret],
               "pagerduty_api_token": api_token,
               "guance_workspaces": {
                   EXAMPLE_WORKSPACE: {"api_key": guance_key, "openapi_url": openapi_url},
                   OTHER_WORKSPACE: {"api_key": other_key, "openapi_url": openapi_url}}})
        .to_string()
    })
    .await;
    w.standin.allow_api_token(&api_token);
    guance.add_workspace(EXAMPLE_WORKSPACE, &guance_key);
    guance.add_workspace(OTHER_WORKSPACE, &other_key);
    (
        w,
        TwoWaySecrets {
            api_token,
            guance_key,
            other_key,
            guance,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_file_answers_what_its_name_says_and_nothing_leaks_at_trace() {
    let (w, two_way) = two_way_world(DEMO_SIGNING_SECRET).await;
    let mut listed: Vec<String> = std::fs::read_dir(EVENTS_DIR)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    listed.sort();
    let mut expected: Vec<String> = EVENT_FILES.iter().map(|(n, _)| n.to_string()).collect();
    expected.sort();
    assert_eq!(
        listed, expected,
        "every file in events/ has its expectation here"
    );

    let emulator = Emulator::start(BOOTSTRAP, &function_env(&w));
    let mut answers = Vec::new();
    for (name, status) in EVENT_FILES {
        let answer = emulator.invoke(&event_with_test_token(&w, name)).await;
        let (got, body) = response(&answer, name);
        assert_eq!(got, *status, "{name}: {answer}");
        if *status >= 400 {
            assert!(body["message"].is_string(), "{name}: {body}");
        }
        answers.push(answer.to_string());
    }

    let accepted = w.standin.accepted();
    let actions: Vec<&str> = accepted.iter().map(|a| a.event_action.as_str()).collect();
    assert_eq!(
        actions,
        ["trigger", "resolve", "trigger", "trigger", "trigger", "trigger"],
        "alert, recovery, nodata, the test button, an empty object and the mixed body's alert"
    );
    assert_eq!(accepted[5].dedup_key, "mixed-body-disk-share");
    assert!(
        accepted[1].resolved_open_alert,
        "the recovery closed the alert"
    );
    assert_eq!(accepted[1].dedup_key, accepted[0].dedup_key);
    assert!(
        accepted[3].dedup_key.starts_with("guance-"),
        "the test button's key is a hash of the event: {}",
        accepted[3].dedup_key
    );
    assert!(accepted.iter().all(|a| a.routing_key == w.routing_key));

    let output = emulator.output();
    assert!(
        output.contains(r#""level":"TRACE""#) || output.contains(r#""level":"DEBUG""#),
        "the function logged below INFO, so the check below can see a leak: {output}"
    );
    // The metric lines reach stdout through the runtime loop: the six delivered events,
    // the mixed body's rejected recovery and the received ones; the malformed bodies and
    // the tokenless request, refused whole, by their reasons.
    let counts = events_by_outcome(&output);
    assert_eq!(
        counts,
        [
            ("delivered".to_owned(), 6),
            ("received".to_owned(), 7),
            ("rejected".to_owned(), 1)
        ]
        .into(),
        "{output}"
    );
    assert_eq!(
        support::emf::refused_requests(&support::emf::metric_lines(&output)),
        [
            ("bad_request".to_owned(), 2),
            ("unauthorized".to_owned(), 1)
        ]
        .into(),
        "{output}"
    );
    // The signed resolve recovered the example alert's Guance event, with its key.
    let restored: Vec<(String, String)> = two_way
        .guance
        .restores()
        .into_iter()
        .map(|r| (r.workspace_uuid, r.monitor_checker_event_ref))
        .collect();
    assert_eq!(
        restored,
        [(EXAMPLE_WORKSPACE.to_owned(), EXAMPLE_REF.to_owned())]
    );
    let answers: Vec<&str> = answers.iter().map(String::as_str).collect();
    assert_no_secret_in(&w, &answers);
    assert_no_secret_in(&w, &[&output]);
    for secret in [&two_way.api_token, &two_way.guance_key] {
        assert!(
            !output.contains(secret.as_str())
                && answers.iter().all(|a| !a.contains(secret.as_str())),
            "a two-way secret leaked"
        );
    }
    w.finish(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_way_through_the_runtime_loop_at_trace() {
    let signing_secret = secret_value(48);
    let (w, two_way) = two_way_world(&signing_secret).await;
    let emulator = Emulator::start(BOOTSTRAP, &function_env(&w));
    let mut answers = Vec::new();
    let alert = json!({"df_status": "critical", "df_title": "two-way at trace",
                       "df_workspace_uuid": EXAMPLE_WORKSPACE, "df_monitor_checker_event_ref": "ref-trace"});
    let page = with_body(event_with_test_token(&w, "alert.json"), &alert.to_string());
    let (status, _) = response(&emulator.invoke(&page).await, "page");
    assert_eq!(status, 202);
    let incident = w.standin.incident_for("ref-trace").unwrap();
    // Grouped into it: an alert of another workspace, and one of another integration.
    w.standin.add_alert(
        &incident,
        json!({"df_workspace_uuid": OTHER_WORKSPACE, "df_monitor_checker_event_ref": "ref-other"}),
    );
    w.standin
        .add_alert(&incident, json!({"source": "another integration"}));
    w.standin.resolve_as_person(&incident);
    let delivery = |body: &Value, secret: &str| {
        let mut event = event_file("resolved-in-pagerduty.json");
        let body = body.to_string();
        event["headers"]["x-pagerduty-signature"] =
            json!(support::pagerduty::sign(body.as_bytes(), secret));
        event["body"] = json!(body);
        event
    };
    let resolved = support::pagerduty::webhook_delivery(
        "incident.resolved",
        &incident,
        Some("user_reference"),
        false,
    );
    let by_integration = support::pagerduty::webhook_delivery(
        "incident.resolved",
        &incident,
        Some("inbound_integration_reference"),
        false,
    );
    let cases = [
        (
            "a bad signature",
            delivery(&resolved, "wrong"),
            401,
            "bad_signature",
        ),
        (
            "the bridge's own resolve",
            delivery(&by_integration, &signing_secret),
            200,
            "not_a_person",
        ),
        (
            "a ping",
            delivery(
                &support::pagerduty::webhook_delivery("pagey.ping", "", None, false),
                &signing_secret,
            ),
            200,
            "ping",
        ),
    ];
    for (case, event, expected, code) in cases {
        let answer = emulator.invoke(&event).await;
        let (status, body) = response(&answer, case);
        assert_eq!(status, expected, "{case}: {answer}");
        assert!(
            body["error"] == code || body["reason"] == code,
            "{case}: {body}"
        );
        answers.push(answer.to_string());
    }
    assert!(
        two_way.guance.restores().is_empty(),
        "no ignored delivery restored anything"
    );

    // PagerDuty's REST API fails: a retry answer, nothing restored.
    w.standin
        .script_rest([support::pagerduty::Fault::Status(502)]);
    let answer = emulator.invoke(&delivery(&resolved, &signing_secret)).await;
    let (status, _) = response(&answer, "REST failing");
    assert_eq!(status, 503, "{answer}");
    assert!(answer["headers"]["retry-after"].is_string(), "{answer}");
    answers.push(answer.to_string());
    assert!(two_way.guance.restores().is_empty());

    // Guance accepts and never answers: a retry answer within PagerDuty's 5 s ...
    two_way.guance.script([support::guance::Fault::Stall(
        std::time::Duration::from_secs(30),
    )]);
    let started = std::time::Instant::now();
    let answer = emulator.invoke(&delivery(&resolved, &signing_secret)).await;
    let took = started.elapsed();
    let (status, _) = response(&answer, "stalled Guance");
    assert_eq!(status, 503, "{answer}");
    assert!(
        took < std::time::Duration::from_secs(5),
        "answered after {took:?}"
    );
    answers.push(answer.to_string());
    // ... and PagerDuty's retry completes it.
    let answer = emulator.invoke(&delivery(&resolved, &signing_secret)).await;
    let (status, body) = response(&answer, "the retry");
    assert_eq!(status, 200, "{answer}");
    assert!(
        body["restores"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["outcome"] == "restored" || r["outcome"] == "already_done"),
        "{body}"
    );
    answers.push(answer.to_string());
    // Exactly the incident's Guance events, each once, each with its workspace's key
    // (the stand-in takes the workspace from the key).
    let mut restored: Vec<(String, String)> = two_way
        .guance
        .restores()
        .into_iter()
        .map(|r| (r.workspace_uuid, r.monitor_checker_event_ref))
        .collect();
    restored.sort();
    assert_eq!(
        restored,
        [
            (OTHER_WORKSPACE.to_owned(), "ref-other".to_owned()),
            (EXAMPLE_WORKSPACE.to_owned(), "ref-trace".to_owned()),
        ]
    );
    assert!(two_way.guance.restores().iter().all(|r| !r.repeat));

    let output = emulator.output();
    assert!(output.contains(r#""level":"TRACE""#), "logged at TRACE");
    let answers: Vec<&str> = answers.iter().map(String::as_str).collect();
    assert_no_secret_in(&w, &answers);
    assert_no_secret_in(&w, &[&output]);
    for secret in [
        &signing_secret,
        &two_way.api_token,
        &two_way.guance_key,
        &two_way.other_key,
    ] {
        if let Some(line) = output.lines().find(|l| l.contains(secret.as_str())) {
            panic!(
                "a two-way secret leaked: {}",
                line.replace(secret.as_str(), "<SECRET>")
            );
        }
        assert!(answers.iter().all(|a| !a.contains(secret.as_str())));
    }
    w.finish(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_invocation_gets_a_clear_error_and_the_function_keeps_serving() {
    let w = world().await;
    let emulator = Emulator::start(BOOTSTRAP, &function_env(&w));
    let health = event_file("health.json");

    let (status, _) = response(&emulator.invoke(&health).await, "health");
    assert_eq!(status, 200);

    // A function URL event whose fields have the wrong types, one of them holding the
    // token: the error names the field and never the value.
    let mut wrong_types = event_with_test_token(&w, "alert.json");
    wrong_types["headers"] = json!(format!("token={}", w.token));
    let cases = [
        (
            "not a function URL event",
            json!({"source": "aws.events", "detail": {"token": w.token}}).to_string(),
            "UnrecognizedInvocation",
            "neither a function URL request nor an SQS event",
        ),
        (
            "wrong field types",
            wrong_types.to_string(),
            "UnrecognizedInvocation",
            "`headers`",
        ),
        (
            "a JSON string",
            json!(w.token).to_string(),
            "UnrecognizedInvocation",
            "a string",
        ),
        (
            "not JSON at all",
            format!("token={}", w.token),
            "",
            "deserialize",
        ),
    ];
    let mut answers = Vec::new();
    for (what, payload, error_type, says) in cases {
        let answer = emulator.invoke_raw(payload.into_bytes()).await;
        let message = answer["errorMessage"].as_str().unwrap_or_default();
        assert!(answer["statusCode"].is_null(), "{what}: {answer}");
        if !error_type.is_empty() {
            assert_eq!(answer["errorType"], error_type, "{what}: {answer}");
        }
        assert!(message.contains(says), "{what}: {answer}");
        answers.push(answer.to_string());

        // The function is still there for the next invocation.
        let (status, _) = response(&emulator.invoke(&health).await, "health after");
        assert_eq!(status, 200, "after {what}");
    }
    let (status, _) = response(
        &emulator
            .invoke(&event_with_test_token(&w, "alert.json"))
            .await,
        "alert after",
    );
    assert_eq!(status, 202);
    assert_eq!(w.standin.accepted().len(), 1);

    let output = emulator.output();
    assert_eq!(
        events_by_outcome(&output),
        [("delivered".to_owned(), 1), ("received".to_owned(), 1)].into(),
        "only the alert is an event: {output}"
    );
    let answers: Vec<&str> = answers.iter().map(String::as_str).collect();
    assert_no_secret_in(&w, &answers);
    assert_no_secret_in(&w, &[&output]);
    w.finish(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_mode_through_the_runtime_loop_webhook_then_sqs_batch() {
    let w = world().await;
    let queues = w.moto.create_queues(30, 1000).await;
    let mut env = function_env(&w);
    env.push(("DELIVERY_QUEUE_URL", queues.url.clone()));
    env.push(("DEAD_LETTER_QUEUE_URL", queues.dlq.clone()));
    let emulator = Emulator::start(BOOTSTRAP, &env);

    let mut answers = Vec::new();
    for name in ["alert.json", "recovery.json"] {
        let answer = emulator.invoke(&event_with_test_token(&w, name)).await;
        let (status, body) = response(&answer, name);
        assert_eq!(status, 202, "{answer}");
        assert_eq!(body["results"][0]["outcome"], "queued");
        answers.push(answer.to_string());
    }
    assert!(w.standin.accepted().is_empty(), "queued, not sent yet");

    // Lambda's event source mapping, played from real ReceiveMessage answers.
    let source = support::event_source::EventSource::new(w.moto.sqs(), &queues.url).await;
    let messages = source.receive(1).await;
    assert_eq!(messages.len(), 2);
    let answer = emulator.invoke(&source.sqs_event(&messages)).await;
    assert_eq!(answer, json!({"batchItemFailures": []}), "{answer}");
    source.settle(&messages, Some(&answer)).await;
    answers.push(answer.to_string());

    let accepted = w.standin.accepted();
    let actions: Vec<&str> = accepted.iter().map(|a| a.event_action.as_str()).collect();
    assert_eq!(actions, ["trigger", "resolve"]);
    assert!(accepted[1].resolved_open_alert);
    assert_eq!(source.depth().await, 0);

    let output = emulator.output();
    assert_eq!(
        events_by_outcome(&output),
        [
            ("delivered".to_owned(), 2),
            ("queued".to_owned(), 2),
            ("received".to_owned(), 2)
        ]
        .into(),
        "{output}"
    );
    let answers: Vec<&str> = answers.iter().map(String::as_str).collect();
    assert_no_secret_in(&w, &answers);
    assert_no_secret_in(&w, &[&output]);
    w.finish(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqs_that_never_answers_still_gets_both_entry_points_answered_in_time() {
    let w = world().await;
    let queues = w.moto.create_queues(30, 1000).await;
    // Two events on the queue, put there through a working SQS.
    let working = w.app(AppOptions {
        queue: Some(QueueOptions::new(&queues)),
        ..AppOptions::default()
    });
    let body = json!([
        {"df_status": "critical", "df_title": "disk full", "df_monitor_checker_event_ref": "stall-1"},
        {"df_status": "ok", "df_title": "disk full", "df_monitor_checker_event_ref": "stall-1"}
    ]);
    let queued = call(
        &working,
        &with_body(w.event("alert.json"), &body.to_string()),
    )
    .await;
    assert_eq!(queued.status, 202, "{}", queued.text);

    // The function's SQS accepts connections and never answers; Lambda's deadline is 6 s.
    let stalled = Stalled::start();
    let mut env = function_env(&w);
    env.push(("DELIVERY_QUEUE_URL", queues.url.clone()));
    env.push(("DEAD_LETTER_QUEUE_URL", queues.dlq.clone()));
    env.push(("AWS_ENDPOINT_URL_SQS", stalled.endpoint.clone()));
    env.push(("AWS_LAMBDA_FUNCTION_TIMEOUT", "6".into()));
    let emulator = Emulator::start(BOOTSTRAP, &env);

    // The webhook: Guance gets a 503 with Retry-After before the deadline, not a timeout.
    let started = std::time::Instant::now();
    let answer = emulator
        .invoke(&event_with_test_token(&w, "alert.json"))
        .await;
    let took = started.elapsed();
    let (status, reply) = response(&answer, "alert, SQS stalled");
    assert_eq!(status, 503, "{answer}");
    assert_eq!(reply["error"], "queue_unavailable");
    assert!(answer["headers"]["retry-after"].is_string(), "{answer}");
    assert!(took < std::time::Duration::from_secs(6), "{took:?}");

    // The dispatcher: PagerDuty is down, the backoffs cannot be set; it still returns
    // its batchItemFailures before the deadline instead of timing out.
    w.standin.set_outage(true);
    let source = support::event_source::EventSource::new(w.moto.sqs(), &queues.url).await;
    let messages = source.receive(1).await;
    assert_eq!(messages.len(), 2);
    let started = std::time::Instant::now();
    let answer = emulator.invoke(&source.sqs_event(&messages)).await;
    let took = started.elapsed();
    let failed: Vec<&str> = answer["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("not a batch response: {answer}"))
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap())
        .collect();
    let ids: Vec<&str> = messages.iter().map(|m| m.message_id().unwrap()).collect();
    assert_eq!(failed, ids, "both come back");
    assert!(took < std::time::Duration::from_secs(6), "{took:?}");

    let output = emulator.output();
    assert_eq!(
        events_by_outcome(&output),
        [
            ("failed".to_owned(), 1),
            ("received".to_owned(), 1),
            ("retrying".to_owned(), 1)
        ]
        .into(),
        "the lost page and the waiting ones are counted: {output}"
    );
    assert_no_secret_in(&w, &[&output, &answer.to_string()]);
    w.finish(&[&queued]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_list_and_a_revoked_routing_key_through_the_runtime_loop() {
    let old_token = secret_value(40);
    let old_for_secret = old_token.clone();
    let w = world_with_secret(move |key, token| {
        json!({"routing_key": key, "webhook_token": [token, old_for_secret, 7]}).to_string()
    })
    .await;
    let emulator = Emulator::start(BOOTSTRAP, &function_env(&w));
    // During a rotation both tokens page; a typo (7) in the list costs nothing.
    let mut answers = Vec::new();
    for token in [&w.token, &old_token] {
        let answer = emulator
            .invoke(&with_token(event_file("alert.json"), Some(token)))
            .await;
        let (status, _) = response(&answer, "a rotating token");
        assert_eq!(status, 202, "{answer}");
        answers.push(answer.to_string());
    }
    // The service's integration is deleted: PagerDuty refuses the key, the function
    // reads the secret again, finds the same key, and says so; counted as key_refused.
    w.standin.revoke_key(&w.routing_key);
    let answer = emulator
        .invoke(&event_with_test_token(&w, "recovery.json"))
        .await;
    let (status, body) = response(&answer, "a revoked key");
    assert_eq!(status, 503, "{answer}");
    assert_eq!(body["error"], "routing_key_refused");
    assert_eq!(body["errors"], json!(["Invalid routing key"]));
    answers.push(answer.to_string());

    let output = emulator.output();
    assert_eq!(
        events_by_outcome(&output),
        [
            ("delivered".to_owned(), 2),
            ("key_refused".to_owned(), 1),
            ("received".to_owned(), 3)
        ]
        .into(),
        "{output}"
    );
    let texts: Vec<&str> = answers.iter().map(String::as_str).collect();
    assert_no_secret_in(&w, &texts);
    assert_no_secret_in(&w, &[&output]);
    assert!(!output.contains(&old_token), "the old token leaked");
    w.finish(&[]);
}
