//! `POST /pagerduty/webhook`: PagerDuty's signed webhooks (v3) come back, and a person's
//! resolve recovers the incident's Guance events through Guance's OpenAPI.
//!
//! PagerDuty retries 429, 5xx and timeouts for 48 hours but drops any other 4xx, and
//! three dropped in a row disable the subscription. So a delivery is refused (401) only
//! when its signature is not PagerDuty's; everything signed is answered 2xx unless a
//! retry can help, and then 429 or 503 with `Retry-After`, always within PagerDuty's 5 s.
//! A retried delivery completes what is left: restores this container already settled
//! are not asked of Guance again, sparing its 20 requests a minute.

use crate::adapters::guance_openapi::{Restore, RATE_LIMIT_RETRY_AFTER};
use crate::adapters::metrics::{RestoreOutcome, Tally, WebhookOutcome};
use crate::adapters::pagerduty_rest::AlertsError;
use crate::adapters::secret::{Credential, SecretSource, TwoWaySecrets, WebhookSecrets};
use crate::domain::pagerduty_webhook::{
    decide, guance_ref_of_alert, signature_matches, Decision, GuanceRef, WebhookDelivery,
    SIGNATURE_HEADER,
};
use crate::entry::app::{App, Invocation};
use crate::error::{AppError, RestoreResult};
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// PagerDuty waits 5 s for an answer; all of one delivery's calls end within this.
pub const DELIVERY_BUDGET: Duration = Duration::from_secs(4);
/// What this container remembers of settled restores, and for how long: a retried
/// delivery comes within PagerDuty's backoff, minutes apart.
const SETTLED_TTL: Duration = Duration::from_secs(3600);
const SETTLED_MAX: usize = 10_000;
/// When PagerDuty's REST API or Guance failed without advice of its own.
const UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(30);
/// When two-way is half configured (no API key, or a refused one): the secret must be
/// fixed, and PagerDuty's retries carry the delivery until it is.
const MISCONFIGURED_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The Guance events this container has settled (restored, or refused for good), so
/// that a retried delivery does not ask again.
#[derive(Default)]
pub struct SettledRefs(Mutex<HashMap<GuanceRef, Instant>>);

impl SettledRefs {
    fn contains(&self, event: &GuanceRef) -> bool {
        self.0
            .lock()
            .map(|settled| {
                settled
                    .get(event)
                    .is_some_and(|at| at.elapsed() < SETTLED_TTL)
            })
            .unwrap_or(false)
    }

    fn insert(&self, event: GuanceRef) {
        if let Ok(mut settled) = self.0.lock() {
            if settled.len() >= SETTLED_MAX {
                settled.retain(|_, at| at.elapsed() < SETTLED_TTL);
                if settled.len() >= SETTLED_MAX {
                    settled.clear();
                }
            }
            settled.insert(event, Instant::now());
        }
    }
}

impl<S: SecretSource> App<S> {
    /// Answers one delivery of PagerDuty's webhook.
    pub(crate) async fn pagerduty_webhook(
        &self,
        request: &ApiGatewayV2httpRequest,
        invocation: &Invocation,
        tally: &mut Tally,
    ) -> Result<(u16, Value), AppError> {
        let deadline = self
            .work_deadline(invocation)
            .min(Instant::now() + DELIVERY_BUDGET);
        let request_id = invocation.request_id.as_str();
        let signature = signature_header(request).ok_or(AppError::BadSignature)?;
        let body = self.read_body(request).map_err(|error| {
            tracing::warn!(request_id, error = %error.body()["message"], "PagerDuty webhook body unreadable before its signature could be checked");
            AppError::BadSignature
        })?;
        let secrets = self.verify(&body, &signature, deadline).await?;
        let two_way = secrets.two_way.as_ref().ok_or(AppError::BadSignature)?;
        let webhook_id = request
            .headers
            .get("x-webhook-id")
            .and_then(|v| v.to_str().ok())
            .map(|id| id.chars().take(64).collect::<String>());

        let ignored = |tally: &mut Tally, reason: &'static str, why: String| {
            tally.pagerduty_webhook(WebhookOutcome::Ignored, reason);
            tracing::info!(request_id, webhook_id = webhook_id.as_deref(), reason, why = %why, "PagerDuty webhook ignored");
            Ok((
                200,
                json!({"outcome": "ignored", "reason": reason, "message": why}),
            ))
        };
        let delivery: WebhookDelivery = match serde_json::from_slice(&body) {
            Ok(delivery) => delivery,
            Err(error) => {
                return ignored(
                    tally,
                    "unreadable",
                    format!(
                        "the signed body is not a webhook v3 delivery (line {}, column {})",
                        error.line(),
                        error.column()
                    ),
                )
            }
        };
        let incident_id = match decide(&delivery.event) {
            Decision::Ignore(reason) => return ignored(tally, reason.code(), reason.to_string()),
            Decision::Recover { incident_id } => incident_id,
        };
        let event_id = delivery.event.id.as_deref();
        tracing::info!(request_id, webhook_id = webhook_id.as_deref(), event_id, incident_id = %incident_id, "a person resolved the incident in PagerDuty; recovering its Guance events");

