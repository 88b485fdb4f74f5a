//! A local stand-in for the Guance OpenAPI that enforces what Guance documents for the
//! calls this project makes: the `DF-API-KEY` header decides the workspace, every answer
//! is Guance's envelope, and the rate limits (20 requests a minute per key, 200 per
//! workspace) answer HTTP 401 with their own `errorCode`, as Guance does (CONTRACT.md
//! section 6). A wrong request fails a test. It can be scripted to fail the next requests
//! (a status, any status and errorCode, a stall, a dropped connection), and it records
//! every request and the restores it performed.
//!
//! The calls, each built from the Guance OpenAPI reference page named at its handler:
//! - the bridge's `GET /api/v1/keyevent/restore?monitorCheckerEventRef=` (two-way);
//! - `make setup`'s notification objects (`POST /api/v1/notify_object/create`,
//!   `GET /api/v1/notify_object/list`, `GET /api/v1/notify_object/get`,
//!   `POST /api/v1/notify_object/modify`) and alert policies (`GET
//!   /api/v1/alert_policy/list`, `GET /api/v1/alert_policy/{uuid}/get`, `POST
//!   /api/v1/alert_policy/{uuid}/modify` and `/modify_v2`), each checked against the
//!   documented parameters: required fields, types, allowed values, ranges. Objects and
//!   policies belong to the key's workspace; another workspace's are not found.
//!
//! Used by the integration tests and, through `examples/guance-standin.rs`, by the demo.
//!
//! Where Guance documents nothing, the stand-in makes a choice and says so: the answers
//! for an unknown route, a wrong method, a bad parameter, an unknown ref or object, and
//! what create and modify answer; that a field the page does not list is refused; which
//! requests the rate limits count; how `search` matches and in which order lists come.

#![allow(dead_code)]

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const RESTORE_PATH: &str = "/api/v1/keyevent/restore";
pub const REF_PARAMETER: &str = "monitorCheckerEventRef";
pub const NOTIFY_OBJECT_CREATE_PATH: &str = "/api/v1/notify_object/create";
pub const NOTIFY_OBJECT_LIST_PATH: &str = "/api/v1/notify_object/list";
pub const NOTIFY_OBJECT_GET_PATH: &str = "/api/v1/notify_object/get";
pub const NOTIFY_OBJECT_MODIFY_PATH: &str = "/api/v1/notify_object/modify";
pub const ALERT_POLICY_LIST_PATH: &str = "/api/v1/alert_policy/list";
const ALERT_POLICY_PREFIX: &str = "/api/v1/alert_policy/";

/// `/api/v1/alert_policy/{uuid}/{action}`: `get`, `modify` or `modify_v2`.
pub fn alert_policy_path(uuid: &str, action: &str) -> String {
    format!("{ALERT_POLICY_PREFIX}{uuid}/{action}")
}

/// The notification object types `notify_object/create` allows (its page's "Allowed
/// values", docs.guance.com/en/open-api/notify-object__create/).
pub const NOTIFY_OBJECT_TYPES: &[&str] = &[
    "dingTalkRobot",
    "HTTPRequest",
    "wechatRobot",
    "mailGroup",
    "feishuRobot",
    "sms",
    "vms",
    "simpleHTTPRequest",
    "slackIncomingWebhook",
    "teamsWorkflowWebhook",
    "googleChatWebhook",
    "telegramBot",
];

/// The levels an alert policy's target may name (`alertOpt.alertTarget[].targets[].status`,
/// docs.guance.com/en/open-api/alert-policy/add-v2): there is no `ok`.
pub const ALERT_LEVELS: &[&str] = &["critical", "error", "warning", "nodata", "info"];

