//! `make bench`: the release `bootstrap` end to end on loopback, beside the approach of
//! Guance's own guide, and BENCHMARKS.md written from what was measured.
//!
//! A minimal Lambda Runtime API here starts the real binary, feeds it function URL events
//! and collects its answers; a counting Secrets Manager stand-in and the PagerDuty
//! stand-in sit behind it.
//!
//! Then the same over TLS with a simulated network round trip (`network.rs`), beside the
//! guide's approach over the same path.
//!
//! Usage: bench-e2e --bootstrap PATH [--arm64 PATH] [--invocations N] [--out FILE]

#[path = "../../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

mod network;
mod sqs_calls;

use support::{event_source, pagerduty};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

const ROUTING_KEY: &str = "benchR0utingKey00000000000000000";
const TOKEN: &str = "bench-webhook-token";

type Answer = Result<Response<Full<Bytes>>, std::convert::Infallible>;

fn reply(status: u16, headers: &[(&str, String)], body: Vec<u8>) -> Answer {
    let mut builder = Response::builder().status(status);
    for (k, v) in headers {
        builder = builder.header(*k, v);
    }
    Ok(builder.body(Full::new(Bytes::from(body))).unwrap())
}

async fn serve<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Answer> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(handler);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A Secrets Manager that answers every GetSecretValue with the bench secret, and counts.
async fn secrets_manager(calls: Arc<AtomicU64>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let secret = json!({"routing_key": ROUTING_KEY, "webhook_token": TOKEN}).to_string();
    tokio::spawn(serve(listener, move |request: Request<Incoming>| {
        let (calls, secret) = (Arc::clone(&calls), secret.clone());
        async move {
            let _ = request.into_body().collect().await;
            calls.fetch_add(1, Ordering::Relaxed);
            let body = json!({
                "ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:bench-AbCdEf",
                "Name": "bench", "VersionId": "v1", "SecretString": secret,
                "VersionStages": ["AWSCURRENT"], "CreatedDate": 1.7e9,
            });
            reply(
                200,
                &[("content-type", "application/x-amz-json-1.1".into())],
                body.to_string().into_bytes(),
            )
        }
    }));
    port
}

/// The Lambda Runtime API, as much of it as a function uses.
struct RuntimeApi {
    port: u16,
    invocations: mpsc::Sender<(Value, oneshot::Sender<Value>)>,
    first_next: Arc<Mutex<Option<Instant>>>,
}

async fn runtime_api() -> RuntimeApi {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel::<(Value, oneshot::Sender<Value>)>(1);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let pending: Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>> = Default::default();
    let first_next = Arc::new(Mutex::new(None));
    let counter = Arc::new(AtomicU64::new(0));
    let first = Arc::clone(&first_next);
    tokio::spawn(serve(listener, move |request: Request<Incoming>| {
        let (rx, pending, first, counter) = (
            Arc::clone(&rx),
            Arc::clone(&pending),
            Arc::clone(&first),
            Arc::clone(&counter),
        );
        async move {
            let path = request.uri().path().to_owned();
            if path.ends_with("/runtime/invocation/next") {
                first.lock().unwrap().get_or_insert_with(Instant::now);
                let Some((event, done)) = rx.lock().await.recv().await else {
                    return reply(410, &[], Vec::new());
                };
                let id = format!("bench-{}", counter.fetch_add(1, Ordering::Relaxed));
                pending.lock().unwrap().insert(id.clone(), done);
                let deadline = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_millis()
                    + 30_000;
                return reply(
                    200,
                    &[
                        ("lambda-runtime-aws-request-id", id),
                        ("lambda-runtime-deadline-ms", deadline.to_string()),
                        (
                            "lambda-runtime-invoked-function-arn",
                            "arn:aws:lambda:us-east-1:123456789012:function:bench".into(),
                        ),
                        (
                            "lambda-runtime-trace-id",
                            "Root=1-00000000-000000000000000000000000".into(),
                        ),
                        ("content-type", "application/json".into()),
                    ],
                    event.to_string().into_bytes(),
                );
            }
            let body = request
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let answer: Value = serde_json::from_slice(&body).unwrap_or(json!({"unparsed": true}));
            if let Some(id) = path.strip_prefix("/2018-06-01/runtime/invocation/") {
                let id = id.trim_end_matches("/response").trim_end_matches("/error");
                if let Some(done) = pending.lock().unwrap().remove(id) {
                    let _ = done.send(answer);
                }
            } else {
                eprintln!("bench: the function reported an init error: {answer}");
            }
            reply(202, &[], b"{\"status\":\"OK\"}".to_vec())
        }
    }));
    RuntimeApi {
        port,
        invocations: tx,
        first_next,
    }
}

