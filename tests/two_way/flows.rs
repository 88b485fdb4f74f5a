//! Two-way against the stand-ins and moto: a person resolves an incident in PagerDuty,
//! PagerDuty's signed webhook (v3) comes to `POST /pagerduty/webhook`, and the incident's
//! Guance events are recovered through Guance's OpenAPI with their workspace's key.
//! PagerDuty drops a 4xx and disables the subscription after three, and retries 429,
//! 5xx and timeouts for 48 hours: each test says which answer a delivery must get, and
//! that PagerDuty's retry completes what a failure left.

use crate::support::event_source::EventSource;
use crate::support::guance;
use crate::support::pagerduty::{sign, webhook_delivery, Fault};
use crate::support::*;
use base64::Engine;
use guance_pagerduty::adapters::metrics::Memory;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const WORKSPACE_A: &str = "wksp_0000000000000000000000000000000a";
const WORKSPACE_B: &str = "wksp_0000000000000000000000000000000b";
/// A workspace whose events page, but the secret has no key for.
const WORKSPACE_UNKNOWN: &str = "wksp_00000000000000000000000000000ccc";

/// Moto with a secret that turns two-way on, both stand-ins, and the credentials.
struct TwoWay {
    w: World,
    guance: guance::StandIn,
    signing_secret: String,
    old_signing_secret: String,
}

async fn two_way() -> TwoWay {
    let guance = guance::StandIn::start().await;
    let (signing_secret, old_signing_secret) = (secret_value(48), secret_value(48));
    let (api_token, key_a, key_b) = (secret_value(20), secret_value(32), secret_value(32));
    let openapi_url = guance.openapi_url();
    let w = world_with_secret(|routing_key, token| {
        json!({
            "routing_key": routing_key,
            "webhook_token": token,
            "pagerduty_webhook_secrets": [signing_secret, old_signing_secret],
            "pagerduty_api_token": api_token,
            "guance_workspaces": {
                WORKSPACE_A: {"api_key": key_a, "openapi_url": openapi_url},
                WORKSPACE_B: {"api_key": key_b, "openapi_url": format!("{openapi_url}/")},
            },
        })
        .to_string()
    })
    .await;
    w.standin.allow_api_token(&api_token);
    guance.add_workspace(WORKSPACE_A, &key_a);
    guance.add_workspace(WORKSPACE_B, &key_b);
    TwoWay {
        w,
        guance,
        signing_secret,
        old_signing_secret,
    }
}

impl TwoWay {
    fn app(
        &self,
        options: AppOptions,
    ) -> guance_pagerduty::entry::app::App<guance_pagerduty::adapters::secret::SecretsManagerSource>
    {
        self.w.app(AppOptions {
            api_url: Some(self.w.standin.api_url()),
            ..options
        })
    }

    /// Pages a Guance alert of `workspace` through the function URL; returns its incident.
    async fn page(&self, app: &App, workspace: &str, event_ref: &str) -> String {
        let alert = json!({"df_status": "critical", "df_title": format!("alert {event_ref}"),
                           "df_event_id": format!("event-{event_ref}"),
                           "df_workspace_uuid": workspace,
                           "df_monitor_checker_event_ref": event_ref,
                           "df_dimension_tags": "{\"host\":\"h\"}"});
        let event = with_body(self.w.event("alert.json"), &alert.to_string());
        let answer = call(app, &event).await;
        assert_eq!(answer.status, 202, "{}", answer.text);
        self.w.standin.incident_for(event_ref).expect("an incident")
    }

    /// A function URL event carrying `body` to `/pagerduty/webhook`, signed with `secret`.
    fn signed(&self, body: &[u8], secret: &str) -> Value {
        delivery_event(body, Some(&sign(body, secret)))
    }

