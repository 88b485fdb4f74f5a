//! `make pagerduty-webhook` (tools/pagerduty_webhook.py) against moto's Secrets Manager and
//! the PagerDuty stand-in's REST API: it subscribes the function URL to
//! `incident.resolved`, stores the signing secret PagerDuty shows only once with the id of
//! its subscription, keeps every other field, makes nothing twice, prints no secret, a
//! wrong key changes nothing, a subscription whose secret is not recorded is refused (or
//! replaced when asked), and one whose secret cannot be stored is deleted again.

use crate::support::pagerduty::{Fault, StandIn};
use crate::support::{random_text, secret_value, Moto};
use aws_sdk_secretsmanager::types::ReplicaRegionType;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

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
    assert_eq!(
        stored["pagerduty_webhook_subscriptions"],
        json!({&subscriptions[0].id: DELIVERY_URL, &subscriptions[1].id: DELIVERY_URL}),
        "which subscription each signing secret belongs to"
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
async fn account_wide_by_default_appends_for_rotation_and_refuses_a_subscription_it_cannot_vouch_for(
) {
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
    assert_eq!(
        stored["pagerduty_webhook_subscriptions"],
        json!({&subscriptions[0].id: DELIVERY_URL})
    );
    assert_eq!(stored["routing_key"], original["routing_key"]);
    assert_eq!(stored.get("pagerduty_api_token"), None);
    assert_hidden(&run, &[&api_token, &old, &subscriptions[0].secret]);

    // The subscription exists but this secret never got its signing secret: refused,
    // saying what to do, nothing changed.
    let bare = format!("guance-pagerduty-{}", random_text(8));
    moto.create_secret(&bare, &json!({"routing_key": secret_value(32)}).to_string())
        .await;
    let before = secret(&moto, &bare).await;
    let run = run_tool(&moto, &standin, &bare, &env).await;
    assert!(!run.ok, "{}", run.output);
    assert_eq!(standin.subscriptions(), subscriptions);
    let id = &subscriptions[0].id;
    assert!(
        run.output
            .contains(&format!("Delete subscription {id} in PagerDuty"))
            && run.output.contains("PAGERDUTY_REPLACE_UNRECORDED=1")
            && run.output.contains("never stored")
            && !run.output.contains("before this field existed"),
        "{}",
        run.output
    );
    assert_eq!(secret(&moto, &bare).await, before, "nothing written");

    // A secret from before pagerduty_webhook_subscriptions: its signing secrets may or may
    // not include this subscription's; refused too, saying so.
    let older = format!("guance-pagerduty-{}", random_text(8));
    moto.create_secret(
        &older,
        &json!({"routing_key": secret_value(32), "pagerduty_webhook_secrets": [secret_value(64)]})
            .to_string(),
    )
    .await;
    let before = secret(&moto, &older).await;
    let run = run_tool(&moto, &standin, &older, &env).await;
    assert!(!run.ok, "{}", run.output);
    assert!(
        run.output.contains(id.as_str())
            && run.output.contains("stored before this field existed")
            && run.output.contains("PAGERDUTY_REPLACE_UNRECORDED=1"),
        "{}",
        run.output
    );
    assert_eq!(standin.subscriptions(), subscriptions);
    assert_eq!(secret(&moto, &older).await, before, "nothing written");
    assert_hidden(&run, &[&api_token, &subscriptions[0].secret]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrecorded_subscription_is_refused_and_replaced_only_when_asked() {
    let moto = Moto::start();
    let standin = StandIn::start().await;
    let api_token = secret_value(20);
    standin.allow_api_token(&api_token);
    let secret_id = format!("guance-pagerduty-{}", random_text(8));
    moto.create_secret(
        &secret_id,
        &json!({"routing_key": secret_value(32), "webhook_token": secret_value(40)}).to_string(),
    )
    .await;
    let first = run_tool(
        &moto,
        &standin,
        &secret_id,
        &[
            ("PAGERDUTY_API_TOKEN", &api_token),
            ("PAGERDUTY_SERVICE_IDS", "PSVCAAA111"),
        ],
    )
    .await;
    assert!(first.ok, "{}", first.output);
    // Service B's subscription exists, but its signing secret never reached this secret
    // (as when the write failed, the answer timed out or the run was killed).
    let elsewhere = format!("guance-pagerduty-{}", random_text(8));
    moto.create_secret(
        &elsewhere,
        &json!({"routing_key": secret_value(32)}).to_string(),
    )
    .await;
    let lost = run_tool(
        &moto,
        &standin,
        &elsewhere,
        &[
            ("PAGERDUTY_API_TOKEN", &api_token),
            ("PAGERDUTY_SERVICE_IDS", "PSVCBBB222"),
        ],
    )
    .await;
    assert!(lost.ok, "{}", lost.output);
    let made = standin.subscriptions();
    assert_eq!(made.len(), 2);
    let (a, b) = (made[0].clone(), made[1].clone());
    let env = [
        ("PAGERDUTY_API_TOKEN", api_token.as_str()),
        ("PAGERDUTY_SERVICE_IDS", "PSVCAAA111,PSVCBBB222"),
    ];

    let before = secret(&moto, &secret_id).await;
    let refused = run_tool(&moto, &standin, &secret_id, &env).await;
    assert!(!refused.ok, "{}", refused.output);
    let line = refused.output.trim_end();
    assert!(
        line.starts_with("pagerduty-webhook: ")
            && !line.contains('\n')
            && line.contains(&format!("subscription {} for service PSVCBBB222", b.id))
            && line.contains(&format!("Delete subscription {} in PagerDuty", b.id))
            && line.contains("PAGERDUTY_REPLACE_UNRECORDED=1")
            && line.contains("Nothing was changed")
            && !line.contains(&a.id),
        "{}",
        refused.output
    );
    assert_eq!(standin.subscriptions(), made, "nothing deleted or made");
    assert_eq!(secret(&moto, &secret_id).await, before, "nothing written");
    assert!(standin
        .rest_requests()
        .iter()
        .all(|r| r.method == "GET" || r.method == "POST"));

    // Asked to: B's old subscription is deleted and a new one made whose secret is stored.
    let replace = [env[0], env[1], ("PAGERDUTY_REPLACE_UNRECORDED", "1")];
    let replaced = run_tool(&moto, &standin, &secret_id, &replace).await;
    assert!(replaced.ok, "{}", replaced.output);
    let now = standin.subscriptions();
    assert_eq!(now.len(), 2, "{now:?}");
    assert_eq!(now[0], a, "A's subscription kept");
    assert!(
        now.iter().all(|s| s.id != b.id),
        "B's old subscription deleted"
    );
    let new_b = &now[1];
    assert_eq!(new_b.filter_id.as_deref(), Some("PSVCBBB222"));
    assert_eq!(new_b.url, DELIVERY_URL);
    assert!(standin
        .rest_requests()
        .iter()
        .any(|r| r.method == "DELETE" && r.path == format!("/webhook_subscriptions/{}", b.id)));
    let (stored, version) = secret(&moto, &secret_id).await;
    assert_eq!(
        stored["pagerduty_webhook_secrets"],
        json!([a.secret, new_b.secret])
    );
    assert_eq!(
        stored["pagerduty_webhook_subscriptions"],
        json!({&a.id: DELIVERY_URL, &new_b.id: DELIVERY_URL})
    );
    assert_eq!(stored["routing_key"], before.0["routing_key"]);
    assert!(
        replaced
            .output
            .contains(&format!("deleted subscription {}", b.id))
            && replaced
                .output
                .contains(&format!("created subscription {}", new_b.id)),
        "{}",
        replaced.output
    );
    let hidden = [api_token.as_str(), &a.secret, &b.secret, &new_b.secret];
    assert_hidden(&refused, &hidden);
    assert_hidden(&replaced, &hidden);

    // A normal rerun: unchanged, exit 0, nothing written or deleted.
    let again = run_tool(&moto, &standin, &secret_id, &env).await;
    assert!(again.ok, "{}", again.output);
    assert_eq!(
        again.output.matches("not creating another").count(),
        2,
        "{}",
        again.output
    );
    assert_eq!(standin.subscriptions(), now);
    assert_eq!(secret(&moto, &secret_id).await, (stored, version));
    assert_hidden(&again, &hidden);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_whose_signing_secret_cannot_be_stored_is_deleted_again() {
    let moto = Moto::start();
    let standin = StandIn::start().await;
    let api_token = secret_value(20);
    standin.allow_api_token(&api_token);
    // A replica secret: Secrets Manager reads it in the replica's region but refuses
    // PutSecretValue there (only the primary region writes), so the read succeeds and the
    // write fails.
    let secret_id = format!("guance-pagerduty-{}", random_text(8));
    moto.client()
        .create_secret()
        .name(&secret_id)
        .secret_string(json!({"routing_key": secret_value(32)}).to_string())
        .add_replica_regions(ReplicaRegionType::builder().region("us-west-2").build())
        .send()
        .await
        .expect("create a secret replicated to us-west-2");
    let before = secret(&moto, &secret_id).await;
    let env = [
        ("PAGERDUTY_API_TOKEN", api_token.as_str()),
        ("PAGERDUTY_SERVICE_IDS", "PSVCAAA111"),
        ("AWS_REGION", "us-west-2"),
    ];

    let run = run_tool(&moto, &standin, &secret_id, &env).await;
    assert!(!run.ok, "{}", run.output);
    assert!(standin.subscriptions().is_empty(), "deleted again");
    let requests = standin.rest_requests();
    let created = "PWHS001";
    assert!(
        requests
            .iter()
            .any(|r| r.method == "DELETE" && r.path == format!("/webhook_subscriptions/{created}")),
        "{requests:?}"
    );
    assert!(
        run.output
            .contains(&format!("created subscription {created}"))
            && run.output.contains("could not be stored")
            && run.output.contains("replica")
            && run.output.contains("deleted again"),
        "{}",
        run.output
    );
    assert_eq!(secret(&moto, &secret_id).await, before, "nothing written");
    assert_hidden(&run, &[&api_token]);

    // The delete fails too: the id to delete by hand.
    standin.script_rest([Fault::Pass, Fault::Pass, Fault::Status(500)]);
    let run = run_tool(&moto, &standin, &secret_id, &env).await;
    assert!(!run.ok, "{}", run.output);
    let left = standin.subscriptions();
    assert_eq!(left.len(), 1);
    assert!(
        run.output.contains("deleting it failed too")
            && run
                .output
                .contains(&format!("delete subscription {} by hand", left[0].id)),
        "{}",
        run.output
    );
    assert_hidden(&run, &[&api_token, &left[0].secret]);
    assert_eq!(secret(&moto, &secret_id).await, before, "nothing written");

    // Run against the primary: that subscription is reported, not trusted.
    let primary = [env[0], env[1]];
    let run = run_tool(&moto, &standin, &secret_id, &primary).await;
    assert!(!run.ok, "{}", run.output);
    assert!(
        run.output
            .contains(&format!("Delete subscription {} in PagerDuty", left[0].id)),
        "{}",
        run.output
    );
    assert_eq!(secret(&moto, &secret_id).await, before, "nothing written");
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
