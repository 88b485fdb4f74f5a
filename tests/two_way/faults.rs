//! Two-way's faults that `flows.rs` was not written to see, found by a hostile
//! review and kept as regression tests: the same Guance object resolved in a second
//! incident, or paging again when a late retry or an old alert would restore it; a 2xx
//! that is not Guance's answer; an incident of a thousand alerts behind a slow REST API;
//! stalled workspaces beside a healthy one; an unreadable REST answer; credentials echoed
//! back; strangers forcing secret reads; a cold start eating the 5 s; a field given twice;
//! a subscription whose secret was never stored; a delivery over `MAX_BODY_BYTES`.

use crate::support::guance;
use crate::support::pagerduty::{sign, webhook_delivery};
use crate::support::*;
use guance_pagerduty::adapters::secret::WebhookSecrets;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WORKSPACE_A: &str = "wksp_0000000000000000000000000000000a";
const WORKSPACE_B: &str = "wksp_0000000000000000000000000000000b";
/// Sort before WORKSPACE_B (restores go in workspace order).
const WORKSPACE_STALLED_1: &str = "wksp_00000000000000000000000000000001";
const WORKSPACE_STALLED_2: &str = "wksp_00000000000000000000000000000002";
const WORKSPACE_HTML: &str = "wksp_0000000000000000000000000000000c";

type App =
    guance_pagerduty::entry::app::App<guance_pagerduty::adapters::secret::SecretsManagerSource>;

// ---------------------------------------------------------------------------------------
// Harness (after `flows.rs`), with room for extra workspaces at other hosts.
// ---------------------------------------------------------------------------------------

struct TwoWay {
    w: World,
    guance: guance::StandIn,
    signing_secret: String,
    api_token: String,
}

