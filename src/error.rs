//! Every way a request can fail, and the one place that maps each to an HTTP answer.

use serde::Serialize;
use serde_json::{json, Value};
use std::time::Duration;

/// What happened to each event of a request, reported to the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventResult {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub df_event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedup_key: Option<String>,
    pub outcome: EventOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Two-way: what became of one Guance event a person's resolve asked to recover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoreResult {
    pub workspace_uuid: String,
    pub monitor_checker_event_ref: String,
    /// A `GuanceRestores` outcome: `restored`, `already_done`, `no_key`, `refused`,
    /// `rate_limited`, `unavailable`, `not_attempted`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventOutcome {
    /// PagerDuty accepted it.
    Sent,
    /// Queue mode: SQS holds it; the dispatcher delivers it.
    Queued,
    /// `DRY_RUN`: translated and logged, not sent.
    DryRun,
    /// Deliberately not sent (info events set to drop).
    Dropped,
    /// Not taken: it cannot be translated (`reason` says why). The rest of the body goes on.
    Rejected,
    /// PagerDuty refused it or could not be reached.
    Failed,
    /// Not attempted, because an earlier event of the request failed and order matters.
    NotSent,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AppError {
    /// A known route's name that the secret does not have.
    NotFound,
    /// A path that is no route name at all (`/a/b`, `/wp-login.php`): what scanners of a
    /// public URL send, not what a Guance notification object would.
    NoSuchPath,
    MethodNotAllowed {
        allow: &'static str,
    },
    Unauthorized,
    /// `POST /pagerduty/webhook` without a signature of PagerDuty's under a configured
    /// signing secret (or with two-way off).
    BadSignature,
    PayloadTooLarge {
        limit: usize,
    },
    BadRequest(String),
    /// No event of the body could be translated: each result says why.
    Untranslatable {
        results: Vec<EventResult>,
    },
    SecretUnavailable,
    /// Queue mode: SQS did not take every event. Those it took are not queued twice when
    /// the request is sent again (deduplication).
    QueueUnavailable {
        reason: String,
    },
    /// PagerDuty refused an event for good (400: invalid event, or a wrong URL).
    PagerDutyRefused {
        status: u16,
        errors: Vec<String>,
        results: Vec<EventResult>,
    },
    /// PagerDuty refused the routing key (a deleted or mistyped integration), even after
    /// the secret was read again: the secret must be fixed.
    RoutingKeyRefused {
        errors: Vec<String>,
        results: Vec<EventResult>,
    },
    /// PagerDuty could not take an event before time or attempts ran out.
    PagerDutyUnavailable {
        reason: String,
        retry_after: Duration,
        results: Vec<EventResult>,
    },
    /// Two-way: Guance's rate limit stopped a restore; PagerDuty delivers again.
    GuanceRateLimited {
        retry_after: Duration,
        restores: Vec<RestoreResult>,
    },
    /// Two-way: Guance or PagerDuty's REST API could not be reached in time, or two-way
    /// is half configured; PagerDuty delivers again.
    TwoWayUnavailable {
        reason: String,
        retry_after: Duration,
        restores: Vec<RestoreResult>,
    },
    Internal(String),
}

impl AppError {
    pub fn status(&self) -> u16 {
        match self {
            AppError::NotFound | AppError::NoSuchPath => 404,
            AppError::MethodNotAllowed { .. } => 405,
            AppError::Unauthorized | AppError::BadSignature => 401,
            AppError::GuanceRateLimited { .. } => 429,
            AppError::TwoWayUnavailable { .. } => 503,
            AppError::PayloadTooLarge { .. } => 413,
            AppError::BadRequest(_) | AppError::Untranslatable { .. } => 400,
            AppError::SecretUnavailable
            | AppError::QueueUnavailable { .. }
            | AppError::RoutingKeyRefused { .. }
            | AppError::PagerDutyUnavailable { .. } => 503,
            AppError::PagerDutyRefused { status: 400, .. } => 422,
            AppError::PagerDutyRefused { .. } => 502,
            AppError::Internal(_) => 500,
        }
    }

    /// Seconds for a `Retry-After` header, on answers worth retrying.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AppError::SecretUnavailable => Some(Duration::from_secs(30)),
            AppError::QueueUnavailable { .. } => Some(Duration::from_secs(5)),
            AppError::RoutingKeyRefused { .. } => Some(Duration::from_secs(60)),
            AppError::PagerDutyUnavailable { retry_after, .. }
            | AppError::GuanceRateLimited { retry_after, .. }
            | AppError::TwoWayUnavailable { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    pub fn allow(&self) -> Option<&'static str> {
        match self {
            AppError::MethodNotAllowed { allow } => Some(allow),
            _ => None,
        }
    }

