//! A local stand-in for PagerDuty's Events API v2 that enforces its contract
//! (CONTRACT.md section 2): a wrong event gets the 400 PagerDuty would give. It can be
//! scripted to fail the next requests (429, 500, 400, a stall, a dropped connection) or
//! to fail a share of all requests at random, and it records what it accepted.
//!
//! It also plays PagerDuty's REST API and webhooks v3 (CONTRACT.md section 6): the events
//! it takes open and resolve alerts and incidents, which `GET /incidents/{id}/alerts`
//! shows (authenticated, versioned, paginated as PagerDuty does); `POST
//! /webhook_subscriptions` makes subscriptions with a signing secret shown once; and a
//! resolved incident is posted, signed, to every subscription that asks for it: with agent
//! `inbound_integration_reference` when an Events API resolve closed it (the bridge's own
//! resolve), with a person's agent when `POST /_resolve` closed it (someone in PagerDuty).
//!
//! For `make setup` it also keeps services and their integrations: `GET /services` (with
//! `query=`), `GET /services/{id}` (with `include[]=integrations`), `POST
//! /services/{id}/integrations` and `GET /services/{id}/integrations/{integration_id}`. The
//! integration key of an Events API v2 integration made there routes events to its service;
//! any other routing key still opens incidents on a service derived from the key
//! (`service_id_for`).
//!
//! Used by the integration tests and, through `examples/pagerduty-standin.rs`, by
//! `make demo` and `make bench`.

#![allow(dead_code)]

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const MAX_BODY_BYTES: usize = 512_000;

/// What the stand-in does with one request instead of processing it.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Served normally: lets a script fail a later request.
    Pass,
    Status(u16),
    /// A status with a `Retry-After` header, in seconds.
    StatusRetryAfter(u16, u64),
    /// Waits this long and then drops the connection: the event is not taken.
    Stall(Duration),
    /// Closes the connection without an answer: the event is not taken.
    Drop,
}

/// Shares of requests that fail at random, in percent.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomFaults {
    pub rate_limited: u32,
    pub server_error: u32,
    pub dropped: u32,
    pub stalled: u32,
    pub stall: Duration,
    pub seed: u64,
}

/// One event PagerDuty took (answered 202), as it arrived.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub body: Value,
    pub routing_key: String,
    pub event_action: String,
    pub dedup_key: String,
    /// For a resolve: was an alert with this key open (PagerDuty drops it otherwise)?
    pub resolved_open_alert: bool,
    /// When it arrived, for latency figures (accept to PagerDuty).
    pub at: std::time::Instant,
}

#[derive(Default)]
struct State {
    script: VecDeque<Fault>,
    random: Option<(RandomFaults, u64)>,
    accepted: Vec<Accepted>,
    requests: u64,
    connections: u64,
    invalid: Vec<Vec<String>>,
    open_alerts: HashMap<(String, String), u64>,
    echo: bool,
    /// Every request answered 503 while set (PagerDuty down).
    outage: bool,
    /// Every request answered 429 with `Retry-After: 0` while set.
    throttled: bool,
    /// PagerDuty's per-routing-key limit: at most this many events per sliding window.
    rate_limit: Option<(usize, Duration)>,
    recent: HashMap<String, VecDeque<std::time::Instant>>,
    rate_limited: u64,
    /// Routing keys of integrations deleted since: PagerDuty answers 400 "Invalid routing
    /// key" to every event sent with one.
    revoked: std::collections::HashSet<String>,
    key_refusals: u64,
    /// The REST API, incidents, subscriptions and webhook deliveries.
    rest: Rest,
}

pub struct StandIn {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    server: JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl StandIn {
    pub async fn start() -> StandIn {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(addr: SocketAddr) -> StandIn {
        let listener = TcpListener::bind(addr).await.expect("bind the stand-in");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        state.lock().unwrap().rest.api = format!("http://{addr}");
        let shared = Arc::clone(&state);
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                shared.lock().unwrap().connections += 1;
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = Arc::clone(&state);
                        async move { serve(state, request).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        StandIn {
            addr,
            state,
            server,
        }
    }

    pub fn events_url(&self) -> String {
        format!("http://{}/v2/enqueue", self.addr)
    }

    /// The next requests meet these faults, in order, before normal service resumes.
    pub fn script(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().unwrap().script.extend(faults);
    }

    pub fn random_faults(&self, faults: RandomFaults) {
        self.state.lock().unwrap().random = Some((faults, faults.seed | 1));
    }

    /// Prints every accepted event to stdout as it arrives (for the demo).
    pub fn echo(&self) {
        self.state.lock().unwrap().echo = true;
    }

    /// While `down`, every request is answered 503 (PagerDuty unavailable).
    pub fn set_outage(&self, down: bool) {
        self.state.lock().unwrap().outage = down;
    }

    /// While `throttled`, every request is answered 429 with `Retry-After: 0`: advice to
    /// retry at once, which a client must not take as license to skip its own backoff.
    pub fn set_throttled(&self, throttled: bool) {
        self.state.lock().unwrap().throttled = throttled;
    }

    /// Enforces PagerDuty's rate limit per routing key: at most `limit` events accepted
    /// in any `window`; more are answered 429 and not ingested.
    pub fn rate_limit(&self, limit: usize, window: Duration) {
        self.state.lock().unwrap().rate_limit = Some((limit, window));
    }

    /// Deletes the integration of `routing_key` (a key rotated away): from now on PagerDuty
    /// refuses every event sent with it, as it does, with 400 "Invalid routing key".
    pub fn revoke_key(&self, routing_key: &str) {
        self.state
            .lock()
            .unwrap()
            .revoked
            .insert(routing_key.to_owned());
    }

    /// How many events were refused for a revoked routing key.
    pub fn key_refusals(&self) -> u64 {
        self.state.lock().unwrap().key_refusals
    }

    /// How many events were answered 429 by the rate limit.
    pub fn rate_limited(&self) -> u64 {
        self.state.lock().unwrap().rate_limited
    }

    pub fn accepted(&self) -> Vec<Accepted> {
        self.state.lock().unwrap().accepted.clone()
    }

    /// The arrival time of the `n`th event taken (0-based), once it arrived.
    pub fn accepted_at(&self, n: usize) -> Option<std::time::Instant> {
        self.state.lock().unwrap().accepted.get(n).map(|a| a.at)
    }

    pub fn requests(&self) -> u64 {
        self.state.lock().unwrap().requests
    }

    pub fn connections(&self) -> u64 {
        self.state.lock().unwrap().connections
    }

    /// The `errors` of every 400 the stand-in gave for an invalid event.
    pub fn invalid(&self) -> Vec<Vec<String>> {
        self.state.lock().unwrap().invalid.clone()
    }
}

type Answer = Result<Response<Full<Bytes>>, std::io::Error>;

fn respond(status: u16, body: Value) -> Answer {
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap())
}

async fn serve(state: Arc<Mutex<State>>, request: Request<Incoming>) -> Answer {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    if method == hyper::Method::GET && path == "/_received" {
        let accepted: Vec<Value> = state
            .lock()
            .unwrap()
            .accepted
            .iter()
            .map(|a| redact(&a.body))
            .collect();
        return respond(200, json!(accepted));
    }
    // `make demo` takes PagerDuty down and brings it back: POST /_outage with on or off.
    if method == hyper::Method::POST && path == "/_outage" {
        let body = request.into_body().collect().await.map(|b| b.to_bytes());
        let down = body.is_ok_and(|b| b.as_ref() == b"on");
        state.lock().unwrap().outage = down;
        return respond(200, json!({ "outage": down }));
    }
    if let Some(answer) = serve_control(&state, &method, &path) {
        return answer;
    }
    if method == hyper::Method::POST && path == "/_resolve" {
        let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return respond(413, json!({"error": "request too large"})),
        };
        return control_resolve(state, &body).await;
    }
    if is_rest_path(&path) {
        return serve_rest(state, request).await;
    }
    if path != "/v2/enqueue" {
        return respond(404, json!({"status": "not found", "message": "Not found"}));
    }
    if method != hyper::Method::POST {
        return respond(405, json!({"status": "method not allowed"}));
    }
    let fault = {
        let mut state = state.lock().unwrap();
        state.requests += 1;
        let scripted = state.script.pop_front();
        let outage = state
            .outage
            .then_some(Fault::Status(503))
            .or(state.throttled.then_some(Fault::StatusRetryAfter(429, 0)));
        scripted.or(outage).or_else(|| random_fault(&mut state))
    };
    // Read the body before any fault, as PagerDuty does, so a failed attempt costs the
    // client the same upload.
    let body = match Limited::new(request.into_body(), 4 * MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return respond(413, json!({"status": "request too large"})),
    };
    match fault {
        Some(Fault::Status(status)) => {
            return respond(
                status,
                json!({"status": "scripted failure", "message": "scripted failure", "errors": ["scripted failure"]}),
            )
        }
        Some(Fault::StatusRetryAfter(status, seconds)) => {
            let mut answer = respond(
                status,
                json!({"status": "throttle event", "message": "Requests for this service are arriving too quickly."}),
            )?;
            answer
                .headers_mut()
                .insert("retry-after", seconds.to_string().parse().unwrap());
            return Ok(answer);
        }
        Some(Fault::Stall(duration)) => {
            tokio::time::sleep(duration).await;
            return Err(std::io::Error::other("stalled"));
        }
        Some(Fault::Drop) => return Err(std::io::Error::other("dropped")),
        Some(Fault::Pass) | None => {}
    }
    if body.len() > MAX_BODY_BYTES {
        return respond(
            413,
            json!({"status": "request too large", "message": "Request body exceeds 512 KB"}),
        );
    }
    match validate(&body) {
        Err(errors) => {
            state.lock().unwrap().invalid.push(errors.clone());
            respond(
                400,
                json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors}),
            )
        }
        Ok(event) => {
            let shared = Arc::clone(&state);
            let mut state = state.lock().unwrap();
            let routing_key = event["routing_key"].as_str().unwrap_or_default().to_owned();
            if state.revoked.contains(&routing_key) {
                state.key_refusals += 1;
                return respond(
                    400,
                    json!({"status": "invalid event", "message": "Event object is invalid", "errors": ["Invalid routing key"]}),
                );
            }
            if let Some((limit, window)) = state.rate_limit {
                let now = std::time::Instant::now();
                let recent = state.recent.entry(routing_key.clone()).or_default();
                while recent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= window)
                {
                    recent.pop_front();
                }
                if recent.len() >= limit {
                    state.rate_limited += 1;
                    return respond(
                        429,
                        json!({"status": "throttle event", "message": "Requests for this service are arriving too quickly. Please retry later."}),
                    );
                }
                recent.push_back(now);
            }
            let action = event["event_action"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let dedup_key = match event["dedup_key"].as_str() {
                Some(key) => key.to_owned(),
                None => format!("standin-{}", state.accepted.len()),
            };
            let alert = (routing_key.clone(), dedup_key.clone());
            let mut resolved_open_alert = false;
            let mut outbound = Vec::new();
            match action.as_str() {
                "trigger" => {
                    *state.open_alerts.entry(alert).or_default() += 1;
                    open_alert(&mut state, &routing_key, &dedup_key, &event);
                }
                "resolve" => {
                    resolved_open_alert = state.open_alerts.remove(&alert).is_some();
                    outbound = resolve_alert_by_integration(&mut state, &routing_key, &dedup_key);
                }
                _ => {}
            }
            for out in outbound {
                drop(spawn_delivery(&shared, &mut state, out));
            }
            if state.echo {
                println!("{}", serde_json::to_string_pretty(&redact(&event)).unwrap());
            }
            state.accepted.push(Accepted {
                body: event,
                routing_key,
                event_action: action,
                dedup_key: dedup_key.clone(),
                resolved_open_alert,
                at: std::time::Instant::now(),
            });
            respond(
                202,
                json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key}),
            )
        }
    }
}