/// The list endpoints' `pageSize` range (`$minValue: 1`, `$maxValue: 100`).
pub const MAX_PAGE_SIZE: i64 = 100;
/// `alertOpt.aggInterval`'s range (`$minValue: 0`, `$maxValue: 1800`).
pub const MAX_AGG_INTERVAL: i64 = 1800;
/// The stand-in's own cap on a request body (Guance documents none).
pub const MAX_BODY_BYTES: usize = 1 << 20;

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
/// A notification object or alert policy this workspace does not have (404).
pub const OBJECT_NOT_FOUND: &str = "ft.ObjectNotFound";

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
    /// The JSON body of a POST that got as far as its body being read (past the key and
    /// the limits); `None` otherwise, or when it was not JSON.
    pub body: Option<Value>,
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
    /// API key → the id Guance names it by as a `creator`/`updator` (`wsak_…`).
    key_ids: HashMap<String, String>,
    workspaces: HashMap<String, Workspace>,
    per_key: usize,
    per_workspace: usize,
    window: Duration,
    recent_by_key: HashMap<String, VecDeque<Instant>>,
    restores: Vec<Restore>,
    refused: Vec<(u16, String)>,
    seen: Vec<Seen>,
    /// Every workspace's notification objects, oldest first (`workspaceUUID` in each).
    notify_objects: Vec<Value>,
    /// Every workspace's alert policies, oldest first (`workspaceUUID` in each).
    alert_policies: Vec<Value>,
    next_id: u64,
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
            key_ids: HashMap::new(),
            workspaces: HashMap::new(),
            per_key: PER_KEY_LIMIT,
            per_workspace: PER_WORKSPACE_LIMIT,
            window: LIMIT_WINDOW,
            recent_by_key: HashMap::new(),
            restores: Vec::new(),
            refused: Vec::new(),
            seen: Vec::new(),
            notify_objects: Vec::new(),
            alert_policies: Vec::new(),
            next_id: 1,
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
            .key_ids
            .entry(api_key.to_owned())
            .or_insert_with(|| format!("wsak_{}", random_hex()));
        ensure_workspace(&mut state, uuid);
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

    /// Seeds a notification object in the workspace, as one made in Guance's console
    /// would be (checked as `notify_object/create` checks it); returns its `notify_…`
    /// uuid. Names need not be unique: Guance documents no such rule.
    pub fn add_notify_object(
        &self,
        workspace_uuid: &str,
        kind: &str,
        name: &str,
        opt_set: Value,
    ) -> String {
        let mut state = self.state.lock().unwrap();
        ensure_workspace(&mut state, workspace_uuid);
        let body = json!({"type": kind, "name": name, "optSet": opt_set});
        let object = create_notify_object(&mut state, workspace_uuid, "console", &body)
            .unwrap_or_else(|r| panic!("not a notification object Guance would take: {r:?}"));
        object["uuid"].as_str().unwrap().to_owned()
    }

    /// Seeds an alert policy named `name` in the workspace, with no targets yet (alertOpt
    /// `{"alertTarget": [], "silentTimeout": 21600, "aggInterval": 0, "aggFields": []}`,
    /// ruleTimezone `Asia/Shanghai`); returns its `altpl_…` uuid.
    pub fn add_alert_policy(&self, workspace_uuid: &str, name: &str) -> String {
        self.add_alert_policy_with(
            workspace_uuid,
            name,
            json!({"alertTarget": [], "silentTimeout": 21600, "aggInterval": 0, "aggFields": []}),
        )
    }

    /// Seeds an alert policy with this `alertOpt` (checked as `modify_v2` checks one: a
    /// `notify_…` target must be one of the workspace's objects); returns its uuid.
    pub fn add_alert_policy_with(
        &self,
        workspace_uuid: &str,
        name: &str,
        alert_opt: Value,
    ) -> String {
        let mut state = self.state.lock().unwrap();
        ensure_workspace(&mut state, workspace_uuid);
        let notify = notify_uuids(&state, workspace_uuid);
        if let Err(problem) = check_alert_opt(&alert_opt, "alertOpt", &notify, false) {
            panic!("not an alertOpt Guance would take: {problem}");
        }
        let uuid = format!("altpl_{}", random_hex());
        let id = take_id(&mut state);
        let now = now_seconds().floor();
        state.alert_policies.push(json!({
            "uuid": uuid,
            "workspaceUUID": workspace_uuid,
            "id": id,
            "name": name,
            "desc": "",
            "ruleTimezone": "Asia/Shanghai",
            "alertOpt": alert_opt,
            "openPermissionSet": false,
            "permissionSet": [],
            "checkerUUIDs": [],
            "createAt": now as i64,
            "creator": "console",
            "deleteAt": -1,
            "score": 0,
            "status": 0,
            "updateAt": now as i64,
            "updator": "console",
        }));
        uuid
    }

    /// The workspace's notification objects as Guance holds them, oldest first.
    pub fn notify_objects(&self, workspace_uuid: &str) -> Vec<Value> {
        let state = self.state.lock().unwrap();
        in_workspace(&state.notify_objects, workspace_uuid)
            .cloned()
            .collect()
    }

    /// The workspace's alert policies, oldest first.
    pub fn alert_policies(&self, workspace_uuid: &str) -> Vec<Value> {
        let state = self.state.lock().unwrap();
        in_workspace(&state.alert_policies, workspace_uuid)
            .cloned()
            .collect()
    }

    /// The alert policy with this uuid as it stands (`Value::Null` if there is none).
    pub fn alert_policy(&self, uuid: &str) -> Value {
        let state = self.state.lock().unwrap();
        state
            .alert_policies
            .iter()
            .find(|p| p["uuid"] == uuid)
            .cloned()
            .unwrap_or(Value::Null)
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

    /// Prints every restore, and every notification object or alert policy written, to
    /// stdout as it happens (for the demo; never a key, never a webhook URL's query).
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

fn ensure_workspace(state: &mut State, uuid: &str) {
    state
        .workspaces
        .entry(uuid.to_owned())
        .or_insert_with(|| Workspace {
            known: None,
            restored: HashSet::new(),
            recent: VecDeque::new(),
        });
}

fn in_workspace<'a>(
    items: &'a [Value],
    workspace_uuid: &'a str,
) -> impl Iterator<Item = &'a Value> {
    items
        .iter()
        .filter(move |item| item["workspaceUUID"] == workspace_uuid)
}

fn notify_uuids(state: &State, workspace_uuid: &str) -> HashSet<String> {
    in_workspace(&state.notify_objects, workspace_uuid)
        .filter_map(|o| o["uuid"].as_str().map(str::to_owned))
        .collect()
}

fn take_id(state: &mut State) -> u64 {
    state.next_id += 1;
    state.next_id - 1
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

type Answer = Result<Response<Full<Bytes>>, std::io::Error>;

/// 32 random hex digits: a trace id, or the tail of a `notify_`/`altpl_` uuid.
fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let random = || {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(Instant::now().elapsed().as_nanos());
        hasher.finish()
    };
    format!("{:016x}{:016x}", random(), random())
}

