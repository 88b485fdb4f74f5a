//! The integration tests' harness: a real moto server (Secrets Manager) on loopback,
//! started and stopped per test, the PagerDuty stand-in, the real handler wired as
//! `main.rs` wires it, and a capture of every log line the suite writes.

#![allow(dead_code)]

pub mod emf;
pub mod emulator;
pub mod event_source;
pub mod function_url;
pub mod guance;
pub mod pagerduty;

use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use guance_pagerduty::adapters::delivery::{PagerDutyClient, RetryPolicy};
use guance_pagerduty::adapters::guance_openapi::GuanceOpenApi;
use guance_pagerduty::adapters::metrics::{Memory, Metrics};
use guance_pagerduty::adapters::pagerduty_rest::PagerDutyRest;
use guance_pagerduty::adapters::queue::FifoQueue;
use guance_pagerduty::adapters::secret::{SecretCache, SecretsManagerSource};
use guance_pagerduty::domain::translate::Settings;
use guance_pagerduty::entry::app::{App, Invocation, QueueMode, TwoWay};
use lambda_http::aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use pagerduty::StandIn;
use serde_json::{json, Value};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const EVENTS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/events");
/// The namespace the tests' apps write their metric lines to.
pub const METRICS_NAMESPACE: &str = "guance-pagerduty/test";

/// A file in the project's Python venv, which `make test` installs.
fn venv(file: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(".venv")
        .join(file);
    assert!(
        path.exists(),
        "{} is missing: run `make test` (it installs moto into .venv)",
        path.display()
    );
    path
}

/// A free loopback port for a server another process will bind (moto, the runtime
/// emulator), taken below Linux's ephemeral range (32768 and up). A port picked from
/// the ephemeral range is free only until the child binds it, seconds later for moto;
/// meanwhile a stand-in binding port 0 in a test beside it may be given the same port,
/// and the test then talks to the wrong server.
pub fn port_for_a_process() -> u16 {
    use std::sync::atomic::AtomicU32;
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    // Each test binary (a process) starts at its own place in the range.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = (std::process::id() * 97) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = (LOW + (start + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range")
}

/// A moto server on a free loopback port, killed when dropped.
pub struct Moto {
    pub endpoint: String,
    child: Child,
}

impl Moto {
    pub fn start() -> Moto {
        let program = std::env::var_os("MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| venv("bin/moto_server"));
        Moto::start_with(Command::new(program))
    }

    /// moto with AWS's managed IAM policies loaded, as `cargo lambda deploy` needs them
    /// (it attaches AWSLambdaBasicExecutionRole to the role it creates).
    pub fn start_with_managed_policies() -> Moto {
        let program = std::env::var_os("MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| venv("bin/moto_server"));
        let mut command = Command::new(program);
        command.env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true");
        Moto::start_with(command)
    }

    /// moto with the same clock read more cheaply (`tools/moto_server_fast_clock.py`),
    /// for soaks whose backlog runs to thousands of messages.
    pub fn start_fast_clock() -> Moto {
        let mut command = Command::new(venv("bin/python"));
        command.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/moto_server_fast_clock.py"));
        Moto::start_with(command)
    }

    fn start_with(mut command: Command) -> Moto {
        let port = port_for_a_process();
        let child = command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto = Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto_server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    pub fn client(&self) -> aws_sdk_secretsmanager::Client {
        self.client_at(&self.endpoint)
    }

    /// A Secrets Manager client for `endpoint`, which need not be this moto's.
    pub fn client_at(&self, endpoint: &str) -> aws_sdk_secretsmanager::Client {
        let config = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
            .endpoint_url(endpoint)
            .build();
        aws_sdk_secretsmanager::Client::from_conf(config)
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        self.sqs_at(&self.endpoint)
    }

    /// An SQS client for `endpoint`, which need not be this moto's (an unreachable one).
    pub fn sqs_at(&self, endpoint: &str) -> aws_sdk_sqs::Client {
        event_source::local_client(endpoint)
    }

    /// A FIFO delivery queue and its FIFO dead-letter queue, as the template makes them
    /// (1 MiB messages, redrive after `max_receives`), with `visibility_seconds`.
    pub async fn create_queues(&self, visibility_seconds: u32, max_receives: u32) -> Queues {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let sqs = self.sqs();
        let name = random_text(8);
        let dlq = sqs
            .create_queue()
            .queue_name(format!("dead-{name}.fifo"))
            .attributes(A::FifoQueue, "true")
            .send()
            .await
            .expect("create the dead-letter queue")
            .queue_url
            .unwrap();
        let dlq_arn = format!("arn:aws:sqs:us-east-1:123456789012:dead-{name}.fifo");
        let url = sqs
            .create_queue()
            .queue_name(format!("delivery-{name}.fifo"))
            .attributes(A::FifoQueue, "true")
            .attributes(A::MaximumMessageSize, "1048576")
            .attributes(A::VisibilityTimeout, visibility_seconds.to_string())
            .attributes(
                A::RedrivePolicy,
                json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives})
                    .to_string(),
            )
            .send()
            .await
            .expect("create the delivery queue")
            .queue_url
            .unwrap();
        Queues { url, dlq }
    }

    pub async fn create_secret(&self, name: &str, value: &str) {
        self.client()
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .expect("create the secret in moto");
    }

    /// The secret's current value.
    pub async fn secret_string(&self, name: &str) -> String {
        self.client()
            .get_secret_value()
            .secret_id(name)
            .send()
            .await
            .expect("read the secret in moto")
            .secret_string()
            .expect("a string secret")
            .to_owned()
    }

    pub async fn put_secret(&self, name: &str, value: &str) {
        self.client()
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .send()
            .await
            .expect("put a new secret version in moto");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh random alphanumeric string, registered as a secret that no log line or
/// response may ever contain.
pub fn secret_value(len: usize) -> String {
    let value = random_text(len);
    SECRETS
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .push(value.clone());
    value
}

/// Random letters and digits that are not secret (names of things).
pub fn random_text(len: usize) -> String {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS per instance: distinct values per call.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos());
    let mut seed = hasher.finish() | 1;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let value: String = (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            alphabet[(seed % alphabet.len() as u64) as usize] as char
        })
        .collect();
    value
}

static SECRETS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.get_or_init(Default::default)
            .lock()
            .unwrap()
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the function's own JSON logging, at TRACE for every crate, into a buffer.
pub fn capture_logs() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        guance_pagerduty::logging::install(guance_pagerduty::logging::filter("trace"), || Capture)
            .expect("install the log capture");
    });
}

pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.get_or_init(Default::default).lock().unwrap()).into_owned()
}

/// Fails if any secret made so far appears in the logs or in `extra` (response bodies).
pub fn assert_no_secret_leaked(extra: &[&str]) {
    let logs = captured_logs();
    let secrets = SECRETS
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .clone();
    for secret in &secrets {
        if let Some(line) = logs.lines().find(|l| l.contains(secret.as_str())) {
            let masked = line.replace(secret.as_str(), "<SECRET>");
            panic!("a secret appears in the logs: {masked}");
        }
        for text in extra {
            assert!(
                !text.contains(secret.as_str()),
                "a secret appears in a response"
            );
        }
    }
}

pub fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        attempt_timeout: Duration::from_millis(1500),
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_attempts: 8,
    }
}

pub struct Queues {
    pub url: String,
    pub dlq: String,
}

/// Queue mode for the app: the queues, where SQS is (moto's endpoint unless another is
/// given, such as a closed port), and the dispatcher's pacing, scaled down for tests.
pub struct QueueOptions {
    pub url: String,
    pub dlq: Option<String>,
    pub sqs_endpoint: Option<String>,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub attempts: u32,
}

impl QueueOptions {
    pub fn new(queues: &Queues) -> Self {
        QueueOptions {
            url: queues.url.clone(),
            dlq: Some(queues.dlq.clone()),
            sqs_endpoint: None,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(2),
            attempts: 2,
        }
    }
}

pub struct AppOptions {
    pub queue: Option<QueueOptions>,
    pub settings: Settings,
    pub retry: RetryPolicy,
    pub ttl: Duration,
    pub allow_unauthenticated: bool,
    pub dry_run: bool,
    pub max_body_bytes: usize,
    pub budget: Duration,
    pub deadline_margin: Duration,
    /// Where the app's metric lines go: read them with `Memory::lines`.
    pub metrics: Memory,
    /// Where Secrets Manager is: moto's endpoint unless another is given (a stalled one).
    pub secrets_endpoint: Option<String>,
    /// PagerDuty's REST API (two-way): the stand-in's `api_url()`. By default a loopback
    /// port nothing listens on.
    pub api_url: Option<String>,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            queue: None,
            settings: Settings::default(),
            retry: fast_retries(),
            ttl: Duration::from_secs(300),
            allow_unauthenticated: false,
            dry_run: false,
            max_body_bytes: 1 << 20,
            budget: Duration::from_secs(10),
            deadline_margin: Duration::from_millis(200),
            metrics: Memory::default(),
            secrets_endpoint: None,
            api_url: None,
        }
    }
}