/// What the demo prints: the event with its routing key masked.
pub fn redact(event: &Value) -> Value {
    let mut shown = event.clone();
    if let Some(key) = shown.get("routing_key").and_then(Value::as_str) {
        let masked = format!("{}…({} chars)", &key[..key.len().min(4)], key.len());
        shown["routing_key"] = json!(masked);
    }
    shown
}

fn random_fault(state: &mut State) -> Option<Fault> {
    let (faults, seed) = state.random.as_mut()?;
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    let roll = (*seed % 100) as u32;
    let mut edge = faults.rate_limited;
    if roll < edge {
        return Some(Fault::Status(429));
    }
    edge += faults.server_error;
    if roll < edge {
        return Some(Fault::Status(500));
    }
    edge += faults.dropped;
    if roll < edge {
        return Some(Fault::Drop);
    }
    edge += faults.stalled;
    if roll < edge {
        return Some(Fault::Stall(faults.stall));
    }
    None
}

/// PagerDuty's validation of an Events API v2 event, as documented.
pub fn validate(body: &[u8]) -> Result<Value, Vec<String>> {
    let event: Value =
        serde_json::from_slice(body).map_err(|e| vec![format!("Invalid JSON: {e}")])?;
    let Some(object) = event.as_object() else {
        return Err(vec!["Event must be a JSON object".into()]);
    };
    let mut errors = Vec::new();
    let text = |name: &str| object.get(name).and_then(Value::as_str);
    match text("routing_key") {
        None => errors.push("'routing_key' is missing or blank".into()),
        Some(key) if key.len() != 32 => errors.push("'routing_key' must be 32 characters".into()),
        Some(_) => {}
    }
    let action = text("event_action");
    if !matches!(action, Some("trigger" | "acknowledge" | "resolve")) {
        errors.push("'event_action' is missing or invalid".into());
    }
    match object.get("dedup_key") {
        None if matches!(action, Some("acknowledge" | "resolve")) => {
            errors.push("'dedup_key' is required for acknowledge and resolve".into())
        }
        None => {}
        Some(Value::String(key)) if key.is_empty() => errors.push("'dedup_key' is blank".into()),
        Some(Value::String(key)) if key.chars().count() > 255 => {
            errors.push("Length of 'dedup_key' is too long (max 255)".into())
        }
        Some(Value::String(_)) => {}
        Some(_) => errors.push("'dedup_key' must be a string".into()),
    }
    match object.get("payload") {
        None if action == Some("trigger") => errors.push("'payload' is missing".into()),
        None => {}
        Some(Value::Object(payload)) => {
            let text = |name: &str| payload.get(name).and_then(Value::as_str);
            match text("summary") {
                None => errors.push("'payload.summary' is missing or not a string".into()),
                Some(s) if s.trim().is_empty() => errors.push("'payload.summary' is blank".into()),
                Some(s) if s.chars().count() > 1024 => {
                    errors.push("Length of 'payload.summary' is too long (max 1024)".into())
                }
                Some(_) => {}
            }
            match text("source") {
                Some(s) if !s.trim().is_empty() => {}
                _ => errors.push("'payload.source' is missing or blank".into()),
            }
            if !matches!(
                text("severity"),
                Some("critical" | "error" | "warning" | "info")
            ) {
                errors.push(
                    "'payload.severity' must be one of critical, error, warning, info".into(),
                );
            }
            if let Some(ts) = payload.get("timestamp") {
                if !ts.as_str().is_some_and(is_iso8601) {
                    errors.push("'payload.timestamp' is not a valid ISO 8601 timestamp".into());
                }
            }
            for name in ["component", "group", "class"] {
                if payload.get(name).is_some_and(|v| !v.is_string()) {
                    errors.push(format!("'payload.{name}' must be a string"));
                }
            }
            if payload
                .get("custom_details")
                .is_some_and(|v| !v.is_object())
            {
                errors.push("'payload.custom_details' must be an object".into());
            }
        }
        Some(_) => errors.push("'payload' must be an object".into()),
    }
    if let Some(links) = object.get("links") {
        let ok = links.as_array().is_some_and(|links| {
            links
                .iter()
                .all(|l| l.get("href").and_then(Value::as_str).is_some())
        });
        if !ok {
            errors.push("'links' must be a list of objects with an 'href'".into());
        }
    }
    if let Some(images) = object.get("images") {
        let ok = images.as_array().is_some_and(|images| {
            images.iter().all(|i| {
                i.get("src")
                    .and_then(Value::as_str)
                    .is_some_and(|s| s.starts_with("https://"))
            })
        });
        if !ok {
            errors.push("'images' must be a list of objects with an https 'src'".into());
        }
    }
    for name in ["client", "client_url"] {
        if object.get(name).is_some_and(|v| !v.is_string()) {
            errors.push(format!("'{name}' must be a string"));
        }
    }
    if errors.is_empty() {
        Ok(event)
    } else {
        Err(errors)
    }
}

/// `YYYY-MM-DDTHH:MM:SS` with optional fraction and a zone (`Z` or `±HH:MM`).
fn is_iso8601(ts: &str) -> bool {
    let b = ts.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || b[10] != b'T'
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut rest = &ts[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &fraction[n..];
    }
    rest == "Z"
        || (rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && rest.as_bytes()[3] == b':')
}

// ---------------------------------------------------------------------------------------
// PagerDuty's REST API and webhooks v3 (CONTRACT.md section 6).
// ---------------------------------------------------------------------------------------

/// The media type every REST request must accept.
pub const REST_ACCEPT: &str = "application/vnd.pagerduty+json;version=2";

/// The event types a v3 webhook subscription may ask for (PagerDuty's webhooks overview).
pub const WEBHOOK_EVENT_TYPES: &[&str] = &[
    "incident.acknowledged",
    "incident.annotated",
    "incident.conference_bridge.updated",
    "incident.custom_field_values.updated",
    "incident.delegated",
    "incident.escalated",
    "incident.priority_updated",
    "incident.reassigned",
    "incident.reopened",
    "incident.resolved",
    "incident.responder.added",
    "incident.responder.replied",
    "incident.status_update_published",
    "incident.triggered",
    "incident.unacknowledged",
    "service.created",
    "service.deleted",
    "service.updated",
];

/// The base the pure builders write into `self` and `html_url` links.
const PAGERDUTY_API: &str = "https://api.pagerduty.com";

/// One REST request as it arrived (control endpoints `/_...` are not recorded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestRequest {
    pub method: String,
    /// Path and query, as sent: `/incidents/Q0000000001/alerts?limit=100&offset=0`.
    pub path: String,
    /// Whether it carried `Authorization: Token token=<a key allowed>`.
    pub authorized: bool,
}

/// An incident as the tests see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    pub id: String,
    pub number: u64,
    /// `triggered` or `resolved`.
    pub status: String,
    pub title: String,
    pub service_id: String,
    /// The dedup key of the alert that opened it (null for one made by a merge).
    pub incident_key: Option<String>,
    /// The `alert_key` of every alert it holds now, oldest first (merges move them).
    pub dedup_keys: Vec<String>,
    /// `null`, or `{"type": "merge_resolve_reason", "incident": {...}}`.
    pub resolve_reason: Value,
}

/// A v3 webhook subscription, secret included (PagerDuty shows it only once).
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    /// `service_reference`, `team_reference` or `account_reference`.
    pub filter_type: String,
    pub filter_id: Option<String>,
    pub description: Option<String>,
    pub secret: String,
    pub custom_headers: Vec<(String, String)>,
    /// Set after 3 deliveries in a row were dropped (a 4xx other than 429), as PagerDuty
    /// does; `POST /webhook_subscriptions/{id}/enable` clears it.
    pub temporarily_disabled: bool,
}

/// One attempt at delivering a webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookPost {
    pub subscription_id: String,
    pub url: String,
    pub event_type: String,
    /// `X-Webhook-Id`: the same for every attempt of one delivery.
    pub webhook_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The receiver's status, `None` for a timeout or a connection failure.
    pub status: Option<u16>,
    /// The receiver's answer body, or what went wrong.
    pub body: String,
    /// The delivery as sent (its exact bytes were signed).
    pub delivery: Value,
    /// `X-PagerDuty-Signature` as sent.
    pub signature: String,
}

/// How webhook deliveries are retried: PagerDuty retries 429, 5xx, timeouts and
/// connection failures for 48 hours; the stand-in a few times with a doubling delay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WebhookRetry {
    /// Attempts in all, the first included.
    pub attempts: u32,
    pub first_delay: Duration,
    /// A 2xx is wanted within this long (PagerDuty: 5 s).
    pub timeout: Duration,
}

