//! A local stand-in for the Guance OpenAPI that enforces what CONTRACT.md section 6
//! documents for the one call the bridge makes, `GET /api/v1/keyevent/restore`: the
//! `DF-API-KEY` header decides the workspace, every answer is Guance's envelope, and the
//! rate limits (20 requests a minute per key, 200 per workspace) answer HTTP 401 with
//! their own `errorCode`, as Guance does. A wrong request fails a test. It can be scripted
//! to fail the next requests (a status, any status and errorCode, a stall, a dropped
//! connection), and it records the restores it performed.
//!
//! Used by the integration tests and, through `examples/guance-standin.rs`, by the demo.
//!
//! Where Guance documents nothing, the stand-in makes a choice and says so: the answers
//! for an unknown route, a wrong method, a bad parameter and an unknown ref, and which
//! requests the rate limits count.

#![allow(dead_code)]

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const RESTORE_PATH: &str = "/api/v1/keyevent/restore";
pub const REF_PARAMETER: &str = "monitorCheckerEventRef";

/// Guance's documented limits: per API key and per workspace, over a sliding minute.
pub const PER_KEY_LIMIT: usize = 20;
pub const PER_WORKSPACE_LIMIT: usize = 200;
pub const LIMIT_WINDOW: Duration = Duration::from_secs(60);

/// Documented error codes (CONTRACT.md section 6).
pub const INVALID_API_KEY: &str = "ft.InvalidAPIKey";
pub const KEY_LIMITED: &str = "ft.TriggerApiAkCurrentLimiting";
pub const WORKSPACE_LIMITED: &str = "ft.TriggerApiWorkspaceCurrentLimiting";
/// The stand-in's own codes: Guance documents no answer for these cases, so their shape
/// (status and errorCode) is this stand-in's assumption, not Guance's word.
pub const NOT_FOUND: &str = "ft.NotFound";
pub const METHOD_NOT_ALLOWED: &str = "ft.MethodNotAllowed";
pub const PARAM_ERROR: &str = "ft.ParamError";
pub const KEYEVENT_NOT_FOUND: &str = "ft.KeyeventNotFound";
pub const INTERNAL_ERROR: &str = "ft.InternalError";

/// What the stand-in does with one request instead of serving it.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Served normally: lets a script fail a later request.
    Pass,
    /// This status in Guance's envelope, `errorCode` `ft.InternalError`.
    Status(u16),
    /// Any status with any `errorCode`, in Guance's envelope.
    Error(u16, &'static str),
    /// Accepts the request, answers nothing for this long, then drops the connection.
    Stall(Duration),
    /// Closes the connection without an answer.
    Drop,
}

/// One restore the stand-in performed (answered success).
#[derive(Debug, Clone, PartialEq)]
pub struct Restore {
    pub workspace_uuid: String,
    pub monitor_checker_event_ref: String,
    /// The ref had been restored before in this workspace: answered success again
    /// (idempotent) but nothing new happened.
    pub repeat: bool,
    pub at: Instant,
}

/// One request as the stand-in saw it and answered it (never its key).
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query as sent.
    pub target: String,
    /// The workspace its key belongs to, when the key is known.
    pub workspace_uuid: Option<String>,
    /// The status answered; `None` for a stall or a dropped connection.
    pub status: Option<u16>,
    /// The `errorCode` answered (`""` on success or without an answer).
    pub error_code: String,
    pub at: Instant,
}

struct Workspace {
    /// `None` until `add_event` registers a ref: then only registered refs are restorable.
    known: Option<HashSet<String>>,
    restored: HashSet<String>,
    recent: VecDeque<Instant>,
}

