//! `make setup` (tools/setup.py) from nothing, against moto (Secrets Manager, IAM,
//! Lambda's control plane: `DEPLOYER=cargo-lambda`), the PagerDuty stand-in's REST side
//! (services, integrations, webhook subscriptions, incidents) and the Guance OpenAPI
//! stand-in (notification objects, alert policies). moto runs no function, so the function
//! URL the tool calls for its proof is the real handler served on loopback.
//!
//! A first run goes from nothing to "test page opened and resolved"; a second changes
//! nothing and says so; `--dry-run` writes nothing; a run that failed at a step resumes;
//! nothing the tool prints holds a secret; the `sam deploy` line is what it would run.

use crate::support::function_url::LocalFunctionUrl;
use crate::support::{app, guance, pagerduty::StandIn, secret_value, AppOptions, Moto};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const WORKSPACE: &str = "wksp_5e7a0000000000000000000000000001";
const SECRET_ID: &str = "guance-pagerduty";

/// Everything the tool meets, and the credentials it is given.
struct World {
    moto: Moto,
    pagerduty: StandIn,
    guance: guance::StandIn,
    function: LocalFunctionUrl,
    service: String,
    api_token: String,
    read_token: String,
    guance_key: String,
}

async fn world() -> World {
    let moto = Moto::start_with_managed_policies();
    let pagerduty = StandIn::start().await;
    let (api_token, read_token, guance_key) =
        (secret_value(24), secret_value(24), secret_value(32));
    pagerduty.allow_api_token(&api_token);
    pagerduty.allow_api_token(&read_token);
    let service = pagerduty.add_service("payments");
    let guance = guance::StandIn::start().await;
    guance.add_workspace(WORKSPACE, &guance_key);
    guance.add_alert_policy(WORKSPACE, "on-call");
    // The function as deployed: it reads the secret make setup writes.
    let function = LocalFunctionUrl::start(app(
        &moto,
        SECRET_ID,
        &pagerduty.events_url(),
        AppOptions {
            api_url: Some(pagerduty.api_url()),
            ttl: std::time::Duration::ZERO,
            ..AppOptions::default()
        },
    ))
    .await;
    World {
        moto,
        pagerduty,
        guance,
        function,
        service,
        api_token,
        read_token,
        guance_key,
    }
}

struct Run {
    ok: bool,
    output: String,
}

impl World {
    /// make setup, as a user runs it, with the cargo lambda deployer against moto.
    async fn setup(&self, args: &[&str]) -> Run {
        self.setup_env(args, &[], &[]).await
    }

