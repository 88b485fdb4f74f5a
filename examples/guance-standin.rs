//! The Guance OpenAPI stand-in as a process, for the demo: enforces the documented
//! contract of `GET /api/v1/keyevent/restore` on loopback (keys, envelope, rate limits),
//! prints each restore as it happens (never a key), and lists them at `GET /_restores`.
//!
//! Usage: `cargo run --example guance-standin -- [PORT] [WORKSPACE_UUID=API_KEY]...`
//! (default port 45663; repeat a workspace to give it several keys).

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
        Some(Err(_)) if !args[0].contains('=') => usage(&format!(
            "{:?} is neither a port nor WORKSPACE_UUID=API_KEY",
            args[0]
        )),
        _ => 45663,
    };
    let mut workspaces: Vec<(String, String)> = Vec::new();
    for arg in args {
        match arg.split_once('=') {
            Some((uuid, key)) if !uuid.is_empty() && !key.is_empty() => {
                workspaces.push((uuid.to_owned(), key.to_owned()))
            }
            // Never echo the argument: it holds a key.
            _ => usage("each workspace is WORKSPACE_UUID=API_KEY, both non-empty"),
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
    let _ = tokio::signal::ctrl_c().await;
}

fn usage(problem: &str) -> ! {
    eprintln!("guance-standin: {problem}");
    eprintln!("usage: guance-standin [PORT] [WORKSPACE_UUID=API_KEY]...");
    std::process::exit(2)
}
