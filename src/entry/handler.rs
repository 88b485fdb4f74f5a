//! The function URL handler: route, authenticate, read the body, translate every event,
//! then queue or deliver them in order. The token is checked before the body is read; a
//! body refused whole (too large, not JSON) is refused before anything leaves. Within a
//! body that parses, one bad event never costs the others: an event that cannot be
//! translated is answered `rejected` with its reason and the rest go on, and in direct
//! mode an event PagerDuty refuses stops only its own alert's later events. Every
//! refusal is counted where an alarm sees it.

use crate::adapters::delivery::Delivery;
use crate::adapters::metrics::{self, PagerDutyCall, Tally};
use crate::adapters::queue::QueuedEvent;
use crate::adapters::secret::{
    is_valid_route_name, route_path, RoutingKey, SecretSource, WebhookSecrets,
};
use crate::domain::guance::{parse_body_elements, MAX_EVENTS_PER_BODY};
use crate::domain::pagerduty::PagerDutyEvent;
use crate::domain::translate::{translate, DropReason, Outcome};
use crate::entry::app::{Admission, App, Invocation, QueueMode};
use crate::error::{AppError, EventOutcome, EventResult};
use base64::Engine;
use lambda_http::aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use lambda_http::http::{header, HeaderValue, Method};
use lambda_http::Body;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Used when PagerDuty gave no Retry-After of its own.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30);

enum Step {
    Send(Box<PagerDutyEvent>),
    Drop(DropReason),
    /// Not taken, and why: an element that is not an event, or an event that cannot be
    /// translated.
    Reject(String),
}

/// What became of one delivery attempt, for the request's answer.
enum Sending {
    Sent,
    DryRun,
    /// PagerDuty refused the event for good: its alert's later events are not sent.
    Refused {
        status: u16,
        errors: Vec<String>,
    },
    /// PagerDuty refused the routing key: nothing more of this request can go.
    KeyRefused {
        errors: Vec<String>,
    },
    /// PagerDuty could not be reached in time: the rest of the request waits, so that
    /// no resolve overtakes its trigger.
    Unavailable {
        reason: String,
        retry_after: Duration,
    },
}

enum Route<'a> {
    Root,
    Named(&'a str),
    /// PagerDuty's webhook (two-way). No route name contains `/`, so none collides.
    PagerDutyWebhook,
    Invalid,
}

/// Where PagerDuty's webhook subscription delivers, below the function URL.
pub const PAGERDUTY_WEBHOOK_PATH: &str = "/pagerduty/webhook";

fn route_of(path: &str) -> Route<'_> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        Route::Root
    } else if trimmed == PAGERDUTY_WEBHOOK_PATH.trim_matches('/') {
        Route::PagerDutyWebhook
    } else if is_valid_route_name(trimmed) {
        Route::Named(trimmed)
    } else {
        Route::Invalid
    }
}

impl<S: SecretSource> App<S> {
    /// Answers one function URL request. Never fails: every error is an HTTP answer.
    pub async fn handle(
        &self,
        request: ApiGatewayV2httpRequest,
        invocation: &Invocation,
    ) -> ApiGatewayV2httpResponse {
        let method = request.request_context.http.method.clone();
        let path = request.raw_path.as_deref().unwrap_or("/");
        let mut tally = Tally::default();
        let answer = match (route_of(path), method) {
            (Route::Invalid, _) => Err(AppError::NoSuchPath),
            (Route::Root, Method::GET) => Ok((200, health())),
            (Route::Root, Method::POST) => {
                self.webhook(None, &request, invocation, &mut tally).await
            }
            (Route::Named(name), Method::POST) => {
                self.webhook(Some(name), &request, invocation, &mut tally)
                    .await
            }
            (Route::PagerDutyWebhook, Method::POST) => {
                self.pagerduty_webhook(&request, invocation, &mut tally)
                    .await
            }
            (Route::Root, _) => Err(AppError::MethodNotAllowed { allow: "GET, POST" }),
            (Route::Named(_) | Route::PagerDutyWebhook, _) => {
                Err(AppError::MethodNotAllowed { allow: "POST" })
            }
        };
        if let Err(error) = &answer {
            if error.refuses_whole_request() {
                tally.refused_request(error.reason(), error.is_alarming());
            }
        }
        self.metrics.publish(&tally, &invocation.request_id);
        match answer {
            Ok((status, body)) => json_response(status, &body),
            Err(error) => {
                let (status, body) = (error.status(), error.body());
                if status >= 500 {
                    tracing::error!(request_id = %invocation.request_id, status, error = %body["message"], "request failed");
                } else {
                    tracing::warn!(request_id = %invocation.request_id, status, error = %body["message"], "request refused");
                }
                let mut response = json_response(status, &body);
                if let Some(retry_after) = error.retry_after() {
                    response.headers.insert(
                        header::RETRY_AFTER,
                        HeaderValue::from(retry_after.as_secs()),
                    );
                }
                if let Some(allow) = error.allow() {
                    response
                        .headers
                        .insert(header::ALLOW, HeaderValue::from_static(allow));
                }
                response
            }
        }
    }