        let Some(token) = two_way.pagerduty_api_token.as_ref() else {
            tracing::error!(request_id, incident_id = %incident_id, "pagerduty_api_token is not in the secret, so the incident's alerts cannot be read; PagerDuty will deliver again");
            tally.pagerduty_webhook(WebhookOutcome::Retry, "no_api_token");
            return Err(AppError::TwoWayUnavailable {
                reason: "two-way is not fully configured: the secret has no pagerduty_api_token"
                    .into(),
                retry_after: MISCONFIGURED_RETRY_AFTER,
                restores: Vec::new(),
            });
        };
        let alerts = match self.alerts(token, &incident_id, deadline).await {
            Ok(alerts) => alerts,
            Err(AlertsError::Refused { status, message }) => {
                tracing::error!(request_id, incident_id = %incident_id, status, error = %message, "PagerDuty's REST API refused to list the incident's alerts; nothing to recover");
                return ignored(
                    tally,
                    "incident_unreadable",
                    format!("the incident's alerts could not be read: HTTP {status}: {message}"),
                );
            }
            Err(error) => {
                let (reason, retry_after) = match &error {
                    AlertsError::Unavailable { retry_after, .. } => (
                        "pagerduty_api_unavailable",
                        retry_after.unwrap_or(UNAVAILABLE_RETRY_AFTER),
                    ),
                    _ => ("api_token_refused", MISCONFIGURED_RETRY_AFTER),
                };
                tracing::error!(request_id, incident_id = %incident_id, error = %error, "the incident's alerts could not be read; PagerDuty will deliver again");
                tally.pagerduty_webhook(WebhookOutcome::Retry, reason);
                return Err(AppError::TwoWayUnavailable {
                    reason: error.to_string(),
                    retry_after,
                    restores: Vec::new(),
                });
            }
        };
        let events: BTreeSet<GuanceRef> = alerts.iter().filter_map(guance_ref_of_alert).collect();
        if events.is_empty() {
            return ignored(
                tally,
                "no_guance_alert",
                format!(
                    "none of the incident's {} alert(s) came from a Guance event",
                    alerts.len()
                ),
            );
        }