    /// A person resolved `incident_id` in PagerDuty (resolved in the stand-in first, as
    /// PagerDuty does before it sends): the delivery PagerDuty sends.
    fn resolved_by_a_person(&self, incident_id: &str) -> Value {
        if self
            .w
            .standin
            .incidents()
            .iter()
            .any(|i| i.id == incident_id)
        {
            self.w.standin.resolve_as_person(incident_id);
        }
        let body = webhook_delivery(
            "incident.resolved",
            incident_id,
            Some("user_reference"),
            false,
        );
        self.signed(body.to_string().as_bytes(), &self.signing_secret)
    }

    fn restored(&self) -> Vec<(String, String)> {
        let mut restored: Vec<(String, String)> = self
            .guance
            .restores()
            .into_iter()
            .map(|r| (r.workspace_uuid, r.monitor_checker_event_ref))
            .collect();
        restored.sort();
        restored
    }

    fn finish(&self, answers: &[&Answer]) {
        self.w.finish(answers);
        let restores = self.guance.restores();
        assert!(
            restores.iter().all(|r| !r.repeat),
            "a restore was asked of Guance twice: {:?}",
            restores
                .iter()
                .map(|r| &r.monitor_checker_event_ref)
                .collect::<Vec<_>>()
        );
    }
}

type App =
    guance_pagerduty::entry::app::App<guance_pagerduty::adapters::secret::SecretsManagerSource>;

/// A function URL event posting `body` to `/pagerduty/webhook`, with this signature
/// header (none when `None`), as PagerDuty's delivery reaches the function.
fn delivery_event(body: &[u8], signature: Option<&str>) -> Value {
    let mut event = with_path(
        with_token(event_file("alert.json"), None),
        "/pagerduty/webhook",
    );
    let mut headers = json!({"content-type": "application/json", "user-agent": "PagerDuty-Webhook/V3.0",
                             "x-webhook-id": "5ac64822-0000-4000-8000-000000000001"});
    if let Some(signature) = signature {
        headers["x-pagerduty-signature"] = json!(signature);
    }
    event["headers"] = headers;
    match std::str::from_utf8(body) {
        Ok(text) => event["body"] = json!(text),
        // Bytes that are not text reach the function base64-encoded.
        Err(_) => {
            event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
            event["isBase64Encoded"] = json!(true);
        }
    }
    event
}

/// The sum of `metric` over the lines whose `Outcome` is `outcome`.
fn metric_sum(lines: &[String], metric: &str, outcome: &str) -> u64 {
    lines
        .iter()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|line| line["Outcome"] == outcome)
        .filter_map(|line| line[metric].as_u64())
        .sum()
}

fn pair(workspace: &str, event_ref: &str) -> (String, String) {
    (workspace.to_owned(), event_ref.to_owned())
}