/// The real handler, wired to moto's Secrets Manager and the stand-in as `main.rs` does.
pub fn app(
    moto: &Moto,
    secret_id: &str,
    events_url: &str,
    options: AppOptions,
) -> App<SecretsManagerSource> {
    let pagerduty = PagerDutyClient::new(
        PagerDutyClient::http_client().unwrap(),
        events_url,
        options.retry,
    );
    let queue = options.queue.map(|q| {
        let sqs = moto.sqs_at(q.sqs_endpoint.as_deref().unwrap_or(&moto.endpoint));
        QueueMode {
            queue: FifoQueue::new(sqs.clone(), &q.url, 1_048_576),
            dead_letters: q.dlq.map(|dlq| FifoQueue::new(sqs, dlq, 1_048_576)),
            pagerduty: pagerduty.with_policy(RetryPolicy {
                max_attempts: q.attempts,
                ..options.retry
            }),
            retry_base: q.retry_base,
            retry_max: q.retry_max,
        }
    });
    App {
        queue,
        settings: options.settings,
        secrets: SecretCache::new(
            SecretsManagerSource::new(
                moto.client_at(
                    options
                        .secrets_endpoint
                        .as_deref()
                        .unwrap_or(&moto.endpoint),
                ),
                secret_id,
            ),
            options.ttl,
            Duration::from_secs(60),
        ),
        pagerduty,
        max_body_bytes: options.max_body_bytes,
        allow_unauthenticated: options.allow_unauthenticated,
        dry_run: options.dry_run,
        deadline_margin: options.deadline_margin,
        default_budget: options.budget,
        metrics: Metrics::new(METRICS_NAMESPACE, Arc::new(options.metrics)),
        two_way: TwoWay {
            pagerduty_rest: PagerDutyRest::new(
                PagerDutyClient::http_client().unwrap(),
                options
                    .api_url
                    .unwrap_or_else(|| "http://127.0.0.1:9".into()),
            ),
            guance: GuanceOpenApi::new(PagerDutyClient::http_client().unwrap()),
            progress: Default::default(),
        },
    }
}