impl Default for WebhookRetry {
    fn default() -> Self {
        WebhookRetry {
            attempts: 4,
            first_delay: Duration::from_millis(100),
            timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Default)]
struct Rest {
    /// `http://addr`, for `self` links.
    api: String,
    tokens: std::collections::HashSet<String>,
    script: VecDeque<Fault>,
    requests: Vec<RestRequest>,
    incidents: Vec<IncidentRecord>,
    alerts: Vec<AlertRecord>,
    /// Open alerts by (routing key, dedup key): the alert's index in `alerts`.
    open: HashMap<(String, String), usize>,
    subscriptions: Vec<SubscriptionRecord>,
    posts: Vec<WebhookPost>,
    retry: WebhookRetry,
    in_flight: usize,
    next_subscription: u64,
    services: Vec<ServiceRecord>,
    integrations: Vec<Integration>,
}

struct IncidentRecord {
    id: String,
    number: u64,
    status: String,
    title: String,
    service_id: String,
    incident_key: Option<String>,
    created_at: String,
    resolve_reason: Value,
}

struct AlertRecord {
    id: String,
    incident_id: String,
    alert_key: String,
    service_id: String,
    status: String,
    created_at: String,
    summary: String,
    severity: String,
    details: Value,
    cef_details: Value,
}

struct SubscriptionRecord {
    subscription: Subscription,
    delivery_method_id: String,
    dropped_in_a_row: u32,
}

/// One delivery to make: a body signed for one subscription.
struct Outbound {
    subscription_id: String,
    url: String,
    secret: String,
    custom_headers: Vec<(String, String)>,
    event_type: String,
    delivery: Value,
    webhook_id: String,
}

impl StandIn {
    /// The REST API's base, `http://addr` (PagerDuty's is `https://api.pagerduty.com`).
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Lets REST requests in with `Authorization: Token token=<token>`.
    pub fn allow_api_token(&self, token: &str) {
        self.state
            .lock()
            .unwrap()
            .rest
            .tokens
            .insert(token.to_owned());
    }

    /// The next REST requests meet these faults, in order (the Events API's script is
    /// separate).
    pub fn script_rest(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().unwrap().rest.script.extend(faults);
    }

    /// Every REST request so far, in order.
    pub fn rest_requests(&self) -> Vec<RestRequest> {
        self.state.lock().unwrap().rest.requests.clone()
    }

    /// Every incident, oldest first.
    pub fn incidents(&self) -> Vec<Incident> {
        let state = self.state.lock().unwrap();
        state
            .rest
            .incidents
            .iter()
            .map(|i| incident_view(&state.rest, i))
            .collect()
    }

    /// The incident holding the alert with this dedup key: the open one if any, else the
    /// latest.
    pub fn incident_for(&self, dedup_key: &str) -> Option<String> {
        incident_for_key(&self.state.lock().unwrap().rest, dedup_key)
    }

    /// Puts one more alert into an incident (grouping, merges) whose
    /// `body.details` and `body.cef_details.details` are `custom_details`; its `alert_key`
    /// is `custom_details.df_monitor_checker_event_ref` when that is a string, else
    /// `standin-alert-<n>`. It is open (triggered) but no Events API key reaches it: it
    /// resolves with its incident. Returns the alert's id. Panics for an unknown incident.
    pub fn add_alert(&self, incident_id: &str, custom_details: Value) -> String {
        let mut state = self.state.lock().unwrap();
        let rest = &mut state.rest;
        let incident = rest
            .incidents
            .iter()
            .find(|i| i.id == incident_id)
            .unwrap_or_else(|| panic!("no incident {incident_id} in the stand-in"));
        let service_id = incident.service_id.clone();
        let status = if incident.status == "resolved" {
            "resolved"
        } else {
            "triggered"
        };
        let number = rest.alerts.len() + 1;
        let alert_key = custom_details["df_monitor_checker_event_ref"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("standin-alert-{number}"));
        let summary = format!("Stand-in alert {number}");
        let id = format!("A{number:010}");
        rest.alerts.push(AlertRecord {
            id: id.clone(),
            incident_id: incident_id.to_owned(),
            alert_key: alert_key.clone(),
            service_id,
            status: status.to_owned(),
            created_at: rfc3339(std::time::SystemTime::now(), false),
            summary: summary.clone(),
            severity: "error".to_owned(),
            cef_details: cef_details(&alert_key, &custom_details, &summary, "error", &json!({})),
            details: custom_details,
        });
        id
    }

    /// Every subscription, with its signing secret.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        let state = self.state.lock().unwrap();
        state
            .rest
            .subscriptions
            .iter()
            .map(|s| s.subscription.clone())
            .collect()
    }

    /// Every webhook delivery attempt so far, in order.
    pub fn webhook_posts(&self) -> Vec<WebhookPost> {
        self.state.lock().unwrap().rest.posts.clone()
    }

    /// Resolves `incident_id` as a person does in PagerDuty (every alert resolved), as
    /// tests that post the delivery themselves need it: no webhook is posted. An incident
    /// already resolved stays so.
    pub fn resolve_as_person(&self, incident_id: &str) {
        let mut state = self.state.lock().unwrap();
        match resolve_incident(&mut state, incident_id, Some("user_reference"), None) {
            Ok(_) | Err((409, _)) => {}
            Err((_, why)) => panic!("{why}"),
        }
    }

    /// How webhook deliveries are retried and timed out.
    pub fn set_webhook_retry(&self, retry: WebhookRetry) {
        self.state.lock().unwrap().rest.retry = retry;
    }