#[tokio::test]
async fn a_persons_resolve_recovers_exactly_the_incidents_guance_events_with_each_workspaces_key() {
    let t = two_way().await;
    let metrics = Memory::default();
    let app = t.app(AppOptions {
        metrics: metrics.clone(),
        ..AppOptions::default()
    });
    let incident = t.page(&app, WORKSPACE_A, "ref-a1").await;
    let other = t.page(&app, WORKSPACE_A, "ref-other").await;
    assert_ne!(incident, other);
    // Grouping put alerts of two workspaces into the incident, past one page of 100,
    // with alerts that did not come from this bridge among them.
    for n in 0..130 {
        let details = match n {
            7 => {
                json!({"df_workspace_uuid": WORKSPACE_B, "df_monitor_checker_event_ref": "ref-b1"})
            }
            64 => {
                json!({"df_workspace_uuid": WORKSPACE_A, "df_monitor_checker_event_ref": "ref-a2"})
            }
            // The same Guance event twice (a re-trigger after a resolve): restored once.
            120 => {
                json!({"df_workspace_uuid": WORKSPACE_B, "df_monitor_checker_event_ref": "ref-b1"})
            }
            125 => {
                json!({"df_workspace_uuid": WORKSPACE_B, "df_monitor_checker_event_ref": "ref-b2"})
            }
            _ => json!({"source": "another integration", "n": n}),
        };
        t.w.standin.add_alert(&incident, details);
    }

    let answer = call(&app, &t.resolved_by_a_person(&incident)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["outcome"], "recovered");
    assert_eq!(
        t.restored(),
        [
            pair(WORKSPACE_A, "ref-a1"),
            pair(WORKSPACE_A, "ref-a2"),
            pair(WORKSPACE_B, "ref-b1"),
            pair(WORKSPACE_B, "ref-b2"),
        ],
        "exactly the incident's Guance events, each in its own workspace (the key decides it)"
    );
    let requests: Vec<String> =
        t.w.standin
            .rest_requests()
            .iter()
            .map(|r| r.path.clone())
            .collect();
    let pages: Vec<&String> = requests.iter().filter(|p| p.contains("/alerts")).collect();
    assert_eq!(
        pages,
        [
            &format!("/incidents/{incident}/alerts?limit=100&offset=0"),
            &format!("/incidents/{incident}/alerts?limit=100&offset=100"),
        ],
        "both pages of the incident, and no other incident"
    );
    for event_ref in ["ref-a1", "ref-a2", "ref-b1", "ref-b2"] {
        assert!(
            requests
                .iter()
                .any(|p| p.starts_with(&format!("/incidents?incident_key={event_ref}&"))),
            "{event_ref} was checked for an open incident before its restore: {requests:?}"
        );
    }

    // PagerDuty delivers at least once: the same delivery again asks Guance nothing, and
    // reads only past the alerts already done.
    let again = call(&app, &t.resolved_by_a_person(&incident)).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["restores"], json!([]), "{}", again.text);
    assert_eq!(t.guance.restores().len(), 4);
    assert_eq!(
        t.w.standin.rest_requests().last().unwrap().path,
        format!("/incidents/{incident}/alerts?limit=100&offset=131")
    );

    let lines = metrics.lines();
    assert_eq!(
        metric_sum(&lines, "GuanceRestores", "restored"),
        4,
        "{lines:#?}"
    );
    assert_eq!(metric_sum(&lines, "GuanceRestores", "already_done"), 0);
    assert_eq!(metric_sum(&lines, "PagerDutyWebhooks", "recovered"), 2);
    t.finish(&[&answer, &again]);
}

