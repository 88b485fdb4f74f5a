// The body of the `handler` fuzz target, shared with `tests/fuzz_seeds.rs`, which compiles
// it into `make test` and runs it over the seed corpus: a target that no longer builds
// (the `App` it wires gained a field), or a seed that fails it, fails the tests.

use guance_pagerduty::adapters::delivery::{PagerDutyClient, RetryPolicy};
use guance_pagerduty::adapters::guance_openapi::GuanceOpenApi;
use guance_pagerduty::adapters::metrics::{MetricSink, Metrics};
use guance_pagerduty::adapters::pagerduty_rest::PagerDutyRest;
use guance_pagerduty::adapters::secret::{
    Credential, GuanceWorkspace, RoutingKey, SecretCache, StaticSource, TwoWaySecrets,
    WebhookSecrets, WebhookToken,
};
use guance_pagerduty::entry::app::{App, Invocation, TwoWay};
use hmac::{KeyInit, Mac};
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const HANDLER_ROUTING_KEY: &str = "FuzzR0utingKey000000000000000000";
const HANDLER_TOKEN: &str = "demo-webhook-token";
const HANDLER_OLD_TOKEN: &str = "demo-webhook-token-before-rotation";
const HANDLER_SIGNING_SECRET: &str = "fuzz-pagerduty-signing-secret";
const HANDLER_API_TOKEN: &str = "fuzz-pagerduty-api-token";
const HANDLER_GUANCE_KEY: &str = "fuzz-guance-api-key";
/// Every secret of the harness: none may be in an answer or a metric line.
const HANDLER_SECRETS: [&str; 5] = [
    HANDLER_ROUTING_KEY,
    HANDLER_TOKEN,
    HANDLER_SIGNING_SECRET,
    HANDLER_API_TOKEN,
    HANDLER_GUANCE_KEY,
];

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
                HANDLER_SECRETS.iter().all(|secret| !line.contains(secret)),
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
            // Two-way on, with PagerDuty's REST API and Guance on a loopback port nothing
            // listens on: a signed resolve is answered 503 at once.
            two_way: Some(TwoWaySecrets {
                signing_secrets: Credential::new(HANDLER_SIGNING_SECRET).into_iter().collect(),
                pagerduty_api_token: Credential::new(HANDLER_API_TOKEN),
                guance_workspaces: [(
                    "wksp_fuzz".to_owned(),
                    GuanceWorkspace {
                        api_key: Credential::new(HANDLER_GUANCE_KEY).unwrap(),
                        openapi_url: "http://127.0.0.1:9".to_owned(),
                    },
                )]
                .into(),
            }),
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
            two_way: TwoWay {
                pagerduty_rest: PagerDutyRest::new(PagerDutyClient::http_client().unwrap(), "http://127.0.0.1:9"),
                guance: GuanceOpenApi::new(PagerDutyClient::http_client().unwrap()),
                progress: Default::default(),
            },
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
    answered(h, request, &[200, 202, 400, 401, 404, 405, 413]);
    signed_pagerduty_webhook(data);
}

/// `data` as the body of a delivery of PagerDuty's webhook, signed with the harness's
/// signing secret: a signed delivery is never refused with a 4xx (PagerDuty would drop
/// it, and disable the subscription after three); it is 2xx, or 429/503 to be retried.
pub fn signed_pagerduty_webhook(data: &[u8]) {
    let h = harness();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(HANDLER_SIGNING_SECRET.as_bytes()).unwrap();
    mac.update(data);
    let signature: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let mut event = h.template.clone();
    event["rawPath"] = "/pagerduty/webhook".into();
    event["rawQueryString"] = "".into();
    event["requestContext"]["http"]["path"] = "/pagerduty/webhook".into();
    event["headers"] = serde_json::json!({"x-pagerduty-signature": format!("v1={signature}"), "content-type": "application/json"});
    event["isBase64Encoded"] = true.into();
    event["body"] = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, data).into();
    let request: ApiGatewayV2httpRequest = serde_json::from_value(event).unwrap();
    answered(h, request, &[200, 429, 503]);
}

/// Handles `request`: the answer has one of `statuses`, is JSON, and holds no secret.
fn answered(h: &Harness, request: ApiGatewayV2httpRequest, statuses: &[i64]) {
    let response = h.runtime.block_on(h.app.handle(request, &Invocation::new("fuzz", 0)));
    assert!(
        statuses.contains(&response.status_code),
        "unexpected status {}",
        response.status_code
    );
    let Some(lambda_http::Body::Text(text)) = &response.body else { panic!("no text body") };
    let _: serde_json::Value = serde_json::from_str(text).expect("the answer is JSON");
    assert!(
        HANDLER_SECRETS.iter().all(|secret| !text.contains(secret)),
        "a secret in the answer"
    );
}
