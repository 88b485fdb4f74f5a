//! `make guance-workspace` (tools/guance_workspace.py) against moto's Secrets Manager:
//! it adds or replaces one workspace in `guance_workspaces`, keeps every other field and
//! workspace, writes nothing when nothing changes, refuses what would not work, and never
//! prints a key.

use crate::support::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Output};

const WORKSPACE: &str = "wksp_968577392a1c4714a464cd2f6ee42a9c";
const OTHER: &str = "wksp_0123456789abcdef0123456789abcdef";

fn python() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        path.exists(),
        "{} is missing: run `make tools`",
        path.display()
    );
    path
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs the tool with only these variables (and moto's), nothing from the caller's
/// environment or AWS configuration.
fn run(moto: &Moto, vars: &[(&str, &str)]) -> Run {
    let root = env!("CARGO_MANIFEST_DIR");
    let output: Output = Command::new(python())
        .arg(format!("{root}/tools/guance_workspace.py"))
        .current_dir(root)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .envs(vars.iter().copied())
        .output()
        .expect("run tools/guance_workspace.py");
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn secret(moto: &Moto, id: &str) -> (Value, String, usize) {
    let client = moto.client();
    let current = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .unwrap();
    let versions = client
        .list_secret_version_ids()
        .secret_id(id)
        .send()
        .await
        .unwrap()
        .versions()
        .len();
    (
        serde_json::from_str(current.secret_string().unwrap()).unwrap(),
        current.version_id().unwrap().to_owned(),
        versions,
    )
}

/// A secret as the function has it, with a workspace already in it.
async fn setup(moto: &Moto) -> (String, Value) {
    let id = format!("guance-pagerduty-{}", random_text(8));
    let value = json!({
        "routing_key": secret_value(32),
        "webhook_token": secret_value(40),
        "routes": {"db": secret_value(32)},
        "guance_workspaces": {OTHER: {"api_key": secret_value(32), "openapi_url": "https://us1-openapi.guance.com"}},
    });
    moto.create_secret(&id, &value.to_string()).await;
    (id, value)
}

fn assert_no_key(runs: &[&Run], keys: &[&str]) {
    for run in runs {
        for key in keys {
            assert!(
                !run.stdout.contains(key) && !run.stderr.contains(key),
                "a key was printed"
            );
        }
    }
}

#[tokio::test]
async fn adds_replaces_and_leaves_an_identical_workspace_unchanged() {
    let moto = Moto::start();
    let (id, before) = setup(&moto).await;
    let (_, first_version, _) = secret(&moto, &id).await;
    let key = secret_value(32);

    let added = run(
        &moto,
        &[
            ("SECRET_ID", &id),
            ("GUANCE_WORKSPACE_UUID", WORKSPACE),
            ("GUANCE_API_KEY", &key),
            ("GUANCE_SITE", "china1"),
        ],
    );
    assert!(added.ok, "{}", added.stderr);
    assert!(added.stdout.contains("created"), "{}", added.stdout);
    assert!(
        added.stdout.contains(WORKSPACE) && added.stdout.contains("https://openapi.guance.com")
    );
    let (value, added_version, versions) = secret(&moto, &id).await;
    assert_ne!(added_version, first_version);
    assert_eq!(versions, 2);
    let mut expected = before.clone();
    expected["guance_workspaces"][WORKSPACE] =
        json!({"api_key": key, "openapi_url": "https://openapi.guance.com"});
    assert_eq!(value, expected, "every other field and workspace kept");

    // The same values again: nothing written.
    let again = run(
        &moto,
        &[
            ("SECRET_ID", &id),
            ("GUANCE_WORKSPACE_UUID", WORKSPACE),
            ("GUANCE_API_KEY", &key),
            ("GUANCE_SITE", "CN1"),
        ],
    );
    assert!(again.ok, "{}", again.stderr);
    assert!(again.stdout.contains("unchanged"), "{}", again.stdout);
    let (value, version, versions) = secret(&moto, &id).await;
    assert_eq!((version.as_str(), versions), (added_version.as_str(), 2));
    assert_eq!(value, expected);

    // A new key and site: replaced.
    let new_key = secret_value(32);
    let replaced = run(
        &moto,
        &[
            ("SECRET_ID", &id),
            ("GUANCE_WORKSPACE_UUID", WORKSPACE),
            ("GUANCE_API_KEY", &new_key),
            ("GUANCE_SITE", "eu1"),
        ],
    );
    assert!(replaced.ok, "{}", replaced.stderr);
    assert!(replaced.stdout.contains("replaced"), "{}", replaced.stdout);
    assert!(replaced.stdout.contains("https://eu1-openapi.guance.one"));
    let (value, version, versions) = secret(&moto, &id).await;
    assert_ne!(version, added_version);
    assert_eq!(versions, 3);
    expected["guance_workspaces"][WORKSPACE] =
        json!({"api_key": new_key, "openapi_url": "https://eu1-openapi.guance.one"});
    assert_eq!(value, expected);

    // A local OpenAPI (the stand-in) over http on loopback, trailing slash dropped.
    let local = run(
        &moto,
        &[
            ("SECRET_ID", &id),
            ("GUANCE_WORKSPACE_UUID", WORKSPACE),
            ("GUANCE_API_KEY", &new_key),
            ("GUANCE_OPENAPI_URL", "http://127.0.0.1:45663/"),
        ],
    );
    assert!(local.ok, "{}", local.stderr);
    let (value, _, _) = secret(&moto, &id).await;
    assert_eq!(
        value["guance_workspaces"][WORKSPACE]["openapi_url"],
        "http://127.0.0.1:45663"
    );
    assert_eq!(
        value["guance_workspaces"][OTHER],
        before["guance_workspaces"][OTHER]
    );

    assert_no_key(&[&added, &again, &replaced, &local], &[&key, &new_key]);
}

#[tokio::test]
async fn site_names_map_to_their_hosts() {
    let moto = Moto::start();
    let (id, _) = setup(&moto).await;
    let key = secret_value(32);
    for (site, url) in [
        ("cn2", "https://aws-openapi.guance.com"),
        ("China 4", "https://cn4-openapi.guance.com"),
        ("china-5", "https://cn5-openapi.guance.com"),
        ("CN6", "https://cn6-openapi.guance.one"),
        ("US1", "https://us1-openapi.guance.com"),
        ("ap1", "https://ap1-openapi.guance.one"),
    ] {
        let done = run(
            &moto,
            &[
                ("SECRET_ID", &id),
                ("GUANCE_WORKSPACE_UUID", WORKSPACE),
                ("GUANCE_API_KEY", &key),
                ("GUANCE_SITE", site),
            ],
        );
        assert!(done.ok, "{site}: {}", done.stderr);
        let (value, _, _) = secret(&moto, &id).await;
        assert_eq!(
            value["guance_workspaces"][WORKSPACE]["openapi_url"], url,
            "{site}"
        );
        assert_no_key(&[&done], &[&key]);
    }
}

#[tokio::test]
async fn what_would_not_work_is_refused_in_one_line_and_nothing_is_written() {
    let moto = Moto::start();
    let (id, before) = setup(&moto).await;
    let key = secret_value(32);
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("GUANCE_OPENAPI_URL", "http://openapi.guance.com")],
            "https",
        ),
        (&[("GUANCE_OPENAPI_URL", "http://10.0.0.1:8080")], "https"),
        (
            &[("GUANCE_OPENAPI_URL", "ftp://openapi.guance.com")],
            "GUANCE_OPENAPI_URL",
        ),
        (
            &[("GUANCE_OPENAPI_URL", "https://openapi.guance.com/?x=1")],
            "GUANCE_OPENAPI_URL",
        ),
        (
            &[("GUANCE_OPENAPI_URL", "openapi.guance.com")],
            "GUANCE_OPENAPI_URL",
        ),
        (&[("GUANCE_SITE", "mars1")], "GUANCE_SITE"),
        (&[("GUANCE_SITE", "cn3")], "GUANCE_SITE"),
        (&[], "GUANCE_SITE"),
        (
            &[
                ("GUANCE_SITE", "cn1"),
                ("GUANCE_OPENAPI_URL", "https://openapi.guance.com"),
            ],
            "not both",
        ),
        (
            &[("GUANCE_SITE", "cn1"), ("GUANCE_WORKSPACE_UUID", "")],
            "GUANCE_WORKSPACE_UUID",
        ),
        (
            &[
                ("GUANCE_SITE", "cn1"),
                ("GUANCE_WORKSPACE_UUID", "workspace one"),
            ],
            "GUANCE_WORKSPACE_UUID",
        ),
        (
            &[
                ("GUANCE_SITE", "cn1"),
                ("GUANCE_WORKSPACE_UUID", "968577392a1c4714a464cd2f6ee42a9c"),
            ],
            "GUANCE_WORKSPACE_UUID",
        ),
        (
            &[("GUANCE_SITE", "cn1"), ("GUANCE_API_KEY", "")],
            "GUANCE_API_KEY",
        ),
        (
            &[("GUANCE_SITE", "cn1"), ("GUANCE_API_KEY", "two words")],
            "GUANCE_API_KEY",
        ),
        (
            &[("GUANCE_SITE", "cn1"), ("SECRET_ID", "no-such-secret")],
            "SECRET_ID",
        ),
    ];
    let mut runs = Vec::new();
    for (vars, named) in cases {
        let mut all: Vec<(&str, &str)> = vec![
            ("SECRET_ID", &id),
            ("GUANCE_WORKSPACE_UUID", WORKSPACE),
            ("GUANCE_API_KEY", &key),
        ];
        all.extend(vars.iter().copied());
        let refused = run(&moto, &all);
        assert!(!refused.ok, "{vars:?} was accepted: {}", refused.stdout);
        let line = refused.stderr.trim_end();
        assert!(
            line.starts_with("guance-workspace: ") && !line.contains('\n'),
            "{vars:?}: {line}"
        );
        assert!(
            line.contains(named),
            "{vars:?}: {line} does not name {named}"
        );
        runs.push(refused);
    }
    let (value, _, versions) = secret(&moto, &id).await;
    assert_eq!((value, versions), (before, 1), "nothing was written");
    assert_no_key(&runs.iter().collect::<Vec<_>>(), &[&key]);

    // GUANCE_CHECK=0 accepts a uuid of another form, never a plain-http URL.
    let private = run(
        &moto,
        &[
            ("SECRET_ID", &id),
            ("GUANCE_WORKSPACE_UUID", "ws-private-1"),
            ("GUANCE_API_KEY", &key),
            (
                "GUANCE_OPENAPI_URL",
                "https://guance.example.internal/openapi",
            ),
            ("GUANCE_CHECK", "0"),
        ],
    );
    assert!(private.ok, "{}", private.stderr);
    let plain = run(
        &moto,
        &[
            ("SECRET_ID", &id),
            ("GUANCE_WORKSPACE_UUID", "ws-private-1"),
            ("GUANCE_API_KEY", &key),
            ("GUANCE_OPENAPI_URL", "http://guance.example.internal"),
            ("GUANCE_CHECK", "0"),
        ],
    );
    assert!(!plain.ok);
    assert_no_key(&[&private, &plain], &[&key]);

    // The function uses only workspace names of 1 to 128 ASCII letters, digits, '_' or
    // '-' (it skips others): GUANCE_CHECK=0 does not lift that rule.
    let written = secret(&moto, &id).await;
    let too_long = "w".repeat(129);
    let mut refused = Vec::new();
    for name in [
        "ws.private.1",
        "wksp_968577392a1c4714a464cd2f6ee42a9c.",
        "ws/private",
        "wsé1",
        too_long.as_str(),
    ] {
        let run = run(
            &moto,
            &[
                ("SECRET_ID", &id),
                ("GUANCE_WORKSPACE_UUID", name),
                ("GUANCE_API_KEY", &key),
                ("GUANCE_SITE", "cn1"),
                ("GUANCE_CHECK", "0"),
            ],
        );
        let line = run.stderr.trim_end();
        assert!(!run.ok, "{name:?} was accepted: {}", run.stdout);
        assert!(
            line.starts_with("guance-workspace: ")
                && !line.contains('\n')
                && line.contains("GUANCE_WORKSPACE_UUID")
                && line.contains("128"),
            "{name:?}: {line}"
        );
        refused.push(run);
    }
    assert_eq!(secret(&moto, &id).await, written, "nothing was written");
    assert_no_key(&refused.iter().collect::<Vec<_>>(), &[&key]);
    // The longest name the function uses is taken.
    let longest = "w".repeat(128);
    let taken = run(
        &moto,
        &[
            ("SECRET_ID", &id),
            ("GUANCE_WORKSPACE_UUID", &longest),
            ("GUANCE_API_KEY", &key),
            ("GUANCE_SITE", "cn1"),
            ("GUANCE_CHECK", "0"),
        ],
    );
    assert!(taken.ok, "{}", taken.stderr);
    assert_eq!(
        secret(&moto, &id).await.0["guance_workspaces"][&longest]["api_key"],
        key.as_str()
    );
}