#[tokio::test]
async fn the_signature_is_the_only_way_in() {
    let t = two_way().await;
    let app = t.app(AppOptions::default());
    let incident = t.page(&app, WORKSPACE_A, "ref-sig").await;
    t.w.standin.resolve_as_person(&incident);
    let body = webhook_delivery(
        "incident.resolved",
        &incident,
        Some("user_reference"),
        false,
    )
    .to_string();
    let bytes = body.as_bytes();
    let signature = sign(bytes, &t.signing_secret);
    let hex = signature.trim_start_matches("v1=");
    let flipped = body.replacen("resolved", "resolvee", 1);

    let refused: Vec<(&str, Value)> = vec![
        ("no signature", delivery_event(bytes, None)),
        ("a wrong secret", t.signed(bytes, "not-the-signing-secret")),
        (
            "one byte of the body changed",
            delivery_event(flipped.as_bytes(), Some(&signature)),
        ),
        (
            "the right digest under another version",
            delivery_event(bytes, Some(&format!("v0={hex},v2={hex}"))),
        ),
        ("an empty signature", delivery_event(bytes, Some(""))),
        (
            "the Guance webhook token instead",
            with_token(delivery_event(bytes, None), Some(&t.w.token)),
        ),
        (
            "the routing key as the secret",
            t.signed(bytes, &t.w.routing_key),
        ),
    ];
    let mut answers = Vec::new();
    for (case, event) in refused {
        let answer = call(&app, &event).await;
        assert_eq!(answer.status, 401, "{case}: {}", answer.text);
        assert_eq!(answer.body["error"], "bad_signature", "{case}");
        answers.push(answer);
    }
    assert!(
        t.w.standin.rest_requests().is_empty() && t.guance.requests() == 0,
        "a refused delivery reads nothing and calls no one"
    );

    // Accepted: during a rotation, among other entries, and base64-encoded by the URL.
    let rotated = format!("v0=abc,{},v1=00", sign(bytes, &t.old_signing_secret));
    let answer = call(&app, &delivery_event(bytes, Some(&rotated))).await;
    assert_eq!(
        answer.status, 200,
        "the old secret during a rotation: {}",
        answer.text
    );
    let mut encoded = delivery_event(bytes, Some(&signature));
    encoded["isBase64Encoded"] = json!(true);
    encoded["body"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
    let again = call(&app, &encoded).await;
    assert_eq!(again.status, 200, "a base64 body: {}", again.text);
    assert_eq!(t.restored(), [pair(WORKSPACE_A, "ref-sig")]);

    // Another path or method is no webhook.
    let get = {
        let mut event = t.resolved_by_a_person(&incident);
        event["requestContext"]["http"]["method"] = json!("GET");
        call(&app, &event).await
    };
    assert_eq!(get.status, 405);
    let refs: Vec<&Answer> = answers.iter().chain([&answer, &again, &get]).collect();
    t.finish(&refs);
}

#[tokio::test]
async fn what_is_not_a_persons_resolve_is_answered_2xx_and_restores_nothing() {
    let t = two_way().await;
    let metrics = Memory::default();
    let app = t.app(AppOptions {
        metrics: metrics.clone(),
        ..AppOptions::default()
    });
    let incident = t.page(&app, WORKSPACE_A, "ref-ignored").await;
    let unknown = t
        .page(&app, WORKSPACE_UNKNOWN, "ref-unknown-workspace")
        .await;
    let not_ours = webhook_delivery(
        "incident.resolved",
        "QNOTOURS",
        Some("user_reference"),
        false,
    );
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "a ping",
            webhook_delivery("pagey.ping", "", None, false),
            "ping",
        ),
        (
            "an acknowledge",
            webhook_delivery(
                "incident.acknowledged",
                &incident,
                Some("user_reference"),
                false,
            ),
            "other_event_type",
        ),
        (
            "a resolve with no agent",
            webhook_delivery("incident.resolved", &incident, None, false),
            "not_a_person",
        ),
        (
            "this bridge's own resolve (the integration)",
            webhook_delivery(
                "incident.resolved",
                &incident,
                Some("inbound_integration_reference"),
                false,
            ),
            "not_a_person",
        ),
        (
            "a service's auto-resolve",
            webhook_delivery(
                "incident.resolved",
                &incident,
                Some("service_reference"),
                false,
            ),
            "not_a_person",
        ),
        (
            "a merge",
            webhook_delivery("incident.resolved", &incident, Some("user_reference"), true),
            "merged",
        ),
        (
            "an id that is no incident id",
            {
                let mut body = webhook_delivery(
                    "incident.resolved",
                    &incident,
                    Some("user_reference"),
                    false,
                );
                body["event"]["data"]["id"] = json!("../../users");
                body
            },
            "no_incident",
        ),
        (
            "an incident this account does not have",
            not_ours,
            "incident_unreadable",
        ),
    ];
    let mut answers = Vec::new();
    for (case, body, reason) in cases {
        let answer = call(
            &app,
            &t.signed(body.to_string().as_bytes(), &t.signing_secret),
        )
        .await;
        assert_eq!(answer.status, 200, "{case}: {}", answer.text);
        assert_eq!(answer.body["outcome"], "ignored", "{case}");
        assert_eq!(answer.body["reason"], reason, "{case}");
        answers.push(answer);
    }
    for (case, body) in [
        ("signed bytes that are not JSON", b"\xff not json".to_vec()),
        ("JSON of another shape", br#"{"messages": []}"#.to_vec()),
    ] {
        let answer = call(&app, &t.signed(&body, &t.signing_secret)).await;
        assert_eq!(answer.status, 200, "{case}: {}", answer.text);
        assert_eq!(answer.body["reason"], "unreadable", "{case}");
        answers.push(answer);
    }
    // An incident with no Guance alert among its alerts: its event names no workspace.
    let plain = {
        let alert = json!({"df_status": "critical", "df_title": "no workspace",
                           "df_monitor_checker_event_ref": "ref-plain"});
        let answer = call(
            &app,
            &with_body(t.w.event("alert.json"), &alert.to_string()),
        )
        .await;
        assert_eq!(answer.status, 202);
        t.w.standin.incident_for("ref-plain").unwrap()
    };
    t.w.standin
        .add_alert(&plain, json!({"source": "another integration"}));
    let none = call(&app, &t.resolved_by_a_person(&plain)).await;
    assert_eq!(none.status, 200, "{}", none.text);
    assert_eq!(none.body["reason"], "no_guance_alert");
    answers.push(none);
    assert!(t.guance.restores().is_empty(), "nothing was restored");

    // A workspace the secret has no key for: answered 2xx, counted, the log names it.
    let no_key = call(&app, &t.resolved_by_a_person(&unknown)).await;
    assert_eq!(no_key.status, 200, "{}", no_key.text);
    assert_eq!(no_key.body["restores"][0]["outcome"], "no_key");
    assert!(captured_logs().contains(WORKSPACE_UNKNOWN));
    assert!(t.guance.restores().is_empty());
    answers.push(no_key);

    let lines = metrics.lines();
    assert_eq!(metric_sum(&lines, "GuanceRestores", "no_key"), 1);
    assert_eq!(metric_sum(&lines, "PagerDutyWebhooks", "ignored"), 11);
    let refs: Vec<&Answer> = answers.iter().collect();
    t.finish(&refs);
}

