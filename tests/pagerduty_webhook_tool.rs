//! `make pagerduty-webhook` (tools/pagerduty_webhook.py) against moto's Secrets Manager and
//! the PagerDuty stand-in's REST API: it subscribes the function URL to
//! `incident.resolved`, stores the signing secret PagerDuty shows only once, keeps every
//! other field, makes nothing twice, prints no secret, and a wrong key changes nothing.

mod support;

use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use support::pagerduty::StandIn;
use support::{random_text, secret_value, Moto};

const FUNCTION_URL: &str = "https://abcdefghij.lambda-url.us-east-1.on.aws/";
const DELIVERY_URL: &str = "https://abcdefghij.lambda-url.us-east-1.on.aws/pagerduty/webhook";

struct Run {
    ok: bool,
    output: String,
}

/// Runs the tool with only these variables (and the AWS ones for moto) set.
async fn run_tool(moto: &Moto, standin: &StandIn, secret_id: &str, extra: &[(&str, &str)]) -> Run {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut command = Command::new(root.join(".venv/bin/python"));
    command
        .arg(root.join("tools/pagerduty_webhook.py"))
        .current_dir(root)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("FUNCTION_URL", FUNCTION_URL)
        .env("SECRET_ID", secret_id)
        .env("PAGERDUTY_API_URL", standin.api_url());
    for (name, value) in extra {
        command.env(name, value);
    }
    let output = tokio::task::spawn_blocking(move || command.output().expect("run the tool"))
        .await
        .unwrap();
    Run {
        ok: output.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

async fn secret(moto: &Moto, secret_id: &str) -> (Value, String) {
    let answer = moto
        .client()
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .expect("read the secret");
    (
        serde_json::from_str(answer.secret_string().unwrap()).unwrap(),
        answer.version_id().unwrap().to_owned(),
    )
}

fn assert_hidden(run: &Run, values: &[&str]) {
    for value in values {
        assert!(
            !run.output.contains(value),
            "the tool printed a secret or token:\n{}",
            run.output.replace(value, "<SECRET>")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribes_per_service_stores_each_signing_secret_once_and_keeps_the_rest() {
    let moto = Moto::start();
    let standin = StandIn::start().await;
    let api_token = secret_value(20);
    let read_token = secret_value(20);
    standin.allow_api_token(&api_token);
    let (routing_key, webhook_token) = (secret_value(32), secret_value(40));
    let secret_id = format!("guance-pagerduty-{}", random_text(8));
    let original = json!({
        "routing_key": routing_key,
        "webhook_token": webhook_token,
        "routes": {"db": secret_value(32)},
    });
    moto.create_secret(&secret_id, &original.to_string()).await;
    let env = [
        ("PAGERDUTY_API_TOKEN", api_token.as_str()),
        ("PAGERDUTY_SERVICE_IDS", "PSVCAAA111, PSVCBBB222"),
        ("PAGERDUTY_READ_TOKEN", read_token.as_str()),
    ];

    let first = run_tool(&moto, &standin, &secret_id, &env).await;
    assert!(first.ok, "{}", first.output);
    let subscriptions = standin.subscriptions();
    assert_eq!(subscriptions.len(), 2, "{}", first.output);
    for (subscription, service) in subscriptions.iter().zip(["PSVCAAA111", "PSVCBBB222"]) {
        assert_eq!(subscription.url, DELIVERY_URL);
        assert_eq!(subscription.events, ["incident.resolved"]);
        assert_eq!(subscription.filter_type, "service_reference");
        assert_eq!(subscription.filter_id.as_deref(), Some(service));
        assert!(subscription
            .description
            .as_deref()
            .is_some_and(|d| d.contains("guance-pagerduty")));
    }
    let (stored, version) = secret(&moto, &secret_id).await;
    assert_eq!(
        stored["pagerduty_webhook_secrets"],
        json!([subscriptions[0].secret, subscriptions[1].secret]),
        "the exact signing secrets PagerDuty returned"
    );
    assert_eq!(stored["pagerduty_api_token"], read_token.as_str());
    for field in ["routing_key", "webhook_token", "routes"] {
        assert_eq!(stored[field], original[field], "{field} is kept");
    }
    assert!(
        first.output.contains("created subscription"),
        "{}",
        first.output
    );
    let signing: Vec<&str> = subscriptions.iter().map(|s| s.secret.as_str()).collect();
    let mut hidden = vec![
        api_token.as_str(),
        read_token.as_str(),
        routing_key.as_str(),
        webhook_token.as_str(),
    ];
    hidden.extend(&signing);
    assert_hidden(&first, &hidden);
    // It found out what exists before creating, and was authorized throughout.
    let requests = standin.rest_requests();
    assert!(requests.iter().all(|r| r.authorized));
    assert!(requests[0].method == "GET" && requests[0].path.starts_with("/webhook_subscriptions"));

    let second = run_tool(&moto, &standin, &secret_id, &env).await;
    assert!(second.ok, "{}", second.output);
    assert_eq!(standin.subscriptions().len(), 2, "nothing made twice");
    assert_eq!(
        secret(&moto, &secret_id).await,
        (stored, version),
        "secret untouched"
    );
    assert!(
        second.output.contains("already") && second.output.contains("not creating another"),
        "{}",
        second.output
    );
    assert_hidden(&second, &hidden);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_wide_by_default_appends_for_rotation_and_warns_when_a_secret_is_lost() {
    let moto = Moto::start();
    let standin = StandIn::start().await;
    let api_token = secret_value(20);
    standin.allow_api_token(&api_token);
    let old = secret_value(64);
    let secret_id = format!("guance-pagerduty-{}", random_text(8));
    let original = json!({"routing_key": secret_value(32), "webhook_token": secret_value(40),
                           "pagerduty_webhook_secrets": [old]});
    moto.create_secret(&secret_id, &original.to_string()).await;
    let env = [("PAGERDUTY_API_TOKEN", api_token.as_str())];

    let run = run_tool(&moto, &standin, &secret_id, &env).await;
    assert!(run.ok, "{}", run.output);
    let subscriptions = standin.subscriptions();
    assert_eq!(subscriptions.len(), 1);
    assert_eq!(subscriptions[0].filter_type, "account_reference");
    assert_eq!(subscriptions[0].url, DELIVERY_URL);
    let (stored, _) = secret(&moto, &secret_id).await;
    assert_eq!(
        stored["pagerduty_webhook_secrets"],
        json!([old, subscriptions[0].secret]),
        "appended: the old secret stays until removed"
    );
    assert_eq!(stored["routing_key"], original["routing_key"]);
    assert_eq!(stored.get("pagerduty_api_token"), None);
    assert_hidden(&run, &[&api_token, &old, &subscriptions[0].secret]);

    // The subscription exists but this secret never got its signing secret: say what to do.
    let bare = format!("guance-pagerduty-{}", random_text(8));
    moto.create_secret(&bare, &json!({"routing_key": secret_value(32)}).to_string())
        .await;
    let (before, version) = secret(&moto, &bare).await;
    let run = run_tool(&moto, &standin, &bare, &env).await;
    assert!(run.ok, "{}", run.output);
    assert_eq!(standin.subscriptions().len(), 1);
    assert!(
        run.output.contains("delete subscription") && run.output.contains("run again"),
        "{}",
        run.output
    );
    assert_eq!(secret(&moto, &bare).await, (before, version));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_fails_clearly_and_changes_nothing() {
    let moto = Moto::start();
    let standin = StandIn::start().await;
    standin.allow_api_token(&secret_value(20));
    let wrong = secret_value(20);
    let secret_id = format!("guance-pagerduty-{}", random_text(8));
    moto.create_secret(
        &secret_id,
        &json!({"routing_key": secret_value(32), "webhook_token": secret_value(40)}).to_string(),
    )
    .await;
    let before = secret(&moto, &secret_id).await;

    let run = run_tool(
        &moto,
        &standin,
        &secret_id,
        &[
            ("PAGERDUTY_API_TOKEN", &wrong),
            ("PAGERDUTY_READ_TOKEN", "read-only-key"),
        ],
    )
    .await;
    assert!(!run.ok, "{}", run.output);
    let lines: Vec<&str> = run.output.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {}", run.output);
    assert!(
        lines[0].starts_with("pagerduty-webhook: ")
            && lines[0].contains("PAGERDUTY_API_TOKEN")
            && lines[0].contains("401"),
        "{}",
        run.output
    );
    assert_hidden(&run, &[&wrong]);
    assert!(standin.subscriptions().is_empty());
    assert_eq!(secret(&moto, &secret_id).await, before, "nothing written");

    // No token at all, and a secret that does not exist: each says what to fix.
    let run = run_tool(&moto, &standin, &secret_id, &[]).await;
    assert!(
        !run.ok && run.output.contains("set PAGERDUTY_API_TOKEN"),
        "{}",
        run.output
    );
    let run = run_tool(
        &moto,
        &standin,
        "no-such-secret",
        &[("PAGERDUTY_API_TOKEN", &wrong)],
    )
    .await;
    assert!(
        !run.ok && run.output.contains("SECRET_ID"),
        "{}",
        run.output
    );
    assert!(standin.subscriptions().is_empty());
}