    /// Waits until no webhook delivery is in flight (retries included), at most `limit`;
    /// returns whether they all finished.
    pub async fn webhooks_settled(&self, limit: Duration) -> bool {
        let started = std::time::Instant::now();
        loop {
            if self.state.lock().unwrap().rest.in_flight == 0 {
                return true;
            }
            if started.elapsed() >= limit {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// `v1=<lowercase hex HMAC-SHA256 of body keyed with the secret's bytes>`: the value of
/// `X-PagerDuty-Signature` PagerDuty sends with one secret.
pub fn sign(body: &[u8], secret: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    format!("v1={}", hex(&mac.finalize().into_bytes()))
}

/// A v3 delivery as PagerDuty sends it, for tests that post one themselves: `incident.*`
/// event types carry an incident (`data.status` `resolved` for `incident.resolved`,
/// `acknowledged` for `incident.acknowledged`, else `triggered`) of service `PSVCTEST`;
/// `pagey.ping` the ping. `agent_type` `None` gives `agent: null`; `merged` gives the
/// `merge_resolve_reason` of an incident merged into `Q9999999999`. Deterministic: the
/// same arguments give the same delivery (event id and time included).
pub fn webhook_delivery(
    event_type: &str,
    incident_id: &str,
    agent_type: Option<&str>,
    merged: bool,
) -> Value {
    let seed = format!("{event_type}|{incident_id}|{agent_type:?}|{merged}");
    let event_id = ulid_like(&sha256(seed.as_bytes()));
    let occurred_at = "2025-04-07T03:00:55.532Z";
    if event_type == "pagey.ping" {
        return ping_delivery(&event_id, occurred_at);
    }
    let status = match event_type {
        "incident.resolved" => "resolved",
        "incident.acknowledged" => "acknowledged",
        _ => "triggered",
    };
    let service_id = "PSVCTEST";
    let resolve_reason = if merged {
        merge_reason(PAGERDUTY_API, "Q9999999999")
    } else {
        Value::Null
    };
    let data = json!({
        "id": incident_id,
        "type": "incident",
        "self": format!("{PAGERDUTY_API}/incidents/{incident_id}"),
        "html_url": format!("{PAGERDUTY_API}/web/incidents/{incident_id}"),
        "number": 1,
        "status": status,
        "incident_key": null,
        "created_at": "2025-04-07T02:58:00Z",
        "title": format!("Stand-in incident {incident_id}"),
        "service": service_reference(PAGERDUTY_API, service_id),
        "assignees": [],
        "escalation_policy": escalation_policy(PAGERDUTY_API),
        "teams": [],
        "priority": null,
        "urgency": "high",
        "conference_bridge": null,
        "resolve_reason": resolve_reason,
    });
    envelope(
        &event_id,
        event_type,
        occurred_at,
        agent(PAGERDUTY_API, agent_type, service_id),
        data,
    )
}

fn envelope(
    event_id: &str,
    event_type: &str,
    occurred_at: &str,
    agent: Value,
    data: Value,
) -> Value {
    json!({"event": {
        "id": event_id,
        "event_type": event_type,
        "resource_type": "incident",
        "occurred_at": occurred_at,
        "agent": agent,
        "client": null,
        "data": data,
    }})
}

fn ping_delivery(event_id: &str, occurred_at: &str) -> Value {
    json!({"event": {
        "id": event_id,
        "event_type": "pagey.ping",
        "resource_type": "pagey",
        "occurred_at": occurred_at,
        "agent": {"id": "PSTANDU", "type": "user_reference"},
        "client": null,
        "data": {"message": "Hello from your friend Pagey!", "type": "ping"},
    }})
}

fn reference(api: &str, kind: &str, collection: &str, id: &str, summary: &str) -> Value {
    json!({
        "id": id,
        "type": kind,
        "summary": summary,
        "self": format!("{api}/{collection}/{id}"),
        "html_url": format!("{api}/web/{collection}/{id}"),
    })
}

fn service_reference(api: &str, service_id: &str) -> Value {
    reference(
        api,
        "service_reference",
        "services",
        service_id,
        &format!("Stand-in service {service_id}"),
    )
}

fn incident_reference(api: &str, incident_id: &str) -> Value {
    reference(
        api,
        "incident_reference",
        "incidents",
        incident_id,
        &format!("Stand-in incident {incident_id}"),
    )
}

fn escalation_policy(api: &str) -> Value {
    reference(
        api,
        "escalation_policy_reference",
        "escalation_policies",
        "PSTANDE",
        "Default",
    )
}

fn merge_reason(api: &str, into: &str) -> Value {
    json!({"type": "merge_resolve_reason", "incident": incident_reference(api, into)})
}

/// `event.agent` for an agent type: a person, the Events API integration of the
/// incident's service, the service itself, `null` for `None`, else a bare reference.
fn agent(api: &str, agent_type: Option<&str>, service_id: &str) -> Value {
    match agent_type {
        None => Value::Null,
        Some("user_reference") => reference(
            api,
            "user_reference",
            "users",
            "PSTANDU",
            "Stand-in Responder",
        ),
        Some("inbound_integration_reference") => {
            let integration = format!("PINT{}", &service_id[service_id.len().min(4)..]);
            json!({
                "id": integration,
                "type": "inbound_integration_reference",
                "summary": "Events API V2",
                "self": format!("{api}/services/{service_id}/integrations/{integration}"),
                "html_url": format!("{api}/web/services/{service_id}/integrations/{integration}"),
            })
        }
        Some("service_reference") => service_reference(api, service_id),
        Some(other) => json!({"id": "PSTANDA", "type": other}),
    }
}

/// A stable service id per routing key: `PSVC` and 6 hex digits of its SHA-256.
pub fn service_id_for(routing_key: &str) -> String {
    format!(
        "PSVC{}",
        hex(&sha256(routing_key.as_bytes())[..3]).to_uppercase()
    )
}

fn cef_details(
    dedup_key: &str,
    details: &Value,
    summary: &str,
    severity: &str,
    event: &Value,
) -> Value {
    let payload = &event["payload"];
    json!({
        "client": event.get("client").cloned().unwrap_or(Value::Null),
        "client_url": event.get("client_url").cloned().unwrap_or(Value::Null),
        "contexts": event.get("links").cloned().unwrap_or(json!([])),
        "dedup_key": dedup_key,
        "description": summary,
        "details": details,
        "event_class": payload.get("class").cloned().unwrap_or(Value::Null),
        "message": summary,
        "mutations": [],
        "priority": null,
        "reporter_component": null,
        "reporter_location": null,
        "service_group": payload.get("group").cloned().unwrap_or(Value::Null),
        "severity": severity,
        "source_component": payload.get("component").cloned().unwrap_or(Value::Null),
        "source_location": payload.get("source").cloned().unwrap_or(Value::Null),
        "source_origin": payload.get("source").cloned().unwrap_or(Value::Null),
        "version": "1.0",
    })
}

fn incident_view(rest: &Rest, incident: &IncidentRecord) -> Incident {
    Incident {
        id: incident.id.clone(),
        number: incident.number,
        status: incident.status.clone(),
        title: incident.title.clone(),
        service_id: incident.service_id.clone(),
        incident_key: incident.incident_key.clone(),
        dedup_keys: rest
            .alerts
            .iter()
            .filter(|a| a.incident_id == incident.id)
            .map(|a| a.alert_key.clone())
            .collect(),
        resolve_reason: incident.resolve_reason.clone(),
    }
}

/// The incident as webhooks and `GET /incidents/{id}` show it.
fn incident_json(rest: &Rest, incident: &IncidentRecord) -> Value {
    let api = &rest.api;
    json!({
        "id": incident.id,
        "type": "incident",
        "summary": incident.title,
        "self": format!("{api}/incidents/{}", incident.id),
        "html_url": format!("{api}/web/incidents/{}", incident.id),
        "number": incident.number,
        "status": incident.status,
        "incident_key": incident.incident_key,
        "created_at": incident.created_at,
        "title": incident.title,
        "service": service_ref(rest, &incident.service_id),
        "assignees": [],
        "escalation_policy": escalation_policy(api),
        "teams": [],
        "priority": null,
        "urgency": "high",
        "conference_bridge": null,
        "resolve_reason": incident.resolve_reason,
    })
}

fn alert_json(rest: &Rest, alert: &AlertRecord) -> Value {
    let api = &rest.api;
    json!({
        "id": alert.id,
        "type": "alert",
        "summary": alert.summary,
        "self": format!("{api}/alerts/{}", alert.id),
        "html_url": format!("{api}/web/alerts/{}", alert.id),
        "status": alert.status,
        "alert_key": alert.alert_key,
        "created_at": alert.created_at,
        "severity": alert.severity,
        "suppressed": false,
        "service": service_ref(rest, &alert.service_id),
        "incident": incident_reference(api, &alert.incident_id),
        "body": {
            "type": "alert_body",
            "contexts": [],
            "details": alert.details,
            "cef_details": alert.cef_details,
        },
    })
}

fn subscription_json(record: &SubscriptionRecord, show_secret: bool) -> Value {
    let s = &record.subscription;
    let headers: Vec<Value> = s
        .custom_headers
        .iter()
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect();
    let mut filter = json!({"type": s.filter_type});
    if let Some(id) = &s.filter_id {
        filter["id"] = json!(id);
    }
    json!({
        "id": s.id,
        "type": "webhook_subscription",
        "active": true,
        "delivery_method": {
            "id": record.delivery_method_id,
            "type": "http_delivery_method",
            "url": s.url,
            "custom_headers": headers,
            "secret": if show_secret { json!(s.secret) } else { Value::Null },
            "temporarily_disabled": s.temporarily_disabled,
        },
        "description": s.description,
        "events": s.events,
        "filter": filter,
    })
}

fn incident_for_key(rest: &Rest, dedup_key: &str) -> Option<String> {
    let mut latest = None;
    for alert in rest.alerts.iter().rev() {
        if alert.alert_key != dedup_key {
            continue;
        }
        if alert.status == "triggered" {
            return Some(alert.incident_id.clone());
        }
        latest.get_or_insert_with(|| alert.incident_id.clone());
    }
    latest
}

/// A trigger: a new alert and incident unless one is open for this key.
fn open_alert(state: &mut State, routing_key: &str, dedup_key: &str, event: &Value) {
    let rest = &mut state.rest;
    let key = (routing_key.to_owned(), dedup_key.to_owned());
    if rest.open.contains_key(&key) {
        return;
    }
    let service_id = service_for_key(rest, routing_key);
    let number = rest.incidents.len() as u64 + 1;
    let incident_id = format!("Q{number:010}");
    let now = rfc3339(std::time::SystemTime::now(), false);
    let payload = &event["payload"];
    let summary = payload["summary"].as_str().unwrap_or_default().to_owned();
    let severity = payload["severity"].as_str().unwrap_or("error").to_owned();
    let details = payload
        .get("custom_details")
        .cloned()
        .unwrap_or(Value::Null);
    rest.incidents.push(IncidentRecord {
        id: incident_id.clone(),
        number,
        status: "triggered".into(),
        title: summary.clone(),
        service_id: service_id.clone(),
        incident_key: Some(dedup_key.to_owned()),
        created_at: now.clone(),
        resolve_reason: Value::Null,
    });
    let alert_number = rest.alerts.len() + 1;
    rest.alerts.push(AlertRecord {
        id: format!("A{alert_number:010}"),
        incident_id,
        alert_key: dedup_key.to_owned(),
        service_id,
        status: "triggered".into(),
        created_at: now,
        cef_details: cef_details(dedup_key, &details, &summary, &severity, event),
        summary,
        severity,
        details,
    });
    rest.open.insert(key, rest.alerts.len() - 1);
}

/// An Events API resolve: the open alert resolves, and its incident with it once it holds
/// no other open alert (PagerDuty's rule); that incident's `incident.resolved` goes out
/// with agent `inbound_integration_reference`.
fn resolve_alert_by_integration(
    state: &mut State,
    routing_key: &str,
    dedup_key: &str,
) -> Vec<Outbound> {
    let rest = &mut state.rest;
    let Some(index) = rest
        .open
        .remove(&(routing_key.to_owned(), dedup_key.to_owned()))
    else {
        return Vec::new();
    };
    rest.alerts[index].status = "resolved".into();
    let incident_id = rest.alerts[index].incident_id.clone();
    let still_open = rest
        .alerts
        .iter()
        .any(|a| a.incident_id == incident_id && a.status == "triggered");
    if still_open {
        return Vec::new();
    }
    let Some(incident) = rest.incidents.iter_mut().find(|i| i.id == incident_id) else {
        return Vec::new();
    };
    if incident.status == "resolved" {
        return Vec::new();
    }
    incident.status = "resolved".into();
    let service_id = incident.service_id.clone();
    let agent = match rest
        .integrations
        .iter()
        .find(|i| i.routes_events_v2() && i.integration_key.as_deref() == Some(routing_key))
    {
        Some(integration) => {
            let (self_url, html_url) = integration_urls(rest, integration);
            json!({
                "id": integration.id,
                "type": "inbound_integration_reference",
                "summary": integration.name,
                "self": self_url,
                "html_url": html_url,
            })
        }
        None => agent(
            &rest.api,
            Some("inbound_integration_reference"),
            &service_id,
        ),
    };
    outbound_with_agent(rest, &incident_id, "incident.resolved", agent)
}

/// Resolves an incident as a person (or a merge) does in PagerDuty: every alert resolves
/// (or, for a merge, moves to `into`, which stays open) and no Events API key is open on
/// them any more.
fn resolve_incident(
    state: &mut State,
    incident_id: &str,
    agent_type: Option<&str>,
    merge_into: Option<Option<String>>,
) -> Result<Vec<Outbound>, (u16, String)> {
    let rest = &mut state.rest;
    let Some(position) = rest.incidents.iter().position(|i| i.id == incident_id) else {
        return Err((404, format!("no incident {incident_id}")));
    };
    if rest.incidents[position].status == "resolved" {
        return Err((409, format!("incident {incident_id} is already resolved")));
    }
    let mut resolve_reason = Value::Null;
    if let Some(into) = merge_into {
        let target = match into {
            Some(target) => {
                let ok = rest
                    .incidents
                    .iter()
                    .any(|i| i.id == target && i.status != "resolved" && i.id != incident_id);
                if !ok {
                    return Err((
                        404,
                        format!("no other open incident {target} to merge into"),
                    ));
                }
                target
            }
            None => {
                let source = &rest.incidents[position];
                let number = rest.incidents.len() as u64 + 1;
                let target = IncidentRecord {
                    id: format!("Q{number:010}"),
                    number,
                    status: "triggered".into(),
                    title: format!("Stand-in incident merged from {}", source.id),
                    service_id: source.service_id.clone(),
                    incident_key: None,
                    created_at: rfc3339(std::time::SystemTime::now(), false),
                    resolve_reason: Value::Null,
                };
                let id = target.id.clone();
                rest.incidents.push(target);
                id
            }
        };
        for alert in rest
            .alerts
            .iter_mut()
            .filter(|a| a.incident_id == incident_id)
        {
            alert.incident_id = target.clone();
        }
        resolve_reason = merge_reason(&rest.api, &target);
    } else {
        let mut closed = Vec::new();
        for (index, alert) in rest.alerts.iter_mut().enumerate() {
            if alert.incident_id == incident_id && alert.status == "triggered" {
                alert.status = "resolved".into();
                closed.push(index);
            }
        }
        rest.open.retain(|_, index| !closed.contains(index));
        let open = &rest.open;
        let still: std::collections::HashSet<(String, String)> = open.keys().cloned().collect();
        state.open_alerts.retain(|key, _| still.contains(key));
    }
    let rest = &mut state.rest;
    let incident = &mut rest.incidents[position];
    incident.status = "resolved".into();
    incident.resolve_reason = resolve_reason;
    Ok(outbound_for(
        rest,
        incident_id,
        "incident.resolved",
        agent_type,
    ))
}

/// The signed deliveries of one incident event, one per subscription that asks for it.
fn outbound_for(
    rest: &Rest,
    incident_id: &str,
    event_type: &str,
    agent_type: Option<&str>,
) -> Vec<Outbound> {
    let Some(incident) = rest.incidents.iter().find(|i| i.id == incident_id) else {
        return Vec::new();
    };
    let agent = agent(&rest.api, agent_type, &incident.service_id);
    outbound_with_agent(rest, incident_id, event_type, agent)
}

/// The signed deliveries of one incident event whose `event.agent` is `agent`.
fn outbound_with_agent(
    rest: &Rest,
    incident_id: &str,
    event_type: &str,
    agent: Value,
) -> Vec<Outbound> {
    let Some(incident) = rest.incidents.iter().find(|i| i.id == incident_id) else {
        return Vec::new();
    };
    let event_id = ulid_like(&random_bytes(16));
    let delivery = envelope(
        &event_id,
        event_type,
        &rfc3339(std::time::SystemTime::now(), true),
        agent,
        incident_json(rest, incident),
    );
    rest.subscriptions
        .iter()
        .map(|r| &r.subscription)
        .filter(|s| !s.temporarily_disabled && s.events.iter().any(|e| e == event_type))
        .filter(|s| match s.filter_type.as_str() {
            "account_reference" => true,
            "service_reference" => s.filter_id.as_deref() == Some(incident.service_id.as_str()),
            // The stand-in's incidents belong to no team.
            _ => false,
        })
        .map(|s| outbound_to(s, event_type, delivery.clone()))
        .collect()
}

fn outbound_to(subscription: &Subscription, event_type: &str, delivery: Value) -> Outbound {
    Outbound {
        subscription_id: subscription.id.clone(),
        url: subscription.url.clone(),
        secret: subscription.secret.clone(),
        custom_headers: subscription.custom_headers.clone(),
        event_type: event_type.to_owned(),
        delivery,
        webhook_id: uuid_like(),
    }
}

fn spawn_delivery(
    shared: &Arc<Mutex<State>>,
    state: &mut State,
    out: Outbound,
) -> JoinHandle<WebhookPost> {
    state.rest.in_flight += 1;
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let post = deliver(&shared, out).await;
        shared.lock().unwrap().rest.in_flight -= 1;
        post
    })
}

/// Posts one delivery until it is taken (2xx), dropped (another status but 429), or the
/// attempts run out; records every attempt. Returns the last.
async fn deliver(state: &Arc<Mutex<State>>, out: Outbound) -> WebhookPost {
    let retry = state.lock().unwrap().rest.retry;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(retry.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("PagerDuty-Webhook/V3.0")
        .build()
        .expect("an HTTP client for webhooks");
    let body = out.delivery.to_string().into_bytes();
    let signature = sign(&body, &out.secret);
    let mut delay = retry.first_delay;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut request = client
            .post(&out.url)
            .header("content-type", "application/json")
            .header("x-pagerduty-signature", &signature)
            .header("x-webhook-id", &out.webhook_id)
            .header("x-webhook-subscription", &out.subscription_id)
            .body(body.clone());
        for (name, value) in &out.custom_headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let (status, answer) = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let text = match response.text().await {
                    Ok(text) => text,
                    Err(e) => format!("(answer unreadable: {e})"),
                };
                (Some(status), text)
            }
            Err(e) if e.is_timeout() => (None, format!("timed out after {:?}", retry.timeout)),
            Err(e) => (None, format!("connection failed: {e}")),
        };
        let post = WebhookPost {
            subscription_id: out.subscription_id.clone(),
            url: out.url.clone(),
            event_type: out.event_type.clone(),
            webhook_id: out.webhook_id.clone(),
            attempt,
            status,
            body: answer,
            delivery: out.delivery.clone(),
            signature: signature.clone(),
        };
        let retryable = status.is_none_or(|s| s == 429 || s >= 500);
        let taken = status.is_some_and(|s| (200..300).contains(&s));
        {
            let mut state = state.lock().unwrap();
            if state.echo {
                let shown = status.map_or_else(|| "no answer".to_owned(), |s| s.to_string());
                println!(
                    "webhook {} -> {} (attempt {attempt}): {shown}",
                    out.event_type, out.url
                );
            }
            state.rest.posts.push(post.clone());
            if let Some(record) = state
                .rest
                .subscriptions
                .iter_mut()
                .find(|r| r.subscription.id == out.subscription_id)
            {
                if taken {
                    record.dropped_in_a_row = 0;
                } else if !retryable {
                    record.dropped_in_a_row += 1;
                    if record.dropped_in_a_row >= 3 {
                        record.subscription.temporarily_disabled = true;
                    }
                }
            }
        }
        if taken || !retryable || attempt >= retry.attempts {
            return post;
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
}

fn is_rest_path(path: &str) -> bool {
    [
        "/incidents",
        "/webhook_subscriptions",
        "/alerts",
        "/services",
    ]
    .iter()
    .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

/// PagerDuty's REST error shape.
fn rest_error(status: u16, message: &str, code: u32, errors: &[String]) -> Answer {
    let mut error = json!({"message": message, "code": code});
    if !errors.is_empty() {
        error["errors"] = json!(errors);
    }
    respond(status, json!({ "error": error }))
}

fn invalid_input(errors: Vec<String>) -> Answer {
    rest_error(400, "Invalid Input Provided", 2001, &errors)
}

fn not_found() -> Answer {
    rest_error(404, "Not Found", 2100, &[])
}

fn accepts_v2(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get_all(hyper::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| {
            let v: String = v.chars().filter(|c| !c.is_whitespace()).collect();
            v.eq_ignore_ascii_case(REST_ACCEPT)
        })
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// `limit` (default 25, 1 to 100), `offset` (default 0) and `total` (the count only when
/// `total=true`, as PagerDuty does) of a list request.
fn pagination(query: &str) -> Result<(usize, usize, bool), Vec<String>> {
    let mut errors = Vec::new();
    let limit = match query_param(query, "limit") {
        None => 25,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => n,
            Ok(n) if n > 100 => {
                errors.push("Limit must be less than or equal to 100".to_owned());
                0
            }
            _ => {
                errors.push("Limit must be a positive integer".to_owned());
                0
            }
        },
    };
    let offset = match query_param(query, "offset") {
        None => 0,
        Some(text) => text.parse::<usize>().unwrap_or_else(|_| {
            errors.push("Offset must be a non-negative integer".to_owned());
            0
        }),
    };
    let total = query_param(query, "total") == Some("true");
    if errors.is_empty() {
        Ok((limit, offset, total))
    } else {
        Err(errors)
    }
}

fn page(name: &str, items: Vec<Value>, query: &str) -> Answer {
    let (limit, offset, want_total) = match pagination(query) {
        Ok(page) => page,
        Err(errors) => return invalid_input(errors),
    };
    let total = items.len();
    let shown: Vec<Value> = items.into_iter().skip(offset).take(limit).collect();
    respond(
        200,
        json!({
            name: shown,
            "limit": limit,
            "offset": offset,
            "more": offset + limit < total,
            "total": if want_total { json!(total) } else { Value::Null },
        }),
    )
}

async fn serve_rest(state: Arc<Mutex<State>>, request: Request<Incoming>) -> Answer {
    let method = request.method().clone();
    let uri = request.uri().clone();
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or_default().to_owned();
    let authorized = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Token token="))
        .is_some_and(|token| state.lock().unwrap().rest.tokens.contains(token));
    let accepted = accepts_v2(&request);
    let fault = {
        let mut state = state.lock().unwrap();
        state.rest.requests.push(RestRequest {
            method: method.to_string(),
            path: uri
                .path_and_query()
                .map_or_else(|| path.clone(), |p| p.as_str().to_owned()),
            authorized,
        });
        state.rest.script.pop_front()
    };
    let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return rest_error(413, "Request Entity Too Large", 2001, &[]),
    };
    match fault {
        Some(Fault::Status(status)) => {
            return rest_error(status, "scripted failure", 2000, &[]);
        }
        Some(Fault::StatusRetryAfter(status, seconds)) => {
            let mut answer = rest_error(status, "Rate Limit Exceeded", 2020, &[])?;
            answer
                .headers_mut()
                .insert("retry-after", seconds.to_string().parse().unwrap());
            return Ok(answer);
        }
        Some(Fault::Stall(duration)) => {
            tokio::time::sleep(duration).await;
            return Err(std::io::Error::other("stalled"));
        }
        Some(Fault::Drop) => return Err(std::io::Error::other("dropped")),
        Some(Fault::Pass) | None => {}
    }
    if !authorized {
        return rest_error(401, "Authentication failed", 2006, &[]);
    }
    if !accepted {
        return rest_error(
            406,
            "Not Acceptable",
            2001,
            &[format!("The Accept header must be {REST_ACCEPT}")],
        );
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let get = method == hyper::Method::GET;
    let post = method == hyper::Method::POST;
    match segments.as_slice() {
        // `incident_key` matches incidents whose alerts have that `alert_key` (PagerDuty's
        // reference for `GET /incidents`); `statuses[]` filters by status.
        ["incidents"] if get => {
            let pairs = query_pairs(&query);
            let key = pairs
                .iter()
                .find(|(k, _)| k == "incident_key")
                .map(|(_, v)| v.clone());
            let statuses: Vec<&str> = pairs
                .iter()
                .filter(|(k, _)| k == "statuses[]")
                .map(|(_, v)| v.as_str())
                .collect();
            // `service_ids[]`: "Returns only the incidents associated with the passed
            // service(s)" (the REST reference's `incident_services` parameter).
            let service_ids: Vec<&str> = pairs
                .iter()
                .filter(|(k, _)| k == "service_ids[]")
                .map(|(_, v)| v.as_str())
                .collect();
            if let Some(bad) = statuses
                .iter()
                .find(|s| !["triggered", "acknowledged", "resolved"].contains(s))
            {
                return invalid_input(vec![format!("Statuses {bad} is not a valid status")]);
            }
            let state = state.lock().unwrap();
            let rest = &state.rest;
            let found: Vec<Value> = rest
                .incidents
                .iter()
                .filter(|i| statuses.is_empty() || statuses.contains(&i.status.as_str()))
                .filter(|i| service_ids.is_empty() || service_ids.contains(&i.service_id.as_str()))
                .filter(|i| {
                    key.as_ref().is_none_or(|key| {
                        rest.alerts
                            .iter()
                            .any(|a| a.incident_id == i.id && &a.alert_key == key)
                    })
                })
                .map(|i| incident_json(rest, i))
                .collect();
            page("incidents", found, &query)
        }
        ["incidents", id] if get => {
            let state = state.lock().unwrap();
            match state.rest.incidents.iter().find(|i| i.id == *id) {
                Some(incident) => respond(
                    200,
                    json!({"incident": incident_json(&state.rest, incident)}),
                ),
                None => not_found(),
            }
        }
        ["incidents", id, "alerts"] if get => {
            let state = state.lock().unwrap();
            let rest = &state.rest;
            if !rest.incidents.iter().any(|i| i.id == *id) {
                return not_found();
            }
            let alerts: Vec<Value> = rest
                .alerts
                .iter()
                .filter(|a| a.incident_id == *id)
                .map(|a| alert_json(rest, a))
                .collect();
            page("alerts", alerts, &query)
        }
        ["services"] if get => list_services(&state, &query),
        ["services", id] if get => show_service(&state, id, &query),
        ["services", id, "integrations"] if post => create_integration_request(&state, id, &body),
        ["services", id, "integrations", integration_id] if get => {
            show_integration(&state, id, integration_id, &query)
        }
        ["webhook_subscriptions"] if get => {
            let state = state.lock().unwrap();
            let all: Vec<Value> = state
                .rest
                .subscriptions
                .iter()
                .map(|r| subscription_json(r, false))
                .collect();
            page("webhook_subscriptions", all, &query)
        }
        ["webhook_subscriptions"] if post => {
            let subscription = match validate_subscription(&body) {
                Ok(subscription) => subscription,
                Err(errors) => return invalid_input(errors),
            };
            let mut state = state.lock().unwrap();
            let rest = &mut state.rest;
            rest.next_subscription += 1;
            let n = rest.next_subscription;
            let mut subscription = subscription;
            subscription.id = format!("PWHS{n:03}");
            subscription.secret = new_secret();
            let record = SubscriptionRecord {
                subscription,
                delivery_method_id: format!("PDLM{n:03}"),
                dropped_in_a_row: 0,
            };
            let shown = subscription_json(&record, true);
            rest.subscriptions.push(record);
            respond(201, json!({ "webhook_subscription": shown }))
        }
        ["webhook_subscriptions", id] if get => {
            let state = state.lock().unwrap();
            match state
                .rest
                .subscriptions
                .iter()
                .find(|r| r.subscription.id == *id)
            {
                Some(r) => respond(
                    200,
                    json!({"webhook_subscription": subscription_json(r, false)}),
                ),
                None => not_found(),
            }
        }
        ["webhook_subscriptions", id] if method == hyper::Method::DELETE => {
            let mut state = state.lock().unwrap();
            let before = state.rest.subscriptions.len();
            state
                .rest
                .subscriptions
                .retain(|r| r.subscription.id != *id);
            if state.rest.subscriptions.len() == before {
                return not_found();
            }
            Ok(Response::builder()
                .status(204)
                .body(Full::new(Bytes::new()))
                .unwrap())
        }
        ["webhook_subscriptions", id, "enable"] if post => {
            let mut state = state.lock().unwrap();
            match state
                .rest
                .subscriptions
                .iter_mut()
                .find(|r| r.subscription.id == *id)
            {
                Some(r) => {
                    r.subscription.temporarily_disabled = false;
                    r.dropped_in_a_row = 0;
                    respond(
                        200,
                        json!({"webhook_subscription": subscription_json(r, false)}),
                    )
                }
                None => not_found(),
            }
        }
        ["webhook_subscriptions", id, "ping"] if post => {
            let mut guard = state.lock().unwrap();
            let Some(record) = guard
                .rest
                .subscriptions
                .iter()
                .find(|r| r.subscription.id == *id)
            else {
                return not_found();
            };
            let event_id = ulid_like(&random_bytes(16));
            let delivery = ping_delivery(&event_id, &rfc3339(std::time::SystemTime::now(), true));
            let out = outbound_to(&record.subscription, "pagey.ping", delivery);
            drop(spawn_delivery(&state, &mut guard, out));
            Ok(Response::builder()
                .status(202)
                .body(Full::new(Bytes::new()))
                .unwrap())
        }
        _ => not_found(),
    }
}

/// PagerDuty's checks of a `POST /webhook_subscriptions` body; the subscription without
/// its id and secret.
fn validate_subscription(body: &[u8]) -> Result<Subscription, Vec<String>> {
    let root: Value =
        serde_json::from_slice(body).map_err(|e| vec![format!("Invalid JSON: {e}")])?;
    let Some(wrapped) = root.get("webhook_subscription").filter(|v| v.is_object()) else {
        return Err(vec!["webhook_subscription must be an object".into()]);
    };
    let mut errors = Vec::new();
    if wrapped["type"] != "webhook_subscription" {
        errors.push("type must be webhook_subscription".into());
    }
    let delivery = &wrapped["delivery_method"];
    if delivery["type"] != "http_delivery_method" {
        errors.push("delivery_method.type must be http_delivery_method".into());
    }
    let url = delivery["url"].as_str().unwrap_or_default().to_owned();
    let valid_url = ["http://", "https://"].iter().any(|scheme| {
        url.strip_prefix(scheme).is_some_and(|rest| {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            !host.is_empty() && !rest.contains(char::is_whitespace)
        })
    });
    if !valid_url {
        errors.push("delivery_method.url must be an http(s) URL".into());
    }
    let mut custom_headers = Vec::new();
    match delivery.get("custom_headers") {
        None | Some(Value::Null) => {}
        Some(Value::Array(headers)) => {
            for header in headers {
                match (header["name"].as_str(), header["value"].as_str()) {
                    (Some(name), Some(value)) if !name.is_empty() => {
                        custom_headers.push((name.to_owned(), value.to_owned()))
                    }
                    _ => errors.push(
                        "delivery_method.custom_headers must hold objects with a name and a value"
                            .into(),
                    ),
                }
            }
        }
        Some(_) => errors.push("delivery_method.custom_headers must be a list".into()),
    }
    let mut events = Vec::new();
    match wrapped["events"].as_array() {
        Some(list) if !list.is_empty() => {
            for event in list {
                match event.as_str() {
                    Some(e) if WEBHOOK_EVENT_TYPES.contains(&e) => events.push(e.to_owned()),
                    _ => errors.push(format!("events: {event} is not a known event type")),
                }
            }
        }
        _ => errors.push("events must be a non-empty list of event types".into()),
    }
    let filter = &wrapped["filter"];
    let filter_type = filter["type"].as_str().unwrap_or_default().to_owned();
    let filter_id = filter["id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    match filter_type.as_str() {
        "account_reference" => {}
        "service_reference" | "team_reference" if filter_id.is_some() => {}
        "service_reference" | "team_reference" => {
            errors.push(format!("filter.id is required for a {filter_type}"))
        }
        _ => errors.push(
            "filter.type must be service_reference, team_reference or account_reference".into(),
        ),
    }
    let description = match &wrapped["description"] {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        _ => {
            errors.push("description must be a string".into());
            None
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Subscription {
        id: String::new(),
        url,
        events,
        filter_type,
        filter_id,
        description,
        secret: String::new(),
        custom_headers,
        temporarily_disabled: false,
    })
}

// ---------------------------------------------------------------------------------------
// Services and their integrations, for `make setup`. Built from PagerDuty's REST API
// reference (the OpenAPI document in github.com/PagerDuty/api-schema,
// reference/REST/openapiv3.json): `listServices` (`GET /services`: `query`, `limit`,
// `offset`, `total`, `sort_by` name|name:asc|name:desc, `include[]` escalation_policies|
// teams|integrations), `getService` (`GET /services/{id}`: 200 `{"service": Service}`,
// 404 NotFound), `createServiceIntegration` (`POST /services/{id}/integrations`: body
// `{"integration": Integration}`, 201 `{"integration": Integration}`, 400 ArgumentError),
// `getServiceIntegration` (`GET /services/{id}/integrations/{integration_id}`, `include[]`
// services|vendors); the Service example there (`type: "service"`, `integrations` as
// `<type>_reference` references, `status`, `alert_creation`, `escalation_policy`, ...); and
// the developer docs' REST pages: 13-Includes.md (`include[]` turns references into full
// objects), 11-References.md (a reference's `id`, `type`, `summary`, `self`, `html_url`),
// 14-Errors.md (`{"error": {"message", "code", "errors"}}`; 2001 Invalid Input Provided,
// 2100 Not Found). The integration types are those PagerDuty's Terraform provider accepts
// (pagerduty_service_integration's `type`); integration keys are 32 characters
// (Events API v2 docs, 02-Trigger-Events.md: "the 32 character Integration Key"), lowercase
// hex as the service keys in PagerDuty's own examples (`73c3047621974a99a83e91babdd4a2ba`).
// ---------------------------------------------------------------------------------------

/// The integration types `POST /services/{id}/integrations` takes.
pub const INTEGRATION_TYPES: &[&str] = &[
    "aws_cloudwatch_inbound_integration",
    "cloudkick_inbound_integration",
    "event_transformer_api_inbound_integration",
    "events_api_v2_inbound_integration",
    "generic_email_inbound_integration",
    "generic_events_api_inbound_integration",
    "keynote_inbound_integration",
    "nagios_inbound_integration",
    "pingdom_inbound_integration",
    "sql_monitor_inbound_integration",
];

/// `include[]` values of `GET /services` and `GET /services/{id}` (`include_services`;
/// `auto_pause_notifications_parameters` is newer). Only `integrations` changes the
/// answer here: the stand-in's escalation policy and teams stay references.
const SERVICE_INCLUDES: &[&str] = &[
    "escalation_policies",
    "teams",
    "integrations",
    "auto_pause_notifications_parameters",
];

/// `include[]` values of `GET /services/{id}/integrations/{integration_id}`.
const INTEGRATION_INCLUDES: &[&str] = &["services", "vendors"];

/// A service as the tests see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub id: String,
    pub name: String,
}

/// An integration on a service, key included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integration {
    pub id: String,
    pub service_id: String,
    /// `events_api_v2_inbound_integration`, ...
    pub integration_type: String,
    pub name: String,
    /// 32 lowercase hex characters; `None` for an email integration.
    pub integration_key: Option<String>,
    /// Only for `generic_email_inbound_integration`.
    pub integration_email: Option<String>,
    pub created_at: String,
}

impl Integration {
    /// Whether Events API v2 events sent with its key land on its service (the stand-in
    /// routes only Events API v2 integrations' keys; any other key keeps the old rule).
    fn routes_events_v2(&self) -> bool {
        self.integration_type == "events_api_v2_inbound_integration"
    }
}

struct ServiceRecord {
    id: String,
    name: String,
    created_at: String,
}

impl StandIn {
    /// Adds a service named `name` (as someone does in PagerDuty's web app) and returns its
    /// id (`PSRV001`, `PSRV002`, ...). Panics if a service already has that name (PagerDuty
    /// keeps service names unique).
    pub fn add_service(&self, name: &str) -> String {
        let mut state = self.state.lock().unwrap();
        let rest = &mut state.rest;
        assert!(
            !rest.services.iter().any(|s| s.name == name),
            "a service named {name:?} exists already"
        );
        let id = format!("PSRV{:03}", rest.services.len() + 1);
        rest.services.push(ServiceRecord {
            id: id.clone(),
            name: name.to_owned(),
            created_at: rfc3339(std::time::SystemTime::now(), false),
        });
        id
    }

    /// Every service added, oldest first.
    pub fn services(&self) -> Vec<Service> {
        let state = self.state.lock().unwrap();
        state
            .rest
            .services
            .iter()
            .map(|s| Service {
                id: s.id.clone(),
                name: s.name.clone(),
            })
            .collect()
    }

    /// Adds an integration to a service as `POST /services/{id}/integrations` does (for a
    /// test that starts from one made earlier). Panics for an unknown service or type.
    pub fn add_integration(
        &self,
        service_id: &str,
        integration_type: &str,
        name: &str,
    ) -> Integration {
        assert!(
            INTEGRATION_TYPES.contains(&integration_type),
            "unknown integration type {integration_type}"
        );
        let mut state = self.state.lock().unwrap();
        assert!(
            state.rest.services.iter().any(|s| s.id == service_id),
            "no service {service_id} in the stand-in"
        );
        new_integration(
            &mut state.rest,
            service_id,
            integration_type,
            Some(name),
            None,
        )
    }

    /// The integrations of a service, oldest first.
    pub fn integrations(&self, service_id: &str) -> Vec<Integration> {
        let state = self.state.lock().unwrap();
        state
            .rest
            .integrations
            .iter()
            .filter(|i| i.service_id == service_id)
            .cloned()
            .collect()
    }
}

/// The service events sent with `routing_key` land on: the service of the Events API v2
/// integration whose key it is, else one derived from the key.
fn service_for_key(rest: &Rest, routing_key: &str) -> String {
    rest.integrations
        .iter()
        .find(|i| i.routes_events_v2() && i.integration_key.as_deref() == Some(routing_key))
        .map_or_else(|| service_id_for(routing_key), |i| i.service_id.clone())
}

fn new_integration(
    rest: &mut Rest,
    service_id: &str,
    integration_type: &str,
    name: Option<&str>,
    email: Option<&str>,
) -> Integration {
    let id = format!("PINT{:03}", rest.integrations.len() + 1);
    let name = match name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) => name.to_owned(),
        None => default_integration_name(integration_type).to_owned(),
    };
    let email_type = integration_type == "generic_email_inbound_integration";
    let integration = Integration {
        integration_key: (!email_type).then(|| hex(&random_bytes(16))),
        integration_email: email_type.then(|| match email {
            Some(email) => email.to_owned(),
            None => format!("{}@standin.pagerduty.com", id.to_lowercase()),
        }),
        id,
        service_id: service_id.to_owned(),
        integration_type: integration_type.to_owned(),
        name,
        created_at: rfc3339(std::time::SystemTime::now(), false),
    };
    rest.integrations.push(integration.clone());
    integration
}