struct State {
    started: Instant,
    script: VecDeque<Fault>,
    /// API key → workspace uuid.
    keys: HashMap<String, String>,
    workspaces: HashMap<String, Workspace>,
    per_key: usize,
    per_workspace: usize,
    window: Duration,
    recent_by_key: HashMap<String, VecDeque<Instant>>,
    restores: Vec<Restore>,
    refused: Vec<(u16, String)>,
    seen: Vec<Seen>,
    echo: bool,
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
        let listener = TcpListener::bind(addr)
            .await
            .expect("bind the Guance stand-in");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            started: Instant::now(),
            script: VecDeque::new(),
            keys: HashMap::new(),
            workspaces: HashMap::new(),
            per_key: PER_KEY_LIMIT,
            per_workspace: PER_WORKSPACE_LIMIT,
            window: LIMIT_WINDOW,
            recent_by_key: HashMap::new(),
            restores: Vec::new(),
            refused: Vec::new(),
            seen: Vec::new(),
            echo: false,
        }));
        let shared = Arc::clone(&state);
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
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

    /// The OpenAPI base URL, as a secret's `openapi_url` holds it: `http://addr`.
    pub fn openapi_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Makes `api_key` a key of the workspace `uuid` (created on first use). A workspace
    /// may have several keys; a key belongs to one workspace.
    pub fn add_workspace(&self, uuid: &str, api_key: &str) {
        let mut state = self.state.lock().unwrap();
        if let Some(owner) = state.keys.get(api_key) {
            assert_eq!(owner, uuid, "an API key belongs to one workspace");
        }
        state.keys.insert(api_key.to_owned(), uuid.to_owned());
        state
            .workspaces
            .entry(uuid.to_owned())
            .or_insert_with(|| Workspace {
                known: None,
                restored: HashSet::new(),
                recent: VecDeque::new(),
            });
    }

    /// Registers an event the workspace has: once a workspace has one, a ref it does not
    /// have is refused (400 `ft.KeyeventNotFound`, the stand-in's assumption).
    pub fn add_event(&self, workspace_uuid: &str, monitor_checker_event_ref: &str) {
        let mut state = self.state.lock().unwrap();
        let workspace = state
            .workspaces
            .get_mut(workspace_uuid)
            .expect("add_workspace before add_event");
        workspace
            .known
            .get_or_insert_with(HashSet::new)
            .insert(monitor_checker_event_ref.to_owned());
    }

    /// Replaces Guance's limits (20 per key, 200 per workspace, per 60 s) for a test.
    pub fn set_limits(&self, per_key: usize, per_workspace: usize, window: Duration) {
        let mut state = self.state.lock().unwrap();
        state.per_key = per_key;
        state.per_workspace = per_workspace;
        state.window = window;
    }

    /// The next requests to the API meet these faults, in order, before normal service
    /// resumes. Faults come before the key check: they play Guance's own trouble.
    pub fn script(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().unwrap().script.extend(faults);
    }

    /// Prints every restore to stdout as it happens (for the demo; never a key).
    pub fn echo(&self) {
        self.state.lock().unwrap().echo = true;
    }

    /// Every restore answered success, repeats included, in order.
    pub fn restores(&self) -> Vec<Restore> {
        self.state.lock().unwrap().restores.clone()
    }

    /// How many requests reached the API (control endpoints not counted).
    pub fn requests(&self) -> u64 {
        self.state.lock().unwrap().seen.len() as u64
    }

    /// Every request to the API with what it was answered.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// `(status, errorCode)` of every error answer, scripted ones included, in order.
    pub fn refused(&self) -> Vec<(u16, String)> {
        self.state.lock().unwrap().refused.clone()
    }
}

type Answer = Result<Response<Full<Bytes>>, std::io::Error>;

/// A random 32-hex-digit trace id, as Guance gives one per answer.
fn trace_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let random = || {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(Instant::now().elapsed().as_nanos());
        hasher.finish()
    };
    format!("{:016x}{:016x}", random(), random())
}

/// Guance's envelope: `code` mirrors the HTTP status.
fn envelope(status: u16, content: Value, error_code: &str, message: &str) -> Value {
    json!({
        "code": status,
        "content": content,
        "errorCode": error_code,
        "message": message,
        "success": (200..300).contains(&status),
        "traceId": trace_id(),
    })
}

fn respond(status: u16, body: Value) -> Answer {
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap())
}

/// An error answer, recorded in `refused` and `seen`.
fn refuse(
    state: &Mutex<State>,
    seen: Seen,
    status: u16,
    error_code: &str,
    message: &str,
) -> Answer {
    let mut state = state.lock().unwrap();
    state.refused.push((status, error_code.to_owned()));
    state.seen.push(Seen {
        status: Some(status),
        error_code: error_code.to_owned(),
        ..seen
    });
    respond(status, envelope(status, Value::Null, error_code, message))
}