#[tokio::test]
async fn guances_rate_limits_failures_and_stalls_are_answered_in_time_and_mended_by_the_retry() {
    let t = two_way().await;
    let app = t.app(AppOptions::default());
    let incident = t.page(&app, WORKSPACE_A, "ref-l1").await;
    t.w.standin.add_alert(
        &incident,
        json!({"df_workspace_uuid": WORKSPACE_A, "df_monitor_checker_event_ref": "ref-l2"}),
    );
    t.w.standin.add_alert(
        &incident,
        json!({"df_workspace_uuid": WORKSPACE_B, "df_monitor_checker_event_ref": "ref-l3"}),
    );
    let delivery = t.resolved_by_a_person(&incident);
    let mut answers = Vec::new();

    // The key's limit (HTTP 401 with an errorCode, as Guance answers it) after one
    // restore: 429 with Retry-After; workspace B still goes on.
    t.guance.set_limits(1, 200, Duration::from_millis(700));
    let limited = call(&app, &delivery).await;
    assert_eq!(limited.status, 429, "{}", limited.text);
    assert_eq!(limited.response.headers.get("retry-after").unwrap(), "60");
    assert_eq!(
        t.restored(),
        [pair(WORKSPACE_A, "ref-l1"), pair(WORKSPACE_B, "ref-l3")]
    );
    answers.push(limited);
    tokio::time::sleep(Duration::from_millis(800)).await;
    t.guance.set_limits(20, 200, Duration::from_secs(60));

    // Guance's 500 and a Guance that never answers, each in turn on the retries.
    for (case, fault, status) in [
        (
            "the workspace's limit",
            guance::Fault::Error(401, guance::WORKSPACE_LIMITED),
            429,
        ),
        ("a 500", guance::Fault::Status(500), 503),
        (
            "a stall",
            guance::Fault::Stall(Duration::from_secs(20)),
            503,
        ),
    ] {
        t.guance.script([fault]);
        let started = Instant::now();
        let answer = call(&app, &delivery).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{case}: answered after {:?}, past PagerDuty's 5 s",
            started.elapsed()
        );
        assert_eq!(answer.status, status, "{case}: {}", answer.text);
        assert!(
            answer.response.headers.contains_key("retry-after"),
            "{case}"
        );
        answers.push(answer);
    }
    // PagerDuty's next retry: only what was left is asked, and all is recovered.
    let requests_before = t.guance.requests();
    let done = call(&app, &delivery).await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(
        t.guance.requests() - requests_before,
        1,
        "only ref-l2 was left"
    );
    assert_eq!(
        t.restored(),
        [
            pair(WORKSPACE_A, "ref-l1"),
            pair(WORKSPACE_A, "ref-l2"),
            pair(WORKSPACE_B, "ref-l3")
        ]
    );
    answers.push(done);
    let refs: Vec<&Answer> = answers.iter().collect();
    t.finish(&refs);
}