        let restores = self
            .restore_all(two_way, &events, deadline, invocation, tally)
            .await;
        let rate_limited = restores
            .iter()
            .any(|r| r.outcome == RestoreOutcome::RateLimited);
        let retry = restores.iter().any(|r| r.outcome.wants_retry());
        let outcome = if retry {
            WebhookOutcome::Retry
        } else {
            WebhookOutcome::Recovered
        };
        let reason = if rate_limited {
            "guance_rate_limited"
        } else if retry {
            "guance_unavailable"
        } else {
            "person_resolved"
        };
        tally.pagerduty_webhook(outcome, reason);
        let restores: Vec<RestoreResult> = restores.into_iter().map(RestoreResult::from).collect();
        if rate_limited {
            Err(AppError::GuanceRateLimited {
                retry_after: RATE_LIMIT_RETRY_AFTER,
                restores,
            })
        } else if retry {
            Err(AppError::TwoWayUnavailable {
                reason: "Guance could not be reached in time for every event".into(),
                retry_after: UNAVAILABLE_RETRY_AFTER,
                restores,
            })
        } else {
            Ok((
                200,
                json!({"outcome": "recovered", "incident_id": incident_id, "restores": restores}),
            ))
        }
    }

    /// The secrets whose signing secret signed `body`. A mismatch may mean the secret was
    /// just rotated, so the secret is read again (rate-limited by the cache).
    async fn verify(
        &self,
        body: &[u8],
        signature: &str,
        deadline: Instant,
    ) -> Result<Arc<WebhookSecrets>, AppError> {
        let secrets = self.secrets.get(deadline).await.map_err(|error| {
            tracing::error!(%error, "cannot read the secret");
            AppError::SecretUnavailable
        })?;
        let signed = |secrets: &WebhookSecrets| {
            let keys: Vec<&[u8]> = secrets
                .signing_secrets()
                .iter()
                .map(|s| s.expose().as_bytes())
                .collect();
            signature_matches(body, signature, &keys)
        };
        if signed(&secrets) {
            return Ok(secrets);
        }
        if let Some(fresh) = self.secrets.refresh_after_mismatch(deadline).await {
            if signed(&fresh) {
                tracing::info!(
                    "PagerDuty webhook signature accepted after re-reading the secret (rotated)"
                );
                return Ok(fresh);
            }
        }
        if secrets.signing_secrets().is_empty() {
            tracing::warn!("a PagerDuty webhook arrived but two-way is off: the secret has no pagerduty_webhook_secrets");
        }
        Err(AppError::BadSignature)
    }

    async fn alerts(
        &self,
        token: &Credential,
        incident_id: &str,
        deadline: Instant,
    ) -> Result<Vec<Value>, AlertsError> {
        self.two_way
            .pagerduty_rest
            .incident_alerts(token, incident_id, deadline)
            .await
    }

    /// Recovers each event in turn, by `deadline`. A workspace over its rate limit is
    /// asked nothing more in this delivery; the rest go on.
    async fn restore_all(
        &self,
        two_way: &TwoWaySecrets,
        events: &BTreeSet<GuanceRef>,
        deadline: Instant,
        invocation: &Invocation,
        tally: &mut Tally,
    ) -> Vec<Restored> {
        let request_id = invocation.request_id.as_str();
        let settled = &self.two_way.settled;
        let mut limited: HashSet<&str> = HashSet::new();
        let mut results = Vec::with_capacity(events.len());
        for event in events {
            let workspace_uuid = event.workspace_uuid.as_str();
            let event_ref = event.monitor_checker_event_ref.as_str();
            let workspace = two_way.guance_workspaces.get(workspace_uuid);
            let counted_as = workspace.map(|_| workspace_uuid);
            let (outcome, reason, call_ms) = if settled.contains(event) {
                (RestoreOutcome::AlreadyDone, None, None)
            } else if let Some(workspace) = workspace {
                if limited.contains(workspace_uuid) || Instant::now() >= deadline {
                    (RestoreOutcome::NotAttempted, None, None)
                } else {
                    let started = Instant::now();
                    let restore = self
                        .two_way
                        .guance
                        .restore(workspace, event_ref, deadline)
                        .await;
                    let ms = Some(started.elapsed().as_millis() as u64);
                    match restore {
                        Restore::Restored => {
                            settled.insert(event.clone());
                            (RestoreOutcome::Restored, None, ms)
                        }
                        Restore::RateLimited { error_code } => {
                            limited.insert(workspace_uuid);
                            (RestoreOutcome::RateLimited, Some(error_code), ms)
                        }
                        Restore::Unavailable { reason } => {
                            (RestoreOutcome::Unavailable, Some(reason), ms)
                        }
                        Restore::Refused {
                            status,
                            error_code,
                            message,
                        } => {
                            settled.insert(event.clone());
                            let why = format!("HTTP {status} {error_code} {message}");
                            tracing::error!(request_id, workspace_uuid, monitor_checker_event_ref = event_ref, status, error_code = %error_code, message = %message, "Guance refused to recover the event; a retry cannot mend this (check the workspace's api_key)");
                            (RestoreOutcome::Refused, Some(why), ms)
                        }
                    }
                }
            } else {
                tracing::warn!(request_id, workspace_uuid, monitor_checker_event_ref = event_ref, "the secret's guance_workspaces has no key for this workspace; the event is not recovered");
                (RestoreOutcome::NoKey, None, None)
            };
            tally.restore(counted_as, outcome, call_ms);
            tracing::info!(
                request_id,
                workspace_uuid,
                monitor_checker_event_ref = event_ref,
                outcome = outcome.as_str(),
                reason = reason.as_deref(),
                ms = call_ms,
                "Guance restore"
            );
            results.push(Restored {
                event: event.clone(),
                outcome,
                reason,
            });
        }
        results
    }
}

/// What became of one Guance event of the incident.
pub struct Restored {
    pub event: GuanceRef,
    pub outcome: RestoreOutcome,
    pub reason: Option<String>,
}

impl From<Restored> for RestoreResult {
    fn from(restored: Restored) -> Self {
        RestoreResult {
            workspace_uuid: restored.event.workspace_uuid,
            monitor_checker_event_ref: restored.event.monitor_checker_event_ref,
            outcome: restored.outcome.as_str(),
            reason: restored.reason,
        }
    }
}

/// `X-PagerDuty-Signature`, every value of it joined: `None` when absent or not text.
fn signature_header(request: &ApiGatewayV2httpRequest) -> Option<String> {
    let values: Vec<&str> = request
        .headers
        .get_all(SIGNATURE_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}