async fn serve(state: Arc<Mutex<State>>, request: Request<Incoming>) -> Answer {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    if method == hyper::Method::GET && path == "/_restores" {
        let state = state.lock().unwrap();
        let listed: Vec<Value> = state
            .restores
            .iter()
            .map(|r| restore_json(r, state.started))
            .collect();
        return respond(200, json!(listed));
    }
    let now = Instant::now();
    let mut seen = Seen {
        method: method.to_string(),
        target: request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| path.clone()),
        workspace_uuid: None,
        status: None,
        error_code: String::new(),
        at: now,
    };
    if path != RESTORE_PATH {
        return refuse(&state, seen, 404, NOT_FOUND, "route not found");
    }
    if method != hyper::Method::GET {
        return refuse(&state, seen, 405, METHOD_NOT_ALLOWED, "method not allowed");
    }
    let fault = state.lock().unwrap().script.pop_front();
    match fault {
        Some(Fault::Status(status)) => {
            return refuse(&state, seen, status, INTERNAL_ERROR, "scripted failure")
        }
        Some(Fault::Error(status, code)) => {
            return refuse(&state, seen, status, code, "scripted failure")
        }
        Some(Fault::Stall(duration)) => {
            state.lock().unwrap().seen.push(seen);
            tokio::time::sleep(duration).await;
            return Err(std::io::Error::other("stalled"));
        }
        Some(Fault::Drop) => {
            state.lock().unwrap().seen.push(seen);
            return Err(std::io::Error::other("dropped"));
        }
        Some(Fault::Pass) | None => {}
    }

    // The key decides the workspace; there is no workspace parameter.
    let key = request
        .headers()
        .get("df-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut guard = state.lock().unwrap();
    let Some(workspace_uuid) = guard.keys.get(&key).cloned() else {
        drop(guard);
        let message = if key.is_empty() {
            "DF-API-KEY header is missing"
        } else {
            "invalid API key"
        };
        return refuse(&state, seen, 403, INVALID_API_KEY, message);
    };
    seen.workspace_uuid = Some(workspace_uuid.clone());

    // Sliding windows: only requests the limits let through are counted (an assumption:
    // Guance does not say whether refused requests count), the key's limit first.
    let (per_key, per_workspace, window) = (guard.per_key, guard.per_workspace, guard.window);
    let expire = |recent: &mut VecDeque<Instant>| {
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            recent.pop_front();
        }
        recent.len()
    };
    let by_key = expire(guard.recent_by_key.entry(key.clone()).or_default());
    let by_workspace = expire(&mut guard.workspaces.get_mut(&workspace_uuid).unwrap().recent);
    if by_key >= per_key {
        drop(guard);
        return refuse(
            &state,
            seen,
            401,
            KEY_LIMITED,
            "API key rate limit exceeded",
        );
    }
    if by_workspace >= per_workspace {
        drop(guard);
        return refuse(
            &state,
            seen,
            401,
            WORKSPACE_LIMITED,
            "workspace rate limit exceeded",
        );
    }
    guard.recent_by_key.get_mut(&key).unwrap().push_back(now);
    let workspace = guard.workspaces.get_mut(&workspace_uuid).unwrap();
    workspace.recent.push_back(now);

    let reference = match event_ref(request.uri().query()) {
        Ok(reference) => reference,
        Err(message) => {
            drop(guard);
            return refuse(&state, seen, 400, PARAM_ERROR, &message);
        }
    };
    // Guance does not document the answer for a ref it does not have: 400 with
    // `ft.KeyeventNotFound` is this stand-in's assumption.
    if workspace
        .known
        .as_ref()
        .is_some_and(|known| !known.contains(&reference))
    {
        drop(guard);
        return refuse(
            &state,
            seen,
            400,
            KEYEVENT_NOT_FOUND,
            "no event with this monitorCheckerEventRef",
        );
    }
    // Nor for one already recovered: answered success again (idempotent), recorded as
    // a repeat.
    let repeat = !workspace.restored.insert(reference.clone());
    let restore = Restore {
        workspace_uuid,
        monitor_checker_event_ref: reference,
        repeat,
        at: now,
    };
    if guard.echo {
        println!("{}", restore_json(&restore, guard.started));
    }
    guard.restores.push(restore);
    guard.seen.push(Seen {
        status: Some(200),
        ..seen
    });
    respond(200, envelope(200, json!(true), "", ""))
}

fn restore_json(restore: &Restore, started: Instant) -> Value {
    json!({
        "workspace_uuid": restore.workspace_uuid,
        "monitor_checker_event_ref": restore.monitor_checker_event_ref,
        "repeat": restore.repeat,
        "after_ms": restore.at.duration_since(started).as_millis() as u64,
    })
}

/// The one `monitorCheckerEventRef` of a query, decoded as a form (`%XX`, `+` a space).
/// Missing, empty, repeated or badly encoded: an error message (the stand-in answers 400
/// `ft.ParamError`, its assumption).
fn event_ref(query: Option<&str>) -> Result<String, String> {
    let mut found = Vec::new();
    for pair in query.unwrap_or_default().split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if decode(name).as_deref() == Some(REF_PARAMETER) {
            found.push(decode(value).ok_or_else(|| format!("{REF_PARAMETER} is badly encoded"))?);
        }
    }
    match found.as_slice() {
        [] => Err(format!("{REF_PARAMETER} is required")),
        [one] if one.trim().is_empty() => Err(format!("{REF_PARAMETER} is empty")),
        [one] => Ok(one.clone()),
        _ => Err(format!("{REF_PARAMETER} is given more than once")),
    }
}

fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}