#[tokio::test]
async fn a_refusal_guance_will_repeat_is_logged_counted_and_answered_2xx() {
    let t = two_way().await;
    let metrics = Memory::default();
    let app = t.app(AppOptions {
        metrics: metrics.clone(),
        ..AppOptions::default()
    });
    // Workspace A registers its refs: an unknown one is refused; B's key is revoked.
    t.guance.add_event(WORKSPACE_A, "ref-known");
    let incident = t.page(&app, WORKSPACE_A, "ref-unknown").await;
    t.w.standin.add_alert(
        &incident,
        json!({"df_workspace_uuid": WORKSPACE_A, "df_monitor_checker_event_ref": "ref-known"}),
    );
    t.w.standin.add_alert(
        &incident,
        json!({"df_workspace_uuid": WORKSPACE_B, "df_monitor_checker_event_ref": "ref-b"}),
    );
    // B's key in the secret is one Guance does not know (revoked, or mistyped).
    let mut secret: Value =
        serde_json::from_str(&t.w.moto.secret_string(&t.w.secret_id).await).unwrap();
    secret["guance_workspaces"][WORKSPACE_B]["api_key"] = json!("a-key-guance-does-not-know");
    t.w.moto
        .put_secret(&t.w.secret_id, &secret.to_string())
        .await;
    let app = t.app(AppOptions {
        metrics: metrics.clone(),
        ..AppOptions::default()
    });
    let answer = call(&app, &t.resolved_by_a_person(&incident)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let mut outcomes: Vec<(&str, &str)> = answer.body["restores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["monitor_checker_event_ref"].as_str().unwrap(),
                r["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            ("ref-b", "refused"),
            ("ref-known", "restored"),
            ("ref-unknown", "refused"),
        ]
    );
    let logs = captured_logs();
    assert!(logs.contains("ref-unknown") && logs.contains(guance::KEYEVENT_NOT_FOUND));
    assert!(logs.contains(guance::INVALID_API_KEY));
    let lines = metrics.lines();
    assert_eq!(metric_sum(&lines, "GuanceRestores", "refused"), 2);
    // Settled: PagerDuty's duplicate delivery does not ask again.
    let requests = t.guance.requests();
    let again = call(&app, &t.resolved_by_a_person(&incident)).await;
    assert_eq!(again.status, 200);
    assert_eq!(t.guance.requests(), requests);
    t.finish(&[&answer, &again]);
}

#[tokio::test]
async fn pagerdutys_rest_api_failing_or_half_configured_is_retried() {
    let t = two_way().await;
    let app = t.app(AppOptions::default());
    let incident = t.page(&app, WORKSPACE_A, "ref-rest").await;
    let delivery = t.resolved_by_a_person(&incident);
    let mut answers = Vec::new();
    for (case, fault, status) in [
        ("a 500", Fault::Status(500), 503),
        ("a 429", Fault::StatusRetryAfter(429, 7), 503),
        ("a stall", Fault::Stall(Duration::from_secs(20)), 503),
        ("a dropped connection", Fault::Drop, 503),
    ] {
        t.w.standin.script_rest([fault]);
        let started = Instant::now();
        let answer = call(&app, &delivery).await;
        assert!(started.elapsed() < Duration::from_secs(5), "{case}");
        assert_eq!(answer.status, status, "{case}: {}", answer.text);
        assert!(
            answer.response.headers.contains_key("retry-after"),
            "{case}"
        );
        answers.push(answer);
    }
    assert_eq!(
        answers[1].response.headers.get("retry-after").unwrap(),
        "7",
        "PagerDuty's own advice"
    );
    assert!(t.guance.restores().is_empty());
    let done = call(&app, &delivery).await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(t.restored(), [pair(WORKSPACE_A, "ref-rest")]);
    answers.push(done);

    // A REST key PagerDuty refuses, and none at all: a fixed secret mends both, so the
    // delivery is retried (never a 4xx, which PagerDuty would drop).
    let half = world_with_secret(|key, token| {
        json!({"routing_key": key, "webhook_token": token,
               "pagerduty_webhook_secrets": t.signing_secret})
        .to_string()
    })
    .await;
    let half_app = half.app(AppOptions {
        api_url: Some(t.w.standin.api_url()),
        ..AppOptions::default()
    });
    let missing = call(&half_app, &delivery).await;
    assert_eq!(missing.status, 503, "{}", missing.text);
    assert!(missing.text.contains("pagerduty_api_token"));
    half.moto
        .put_secret(
            &half.secret_id,
            &json!({"routing_key": half.routing_key, "pagerduty_webhook_secrets": t.signing_secret,
                    "pagerduty_api_token": "not-a-key-pagerduty-knows"})
            .to_string(),
        )
        .await;
    let refused = call_within(&half_app, &delivery, Duration::from_secs(30)).await;
    assert_eq!(refused.status, 503, "{}", refused.text);
    answers.extend([missing, refused]);
    let refs: Vec<&Answer> = answers.iter().collect();
    t.finish(&refs);
}

#[tokio::test]
async fn guances_webhook_is_unchanged_and_queue_mode_answers_pagerduty_the_same() {
    let t = two_way().await;
    let queues = t.w.moto.create_queues(30, 5).await;
    let app = t.app(AppOptions {
        queue: Some(QueueOptions::new(&queues)),
        ..AppOptions::default()
    });
    // Guance's webhook with two-way on: queued, then delivered by the dispatcher.
    let alert = json!({"df_status": "critical", "df_title": "queued alert",
                       "df_workspace_uuid": WORKSPACE_A, "df_monitor_checker_event_ref": "ref-q"});
    let queued = call(
        &app,
        &with_body(t.w.event("alert.json"), &alert.to_string()),
    )
    .await;
    assert_eq!(queued.status, 202, "{}", queued.text);
    assert_eq!(queued.body["results"][0]["outcome"], "queued");
    let source = EventSource::new(t.w.moto.sqs(), &queues.url).await;
    drain(&app, &source, Duration::from_secs(60)).await;
    let incident =
        t.w.standin
            .incident_for("ref-q")
            .expect("delivered by the dispatcher");

    let answer = call(&app, &t.resolved_by_a_person(&incident)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(t.restored(), [pair(WORKSPACE_A, "ref-q")]);
    assert_eq!(
        source.depth().await,
        0,
        "nothing of two-way goes on the queue"
    );
    // A stranger's token on the webhook path, and a signature on Guance's path.
    let signed_guance = {
        let mut event = with_token(t.w.event("alert.json"), None);
        let body = event["body"].as_str().unwrap().to_owned();
        event["headers"]["x-pagerduty-signature"] = json!(sign(body.as_bytes(), &t.signing_secret));
        call(&app, &event).await
    };
    assert_eq!(signed_guance.status, 401, "a signature is no webhook token");
    t.finish(&[&queued, &answer, &signed_guance]);
}
