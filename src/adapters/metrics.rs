//! CloudWatch metrics in Embedded Metric Format (EMF): JSON lines on stdout that
//! CloudWatch Logs turns into metrics, with no API call and no agent. An invocation
//! tallies what became of its events and writes the tally once, as it ends: one line per
//! route and outcome, so a storm of 1,000 events costs a handful of lines, not 1,000.
//!
//! Dimensions stay bounded: `Route` is the route's path ([`crate::adapters::secret::route_path`]):
//! `/` or `/<name>` for a route the secret names
//! (a request for any other path is refused before anything is counted), and `Outcome`
//! is one of [`Outcome::ALL`].

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Used when `METRICS_NAMESPACE` is unset.
pub const DEFAULT_NAMESPACE: &str = "guance-pagerduty";

/// Events, by route and outcome (`Count`).
pub const EVENTS: &str = "Events";
/// Time from the first PagerDuty attempt for an event to its answer, retries included.
pub const PAGERDUTY_LATENCY: &str = "PagerDutyLatency";
/// PagerDuty requests made for an event within one invocation.
pub const PAGERDUTY_ATTEMPTS: &str = "PagerDutyAttempts";
/// Queue mode: time from SQS taking an event to the dispatcher finishing with it.
pub const QUEUE_WAIT: &str = "QueueWait";
/// Requests refused whole before any event in them was counted (a wrong token, an
/// unknown route, a body too large or unreadable), by `Reason`; with no dimension, only
/// those an alarm should see (not a path that is no route, nor a wrong method: what
/// scanners of a public URL cause).
pub const REQUESTS_REFUSED: &str = "RequestsRefused";
/// Queue mode: for an event whose attempt failed (`retrying`, `key_refused`), how long it
/// has been in the queue: an outage's length, seen from the dispatcher's own attempts.
pub const RETRYING_AGE: &str = "RetryingAge";
/// Two-way: PagerDuty's signed webhook deliveries, by `Outcome` (a [`WebhookOutcome`])
/// and `Reason` (why: a fixed code), and by `Outcome` alone.
pub const PAGERDUTY_WEBHOOKS: &str = "PagerDutyWebhooks";
/// Two-way: Guance events to recover, by `Workspace` (only a workspace the secret names)
/// and `Outcome` (a [`RestoreOutcome`]), and by `Outcome` alone.
pub const GUANCE_RESTORES: &str = "GuanceRestores";
/// Two-way: how long one call to Guance's OpenAPI took, by `Workspace` and over all.
pub const GUANCE_LATENCY: &str = "GuanceLatency";
pub const WORKSPACE: &str = "Workspace";
pub const ROUTE: &str = "Route";
pub const OUTCOME: &str = "Outcome";
pub const REASON: &str = "Reason";

/// EMF takes at most 100 values per metric in one line.
const MAX_VALUES_PER_LINE: usize = 100;

/// What became of an event. `Received` counts what came in; every other outcome is an
/// event's end within one invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// In the body of an authenticated request to a known route.
    Received,
    /// Not taken: an event that cannot be translated (a recovery with nothing to match),
    /// answered as such in the per-event results while the rest of its body goes on.
    /// Guance does not send it again: the page is lost unless someone fixes the monitor.
    Rejected,
    /// On the delivery queue (queue mode's webhook).
    Queued,
    /// PagerDuty answered 202.
    Delivered,
    /// PagerDuty refused it for good (400); in queue mode it is on the dead-letter queue.
    Refused,
    /// Not delivered and not queued: Guance was answered 5xx (PagerDuty or SQS
    /// unavailable, or an earlier event of the request failed).
    Failed,
    /// Queue mode: the attempt failed; the event waits in the queue for the next one.
    Retrying,
    /// PagerDuty refused the routing key (a deleted or mistyped integration): a
    /// configuration fault. In queue mode the event waits in its lane until the secret is
    /// fixed; in direct mode Guance was answered 503.
    KeyRefused,
    /// Deliberately not sent (info events set to drop).
    Dropped,
    /// `DRY_RUN`: translated and logged, not sent.
    DryRun,
}

impl Outcome {
    pub const ALL: [Outcome; 10] = [
        Outcome::Received,
        Outcome::Rejected,
        Outcome::Queued,
        Outcome::Delivered,
        Outcome::Refused,
        Outcome::Failed,
        Outcome::Retrying,
        Outcome::KeyRefused,
        Outcome::Dropped,
        Outcome::DryRun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Received => "received",
            Outcome::Rejected => "rejected",
            Outcome::Queued => "queued",
            Outcome::Delivered => "delivered",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
            Outcome::Retrying => "retrying",
            Outcome::KeyRefused => "key_refused",
            Outcome::Dropped => "dropped",
            Outcome::DryRun => "dry_run",
        }
    }
}