/// Two-way on: workspaces A and B at the Guance stand-in, plus `extra` (uuid, url).
async fn two_way_with(extra: &[(&str, String)]) -> TwoWay {
    let guance = guance::StandIn::start().await;
    let signing_secret = secret_value(48);
    let (api_token, key_a, key_b) = (secret_value(20), secret_value(32), secret_value(32));
    let openapi_url = guance.openapi_url();
    let mut workspaces = json!({
        WORKSPACE_A: {"api_key": key_a, "openapi_url": openapi_url},
        WORKSPACE_B: {"api_key": key_b, "openapi_url": openapi_url},
    });
    for (uuid, url) in extra {
        workspaces[*uuid] = json!({"api_key": secret_value(32), "openapi_url": url});
    }
    let w = world_with_secret(|routing_key, token| {
        json!({
            "routing_key": routing_key,
            "webhook_token": token,
            "pagerduty_webhook_secrets": [signing_secret],
            "pagerduty_api_token": api_token,
            "guance_workspaces": workspaces,
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
        api_token,
    }
}

impl TwoWay {
    fn app(&self, options: AppOptions) -> App {
        self.app_at(&self.w.standin.api_url(), options)
    }

    fn app_at(&self, api_url: &str, options: AppOptions) -> App {
        self.w.app(AppOptions {
            api_url: Some(api_url.to_owned()),
            ..options
        })
    }

    /// Guance pages an alert (or, with `status` "ok", its recovery) through the bridge.
    async fn guance_sends(&self, app: &App, workspace: &str, event_ref: &str, status: &str) {
        let event = json!({"df_status": status, "df_title": format!("alert {event_ref}"),
                           "df_event_id": format!("event-{event_ref}-{}", random_text(6)),
                           "df_workspace_uuid": workspace,
                           "df_monitor_checker_event_ref": event_ref,
                           "df_dimension_tags": "{\"host\":\"h\"}"});
        let answer = call(
            app,
            &with_body(self.w.event("alert.json"), &event.to_string()),
        )
        .await;
        assert_eq!(answer.status, 202, "{}", answer.text);
    }

    async fn page(&self, app: &App, workspace: &str, event_ref: &str) -> String {
        self.guance_sends(app, workspace, event_ref, "critical")
            .await;
        self.w.standin.incident_for(event_ref).expect("an incident")
    }

    /// A person resolves the incident in the PagerDuty stand-in (no subscription there:
    /// the probe posts the delivery itself).
    async fn person_resolves_in_pagerduty(&self, incident_id: &str) {
        let answer = reqwest::Client::new()
            .post(format!("{}/_resolve", self.w.standin.api_url()))
            .header("content-type", "application/json")
            .body(json!({"incident_id": incident_id}).to_string())
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{:?}", answer.text().await);
    }

    /// The delivery PagerDuty sends once a person resolved `incident_id` (resolved in the
    /// stand-in first, as PagerDuty does before it sends, when the stand-in has it).
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
        )
        .to_string();
        delivery_event(
            body.as_bytes(),
            Some(&sign(body.as_bytes(), &self.signing_secret)),
        )
    }

    fn incident_status(&self, incident_id: &str) -> String {
        self.w
            .standin
            .incidents()
            .into_iter()
            .find(|i| i.id == incident_id)
            .unwrap()
            .status
    }
}

fn delivery_event(body: &[u8], signature: Option<&str>) -> Value {
    let mut event = with_path(
        with_token(event_file("alert.json"), None),
        "/pagerduty/webhook",
    );
    let mut headers = json!({"content-type": "application/json",
                             "user-agent": "PagerDuty-Webhook/V3.0",
                             "x-webhook-id": "5ac64822-0000-4000-8000-000000000001"});
    if let Some(signature) = signature {
        headers["x-pagerduty-signature"] = json!(signature);
    }
    event["headers"] = headers;
    event["body"] = json!(std::str::from_utf8(body).unwrap());
    event
}

/// A tiny HTTP server whose every answer `reply(path_and_query)` decides:
/// (status, content type, body, delay before answering).
struct Canned {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Canned {
    fn drop(&mut self) {
        self.server.abort();
    }
}

type Reply = (u16, &'static str, String, Duration);

async fn canned(reply: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Canned {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reply = Arc::new(reply);
    let (seen2, reply2) = (Arc::clone(&seen), Arc::clone(&reply));
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (seen, reply) = (Arc::clone(&seen2), Arc::clone(&reply2));
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let (seen, reply) = (Arc::clone(&seen), Arc::clone(&reply));
                    async move {
                        let target = request
                            .uri()
                            .path_and_query()
                            .map(|p| p.as_str().to_owned())
                            .unwrap_or_default();
                        seen.lock().unwrap().push(target.clone());
                        let (status, content_type, body, delay) = reply(&target);
                        tokio::time::sleep(delay).await;
                        Ok::<_, std::io::Error>(
                            Response::builder()
                                .status(status)
                                .header("content-type", content_type)
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Canned { url, seen, server }
}

fn alerts_page(alerts: Vec<Value>, offset: usize, more: bool) -> String {
    json!({"alerts": alerts, "limit": 100, "offset": offset, "more": more, "total": null})
        .to_string()
}

fn alert_with(details: Value) -> Value {
    json!({"id": format!("A{}", random_text(8)), "type": "alert", "status": "resolved",
           "alert_key": details["df_monitor_checker_event_ref"].as_str().unwrap_or("other"),
           "body": {"type": "alert_body", "contexts": [], "details": details,
                    "cef_details": {"details": details}}})
}

fn outcomes(answer: &Answer) -> Vec<(String, String)> {
    answer.body["restores"]
        .as_array()
        .map(|restores| {
            restores
                .iter()
                .map(|r| {
                    (
                        r["monitor_checker_event_ref"].as_str().unwrap().to_owned(),
                        r["outcome"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Lost or wrong restores
// ---------------------------------------------------------------------------------------

/// `df_monitor_checker_event_ref` is a hash of monitor and dimensions (CONTRACT.md 1): the
/// same for every fault round of one object. The per-container settled cache is keyed by
/// (workspace, ref) for an hour, so the next round, paged as a new incident and resolved
/// by a person within the hour, is never recovered in Guance.
#[tokio::test]
async fn probe_second_fault_round_of_the_same_monitor_is_restored_again() {
    let t = two_way_with(&[]).await;
    let app = t.app(AppOptions::default());
    let first = t.page(&app, WORKSPACE_A, "ref-flap").await;
    t.person_resolves_in_pagerduty(&first).await;
    let answer = call(&app, &t.resolved_by_a_person(&first)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(outcomes(&answer), [("ref-flap".into(), "restored".into())]);

    // Twenty minutes later the same host fails again: Guance alerts with the same ref, a
    // new incident pages, and a person resolves it.
    let second = t.page(&app, WORKSPACE_A, "ref-flap").await;
    assert_ne!(first, second, "a new incident");
    t.person_resolves_in_pagerduty(&second).await;
    let answer = call(&app, &t.resolved_by_a_person(&second)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(
        outcomes(&answer),
        [("ref-flap".into(), "restored".into())],
        "the second fault round must be recovered in Guance too: {}",
        answer.text
    );
    assert_eq!(t.guance.requests(), 2, "Guance was asked to restore twice");
}

/// A restore is by ref, and a ref names the monitored object, not one fault. When the
/// object is failing again (a newer, open incident pages for the same ref), recovering
/// the ref from an older incident's resolve recovers the *new* fault in Guance, whose
/// recovery notice then resolves the new incident through the bridge: a page is lost.
/// Here: PagerDuty's retry of a delivery that met a Guance outage arrives after the
/// monitor fired again.
#[tokio::test]
async fn probe_a_late_retry_does_not_recover_a_newer_fault_of_the_same_object() {
    let t = two_way_with(&[]).await;
    let app = t.app(AppOptions::default());
    let first = t.page(&app, WORKSPACE_A, "ref-again").await;
    t.person_resolves_in_pagerduty(&first).await;
    let delivery = t.resolved_by_a_person(&first);
    t.guance.script([guance::Fault::Status(500)]);
    let failed = call(&app, &delivery).await;
    assert_eq!(failed.status, 503, "{}", failed.text);

    // Before PagerDuty's retry, the object fails again and pages anew.
    let second = t.page(&app, WORKSPACE_A, "ref-again").await;
    assert_ne!(first, second);
    assert_eq!(t.incident_status(&second), "triggered");

    let retried = call(&app, &delivery).await;
    assert!(retried.status < 300, "{}", retried.text);
    let restored = !t.guance.restores().is_empty();
    if restored {
        // What Guance does next (CONTRACT.md 6): a recovery notice for the ref.
        t.guance_sends(&app, WORKSPACE_A, "ref-again", "ok").await;
    }
    assert!(
        !restored,
        "ref-again was recovered in Guance while incident {second} paged for it; Guance's \
         recovery notice then left incident {second} {} ({})",
        t.incident_status(&second),
        retried.text
    );
}

/// The same without any retry: an incident holds an alert of ref X that Guance already
/// recovered (resolved by the bridge) and an open alert Y. X fires again and pages as a
/// new incident. A person resolves the first incident (for Y): the bridge restores X as
/// well, recovering X's live fault in Guance.
#[tokio::test]
async fn probe_an_alert_resolved_earlier_is_not_restored_when_its_object_pages_again() {
    let t = two_way_with(&[]).await;
    let app = t.app(AppOptions::default());
    let first = t.page(&app, WORKSPACE_A, "ref-x").await;
    t.w.standin.add_alert(
        &first,
        json!({"df_workspace_uuid": WORKSPACE_A, "df_monitor_checker_event_ref": "ref-y"}),
    );
    t.guance_sends(&app, WORKSPACE_A, "ref-x", "ok").await; // X recovers by itself
    assert_eq!(t.incident_status(&first), "triggered", "Y still open");
    let second = t.page(&app, WORKSPACE_A, "ref-x").await; // X fails again
    assert_ne!(first, second, "{:?}", t.w.standin.incidents());
    t.person_resolves_in_pagerduty(&first).await;
    let answer = call(&app, &t.resolved_by_a_person(&first)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let restored: Vec<String> = t
        .guance
        .restores()
        .into_iter()
        .map(|r| r.monitor_checker_event_ref)
        .collect();
    assert_eq!(
        restored,
        ["ref-y"],
        "ref-x's live fault (incident {second}, {}) was recovered in Guance",
        t.incident_status(&second)
    );
}

/// An `openapi_url` that is not Guance's OpenAPI (the console's host, a proxy's login
/// page) answers 200 with HTML: that is taken as a restore, and settled.
#[tokio::test]
async fn probe_a_2xx_that_is_not_guances_envelope_is_not_a_restore() {
    let html = canned(|_| {
        (
            200,
            "text/html",
            "<!doctype html><html><body>Guance console</body></html>".into(),
            Duration::ZERO,
        )
    })
    .await;
    let t = two_way_with(&[(WORKSPACE_HTML, html.url.clone())]).await;
    let app = t.app(AppOptions::default());
    let incident = t.page(&app, WORKSPACE_HTML, "ref-html").await;
    let answer = call(&app, &t.resolved_by_a_person(&incident)).await;
    assert_eq!(html.seen.lock().unwrap().len(), 1);
    assert_ne!(
        outcomes(&answer),
        [("ref-html".into(), "restored".into())],
        "an HTML page was counted as Guance's restore: {}",
        answer.text
    );
}

/// An incident that collected many alerts (grouping of a flapping monitor) with PagerDuty
/// answering each page of 100 in 0.5 s: ten pages never fit in the 4 s budget, and every
/// retry reads them all again from offset 0, so no retry can ever succeed (48 h of 503s,
/// then the restore is lost).
#[tokio::test]
async fn probe_an_incident_with_a_thousand_alerts_is_recovered_in_the_end() {
    const TOTAL: usize = 1000;
    let rest = canned(|target| {
        if target.starts_with("/incidents?") {
            // The check for an open incident of the same key: none.
            return (
                200,
                "application/json",
                json!({"incidents": [], "limit": 1, "offset": 0, "more": false}).to_string(),
                Duration::ZERO,
            );
        }
        let offset: usize = target
            .split(['?', '&'])
            .find_map(|p| p.strip_prefix("offset="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let alerts: Vec<Value> = (offset..(offset + 100).min(TOTAL))
            .map(|n| {
                if n == 3 {
                    alert_with(json!({"df_workspace_uuid": WORKSPACE_A,
                                      "df_monitor_checker_event_ref": "ref-big"}))
                } else {
                    alert_with(json!({"source": "grouped", "n": n}))
                }
            })
            .collect();
        (
            200,
            "application/json",
            alerts_page(alerts, offset, offset + 100 < TOTAL),
            Duration::from_millis(500),
        )
    })
    .await;
    let t = two_way_with(&[]).await;
    let app = t.app_at(&rest.url, AppOptions::default());
    let delivery = t.resolved_by_a_person("QBIGINCIDENT1");
    let mut statuses = Vec::new();
    // PagerDuty retries; five attempts here.
    for _ in 0..5 {
        let started = Instant::now();
        let answer = call(&app, &delivery).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        statuses.push(answer.status);
        if answer.status == 200 {
            break;
        }
    }
    assert_eq!(
        t.guance.restores().len(),
        1,
        "never recovered; answers {statuses:?} after {} page reads",
        rest.seen.lock().unwrap().len()
    );
}

/// Restores run one after another in workspace order, each allowed 3 s. Two workspaces
/// whose Guance host stalls (a site down, a firewall dropping packets) use up the whole
/// 4 s on every retry, so a healthy workspace's event later in the order is never tried.
#[tokio::test]
async fn probe_stalled_workspaces_do_not_starve_a_healthy_one() {
    let stalled = Stalled::start();
    let t = two_way_with(&[
        (WORKSPACE_STALLED_1, stalled.endpoint.clone()),
        (WORKSPACE_STALLED_2, stalled.endpoint.clone()),
    ])
    .await;
    let app = t.app(AppOptions::default());
    let incident = t.page(&app, WORKSPACE_B, "ref-healthy").await;
    for (workspace, event_ref) in [
        (WORKSPACE_STALLED_1, "ref-s1"),
        (WORKSPACE_STALLED_2, "ref-s2"),
    ] {
        t.w.standin.add_alert(
            &incident,
            json!({"df_workspace_uuid": workspace, "df_monitor_checker_event_ref": event_ref}),
        );
    }
    let delivery = t.resolved_by_a_person(&incident);
    let mut answers = Vec::new();
    for _ in 0..3 {
        let answer = call(&app, &delivery).await;
        assert_eq!(answer.status, 503, "{}", answer.text);
        answers.push(outcomes(&answer));
    }
    assert_eq!(
        t.guance.restores().len(),
        1,
        "WORKSPACE_B's event was never tried in 3 deliveries: {answers:?}"
    );
}

/// PagerDuty's REST API (or a proxy in front of it) answering 200 with something that is
/// not an alerts list is a transient fault; it is answered 2xx and the restore is lost.
#[tokio::test]
async fn probe_an_unreadable_2xx_from_the_rest_api_is_retried_not_dropped() {
    let rest = canned(|_| {
        (
            200,
            "text/html",
            "<html>upstream hiccup</html>".into(),
            Duration::ZERO,
        )
    })
    .await;
    let t = two_way_with(&[]).await;
    let app = t.app_at(&rest.url, AppOptions::default());
    let answer = call(&app, &t.resolved_by_a_person("QGARBLED0001")).await;
    assert!(
        answer.status == 429 || answer.status == 503,
        "answered {} (PagerDuty will not retry): {}",
        answer.status,
        answer.text
    );
}

// ---------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------

/// Guance echoing the workspace's key in its message: redacted (passes). PagerDuty's REST
/// API (or whatever PAGERDUTY_API_URL points at) echoing the token in `error.message`:
/// copied into the answer body and an ERROR log line as it is.
#[tokio::test]
async fn probe_an_error_message_that_echoes_a_credential_is_redacted() {
    let api_token = Arc::new(Mutex::new(String::new()));
    let echoed = Arc::clone(&api_token);
    let rest = canned(move |_| {
        let token = echoed.lock().unwrap().clone();
        (
            404,
            "application/json",
            json!({"error": {"message": format!("no incident for Token token={token}"), "code": 2100}})
                .to_string(),
            Duration::ZERO,
        )
    })
    .await;
    let t = two_way_with(&[]).await;
    *api_token.lock().unwrap() = t.api_token.clone();
    let app = t.app_at(&rest.url, AppOptions::default());
    let answer = call(&app, &t.resolved_by_a_person("QECHO0000001")).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let leaked_in_answer = answer.text.contains(&t.api_token);
    let leaked_in_logs = captured_logs().contains(&t.api_token);
    assert!(
        !leaked_in_answer && !leaked_in_logs,
        "pagerduty_api_token echoed: in the answer {leaked_in_answer}, in the logs {leaked_in_logs}"
    );
}

#[tokio::test]
async fn probe_guance_echoing_its_key_is_redacted() {
    let key = secret_value(32);
    let echoed = key.clone();
    let guance_echo = canned(move |_| {
        (
            403,
            "application/json",
            json!({"code": 403, "content": null, "errorCode": format!("ft.InvalidAPIKey:{echoed}"),
                   "message": format!("key {echoed} is not valid"), "success": false, "traceId": "t"})
            .to_string(),
            Duration::ZERO,
        )
    })
    .await;
    let signing = secret_value(48);
    let api_token = secret_value(20);
    let url = guance_echo.url.clone();
    let w = world_with_secret(|routing_key, token| {
        json!({"routing_key": routing_key, "webhook_token": token,
               "pagerduty_webhook_secrets": signing, "pagerduty_api_token": api_token,
               "guance_workspaces": {WORKSPACE_A: {"api_key": key, "openapi_url": url}}})
        .to_string()
    })
    .await;
    w.standin.allow_api_token(&api_token);
    let app = w.app(AppOptions {
        api_url: Some(w.standin.api_url()),
        ..AppOptions::default()
    });
    let alert = json!({"df_status": "critical", "df_title": "t", "df_workspace_uuid": WORKSPACE_A,
                       "df_monitor_checker_event_ref": "ref-echo"});
    call(&app, &with_body(w.event("alert.json"), &alert.to_string())).await;
    let incident = w.standin.incident_for("ref-echo").unwrap();
    w.standin.resolve_as_person(&incident);
    let body = webhook_delivery(
        "incident.resolved",
        &incident,
        Some("user_reference"),
        false,
    )
    .to_string();
    let answer = call(
        &app,
        &delivery_event(body.as_bytes(), Some(&sign(body.as_bytes(), &signing))),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(answer.text.contains("<redacted>"), "{}", answer.text);
    // Only this test's key: another probe here leaks a different secret on purpose.
    assert!(!answer.text.contains(&key), "the key is in the answer");
    assert!(!captured_logs().contains(&key), "the key is in the logs");
}

// ---------------------------------------------------------------------------------------
// Signature: strangers cannot make the function read Secrets Manager at will (passes)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn probe_bad_signatures_force_at_most_one_secret_read_per_interval() {
    let t = two_way_with(&[]).await;
    let app = t.app(AppOptions::default());
    let body =
        webhook_delivery("incident.resolved", "QX", Some("user_reference"), false).to_string();
    let long = vec![format!("v1={}", "ab".repeat(32)); 5000].join(",");
    for n in 0..40 {
        let signature = match n % 4 {
            0 => sign(body.as_bytes(), "stranger"),
            1 => "v1=".to_owned() + &"0".repeat(64),
            2 => long.clone(),
            _ => format!(" V1={} ", "F".repeat(64)),
        };
        let answer = call(&app, &delivery_event(body.as_bytes(), Some(&signature))).await;
        assert_eq!(answer.status, 401);
    }
    assert!(
        app.secrets.fetch_count() <= 2,
        "{} reads of Secrets Manager",
        app.secrets.fetch_count()
    );
}

// ---------------------------------------------------------------------------------------
// Answer time
// ---------------------------------------------------------------------------------------

/// The 4 s budget starts when the handler starts, not when the request reached the
/// function URL (`requestContext.timeEpoch`): a cold start's INIT phase (or anything
/// before the handler) comes on top, past PagerDuty's 5 s.
#[tokio::test]
async fn probe_the_budget_counts_from_the_requests_arrival() {
    let t = two_way_with(&[]).await;
    let app = t.app(AppOptions::default());
    let incident = t.page(&app, WORKSPACE_A, "ref-cold").await;
    t.w.standin.add_alert(
        &incident,
        json!({"df_workspace_uuid": WORKSPACE_B, "df_monitor_checker_event_ref": "ref-cold-b"}),
    );
    let mut delivery = t.resolved_by_a_person(&incident);
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let arrived_ms = now_ms - 1200; // a 1.2 s cold start (INIT) before the handler
    delivery["requestContext"]["timeEpoch"] = json!(arrived_ms);
    // Guance stalls: the two restores use the whole 4 s budget.
    t.guance.script([
        guance::Fault::Stall(Duration::from_secs(20)),
        guance::Fault::Stall(Duration::from_secs(20)),
    ]);
    let answer = call(&app, &delivery).await;
    let answered_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert_eq!(answer.status, 503);
    assert!(
        answered_ms - arrived_ms < 5000,
        "answered {} ms after the request arrived",
        answered_ms - arrived_ms
    );
}

// ---------------------------------------------------------------------------------------
// Secret parsing
// ---------------------------------------------------------------------------------------

/// "Two-way's fields are read leniently, so that a mistake in them can turn two-way off
/// but never stop the pages" (secret.rs). A field given twice (a pasted block) makes the
/// whole secret unreadable: no routing key, no page.
#[test]
fn probe_a_two_way_field_given_twice_does_not_stop_the_pages() {
    let key = "abcdef0123456789abcdef0123456789";
    for field in [
        "pagerduty_webhook_secrets",
        "pagerduty_api_token",
        "guance_workspaces",
    ] {
        let value = format!(r#"{{"routing_key":"{key}","{field}":"x","{field}":"y"}}"#);
        assert!(
            WebhookSecrets::parse(&value).is_ok(),
            "{field} twice: {:?}",
            WebhookSecrets::parse(&value).err()
        );
    }
}

// ---------------------------------------------------------------------------------------
// make pagerduty-webhook: a subscription whose signing secret never reached the secret
// ---------------------------------------------------------------------------------------

/// A run made the subscription for service B but never stored its signing secret (the
/// POST answered after the tool's 20 s timeout, the process was killed, or the secret
/// write failed and the user did not delete the subscription as told). The rerun finds the
/// subscription and, because the secret holds *a* signing secret (service A's), says
/// nothing: B's deliveries are then refused 401, dropped, and after three the
/// subscription is disabled. The tool should say so (or exit non-zero).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_pagerduty_webhook_tool_rerun_warns_about_a_subscription_without_its_secret() {
    let moto = Moto::start();
    let standin = crate::support::pagerduty::StandIn::start().await;
    let api_token = secret_value(20);
    standin.allow_api_token(&api_token);
    let secret_id = format!("guance-pagerduty-{}", random_text(8));
    moto.create_secret(
        &secret_id,
        &json!({"routing_key": secret_value(32)}).to_string(),
    )
    .await;
    let function_url = "https://abcdefghij.lambda-url.us-east-1.on.aws/";
    let run = |services: &'static str| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut command = std::process::Command::new(root.join(".venv/bin/python"));
        command
            .arg(root.join("tools/pagerduty_webhook.py"))
            .current_dir(root)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("AWS_ENDPOINT_URL", &moto.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("FUNCTION_URL", function_url)
            .env("SECRET_ID", &secret_id)
            .env("PAGERDUTY_API_URL", standin.api_url())
            .env("PAGERDUTY_API_TOKEN", &api_token)
            .env("PAGERDUTY_SERVICE_IDS", services);
        command
    };
    let first = tokio::task::spawn_blocking({
        let mut command = run("PSVCAAA111");
        move || command.output().unwrap()
    })
    .await
    .unwrap();
    assert!(first.status.success());

    // The earlier, interrupted run: B's subscription exists, its secret was never stored.
    let made = reqwest::Client::new()
        .post(format!("{}/webhook_subscriptions", standin.api_url()))
        .header("authorization", format!("Token token={api_token}"))
        .header("accept", crate::support::pagerduty::REST_ACCEPT)
        .header("content-type", "application/json")
        .body(
            json!({"webhook_subscription": {"type": "webhook_subscription",
                "delivery_method": {"type": "http_delivery_method",
                    "url": format!("{}pagerduty/webhook", function_url), "custom_headers": []},
                "events": ["incident.resolved"],
                "filter": {"type": "service_reference", "id": "PSVCBBB222"},
                "description": "guance-pagerduty"}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert!(made.status().is_success(), "{:?}", made.text().await);

    let rerun = tokio::task::spawn_blocking({
        let mut command = run("PSVCAAA111,PSVCBBB222");
        move || command.output().unwrap()
    })
    .await
    .unwrap();
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&rerun.stdout),
        String::from_utf8_lossy(&rerun.stderr)
    );
    let b_secret = standin
        .subscriptions()
        .into_iter()
        .find(|s| s.filter_id.as_deref() == Some("PSVCBBB222"))
        .unwrap()
        .secret;
    let stored = moto
        .client()
        .get_secret_value()
        .secret_id(&secret_id)
        .send()
        .await
        .unwrap();
    let holds_b = stored.secret_string().unwrap().contains(&b_secret);
    assert!(
        holds_b || !rerun.status.success() || output.contains("warning"),
        "exit {:?}, B's signing secret stored: {holds_b}, and nothing said:\n{output}",
        rerun.status.code()
    );
}

/// MAX_BODY_BYTES (1024 and up) is the Guance path's cap; on this path a well-signed
/// delivery over it is answered 401 "bad signature", which PagerDuty drops (three in a
/// row disable the subscription). A real v3 delivery is 1.5 to 4 KB (title up to 1024
/// characters, assignees, teams, priority).
#[tokio::test]
async fn probe_a_well_signed_delivery_over_max_body_bytes_is_not_a_dropped_4xx() {
    let t = two_way_with(&[]).await;
    let app = t.app(AppOptions {
        max_body_bytes: 2048,
        ..AppOptions::default()
    });
    let incident = t.page(&app, WORKSPACE_A, "ref-long").await;
    let mut body = webhook_delivery(
        "incident.resolved",
        &incident,
        Some("user_reference"),
        false,
    );
    body["event"]["data"]["title"] = json!("disk full on ".repeat(78)); // 1014 characters
    let body = body.to_string();
    assert!(body.len() > 2048 && body.len() < 4096, "{}", body.len());
    let answer = call(
        &app,
        &delivery_event(
            body.as_bytes(),
            Some(&sign(body.as_bytes(), &t.signing_secret)),
        ),
    )
    .await;
    assert!(
        answer.status < 300 || answer.status == 429 || answer.status >= 500,
        "a well-signed {}-byte delivery answered {}: {}",
        body.len(),
        answer.status,
        answer.text
    );
}

// ---------------------------------------------------------------------------------------
// Second review (of 665e73b): the `paging_again` check and page-by-page progress
// ---------------------------------------------------------------------------------------

/// The `paging_again` check asks `GET /incidents?incident_key=<ref>&statuses[]=triggered
/// &statuses[]=acknowledged&limit=1` and takes any incident found, the one being resolved
/// included. PagerDuty's list is read moments after the resolve (the webhook follows it
/// at once); while it still lists the resolving incident as open, the event is settled
/// as `paging_again`, answered 200 (never retried), and a redelivery finds it settled.
#[tokio::test]
async fn probe_the_incident_being_resolved_still_listed_open_is_not_paging_again() {
    const INCIDENT: &str = "QSELF0000001";
    let checks = Arc::new(Mutex::new(0usize));
    let counted = Arc::clone(&checks);
    let rest = canned(move |target| {
        if target.starts_with("/incidents?") {
            let mut n = counted.lock().unwrap();
            *n += 1;
            // The first look still shows the incident open (eventual consistency); the
            // list catches up after that.
            let incidents = if *n == 1 {
                json!([{"id": INCIDENT, "type": "incident", "status": "triggered",
                        "incident_key": "ref-self"}])
            } else {
                json!([])
            };
            return (
                200,
                "application/json",
                json!({"incidents": incidents, "limit": 1, "offset": 0, "more": false}).to_string(),
                Duration::ZERO,
            );
        }
        let alert = alert_with(
            json!({"df_workspace_uuid": WORKSPACE_A, "df_monitor_checker_event_ref": "ref-self"}),
        );
        (
            200,
            "application/json",
            alerts_page(vec![alert], 0, false),
            Duration::ZERO,
        )
    })
    .await;
    let t = two_way_with(&[]).await;
    let app = t.app_at(&rest.url, AppOptions::default());
    let delivery = t.resolved_by_a_person(INCIDENT);
    let first = call(&app, &delivery).await;
    let retryable = first.status == 429 || first.status >= 500;
    // Even a redelivery of the same webhook (PagerDuty sends none after a 200).
    let again = call(&app, &delivery).await;
    assert!(
        retryable || !t.guance.restores().is_empty(),
        "incident {INCIDENT} itself was taken for a live page of ref-self: answered {} {} \
         (never retried); a redelivery: {} {}",
        first.status,
        first.text,
        again.status,
        again.text
    );
}

/// Progress (`alerts_done`) only moves past a page whose events all settled, and each
/// page waits for its slowest lane. One workspace whose Guance host stalls (a site down
/// for hours) with an event on the first page costs every delivery ~3 s on that page, so
/// a retry never reaches a later page: a healthy workspace's event there is not restored
/// while the outage lasts (48 h of 503s, then lost), though nothing stops it.
#[tokio::test]
async fn probe_a_stalled_workspace_on_the_first_page_does_not_starve_later_pages() {
    const TOTAL: usize = 600;
    let stalled = Stalled::start();
    let rest = canned(|target| {
        if target.starts_with("/incidents?") {
            return (
                200,
                "application/json",
                json!({"incidents": [], "limit": 1, "offset": 0, "more": false}).to_string(),
                Duration::ZERO,
            );
        }
        let offset: usize = target
            .split(['?', '&'])
            .find_map(|p| p.strip_prefix("offset="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let alerts: Vec<Value> = (offset..(offset + 100).min(TOTAL))
            .map(|n| match n {
                1 => alert_with(json!({"df_workspace_uuid": WORKSPACE_STALLED_1,
                                       "df_monitor_checker_event_ref": "ref-down"})),
                503 => alert_with(json!({"df_workspace_uuid": WORKSPACE_A,
                                         "df_monitor_checker_event_ref": "ref-late"})),
                _ => alert_with(json!({"source": "grouped", "n": n})),
            })
            .collect();
        (
            200,
            "application/json",
            alerts_page(alerts, offset, offset + 100 < TOTAL),
            Duration::from_millis(300),
        )
    })
    .await;
    let t = two_way_with(&[(WORKSPACE_STALLED_1, stalled.endpoint.clone())]).await;
    let app = t.app_at(&rest.url, AppOptions::default());
    let delivery = t.resolved_by_a_person("QSTARVED0001");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let answer = call(&app, &delivery).await;
        statuses.push(answer.status);
    }
    let pages: Vec<String> = rest
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|p| p.contains("/alerts"))
        .cloned()
        .collect();
    assert_eq!(
        t.guance.restores().len(),
        1,
        "ref-late (page 6, a healthy workspace) never restored in 4 deliveries: {statuses:?}; \
         pages read: {pages:?}"
    );
}
