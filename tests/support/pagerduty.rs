//! A local stand-in for PagerDuty's Events API v2 that enforces its contract
//! (CONTRACT.md section 2): a wrong event gets the 400 PagerDuty would give. It can be
//! scripted to fail the next requests (429, 500, 400, a stall, a dropped connection) or
//! to fail a share of all requests at random, and it records what it accepted.
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
            match action.as_str() {
                "trigger" => {
                    *state.open_alerts.entry(alert).or_default() += 1;
                }
                "resolve" => {
                    resolved_open_alert = state.open_alerts.remove(&alert).is_some();
                }
                _ => {}
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