impl RuntimeApi {
    async fn invoke(&self, event: Value) -> Value {
        let (done, answer) = oneshot::channel();
        self.invocations
            .send((event, done))
            .await
            .expect("the runtime API is up");
        answer.await.expect("the function answered")
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// A JSON array of seconds as durations.
fn seconds(values: &Value) -> Vec<Duration> {
    values
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(Value::as_f64)
                .map(Duration::from_secs_f64)
                .collect()
        })
        .unwrap_or_default()
}

/// The address of an `http://host:port/...` URL on loopback.
fn socket_of(url: &str) -> std::net::SocketAddr {
    let authority = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    authority.parse().expect("a loopback address")
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn function_url_event(name: &str) -> Value {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    event["queryStringParameters"] = json!({"token": TOKEN});
    event["rawQueryString"] = json!(format!("token={TOKEN}"));
    event
}

/// Criterion's estimate for a benchmark, in microseconds, if `cargo bench` ran first.
fn criterion_us(id: &str) -> Option<f64> {
    let path = format!(
        "{}/target/criterion/{id}/new/estimates.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let estimates: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    Some(estimates["median"]["point_estimate"].as_f64()? / 1000.0)
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// `runs` cold starts, each a fresh process and Runtime API given `event` first: per run,
/// the time from exec to the first invocation fetched and to its answer. The last
/// process stays up, for warm runs.
async fn cold_starts(
    spawn_with: &Spawn<'_>,
    extra_env: &[(&str, &str)],
    event: &Value,
    runs: usize,
) -> (Vec<(Duration, Duration)>, RuntimeApi, std::process::Child) {
    let mut starts = Vec::with_capacity(runs);
    let mut running = None;
    for run in 0..runs {
        let api = runtime_api().await;
        let exec = Instant::now();
        let mut child = spawn_with(api.port, extra_env);
        let first = api.invoke(event.clone()).await;
        let answered = exec.elapsed();
        assert_eq!(first["statusCode"], 202, "first invocation: {first}");
        let fetched = api
            .first_next
            .lock()
            .unwrap()
            .map_or(answered, |t| t - exec);
        starts.push((fetched, answered));
        if run + 1 == runs {
            running = Some((api, child));
        } else {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    let (api, child) = running.expect("a function is running");
    (starts, api, child)
}

/// Starts the bootstrap against a Runtime API port, with extra environment.
type Spawn<'a> = dyn Fn(u16, &[(&str, &str)]) -> std::process::Child + 'a;

/// Queue mode as deployed: a webhook process answers once SQS (moto) took the event, a
/// dispatcher process (the same binary) is fed by a local event source mapping (long
/// poll, invoke, delete) and delivers it. One event at a time, so each figure is one
/// event's latency through an empty queue, not a throughput. Returns, per measured event,
/// the webhook's answer time and the time from the webhook call to PagerDuty receiving it,
/// and the functions' SQS calls per event, by operation.
async fn queue_run(
    spawn_with: &Spawn<'_>,
    extra_env: &[(&str, &str)],
    moto: &support::Moto,
    standin: &pagerduty::StandIn,
    (alert, recovery): (&Value, &Value),
    warmup: usize,
    measured: usize,
) -> (Vec<Duration>, Vec<Duration>, Vec<(String, f64)>) {
    let queues = moto.create_queues(30, 1000).await;
    let sqs_calls = sqs_calls::SqsCalls::start(&moto.endpoint).await;
    let mut queue_env = vec![
        ("DELIVERY_QUEUE_URL", queues.url.as_str()),
        ("DEAD_LETTER_QUEUE_URL", queues.dlq.as_str()),
        ("AWS_ENDPOINT_URL_SQS", sqs_calls.endpoint.as_str()),
    ];
    queue_env.extend_from_slice(extra_env);
    let webhook_api = runtime_api().await;
    let mut webhook = spawn_with(webhook_api.port, &queue_env);
    let dispatcher_api = Arc::new(runtime_api().await);
    let mut dispatcher = spawn_with(dispatcher_api.port, &queue_env);
    let source =
        event_source::EventSource::new(event_source::local_client(&moto.endpoint), &queues.url)
            .await;
    // Counts the records settled, so that each event starts with the pipeline idle (the
    // dispatcher finishes a delivery half a round trip after PagerDuty has the event).
    let settled = Arc::new(AtomicU64::new(0));
    let mapping = tokio::spawn({
        let (api, settled) = (Arc::clone(&dispatcher_api), Arc::clone(&settled));
        async move {
            loop {
                let messages = source.receive(20).await;
                if !messages.is_empty() {
                    let response = api.invoke(source.sqs_event(&messages)).await;
                    source.settle(&messages, Some(&response)).await;
                    settled.fetch_add(messages.len() as u64, Ordering::SeqCst);
                }
            }
        }
    });
    let unique = |template: &Value, n: usize| {
        let mut event = template.clone();
        let mut body: Value = serde_json::from_str(template["body"].as_str().unwrap()).unwrap();
        body["df_event_id"] = json!(format!("bench-queue-{n}"));
        body["df_monitor_checker_event_ref"] = json!(format!("bench-queue-{}", n / 2));
        event["body"] = json!(body.to_string());
        event
    };
    let (mut queue_accept, mut queue_to_pagerduty) = (Vec::new(), Vec::new());
    let taken_before = standin.accepted().len();
    let mut calls_before = BTreeMap::new();
    for n in 0..warmup + measured {
        let event = unique(if n % 2 == 0 { alert } else { recovery }, n);
        let t0 = Instant::now();
        let answer = webhook_api.invoke(event).await;
        let accepted = t0.elapsed();
        assert_eq!(answer["statusCode"], 202, "queue mode, event {n}: {answer}");
        assert!(
            answer["body"]
                .as_str()
                .unwrap_or_default()
                .contains("\"queued\""),
            "queue mode answers queued: {answer}"
        );
        let arrived = loop {
            if let Some(at) = standin.accepted_at(taken_before + n) {
                break at;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "queue mode: event {n} did not reach PagerDuty"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        if n + 1 == warmup {
            calls_before = sqs_calls.counts();
        }
        if n >= warmup {
            queue_accept.push(accepted);
            queue_to_pagerduty.push(arrived - t0);
        }
        while settled.load(Ordering::SeqCst) < n as u64 + 1 {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "queue mode: event {n} was not settled"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    mapping.abort();
    for child in [&mut webhook, &mut dispatcher] {
        let _ = child.kill();
        let _ = child.wait();
    }
    let per_event: Vec<(String, f64)> = sqs_calls
        .counts()
        .into_iter()
        .map(|(operation, n)| {
            let before = calls_before.get(&operation).copied().unwrap_or(0);
            (operation, (n - before) as f64 / measured.max(1) as f64)
        })
        .filter(|(_, per)| *per > 0.0)
        .collect();
    queue_accept.sort();
    queue_to_pagerduty.sort();
    (queue_accept, queue_to_pagerduty, per_event)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bootstrap = arg("--bootstrap").unwrap_or_else(|| "target/release/bootstrap".into());
    let arm64 = arg("--arm64");
    let invocations: usize = arg("--invocations")
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let out = arg("--out").unwrap_or_else(|| "BENCHMARKS.md".into());

    let standin = pagerduty::StandIn::start().await;
    let sm_calls = Arc::new(AtomicU64::new(0));
    let sm_port = secrets_manager(Arc::clone(&sm_calls)).await;
    let spawn_with = |api_port: u16, extra: &[(&str, &str)]| {
        Command::new(&bootstrap)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{api_port}"))
            .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "bench")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .env("AWS_SESSION_TOKEN", "bench")
            .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{sm_port}"))
            .env("PAGERDUTY_SECRET_ID", "bench")
            .env("PAGERDUTY_EVENTS_URL", standin.events_url())
            .env("RUST_LOG", "info")
            .envs(extra.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start bootstrap")
    };
    let (alert, recovery) = (
        function_url_event("alert.json"),
        function_url_event("recovery.json"),
    );

    // Cold start, several times (a fresh process and Runtime API each): from exec to the
    // first invocation fetched, and to its answer. The last one stays for the warm runs.
    const COLD_RUNS: usize = 7;
    let (starts, api, mut child) = cold_starts(&spawn_with, &[], &alert, COLD_RUNS).await;
    let (mut cold_fetches, mut cold_answers): (Vec<Duration>, Vec<Duration>) =
        starts.into_iter().unzip();
    cold_fetches.sort();
    cold_answers.sort();
    let cold_fetch = percentile(&cold_fetches, 0.5);
    let cold_answer = percentile(&cold_answers, 0.5);
    let (cold_fetch_max, cold_answer_max) =
        (cold_fetches[COLD_RUNS - 1], cold_answers[COLD_RUNS - 1]);

    // Warm: alerts and recoveries alternating, each one PagerDuty POST.
    let (sm_before, conns_before, accepted_before) = (
        sm_calls.load(Ordering::Relaxed),
        standin.connections(),
        standin.accepted().len(),
    );
    let mut warm = Vec::with_capacity(invocations);
    for i in 0..invocations {
        let event = if i % 2 == 0 {
            recovery.clone()
        } else {
            alert.clone()
        };
        let t0 = Instant::now();
        let answer = api.invoke(event).await;
        warm.push(t0.elapsed());
        assert_eq!(answer["statusCode"], 202, "invocation {i}: {answer}");
    }
    let sm_warm = sm_calls.load(Ordering::Relaxed) - sm_before;
    let conns_warm = standin.connections() - conns_before;
    let delivered = standin.accepted().len() - accepted_before;
    // The same path without PagerDuty: GET / (the health check) measures the Runtime API
    // handoff and the function's fixed cost, to separate them from the delivery.
    let health = function_url_event("health.json");
    let mut handoff = Vec::with_capacity(invocations);
    for _ in 0..invocations {
        let t0 = Instant::now();
        let answer = api.invoke(health.clone()).await;
        handoff.push(t0.elapsed());
        assert_eq!(answer["statusCode"], 200, "{answer}");
    }
    handoff.sort();
    let rss_kb = peak_rss_kb(child.id()).unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    warm.sort();

    // The floor: the same PagerDuty event POSTed straight to the stand-in, keep-alive.
    let body = {
        let guance = guance_pagerduty::domain::guance::parse_body(
            alert["body"].as_str().unwrap().as_bytes(),
        )
        .unwrap();
        match guance_pagerduty::domain::translate::translate(&guance[0], &Default::default())
            .outcome
        {
            guance_pagerduty::domain::translate::Outcome::Send(e) => e.encode(ROUTING_KEY).unwrap(),
            _ => unreachable!(),
        }
    };
    let client = reqwest::Client::new();
    let mut floor = Vec::with_capacity(invocations);
    for _ in 0..invocations {
        let t0 = Instant::now();
        let r = client
            .post(standin.events_url())
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let _ = r.bytes().await;
        floor.push(t0.elapsed());
    }
    floor.sort();

    // The guide's approach, same stand-in, same alert events.
    let guide_standin = pagerduty::StandIn::start().await;
    let alert_body = std::env::temp_dir().join("guance-pagerduty-bench-alert.json");
    std::fs::write(&alert_body, alert["body"].as_str().unwrap()).unwrap();
    let recovery_body = std::env::temp_dir().join("guance-pagerduty-bench-recovery.json");
    std::fs::write(&recovery_body, recovery["body"].as_str().unwrap()).unwrap();
    let python = format!("{}/.venv/bin/python", env!("CARGO_MANIFEST_DIR"));
    let script = format!("{}/tools/guide_baseline.py", env!("CARGO_MANIFEST_DIR"));
    let run_guide =
        |url: String, env: Vec<(&'static str, String)>, files: Vec<String>, count: usize| {
            let (python, script) = (python.clone(), script.clone());
            async move {
                let exec = Instant::now();
                let output = tokio::task::spawn_blocking(move || {
                    let mut args = vec![script, url, ROUTING_KEY.to_owned(), count.to_string()];
                    args.extend(files);
                    Command::new(python)
                        .args(args)
                        .envs(env)
                        .output()
                        .expect("run the guide's approach")
                })
                .await
                .unwrap();
                let stdout = String::from_utf8_lossy(&output.stdout);
                let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}"))
                    .expect("guide results");
                (exec, result)
            }
        };
    let (_, guide) = run_guide(
        guide_standin.events_url(),
        Vec::new(),
        vec![alert_body.display().to_string()],
        invocations,
    )
    .await;
    let guide_conns = guide_standin.connections();
    let mut guide_latency = seconds(&guide["latencies_s"]);
    guide_latency.sort();
    let guide_cold = Duration::from_secs_f64(guide["first_event_done_s"].as_f64().unwrap_or(0.0));
    let guide_rss = guide["max_rss_kb"].as_u64().unwrap_or(0);
    // And what it does with an alert and its recovery.
    let accepted_before = guide_standin.accepted().len();
    let (_, guide_pair) = run_guide(
        guide_standin.events_url(),
        Vec::new(),
        vec![
            alert_body.display().to_string(),
            recovery_body.display().to_string(),
        ],
        2,
    )
    .await;
    let guide_pair_accepted = guide_standin.accepted()[accepted_before..].to_vec();

    // Queue mode, as deployed: the webhook answers once SQS (moto on loopback) took the
    // event; the dispatcher, a second process of the same binary, is fed by a local event
    // source mapping (long poll, invoke, delete) and delivers it. One event at a time, so
    // each figure is one event's latency with an empty queue, not a throughput.
    let moto = support::Moto::start();
    const QUEUE_WARMUP: usize = 10;
    let queue_invocations = (invocations / 4).max(50);
    let (queue_accept, queue_to_pagerduty, sqs_per_event) = queue_run(
        &spawn_with,
        &[],
        &moto,
        &standin,
        (&alert, &recovery),
        QUEUE_WARMUP,
        queue_invocations,
    )
    .await;
    let (qa50, qa99) = (
        percentile(&queue_accept, 0.5),
        percentile(&queue_accept, 0.99),
    );
    let (qp50, qp99) = (
        percentile(&queue_to_pagerduty, 0.5),
        percentile(&queue_to_pagerduty, 0.99),
    );

    // Over TLS at a distance (`network.rs`): what on-call feels. The same stand-in behind
    // TLS with a throwaway certificate that only the processes started here trust, and a
    // relay that makes every round trip take RTT.
    const RTT: Duration = Duration::from_millis(40);
    let cert_dir =
        std::env::temp_dir().join(format!("guance-pagerduty-bench-tls-{}", std::process::id()));
    let made = Command::new(&python)
        .arg(format!(
            "{}/tools/bench_tls_cert.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(&cert_dir)
        .status()
        .expect("run tools/bench_tls_cert.py");
    assert!(made.success(), "tools/bench_tls_cert.py failed");
    let far_standin = pagerduty::StandIn::start().await;
    let terminator = network::tls_terminator(&cert_dir, socket_of(&far_standin.events_url())).await;
    let far = network::distance(terminator, RTT).await;
    let far_url = format!("https://127.0.0.1:{}/v2/enqueue", far.port());
    let ca_file = cert_dir.join("ca.pem").display().to_string();
    let tls_env = [
        ("PAGERDUTY_EVENTS_URL", far_url.as_str()),
        ("SSL_CERT_FILE", ca_file.as_str()),
    ];

    // Cold: a new container's first page (the secret read, then TCP, TLS and the POST);
    // from the invocation handed over to its answer, and from exec.
    const TLS_COLD_RUNS: usize = 5;
    const TLS_WARM: usize = 100;
    let (starts, api, mut child) = cold_starts(&spawn_with, &tls_env, &alert, TLS_COLD_RUNS).await;
    let mut tls_cold: Vec<Duration> = starts
        .into_iter()
        .map(|(fetched, answered)| answered - fetched)
        .collect();
    let tls_conns_before = far_standin.connections();
    let mut tls_warm = Vec::with_capacity(TLS_WARM);
    for i in 0..TLS_WARM {
        let event = if i % 2 == 0 { &recovery } else { &alert };
        let t0 = Instant::now();
        let answer = api.invoke(event.clone()).await;
        tls_warm.push(t0.elapsed());
        assert_eq!(answer["statusCode"], 202, "TLS, warm {i}: {answer}");
    }
    let tls_warm_conns = far_standin.connections() - tls_conns_before;
    let _ = child.kill();
    let _ = child.wait();
    tls_cold.sort();
    tls_warm.sort();

    // The guide's approach over the same path: Python's requests trusts the same CA.
    let guide_conns_before = far_standin.connections();
    let (_, tls_guide) = run_guide(
        far_url.clone(),
        vec![("REQUESTS_CA_BUNDLE", ca_file.clone())],
        vec![alert_body.display().to_string()],
        TLS_WARM,
    )
    .await;
    let tls_guide_conns = far_standin.connections() - guide_conns_before;
    let mut tls_guide_latency = seconds(&tls_guide["latencies_s"]);
    tls_guide_latency.sort();
    let tls_guide_first =
        Duration::from_secs_f64(tls_guide["first_event_done_s"].as_f64().unwrap_or(0.0));

    // Queue mode over the same path: SQS stays on loopback (in AWS it is in the region).
    let (tls_queue_accept, tls_queue_to_pagerduty, _) = queue_run(
        &spawn_with,
        &tls_env,
        &moto,
        &far_standin,
        (&alert, &recovery),
        QUEUE_WARMUP,
        TLS_WARM / 2,
    )
    .await;
    let _ = std::fs::remove_dir_all(&cert_dir);

    let (p50, p99) = (percentile(&warm, 0.5), percentile(&warm, 0.99));
    let (g50, g99) = (
        percentile(&guide_latency, 0.5),
        percentile(&guide_latency, 0.99),
    );
    // A first page on loopback without TLS: from the invocation fetched to its answer.
    let cold_local = cold_answer.saturating_sub(cold_fetch);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let rtts = |d: Duration| d.as_secs_f64() / RTT.as_secs_f64();
    let tls_c50 = percentile(&tls_cold, 0.5);
    let tls_w50 = percentile(&tls_warm, 0.5);
    let tls_g50 = percentile(&tls_guide_latency, 0.5);
    let tls_qa50 = percentile(&tls_queue_accept, 0.5);
    let tls_qp50 = percentile(&tls_queue_to_pagerduty, 0.5);
    // What a page costs at other distances: the round trips each approach paid here
    // (rounded to halves), times that distance's round trip, plus what it spent locally.
    let at = |paid: Duration, local: Duration, rtt_ms: f64| {
        let trips =
            ((paid.saturating_sub(local)).as_secs_f64() / RTT.as_secs_f64() * 2.0).round() / 2.0;
        trips * rtt_ms + ms(local)
    };
    let distances = [10.0, 80.0, 200.0]
        .iter()
        .map(|&rtt_ms| {
            format!(
                "| {rtt_ms:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
                at(tls_c50, cold_local, rtt_ms),
                at(tls_w50, p50, rtt_ms),
                at(tls_qa50, qa50, rtt_ms),
                at(tls_qp50, qp50, rtt_ms),
                at(tls_g50, g50, rtt_ms),
            )
        })
        .collect::<Vec<_>>()
        .join("\n");

    let size = |path: &str| std::fs::metadata(path).map(|m| m.len()).ok();
    let x86_size = size(&bootstrap);
    let arm_size = arm64.as_deref().and_then(size);
    let mb = |b: Option<u64>| {
        b.map_or("not built".to_owned(), |b| {
            format!("{:.2} MB ({b} bytes)", b as f64 / 1e6)
        })
    };

    let (f50, f99) = (percentile(&floor, 0.5), percentile(&floor, 0.99));
    let per_1000 = |n: u64| n as f64 * 1000.0 / invocations as f64;
    let crit = |id: &str| {
        criterion_us(id).map_or("run `cargo bench` first".to_owned(), |v| {
            format!("{v:.1} µs")
        })
    };

    let machine = format!(
        "{}; {} cores; {}",
        command_output(
            "sh",
            &["-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]
        )
        .trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        command_output("uname", &["-srm"]),
    );
    let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let rustc = command_output("rustc", &["--version"]);
    let report = format!(
        r#"# Benchmarks

Written by `make bench` on {date}. Machine: {machine}. {rustc}, release profile (fat LTO,
one codegen unit). On loopback (the last section adds TLS and a network's round trip):
the release `bootstrap` under a minimal Lambda Runtime API (`examples/bench-e2e/`), a
counting Secrets Manager stand-in and the PagerDuty stand-in (`tests/support/pagerduty.rs`). The guide's approach is
`tools/guide_baseline.py` (Python {python_version}, `requests`, as in CONTRACT.md section 4)
over its own stand-in with the same alert events. Timings vary run to run by some percent;
they are measurements of this machine, not guarantees.

## Headline

| Figure | Ours | Aim | Guide's approach | Ours / guide |
|---|---|---|---|---|
| warm invocation p50 | {p50:.0} µs | ≤ floor + 10% ({floor_aim:.0} µs) | {g50:.0} µs | {r50:.2} |
| warm p50 less the Runtime API handoff | {net50:.0} µs | ≤ {floor_aim:.0} µs | | |
| warm invocation p99 | {p99:.0} µs | | {g99:.0} µs | {r99:.2} |
| cold start: exec to first invocation fetched (median of {cold_runs}; max) | {cold_fetch:.1} ms; {cold_fetch_max:.1} ms | ≤ 20 ms | | |
| cold start: exec to first answer posted (median; max) | {cold_answer:.1} ms; {cold_answer_max:.1} ms | | {guide_cold:.1} ms (exec to first POST done) | {rcold:.2} |
| peak RSS | {rss:.1} MB | ≤ 20 MB | {grss:.1} MB | {rrss:.2} |
| new TCP connections to PagerDuty per 1,000 warm invocations | {conns:.1} | ≤ 1 | {gconns:.1} | |
| Secrets Manager calls per 1,000 warm invocations | {sm:.1} | ≤ 1 | (key hard-coded) | |
| stripped binary, arm64 | {arm} | ≤ 8 MB | | |
| stripped binary, x86_64 | {x86} | | | |

## Detail

- Warm invocations: {invocations}, alerts and recoveries alternating; each is the Runtime API
  handing the function URL event over, authentication, parse, translate, encode, one
  PagerDuty POST on a kept-alive connection, the answer posted back. {delivered} events
  delivered, all answered 202.
- The floor, one bare keep-alive HTTP POST of the same PagerDuty event to the stand-in from
  this harness: p50 {f50:.0} µs, p99 {f99:.0} µs. Ours over the floor at p50: {over:+.0}%
  ({over_us:+.0} µs).
- Where that goes: a health-check invocation (`GET /`, the same Runtime API handoff and
  answer, no PagerDuty call) takes p50 {h50:.0} µs. Ours less that handoff is {net50:.0} µs
  per delivered event, {net_over:+.0}% over the bare POST: authentication, parse,
  translate, encode, the JSON log line and the client's own request handling. In Lambda the
  handoff is the platform's, paid by every function alike.
- The pure core (criterion, `cargo bench`, medians): parse + translate + encode of the
  CONTRACT.md example {c_example}; of a 100 KB event {c_100k}; of an array of 100 events
  {c_batch}; translate alone for the example {c_translate} (aim ≤ 20 µs).
- Guide's approach: one new connection per event ({gconns_total} connections for
  {invocations} events), no timeout, no retry. With the CONTRACT.md alert and its recovery
  it delivered {guide_pair_accepted} of 2 (the recovery's severity `ok` is refused by
  PagerDuty with a 400: statuses {guide_pair_statuses}), so the incident never resolves;
  and it sets no dedup_key, so every repeat opens a new incident.

## Queue mode

The deployed default: the webhook answers Guance once SQS took the event, and a second
process of the same binary, the dispatcher, fed by a local stand-in for the event source
mapping (`tests/support/event_source.rs`: long poll, invoke, delete), delivers it. SQS is
moto on loopback; {queue_invocations} events one at a time after {queue_warmup} warm-up
events, alerts and recoveries alternating.

| Figure | p50 | p99 |
|---|---|---|
| direct mode: webhook to answer (includes the PagerDuty POST) | {p50_ms:.2} ms | {p99_ms:.2} ms |
| queue mode: webhook to answer (one `SendMessageBatch`) | {qa50:.2} ms | {qa99:.2} ms |
| queue mode: webhook call to PagerDuty's 202 (queue, poll, dispatcher, POST) | {qp50:.2} ms | {qp99:.2} ms |

The functions' SQS calls per event, counted by a proxy in front of moto
(`examples/bench-e2e/sqs_calls.rs`; the event source mapping's own receive and delete are
Lambda's, not counted here):

| SQS operation | calls per event |
|---|---|
{sqs_rows}

`DeleteMessageBatch` is the dispatcher deleting each record as soon as PagerDuty has
taken it, before it sends the next, so that a crash or timeout later in the batch never
sends it again: the extra SQS call per event that delete-as-delivered costs (the mapping
still deletes the batch after the invocation, a no-op for records already gone). With
one event at a time each batch holds one record; in a backlog a batch holds up to ten and
the same one delete per delivered record applies.

What this shows and what it does not: the webhook's answer in queue mode costs one SQS
call instead of one PagerDuty call, here both on loopback, where moto (Python) is slower
than the stand-in; in AWS, SQS is in the same region and PagerDuty is not, so queue mode
answers Guance sooner there. Accept to PagerDuty adds the event source mapping's pickup:
here a long poll that moto wakes at once; Lambda's pollers and a second invocation add
their own time, which only a deployment can measure (the issue's estimate: a fraction of
a second).

## Over TLS, {rtt_ms:.0} ms away

What on-call feels is Guance's POST to PagerDuty's 202 over TLS across a network, where a
new connection costs round trips that loopback hides. Here the PagerDuty stand-in sits
behind TLS (a throwaway CA made by `tools/bench_tls_cert.py`, trusted only by the
processes this bench starts, through `SSL_CERT_FILE` and `REQUESTS_CA_BUNDLE`) and a relay
that delays every byte by half of a {rtt_ms:.0} ms round trip each way and holds a new
connection's first bytes one more round trip, as the TCP handshake would
(`examples/bench-e2e/network.rs`). The guide's approach runs over the same path. SQS and
Secrets Manager stay on loopback: in AWS they are in the function's region.

| Figure | Ours | Round trips | Guide's approach | Round trips |
|---|---|---|---|---|
| first page of a new container: invocation to answer (median of {tls_cold_runs}) | {tc50:.1} ms | {tc_rt:.1} | {tg_first:.1} ms (first event, exec to done, with Python's start) | |
| warm page: invocation to answer, p50 | {tw50:.1} ms | {tw_rt:.1} | {tg50:.1} ms (every event) | {tg_rt:.1} |
| warm page, p99 | {tw99:.1} ms | | {tg99:.1} ms | |
| new connections to PagerDuty per {tls_warm} warm pages | {tw_conns} | | {tg_conns} | |
| queue mode: webhook to Guance's answer, p50 | {tqa50:.1} ms | 0 | | |
| queue mode: webhook call to PagerDuty receiving the event, p50 | {tqp50:.1} ms | {tqp_rt:.1} | | |

Round trips are measured: (time over TLS − the same figure on loopback) / {rtt_ms:.0} ms.
Ours pays 3 on a container's first page (TCP, TLS 1.3, the POST) and 1 per page after
that, on the kept-alive connection; the guide's approach pays 3 on every event, because it
opens a new connection each time. In queue mode Guance's answer pays none (SQS is in the
region), and the event reaches PagerDuty half a round trip after the dispatcher sends it
on its kept-alive connection.

Our first page, less its 3 round trips, took {tc_local:.1} ms, against {c_local:.1} ms for
a first page on loopback without TLS: the difference is the first handshake's one-time
work, mostly reading the system's root certificates (rustls-platform-verifier loads them
on first use: here the files in `/etc/ssl/certs`, on Lambda's Amazon Linux 2023 one
bundle).

What that means at other distances (same round trips, plus what each spent locally):

| Round trip to PagerDuty | Ours, first page: Guance answered | Ours, warm page: Guance answered | Ours, queue mode: Guance answered | Ours, queue mode: PagerDuty has it | Guide, every event: Guance answered |
|---|---|---|---|---|---|
{distances}
"#,
        python_version = command_output(
            &python,
            &["-c", "import platform; print(platform.python_version())"]
        ),
        floor_aim = us(f50) * 1.1,
        p50 = us(p50),
        p99 = us(p99),
        g50 = us(g50),
        g99 = us(g99),
        r50 = us(p50) / us(g50),
        r99 = us(p99) / us(g99),
        cold_fetch = cold_fetch.as_secs_f64() * 1e3,
        cold_answer = cold_answer.as_secs_f64() * 1e3,
        cold_runs = COLD_RUNS,
        cold_fetch_max = cold_fetch_max.as_secs_f64() * 1e3,
        cold_answer_max = cold_answer_max.as_secs_f64() * 1e3,
        guide_cold = guide_cold.as_secs_f64() * 1e3,
        rcold = cold_answer.as_secs_f64() / guide_cold.as_secs_f64().max(1e-9),
        rss = rss_kb as f64 / 1024.0,
        grss = guide_rss as f64 / 1024.0,
        rrss = rss_kb as f64 / (guide_rss as f64).max(1.0),
        conns = per_1000(conns_warm),
        gconns = per_1000(guide_conns),
        gconns_total = guide_conns,
        sm = per_1000(sm_warm),
        arm = mb(arm_size),
        x86 = mb(x86_size),
        f50 = us(f50),
        f99 = us(f99),
        over = (us(p50) / us(f50) - 1.0) * 100.0,
        over_us = us(p50) - us(f50),
        h50 = us(percentile(&handoff, 0.5)),
        net50 = us(p50) - us(percentile(&handoff, 0.5)),
        net_over = ((us(p50) - us(percentile(&handoff, 0.5))) / us(f50) - 1.0) * 100.0,
        c_example = crit("parse_translate_encode/contract_example"),
        c_100k = crit("parse_translate_encode/event_100kb"),
        c_batch = crit("parse_translate_encode/array_of_100"),
        c_translate = crit("translate_only_contract_example"),
        guide_pair_accepted = guide_pair_accepted.len(),
        guide_pair_statuses = guide_pair["statuses"],
        queue_warmup = QUEUE_WARMUP,
        sqs_rows = sqs_per_event
            .iter()
            .map(|(operation, per)| format!("| `{operation}` | {per:.2} |"))
            .collect::<Vec<_>>()
            .join("\n"),
        p50_ms = us(p50) / 1e3,
        p99_ms = us(p99) / 1e3,
        qa50 = us(qa50) / 1e3,
        qa99 = us(qa99) / 1e3,
        qp50 = us(qp50) / 1e3,
        qp99 = us(qp99) / 1e3,
        rtt_ms = ms(RTT),
        tls_cold_runs = TLS_COLD_RUNS,
        tls_warm = TLS_WARM,
        tc50 = ms(tls_c50),
        tc_rt = rtts(tls_c50.saturating_sub(cold_local)),
        tg_first = ms(tls_guide_first),
        tw50 = ms(tls_w50),
        tw99 = ms(percentile(&tls_warm, 0.99)),
        tw_rt = rtts(tls_w50.saturating_sub(p50)),
        tg50 = ms(tls_g50),
        tg99 = ms(percentile(&tls_guide_latency, 0.99)),
        tg_rt = rtts(tls_g50.saturating_sub(g50)),
        tw_conns = tls_warm_conns,
        tg_conns = tls_guide_conns,
        tqa50 = ms(tls_qa50),
        tqp50 = ms(tls_qp50),
        tqp_rt = rtts(tls_qp50.saturating_sub(qp50)),
        tc_local = ms(tls_c50.saturating_sub(RTT * 3)),
        c_local = ms(cold_local),
    );
    std::fs::write(&out, &report).expect("write the report");
    println!("{report}");
    println!("bench: wrote {out}");
}
