//! `POST /pagerduty/webhook`: PagerDuty's signed webhooks (v3) come back, and a person's
//! resolve recovers the incident's Guance events through Guance's OpenAPI.
//!
//! PagerDuty retries 429, 5xx and timeouts for 48 hours but drops any other 4xx, and
//! three dropped in a row disable the subscription. So a delivery is refused (401) only
//! when its signature is not PagerDuty's; everything signed is answered 2xx unless a
//! retry can help, and then 429 or 503 with `Retry-After`, always within PagerDuty's 5 s.
//!
//! A retried delivery completes what is left: this container remembers, per incident,
//! the restores it settled and how many of the incident's alerts it has gone through,
//! so a retry neither spends Guance's 20 requests a minute again nor reads again pages
//! already done, and an incident of any size is recovered in the end.
//!
//! A restore acts on Guance's detection object (monitor and dimensions), not on one
//! fault: restoring an object that is paging again would close that new, live alert
//! (Guance's recovery notice comes back as a resolve). So each event is first checked
//! against PagerDuty: while an open incident holds an alert of the same `dedup_key`, the
//! event is not restored (`paging_again`).

use crate::adapters::guance_openapi::{Restore, RATE_LIMIT_RETRY_AFTER};
use crate::adapters::metrics::{RestoreOutcome, Tally, WebhookOutcome};
use crate::adapters::pagerduty_rest::{AlertsError, PAGE_LIMIT};
use crate::adapters::secret::{
    Credential, GuanceWorkspace, SecretSource, TwoWaySecrets, WebhookSecrets,
};
use crate::domain::pagerduty_webhook::{
    decide, guance_ref_of_alert, signature_matches, Decision, GuanceRef, WebhookDelivery,
    SIGNATURE_HEADER,
};
use crate::entry::app::{Admission, App, Invocation};
use crate::entry::handler::read_body_within;
use crate::error::{AppError, RestoreResult};
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// PagerDuty waits 5 s for an answer, counted from its sending: all of one delivery's
/// calls end within this of the request's arrival.
pub const DELIVERY_BUDGET: Duration = Duration::from_secs(4);
/// At least this much work is tried even when the request arrived long ago (a cold
/// start): an answer a little late is retried, and the retry finds the work done.
const LEAST_BUDGET: Duration = Duration::from_millis(1000);
/// A delivery is a few kilobytes; it is read whatever `MAX_BODY_BYTES` says for
/// Guance's bodies, up to what a function URL takes, so its signature is always checked.
const MAX_DELIVERY_BYTES: usize = 6 * 1024 * 1024;
/// What this container remembers of an incident's progress, and for how long: a retried
/// delivery comes within PagerDuty's backoff, minutes apart.
const PROGRESS_TTL: Duration = Duration::from_secs(3600);
const PROGRESS_MAX: usize = 10_000;
/// An incident of more alerts than this is not read further (an endless pagination).
const MAX_ALERTS: usize = 100 * PAGE_LIMIT;
/// When PagerDuty's REST API or Guance failed without advice of its own.
const UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(30);
/// When two-way is half configured (no API key, or a refused one): the secret must be
/// fixed, and PagerDuty's retries carry the delivery until it is.
const MISCONFIGURED_RETRY_AFTER: Duration = Duration::from_secs(60);

/// What this container has done for each incident a person resolved: the Guance events
/// settled (restored, or refused for good), and how many of its alerts are done with.
/// Keyed by incident, so that the same Guance object resolved again in a later incident
/// is restored again.
#[derive(Default)]
pub struct IncidentProgress(Mutex<HashMap<String, Progress>>);

struct Progress {
    settled: HashSet<GuanceRef>,
    /// How many of the incident's alerts have been read: a retry reads on from here.
    alerts_read: usize,
    /// Events read but not settled yet (their Guance failed or was not reached): a retry
    /// tries them first, so one workspace down never holds up the alerts after them.
    pending: BTreeSet<GuanceRef>,
    updated: Instant,
}

impl IncidentProgress {
    /// Where a retry resumes: the alerts read so far, and the events still to settle.
    fn resume(&self, incident_id: &str) -> (usize, Vec<GuanceRef>) {
        self.with(incident_id, |p| {
            (p.alerts_read, p.pending.iter().cloned().collect())
        })
        .unwrap_or_default()
    }