    async fn webhook(
        &self,
        route: Option<&str>,
        request: &ApiGatewayV2httpRequest,
        invocation: &Invocation,
        tally: &mut Tally,
    ) -> Result<(u16, Value), AppError> {
        let deadline = self.work_deadline(invocation);
        // The caller first: a stranger learns nothing from how the body is judged.
        let secrets = self.authenticate(request, deadline).await?;
        let routing_key = secrets.routing_key_for(route).ok_or(AppError::NotFound)?;
        let body = self.read_body(request)?;
        // Known to the secret from here on, so the metrics' Route dimension stays bounded.
        let path = route_path(route);
        // Direct delivery must finish within one invocation; the queue takes any number.
        let max_events = if self.queue.is_some() {
            usize::MAX
        } else {
            MAX_EVENTS_PER_BODY
        };
        let elements = parse_body_elements(&body, max_events)
            .map_err(|e| AppError::BadRequest(e.to_string()))?;
        tally.count(&path, metrics::Outcome::Received, elements.len() as u64);

        let planned = elements
            .iter()
            .map(|element| {
                let event = match element {
                    Ok(event) => event,
                    Err(not_an_event) => return (None, Step::Reject(not_an_event.to_string())),
                };
                let translation = translate(event, &self.settings);
                let df_event_id = event.text("df_event_id").map(|id| id.into_owned());
                for warning in &translation.warnings {
                    tracing::warn!(request_id = %invocation.request_id, df_event_id = df_event_id.as_deref(), %warning, "event translated with a warning");
                }
                let step = match translation.outcome {
                    Outcome::Reject(reason) => Step::Reject(reason.to_string()),
                    Outcome::Drop(reason) => Step::Drop(reason),
                    Outcome::Send(event) => Step::Send(event),
                };
                (df_event_id, step)
            })
            .collect();

        let results = match &self.queue {
            Some(mode) => {
                self.enqueue(mode, route, planned, deadline, invocation, tally)
                    .await?
            }
            None => {
                self.deliver_all(route, routing_key, planned, deadline, invocation, tally)
                    .await?
            }
        };
        taken(results)
    }