    /// make setup with some variables changed (`set`) or taken away (`unset`).
    async fn setup_env(&self, args: &[&str], set: &[(&str, &str)], unset: &[&str]) -> Run {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut command = Command::new(root.join(".venv/bin/python"));
        command
            .arg(root.join("tools/setup.py"))
            .args(args)
            .current_dir(root)
            .env_clear()
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    root.join(".venv/bin").display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("HOME", std::env::var("HOME").unwrap_or_default())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("AWS_ENDPOINT_URL", &self.moto.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("DEPLOYER", "cargo-lambda")
            // Built already by this test build: moto stores it and runs nothing.
            .env("LAMBDA_BINARY_PATH", env!("CARGO_BIN_EXE_bootstrap"))
            .env("FUNCTION_URL", &self.function.url)
            .env("PAGERDUTY_API_URL", self.pagerduty.api_url())
            .env("PAGERDUTY_API_TOKEN", &self.api_token)
            .env("PAGERDUTY_READ_TOKEN", &self.read_token)
            .env("PAGERDUTY_SERVICE_ID", &self.service)
            .env("GUANCE_API_KEY", &self.guance_key)
            .env("GUANCE_WORKSPACE_UUID", WORKSPACE)
            .env("GUANCE_OPENAPI_URL", self.guance.openapi_url())
            .env("GUANCE_ALERT_POLICY", "on-call");
        for (name, value) in set {
            command.env(name, value);
        }
        for name in unset {
            command.env_remove(name);
        }
        let output = tokio::task::spawn_blocking(move || command.output().expect("run make setup"))
            .await
            .unwrap();
        let output = Run {
            ok: output.status.success(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        };
        println!("{}", output.output);
        output
    }

    async fn secret(&self) -> Option<Value> {
        let value = self
            .moto
            .client()
            .get_secret_value()
            .secret_id(SECRET_ID)
            .send()
            .await
            .ok()?;
        serde_json::from_str(value.secret_string()?).ok()
    }

    /// The deployed function's runtime, read from moto's Lambda control plane (boto3: the
    /// crate has no Lambda client of its own, and needs none).
    fn function_runtime(&self) -> String {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let output = Command::new(root.join(".venv/bin/python"))
            .args([
                "-c",
                "import boto3,sys; print(boto3.client('lambda', endpoint_url=sys.argv[1], region_name='us-east-1', \
                 aws_access_key_id='testing', aws_secret_access_key='testing')\
                 .get_function_configuration(FunctionName='guance-pagerduty')['Runtime'])",
                &self.moto.endpoint,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    async fn secret_versions(&self) -> usize {
        self.moto
            .client()
            .list_secret_version_ids()
            .secret_id(SECRET_ID)
            .send()
            .await
            .map(|v| v.versions().len())
            .unwrap_or(0)
    }

    /// No credential, key or token of this world in what the tool printed.
    async fn assert_quiet(&self, run: &Run) {
        let mut secrets = vec![
            self.api_token.clone(),
            self.read_token.clone(),
            self.guance_key.clone(),
        ];
        if let Some(secret) = self.secret().await {
            for field in ["routing_key", "webhook_token"] {
                if let Some(value) = secret[field].as_str() {
                    secrets.push(value.to_owned());
                }
            }
            for signing in secret["pagerduty_webhook_secrets"]
                .as_array()
                .into_iter()
                .flatten()
            {
                secrets.push(signing.as_str().unwrap().to_owned());
            }
        }
        for secret in secrets {
            assert!(
                !run.output.contains(&secret),
                "a secret in make setup's output"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_nothing_to_a_page_opened_and_resolved_then_nothing_to_change() {
    let w = world().await;

    // --dry-run: the whole plan, nothing written anywhere.
    let dry = w.setup(&["--dry-run"]).await;
    assert!(dry.ok, "{}", dry.output);
    assert!(dry.output.contains("would"), "{}", dry.output);
    assert!(w.secret().await.is_none(), "a dry run wrote the secret");
    assert!(w.pagerduty.integrations(&w.service).is_empty());
    assert!(w.pagerduty.subscriptions().is_empty());
    assert!(w.guance.notify_objects(WORKSPACE).is_empty());
    w.assert_quiet(&dry).await;

    // The first run: everything made, then proven.
    let first = w.setup(&[]).await;
    assert!(first.ok, "{}", first.output);
    assert!(
        first.output.contains("test page opened"),
        "{}",
        first.output
    );
    assert!(
        first.output.contains("test page resolved"),
        "{}",
        first.output
    );
    let integrations = w.pagerduty.integrations(&w.service);
    assert_eq!(integrations.len(), 1, "one Events API v2 integration");
    let secret = w.secret().await.expect("the secret was created");
    assert_eq!(
        secret["routing_key"],
        integrations[0].integration_key.as_deref().unwrap()
    );
    assert!(secret["webhook_token"]
        .as_str()
        .is_some_and(|t| t.len() >= 32));
    assert_eq!(
        secret["pagerduty_api_token"],
        w.read_token.as_str(),
        "the read-only key"
    );
    assert_eq!(
        secret["guance_workspaces"][WORKSPACE]["api_key"],
        w.guance_key.as_str()
    );
    let subscriptions = w.pagerduty.subscriptions();
    assert_eq!(subscriptions.len(), 1);
    assert_eq!(
        subscriptions[0].url,
        format!("{}/pagerduty/webhook", w.function.url)
    );
    assert_eq!(
        secret["pagerduty_webhook_secrets"][0],
        subscriptions[0].secret.as_str()
    );
    let objects = w.guance.notify_objects(WORKSPACE);
    assert_eq!(objects.len(), 1, "one notification object");
    assert!(
        objects[0].to_string().contains(&w.function.url),
        "{objects:?}"
    );
    let policy = w.guance.alert_policies(WORKSPACE);
    let targets = policy[0].to_string();
    for level in ["critical", "error", "warning", "nodata"] {
        assert!(targets.contains(level), "{level} pages: {targets}");
    }
    assert!(!targets.contains("\"ok\""));
    assert_eq!(
        w.function_runtime(),
        "provided.al2023",
        "the function was deployed"
    );
    // The proof went through the real handler to PagerDuty: an alert and its resolve.
    let accepted = w.pagerduty.accepted();
    assert_eq!(
        accepted
            .iter()
            .map(|a| a.event_action.as_str())
            .collect::<Vec<_>>(),
        ["trigger", "resolve"]
    );
    w.assert_quiet(&first).await;

    // The second run changes nothing and says so.
    let versions = w.secret_versions().await;
    let second = w.setup(&["--no-test"]).await;
    assert!(second.ok, "{}", second.output);
    assert!(
        second.output.contains("nothing changed"),
        "{}",
        second.output
    );
    assert_eq!(
        w.secret_versions().await,
        versions,
        "the secret was not written"
    );
    assert_eq!(w.pagerduty.integrations(&w.service).len(), 1);
    assert_eq!(w.pagerduty.subscriptions().len(), 1);
    assert_eq!(w.guance.notify_objects(WORKSPACE).len(), 1);
    w.assert_quiet(&second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_failed_at_a_step_names_it_and_the_next_run_resumes() {
    let w = world().await;
    // Guance is down: the run gets as far as Guance's step and says so.
    w.guance.script([guance::Fault::Status(503)]);
    let failed = w.setup(&["--no-test"]).await;
    assert!(!failed.ok, "{}", failed.output);
    assert!(
        failed.output.contains("failed at [5/6"),
        "{}",
        failed.output
    );
    assert!(
        failed.output.contains("run make setup again"),
        "{}",
        failed.output
    );
    assert!(w.secret().await.is_some(), "the steps before it are kept");
    // Resumed: nothing made twice, the rest done.
    let resumed = w.setup(&["--no-test"]).await;
    assert!(resumed.ok, "{}", resumed.output);
    assert_eq!(w.pagerduty.integrations(&w.service).len(), 1);
    assert_eq!(w.pagerduty.subscriptions().len(), 1);
    assert_eq!(w.guance.notify_objects(WORKSPACE).len(), 1);
    w.assert_quiet(&failed).await;
    w.assert_quiet(&resumed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sam_path_prints_the_command_it_would_run_without_the_routing_key() {
    let w = world().await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tools/setup.py"))
        .arg("--dry-run")
        .current_dir(root)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("AWS_ENDPOINT_URL", &w.moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("DEPLOYER", "sam")
        .env("STACK_NAME", "pager-bridge")
        .env("SAM_PARAMETERS", "DeliveryMode=queue")
        .env("ROUTING_KEY", "abcdef0123456789abcdef0123456789")
        .env("PAGERDUTY_API_URL", w.pagerduty.api_url())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(text.contains("$ sam build"), "{text}");
    assert!(
        text.contains("sam deploy --config-file")
            && text.contains("--stack-name pager-bridge")
            && text.contains("--capabilities CAPABILITY_IAM")
            && text.contains("--no-confirm-changeset")
            && text.contains("--no-fail-on-empty-changeset")
            && text.contains("PagerDutyRoutingKey=<routing key>")
            && text.contains("DeliveryMode=queue"),
        "{text}"
    );
    assert!(!text.contains("abcdef0123456789abcdef0123456789"), "{text}");
    // And the parameter file it writes, through SAM CLI's own deploy command.
    let check = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/setup_tools/check_sam_parameters.py"))
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("SAM_CLI_TELEMETRY", "0")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

// ---- What a hostile review of make setup probed ----------------------------------------

/// The deployed function's configuration (moto's Lambda control plane), as JSON.
fn function_configuration(w: &World) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(root.join(".venv/bin/python"))
        .args([
            "-c",
            "import boto3,sys,json; c=boto3.client('lambda', endpoint_url=sys.argv[1], region_name='us-east-1', \
             aws_access_key_id='testing', aws_secret_access_key='testing'); \
             f=c.get_function_configuration(FunctionName='guance-pagerduty'); \
             v=c.list_versions_by_function(FunctionName='guance-pagerduty')['Versions']; \
             print(json.dumps({'RevisionId': f.get('RevisionId'), 'LastModified': f.get('LastModified'), 'Versions': len(v)}))",
            &w.moto.endpoint,
        ])
        .output()
        .unwrap();
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

/// A FUNCTION_URL given without its scheme (as the console shows it, or a typo)
/// must fail cleanly, never print the webhook token (a traceback of urllib's ValueError
/// carries the whole URL, `?token=` included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_url_without_its_scheme_fails_cleanly_and_prints_no_token() {
    let w = world().await;
    // As the Lambda console shows a function URL, less its https://.
    let bare = "abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws/";
    let run = w
        .setup_env(&[], &[("FUNCTION_URL", bare)], &["GUANCE_API_KEY"])
        .await;
    assert!(!run.ok, "{}", run.output);
    assert!(
        !run.output.contains("Traceback"),
        "a traceback:\n{}",
        run.output
    );
    w.assert_quiet(&run).await;
}

/// The second run says "nothing changed", and the function is left untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_leaves_the_function_as_it_was() {
    let w = world().await;
    let first = w.setup(&["--no-test"]).await;
    assert!(first.ok, "{}", first.output);
    let before = function_configuration(&w);
    let guance_before = w.guance.requests();
    let second = w.setup(&["--no-test"]).await;
    assert!(second.ok, "{}", second.output);
    assert!(
        second.output.contains("nothing changed"),
        "{}",
        second.output
    );
    println!(
        "Guance requests by the second run: {}",
        w.guance.requests() - guance_before
    );
    let after = function_configuration(&w);
    assert_eq!(
        before, after,
        "the function was redeployed by a run that said nothing changed"
    );
}

/// An alert policy that already sends to other targets (one with a time window)
/// keeps them all after setup attaches its notification object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_policys_other_targets_are_kept() {
    let w = world().await;
    let mail = w.guance.add_notify_object(
        WORKSPACE,
        "HTTPRequest",
        "ops-hook",
        serde_json::json!({"url": "https://hooks.example.com/ops"}),
    );
    let uuid = w.guance.add_alert_policy_with(
        WORKSPACE,
        "ops",
        serde_json::json!({
            "alertTarget": [
                {"name": "office hours", "targets": [{"status": "critical", "to": [mail]}],
                 "crontab": "0 9 * * 1,2,3,4,5", "crontabDuration": 28800},
                {"name": "always", "targets": [{"status": "warning", "to": [mail]}]}
            ],
            "silentTimeout": 21600, "aggInterval": 120, "aggFields": ["df_monitor_checker_id"]
        }),
    );
    let run = w
        .setup_env(&["--no-test"], &[("GUANCE_ALERT_POLICY", "ops")], &[])
        .await;
    assert!(run.ok, "{}", run.output);
    let policy = w.guance.alert_policy(&uuid);
    let text = policy["alertOpt"].to_string();
    assert!(
        text.contains("office hours")
            && text.contains("0 9 * * 1,2,3,4,5")
            && text.contains("always"),
        "{text}"
    );
    assert_eq!(policy["alertOpt"]["aggInterval"], 120, "{text}");
    let again = w
        .setup_env(&["--no-test"], &[("GUANCE_ALERT_POLICY", "ops")], &[])
        .await;
    assert!(again.output.contains("nothing changed"), "{}", again.output);
}

/// A member-type alert policy (alertOpt.alertType "member": targets sit in alertInfo,
/// docs.guance.com open-api alert-policy add-v2 sections 3-4) is refused clearly, not sent
/// a status-type entry Guance refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_alert_policy_is_refused_clearly() {
    let w = world().await;
    let hook = w.guance.add_notify_object(
        WORKSPACE,
        "HTTPRequest",
        "ops-hook",
        serde_json::json!({"url": "https://hooks.example.com/ops"}),
    );
    w.guance.add_alert_policy_with(
        WORKSPACE,
        "by-team",
        serde_json::json!({
            "alertType": "member",
            "alertTarget": [{"name": "team", "alertInfo": [
                {"name": "payments", "filterString": "", "memberInfo": [],
                 "targets": [{"status": "critical", "to": [hook]}]}]}],
            "silentTimeout": 21600, "aggInterval": 0
        }),
    );
    let run = w
        .setup_env(&["--no-test"], &[("GUANCE_ALERT_POLICY", "by-team")], &[])
        .await;
    // Refused up front, saying what to do by hand, and the policy left as it was.
    assert!(!run.ok, "{}", run.output);
    assert!(
        run.output.contains("notifies by member") && run.output.contains("by hand"),
        "{}",
        run.output
    );
    w.assert_quiet(&run).await;
}