    fn is_settled(&self, incident_id: &str, event: &GuanceRef) -> bool {
        self.with(incident_id, |p| p.settled.contains(event))
            .unwrap_or(false)
    }

    fn with<T>(&self, incident_id: &str, read: impl FnOnce(&Progress) -> T) -> Option<T> {
        let progress = self.0.lock().ok()?;
        progress
            .get(incident_id)
            .filter(|p| p.updated.elapsed() < PROGRESS_TTL)
            .map(read)
    }

    fn update(&self, incident_id: &str, change: impl FnOnce(&mut Progress)) {
        let Ok(mut progress) = self.0.lock() else {
            return;
        };
        if progress.len() >= PROGRESS_MAX && !progress.contains_key(incident_id) {
            progress.retain(|_, p| p.updated.elapsed() < PROGRESS_TTL);
            if progress.len() >= PROGRESS_MAX {
                progress.clear();
            }
        }
        let entry = progress
            .entry(incident_id.to_owned())
            .or_insert_with(|| Progress {
                settled: HashSet::new(),
                alerts_read: 0,
                pending: BTreeSet::new(),
                updated: Instant::now(),
            });
        if entry.updated.elapsed() >= PROGRESS_TTL {
            entry.settled.clear();
            entry.alerts_read = 0;
            entry.pending.clear();
        }
        entry.updated = Instant::now();
        change(entry);
    }
}