    /// Direct mode: sends the request's events in order. A refused event does not stop
    /// the others, only its own alert's later events; an unreachable PagerDuty (or a
    /// refused routing key) stops the rest, so that no resolve overtakes its trigger.
    async fn deliver_all(
        &self,
        route: Option<&str>,
        routing_key: &RoutingKey,
        planned: Vec<(Option<String>, Step)>,
        deadline: Instant,
        invocation: &Invocation,
        tally: &mut Tally,
    ) -> Result<Vec<EventResult>, AppError> {
        let path = route_path(route);
        let mut routing_key = routing_key.clone();
        let mut key_refreshed = false;
        let mut refused_alerts: HashSet<String> = HashSet::new();
        let mut first_refusal: Option<(u16, Vec<String>)> = None;
        let mut stop: Option<Sending> = None;
        let mut results: Vec<EventResult> = Vec::with_capacity(planned.len());
        for (index, (df_event_id, step)) in planned.into_iter().enumerate() {
            let event = match to_send(
                index,
                df_event_id.as_deref(),
                step,
                invocation,
                tally,
                &path,
            ) {
                Ok(event) => event,
                Err(set_aside) => {
                    results.push(set_aside);
                    continue;
                }
            };
            let mut result = for_event(index, df_event_id, &event, EventOutcome::NotSent);
            if stop.is_some() {
                tally.event(&path, metrics::Outcome::Failed, None, None);
                result.reason = Some("not attempted: an earlier event of the request could not be delivered, and order matters".into());
                results.push(result);
                continue;
            }
            if refused_alerts.contains(&event.dedup_key) {
                tally.event(&path, metrics::Outcome::Refused, None, None);
                result.reason =
                    Some("not sent: PagerDuty refused an earlier event of this alert".into());
                results.push(result);
                continue;
            }
            let (mut sending, mut call) = self
                .deliver(&event, &routing_key, deadline, invocation, &result)
                .await?;
            if matches!(sending, Sending::KeyRefused { .. }) && !key_refreshed {
                // The key may have been rotated since the secret was cached.
                key_refreshed = true;
                if let Some(fresh) = self.fresh_routing_key(route, &routing_key, deadline).await {
                    routing_key = fresh;
                    (sending, call) = self
                        .deliver(&event, &routing_key, deadline, invocation, &result)
                        .await?;
                }
            }
            let (outcome, fate) = match &sending {
                Sending::Sent => (EventOutcome::Sent, metrics::Outcome::Delivered),
                Sending::DryRun => (EventOutcome::DryRun, metrics::Outcome::DryRun),
                Sending::Refused { status, errors } => {
                    refused_alerts.insert(event.dedup_key.clone());
                    first_refusal.get_or_insert_with(|| (*status, errors.clone()));
                    result.reason = Some(errors.join("; "));
                    (EventOutcome::Failed, metrics::Outcome::Refused)
                }
                Sending::KeyRefused { errors } => {
                    result.reason = Some(errors.join("; "));
                    (EventOutcome::Failed, metrics::Outcome::KeyRefused)
                }
                Sending::Unavailable { reason, .. } => {
                    result.reason = Some(reason.clone());
                    (EventOutcome::Failed, metrics::Outcome::Failed)
                }
            };
            tally.event(&path, fate, call, None);
            result.outcome = outcome;
            results.push(result);
            if matches!(
                sending,
                Sending::KeyRefused { .. } | Sending::Unavailable { .. }
            ) {
                stop = Some(sending);
            }
        }

        match (stop, first_refusal) {
            (
                Some(Sending::Unavailable {
                    reason,
                    retry_after,
                }),
                _,
            ) => Err(AppError::PagerDutyUnavailable {
                reason,
                retry_after,
                results,
            }),
            (Some(Sending::KeyRefused { errors }), _) => {
                Err(AppError::RoutingKeyRefused { errors, results })
            }
            (_, Some((status, errors))) => Err(AppError::PagerDutyRefused {
                status,
                errors,
                results,
            }),
            _ => Ok(results),
        }
    }

    /// The route's routing key after reading the secret again, when it differs from
    /// `refused`: PagerDuty refused the cached one, which a rotation may have replaced.
    pub(crate) async fn fresh_routing_key(
        &self,
        route: Option<&str>,
        refused: &RoutingKey,
        deadline: Instant,
    ) -> Option<RoutingKey> {
        let fresh = self.secrets.refresh(deadline).await?;
        let key = fresh.routing_key_for(route)?;
        (key != refused).then(|| key.clone())
    }

