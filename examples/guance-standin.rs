//! The Guance OpenAPI stand-in as a process, for the demo: enforces the documented
//! contract of `GET /api/v1/keyevent/restore` and of the notification object and alert
//! policy calls `make setup` makes, on loopback (keys, envelope, rate limits, request
//! shapes); prints each restore and each object or policy written as it happens (never a
//! key, never a webhook URL's query), and lists them at `GET /_restores`,
//! `GET /_notify_objects` and `GET /_alert_policies`.
//!
//! Usage: `cargo run --example guance-standin -- [PORT] [WORKSPACE_UUID=API_KEY]...
//! [--alert-policy WORKSPACE_UUID=NAME]...` (default port 45663; repeat a workspace to
//! give it several keys; `--alert-policy` seeds an alert policy with no targets in a
//! workspace given a key, for `make setup` to attach its notification object to).

#[path = "../tests/support/guance.rs"]
mod guance;

use std::collections::BTreeMap;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let port = match args.first().map(|a| a.parse::<u16>()) {
        Some(Ok(port)) => {
            args.remove(0);
            port
        }
        Some(Err(_)) if !args[0].contains('=') && !args[0].starts_with("--") => usage(&format!(
            "{:?} is neither a port nor WORKSPACE_UUID=API_KEY",
            args[0]
        )),
        _ => 45663,
    };
    let mut workspaces: Vec<(String, String)> = Vec::new();
    let mut policies: Vec<(String, String)> = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let policy = match arg.as_str() {
            "--alert-policy" => Some(args.next().unwrap_or_default()),
            _ => arg.strip_prefix("--alert-policy=").map(str::to_owned),
        };
        if let Some(policy) = policy {
            match policy.split_once('=') {
                Some((uuid, name)) if !uuid.is_empty() && !name.trim().is_empty() => {
                    policies.push((uuid.to_owned(), name.to_owned()))
                }
                _ => usage("--alert-policy takes WORKSPACE_UUID=NAME, both non-empty"),
            }
            continue;
        }
        if arg.starts_with("--") {
            usage(&format!("unknown option {arg:?}"));
        }
        match arg.split_once('=') {
            Some((uuid, key)) if !uuid.is_empty() && !key.is_empty() => {
                workspaces.push((uuid.to_owned(), key.to_owned()))
            }
            // Never echo the argument: it holds a key.
            _ => usage("each workspace is WORKSPACE_UUID=API_KEY, both non-empty"),
        }
    }
    for (uuid, _) in &policies {
        if !workspaces.iter().any(|(w, _)| w == uuid) {
            usage(&format!(
                "--alert-policy names workspace {uuid}, which no WORKSPACE_UUID=API_KEY gives"
            ));
        }
    }
    let standin = guance::StandIn::start_on(([127, 0, 0, 1], port).into()).await;
    let mut keys: BTreeMap<&str, usize> = BTreeMap::new();
    for (uuid, key) in &workspaces {
        standin.add_workspace(uuid, key);
        *keys.entry(uuid).or_default() += 1;
    }
    standin.echo();
    println!(
        "Guance OpenAPI stand-in listening on {}",
        standin.openapi_url()
    );
    if keys.is_empty() {
        println!("no workspace given: every request will be refused (403 ft.InvalidAPIKey)");
    }
    for (uuid, count) in keys {
        println!("workspace {uuid}: {count} API key(s)");
    }
    for (workspace, name) in &policies {
        let uuid = standin.add_alert_policy(workspace, name);
        println!("workspace {workspace}: alert policy {name:?} ({uuid}), no targets yet");
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn usage(problem: &str) -> ! {
    eprintln!("guance-standin: {problem}");
    eprintln!(
        "usage: guance-standin [PORT] [WORKSPACE_UUID=API_KEY]... [--alert-policy WORKSPACE_UUID=NAME]..."
    );
    std::process::exit(2)
}