/// The name PagerDuty's web app proposes for a new integration of a type.
fn default_integration_name(integration_type: &str) -> &'static str {
    match integration_type {
        "events_api_v2_inbound_integration" => "Events API V2",
        "generic_events_api_inbound_integration" => "Events API V1",
        "generic_email_inbound_integration" => "Email",
        "aws_cloudwatch_inbound_integration" => "Amazon CloudWatch",
        "event_transformer_api_inbound_integration" => "Custom Event Transformer",
        "cloudkick_inbound_integration" => "Cloudkick",
        "keynote_inbound_integration" => "Keynote",
        "nagios_inbound_integration" => "Nagios",
        "pingdom_inbound_integration" => "Pingdom",
        _ => "SQL Monitor",
    }
}

/// A service reference naming a service the stand-in keeps, else the default summary.
fn service_ref(rest: &Rest, service_id: &str) -> Value {
    match rest.services.iter().find(|s| s.id == service_id) {
        Some(service) => reference(
            &rest.api,
            "service_reference",
            "services",
            service_id,
            &service.name,
        ),
        None => service_reference(&rest.api, service_id),
    }
}

fn integration_urls(rest: &Rest, integration: &Integration) -> (String, String) {
    let path = format!(
        "services/{}/integrations/{}",
        integration.service_id, integration.id
    );
    (
        format!("{}/{path}", rest.api),
        format!("{}/web/{path}", rest.api),
    )
}