/// A random 32-hex-digit trace id, as Guance gives one per answer.
fn trace_id() -> String {
    random_hex()
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

/// Why a request was refused: status, `errorCode`, message.
#[derive(Debug)]
struct Refusal(u16, &'static str, String);

fn param(message: impl Into<String>) -> Refusal {
    Refusal(400, PARAM_ERROR, message.into())
}

fn not_found(what: &str, uuid: &str) -> Refusal {
    Refusal(
        404,
        OBJECT_NOT_FOUND,
        format!("no {what} {uuid} in this workspace"),
    )
}

/// A success: the envelope's `content`, and a list's `pageInfo` (a sibling of `content`
/// in Guance's list answers).
struct Served {
    content: Value,
    page_info: Option<Value>,
}

impl From<Value> for Served {
    fn from(content: Value) -> Self {
        Served {
            content,
            page_info: None,
        }
    }
}

/// The API's routes. Paths from each page's title line; methods as documented (Guance
/// uses only GET and POST).
#[derive(Debug, Clone, PartialEq)]
enum Route {
    Restore,
    NotifyCreate,
    NotifyList,
    NotifyGet,
    NotifyModify,
    PolicyList,
    PolicyGet(String),
    /// The uuid, and whether it is `modify_v2`.
    PolicyModify(String, bool),
}

impl Route {
    fn of(path: &str) -> Option<Route> {
        Some(match path {
            RESTORE_PATH => Route::Restore,
            NOTIFY_OBJECT_CREATE_PATH => Route::NotifyCreate,
            NOTIFY_OBJECT_LIST_PATH => Route::NotifyList,
            NOTIFY_OBJECT_GET_PATH => Route::NotifyGet,
            NOTIFY_OBJECT_MODIFY_PATH => Route::NotifyModify,
            ALERT_POLICY_LIST_PATH => Route::PolicyList,
            _ => {
                let rest = path.strip_prefix(ALERT_POLICY_PREFIX)?;
                let (uuid, action) = rest.split_once('/')?;
                if uuid.is_empty() || action.contains('/') {
                    return None;
                }
                match action {
                    "get" => Route::PolicyGet(uuid.to_owned()),
                    "modify" => Route::PolicyModify(uuid.to_owned(), false),
                    "modify_v2" => Route::PolicyModify(uuid.to_owned(), true),
                    _ => return None,
                }
            }
        })
    }

    fn method(&self) -> Method {
        match self {
            Route::NotifyCreate | Route::NotifyModify | Route::PolicyModify(..) => Method::POST,
            _ => Method::GET,
        }
    }
}

async fn serve(state: Arc<Mutex<State>>, request: Request<Incoming>) -> Answer {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    if method == Method::GET {
        if let Some(answer) = serve_control(&state, &path) {
            return answer;
        }
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
        body: None,
        status: None,
        error_code: String::new(),
        at: now,
    };
    let Some(route) = Route::of(&path) else {
        return refuse(&state, seen, 404, NOT_FOUND, "route not found");
    };
    if method != route.method() {
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
    {
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

        // Sliding windows over every API call: only requests the limits let through are
        // counted (an assumption: Guance does not say whether refused requests count),
        // the key's limit first.
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
    }
    let workspace_uuid = seen.workspace_uuid.clone().unwrap();

    // A POST's body: JSON (the overview page's common header `Content-Type:
    // application/json`); the 400 for anything else is the stand-in's assumption.
    let query = request.uri().query().map(str::to_owned);
    let body = if route.method() == Method::POST {
        let json_type = request
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        let bytes = match Limited::new(request.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return refuse(&state, seen, 400, PARAM_ERROR, "the body is over 1 MiB"),
        };
        let parsed = serde_json::from_slice::<Value>(&bytes).ok();
        seen.body = parsed.clone();
        if !json_type {
            return refuse(
                &state,
                seen,
                400,
                PARAM_ERROR,
                "Content-Type must be application/json",
            );
        }
        match parsed {
            Some(value) => Some(value),
            None => return refuse(&state, seen, 400, PARAM_ERROR, "the body is not JSON"),
        }
    } else {
        None
    };

    let mut guard = state.lock().unwrap();
    let key_id = guard.key_ids.get(&key).cloned().unwrap_or_default();
    let served = match &route {
        Route::Restore => restore(&mut guard, &workspace_uuid, query.as_deref(), now),
        Route::NotifyCreate => {
            create_notify_object(&mut guard, &workspace_uuid, &key_id, body.as_ref().unwrap())
                .map(Served::from)
        }
        Route::NotifyList => notify_list(&guard, &workspace_uuid, query.as_deref()),
        Route::NotifyGet => notify_get(&guard, &workspace_uuid, query.as_deref()),
        Route::NotifyModify => {
            notify_modify(&mut guard, &workspace_uuid, &key_id, body.as_ref().unwrap())
        }
        Route::PolicyList => policy_list(&guard, &workspace_uuid, query.as_deref()),
        Route::PolicyGet(uuid) => policy_get(&guard, &workspace_uuid, uuid),
        Route::PolicyModify(uuid, v2) => policy_modify(
            &mut guard,
            &workspace_uuid,
            &key_id,
            uuid,
            *v2,
            body.as_ref().unwrap(),
        ),
    };
    match served {
        Ok(served) => {
            guard.seen.push(Seen {
                status: Some(200),
                ..seen
            });
            let mut answer = envelope(200, served.content, "", "");
            if let Some(page_info) = served.page_info {
                answer["pageInfo"] = page_info;
            }
            respond(200, answer)
        }
        Err(Refusal(status, code, message)) => {
            drop(guard);
            refuse(&state, seen, status, code, &message)
        }
    }
}

/// The demo's views of what the stand-in holds (not the API: not counted, no key).
fn serve_control(state: &Mutex<State>, path: &str) -> Option<Answer> {
    let state = state.lock().unwrap();
    let listed: Vec<Value> = match path {
        "/_restores" => state
            .restores
            .iter()
            .map(|r| restore_json(r, state.started))
            .collect(),
        "/_notify_objects" => state.notify_objects.iter().map(redacted).collect(),
        "/_alert_policies" => state.alert_policies.clone(),
        _ => return None,
    };
    Some(respond(200, json!(listed)))
}

/// A notification object with any query string of its URL hidden: the bridge's webhook
/// URL carries its token there.
fn redacted(object: &Value) -> Value {
    let mut object = object.clone();
    for key in ["url", "webhook"] {
        if let Some(url) = object["optSet"][key].as_str() {
            if let Some((base, _)) = url.split_once('?') {
                object["optSet"][key] = json!(format!("{base}?<redacted>"));
            }
        }
    }
    if object["optSet"].get("secret").is_some() {
        object["optSet"]["secret"] = json!("<redacted>");
    }
    object
}

/// `GET /api/v1/keyevent/restore` (CONTRACT.md section 6).
fn restore(
    state: &mut State,
    workspace_uuid: &str,
    query: Option<&str>,
    now: Instant,
) -> Result<Served, Refusal> {
    let reference = event_ref(query).map_err(param)?;
    let workspace = state.workspaces.get_mut(workspace_uuid).unwrap();
    // Guance does not document the answer for a ref it does not have: 400 with
    // `ft.KeyeventNotFound` is this stand-in's assumption.
    if workspace
        .known
        .as_ref()
        .is_some_and(|known| !known.contains(&reference))
    {
        return Err(Refusal(
            400,
            KEYEVENT_NOT_FOUND,
            "no event with this monitorCheckerEventRef".into(),
        ));
    }
    // Nor for one already recovered: answered success again (idempotent), recorded as
    // a repeat.
    let repeat = !workspace.restored.insert(reference.clone());
    let restore = Restore {
        workspace_uuid: workspace_uuid.to_owned(),
        monitor_checker_event_ref: reference,
        repeat,
        at: now,
    };
    if state.echo {
        println!("{}", restore_json(&restore, state.started));
    }
    state.restores.push(restore);
    Ok(json!(true).into())
}

fn restore_json(restore: &Restore, started: Instant) -> Value {
    json!({
        "workspace_uuid": restore.workspace_uuid,
        "monitor_checker_event_ref": restore.monitor_checker_event_ref,
        "repeat": restore.repeat,
        "after_ms": restore.at.duration_since(started).as_millis() as u64,
    })
}

// ---------------------------------------------------------------------------------------
// Notification objects.

/// `POST /api/v1/notify_object/create`, from docs.guance.com/en/open-api/notify-object__create/
/// (and GuanceCloud/guance-docs docs/en/open-api/notify-object/create.md): `type` (Y, one
/// of `NOTIFY_OBJECT_TYPES`), `name` (Y, not null), `optSet` (json; per type its keys,
/// for `HTTPRequest` `url` required), `openPermissionSet` (boolean), `permissionSet`
/// (array). The page shows no answer body; the stand-in answers `content` with the object
/// made (`uuid` `notify_<32 hex>`, `workspaceUUID`, `name`, `type`, `optSet`, …), which is
/// what Guance's own Terraform provider reads back (GuanceCloud/terraform-provider-guance
/// internal/api/notify_object.go) — a tool should still find the object with
/// `notify_object/list` rather than count on it.
fn create_notify_object(
    state: &mut State,
    workspace_uuid: &str,
    creator: &str,
    body: &Value,
) -> Result<Value, Refusal> {
    let map = object(body, "the body").map_err(param)?;
    only(
        map,
        &[
            "type",
            "name",
            "optSet",
            "openPermissionSet",
            "permissionSet",
        ],
        "",
    )
    .map_err(param)?;
    let kind = string(map, "type", "", true).map_err(param)?.unwrap();
    if !NOTIFY_OBJECT_TYPES.contains(&kind) {
        return Err(param(format!(
            "type {kind:?} is not one of {NOTIFY_OBJECT_TYPES:?}"
        )));
    }
    let name = string(map, "name", "", true).map_err(param)?.unwrap();
    if name.trim().is_empty() {
        return Err(param("name is empty"));
    }
    check_opt_set(kind, map.get("optSet")).map_err(param)?;
    boolean(map, "openPermissionSet", "").map_err(param)?;
    strings(map, "permissionSet", "", None).map_err(param)?;

    let now = now_seconds().floor() as i64;
    let id = take_id(state);
    let object = json!({
        "uuid": format!("notify_{}", random_hex()),
        "workspaceUUID": workspace_uuid,
        "id": id,
        "name": name,
        "type": kind,
        "optSet": map.get("optSet").cloned().unwrap_or_else(|| json!({})),
        "openPermissionSet": map.get("openPermissionSet").cloned().unwrap_or(json!(false)),
        "permissionSet": map.get("permissionSet").cloned().unwrap_or_else(|| json!([])),
        "createAt": now,
        "creator": creator,
        "deleteAt": -1,
        "status": 0,
        "updateAt": now,
        "updator": creator,
    });
    if state.echo {
        println!(
            "{}",
            json!({"notify_object": "created", "object": redacted(&object)})
        );
    }
    state.notify_objects.push(object.clone());
    Ok(object)
}

/// `optSet` for a type, from the create page's per-type tables ("Parameter Supplementary
/// Description"). Keys a table does not list are refused for the types whose table the
/// stand-in knows whole.
fn check_opt_set(kind: &str, opt_set: Option<&Value>) -> Result<(), String> {
    let required: &[(&str, bool)] = match kind {
        // (key, is a list of strings)
        "dingTalkRobot" | "feishuRobot" => &[("webhook", false), ("secret", false)],
        "HTTPRequest" | "simpleHTTPRequest" => &[("url", false)],
        "wechatRobot" | "slackIncomingWebhook" | "teamsWorkflowWebhook" => &[("webhook", false)],
        "mailGroup" | "sms" => &[("to", true)],
        _ => &[],
    };
    let empty = Map::new();
    let map = match opt_set {
        None => &empty,
        Some(value) => object(value, "optSet")?,
    };
    for (key, list) in required {
        if *list {
            strings(map, key, "optSet", None)?;
            if map.get(*key).is_none() {
                return Err(format!("optSet.{key} is required for type {kind}"));
            }
        } else {
            match string(map, key, "optSet", true) {
                Ok(Some(text)) if text.trim().is_empty() => {
                    return Err(format!("optSet.{key} is empty"))
                }
                Ok(_) => {}
                Err(_) if map.get(*key).is_none() => {
                    return Err(format!("optSet.{key} is required for type {kind}"))
                }
                Err(problem) => return Err(problem),
            }
        }
    }
    if kind == "HTTPRequest" {
        // The page's table for HTTPRequest: `url`, and the optional `headersConfig`.
        only(map, &["url", "headersConfig"], "optSet")?;
        let url = map["url"].as_str().unwrap();
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        if rest.is_none_or(|rest| rest.is_empty() || rest.starts_with('/')) {
            // An assumption: an "HTTP invocation address" is an http(s) URL.
            return Err("optSet.url is not an http(s) URL".into());
        }
        if let Some(headers) = map.get("headersConfig") {
            let headers = object(headers, "optSet.headersConfig")?;
            only(headers, &["isOpen", "items"], "optSet.headersConfig")?;
            boolean(headers, "isOpen", "optSet.headersConfig")?;
            for (i, item) in array(headers, "items", "optSet.headersConfig")?
                .into_iter()
                .flatten()
                .enumerate()
            {
                let at = format!("optSet.headersConfig.items[{i}]");
                let item = object(item, &at)?;
                only(item, &["key", "value"], &at)?;
                string(item, "key", &at, true)?;
                string(item, "value", &at, true)?;
            }
        }
    }
    Ok(())
}

/// `GET /api/v1/notify_object/list`, from GuanceCloud/guance-docs
/// docs/en/open-api/notify-object/list.md: `search` (names, may be empty), `pageIndex`
/// (Y, integer ≥ 1), `pageSize` (Y, integer 1..=100). The page shows no answer; the
/// stand-in answers as `alert_policy/list`'s page shows: `content: {"data": [...],
/// "declaration": {}}` and `pageInfo: {count, pageIndex, pageSize, totalCount}` beside it.
fn notify_list(
    state: &State,
    workspace_uuid: &str,
    query: Option<&str>,
) -> Result<Served, Refusal> {
    let paging = Paging::of(query)?;
    let matching: Vec<Value> = in_workspace(&state.notify_objects, workspace_uuid)
        .filter(|o| paging.matches(&o["name"]))
        .cloned()
        .collect();
    Ok(paging.page(matching))
}

/// `GET /api/v1/notify_object/get?notifyObjectUUID=`, from GuanceCloud/guance-docs
/// docs/en/open-api/notify-object/get.md. No answer body is shown: `content` is the object.
fn notify_get(state: &State, workspace_uuid: &str, query: Option<&str>) -> Result<Served, Refusal> {
    let params = query_params(query).map_err(param)?;
    only_params(&params, &["notifyObjectUUID"])?;
    let uuid = one_param(&params, "notifyObjectUUID")?
        .ok_or_else(|| param("notifyObjectUUID is required"))?;
    in_workspace(&state.notify_objects, workspace_uuid)
        .find(|o| o["uuid"] == uuid.as_str())
        .map(|o| o.clone().into())
        .ok_or_else(|| not_found("notification object", &uuid))
}

/// `POST /api/v1/notify_object/modify`, from GuanceCloud/guance-docs
/// docs/en/open-api/notify-object/modify.md: `notifyObjectUUID` (Y), `name`, `optSet`
/// (checked against the object's type, as create checks it). The type cannot change. No
/// answer body is shown: `content` is the object as modified (an assumption).
fn notify_modify(
    state: &mut State,
    workspace_uuid: &str,
    updator: &str,
    body: &Value,
) -> Result<Served, Refusal> {
    let map = object(body, "the body").map_err(param)?;
    only(map, &["notifyObjectUUID", "name", "optSet"], "").map_err(param)?;
    let uuid = string(map, "notifyObjectUUID", "", true)
        .map_err(param)?
        .unwrap()
        .to_owned();
    let name = string(map, "name", "", false).map_err(param)?;
    if name.is_some_and(|n| n.trim().is_empty()) {
        return Err(param("name is empty"));
    }
    let echo = state.echo;
    let object = state
        .notify_objects
        .iter_mut()
        .find(|o| o["uuid"] == uuid.as_str() && o["workspaceUUID"] == workspace_uuid)
        .ok_or_else(|| not_found("notification object", &uuid))?;
    if let Some(opt_set) = map.get("optSet") {
        check_opt_set(object["type"].as_str().unwrap(), Some(opt_set)).map_err(param)?;
        object["optSet"] = opt_set.clone();
    }
    if let Some(name) = name {
        object["name"] = json!(name);
    }
    object["updateAt"] = json!(now_seconds());
    object["updator"] = json!(updator);
    if echo {
        println!(
            "{}",
            json!({"notify_object": "modified", "object": redacted(object)})
        );
    }
    Ok(object.clone().into())
}

// ---------------------------------------------------------------------------------------
// Alert policies.

/// `GET /api/v1/alert_policy/list`, from docs.guance.com/en/open-api/alert-policy/list
/// (GuanceCloud/guance-docs docs/en/open-api/alert-policy/list.md): `search` (names),
/// `pageIndex` (Y, ≥ 1), `pageSize` (Y, 1..=100); the answer's `content.data` holds the
/// policies (with `refCountInfo`, `ruleCount`), `content.declaration`, and `pageInfo`
/// beside `content`, all as that page's example shows.
fn policy_list(
    state: &State,
    workspace_uuid: &str,
    query: Option<&str>,
) -> Result<Served, Refusal> {
    let paging = Paging::of(query)?;
    let matching: Vec<Value> = in_workspace(&state.alert_policies, workspace_uuid)
        .filter(|p| paging.matches(&p["name"]))
        .map(|p| {
            let mut p = p.clone();
            p["refCountInfo"] = json!({});
            p["ruleCount"] = json!(0);
            p
        })
        .collect();
    Ok(paging.page(matching))
}

/// `GET /api/v1/alert_policy/{alert_policy_uuid}/get`, from
/// docs.guance.com/en/open-api/alert-policy/get (GuanceCloud/guance-docs
/// docs/en/open-api/alert-policy/get.md): `content` is the policy, with `declaration` and
/// `notifyObjectName` (each `notify_…` target's name), as the page's example shows.
fn policy_get(state: &State, workspace_uuid: &str, uuid: &str) -> Result<Served, Refusal> {
    let policy = in_workspace(&state.alert_policies, workspace_uuid)
        .find(|p| p["uuid"] == uuid)
        .ok_or_else(|| not_found("alert policy", uuid))?;
    let mut names = Map::new();
    let mut targets = Vec::new();
    collect_recipients(&policy["alertOpt"], &mut targets);
    for to in targets {
        if let Some(object) =
            in_workspace(&state.notify_objects, workspace_uuid).find(|o| o["uuid"] == to.as_str())
        {
            names.insert(to, object["name"].clone());
        }
    }
    let mut content = policy.clone();
    content["declaration"] = json!({});
    content["notifyObjectName"] = Value::Object(names);
    Ok(content.into())
}

/// `POST /api/v1/alert_policy/{alert_policy_uuid}/modify` (docs.guance.com/en/open-api/
/// alert-policy/modify, GuanceCloud/guance-docs docs/zh/open-api/alert-policy/modify.md;
/// deprecated on 2025-12-30 in favour of v2) and `.../modify_v2`
/// (docs.guance.com/en/open-api/alert-policy/modify-v2, docs/en/open-api/alert-policy/
/// modify-v2.md). Body: `name`, `desc` (≤ 256), `openPermissionSet`, `permissionSet`,
/// `ruleTimezone` (Y), `alertOpt` (json) with `alertOpt.aggInterval` (Y, 0..=1800) — and
/// for v1 `alertOpt.silentTimeout` (Y on the zh page) — plus `checkerUUIDs` and
/// `securityRuleUUIDs` for v2. `alertOpt`'s fields as add-v2's page explains them
/// (docs.guance.com/en/open-api/alert-policy/add-v2, sections 1–7): targets' `status`
/// among critical, error, warning, nodata, info (no `ok`), `to` a list. Fields left out
/// are kept; `alertOpt`, when given, replaces the old one whole (Guance does not say it
/// merges: a tool must send back the targets it keeps). The answer's `content` is the
/// policy, as both pages' examples show.
fn policy_modify(
    state: &mut State,
    workspace_uuid: &str,
    updator: &str,
    uuid: &str,
    v2: bool,
    body: &Value,
) -> Result<Served, Refusal> {
    if !in_workspace(&state.alert_policies, workspace_uuid).any(|p| p["uuid"] == uuid) {
        return Err(not_found("alert policy", uuid));
    }
    let map = object(body, "the body").map_err(param)?;
    let mut allowed = vec![
        "name",
        "desc",
        "openPermissionSet",
        "permissionSet",
        "ruleTimezone",
        "alertOpt",
    ];
    if v2 {
        allowed.extend(["checkerUUIDs", "securityRuleUUIDs"]);
    }
    only(map, &allowed, "").map_err(param)?;
    let name = string(map, "name", "", false).map_err(param)?;
    if name.is_some_and(|n| n.trim().is_empty()) {
        return Err(param("name is empty"));
    }
    if string(map, "desc", "", false)
        .map_err(param)?
        .is_some_and(|d| d.chars().count() > 256)
    {
        return Err(param("desc is longer than 256 characters"));
    }
    let timezone = string(map, "ruleTimezone", "", true)
        .map_err(param)?
        .unwrap();
    if timezone.trim().is_empty() {
        return Err(param("ruleTimezone is empty"));
    }
    boolean(map, "openPermissionSet", "").map_err(param)?;
    for key in ["permissionSet", "checkerUUIDs", "securityRuleUUIDs"] {
        strings(map, key, "", None).map_err(param)?;
    }
    if let Some(alert_opt) = map.get("alertOpt") {
        let notify = notify_uuids(state, workspace_uuid);
        check_alert_opt(alert_opt, "alertOpt", &notify, !v2).map_err(param)?;
    }

    let echo = state.echo;
    let policy = state
        .alert_policies
        .iter_mut()
        .find(|p| p["uuid"] == uuid)
        .unwrap();
    for (key, value) in map {
        policy[key.as_str()] = value.clone();
    }
    policy["updateAt"] = json!(now_seconds());
    policy["updator"] = json!(updator);
    if echo {
        let mut targets = Vec::new();
        for entry in policy["alertOpt"]["alertTarget"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for target in entry["targets"].as_array().into_iter().flatten() {
                targets.push(json!({"status": target["status"], "to": target["to"]}));
            }
        }
        println!(
            "{}",
            json!({"alert_policy": "modified", "workspace_uuid": workspace_uuid,
                   "uuid": uuid, "name": policy["name"], "targets": targets})
        );
    }
    let mut content = policy.clone();
    content["declaration"] = json!({});
    Ok(content.into())
}

/// Every `to` entry of an alertOpt's targets and upgrade targets, both alert types.
fn collect_recipients(alert_opt: &Value, out: &mut Vec<String>) {
    let mut add_targets = |targets: &Value| {
        for target in targets.as_array().into_iter().flatten() {
            let upgrades = target["upgradeTargets"].as_array().into_iter().flatten();
            for to in std::iter::once(target).chain(upgrades) {
                for uuid in to["to"].as_array().into_iter().flatten() {
                    if let Some(uuid) = uuid.as_str() {
                        if !out.iter().any(|o| o == uuid) {
                            out.push(uuid.to_owned());
                        }
                    }
                }
            }
        }
    };
    for entry in alert_opt["alertTarget"].as_array().into_iter().flatten() {
        add_targets(&entry["targets"]);
        for info in entry["alertInfo"].as_array().into_iter().flatten() {
            add_targets(&info["targets"]);
        }
    }
}

/// `alertOpt` as add-v2's and modify's pages describe it. `notify` holds the workspace's
/// notification objects: a `notify_…` recipient that is not one of them is refused (an
/// assumption; members `acnt_…`, teams `group_…` and the member type's `email`/`sms` are
/// not modelled and pass). `v1` asks for `silentTimeout` as modify's zh page does.
fn check_alert_opt(
    value: &Value,
    at: &str,
    notify: &HashSet<String>,
    v1: bool,
) -> Result<(), String> {
    let map = object(value, at)?;
    only(
        map,
        &[
            "aggType",
            "ignoreOK",
            "alertType",
            "silentTimeout",
            "silentTimeoutByStatusEnable",
            "silentTimeoutByStatus",
            "alertTarget",
            "aggInterval",
            "aggFields",
            "aggLabels",
            "aggClusterFields",
        ],
        at,
    )?;
    // "Allow empty: True": aggType may be null.
    if let Some(kind) = map.get("aggType").filter(|v| !v.is_null()) {
        let allowed = ["byFields", "byCluster", "byAI", "byCustom"];
        if !kind.as_str().is_some_and(|k| allowed.contains(&k)) {
            return Err(format!("{at}.aggType {kind} is not one of {allowed:?}"));
        }
    }
    boolean(map, "ignoreOK", at)?;
    boolean(map, "silentTimeoutByStatusEnable", at)?;
    let member = match string(map, "alertType", at, false)? {
        None | Some("status") => false,
        Some("member") => true,
        Some(other) => {
            return Err(format!(
                "{at}.alertType {other:?} is not one of [\"status\", \"member\"]"
            ))
        }
    };
    integer(map, "silentTimeout", at, v1, 0, i64::MAX)?;
    integer(map, "aggInterval", at, true, 0, MAX_AGG_INTERVAL)?;
    strings(
        map,
        "aggFields",
        at,
        Some(&[
            "df_monitor_checker_id",
            "df_dimension_tags",
            "df_label",
            "CLUSTER",
        ]),
    )?;
    strings(map, "aggLabels", at, None)?;
    strings(
        map,
        "aggClusterFields",
        at,
        Some(&["df_title", "df_message"]),
    )?;
    for (i, entry) in array(map, "silentTimeoutByStatus", at)?
        .into_iter()
        .flatten()
        .enumerate()
    {
        object(entry, &format!("{at}.silentTimeoutByStatus[{i}]"))?;
    }
    for (i, entry) in array(map, "alertTarget", at)?
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("{at}.alertTarget[{i}]");
        let entry = object(entry, &at)?;
        only(
            entry,
            &[
                "name",
                "targets",
                "crontab",
                "crontabDuration",
                "customDateUUIDs",
                "customStartTime",
                "customDuration",
                "alertInfo",
            ],
            &at,
        )?;
        string(entry, "name", &at, false)?;
        // Section 5: a repeated period needs crontab and crontabDuration; a custom one
        // customDateUUIDs, customStartTime and customDuration.
        let crontab = string(entry, "crontab", &at, false)?.is_some();
        let crontab_duration = integer(entry, "crontabDuration", &at, false, 0, i64::MAX)?;
        if crontab != crontab_duration.is_some() {
            return Err(format!("{at}: crontab and crontabDuration go together"));
        }
        let dates = strings(entry, "customDateUUIDs", &at, None)?;
        let start = string(entry, "customStartTime", &at, false)?.is_some();
        let duration = integer(entry, "customDuration", &at, false, 0, i64::MAX)?;
        let custom = [dates.is_some(), start, duration.is_some()];
        if custom.contains(&true) && custom.contains(&false) {
            return Err(format!(
                "{at}: customDateUUIDs, customStartTime and customDuration go together"
            ));
        }
        if member {
            // Sections 3 and 4: a member policy's targets sit in alertInfo.
            if entry.contains_key("targets") {
                return Err(format!(
                    "{at}.targets: a member policy puts them in alertInfo"
                ));
            }
            let infos = array(entry, "alertInfo", &at)?
                .ok_or_else(|| format!("{at}.alertInfo is required"))?;
            for (j, info) in infos.iter().enumerate() {
                let at = format!("{at}.alertInfo[{j}]");
                let info = object(info, &at)?;
                only(
                    info,
                    &["name", "targets", "filterString", "memberInfo"],
                    &at,
                )?;
                string(info, "name", &at, false)?;
                string(info, "filterString", &at, false)?;
                strings(info, "memberInfo", &at, None)?;
                check_targets(info, &at, notify)?;
            }
        } else {
            if entry.contains_key("alertInfo") {
                return Err(format!("{at}.alertInfo is for member policies"));
            }
            check_targets(entry, &at, notify)?;
        }
    }
    Ok(())
}

/// `targets` (section 6) and their `upgradeTargets` (section 7).
fn check_targets(
    parent: &Map<String, Value>,
    at: &str,
    notify: &HashSet<String>,
) -> Result<(), String> {
    let targets =
        array(parent, "targets", at)?.ok_or_else(|| format!("{at}.targets is required"))?;
    for (k, target) in targets.iter().enumerate() {
        let at = format!("{at}.targets[{k}]");
        let target = object(target, &at)?;
        only(
            target,
            &["to", "status", "upgradeTargets", "tags", "filterString"],
            &at,
        )?;
        check_recipients(target, &at, notify)?;
        let status = string(target, "status", &at, true)?.unwrap();
        check_levels(status, &format!("{at}.status"))?;
        if let Some(tags) = target.get("tags") {
            let tags = object(tags, &format!("{at}.tags"))?;
            for key in tags.keys() {
                strings(tags, key, &format!("{at}.tags"), None)?;
            }
        }
        string(target, "filterString", &at, false)?;
        for (u, upgrade) in array(target, "upgradeTargets", &at)?
            .into_iter()
            .flatten()
            .enumerate()
        {
            let at = format!("{at}.upgradeTargets[{u}]");
            let upgrade = object(upgrade, &at)?;
            only(upgrade, &["to", "status", "duration", "toWay"], &at)?;
            check_recipients(upgrade, &at, notify)?;
            if let Some(status) = string(upgrade, "status", &at, false)? {
                check_levels(status, &format!("{at}.status"))?;
            }
            integer(upgrade, "duration", &at, false, 0, i64::MAX)?;
            strings(upgrade, "toWay", &at, None)?;
        }
    }
    Ok(())
}

/// `to`: required, a non-empty list of strings (an empty one would notify no one: the
/// stand-in refuses it, an assumption), `notify_…` entries the workspace's objects.
fn check_recipients(
    map: &Map<String, Value>,
    at: &str,
    notify: &HashSet<String>,
) -> Result<(), String> {
    let to = strings(map, "to", at, None)?.ok_or_else(|| format!("{at}.to is required"))?;
    if to.is_empty() {
        return Err(format!("{at}.to is empty"));
    }
    for uuid in to {
        if uuid.starts_with("notify_") && !notify.contains(uuid) {
            return Err(format!(
                "{at}.to: {uuid} is not a notification object of this workspace"
            ));
        }
    }
    Ok(())
}

/// A status "among critical, error, warning, nodata, info; multiple statuses can be
/// separated by commas" (section 6). `ok` is not a level a policy notifies: Guance sends
/// recoveries by itself.
fn check_levels(status: &str, at: &str) -> Result<(), String> {
    for level in status.split(',').map(str::trim) {
        if level.eq_ignore_ascii_case("ok") {
            return Err(format!(
                "{at}: ok is not a level an alert policy notifies (one of {ALERT_LEVELS:?})"
            ));
        }
        if !ALERT_LEVELS.contains(&level) {
            return Err(format!("{at}: {level:?} is not one of {ALERT_LEVELS:?}"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Lists and query strings.

/// A list request's `search`, `pageIndex` and `pageSize` (both list pages: the same three
/// query parameters, `pageIndex` ≥ 1, `pageSize` 1..=100, both required on the en pages).
struct Paging {
    search: String,
    index: i64,
    size: i64,
}

impl Paging {
    fn of(query: Option<&str>) -> Result<Paging, Refusal> {
        let params = query_params(query).map_err(param)?;
        only_params(&params, &["search", "pageIndex", "pageSize"])?;
        let number = |name: &str, max: i64| -> Result<i64, Refusal> {
            let text =
                one_param(&params, name)?.ok_or_else(|| param(format!("{name} is required")))?;
            let n: i64 = text
                .parse()
                .map_err(|_| param(format!("{name} {text:?} is not an integer")))?;
            if n < 1 {
                return Err(param(format!("{name} {n} is below 1")));
            }
            if n > max {
                return Err(param(format!("{name} {n} is over {max}")));
            }
            Ok(n)
        };
        Ok(Paging {
            index: number("pageIndex", i64::MAX)?,
            size: number("pageSize", MAX_PAGE_SIZE)?,
            search: one_param(&params, "search")?.unwrap_or_default(),
        })
    }

    /// Guance documents `search` as searching names, no more: the stand-in matches a
    /// case-insensitive substring (an assumption), so a tool must still compare names.
    fn matches(&self, name: &Value) -> bool {
        let name = name.as_str().unwrap_or_default().to_lowercase();
        name.contains(&self.search.to_lowercase())
    }

    /// One page, newest first (an assumption: the order is not documented).
    fn page(&self, mut matching: Vec<Value>) -> Served {
        matching.reverse();
        let total = matching.len();
        let start = ((self.index - 1).saturating_mul(self.size)).min(total as i64) as usize;
        let data: Vec<Value> = matching
            .into_iter()
            .skip(start)
            .take(self.size as usize)
            .collect();
        Served {
            page_info: Some(json!({
                "count": data.len(),
                "pageIndex": self.index,
                "pageSize": self.size,
                "totalCount": total,
            })),
            content: json!({"data": data, "declaration": {}}),
        }
    }
}

/// A query string's parameters, decoded as a form (`%XX`, `+` a space), in order.
fn query_params(query: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let mut params = Vec::new();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(name).ok_or("a parameter name is badly encoded")?;
        let value = decode(value).ok_or_else(|| format!("{name} is badly encoded"))?;
        params.push((name, value));
    }
    Ok(params)
}

/// Refuses parameters the page does not list (an assumption: Guance may ignore them).
fn only_params(params: &[(String, String)], allowed: &[&str]) -> Result<(), Refusal> {
    match params.iter().find(|(n, _)| !allowed.contains(&n.as_str())) {
        Some((name, _)) => Err(param(format!("{name} is not a parameter of this call"))),
        None => Ok(()),
    }
}

/// The parameter's value if it is given once; given twice, a refusal.
fn one_param(params: &[(String, String)], name: &str) -> Result<Option<String>, Refusal> {
    let mut found = params.iter().filter(|(n, _)| n == name).map(|(_, v)| v);
    match (found.next(), found.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => Ok(Some(value.clone())),
        _ => Err(param(format!("{name} is given more than once"))),
    }
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

// ---------------------------------------------------------------------------------------
// Body checks, each naming the field at fault. A field the pages mark "Allow empty: False"
// may not be null; one they mark required may not be missing.

fn field(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

fn object<'a>(value: &'a Value, at: &str) -> Result<&'a Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("{at} must be a JSON object"))
}

/// Refuses a field the page does not list (an assumption: Guance documents no answer).
fn only(map: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<(), String> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(format!("{} is not a documented field", field(at, key))),
        None => Ok(()),
    }
}

fn present<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    at: &str,
    required: bool,
) -> Result<Option<&'a Value>, String> {
    match map.get(key) {
        None if required => Err(format!("{} is required", field(at, key))),
        None => Ok(None),
        Some(Value::Null) => Err(format!("{} must not be null", field(at, key))),
        Some(value) => Ok(Some(value)),
    }
}

fn string<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    at: &str,
    required: bool,
) -> Result<Option<&'a str>, String> {
    present(map, key, at, required)?
        .map(|v| {
            v.as_str()
                .ok_or_else(|| format!("{} must be a string", field(at, key)))
        })
        .transpose()
}

fn boolean(map: &Map<String, Value>, key: &str, at: &str) -> Result<Option<bool>, String> {
    present(map, key, at, false)?
        .map(|v| {
            v.as_bool()
                .ok_or_else(|| format!("{} must be a boolean", field(at, key)))
        })
        .transpose()
}

fn integer(
    map: &Map<String, Value>,
    key: &str,
    at: &str,
    required: bool,
    min: i64,
    max: i64,
) -> Result<Option<i64>, String> {
    let Some(value) = present(map, key, at, required)? else {
        return Ok(None);
    };
    let n = value
        .as_i64()
        .ok_or_else(|| format!("{} must be an integer", field(at, key)))?;
    if !(min..=max).contains(&n) {
        return Err(format!(
            "{} {n} is not within {min}..={max}",
            field(at, key)
        ));
    }
    Ok(Some(n))
}

fn array<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    at: &str,
) -> Result<Option<&'a Vec<Value>>, String> {
    present(map, key, at, false)?
        .map(|v| {
            v.as_array()
                .ok_or_else(|| format!("{} must be an array", field(at, key)))
        })
        .transpose()
}

/// A list of strings, each among `allowed` when given.
fn strings<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    at: &str,
    allowed: Option<&[&str]>,
) -> Result<Option<Vec<&'a str>>, String> {
    let Some(items) = array(map, key, at)? else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let text = item
            .as_str()
            .ok_or_else(|| format!("{} must hold strings", field(at, key)))?;
        if allowed.is_some_and(|allowed| !allowed.contains(&text)) {
            return Err(format!(
                "{}: {text:?} is not one of {:?}",
                field(at, key),
                allowed.unwrap()
            ));
        }
        out.push(text);
    }
    Ok(Some(out))
}
