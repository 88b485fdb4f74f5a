//! AWS's Lambda Runtime Interface Emulator (the one `sam local invoke` runs inside its
//! container, shipped in the aws-sam-cli package) running the built `bootstrap`: the real
//! runtime loop, as Lambda drives it, without Docker.

#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Emulator {
    child: Child,
    invocations_url: String,
    output: PathBuf,
    http: reqwest::Client,
}

/// The emulator for this machine's architecture, from the venv `make test` installs.
pub fn rie_path() -> PathBuf {
    let arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        other => other,
    };
    let name = format!("aws-lambda-rie-{arch}");
    let venv_lib = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/lib");
    std::fs::read_dir(&venv_lib)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|python| {
            python
                .path()
                .join("site-packages/samcli/local/rapid")
                .join(&name)
        })
        .find(|path| path.exists())
        .unwrap_or_else(|| {
            panic!(
                "{name} is missing under {}: run `make test` (it installs aws-sam-cli into .venv)",
                venv_lib.display()
            )
        })
}

pub fn free_port() -> u16 {
    super::port_for_a_process()
}

impl Emulator {
    /// Starts the emulator with `bootstrap` and exactly `env` (plus PATH): its own ports
    /// for both addresses, so tests can run side by side. Everything the function and the
    /// emulator print goes to one file, read by [`Emulator::output`].
    pub fn start(bootstrap: &str, env: &[(&str, String)]) -> Emulator {
        let (rie_port, api_port) = (free_port(), free_port());
        let output = std::env::temp_dir().join(format!(
            "guance-pagerduty-rie-{}-{rie_port}.log",
            std::process::id()
        ));
        let log = std::fs::File::create(&output).expect("the emulator's log file");
        let child = Command::new(rie_path())
            .args([
                "--runtime-interface-emulator-address",
                &format!("127.0.0.1:{rie_port}"),
                "--runtime-api-address",
                &format!("127.0.0.1:{api_port}"),
                bootstrap,
            ])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("start the Lambda Runtime Interface Emulator");
        let emulator = Emulator {
            child,
            invocations_url: format!(
                "http://127.0.0.1:{rie_port}/2015-03-31/functions/function/invocations"
            ),
            output,
            http: reqwest::Client::new(),
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", rie_port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the emulator did not start: {}",
                emulator.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        emulator
    }

    /// Invokes the function with `payload` (raw bytes, so malformed payloads can be sent)
    /// and returns what the emulator answered: the function's response, or its error.
    pub async fn invoke_raw(&self, payload: Vec<u8>) -> Value {
        let text = self
            .http
            .post(&self.invocations_url)
            .body(payload)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .expect("the emulator answers")
            .text()
            .await
            .expect("the emulator's answer");
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("the emulator's answer is not JSON ({e}): {text}"))
    }

    pub async fn invoke(&self, payload: &Value) -> Value {
        self.invoke_raw(payload.to_string().into_bytes()).await
    }

    /// Everything the emulator and the function printed so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.output).unwrap_or_default()).into_owned()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.output);
    }
}