/// `<type>_reference`, as a service lists its integrations unless they are included.
fn integration_reference(rest: &Rest, integration: &Integration) -> Value {
    let (self_url, html_url) = integration_urls(rest, integration);
    json!({
        "id": integration.id,
        "type": format!("{}_reference", integration.integration_type),
        "summary": integration.name,
        "self": self_url,
        "html_url": html_url,
    })
}

/// The full Integration (the create and show answers' shape).
fn integration_json(rest: &Rest, integration: &Integration, service: Value) -> Value {
    let (self_url, html_url) = integration_urls(rest, integration);
    let mut shown = json!({
        "id": integration.id,
        "type": integration.integration_type,
        "summary": integration.name,
        "self": self_url,
        "html_url": html_url,
        "name": integration.name,
        "service": service,
        "created_at": integration.created_at,
        "vendor": null,
    });
    if let Some(key) = &integration.integration_key {
        shown["integration_key"] = json!(key);
    }
    if let Some(email) = &integration.integration_email {
        shown["integration_email"] = json!(email);
    }
    shown
}

/// The full Service; its `integrations` are references unless `include_integrations`.
fn service_json(rest: &Rest, service: &ServiceRecord, include_integrations: bool) -> Value {
    let api = &rest.api;
    let integrations: Vec<Value> = rest
        .integrations
        .iter()
        .filter(|i| i.service_id == service.id)
        .map(|i| {
            if include_integrations {
                integration_json(rest, i, service_ref(rest, &service.id))
            } else {
                integration_reference(rest, i)
            }
        })
        .collect();
    let last_incident = rest
        .incidents
        .iter()
        .rev()
        .find(|i| i.service_id == service.id)
        .map(|i| i.created_at.clone());
    json!({
        "id": service.id,
        "type": "service",
        "summary": service.name,
        "self": format!("{api}/services/{}", service.id),
        "html_url": format!("{api}/web/services/{}", service.id),
        "name": service.name,
        "description": null,
        "auto_resolve_timeout": 14400,
        "acknowledgement_timeout": 600,
        "created_at": service.created_at,
        "updated_at": service.created_at,
        "status": "active",
        "last_incident_timestamp": last_incident,
        "alert_creation": "create_alerts_and_incidents",
        "alert_grouping_parameters": {"type": null},
        "integrations": integrations,
        "escalation_policy": escalation_policy(api),
        "teams": [],
        "incident_urgency_rule": {"type": "constant", "urgency": "high"},
        "support_hours": null,
        "scheduled_actions": [],
        "addons": [],
        "response_play": null,
    })
}

