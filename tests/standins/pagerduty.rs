//! The PagerDuty stand-in's REST API and webhooks v3 (CONTRACT.md section 6), tested on
//! their own: what the two-way tests and `make pagerduty-webhook` lean on must behave as
//! PagerDuty does, and refuse what PagerDuty refuses. Loopback only.

use crate::support::pagerduty::{
    service_id_for, sign, webhook_delivery, Fault, StandIn, WebhookRetry, REST_ACCEPT,
};
use crate::support::Pipe;
use guance_pagerduty::domain::pagerduty_webhook::signature_matches;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{HeaderMap, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ROUTING_KEY: &str = "standinR0utingKey000000000000001";
const OTHER_KEY: &str = "standinR0utingKey000000000000002";
const TOKEN: &str = "rest-api-token-for-tests";

// ----- helpers --------------------------------------------------------------------------

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn standin() -> StandIn {
    let standin = StandIn::start().await;
    standin.allow_api_token(TOKEN);
    standin
}

/// An Events API v2 event as the bridge sends it.
async fn send(standin: &StandIn, routing_key: &str, action: &str, dedup_key: &str) {
    let body = json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup_key,
        "payload": {
            "summary": format!("disk full on {dedup_key}"),
            "source": "host-1",
            "severity": "critical",
            "custom_details": {"df_monitor_checker_event_ref": dedup_key, "df_workspace_uuid": "wksp_1"},
        },
        "client": "Guance (demo)",
    });
    let answer = http()
        .post(standin.events_url())
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202, "{}", answer.text().await.unwrap());
}

/// A control request (`/_resolve`, `/_incidents`, `/_webhook_posts`): status and JSON.
async fn control(standin: &StandIn, path: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("{}{path}", standin.api_url());
    let request = match body {
        Some(body) => http()
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string()),
        None => http().get(url),
    };
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    let text = answer.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

struct Rest {
    status: u16,
    body: Value,
}