/// What became of one of PagerDuty's webhook deliveries (signed: a bad signature is a
/// refused request, `Reason=bad_signature`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WebhookOutcome {
    /// A person's resolve, and every Guance event of it is recovered (or was already, or
    /// cannot be: see `GuanceRestores`). Answered 2xx.
    Recovered,
    /// Nothing to do (a ping, another event type, automation, a merge, no Guance alert,
    /// an unreadable body). Answered 2xx.
    Ignored,
    /// Answered 429 or 503 so that PagerDuty delivers it again: Guance or PagerDuty's
    /// REST API could not be reached in time, or two-way is not fully configured.
    Retry,
}

impl WebhookOutcome {
    pub const ALL: [WebhookOutcome; 3] = [
        WebhookOutcome::Recovered,
        WebhookOutcome::Ignored,
        WebhookOutcome::Retry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookOutcome::Recovered => "recovered",
            WebhookOutcome::Ignored => "ignored",
            WebhookOutcome::Retry => "retry",
        }
    }
}

/// What became of one Guance event a person's resolve asked to recover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RestoreOutcome {
    /// Guance took the restore.
    Restored,
    /// Restored (or refused for good) by an earlier delivery of the same incident this
    /// container handled: not asked again, to spare Guance's 20 requests a minute.
    AlreadyDone,
    /// Not restored: an open incident holds an alert of the same `dedup_key`, so the
    /// Guance object is paging again, and a restore would close that live alert.
    PagingAgain,
    /// The secret has no key for the event's workspace: not recovered.
    NoKey,
    /// Guance refused it for good (a wrong key, an unknown ref): not recovered.
    Refused,
    /// Over Guance's rate limit: left for PagerDuty's retry.
    RateLimited,
    /// Guance failed (5xx), timed out or could not be reached: left for the retry.
    Unavailable,
    /// Not tried: the delivery's time ran out, or its workspace was rate limited.
    NotAttempted,
}

impl RestoreOutcome {
    pub const ALL: [RestoreOutcome; 8] = [
        RestoreOutcome::Restored,
        RestoreOutcome::AlreadyDone,
        RestoreOutcome::PagingAgain,
        RestoreOutcome::NoKey,
        RestoreOutcome::Refused,
        RestoreOutcome::RateLimited,
        RestoreOutcome::Unavailable,
        RestoreOutcome::NotAttempted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RestoreOutcome::Restored => "restored",
            RestoreOutcome::AlreadyDone => "already_done",
            RestoreOutcome::PagingAgain => "paging_again",
            RestoreOutcome::NoKey => "no_key",
            RestoreOutcome::Refused => "refused",
            RestoreOutcome::RateLimited => "rate_limited",
            RestoreOutcome::Unavailable => "unavailable",
            RestoreOutcome::NotAttempted => "not_attempted",
        }
    }

    /// Whether PagerDuty's retry of the delivery can still recover this event.
    pub fn wants_retry(self) -> bool {
        matches!(
            self,
            RestoreOutcome::RateLimited
                | RestoreOutcome::Unavailable
                | RestoreOutcome::NotAttempted
        )
    }
}

/// What one PagerDuty delivery cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagerDutyCall {
    pub ms: u64,
    pub attempts: u32,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Samples {
    events: u64,
    latency_ms: Vec<u64>,
    attempts: Vec<u64>,
    queue_wait_ms: Vec<u64>,
}