    /// Queue mode: every event to send goes on the queue in order, and the answer is 202
    /// only once SQS has taken them all. The routing key is not in the messages.
    async fn enqueue(
        &self,
        mode: &QueueMode,
        route: Option<&str>,
        planned: Vec<(Option<String>, Step)>,
        deadline: Instant,
        invocation: &Invocation,
        tally: &mut Tally,
    ) -> Result<Vec<EventResult>, AppError> {
        let request_id = invocation.request_id.as_str();
        let path = route_path(route);
        let mut results = Vec::with_capacity(planned.len());
        let mut messages = Vec::with_capacity(planned.len());
        for (index, (df_event_id, step)) in planned.into_iter().enumerate() {
            match to_send(
                index,
                df_event_id.as_deref(),
                step,
                invocation,
                tally,
                &path,
            ) {
                Err(set_aside) => results.push(set_aside),
                Ok(event) => {
                    results.push(for_event(
                        index,
                        df_event_id.clone(),
                        &event,
                        EventOutcome::Queued,
                    ));
                    messages.push(QueuedEvent {
                        route: route.map(str::to_owned),
                        df_event_id,
                        event: *event,
                    });
                }
            }
        }
        let count = messages.len();
        if count == 0 {
            return Ok(results);
        }
        let started = Instant::now();
        if let Err(error) = mode.queue.enqueue(messages, deadline).await {
            tally.count(&path, metrics::Outcome::Failed, count as u64);
            return Err(AppError::QueueUnavailable {
                reason: error.to_string(),
            });
        }
        tally.count(&path, metrics::Outcome::Queued, count as u64);
        let ms = started.elapsed().as_millis() as u64;
        for result in results.iter().filter(|r| r.outcome == EventOutcome::Queued) {
            tracing::info!(
                request_id,
                df_event_id = result.df_event_id.as_deref(),
                dedup_key = result.dedup_key.as_deref(),
                action = result.action,
                severity = result.severity,
                route,
                outcome = "queued",
                "event queued for PagerDuty"
            );
        }
        tracing::debug!(request_id, count, ms, "events queued");
        Ok(results)
    }

    /// Sends one event (or, with `DRY_RUN`, logs it) and writes its log line.
    async fn deliver(
        &self,
        event: &PagerDutyEvent,
        routing_key: &RoutingKey,
        deadline: Instant,
        invocation: &Invocation,
        result: &EventResult,
    ) -> Result<(Sending, Option<PagerDutyCall>), AppError> {
        let request_id = invocation.request_id.as_str();
        let df_event_id = result.df_event_id.as_deref();
        let (dedup_key, action, severity) = (
            event.dedup_key.as_str(),
            event.event_action.as_str(),
            event.payload.severity.as_str(),
        );
        if self.dry_run {
            let rendered = serde_json::to_string(event).unwrap_or_default();
            tracing::info!(request_id, df_event_id, dedup_key, action, severity, outcome = "dry_run", pagerduty_event = %rendered, "event not sent (DRY_RUN)");
            return Ok((Sending::DryRun, None));
        }
        let encoded = event
            .encode(routing_key.expose())
            .map_err(|e| AppError::Internal(e.to_string()))?;
        let report = self.pagerduty.deliver(&encoded, deadline).await;
        let (attempts, ms) = (report.attempts, report.elapsed.as_millis() as u64);
        let call = Some(PagerDutyCall { ms, attempts });
        let sending = match report.delivery {
            Delivery::Accepted {
                status,
                dedup_key: pagerduty_dedup_key,
            } => {
                tracing::info!(
                    request_id,
                    df_event_id,
                    dedup_key,
                    action,
                    severity,
                    pagerduty_status = status,
                    pagerduty_dedup_key,
                    attempts,
                    ms,
                    outcome = "sent",
                    "event delivered to PagerDuty"
                );
                Sending::Sent
            }
            Delivery::Refused { status, errors } => {
                let reason = errors.join("; ");
                tracing::error!(request_id, df_event_id, dedup_key, action, severity, pagerduty_status = status, attempts, ms, outcome = "refused", %reason, "PagerDuty refused the event");
                Sending::Refused { status, errors }
            }
            Delivery::KeyRefused { status, errors } => {
                let reason = errors.join("; ");
                tracing::error!(request_id, df_event_id, dedup_key, action, severity, pagerduty_status = status, attempts, ms, outcome = "key_refused", %reason, "PagerDuty refused the routing key; fix the secret's key for this route");
                Sending::KeyRefused { errors }
            }
            Delivery::GaveUp {
                last_failure,
                last_status,
                retry_after,
            } => {
                tracing::error!(request_id, df_event_id, dedup_key, action, severity, pagerduty_status = last_status, attempts, ms, outcome = "failed", reason = %last_failure, "event not delivered to PagerDuty");
                Sending::Unavailable {
                    reason: last_failure,
                    retry_after: retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
                }
            }
        };
        Ok((sending, call))
    }