/// The decoded query pairs (`include%5B%5D=integrations` is `include[]`).
fn query_pairs(query: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://standin/?{query}"))
        .map(|url| {
            url.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// The `include[]` values of a request, each one of `allowed`. PagerDuty documents the
/// allowed values per endpoint; what it does with another one is not documented: the
/// stand-in refuses it (400), so that a misspelt include fails here rather than quietly
/// giving references where the caller expected full objects.
fn includes(pairs: &[(String, String)], allowed: &[&str]) -> Result<Vec<String>, Vec<String>> {
    let mut found = Vec::new();
    for (key, value) in pairs {
        if key == "include" || key == "include[]" {
            if key == "include" || !allowed.contains(&value.as_str()) {
                return Err(vec![format!(
                    "include[] must be one of {}; got {key}={value}",
                    allowed.join(", ")
                )]);
            }
            found.push(value.clone());
        }
    }
    Ok(found)
}

/// `GET /services`: `query` keeps the services whose name contains it (case-insensitive),
/// sorted by name (`sort_by`), paginated like every list.
fn list_services(state: &Arc<Mutex<State>>, query: &str) -> Answer {
    let pairs = query_pairs(query);
    let included = match includes(&pairs, SERVICE_INCLUDES) {
        Ok(included) => included,
        Err(errors) => return invalid_input(errors),
    };
    let descending = match pairs.iter().find(|(k, _)| k == "sort_by") {
        None => false,
        Some((_, v)) if v == "name" || v == "name:asc" => false,
        Some((_, v)) if v == "name:desc" => true,
        Some((_, v)) => {
            return invalid_input(vec![format!(
                "sort_by must be name, name:asc or name:desc; got {v}"
            )])
        }
    };
    let name_filter = pairs
        .iter()
        .find(|(k, _)| k == "query")
        .map(|(_, v)| v.to_lowercase());
    // The stand-in's services belong to no team.
    let team_filter = pairs.iter().any(|(k, _)| k == "team_ids[]");
    let state = state.lock().unwrap();
    let rest = &state.rest;
    let mut found: Vec<&ServiceRecord> = rest
        .services
        .iter()
        .filter(|s| {
            name_filter
                .as_ref()
                .is_none_or(|q| s.name.to_lowercase().contains(q.as_str()))
        })
        .filter(|_| !team_filter)
        .collect();
    found.sort_by_key(|s| s.name.to_lowercase());
    if descending {
        found.reverse();
    }
    let embed = included.iter().any(|i| i == "integrations");
    let shown = found
        .into_iter()
        .map(|s| service_json(rest, s, embed))
        .collect();
    page("services", shown, query)
}

/// `GET /services/{id}`, with `include[]=integrations` embedding full integrations.
fn show_service(state: &Arc<Mutex<State>>, id: &str, query: &str) -> Answer {
    let included = match includes(&query_pairs(query), SERVICE_INCLUDES) {
        Ok(included) => included,
        Err(errors) => return invalid_input(errors),
    };
    let state = state.lock().unwrap();
    let rest = &state.rest;
    match rest.services.iter().find(|s| s.id == id) {
        Some(service) => {
            let embed = included.iter().any(|i| i == "integrations");
            respond(200, json!({"service": service_json(rest, service, embed)}))
        }
        None => not_found(),
    }
}

/// `POST /services/{id}/integrations`. An unknown service is 404 (the reference lists no
/// 404 for this operation, only 400/401/403/429: a client should take any 4xx as failed);
/// a wrong body is 400 Invalid Input Provided.
fn create_integration_request(state: &Arc<Mutex<State>>, service_id: &str, body: &[u8]) -> Answer {
    let mut state = state.lock().unwrap();
    if !state.rest.services.iter().any(|s| s.id == service_id) {
        return not_found();
    }
    let (integration_type, name, email) = match validate_integration(body, service_id) {
        Ok(valid) => valid,
        Err(errors) => return invalid_input(errors),
    };
    let rest = &mut state.rest;
    let integration = new_integration(
        rest,
        service_id,
        &integration_type,
        name.as_deref(),
        email.as_deref(),
    );
    let service = service_ref(rest, service_id);
    respond(
        201,
        json!({"integration": integration_json(rest, &integration, service)}),
    )
}

/// `GET /services/{id}/integrations/{integration_id}`; `include[]=services` shows the full
/// service in `service`.
fn show_integration(
    state: &Arc<Mutex<State>>,
    service_id: &str,
    integration_id: &str,
    query: &str,
) -> Answer {
    let included = match includes(&query_pairs(query), INTEGRATION_INCLUDES) {
        Ok(included) => included,
        Err(errors) => return invalid_input(errors),
    };
    let state = state.lock().unwrap();
    let rest = &state.rest;
    let Some(service) = rest.services.iter().find(|s| s.id == service_id) else {
        return not_found();
    };
    match rest
        .integrations
        .iter()
        .find(|i| i.id == integration_id && i.service_id == service_id)
    {
        Some(integration) => {
            let shown_service = if included.iter().any(|i| i == "services") {
                service_json(rest, service, false)
            } else {
                service_ref(rest, service_id)
            };
            respond(
                200,
                json!({"integration": integration_json(rest, integration, shown_service)}),
            )
        }
        None => not_found(),
    }
}

/// PagerDuty's checks of a `POST /services/{id}/integrations` body: `integration` an
/// object; its `type` one of `INTEGRATION_TYPES` (required here: the reference lets a
/// `vendor` stand for it, which the stand-in does not model); `name` a string if given;
/// `service`, if given, a `service_reference` to this service; `vendor`, if given, a
/// `vendor_reference`. Returns the type, the name and the email of an email integration.
fn validate_integration(
    body: &[u8],
    service_id: &str,
) -> Result<(String, Option<String>, Option<String>), Vec<String>> {
    let root: Value =
        serde_json::from_slice(body).map_err(|e| vec![format!("Invalid JSON: {e}")])?;
    let Some(wrapped) = root.get("integration").filter(|v| v.is_object()) else {
        return Err(vec!["integration must be an object".into()]);
    };
    let mut errors = Vec::new();
    let integration_type = match &wrapped["type"] {
        Value::String(t) if INTEGRATION_TYPES.contains(&t.as_str()) => t.clone(),
        Value::Null => {
            errors.push("Integration type is required".into());
            String::new()
        }
        other => {
            errors.push(format!(
                "type must be one of {}; got {other}",
                INTEGRATION_TYPES.join(", ")
            ));
            String::new()
        }
    };
    let name = match &wrapped["name"] {
        Value::Null => None,
        Value::String(name) => Some(name.clone()),
        _ => {
            errors.push("name must be a string".into());
            None
        }
    };
    match &wrapped["service"] {
        Value::Null => {}
        Value::Object(service) => {
            let type_ok = matches!(
                service.get("type").and_then(Value::as_str),
                Some("service_reference" | "service")
            );
            match service.get("id").and_then(Value::as_str) {
                Some(id) if id == service_id && type_ok => {}
                Some(id) if id != service_id => errors.push(format!(
                    "service.id {id} is not the service {service_id} of the path"
                )),
                _ => errors.push("service must be a service_reference with an id".into()),
            }
        }
        _ => errors.push("service must be a service_reference object".into()),
    }
    match &wrapped["vendor"] {
        Value::Null => {}
        Value::Object(vendor)
            if vendor.get("type").and_then(Value::as_str) == Some("vendor_reference")
                && vendor.get("id").and_then(Value::as_str).is_some() => {}
        _ => errors.push("vendor must be a vendor_reference with an id".into()),
    }
    let email = match &wrapped["integration_email"] {
        Value::Null => None,
        Value::String(email) if email.contains('@') => Some(email.clone()),
        _ => {
            errors.push("integration_email must be an email address".into());
            None
        }
    };
    if errors.is_empty() {
        Ok((integration_type, name, email))
    } else {
        Err(errors)
    }
}

/// The control endpoints for tests and the demo (no authentication, not recorded):
/// `GET /_incidents`, `GET /_webhook_posts`.
fn serve_control(state: &Arc<Mutex<State>>, method: &hyper::Method, path: &str) -> Option<Answer> {
    if method != hyper::Method::GET {
        return None;
    }
    let state = state.lock().unwrap();
    let rest = &state.rest;
    match path {
        "/_incidents" => {
            let list: Vec<Value> = rest
                .incidents
                .iter()
                .map(|i| {
                    let mut shown = incident_json(rest, i);
                    shown["dedup_keys"] = json!(incident_view(rest, i).dedup_keys);
                    shown
                })
                .collect();
            Some(respond(200, json!(list)))
        }
        "/_webhook_posts" => {
            let list: Vec<Value> = rest
                .posts
                .iter()
                .map(|p| {
                    json!({
                        "subscription_id": p.subscription_id,
                        "url": p.url,
                        "event_type": p.event_type,
                        "webhook_id": p.webhook_id,
                        "attempt": p.attempt,
                        "status": p.status,
                        "body": p.body,
                        "delivery": p.delivery,
                    })
                })
                .collect();
            Some(respond(200, json!(list)))
        }
        _ => None,
    }
}

/// `POST /_resolve`: `{"incident_id": ...}` or `{"dedup_key": ...}`, `"agent"` (default
/// `"user_reference"`, a person; `null` for none), `"merge"` (default false; with
/// optional `"into": <incident id>`, else a new incident takes the alerts). Answers once
/// every delivery finished: `{"incident": {...}, "posts": [{"url", "status", "body",
/// "attempts", "subscription_id"}]}`.
async fn control_resolve(state: Arc<Mutex<State>>, body: &[u8]) -> Answer {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return respond(400, json!({"error": "the body must be a JSON object"}));
    };
    let agent_type = match request.get("agent") {
        None => Some("user_reference".to_owned()),
        Some(Value::Null) => None,
        Some(Value::String(agent)) => Some(agent.clone()),
        Some(_) => return respond(400, json!({"error": "agent must be a string or null"})),
    };
    let merge = request["merge"].as_bool().unwrap_or(false);
    let into = request["into"].as_str().map(str::to_owned);
    let (incident_id, handles) = {
        let mut guard = state.lock().unwrap();
        let incident_id = match (
            request["incident_id"].as_str(),
            request["dedup_key"].as_str(),
        ) {
            (Some(id), _) => id.to_owned(),
            (None, Some(key)) => match incident_for_key(&guard.rest, key) {
                Some(id) => id,
                None => {
                    return respond(
                        404,
                        json!({"error": format!("no incident holds dedup key {key}")}),
                    )
                }
            },
            (None, None) => return respond(400, json!({"error": "give incident_id or dedup_key"})),
        };
        let merge_into = merge.then_some(into);
        let outbound =
            match resolve_incident(&mut guard, &incident_id, agent_type.as_deref(), merge_into) {
                Ok(outbound) => outbound,
                Err((status, message)) => return respond(status, json!({ "error": message })),
            };
        let handles: Vec<JoinHandle<WebhookPost>> = outbound
            .into_iter()
            .map(|out| spawn_delivery(&state, &mut guard, out))
            .collect();
        (incident_id, handles)
    };
    let mut posts = Vec::new();
    for handle in handles {
        if let Ok(post) = handle.await {
            posts.push(json!({
                "subscription_id": post.subscription_id,
                "url": post.url,
                "status": post.status,
                "body": post.body,
                "attempts": post.attempt,
            }));
        }
    }
    let state = state.lock().unwrap();
    let incident = state
        .rest
        .incidents
        .iter()
        .find(|i| i.id == incident_id)
        .map(|i| incident_json(&state.rest, i))
        .unwrap_or(Value::Null);
    respond(200, json!({"incident": incident, "posts": posts}))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}

/// Unpredictable bytes: the OS-seeded keys of `RandomState`, a counter and the clock,
/// through SHA-256 (no random crate in the tree; good enough for a stand-in's secrets).
fn random_bytes(len: usize) -> Vec<u8> {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut out = Vec::with_capacity(len + 32);
    while out.len() < len {
        let mut seed = Vec::new();
        for _ in 0..2 {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
            hasher.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos(),
            );
            seed.extend_from_slice(&hasher.finish().to_le_bytes());
        }
        out.extend(sha256(&seed));
    }
    out.truncate(len);
    out
}

/// A signing secret like PagerDuty's: 64 characters of base64 (48 random bytes).
fn new_secret() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(random_bytes(48))
}

/// 26 characters of Crockford's base32, as PagerDuty's event ids look.
fn ulid_like(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    sha256(bytes)[..26]
        .iter()
        .map(|b| ALPHABET[usize::from(b % 32)] as char)
        .collect()
}

fn uuid_like() -> String {
    let h = hex(&random_bytes(16));
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// RFC 3339 UTC, with milliseconds when asked.
fn rfc3339(time: std::time::SystemTime, millis: bool) -> String {
    let since = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since.as_secs();
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let rest = seconds % 86_400;
    let clock = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    );
    if millis {
        format!("{clock}.{:03}Z", since.subsec_millis())
    } else {
        format!("{clock}Z")
    }
}

/// Howard Hinnant's days-to-civil.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe as i64 + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