/// One invocation's counts and samples, by route and outcome, and its refused requests
/// by reason.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    groups: BTreeMap<(String, Outcome), Samples>,
    /// By (reason, whether it counts towards the alarm).
    refused_requests: BTreeMap<(&'static str, bool), u64>,
    /// Two-way: deliveries by (outcome, reason).
    webhooks: BTreeMap<(WebhookOutcome, &'static str), u64>,
    /// Two-way: restores by (workspace the secret names, outcome): count and latencies.
    restores: BTreeMap<(Option<String>, RestoreOutcome), (u64, Vec<u64>)>,
}

impl Tally {
    /// A whole request was refused for `reason` (a fixed error code, so the dimension
    /// stays bounded) before any of its events was counted; `alarming` adds it to the
    /// total with no dimension, which the alarm watches.
    pub fn refused_request(&mut self, reason: &'static str, alarming: bool) {
        *self.refused_requests.entry((reason, alarming)).or_default() += 1;
    }

    /// One of PagerDuty's webhook deliveries ended as `outcome`, for `reason` (a fixed
    /// code).
    pub fn pagerduty_webhook(&mut self, outcome: WebhookOutcome, reason: &'static str) {
        *self.webhooks.entry((outcome, reason)).or_default() += 1;
    }

    /// One Guance event to recover ended as `outcome`. `workspace` only when the secret
    /// names it (so the dimension stays bounded); `call_ms` when Guance was called.
    pub fn restore(
        &mut self,
        workspace: Option<&str>,
        outcome: RestoreOutcome,
        call_ms: Option<u64>,
    ) {
        let entry = self
            .restores
            .entry((workspace.map(str::to_owned), outcome))
            .or_default();
        entry.0 += 1;
        entry.1.extend(call_ms);
    }

    /// `events` events of `route` ended (or arrived) as `outcome`.
    pub fn count(&mut self, route: &str, outcome: Outcome, events: u64) {
        if events > 0 {
            self.samples(route, outcome).events += events;
        }
    }

    /// One event ended as `outcome`, with what PagerDuty took (if it was called) and how
    /// long it had waited in the queue (if it came from one).
    pub fn event(
        &mut self,
        route: &str,
        outcome: Outcome,
        pagerduty: Option<PagerDutyCall>,
        queue_wait_ms: Option<u64>,
    ) {
        let samples = self.samples(route, outcome);
        samples.events += 1;
        if let Some(call) = pagerduty {
            samples.latency_ms.push(call.ms);
            samples.attempts.push(u64::from(call.attempts));
        }
        samples.queue_wait_ms.extend(queue_wait_ms);
    }

    fn samples(&mut self, route: &str, outcome: Outcome) -> &mut Samples {
        self.groups.entry((route.to_owned(), outcome)).or_default()
    }
}

/// Where metric lines go: stdout in Lambda, memory in tests.
pub trait MetricSink: Send + Sync {
    fn write_lines(&self, lines: &[String]);
}

/// Lambda sends the function's stdout to CloudWatch Logs, where EMF lines become metrics.
pub struct Stdout;

impl MetricSink for Stdout {
    fn write_lines(&self, lines: &[String]) {
        // Under the stdout lock throughout, so no other output lands inside a line.
        let mut out = std::io::stdout().lock();
        for line in lines {
            let _ = out.write_all(line.as_bytes());
            let _ = out.write_all(b"\n");
        }
        let _ = out.flush();
    }
}

/// Keeps the lines, for tests and local tools.
#[derive(Default, Clone)]
pub struct Memory(Arc<Mutex<Vec<String>>>);

impl Memory {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl MetricSink for Memory {
    fn write_lines(&self, lines: &[String]) {
        if let Ok(mut kept) = self.0.lock() {
            kept.extend_from_slice(lines);
        }
    }
}

/// Where metrics go: the namespace and the sink.
#[derive(Clone)]
pub struct Metrics {
    namespace: String,
    sink: Arc<dyn MetricSink>,
}

impl Metrics {
    pub fn new(namespace: impl Into<String>, sink: Arc<dyn MetricSink>) -> Self {
        Metrics {
            namespace: namespace.into(),
            sink,
        }
    }

    /// Writes `tally` as EMF lines, stamped now.
    pub fn publish(&self, tally: &Tally, request_id: &str) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let lines = render(&self.namespace, now_ms, tally, request_id);
        if !lines.is_empty() {
            self.sink.write_lines(&lines);
        }
    }
}

/// CloudWatch's rule for a custom namespace: 1 to 255 of letters, digits and `.-_/#: `,
/// not starting with `AWS/`.
pub fn is_valid_namespace(namespace: &str) -> bool {
    (1..=255).contains(&namespace.len())
        && !namespace.starts_with("AWS/")
        && namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_/#: ".contains(&b))
}

/// The EMF lines for `tally`: per route and outcome, `Events` by (Route, Outcome) and by
/// Outcome alone; the latency, attempts and queue wait samples by Route and over all
/// routes. Samples beyond EMF's 100 values per line continue on further lines.
pub fn render(namespace: &str, timestamp_ms: u64, tally: &Tally, request_id: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for ((reason, alarming), count) in &tally.refused_requests {
        let dimensions = if *alarming {
            json!([[REASON], []])
        } else {
            json!([[REASON]])
        };
        lines.push(
            json!({
                REQUESTS_REFUSED: count,
                REASON: reason,
                "request_id": request_id,
                "_aws": {"Timestamp": timestamp_ms, "CloudWatchMetrics": [{
                    "Namespace": namespace,
                    "Dimensions": dimensions,
                    "Metrics": [{"Name": REQUESTS_REFUSED, "Unit": "Count"}],
                }]},
            })
            .to_string(),
        );
    }
    for ((outcome, reason), count) in &tally.webhooks {
        lines.push(
            json!({
                PAGERDUTY_WEBHOOKS: count,
                OUTCOME: outcome.as_str(),
                REASON: reason,
                "request_id": request_id,
                "_aws": {"Timestamp": timestamp_ms, "CloudWatchMetrics": [{
                    "Namespace": namespace,
                    "Dimensions": [[OUTCOME, REASON], [OUTCOME]],
                    "Metrics": [{"Name": PAGERDUTY_WEBHOOKS, "Unit": "Count"}],
                }]},
            })
            .to_string(),
        );
    }
    for ((workspace, outcome), (count, latencies)) in &tally.restores {
        let mut root = Map::new();
        root.insert(GUANCE_RESTORES.into(), json!(count));
        root.insert(OUTCOME.into(), json!(outcome.as_str()));
        let mut directives = vec![json!({
            "Namespace": namespace,
            "Dimensions": if workspace.is_some() { json!([[WORKSPACE, OUTCOME], [OUTCOME]]) } else { json!([[OUTCOME]]) },
            "Metrics": [{"Name": GUANCE_RESTORES, "Unit": "Count"}],
        })];
        if let Some(workspace) = workspace {
            root.insert(WORKSPACE.into(), json!(workspace));
            if !latencies.is_empty() {
                // A delivery asks for a handful of restores: far below EMF's 100 values.
                root.insert(
                    GUANCE_LATENCY.into(),
                    json!(latencies
                        .iter()
                        .take(MAX_VALUES_PER_LINE)
                        .collect::<Vec<_>>()),
                );
                directives.push(json!({
                    "Namespace": namespace,
                    "Dimensions": [[WORKSPACE], []],
                    "Metrics": [{"Name": GUANCE_LATENCY, "Unit": "Milliseconds"}],
                }));
            }
        }
        root.insert("request_id".into(), json!(request_id));
        root.insert(
            "_aws".into(),
            json!({"Timestamp": timestamp_ms, "CloudWatchMetrics": directives}),
        );
        lines.push(Value::Object(root).to_string());
    }
    for ((route, outcome), samples) in &tally.groups {
        let longest = samples
            .latency_ms
            .len()
            .max(samples.queue_wait_ms.len())
            .max(1);
        for (chunk, start) in (0..longest).step_by(MAX_VALUES_PER_LINE).enumerate() {
            let part = |values: &[u64]| -> Vec<u64> {
                values
                    .iter()
                    .skip(start)
                    .take(MAX_VALUES_PER_LINE)
                    .copied()
                    .collect()
            };
            let mut root = Map::new();
            let mut directives = Vec::new();
            if chunk == 0 && samples.events > 0 {
                root.insert(EVENTS.into(), json!(samples.events));
                directives.push(json!({
                    "Namespace": namespace,
                    "Dimensions": [[ROUTE, OUTCOME], [OUTCOME]],
                    "Metrics": [{"Name": EVENTS, "Unit": "Count"}],
                }));
            }
            let mut timings = Vec::new();
            // A failed attempt's time in the queue is how long the event has been
            // waiting so far, not what delivery took: its own metric.
            let wait = match outcome {
                Outcome::Retrying | Outcome::KeyRefused => RETRYING_AGE,
                _ => QUEUE_WAIT,
            };
            for (name, unit, values) in [
                (PAGERDUTY_LATENCY, "Milliseconds", &samples.latency_ms),
                (PAGERDUTY_ATTEMPTS, "Count", &samples.attempts),
                (wait, "Milliseconds", &samples.queue_wait_ms),
            ] {
                let values = part(values);
                if !values.is_empty() {
                    root.insert(name.into(), json!(values));
                    timings.push(json!({"Name": name, "Unit": unit}));
                }
            }
            if !timings.is_empty() {
                directives.push(json!({
                    "Namespace": namespace,
                    "Dimensions": [[ROUTE], []],
                    "Metrics": timings,
                }));
            }
            if directives.is_empty() {
                continue;
            }
            root.insert(ROUTE.into(), json!(route));
            root.insert(OUTCOME.into(), json!(outcome.as_str()));
            root.insert("request_id".into(), json!(request_id));
            root.insert(
                "_aws".into(),
                json!({"Timestamp": timestamp_ms, "CloudWatchMetrics": directives}),
            );
            lines.push(Value::Object(root).to_string());
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(lines: &[String]) -> Vec<Value> {
        lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn one_line_per_route_and_outcome_with_counts_and_samples() {
        let mut tally = Tally::default();
        tally.count("/", Outcome::Received, 3);
        let call = |ms| Some(PagerDutyCall { ms, attempts: 1 });
        tally.event("/", Outcome::Delivered, call(40), None);
        tally.event("/", Outcome::Delivered, call(60), None);
        tally.event("/", Outcome::Dropped, None, None);
        tally.event("/pay", Outcome::Retrying, call(5000), None);
        let lines = parsed(&render("ns", 1_700_000_000_000, &tally, "r-1"));
        let summary: Vec<(String, String, Value)> = lines
            .iter()
            .map(|l| {
                (
                    l["Route"].as_str().unwrap().to_owned(),
                    l["Outcome"].as_str().unwrap().to_owned(),
                    l["Events"].clone(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("/".into(), "received".into(), json!(3)),
                ("/".into(), "delivered".into(), json!(2)),
                ("/".into(), "dropped".into(), json!(1)),
                ("/pay".into(), "retrying".into(), json!(1)),
            ]
        );
        let delivered = &lines[1];
        assert_eq!(delivered["PagerDutyLatency"], json!([40, 60]));
        assert_eq!(delivered["PagerDutyAttempts"], json!([1, 1]));
        assert_eq!(delivered["request_id"], "r-1");
        assert_eq!(delivered["_aws"]["Timestamp"], 1_700_000_000_000u64);
        let directives = delivered["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 2);
        assert_eq!(directives[1]["Dimensions"], json!([["Route"], []]));
        // No samples, no timing directive: a metric is only declared with its value.
        let dropped = &lines[2];
        assert_eq!(
            dropped["_aws"]["CloudWatchMetrics"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert!(dropped.get("PagerDutyLatency").is_none());
    }

    #[test]
    fn a_refused_request_is_one_line_by_reason() {
        let mut tally = Tally::default();
        tally.refused_request("unauthorized", true);
        tally.refused_request("unauthorized", true);
        tally.refused_request("invalid_path", false);
        let lines = parsed(&render("ns", 7, &tally, "r"));
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0][REASON], "invalid_path");
        assert_eq!(
            lines[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Reason"]]),
            "by reason only: not in the total the alarm watches"
        );
        assert_eq!(lines[1][REQUESTS_REFUSED], 2);
        assert_eq!(lines[1][REASON], "unauthorized");
        let directive = &lines[1]["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Dimensions"], json!([["Reason"], []]));
        assert_eq!(directive["Namespace"], "ns");
    }

    #[test]
    fn samples_beyond_one_hundred_continue_on_further_lines() {
        let mut tally = Tally::default();
        for ms in 0..250 {
            tally.event(
                "/",
                Outcome::Delivered,
                Some(PagerDutyCall { ms, attempts: 1 }),
                Some(ms * 2),
            );
        }
        let lines = parsed(&render("ns", 1, &tally, "r"));
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["Events"], 250);
        assert!(lines[1].get("Events").is_none(), "counted once");
        let latencies: Vec<u64> = lines
            .iter()
            .flat_map(|l| l["PagerDutyLatency"].as_array().unwrap().clone())
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(latencies, (0..250).collect::<Vec<_>>());
        for line in &lines {
            for name in [PAGERDUTY_LATENCY, PAGERDUTY_ATTEMPTS, QUEUE_WAIT] {
                assert!(line[name].as_array().unwrap().len() <= 100);
            }
        }
    }

    #[test]
    fn nothing_tallied_writes_nothing() {
        assert!(render("ns", 1, &Tally::default(), "r").is_empty());
        let mut tally = Tally::default();
        tally.count("/", Outcome::Received, 0);
        assert_eq!(tally, Tally::default(), "a count of 0 adds nothing");
        tally.count("/", Outcome::Received, 1);
        let memory = Memory::default();
        let metrics = Metrics::new("ns", Arc::new(memory.clone()));
        metrics.publish(&Tally::default(), "r");
        assert!(memory.lines().is_empty());
        metrics.publish(&tally, "r");
        assert_eq!(memory.lines().len(), 1);
    }

    #[test]
    fn namespaces() {
        for ok in [
            "guance-pagerduty",
            "guance-pagerduty/prod",
            "a",
            "Team #1: alerts",
        ] {
            assert!(is_valid_namespace(ok), "{ok}");
        }
        for bad in ["", "AWS/Lambda", "caf\u{e9}", "a\"b", &"x".repeat(256)] {
            assert!(!is_valid_namespace(bad), "{bad}");
        }
    }

    #[test]
    fn outcome_names_are_distinct() {
        let names: std::collections::BTreeSet<_> =
            Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(names.len(), Outcome::ALL.len());
    }
}