    /// The request body, base64-decoded where the function URL encoded it, within the cap.
    fn read_body(&self, request: &ApiGatewayV2httpRequest) -> Result<Vec<u8>, AppError> {
        read_body_within(request, self.max_body_bytes)
    }

    /// The secrets, once the caller has shown the webhook token. A mismatch may mean the
    /// token was just rotated, so the secret is read again (rate-limited by the cache).
    async fn authenticate(
        &self,
        request: &ApiGatewayV2httpRequest,
        deadline: Instant,
    ) -> Result<Arc<WebhookSecrets>, AppError> {
        let presented = presented_token(request);
        let secrets = match self
            .admit(deadline, "webhook token", presented.is_some(), |secrets| {
                self.accepts(secrets, presented)
            })
            .await?
        {
            Admission::Admitted(secrets) => return Ok(secrets),
            Admission::Refused(secrets) => secrets,
        };
        if secrets.webhook_tokens.is_empty() {
            tracing::error!("no webhook_token is configured, so every request is refused; set one in the secret or ALLOW_UNAUTHENTICATED=true");
        }
        Err(AppError::Unauthorized)
    }

    fn accepts(&self, secrets: &WebhookSecrets, presented: Option<&str>) -> bool {
        if secrets.webhook_tokens.is_empty() {
            return self.allow_unauthenticated;
        }
        presented.is_some_and(|p| secrets.accepts_token(p))
    }
}

/// The event to send, or the counted result (with its log line) of one dropped or
/// rejected: the same for delivery and for queueing.
fn to_send(
    index: usize,
    df_event_id: Option<&str>,
    step: Step,
    invocation: &Invocation,
    tally: &mut Tally,
    path: &str,
) -> Result<Box<PagerDutyEvent>, EventResult> {
    let df_event_id = df_event_id.map(str::to_owned);
    match step {
        Step::Send(event) => Ok(event),
        Step::Drop(reason) => Err(dropped(index, df_event_id, reason, invocation, tally, path)),
        Step::Reject(reason) => Err(rejected(
            index,
            df_event_id,
            reason,
            invocation,
            tally,
            path,
        )),
    }
}

/// The result of an event deliberately not sent, with its log line and its count.
fn dropped(
    index: usize,
    df_event_id: Option<String>,
    reason: DropReason,
    invocation: &Invocation,
    tally: &mut Tally,
    path: &str,
) -> EventResult {
    tracing::info!(request_id = %invocation.request_id, df_event_id = df_event_id.as_deref(), outcome = "dropped", %reason, "event dropped");
    let reason = reason.to_string();
    set_aside(
        index,
        df_event_id,
        EventOutcome::Dropped,
        reason,
        tally,
        path,
    )
}

/// The result of an event that cannot be translated, with its log line and its count.
fn rejected(
    index: usize,
    df_event_id: Option<String>,
    reason: String,
    invocation: &Invocation,
    tally: &mut Tally,
    path: &str,
) -> EventResult {
    tracing::error!(request_id = %invocation.request_id, df_event_id = df_event_id.as_deref(), outcome = "rejected", %reason, "event not taken: it cannot be translated");
    set_aside(
        index,
        df_event_id,
        EventOutcome::Rejected,
        reason,
        tally,
        path,
    )
}

/// The counted result of an event that is not sent at all (dropped or rejected).
fn set_aside(
    index: usize,
    df_event_id: Option<String>,
    outcome: EventOutcome,
    reason: String,
    tally: &mut Tally,
    path: &str,
) -> EventResult {
    let counted = match outcome {
        EventOutcome::Dropped => metrics::Outcome::Dropped,
        _ => metrics::Outcome::Rejected,
    };
    tally.event(path, counted, None, None);
    EventResult {
        index,
        df_event_id,
        action: None,
        severity: None,
        dedup_key: None,
        outcome,
        reason: Some(reason),
    }
}

