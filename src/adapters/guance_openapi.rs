//! Guance's OpenAPI, for two-way: recover an event
//! (`GET /api/v1/keyevent/restore?monitorCheckerEventRef=...`, CONTRACT.md section 6).
//! The key decides the workspace, so each workspace is called with its own key at its
//! own site's host.
//!
//! Guance answers its rate limits (20 requests a minute per key, 200 per workspace) with
//! HTTP 401 and an `errorCode`, not 429, and a bad key with 403 (a 401 has been seen
//! too): answers are told apart by `errorCode`, not by status alone.

use crate::adapters::bounded_call;
use crate::adapters::secret::GuanceWorkspace;
use crate::domain::pagerduty::truncate_chars;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Guance's rate limit is per minute: the wait before a retry can succeed.
pub const RATE_LIMIT_RETRY_AFTER: Duration = Duration::from_secs(60);
/// A restore takes Guance well under a second; longer is a stall.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Guance's error codes for its rate limits: per API key, per workspace.
const RATE_LIMIT_CODES: [&str; 2] = [
    "ft.TriggerApiAkCurrentLimiting",
    "ft.TriggerApiWorkspaceCurrentLimiting",
];

/// What Guance made of one restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    Restored,
    /// Over a rate limit (`error_code` says which): retry after a minute.
    RateLimited {
        error_code: String,
    },
    /// A refusal a retry cannot mend: a wrong key, an unknown ref.
    Refused {
        status: u16,
        error_code: String,
        message: String,
    },
    /// 5xx, a timeout or no connection: a retry can help.
    Unavailable {
        reason: String,
    },
}

/// The client; one per container.
#[derive(Clone)]
pub struct GuanceOpenApi {
    http: reqwest::Client,
}

impl GuanceOpenApi {
    pub fn new(http: reqwest::Client) -> Self {
        GuanceOpenApi { http }
    }

    /// Recovers the event `monitor_checker_event_ref` in `workspace`, by `deadline`.
    pub async fn restore(
        &self,
        workspace: &GuanceWorkspace,
        monitor_checker_event_ref: &str,
        deadline: Instant,
    ) -> Restore {
        let mut url = match reqwest::Url::parse(&format!(
            "{}/api/v1/keyevent/restore",
            workspace.openapi_url
        )) {
            Ok(url) => url,
            Err(_) => {
                return Restore::Refused {
                    status: 0,
                    error_code: String::new(),
                    message: "openapi_url is not a URL".into(),
                }
            }
        };
        url.query_pairs_mut()
            .append_pair("monitorCheckerEventRef", monitor_checker_event_ref);
        let request = self
            .http
            .get(url)
            .header("DF-API-KEY", workspace.api_key.expose())
            .header("accept", "application/json");
        let (status, body) = match bounded_call(request, deadline, CALL_TIMEOUT).await {
            Ok(answer) => (answer.status, answer.body),
            Err(reason) => return Restore::Unavailable { reason },
        };
        let envelope: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        // Guance's own text is untrusted: cut short, and never with the key in it.
        let text = |field: &str| {
            let value = envelope[field].as_str().unwrap_or_default();
            truncate_chars(
                &value.replace(workspace.api_key.expose(), "<redacted>"),
                200,
            )
        };
        let error_code = text("errorCode");
        if RATE_LIMIT_CODES.contains(&error_code.as_str()) || status == 429 {
            return Restore::RateLimited { error_code };
        }
        match status {
            200..=299 if envelope["success"] == Value::Bool(true) => {
                if envelope["content"] == Value::Bool(false) {
                    Restore::Refused {
                        status,
                        error_code,
                        message: "Guance answered success with content false: not restored"
                            .into(),
                    }
                } else {
                    Restore::Restored
                }
            }
            // A 2xx that is not Guance's envelope (a console page, a proxy's login) is no
            // restore: the URL is wrong, and a retry after it is fixed can mend it.
            200..=299 => Restore::Unavailable {
                reason: format!(
                    "HTTP {status} without Guance's answer (success true): is openapi_url the site's OpenAPI host?"
                ),
            },
            500..=599 => Restore::Unavailable {
                reason: format!("HTTP {status} {error_code}").trim_end().to_owned(),
            },
            _ => Restore::Refused {
                status,
                error_code,
                message: text("message"),
            },
        }
    }
}