/// A function URL event from `events/`, as JSON to adjust before use.
pub fn event_file(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("{EVENTS_DIR}/{name}")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The event with the token in its query string replaced (`None` removes it).
pub fn with_token(mut event: Value, token: Option<&str>) -> Value {
    match token {
        Some(token) => {
            event["queryStringParameters"] = serde_json::json!({ "token": token });
            event["rawQueryString"] = Value::String(format!("token={token}"));
        }
        None => {
            event
                .as_object_mut()
                .unwrap()
                .remove("queryStringParameters");
            event["rawQueryString"] = Value::String(String::new());
        }
    }
    event
}

pub fn with_path(mut event: Value, path: &str) -> Value {
    event["rawPath"] = Value::String(path.to_owned());
    event["requestContext"]["http"]["path"] = Value::String(path.to_owned());
    event
}

pub fn with_body(mut event: Value, body: &str) -> Value {
    event["body"] = Value::String(body.to_owned());
    event
}

/// Deserializes the event exactly as the Lambda runtime does.
pub fn request(event: &Value) -> ApiGatewayV2httpRequest {
    serde_json::from_value(event.clone()).expect("a function URL event")
}

/// An invocation with `budget` until its Lambda deadline.
pub fn invocation(budget: Duration) -> Invocation {
    let deadline = SystemTime::now() + budget;
    Invocation::new(
        "test-request",
        deadline.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64,
    )
}

pub struct Answer {
    pub status: i64,
    pub body: Value,
    pub text: String,
    pub response: ApiGatewayV2httpResponse,
}

/// One function URL invocation with the template's 30 s timeout.
pub async fn call(app: &App<SecretsManagerSource>, event: &Value) -> Answer {
    call_within(app, event, Duration::from_secs(30)).await
}

/// One function URL invocation with `budget` until its deadline.
pub async fn call_within(
    app: &App<SecretsManagerSource>,
    event: &Value,
    budget: Duration,
) -> Answer {
    let response = app.handle(request(event), &invocation(budget)).await;
    answer(response)
}

pub fn answer(response: ApiGatewayV2httpResponse) -> Answer {
    let text = match &response.body {
        Some(lambda_http::Body::Text(text)) => text.clone(),
        other => panic!("expected a text body, got {other:?}"),
    };
    let body = serde_json::from_str(&text).expect("every answer is JSON");
    assert_eq!(
        response.headers.get("content-type").unwrap(),
        "application/json"
    );
    Answer {
        status: response.status_code,
        body,
        text,
        response,
    }
}

/// One test's world: moto with a secret, the stand-in, and the keys in play.
pub struct World {
    pub moto: Moto,
    pub standin: StandIn,
    pub secret_id: String,
    pub routing_key: String,
    pub token: String,
}

pub async fn world() -> World {
    world_with_secret(|key, token| json!({"routing_key": key, "webhook_token": token}).to_string())
        .await
}

pub async fn world_with_secret(secret: impl Fn(&str, &str) -> String) -> World {
    world_on(Moto::start(), secret).await
}

pub async fn world_on(moto: Moto, secret: impl Fn(&str, &str) -> String) -> World {
    capture_logs();
    let standin = StandIn::start().await;
    let routing_key = secret_value(32);
    let token = secret_value(40);
    let secret_id = format!("guance-pagerduty-{}", random_text(8));
    moto.create_secret(&secret_id, &secret(&routing_key, &token))
        .await;
    World {
        moto,
        standin,
        secret_id,
        routing_key,
        token,
    }
}

impl World {
    pub fn app(&self, options: AppOptions) -> App<SecretsManagerSource> {
        app(
            &self.moto,
            &self.secret_id,
            &self.standin.events_url(),
            options,
        )
    }

    pub fn event(&self, name: &str) -> Value {
        with_token(event_file(name), Some(&self.token))
    }

    /// Checks what every test must hold at its end.
    pub fn finish(&self, answers: &[&Answer]) {
        assert_eq!(
            self.standin.invalid(),
            Vec::<Vec<String>>::new(),
            "PagerDuty would have refused an event"
        );
        let texts: Vec<&str> = answers.iter().map(|a| a.text.as_str()).collect();
        assert_no_secret_leaked(&texts);
    }
}

/// Plays Lambda's event source mapping until the queue is empty (or `timeout`): receive,
/// invoke the real dispatcher with the SQS event as Lambda shapes it, delete what it did
/// not report failed. Returns the number of invocations.
pub async fn drain(
    app: &App<SecretsManagerSource>,
    source: &event_source::EventSource,
    timeout: Duration,
) -> usize {
    drain_until_done(app, source, timeout, &AtomicBool::new(true)).await
}

/// Like `drain`, while events may still be arriving: returns once `done` is set and the
/// queue is empty.
pub async fn drain_until_done(
    app: &App<SecretsManagerSource>,
    source: &event_source::EventSource,
    timeout: Duration,
    done: &AtomicBool,
) -> usize {
    let started = Instant::now();
    let mut invocations = 0;
    loop {
        assert!(
            started.elapsed() < timeout,
            "the queue did not drain within {timeout:?}"
        );
        let messages = source.receive(1).await;
        if messages.is_empty() {
            if done.load(Ordering::SeqCst) && source.depth().await == 0 {
                return invocations;
            }
            continue;
        }
        invocations += 1;
        let payload = source.sqs_event(&messages);
        let response = dispatch(app, &payload).await;
        source.settle(&messages, Some(&response)).await;
    }
}

/// Invokes the dispatcher with an SQS event given as JSON, deserialized as the runtime
/// does, and returns its response as JSON.
pub async fn dispatch(app: &App<SecretsManagerSource>, payload: &Value) -> Value {
    let event = serde_json::from_value(payload.clone()).expect("an SQS event");
    let response = app
        .dispatch(event, &invocation(Duration::from_secs(30)))
        .await;
    serde_json::to_value(response).unwrap()
}

/// `value.pipe(f)` reads better than nesting in the tests' case tables.
pub trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl Pipe for Value {}

/// A peer that accepts every connection and never answers: the fault that only a
/// timeout ends (a connect timeout does not). Held connections close when dropped.
pub struct Stalled {
    pub endpoint: String,
    stop: Arc<AtomicBool>,
}

impl Stalled {
    pub fn start() -> Stalled {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stalled peer");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => held.push(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Stalled { endpoint, stop }
    }
}

impl Drop for Stalled {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