#[tokio::test]
async fn without_secret_id_the_stacks_secret_arn_output_names_the_secret() {
    let moto = Moto::start();
    let (id, _) = setup(&moto).await;
    let arn = moto
        .client()
        .describe_secret()
        .secret_id(&id)
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();
    let stack = format!("stack-{}", random_text(6).to_lowercase());
    let template = json!({
        "Parameters": {"Arn": {"Type": "String"}},
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {"SecretArn": {"Value": {"Ref": "Arn"}}},
    });
    let created = Command::new(python())
        .args([
            "-c",
            "import boto3, sys; boto3.client('cloudformation', region_name='us-east-1').create_stack(\
             StackName=sys.argv[1], TemplateBody=sys.argv[2], \
             Parameters=[{'ParameterKey': 'Arn', 'ParameterValue': sys.argv[3]}])",
            &stack,
            &template.to_string(),
            &arn,
        ])
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .status()
        .unwrap();
    assert!(created.success(), "create the stack in moto");

    let key = secret_value(32);
    let vars = [
        ("STACK_NAME", stack.as_str()),
        ("GUANCE_WORKSPACE_UUID", WORKSPACE),
        ("GUANCE_API_KEY", &key),
        ("GUANCE_SITE", "us1"),
    ];
    let done = run(&moto, &vars);
    assert!(done.ok, "{}", done.stderr);
    let (value, _, _) = secret(&moto, &id).await;
    assert_eq!(
        value["guance_workspaces"][WORKSPACE]["api_key"],
        key.as_str()
    );

    let missing = run(
        &moto,
        &[
            ("STACK_NAME", "no-such-stack"),
            ("GUANCE_WORKSPACE_UUID", WORKSPACE),
            ("GUANCE_API_KEY", &key),
            ("GUANCE_SITE", "us1"),
        ],
    );
    assert!(!missing.ok);
    assert!(missing.stderr.contains("STACK_NAME"), "{}", missing.stderr);
    assert_no_key(&[&done, &missing], &[&key]);
}
