// The body of the `handler` fuzz target, shared with `tests/fuzz_seeds.rs`, which compiles
// it into `make test` and runs it over the seed corpus: a target that no longer builds
// (the `App` it wires gained a field), or a seed that fails it, fails the tests.

use guance_pagerduty::adapters::delivery::{PagerDutyClient, RetryPolicy};
use guance_pagerduty::entry::app::{App, Invocation};
use guance_pagerduty::adapters::metrics::{MetricSink, Metrics};
use guance_pagerduty::adapters::secret::{RoutingKey, SecretCache, StaticSource, WebhookSecrets, WebhookToken};
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const HANDLER_ROUTING_KEY: &str = "FuzzR0utingKey000000000000000000";
const HANDLER_TOKEN: &str = "demo-webhook-token";
const HANDLER_OLD_TOKEN: &str = "demo-webhook-token-before-rotation";

struct Harness {
    runtime: tokio::runtime::Runtime,
    app: App<StaticSource>,
    template: serde_json::Value,
}

/// Metric lines are rendered and dropped: a fuzz run writes millions.
struct Discard;

impl MetricSink for Discard {
    fn write_lines(&self, lines: &[String]) {
        for line in lines {
            let _: serde_json::Value = serde_json::from_str(line).expect("a metric line is JSON");
            assert!(
                !line.contains(HANDLER_ROUTING_KEY) && !line.contains(HANDLER_TOKEN),
                "a secret in a metric line"
            );
        }
    }
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let secrets = WebhookSecrets {
            routing_key: RoutingKey::new(HANDLER_ROUTING_KEY).unwrap(),
            webhook_tokens: [HANDLER_TOKEN, HANDLER_OLD_TOKEN]
                .iter()
                .filter_map(|t| WebhookToken::new(t))
                .collect(),
            routes: [("payments".to_owned(), RoutingKey::new(HANDLER_ROUTING_KEY).unwrap())].into(),
        };
        let app = App {
            queue: None,
            settings: Default::default(),
            secrets: SecretCache::new(StaticSource(secrets), Duration::from_secs(300), Duration::from_secs(60)),
            // DRY_RUN: the handler does everything but the POST, so no network is needed.
            pagerduty: PagerDutyClient::new(
                PagerDutyClient::http_client().unwrap(),
                "http://127.0.0.1:9/v2/enqueue",
                RetryPolicy::default(),
            ),
            max_body_bytes: 1 << 20,
            allow_unauthenticated: false,
            dry_run: true,
            deadline_margin: Duration::from_millis(100),
            default_budget: Duration::from_secs(1),
            metrics: Metrics::new("guance-pagerduty/fuzz", Arc::new(Discard)),
        };
        let template = serde_json::from_str(include_str!("../../events/alert.json")).unwrap();
        Harness { runtime, app, template }
    })
}

/// The whole handler on arbitrary requests: bytes that parse as a function URL event are
/// used as one (method, path, query, headers, body, base64 flag all mutated); any other
/// bytes become the body of an authenticated POST. The answer is always JSON with an
/// expected status, never a panic, and never holds the routing key or the token.
pub fn handler(data: &[u8]) {
    let h = harness();
    let request: ApiGatewayV2httpRequest = match serde_json::from_slice(data) {
        Ok(request) => request,
        Err(_) => {
            let mut event = h.template.clone();
            event["body"] = serde_json::Value::String(String::from_utf8_lossy(data).into_owned());
            match serde_json::from_value(event) {
                Ok(request) => request,
                Err(_) => return,
            }
        }
    };
    let response = h.runtime.block_on(h.app.handle(request, &Invocation::new("fuzz", 0)));
    assert!(
        [200, 202, 400, 401, 404, 405, 413].contains(&response.status_code),
        "unexpected status {}",
        response.status_code
    );
    let Some(lambda_http::Body::Text(text)) = &response.body else { panic!("no text body") };
    let _: serde_json::Value = serde_json::from_str(text).expect("the answer is JSON");
    assert!(
        !text.contains(HANDLER_ROUTING_KEY) && !text.contains(HANDLER_TOKEN),
        "a secret in the answer"
    );
}