/// What became of one Guance event of the incident.
pub struct Restored {
    pub event: GuanceRef,
    pub outcome: RestoreOutcome,
    pub reason: Option<String>,
    /// How long Guance took, when it was called.
    pub call_ms: Option<u64>,
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
            .min(delivery_deadline(request.request_context.time_epoch));
        let request_id = invocation.request_id.as_str();
        let signature = signature_header(request).ok_or(AppError::BadSignature)?;
        let body = read_body_within(request, MAX_DELIVERY_BYTES).map_err(|error| {
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

        let retry_later = |tally: &mut Tally,
                           reason: &'static str,
                           why: String,
                           retry_after,
                           restores| {
            tracing::error!(request_id, incident_id = %incident_id, reason, error = %why, "not every Guance event of the incident could be recovered yet; PagerDuty will deliver again");
            tally.pagerduty_webhook(WebhookOutcome::Retry, reason);
            AppError::TwoWayUnavailable {
                reason: why,
                retry_after,
                restores,
            }
        };
        let Some(token) = two_way.pagerduty_api_token.as_ref() else {
            return Err(retry_later(
                tally,
                "no_api_token",
                "two-way is not fully configured: the secret has no pagerduty_api_token".into(),
                MISCONFIGURED_RETRY_AFTER,
                Vec::new(),
            ));
        };

        // The events a failed delivery left first, then page by page from where it
        // stopped, restoring each page's events before reading the next: what one
        // delivery's time allows is kept, and a retry goes on from there. A workspace
        // whose Guance failed in this delivery is asked nothing more until the next.
        let progress = &self.two_way.progress;
        let (resumed_at, pending) = progress.resume(&incident_id);
        let mut offset = resumed_at;
        let mut restores: Vec<Restored> = Vec::new();
        let mut seen: HashSet<GuanceRef> = pending.iter().cloned().collect();
        let mut failing: HashSet<String> = HashSet::new();
        let mut stopped: Option<(&'static str, String, Duration)> = None;
        if !pending.is_empty() {
            let done = self
                .restore_page(
                    two_way,
                    token,
                    &incident_id,
                    pending,
                    &failing,
                    deadline,
                    request_id,
                )
                .await;
            restores.extend(done);
            note_failing(&restores, &mut failing);
        }
        loop {
            if offset >= MAX_ALERTS {
                tracing::error!(request_id, incident_id = %incident_id, alerts = offset, "the incident has more alerts than are read; the rest are not recovered");
                break;
            }
            if Instant::now() >= deadline {
                stopped = Some((
                    "pagerduty_api_unavailable",
                    "the delivery's time ran out before the incident's last alerts were read"
                        .into(),
                    Duration::from_secs(5),
                ));
                break;
            }
            let page = match self
                .two_way
                .pagerduty_rest
                .alerts_page(token, &incident_id, offset, deadline)
                .await
            {
                Ok(page) => page,
                Err(AlertsError::Refused { status, message }) if offset == 0 => {
                    tracing::error!(request_id, incident_id = %incident_id, status, error = %message, "PagerDuty's REST API refused to list the incident's alerts; nothing to recover");
                    return ignored(
                        tally,
                        "incident_unreadable",
                        format!(
                            "the incident's alerts could not be read: HTTP {status}: {message}"
                        ),
                    );
                }
                Err(error) => {
                    let (reason, retry_after) = match &error {
                        AlertsError::KeyRefused { .. } => {
                            ("api_token_refused", MISCONFIGURED_RETRY_AFTER)
                        }
                        AlertsError::Unavailable { retry_after, .. } => (
                            "pagerduty_api_unavailable",
                            retry_after.unwrap_or(UNAVAILABLE_RETRY_AFTER),
                        ),
                        AlertsError::Refused { .. } => {
                            ("pagerduty_api_unavailable", UNAVAILABLE_RETRY_AFTER)
                        }
                    };
                    stopped = Some((reason, error.to_string(), retry_after));
                    break;
                }
            };
            let events: Vec<GuanceRef> = page
                .alerts
                .iter()
                .filter_map(guance_ref_of_alert)
                .filter(|event| seen.insert(event.clone()))
                .collect();
            let done = self
                .restore_page(
                    two_way,
                    token,
                    &incident_id,
                    events,
                    &failing,
                    deadline,
                    request_id,
                )
                .await;
            note_failing(&done, &mut failing);
            offset += page.alerts.len();
            let unsettled: Vec<GuanceRef> = done
                .iter()
                .filter(|r| r.outcome.wants_retry())
                .map(|r| r.event.clone())
                .collect();
            restores.extend(done);
            // What was read is kept, the events left unsettled with it.
            progress.update(&incident_id, |p| {
                p.alerts_read = offset;
                p.pending.extend(unsettled);
            });
            if !page.more {
                break;
            }
        }
        // The events settled in this delivery leave the pending ones.
        progress.update(&incident_id, |p| {
            let Progress {
                settled, pending, ..
            } = p;
            pending.retain(|event| !settled.contains(event));
        });

        for restored in &restores {
            let workspace = restored.event.workspace_uuid.as_str();
            let counted_as = two_way
                .guance_workspaces
                .contains_key(workspace)
                .then_some(workspace);
            tally.restore(counted_as, restored.outcome, restored.call_ms);
        }
        if restores.is_empty() && resumed_at == 0 && stopped.is_none() {
            return ignored(
                tally,
                "no_guance_alert",
                format!("none of the incident's {offset} alert(s) came from a Guance event"),
            );
        }
        let rate_limited = restores
            .iter()
            .any(|r| r.outcome == RestoreOutcome::RateLimited);
        let retry = restores.iter().any(|r| r.outcome.wants_retry());
        let results: Vec<RestoreResult> = restores.into_iter().map(RestoreResult::from).collect();
        if let Some((reason, why, retry_after)) = stopped {
            return Err(retry_later(tally, reason, why, retry_after, results));
        }
        if rate_limited {
            tally.pagerduty_webhook(WebhookOutcome::Retry, "guance_rate_limited");
            return Err(AppError::GuanceRateLimited {
                retry_after: RATE_LIMIT_RETRY_AFTER,
                restores: results,
            });
        }
        if retry {
            return Err(retry_later(
                tally,
                "guance_unavailable",
                "Guance could not be reached in time for every event".into(),
                UNAVAILABLE_RETRY_AFTER,
                results,
            ));
        }
        tally.pagerduty_webhook(WebhookOutcome::Recovered, "person_resolved");
        Ok((
            200,
            json!({"outcome": "recovered", "incident_id": incident_id, "restores": results}),
        ))
    }

    /// The secrets whose signing secret signed `body`. A mismatch may mean the secret was
    /// just rotated, so the secret is read again (rate-limited by the cache).
    async fn verify(
        &self,
        body: &[u8],
        signature: &str,
        deadline: Instant,
    ) -> Result<std::sync::Arc<WebhookSecrets>, AppError> {
        let signed = |secrets: &WebhookSecrets| {
            let keys: Vec<&[u8]> = secrets
                .signing_secrets()
                .iter()
                .map(|s| s.expose().as_bytes())
                .collect();
            signature_matches(body, signature, &keys)
        };
        let secrets = match self
            .admit(deadline, "PagerDuty webhook signature", true, signed)
            .await?
        {
            Admission::Admitted(secrets) => return Ok(secrets),
            Admission::Refused(secrets) => secrets,
        };
        if secrets.signing_secrets().is_empty() {
            tracing::warn!("a PagerDuty webhook arrived but two-way is off: the secret has no pagerduty_webhook_secrets");
        }
        Err(AppError::BadSignature)
    }

    /// Recovers one page's events: the workspaces side by side (one stalled Guance host
    /// never starves another), each workspace's events in turn; a workspace over its
    /// rate limit is asked nothing more in this delivery.
    #[allow(clippy::too_many_arguments)]
    async fn restore_page(
        &self,
        two_way: &TwoWaySecrets,
        token: &Credential,
        incident_id: &str,
        events: Vec<GuanceRef>,
        failing: &HashSet<String>,
        deadline: Instant,
        request_id: &str,
    ) -> Vec<Restored> {
        let mut lanes: BTreeMap<String, Vec<GuanceRef>> = BTreeMap::new();
        let mut done = Vec::new();
        for event in events {
            match two_way.guance_workspaces.get(&event.workspace_uuid) {
                Some(_) => lanes
                    .entry(event.workspace_uuid.clone())
                    .or_default()
                    .push(event),
                None => {
                    tracing::warn!(request_id, workspace_uuid = %event.workspace_uuid, monitor_checker_event_ref = %event.monitor_checker_event_ref, "the secret's guance_workspaces has no key for this workspace; the event is not recovered");
                    done.push(Restored {
                        event,
                        outcome: RestoreOutcome::NoKey,
                        reason: None,
                        call_ms: None,
                    });
                }
            }
        }
        let lanes = lanes.into_iter().filter_map(|(uuid, events)| {
            let workspace = two_way.guance_workspaces.get(&uuid)?;
            let failed = failing.contains(&uuid);
            Some(self.restore_lane(workspace, token, incident_id, events, failed, deadline))
        });
        for restored in futures_util::future::join_all(lanes)
            .await
            .into_iter()
            .flatten()
        {
            done.push(restored);
        }
        for restored in &done {
            let event = &restored.event;
            if !restored.outcome.wants_retry() {
                self.two_way
                    .progress
                    .update(incident_id, |p| _ = p.settled.insert(event.clone()));
            }
            tracing::info!(
                request_id,
                incident_id,
                workspace_uuid = %event.workspace_uuid,
                monitor_checker_event_ref = %event.monitor_checker_event_ref,
                outcome = restored.outcome.as_str(),
                reason = restored.reason.as_deref(),
                ms = restored.call_ms,
                "Guance restore"
            );
        }
        done
    }

    /// One workspace's events, in turn. `failed`: its Guance failed earlier in this
    /// delivery, so it is asked nothing more until the next.
    async fn restore_lane(
        &self,
        workspace: &GuanceWorkspace,
        token: &Credential,
        incident_id: &str,
        events: Vec<GuanceRef>,
        failed: bool,
        deadline: Instant,
    ) -> Vec<Restored> {
        let progress = &self.two_way.progress;
        let mut limited = failed;
        let mut done = Vec::with_capacity(events.len());
        for event in events {
            let (outcome, reason, call_ms) = if progress.is_settled(incident_id, &event) {
                (RestoreOutcome::AlreadyDone, None, None)
            } else if limited || Instant::now() >= deadline {
                (RestoreOutcome::NotAttempted, None, None)
            } else {
                self.restore_one(
                    workspace,
                    token,
                    incident_id,
                    &event,
                    deadline,
                    &mut limited,
                )
                .await
            };
            done.push(Restored {
                event,
                outcome,
                reason,
                call_ms,
            });
        }
        done
    }

    /// Checks that the event's object is not paging again, then asks Guance.
    async fn restore_one(
        &self,
        workspace: &GuanceWorkspace,
        token: &Credential,
        incident_id: &str,
        event: &GuanceRef,
        deadline: Instant,
        limited: &mut bool,
    ) -> (RestoreOutcome, Option<String>, Option<u64>) {
        let event_ref = event.monitor_checker_event_ref.as_str();
        match self
            .two_way
            .pagerduty_rest
            .open_incident_for_key(token, event_ref, incident_id, deadline)
            .await
        {
            Ok(None) => {}
            Ok(Some(open)) => {
                return (
                    RestoreOutcome::PagingAgain,
                    Some(format!("incident {open} pages for the same Guance object")),
                    None,
                )
            }
            // Better an event left unrecovered than a live page closed.
            Err(AlertsError::Refused { status, message }) => {
                return (
                    RestoreOutcome::Refused,
                    Some(format!(
                        "PagerDuty's REST API refused the check for an open incident: HTTP {status}: {message}"
                    )),
                    None,
                )
            }
            Err(error) => {
                return (
                    RestoreOutcome::Unavailable,
                    Some(error.to_string()),
                    None,
                )
            }
        }
        let started = Instant::now();
        let restore = self
            .two_way
            .guance
            .restore(workspace, event_ref, deadline)
            .await;
        let ms = Some(started.elapsed().as_millis() as u64);
        match restore {
            Restore::Restored => (RestoreOutcome::Restored, None, ms),
            Restore::RateLimited { error_code } => {
                *limited = true;
                (RestoreOutcome::RateLimited, Some(error_code), ms)
            }
            Restore::Unavailable { reason } => {
                *limited = true;
                (RestoreOutcome::Unavailable, Some(reason), ms)
            }
            Restore::Refused {
                status,
                error_code,
                message,
            } => {
                tracing::error!(workspace_uuid = %event.workspace_uuid, monitor_checker_event_ref = event_ref, status, error_code = %error_code, message = %message, "Guance refused to recover the event; a retry cannot mend this (check the workspace's api_key)");
                (
                    RestoreOutcome::Refused,
                    Some(format!("HTTP {status} {error_code} {message}")),
                    ms,
                )
            }
        }
    }
}

/// The workspaces whose Guance failed (rate limited, down, stalled) among `done`.
fn note_failing(done: &[Restored], failing: &mut HashSet<String>) {
    for restored in done {
        if matches!(
            restored.outcome,
            RestoreOutcome::RateLimited | RestoreOutcome::Unavailable
        ) {
            failing.insert(restored.event.workspace_uuid.clone());
        }
    }
}

/// When the delivery's work must be done: `DELIVERY_BUDGET` after the request reached
/// the function URL (`requestContext.timeEpoch`), so time spent before the handler (a
/// cold start) counts; at least `LEAST_BUDGET` from now.
fn delivery_deadline(arrived_epoch_ms: i64) -> Instant {
    let now = Instant::now();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let waited =
        Duration::from_millis(u64::try_from(now_ms.saturating_sub(arrived_epoch_ms)).unwrap_or(0));
    // A missing or implausible arrival time (0, or one in the future) counts from now.
    let waited = if arrived_epoch_ms <= 0 || waited > Duration::from_secs(900) {
        Duration::ZERO
    } else {
        waited
    };
    now + DELIVERY_BUDGET.saturating_sub(waited).max(LEAST_BUDGET)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_counts_from_the_requests_arrival() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let left = |arrived: i64| {
            delivery_deadline(arrived)
                .saturating_duration_since(Instant::now())
                .as_millis()
        };
        assert!((3_900..=4_000).contains(&left(now_ms)));
        assert!(
            (2_700..=2_800).contains(&left(now_ms - 1_200)),
            "a cold start's 1.2 s counts"
        );
        assert!(
            (900..=1_000).contains(&left(now_ms - 10_000)),
            "at least a second of work"
        );
        for implausible in [0, -5, now_ms + 60_000, now_ms - 3_600_000] {
            assert!(
                (3_900..=4_000).contains(&left(implausible)),
                "{implausible}"
            );
        }
    }

    #[test]
    fn progress_is_per_incident() {
        let progress = IncidentProgress::default();
        let event = GuanceRef {
            workspace_uuid: "w".into(),
            monitor_checker_event_ref: "r".into(),
        };
        progress.update("Q1", |p| _ = p.settled.insert(event.clone()));
        progress.update("Q1", |p| p.alerts_read = 100);
        assert!(progress.is_settled("Q1", &event));
        assert!(
            !progress.is_settled("Q2", &event),
            "the same object in another incident is restored again"
        );
        assert_eq!(progress.resume("Q1").0, 100);
        assert_eq!(progress.resume("Q2"), (0, Vec::new()));
    }
}