/// The answer once every event has its result: 202 when any was taken, saying plainly
/// how many were not; a refusal naming the first when none was.
fn taken(results: Vec<EventResult>) -> Result<(u16, Value), AppError> {
    let not_taken: Vec<&EventResult> = results
        .iter()
        .filter(|r| r.outcome == EventOutcome::Rejected)
        .collect();
    match not_taken.len() {
        0 => Ok((202, json!({ "results": results }))),
        all if all == results.len() => Err(AppError::Untranslatable { results }),
        _ => {
            let message = format!(
                "not every event was taken: {} of {} not taken, each with its reason in \
                 results; the others were",
                not_taken.len(),
                results.len()
            );
            let not_taken = not_taken.len();
            Ok((
                202,
                json!({ "results": results, "not_taken": not_taken, "message": message }),
            ))
        }
    }
}

/// The result of an event to send, with its `outcome` so far.
fn for_event(
    index: usize,
    df_event_id: Option<String>,
    event: &PagerDutyEvent,
    outcome: EventOutcome,
) -> EventResult {
    EventResult {
        index,
        df_event_id,
        action: Some(event.event_action.as_str()),
        severity: Some(event.payload.severity.as_str()),
        dedup_key: Some(event.dedup_key.clone()),
        outcome,
        reason: None,
    }
}

/// `?token=...` (Guance can send nothing but a URL), else `Authorization: Bearer ...`.
fn presented_token(request: &ApiGatewayV2httpRequest) -> Option<&str> {
    request
        .query_string_parameters
        .first("token")
        .or_else(|| {
            request
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    let (scheme, token) = v.trim().split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
                })
        })
        .filter(|t| !t.is_empty())
}

/// The request's body, decoded from base64 where the function URL encoded it; refused
/// when larger than `limit` bytes.
pub(crate) fn read_body_within(
    request: &ApiGatewayV2httpRequest,
    limit: usize,
) -> Result<Vec<u8>, AppError> {
    let raw = request.body.as_deref().unwrap_or("");
    let too_large = AppError::PayloadTooLarge { limit };
    if !request.is_base64_encoded {
        if raw.len() > limit {
            return Err(too_large);
        }
        return Ok(raw.as_bytes().to_vec());
    }
    // Decoded length is at most three quarters of the encoded one.
    if raw.len() / 4 * 3 > limit + 3 {
        return Err(too_large);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(raw.trim())
        .map_err(|e| {
            AppError::BadRequest(format!(
                "the body is marked base64 but does not decode: {e}"
            ))
        })?;
    if decoded.len() > limit {
        return Err(too_large);
    }
    Ok(decoded)
}

fn health() -> Value {
    json!({
        "status": "ok",
        "service": env!("CARGO_PKG_NAME"),
        "version": env!("CARGO_PKG_VERSION"),
    })
}

fn json_response(status: u16, body: &Value) -> ApiGatewayV2httpResponse {
    let mut response = ApiGatewayV2httpResponse::default();
    response.status_code = i64::from(status);
    response.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.body = Some(Body::Text(body.to_string()));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        for (path, expected) in [
            ("/", "root"),
            ("", "root"),
            ("//", "root"),
            ("/payments", "payments"),
            ("/payments/", "payments"),
            ("/a/b", "invalid"),
            ("/..", "invalid"),
            ("/%2F", "invalid"),
            ("/pagerduty/webhook", "pagerduty webhook"),
            ("/pagerduty/webhook/", "pagerduty webhook"),
            ("/pagerduty", "pagerduty"),
            ("/pagerduty/webhook/x", "invalid"),
            ("/PagerDuty/Webhook", "invalid"),
        ] {
            let got = match route_of(path) {
                Route::Root => "root",
                Route::Named(name) => name,
                Route::PagerDutyWebhook => "pagerduty webhook",
                Route::Invalid => "invalid",
            };
            assert_eq!(got, expected, "{path:?}");
        }
    }
}