/// A REST request with PagerDuty's headers (`token` `None` leaves Authorization out).
async fn rest(
    standin: &StandIn,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Rest {
    let mut request = http()
        .request(method, format!("{}{path}", standin.api_url()))
        .header("accept", REST_ACCEPT);
    if let Some(token) = token {
        request = request.header("authorization", format!("Token token={token}"));
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    let text = answer.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    };
    Rest { status, body }
}

async fn get(standin: &StandIn, path: &str) -> Rest {
    rest(standin, reqwest::Method::GET, path, Some(TOKEN), None).await
}

async fn post(standin: &StandIn, path: &str, body: Value) -> Rest {
    rest(
        standin,
        reqwest::Method::POST,
        path,
        Some(TOKEN),
        Some(body),
    )
    .await
}

fn subscription_body(url: &str, events: Value, filter: Value) -> Value {
    json!({"webhook_subscription": {
        "type": "webhook_subscription",
        "delivery_method": {"type": "http_delivery_method", "url": url, "custom_headers": []},
        "events": events,
        "filter": filter,
        "description": "guance-pagerduty test",
    }})
}

async fn subscribe(standin: &StandIn, url: &str, events: Value, filter: Value) -> (String, String) {
    let created = post(
        standin,
        "/webhook_subscriptions",
        subscription_body(url, events, filter),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let subscription = &created.body["webhook_subscription"];
    (
        subscription["id"].as_str().unwrap().to_owned(),
        subscription["delivery_method"]["secret"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

/// What a receiver does with one delivery.
#[derive(Clone, Copy)]
enum Reply {
    Status(u16),
    Stall(Duration),
}

/// A tiny loopback webhook receiver: records each request and answers 200 unless told
/// otherwise.
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    replies: Arc<Mutex<VecDeque<Reply>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>> = Arc::default();
        let replies: Arc<Mutex<VecDeque<Reply>>> = Arc::default();
        let (g, r) = (Arc::clone(&got), Arc::clone(&replies));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (got, replies) = (Arc::clone(&g), Arc::clone(&r));
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            let (got, replies) = (Arc::clone(&got), Arc::clone(&replies));
                            async move {
                                let (parts, body) = request.into_parts();
                                let body = body.collect().await.unwrap().to_bytes();
                                got.lock().unwrap().push((parts.headers, body));
                                let reply = replies.lock().unwrap().pop_front();
                                let status = match reply {
                                    Some(Reply::Stall(d)) => {
                                        tokio::time::sleep(d).await;
                                        200
                                    }
                                    Some(Reply::Status(s)) => s,
                                    None => 200,
                                };
                                Ok::<_, std::io::Error>(
                                    Response::builder()
                                        .status(status)
                                        .body(Full::new(Bytes::from(format!("answered {status}"))))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { addr, got, replies }
    }

    fn url(&self) -> String {
        format!("http://{}/pagerduty/webhook", self.addr)
    }

    fn reply(&self, replies: impl IntoIterator<Item = Reply>) {
        self.replies.lock().unwrap().extend(replies);
    }

    fn got(&self) -> Vec<(HeaderMap, Bytes)> {
        self.got.lock().unwrap().clone()
    }
}

// ----- signatures and the pure builder --------------------------------------------------

#[test]
fn signs_the_contracts_test_vector() {
    let body = r#"{"event":{"id":"01FKZOXA868SHYEE4DVNWB5P9W","event_type":"pagey.ping","resource_type":"pagey","occurred_at":"2025-04-07T03:00:55.532Z","agent":{"id":"PVE0ZR9","type":"user_reference"},"client":null,"data":{"message":"Hello from your friend Pagey!","type":"ping"}}}"#;
    assert_eq!(body.len(), 264);
    let secret = "HvPtlQNKMPpHSSqJpCdndXfo7HnGXa1pnH6w5axpxLFn9aRBNBGh4e8/HlonK5mz";
    assert_eq!(
        sign(body.as_bytes(), secret),
        "v1=0e83584cbab86f98c51517cf96a70c90e910532d3d2f067d58c753cc8980a05b"
    );
    assert_ne!(
        sign(body.as_bytes(), "another secret"),
        sign(body.as_bytes(), secret)
    );
}

#[test]
fn the_pure_builder_gives_the_documented_delivery() {
    let person = webhook_delivery(
        "incident.resolved",
        "Q0000000007",
        Some("user_reference"),
        false,
    );
    assert_eq!(
        person,
        webhook_delivery(
            "incident.resolved",
            "Q0000000007",
            Some("user_reference"),
            false
        ),
        "deterministic"
    );
    let event = &person["event"];
    let keys: Vec<&String> = event.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "agent",
            "client",
            "data",
            "event_type",
            "id",
            "occurred_at",
            "resource_type"
        ]
    );
    assert_eq!(event["event_type"], "incident.resolved");
    assert_eq!(event["resource_type"], "incident");
    assert_eq!(event["client"], Value::Null);
    assert_eq!(event["agent"]["type"], "user_reference");
    assert_eq!(event["id"].as_str().unwrap().len(), 26);
    let data = &event["data"];
    assert_eq!(data["id"], "Q0000000007");
    assert_eq!(data["type"], "incident");
    assert_eq!(data["status"], "resolved");
    assert_eq!(data["service"]["type"], "service_reference");
    assert_eq!(data["resolve_reason"], Value::Null);
    for field in [
        "title",
        "incident_key",
        "html_url",
        "self",
        "number",
        "urgency",
    ] {
        assert!(data.get(field).is_some(), "data.{field}");
    }

    let merged = webhook_delivery(
        "incident.resolved",
        "Q0000000007",
        Some("user_reference"),
        true,
    );
    assert_eq!(
        merged["event"]["data"]["resolve_reason"]["type"],
        "merge_resolve_reason"
    );
    assert_eq!(
        merged["event"]["data"]["resolve_reason"]["incident"]["type"],
        "incident_reference"
    );
    let nobody = webhook_delivery("incident.resolved", "Q1", None, false);
    assert_eq!(nobody["event"]["agent"], Value::Null);
    let integration = webhook_delivery(
        "incident.resolved",
        "Q1",
        Some("inbound_integration_reference"),
        false,
    );
    assert_eq!(
        integration["event"]["agent"]["type"],
        "inbound_integration_reference"
    );
    let triggered = webhook_delivery("incident.triggered", "Q1", None, false);
    assert_eq!(triggered["event"]["data"]["status"], "triggered");
    let ping = webhook_delivery("pagey.ping", "", None, false);
    assert_eq!(ping["event"]["resource_type"], "pagey");
    assert_eq!(ping["event"]["data"]["type"], "ping");

    // What the stand-in signs, the bridge's own check accepts.
    let body = person.to_string();
    assert!(signature_matches(
        body.as_bytes(),
        &sign(body.as_bytes(), "s3cret"),
        &["s3cret"]
    ));
}

// ----- incidents from events, and the REST API -------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_open_and_resolve_incidents_that_the_rest_api_shows() {
    let standin = standin().await;
    send(&standin, ROUTING_KEY, "trigger", "ref-1").await;
    send(&standin, ROUTING_KEY, "trigger", "ref-1").await; // the open alert: nothing new
    send(&standin, OTHER_KEY, "trigger", "ref-1").await; // another service: its own

    let incidents = standin.incidents();
    assert_eq!(incidents.len(), 2, "{incidents:?}");
    let first = &incidents[0];
    assert_eq!(first.id, "Q0000000001");
    assert_eq!(first.status, "triggered");
    assert_eq!(first.dedup_keys, ["ref-1"]);
    assert_eq!(first.service_id, service_id_for(ROUTING_KEY));
    assert_eq!(first.incident_key.as_deref(), Some("ref-1"));
    assert_ne!(incidents[1].service_id, first.service_id);
    assert_eq!(service_id_for(ROUTING_KEY), service_id_for(ROUTING_KEY));
    // The same key on two services: the latest open incident holding it.
    assert_eq!(
        standin.incident_for("ref-1").as_deref(),
        Some("Q0000000002")
    );
    assert_eq!(standin.incident_for("nothing"), None);

    let alerts = get(&standin, "/incidents/Q0000000001/alerts").await;
    assert_eq!(alerts.status, 200, "{}", alerts.body);
    assert_eq!(alerts.body["alerts"].as_array().unwrap().len(), 1);
    let alert = &alerts.body["alerts"][0];
    assert_eq!(alert["type"], "alert");
    assert_eq!(alert["status"], "triggered");
    assert_eq!(alert["alert_key"], "ref-1");
    assert_eq!(alert["service"]["id"], first.service_id.as_str());
    assert_eq!(alert["service"]["type"], "service_reference");
    assert_eq!(alert["incident"]["id"], "Q0000000001");
    assert_eq!(alert["incident"]["type"], "incident_reference");
    let created_at = alert["created_at"].as_str().unwrap();
    assert!(
        created_at.len() == 20 && created_at.ends_with('Z'),
        "{created_at}"
    );
    let details = json!({"df_monitor_checker_event_ref": "ref-1", "df_workspace_uuid": "wksp_1"});
    assert_eq!(alert["body"]["type"], "alert_body");
    assert_eq!(alert["body"]["contexts"], json!([]));
    assert_eq!(alert["body"]["details"], details);
    assert_eq!(alert["body"]["cef_details"]["details"], details);
    assert_eq!(alert["body"]["cef_details"]["dedup_key"], "ref-1");
    let incident = get(&standin, "/incidents/Q0000000001").await;
    assert_eq!(incident.body["incident"]["status"], "triggered");

    send(&standin, ROUTING_KEY, "resolve", "ref-1").await;
    let incidents = standin.incidents();
    assert_eq!(incidents[0].status, "resolved");
    assert_eq!(
        incidents[1].status, "triggered",
        "another service's alert stays open"
    );
    let alerts = get(&standin, "/incidents/Q0000000001/alerts").await;
    assert_eq!(alerts.body["alerts"][0]["status"], "resolved");

    // After the resolve, the same key opens a new alert in a new incident.
    send(&standin, ROUTING_KEY, "trigger", "ref-1").await;
    assert_eq!(standin.incidents().len(), 3);
    assert_eq!(
        standin.incident_for("ref-1").as_deref(),
        Some("Q0000000003")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_page_25_by_default_and_at_most_100() {
    let standin = standin().await;
    send(&standin, ROUTING_KEY, "trigger", "ref-0").await;
    let incident = standin.incident_for("ref-0").unwrap();
    for n in 1..60 {
        let workspace = if n % 2 == 0 { "wksp_a" } else { "wksp_b" };
        standin.add_alert(
            &incident,
            json!({"df_monitor_checker_event_ref": format!("ref-{n}"), "df_workspace_uuid": workspace}),
        );
    }
    assert_eq!(standin.incidents()[0].dedup_keys.len(), 60);

    let base = format!("/incidents/{incident}/alerts");
    let first = get(&standin, &base).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body["alerts"].as_array().unwrap().len(), 25);
    assert_eq!(
        (
            first.body["limit"].clone(),
            first.body["offset"].clone(),
            first.body["more"].clone()
        ),
        (json!(25), json!(0), json!(true))
    );
    assert_eq!(first.body["total"], Value::Null, "total only when asked");

    // Paging with offset while `more` is true sees every alert once, in order.
    let mut keys = Vec::new();
    let mut offset = 0;
    loop {
        let page = get(&standin, &format!("{base}?limit=25&offset={offset}")).await;
        assert_eq!(page.status, 200);
        for alert in page.body["alerts"].as_array().unwrap() {
            keys.push(alert["alert_key"].as_str().unwrap().to_owned());
            assert_eq!(alert["incident"]["id"], incident.as_str());
        }
        if page.body["more"] != true {
            break;
        }
        offset += 25;
    }
    let expected: Vec<String> = (0..60).map(|n| format!("ref-{n}")).collect();
    assert_eq!(keys, expected);
    let tail = get(&standin, &format!("{base}?limit=25&offset=50")).await;
    assert_eq!(tail.body["alerts"].as_array().unwrap().len(), 10);
    assert_eq!(tail.body["more"], false);
    let added = &tail.body["alerts"][0]["body"];
    assert_eq!(
        added["cef_details"]["details"]["df_monitor_checker_event_ref"],
        "ref-50"
    );
    assert_eq!(added["details"]["df_workspace_uuid"], "wksp_a");

    let all = get(&standin, &format!("{base}?limit=100&total=true")).await;
    assert_eq!(all.body["alerts"].as_array().unwrap().len(), 60);
    assert_eq!(
        (all.body["more"].clone(), all.body["total"].clone()),
        (json!(false), json!(60))
    );

    for bad in ["limit=101", "limit=0", "limit=ten", "offset=-1"] {
        let refused = get(&standin, &format!("{base}?{bad}")).await;
        assert_eq!(refused.status, 400, "{bad}");
        assert_eq!(refused.body["error"]["code"], 2001, "{bad}");
        assert_eq!(refused.body["error"]["message"], "Invalid Input Provided");
    }
    let unknown = get(&standin, "/incidents/Q9999999999/alerts").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body["error"]["code"], 2100);

    let paths: Vec<String> = standin
        .rest_requests()
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert_eq!(paths[0], base);
    assert_eq!(
        &paths[1..4],
        [
            format!("{base}?limit=25&offset=0"),
            format!("{base}?limit=25&offset=25"),
            format!("{base}?limit=25&offset=50")
        ]
    );
    assert!(standin
        .rest_requests()
        .iter()
        .all(|r| r.authorized && r.method == "GET"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_api_wants_a_known_token_and_its_media_type() {
    let standin = standin().await;
    send(&standin, ROUTING_KEY, "trigger", "ref-1").await;
    let path = "/incidents/Q0000000001/alerts";
    for token in [None, Some("wrong-token"), Some("")] {
        let refused = rest(&standin, reqwest::Method::GET, path, token, None).await;
        assert_eq!(refused.status, 401, "{token:?}");
        assert_eq!(
            refused.body,
            json!({"error": {"message": "Authentication failed", "code": 2006}})
        );
    }
    let url = format!("{}{path}", standin.api_url());
    let bearer = http()
        .get(&url)
        .header("accept", REST_ACCEPT)
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        bearer.status(),
        401,
        "an API key goes as Token token=, not Bearer"
    );
    for accept in [
        None,
        Some("application/json"),
        Some("application/vnd.pagerduty+json"),
    ] {
        let mut request = http()
            .get(&url)
            .header("authorization", format!("Token token={TOKEN}"));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), 406, "{accept:?}");
        let body: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    let authorized: Vec<bool> = standin
        .rest_requests()
        .iter()
        .map(|r| r.authorized)
        .collect();
    assert_eq!(authorized, [false, false, false, false, true, true, true]);
    assert_eq!(get(&standin, path).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_faults_are_scripted_apart_from_the_events_api() {
    let standin = standin().await;
    standin.script_rest([
        Fault::Status(500),
        Fault::StatusRetryAfter(429, 7),
        Fault::Pass,
        Fault::Drop,
    ]);
    send(&standin, ROUTING_KEY, "trigger", "ref-1").await; // not affected
    let path = "/incidents/Q0000000001/alerts";
    assert_eq!(get(&standin, path).await.status, 500);
    let throttled = http()
        .get(format!("{}{path}", standin.api_url()))
        .header("accept", REST_ACCEPT)
        .header("authorization", format!("Token token={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "7");
    assert_eq!(get(&standin, path).await.status, 200);
    let dropped = http()
        .get(format!("{}{path}", standin.api_url()))
        .header("accept", REST_ACCEPT)
        .send()
        .await;
    assert!(
        dropped.is_err(),
        "the connection is closed without an answer"
    );
    assert_eq!(get(&standin, path).await.status, 200);
    assert_eq!(standin.accepted().len(), 1);
}

// ----- webhook subscriptions -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_shows_its_secret_only_when_created() {
    let standin = standin().await;
    let filter = json!({"type": "service_reference", "id": "PSVC123456"});
    let created = post(
        &standin,
        "/webhook_subscriptions",
        subscription_body(
            "https://bridge.example/pagerduty/webhook",
            json!(["incident.resolved"]),
            filter.clone(),
        ),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let shown = &created.body["webhook_subscription"];
    let secret = shown["delivery_method"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(secret.len(), 64);
    assert_eq!(shown["type"], "webhook_subscription");
    assert_eq!(shown["delivery_method"]["type"], "http_delivery_method");
    assert_eq!(
        shown["delivery_method"]["url"],
        "https://bridge.example/pagerduty/webhook"
    );
    assert_eq!(shown["events"], json!(["incident.resolved"]));
    assert_eq!(shown["filter"], filter);
    let id = shown["id"].as_str().unwrap().to_owned();

    let list = get(&standin, "/webhook_subscriptions").await;
    assert_eq!(list.status, 200);
    assert_eq!(
        list.body["webhook_subscriptions"].as_array().unwrap().len(),
        1
    );
    assert_eq!(list.body["more"], false);
    assert!(list.body.get("limit").is_some() && list.body.get("offset").is_some());
    assert_eq!(list.body["webhook_subscriptions"][0]["id"], id.as_str());
    assert_eq!(
        list.body["webhook_subscriptions"][0]["delivery_method"]["secret"],
        Value::Null
    );
    let one = get(&standin, &format!("/webhook_subscriptions/{id}")).await;
    assert_eq!(
        one.body["webhook_subscription"]["delivery_method"]["secret"],
        Value::Null
    );
    assert!(!list.body.to_string().contains(&secret) && !one.body.to_string().contains(&secret));

    let second = post(
        &standin,
        "/webhook_subscriptions",
        subscription_body(
            "http://127.0.0.1:9/hook",
            json!(["incident.resolved", "incident.triggered"]),
            json!({"type": "account_reference"}),
        ),
    )
    .await;
    assert_eq!(second.status, 201, "{}", second.body);
    let subscriptions = standin.subscriptions();
    assert_eq!(subscriptions.len(), 2);
    assert_eq!(subscriptions[0].secret, secret);
    assert_eq!(subscriptions[0].filter_id.as_deref(), Some("PSVC123456"));
    assert_ne!(
        subscriptions[1].secret, secret,
        "each subscription has its own secret"
    );
    assert_eq!(subscriptions[1].filter_type, "account_reference");
    let paged = get(&standin, "/webhook_subscriptions?limit=1").await;
    assert_eq!(paged.body["more"], true);
    assert_eq!(
        get(&standin, "/webhook_subscriptions?limit=101")
            .await
            .status,
        400
    );
    assert_eq!(
        get(&standin, "/webhook_subscriptions/PNOPE").await.status,
        404
    );
    let deleted = rest(
        &standin,
        reqwest::Method::DELETE,
        &format!("/webhook_subscriptions/{id}"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(standin.subscriptions().len(), 1);

    let good = || {
        subscription_body(
            "https://x.example/h",
            json!(["incident.resolved"]),
            json!({"type": "account_reference"}),
        )
    };
    let cases: Vec<(&str, Value)> = vec![
        ("no wrapper", json!({"type": "webhook_subscription"})),
        (
            "wrong type",
            good().pipe(|mut b| {
                b["webhook_subscription"]["type"] = json!("subscription");
                b
            }),
        ),
        (
            "wrong delivery method",
            good().pipe(|mut b| {
                b["webhook_subscription"]["delivery_method"]["type"] = json!("email");
                b
            }),
        ),
        (
            "ftp url",
            good().pipe(|mut b| {
                b["webhook_subscription"]["delivery_method"]["url"] = json!("ftp://x.example/h");
                b
            }),
        ),
        (
            "no url",
            good().pipe(|mut b| {
                b["webhook_subscription"]["delivery_method"]
                    .as_object_mut()
                    .unwrap()
                    .remove("url");
                b
            }),
        ),
        (
            "no events",
            good().pipe(|mut b| {
                b["webhook_subscription"]["events"] = json!([]);
                b
            }),
        ),
        (
            "unknown event",
            good().pipe(|mut b| {
                b["webhook_subscription"]["events"] = json!(["incident.exploded"]);
                b
            }),
        ),
        (
            "service filter without id",
            good().pipe(|mut b| {
                b["webhook_subscription"]["filter"] = json!({"type": "service_reference"});
                b
            }),
        ),
        (
            "team filter without id",
            good().pipe(|mut b| {
                b["webhook_subscription"]["filter"] = json!({"type": "team_reference", "id": ""});
                b
            }),
        ),
        (
            "unknown filter",
            good().pipe(|mut b| {
                b["webhook_subscription"]["filter"] = json!({"type": "user_reference", "id": "P1"});
                b
            }),
        ),
    ];
    for (name, body) in cases {
        let refused = post(&standin, "/webhook_subscriptions", body).await;
        assert_eq!(refused.status, 400, "{name}: {}", refused.body);
        assert_eq!(refused.body["error"]["code"], 2001, "{name}");
        assert!(
            !refused.body["error"]["errors"]
                .as_array()
                .unwrap()
                .is_empty(),
            "{name}"
        );
    }
    let unauthorized = rest(
        &standin,
        reqwest::Method::POST,
        "/webhook_subscriptions",
        None,
        Some(good()),
    )
    .await;
    assert_eq!(unauthorized.status, 401);
    assert_eq!(standin.subscriptions().len(), 1, "nothing refused was made");
}

// ----- webhook deliveries ---------------------------------------------------------------

/// Checks one received delivery: headers, signature, shape; returns its event.
fn check_delivery(headers: &HeaderMap, body: &Bytes, secret: &str) -> Value {
    assert_eq!(headers["content-type"], "application/json");
    let signature = headers["x-pagerduty-signature"].to_str().unwrap();
    assert_eq!(signature, sign(body, secret));
    let hex = signature.strip_prefix("v1=").unwrap();
    assert!(
        hex.len() == 64
            && hex
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
    );
    assert!(
        signature_matches(body, signature, &[secret]),
        "the bridge's own check agrees"
    );
    assert!(!headers["x-webhook-id"].is_empty());
    let delivery: Value = serde_json::from_slice(body).unwrap();
    delivery["event"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_resolve_posts_a_signed_incident_resolved_to_matching_subscriptions() {
    let standin = standin().await;
    let receiver = Receiver::start().await;
    let elsewhere = Receiver::start().await;
    let service = service_id_for(ROUTING_KEY);
    let (_, secret) = subscribe(
        &standin,
        &receiver.url(),
        json!(["incident.resolved"]),
        json!({"type": "service_reference", "id": service}),
    )
    .await;
    // Not for this service, not for this event type, a team: none of them hear of it.
    subscribe(
        &standin,
        &elsewhere.url(),
        json!(["incident.resolved"]),
        json!({"type": "service_reference", "id": service_id_for(OTHER_KEY)}),
    )
    .await;
    subscribe(
        &standin,
        &elsewhere.url(),
        json!(["incident.triggered"]),
        json!({"type": "account_reference"}),
    )
    .await;
    subscribe(
        &standin,
        &elsewhere.url(),
        json!(["incident.resolved"]),
        json!({"type": "team_reference", "id": "PTEAM01"}),
    )
    .await;
    send(&standin, ROUTING_KEY, "trigger", "ref-1").await;

    let (status, answer) =
        control(&standin, "/_resolve", Some(json!({"dedup_key": "ref-1"}))).await;
    assert_eq!(status, 200);
    assert_eq!(answer["incident"]["status"], "resolved");
    assert_eq!(answer["posts"].as_array().unwrap().len(), 1, "{answer}");
    assert_eq!(answer["posts"][0]["url"], receiver.url());
    assert_eq!(answer["posts"][0]["status"], 200);
    assert_eq!(answer["posts"][0]["body"], "answered 200");

    let got = receiver.got();
    assert_eq!(got.len(), 1);
    let event = check_delivery(&got[0].0, &got[0].1, &secret);
    assert_eq!(event["event_type"], "incident.resolved");
    assert_eq!(event["resource_type"], "incident");
    assert_eq!(event["agent"]["type"], "user_reference");
    assert_eq!(event["client"], Value::Null);
    assert!(event["id"].is_string() && event["occurred_at"].as_str().unwrap().ends_with('Z'));
    let data = &event["data"];
    assert_eq!(data["id"], "Q0000000001");
    assert_eq!(data["type"], "incident");
    assert_eq!(data["status"], "resolved");
    assert_eq!(data["incident_key"], "ref-1");
    assert_eq!(data["title"], "disk full on ref-1");
    assert_eq!(data["service"]["id"], service.as_str());
    assert_eq!(data["resolve_reason"], Value::Null);
    assert!(data["html_url"].is_string() && data["self"].is_string());
    assert!(elsewhere.got().is_empty());

    // The person's resolve closed the alert: the bridge's later resolve finds none open,
    // and resolving twice is refused.
    send(&standin, ROUTING_KEY, "resolve", "ref-1").await;
    assert!(!standin.accepted().last().unwrap().resolved_open_alert);
    let (again, _) = control(
        &standin,
        "/_resolve",
        Some(json!({"incident_id": "Q0000000001"})),
    )
    .await;
    assert_eq!(again, 409);
    let posts = standin.webhook_posts();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].event_type, "incident.resolved");
    assert_eq!(posts[0].status, Some(200));

    let (_, listed) = control(&standin, "/_webhook_posts", None).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(&secret));
    let (_, incidents) = control(&standin, "/_incidents", None).await;
    assert_eq!(incidents[0]["dedup_keys"], json!(["ref-1"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_api_resolve_posts_agent_inbound_integration_reference() {
    let standin = standin().await;
    let receiver = Receiver::start().await;
    let (_, secret) = subscribe(
        &standin,
        &receiver.url(),
        json!(["incident.resolved"]),
        json!({"type": "account_reference"}),
    )
    .await;
    send(&standin, ROUTING_KEY, "trigger", "ref-1").await;
    send(&standin, ROUTING_KEY, "resolve", "ref-1").await;
    assert!(standin.webhooks_settled(Duration::from_secs(10)).await);
    let got = receiver.got();
    assert_eq!(got.len(), 1);
    let event = check_delivery(&got[0].0, &got[0].1, &secret);
    assert_eq!(event["event_type"], "incident.resolved");
    assert_eq!(event["agent"]["type"], "inbound_integration_reference");
    assert_eq!(event["data"]["status"], "resolved");
    assert_eq!(event["data"]["incident_key"], "ref-1");
    let posts = standin.webhook_posts();
    assert_eq!(
        (posts.len(), posts[0].status, posts[0].attempt),
        (1, Some(200), 1)
    );
    assert_eq!(posts[0].delivery["event"], event);

    // An incident holding another open alert stays open when one alert resolves.
    send(&standin, ROUTING_KEY, "trigger", "ref-2").await;
    let incident = standin.incident_for("ref-2").unwrap();
    standin.add_alert(
        &incident,
        json!({"df_monitor_checker_event_ref": "grouped"}),
    );
    send(&standin, ROUTING_KEY, "resolve", "ref-2").await;
    assert!(standin.webhooks_settled(Duration::from_secs(10)).await);
    assert_eq!(receiver.got().len(), 1);
    let incidents = standin.incidents();
    assert_eq!(incidents.last().unwrap().status, "triggered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_retry_429_5xx_and_timeouts_and_drop_other_4xx() {
    let standin = standin().await;
    standin.set_webhook_retry(WebhookRetry {
        attempts: 3,
        first_delay: Duration::from_millis(10),
        timeout: Duration::from_millis(300),
    });
    let receiver = Receiver::start().await;
    let (subscription, _) = subscribe(
        &standin,
        &receiver.url(),
        json!(["incident.resolved"]),
        json!({"type": "account_reference"}),
    )
    .await;
    let resolve = |key: &'static str| {
        let standin = &standin;
        async move {
            control(standin, "/_resolve", Some(json!({"dedup_key": key})))
                .await
                .1
        }
    };

    // 503, then a stall past the timeout, then taken: three attempts, one X-Webhook-Id.
    receiver.reply([Reply::Status(503), Reply::Stall(Duration::from_secs(2))]);
    send(&standin, ROUTING_KEY, "trigger", "ref-1").await;
    let answer = resolve("ref-1").await;
    assert_eq!(answer["posts"][0]["status"], 200, "{answer}");
    assert_eq!(answer["posts"][0]["attempts"], 3);
    let posts = standin.webhook_posts();
    let statuses: Vec<Option<u16>> = posts.iter().map(|p| p.status).collect();
    assert_eq!(statuses, [Some(503), None, Some(200)]);
    assert!(posts.iter().all(|p| p.webhook_id == posts[0].webhook_id));
    assert!(posts[1].body.contains("timed out"), "{}", posts[1].body);
    let got = receiver.got();
    assert_eq!(got[0].1, got[2].1, "a retry sends the same bytes");

    // 429 every time: retried until the attempts run out.
    receiver.reply([Reply::Status(429); 3]);
    send(&standin, ROUTING_KEY, "trigger", "ref-2").await;
    let answer = resolve("ref-2").await;
    assert_eq!(
        (
            answer["posts"][0]["status"].clone(),
            answer["posts"][0]["attempts"].clone()
        ),
        (json!(429), json!(3))
    );

    // Any other 4xx is dropped at once; three dropped in a row disable the subscription.
    for n in 3..6 {
        receiver.reply([Reply::Status(401)]);
        let key: &'static str = Box::leak(format!("ref-{n}").into_boxed_str());
        send(&standin, ROUTING_KEY, "trigger", key).await;
        let answer = resolve(key).await;
        assert_eq!(
            (
                answer["posts"][0]["status"].clone(),
                answer["posts"][0]["attempts"].clone()
            ),
            (json!(401), json!(1))
        );
    }
    assert!(standin.subscriptions()[0].temporarily_disabled);
    send(&standin, ROUTING_KEY, "trigger", "ref-6").await;
    assert_eq!(
        resolve("ref-6").await["posts"],
        json!([]),
        "a disabled subscription gets nothing"
    );
    let enabled = post(
        &standin,
        &format!("/webhook_subscriptions/{subscription}/enable"),
        json!({}),
    )
    .await;
    assert_eq!(enabled.status, 200);
    assert!(!standin.subscriptions()[0].temporarily_disabled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_moves_the_alerts_and_says_so_in_resolve_reason() {
    let standin = standin().await;
    let receiver = Receiver::start().await;
    subscribe(
        &standin,
        &receiver.url(),
        json!(["incident.resolved"]),
        json!({"type": "account_reference"}),
    )
    .await;
    send(&standin, ROUTING_KEY, "trigger", "ref-1").await;
    send(&standin, ROUTING_KEY, "trigger", "ref-2").await;
    let (_, answer) = control(
        &standin,
        "/_resolve",
        Some(json!({"incident_id": "Q0000000001", "merge": true, "into": "Q0000000002"})),
    )
    .await;
    assert_eq!(
        answer["incident"]["resolve_reason"]["type"],
        "merge_resolve_reason"
    );
    assert_eq!(
        answer["incident"]["resolve_reason"]["incident"]["id"],
        "Q0000000002"
    );
    let delivered: Value = serde_json::from_slice(&receiver.got()[0].1).unwrap();
    assert_eq!(
        delivered["event"]["data"]["resolve_reason"]["type"],
        "merge_resolve_reason"
    );
    let incidents = standin.incidents();
    assert_eq!(incidents[0].dedup_keys, Vec::<String>::new());
    assert_eq!(
        incidents[1].dedup_keys,
        ["ref-1", "ref-2"],
        "oldest alert first"
    );
    assert_eq!(
        incidents[1].status, "triggered",
        "the incident merged into stays open"
    );
    assert_eq!(
        standin.incident_for("ref-1").as_deref(),
        Some("Q0000000002")
    );
    let alerts = get(&standin, "/incidents/Q0000000002/alerts").await;
    assert_eq!(alerts.body["alerts"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_is_a_signed_pagey_ping() {
    let standin = standin().await;
    let receiver = Receiver::start().await;
    let (id, secret) = subscribe(
        &standin,
        &receiver.url(),
        json!(["incident.resolved"]),
        json!({"type": "account_reference"}),
    )
    .await;
    let answer = post(
        &standin,
        &format!("/webhook_subscriptions/{id}/ping"),
        json!({}),
    )
    .await;
    assert_eq!(answer.status, 202);
    assert!(standin.webhooks_settled(Duration::from_secs(10)).await);
    let got = receiver.got();
    let event = check_delivery(&got[0].0, &got[0].1, &secret);
    assert_eq!(event["event_type"], "pagey.ping");
    assert_eq!(event["resource_type"], "pagey");
    assert_eq!(event["data"]["message"], "Hello from your friend Pagey!");
    assert_eq!(
        post(&standin, "/webhook_subscriptions/PNOPE/ping", json!({}))
            .await
            .status,
        404
    );
}

// ----- services and integrations (make setup) ---------------------------------------------

/// `POST /services/{id}/integrations` with an Events API v2 integration.
fn integration_body(name: Option<&str>) -> Value {
    let mut integration = json!({"type": "events_api_v2_inbound_integration"});
    if let Some(name) = name {
        integration["name"] = json!(name);
    }
    json!({ "integration": integration })
}

fn is_integration_key(key: &str) -> bool {
    key.len() == 32
        && key
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_lists_integration_references_unless_they_are_included() {
    let standin = standin().await;
    let service = standin.add_service("Guance alerts");
    assert_eq!(service, "PSRV001");
    assert_eq!(standin.add_service("Billing"), "PSRV002");

    let shown = get(&standin, &format!("/services/{service}")).await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    let body = &shown.body["service"];
    assert_eq!(body["id"], service.as_str());
    assert_eq!(body["type"], "service");
    assert_eq!(body["name"], "Guance alerts");
    assert_eq!(body["summary"], "Guance alerts");
    assert_eq!(body["status"], "active");
    assert_eq!(body["alert_creation"], "create_alerts_and_incidents");
    assert_eq!(
        body["self"],
        format!("{}/services/{service}", standin.api_url())
    );
    assert!(body["html_url"].is_string());
    assert_eq!(
        body["escalation_policy"]["type"],
        "escalation_policy_reference"
    );
    assert_eq!(body["integrations"], json!([]));

    let created = post(
        &standin,
        &format!("/services/{service}/integrations"),
        integration_body(Some("Guance")),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let integration_id = created.body["integration"]["id"].as_str().unwrap();
    let key = created.body["integration"]["integration_key"]
        .as_str()
        .unwrap();

    // Without include[]: references, no key.
    let shown = get(&standin, &format!("/services/{service}")).await;
    let references = shown.body["service"]["integrations"].as_array().unwrap();
    assert_eq!(references.len(), 1);
    let reference = &references[0];
    assert_eq!(reference["id"], integration_id);
    assert_eq!(
        reference["type"],
        "events_api_v2_inbound_integration_reference"
    );
    assert_eq!(reference["summary"], "Guance");
    assert_eq!(
        reference["self"],
        format!(
            "{}/services/{service}/integrations/{integration_id}",
            standin.api_url()
        )
    );
    assert!(reference.get("integration_key").is_none(), "{reference}");

    // With include[]=integrations (raw or percent-encoded, as Python's requests sends it):
    // the full integration, key included.
    for query in [
        "include[]=integrations",
        "include%5B%5D=integrations",
        "include[]=teams&include[]=integrations",
    ] {
        let shown = get(&standin, &format!("/services/{service}?{query}")).await;
        assert_eq!(shown.status, 200, "{query}: {}", shown.body);
        let full = &shown.body["service"]["integrations"][0];
        assert_eq!(full["type"], "events_api_v2_inbound_integration", "{query}");
        assert_eq!(full["name"], "Guance");
        assert_eq!(full["integration_key"], key);
        assert_eq!(full["service"]["id"], service.as_str());
    }
    // Only teams included: still references.
    let teams = get(&standin, &format!("/services/{service}?include[]=teams")).await;
    assert_eq!(
        teams.body["service"]["integrations"][0]["type"],
        "events_api_v2_inbound_integration_reference"
    );
    // The other service holds none.
    let other = get(&standin, "/services/PSRV002?include[]=integrations").await;
    assert_eq!(other.body["service"]["integrations"], json!([]));

    // An unknown service, PagerDuty's error shape; a misspelt include is refused.
    let unknown = get(&standin, "/services/PNOSUCH").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(
        unknown.body,
        json!({"error": {"message": "Not Found", "code": 2100}})
    );
    for bad in ["include[]=integration", "include=integrations"] {
        let refused = get(&standin, &format!("/services/{service}?{bad}")).await;
        assert_eq!(refused.status, 400, "{bad}");
        assert_eq!(refused.body["error"]["code"], 2001, "{bad}");
        assert!(refused.body["error"]["errors"][0].is_string(), "{bad}");
    }
    // Authentication and the media type, as everywhere.
    let anonymous = rest(
        &standin,
        reqwest::Method::GET,
        &format!("/services/{service}"),
        None,
        None,
    )
    .await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.body["error"]["code"], 2006);
    let plain = http()
        .get(format!("{}/services/{service}", standin.api_url()))
        .header("authorization", format!("Token token={TOKEN}"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 406);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_are_listed_by_name_filtered_by_query_and_paged() {
    let standin = standin().await;
    for name in [
        "Payments",
        "guance-pagerduty",
        "Billing",
        "Guance staging",
        "Web",
    ] {
        standin.add_service(name);
    }
    let names = |body: &Value| -> Vec<String> {
        body["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = get(&standin, "/services").await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(
        names(&all.body),
        [
            "Billing",
            "Guance staging",
            "guance-pagerduty",
            "Payments",
            "Web"
        ]
    );
    assert_eq!(
        (
            all.body["limit"].clone(),
            all.body["offset"].clone(),
            all.body["more"].clone(),
            all.body["total"].clone()
        ),
        (json!(25), json!(0), json!(false), Value::Null)
    );
    assert_eq!(all.body["services"][0]["type"], "service");

    // `query` keeps the names containing it, whatever the case; spaces as + or %20.
    let guance = get(&standin, "/services?query=GUANCE").await;
    assert_eq!(names(&guance.body), ["Guance staging", "guance-pagerduty"]);
    for query in ["query=guance+staging", "query=guance%20staging"] {
        let one = get(&standin, &format!("/services?{query}")).await;
        assert_eq!(names(&one.body), ["Guance staging"], "{query}");
    }
    let none = get(&standin, "/services?query=nothing-like-it").await;
    assert_eq!(none.body["services"], json!([]));
    assert_eq!(none.body["more"], false);

    // Paged like every list, sorted as asked.
    let first = get(&standin, "/services?limit=2&total=true").await;
    assert_eq!(names(&first.body), ["Billing", "Guance staging"]);
    assert_eq!(first.body["more"], true);
    assert_eq!(first.body["total"], 5);
    let last = get(&standin, "/services?limit=2&offset=4").await;
    assert_eq!(names(&last.body), ["Web"]);
    assert_eq!(last.body["more"], false);
    let descending = get(&standin, "/services?sort_by=name:desc&limit=1").await;
    assert_eq!(names(&descending.body), ["Web"]);
    for bad in [
        "limit=101",
        "offset=x",
        "sort_by=created_at",
        "include[]=vendors",
    ] {
        let refused = get(&standin, &format!("/services?{bad}")).await;
        assert_eq!(refused.status, 400, "{bad}");
        assert_eq!(refused.body["error"]["message"], "Invalid Input Provided");
    }
    // The stand-in's services belong to no team.
    let team = get(&standin, "/services?team_ids[]=PTEAM01").await;
    assert_eq!(team.body["services"], json!([]));

    // include[]=integrations embeds the keys in the list too.
    let id = standin.services()[1].id.clone(); // guance-pagerduty
    let made = standin.add_integration(&id, "events_api_v2_inbound_integration", "Guance");
    let plain = get(&standin, "/services?query=guance-pagerduty").await;
    assert_eq!(
        plain.body["services"][0]["integrations"][0]["type"],
        "events_api_v2_inbound_integration_reference"
    );
    let included = get(
        &standin,
        "/services?query=guance-pagerduty&include[]=integrations",
    )
    .await;
    assert_eq!(
        included.body["services"][0]["integrations"][0]["integration_key"],
        made.integration_key.unwrap().as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integration_is_created_with_a_key_and_shown_again() {
    let standin = standin().await;
    let service = standin.add_service("Guance alerts");
    let path = format!("/services/{service}/integrations");
    let created = post(
        &standin,
        &path,
        integration_body(Some("Guance (guance-pagerduty)")),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let integration = &created.body["integration"];
    let id = integration["id"].as_str().unwrap().to_owned();
    assert_eq!(integration["type"], "events_api_v2_inbound_integration");
    assert_eq!(integration["name"], "Guance (guance-pagerduty)");
    assert_eq!(integration["summary"], "Guance (guance-pagerduty)");
    assert_eq!(
        integration["self"],
        format!("{}{path}/{id}", standin.api_url())
    );
    assert!(integration["html_url"].is_string());
    assert!(integration["created_at"].is_string());
    assert_eq!(
        integration["service"],
        json!({
            "id": service,
            "type": "service_reference",
            "summary": "Guance alerts",
            "self": format!("{}/services/{service}", standin.api_url()),
            "html_url": format!("{}/web/services/{service}", standin.api_url()),
        })
    );
    let key = integration["integration_key"].as_str().unwrap().to_owned();
    assert!(is_integration_key(&key), "{key}");

    // The body may name its service (PagerDuty's own example does); no name gives the
    // web app's default; every key differs.
    let named = post(
        &standin,
        &path,
        json!({"integration": {
            "type": "events_api_v2_inbound_integration",
            "service": {"id": service, "type": "service_reference"},
        }}),
    )
    .await;
    assert_eq!(named.status, 201, "{}", named.body);
    assert_eq!(named.body["integration"]["name"], "Events API V2");
    let second_key = named.body["integration"]["integration_key"]
        .as_str()
        .unwrap();
    assert!(is_integration_key(second_key));
    assert_ne!(second_key, key);
    // An email integration has an address, not a key.
    let email = post(
        &standin,
        &path,
        json!({"integration": {"type": "generic_email_inbound_integration", "name": "Mail"}}),
    )
    .await;
    assert_eq!(email.status, 201, "{}", email.body);
    assert!(email.body["integration"]["integration_email"]
        .as_str()
        .unwrap()
        .contains('@'));
    assert!(email.body["integration"].get("integration_key").is_none());

    // Shown again, the same; `include[]=services` gives the full service.
    let shown = get(&standin, &format!("{path}/{id}")).await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(shown.body["integration"], created.body["integration"]);
    let with_service = get(&standin, &format!("{path}/{id}?include[]=services")).await;
    assert_eq!(
        with_service.body["integration"]["service"]["type"],
        "service"
    );
    assert_eq!(
        with_service.body["integration"]["service"]["integrations"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        get(&standin, &format!("{path}/{id}?include[]=integrations"))
            .await
            .status,
        400
    );

    // The helper sees what the API made, key and all.
    let integrations = standin.integrations(&service);
    assert_eq!(integrations.len(), 3);
    assert_eq!(integrations[0].id, id);
    assert_eq!(integrations[0].service_id, service);
    assert_eq!(
        integrations[0].integration_type,
        "events_api_v2_inbound_integration"
    );
    assert_eq!(integrations[0].name, "Guance (guance-pagerduty)");
    assert_eq!(
        integrations[0].integration_key.as_deref(),
        Some(key.as_str())
    );
    assert_eq!(integrations[2].integration_key, None);
    assert!(integrations[2].integration_email.is_some());

    // Unknown integration, unknown service, or an integration asked of another service.
    let other = standin.add_service("Other");
    assert!(standin.integrations(&other).is_empty());
    for missing in [
        format!("{path}/PNOSUCH"),
        format!("/services/PNOSUCH/integrations/{id}"),
        format!("/services/{other}/integrations/{id}"),
    ] {
        let answer = get(&standin, &missing).await;
        assert_eq!(answer.status, 404, "{missing}");
        assert_eq!(answer.body["error"]["code"], 2100, "{missing}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_integration_request_is_refused_and_creates_nothing() {
    let standin = standin().await;
    let service = standin.add_service("Guance alerts");
    let path = format!("/services/{service}/integrations");
    let refused = [
        json!({"type": "events_api_v2_inbound_integration"}), // not wrapped
        json!({"integration": "events_api_v2_inbound_integration"}),
        json!({"integration": {"name": "Guance"}}), // no type
        json!({"integration": {"type": "events_api_v2_inbound_integration_reference"}}),
        json!({"integration": {"type": "events_api_v2"}}),
        json!({"integration": {"type": "events_api_v2_inbound_integration", "name": 7}}),
        json!({"integration": {"type": "events_api_v2_inbound_integration", "name": ["a"]}}),
        json!({"integration": {"type": "events_api_v2_inbound_integration",
            "service": {"id": "PSRV999", "type": "service_reference"}}}),
        json!({"integration": {"type": "events_api_v2_inbound_integration", "service": service}}),
        json!({"integration": {"type": "events_api_v2_inbound_integration",
            "vendor": {"id": "PAM4FGS"}}}),
    ];
    for body in refused {
        let answer = post(&standin, &path, body.clone()).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        assert_eq!(
            answer.body["error"]["message"], "Invalid Input Provided",
            "{body}"
        );
        assert_eq!(answer.body["error"]["code"], 2001, "{body}");
        let errors = answer.body["error"]["errors"].as_array().unwrap();
        assert!(
            !errors.is_empty() && errors.iter().all(Value::is_string),
            "{body}"
        );
    }
    let garbled = http()
        .post(format!("{}{path}", standin.api_url()))
        .header("accept", REST_ACCEPT)
        .header("authorization", format!("Token token={TOKEN}"))
        .header("content-type", "application/json")
        .body("{\"integration\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(garbled.status(), 400);

    // An unknown service is 404, whatever the body.
    let unknown = post(
        &standin,
        "/services/PNOSUCH/integrations",
        integration_body(None),
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(
        unknown.body,
        json!({"error": {"message": "Not Found", "code": 2100}})
    );
    // No token or a wrong one: 401 before anything else.
    for token in [None, Some("wrong-token")] {
        let answer = rest(
            &standin,
            reqwest::Method::POST,
            &path,
            token,
            Some(integration_body(None)),
        )
        .await;
        assert_eq!(answer.status, 401, "{token:?}");
    }
    assert!(standin.integrations(&service).is_empty());

    // Every one of them was recorded.
    let requests = standin.rest_requests();
    assert_eq!(requests.len(), 14);
    assert!(requests.iter().all(|r| r.method == "POST"));
    assert_eq!(
        requests.iter().filter(|r| !r.authorized).count(),
        2,
        "{requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_integration_key_opens_incidents_on_its_service() {
    let standin = standin().await;
    let service = standin.add_service("Guance alerts");
    let other = standin.add_service("Other");
    let created = post(
        &standin,
        &format!("/services/{service}/integrations"),
        integration_body(Some("Guance")),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let integration_id = created.body["integration"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = created.body["integration"]["integration_key"]
        .as_str()
        .unwrap()
        .to_owned();
    // A key of another type keeps the old rule (a service derived from the key).
    let v1 = standin.add_integration(&other, "generic_events_api_inbound_integration", "v1");
    let v1_key = v1.integration_key.unwrap();

    let receiver = Receiver::start().await;
    subscribe(
        &standin,
        &receiver.url(),
        json!(["incident.resolved"]),
        json!({"type": "service_reference", "id": service}),
    )
    .await;

    send(&standin, &key, "trigger", "guance-setup-proof").await;
    send(&standin, &v1_key, "trigger", "v1-event").await;
    send(&standin, ROUTING_KEY, "trigger", "ref-1").await;
    let incidents = standin.incidents();
    assert_eq!(incidents.len(), 3);
    assert_eq!(incidents[0].service_id, service);
    assert_eq!(incidents[1].service_id, service_id_for(&v1_key));
    assert_eq!(incidents[2].service_id, service_id_for(ROUTING_KEY));

    // The proof step: by dedup key, on that service.
    let proof = format!("/incidents?incident_key=guance-setup-proof&service_ids[]={service}");
    let found = get(&standin, &proof).await;
    assert_eq!(found.status, 200, "{}", found.body);
    let list = found.body["incidents"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    let incident = &list[0];
    assert_eq!(incident["status"], "triggered");
    assert_eq!(incident["incident_key"], "guance-setup-proof");
    assert_eq!(incident["service"]["id"], service.as_str());
    assert_eq!(incident["service"]["summary"], "Guance alerts");
    let html_url = incident["html_url"].as_str().unwrap();
    assert!(
        html_url.ends_with(&format!("/incidents/{}", incidents[0].id)),
        "{html_url}"
    );
    // The same key on another service, or another service's key: nothing.
    let elsewhere = get(
        &standin,
        &format!("/incidents?incident_key=guance-setup-proof&service_ids[]={other}"),
    )
    .await;
    assert_eq!(elsewhere.body["incidents"], json!([]));
    let encoded = get(
        &standin,
        &format!("/incidents?incident_key=guance-setup-proof&service_ids%5B%5D={service}"),
    )
    .await;
    assert_eq!(encoded.body["incidents"].as_array().unwrap().len(), 1);
    // Several service ids: any of them.
    let either = get(
        &standin,
        &format!(
            "/incidents?service_ids[]={other}&service_ids[]={}",
            service_id_for(ROUTING_KEY)
        ),
    )
    .await;
    let keys: Vec<&str> = either.body["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["incident_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["ref-1"]);
    // The service shows its latest incident.
    let shown = get(&standin, &format!("/services/{service}")).await;
    assert!(shown.body["service"]["last_incident_timestamp"].is_string());

    // The recovery with the same key resolves it, and the webhook names the integration.
    send(&standin, &key, "resolve", "guance-setup-proof").await;
    let resolved = get(&standin, &format!("{proof}&statuses[]=resolved")).await;
    assert_eq!(resolved.body["incidents"][0]["status"], "resolved");
    let open = get(&standin, &format!("{proof}&statuses[]=triggered")).await;
    assert_eq!(open.body["incidents"], json!([]));
    assert!(standin.webhooks_settled(Duration::from_secs(10)).await);
    let got = receiver.got();
    assert_eq!(got.len(), 1);
    let delivery: Value = serde_json::from_slice(&got[0].1).unwrap();
    let agent = &delivery["event"]["agent"];
    assert_eq!(agent["type"], "inbound_integration_reference");
    assert_eq!(agent["id"], integration_id.as_str());
    assert_eq!(agent["summary"], "Guance");
    assert_eq!(delivery["event"]["data"]["service"]["id"], service.as_str());

    // A revoked created key is refused like any other.
    standin.revoke_key(&key);
    let refused = http()
        .post(standin.events_url())
        .body(
            json!({"routing_key": key, "event_action": "trigger", "dedup_key": "again",
                "payload": {"summary": "s", "source": "h", "severity": "error"}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);

    // Every REST request was recorded, in order, query strings and all.
    let paths: Vec<(String, String)> = standin
        .rest_requests()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect();
    assert_eq!(
        paths[0],
        (
            "POST".to_owned(),
            format!("/services/{service}/integrations")
        )
    );
    assert_eq!(
        paths[1],
        ("POST".to_owned(), "/webhook_subscriptions".to_owned())
    );
    assert_eq!(paths[2], ("GET".to_owned(), proof.clone()));
}
