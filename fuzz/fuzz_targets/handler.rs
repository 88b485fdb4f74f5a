//! The whole handler on arbitrary requests: bytes that parse as a function URL event are
//! used as one (method, path, query, headers, body, base64 flag all mutated); any other
//! bytes become the body of an authenticated POST. The answer is always JSON with an
//! expected status, never a panic, and never holds the routing key or the token.
#![no_main]

use guance_pagerduty::delivery::{PagerDutyClient, RetryPolicy};
use guance_pagerduty::handler::{App, Invocation};
use guance_pagerduty::secret::{RoutingKey, SecretCache, StaticSource, WebhookSecrets, WebhookToken};
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::Duration;

const ROUTING_KEY: &str = "FuzzR0utingKey000000000000000000";
const TOKEN: &str = "demo-webhook-token";

struct Harness {
    runtime: tokio::runtime::Runtime,
    app: App<StaticSource>,
    template: serde_json::Value,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let secrets = WebhookSecrets {
            routing_key: RoutingKey::new(ROUTING_KEY).unwrap(),
            webhook_token: WebhookToken::new(TOKEN),
            routes: [("payments".to_owned(), RoutingKey::new(ROUTING_KEY).unwrap())].into(),
        };
        let app = App {
            queue: None,
            settings: Default::default(),
            secrets: SecretCache::new(StaticSource(secrets), Duration::from_secs(300), Duration::from_secs(60)),
            // DRY_RUN: the handler does everything but the POST, so no network is needed.
            pagerduty: PagerDutyClient::new(reqwest_client(), "http://127.0.0.1:9/v2/enqueue", RetryPolicy::default()),
            max_body_bytes: 1 << 20,
            allow_unauthenticated: false,
            dry_run: true,
            deadline_margin: Duration::from_millis(100),
            default_budget: Duration::from_secs(1),
        };
        let template = serde_json::from_str(include_str!("../../events/alert.json")).unwrap();
        Harness { runtime, app, template }
    })
}

fn reqwest_client() -> reqwest::Client {
    PagerDutyClient::http_client().unwrap()
}

fuzz_target!(|data: &[u8]| {
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
    assert!(!text.contains(ROUTING_KEY) && !text.contains(TOKEN), "a secret in the answer");
});