    /// The answer's `error` code: also the `Reason` of a refused request's metric.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::NotFound | AppError::NoSuchPath => "not_found",
            AppError::MethodNotAllowed { .. } => "method_not_allowed",
            AppError::Unauthorized => "unauthorized",
            AppError::BadSignature => "bad_signature",
            AppError::GuanceRateLimited { .. } => "guance_rate_limited",
            AppError::TwoWayUnavailable { .. } => "two_way_unavailable",
            AppError::PayloadTooLarge { .. } => "payload_too_large",
            AppError::BadRequest(_) => "bad_request",
            AppError::Untranslatable { .. } => "untranslatable_event",
            AppError::SecretUnavailable => "secret_unavailable",
            AppError::QueueUnavailable { .. } => "queue_unavailable",
            AppError::PagerDutyRefused { .. } => "pagerduty_refused",
            AppError::RoutingKeyRefused { .. } => "routing_key_refused",
            AppError::PagerDutyUnavailable { .. } => "pagerduty_unavailable",
            AppError::Internal(_) => "internal",
        }
    }

    /// Whether the whole request was refused before any event in it was counted: such an
    /// answer is counted as a refused request instead, so no refusal goes unseen.
    pub fn refuses_whole_request(&self) -> bool {
        !matches!(
            self,
            AppError::Untranslatable { .. }
                | AppError::QueueUnavailable { .. }
                | AppError::PagerDutyRefused { .. }
                | AppError::RoutingKeyRefused { .. }
                | AppError::PagerDutyUnavailable { .. }
                | AppError::GuanceRateLimited { .. }
                | AppError::TwoWayUnavailable { .. }
        )
    }

    /// The `Reason` a refused request is counted under: the answer's code, except for a
    /// path that is no route name (`invalid_path`).
    pub fn reason(&self) -> &'static str {
        match self {
            AppError::NoSuchPath => "invalid_path",
            other => other.code(),
        }
    }

    /// Whether a refused request counts towards the alarm on refused requests: not for
    /// what anyone probing a public URL causes (a path that is no route, a wrong method),
    /// which is still counted by its `Reason`.
    pub fn is_alarming(&self) -> bool {
        !matches!(
            self,
            AppError::NoSuchPath | AppError::MethodNotAllowed { .. }
        )
    }

    /// The JSON answer. Never holds a secret: nothing here is built from one.
    pub fn body(&self) -> Value {
        let message = match self {
            AppError::NotFound | AppError::NoSuchPath => "no such route".to_owned(),
            AppError::MethodNotAllowed { allow } => format!("use {allow} here"),
            AppError::Unauthorized => {
                "a valid webhook token is required (?token=... or Authorization: Bearer ...)"
                    .to_owned()
            }
            AppError::PayloadTooLarge { limit } => {
                format!("the body is larger than the {limit}-byte limit")
            }
            AppError::BadRequest(why) => why.clone(),
            AppError::Untranslatable { results } => {
                let first = results.first();
                format!(
                    "no event was taken; event {}: {}",
                    first.map_or(0, |r| r.index),
                    first
                        .and_then(|r| r.reason.as_deref())
                        .unwrap_or("untranslatable")
                )
            }
            AppError::SecretUnavailable => {
                "the PagerDuty routing key could not be read; nothing was sent".to_owned()
            }
            AppError::QueueUnavailable { reason } => format!(
                "the events could not all be queued ({reason}); send the request again, \
                 events already queued are not queued twice"
            ),
            AppError::PagerDutyRefused { status, .. } => {
                format!("PagerDuty refused an event with HTTP {status}")
            }
            AppError::RoutingKeyRefused { .. } => "PagerDuty refused the routing key even after \
                the secret was read again: the secret's key for this route must be fixed"
                .to_owned(),
            AppError::PagerDutyUnavailable { reason, .. } => {
                format!("PagerDuty could not be reached in time: {reason}")
            }
            AppError::BadSignature => "a valid X-PagerDuty-Signature is required: this path \
                takes PagerDuty's signed webhooks only"
                .to_owned(),
            AppError::GuanceRateLimited { .. } => "Guance's rate limit stopped a restore; \
                deliver again later, restores already made are not made twice"
                .to_owned(),
            AppError::TwoWayUnavailable { reason, .. } => {
                format!("not every Guance event could be recovered yet: {reason}")
            }
            AppError::Internal(why) => why.clone(),
        };
        let code = self.code();
        let mut body = json!({ "error": code, "message": message });
        match self {
            AppError::PagerDutyRefused {
                errors, results, ..
            } => {
                body["errors"] = json!(errors);
                body["results"] = json!(results);
            }
            AppError::RoutingKeyRefused { errors, results } => {
                body["errors"] = json!(errors);
                body["results"] = json!(results);
            }
            AppError::PagerDutyUnavailable { results, .. }
            | AppError::Untranslatable { results, .. } => {
                body["results"] = json!(results);
            }
            AppError::GuanceRateLimited { restores, .. }
            | AppError::TwoWayUnavailable { restores, .. } => {
                body["restores"] = json!(restores);
            }
            _ => {}
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let cases = [
            (AppError::NotFound, 404),
            (AppError::NoSuchPath, 404),
            (AppError::MethodNotAllowed { allow: "POST" }, 405),
            (AppError::Unauthorized, 401),
            (AppError::PayloadTooLarge { limit: 1 }, 413),
            (AppError::BadRequest("x".into()), 400),
            (AppError::Untranslatable { results: vec![] }, 400),
            (
                AppError::RoutingKeyRefused {
                    errors: vec![],
                    results: vec![],
                },
                503,
            ),
            (AppError::SecretUnavailable, 503),
            (AppError::QueueUnavailable { reason: "x".into() }, 503),
            (
                AppError::PagerDutyRefused {
                    status: 400,
                    errors: vec![],
                    results: vec![],
                },
                422,
            ),
            (
                AppError::PagerDutyRefused {
                    status: 404,
                    errors: vec![],
                    results: vec![],
                },
                502,
            ),
            (
                AppError::PagerDutyUnavailable {
                    reason: "x".into(),
                    retry_after: Duration::from_secs(5),
                    results: vec![],
                },
                503,
            ),
            (AppError::Internal("x".into()), 500),
        ];
        for (error, status) in cases {
            assert_eq!(error.status(), status, "{error:?}");
            assert_eq!(error.body()["error"], error.code());
            assert_eq!(error.retry_after().is_some(), status == 503, "{error:?}");
        }
    }
}
