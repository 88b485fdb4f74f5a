//! The queue dispatcher: the entry point for SQS events from the delivery queue's event
//! source mapping. It delivers each record to PagerDuty in order and tells Lambda which
//! records must come back (`batchItemFailures`), with a backoff set on each.
//!
//! Order is kept per message group (one route, one PagerDuty service): after a record
//! fails, every later record of its group in the batch is returned unprocessed, so a
//! resolve never overtakes its trigger; records of other groups go on, so one failing
//! service does not hold up another. A dispatcher that crashes or times out reports
//! nothing, Lambda deletes nothing, and SQS hands the same records out again in order.

use crate::delivery::Delivery;
use crate::handler::{App, Invocation, QueueMode};
use crate::metrics::{Outcome, PagerDutyCall, Tally};
use crate::queue::{DeadLetter, QueuedEvent};
use crate::secret::{route_path, SecretSource};
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A record is not started with less time than this before the deadline: it is
/// returned to the queue at once instead.
const MIN_RECORD_TIME: Duration = Duration::from_millis(500);

/// The metrics' `Route` for a message whose body is not a queued event.
const UNREADABLE_ROUTE: &str = "unreadable";

/// How one record ended.
enum Fate {
    /// Delivered, dropped by `DRY_RUN`, or parked on the dead-letter queue: delete it.
    Done,
    /// Try again after this long.
    Retry(Duration),
}

impl<S: SecretSource> App<S> {
    /// Handles one batch from the delivery queue. Never fails: every record is either
    /// done or reported back.
    pub async fn dispatch(&self, event: SqsEvent, invocation: &Invocation) -> SqsBatchResponse {
        let deadline = self.work_deadline(invocation);
        let mut stopped_groups: HashSet<String> = HashSet::new();
        let mut failures = Vec::new();
        let mut delays: Vec<(String, Duration)> = Vec::new();
        let mut tally = Tally::default();
        for record in &event.records {
            let group = record
                .attributes
                .get("MessageGroupId")
                .cloned()
                .unwrap_or_default();
            // After a failure in its lane, a record must not overtake the failed one. It is
            // made visible again at once: SQS hands out no message of a group while an
            // earlier one is in flight, so the failed record's backoff holds the lane.
            // Out of time, a record goes back at once, for the next invocation.
            let out_of_time = deadline.saturating_duration_since(Instant::now()) < MIN_RECORD_TIME;
            let fate = if stopped_groups.contains(&group) || out_of_time {
                Fate::Retry(Duration::ZERO)
            } else {
                self.dispatch_record(record, deadline, invocation, &mut tally)
                    .await
            };
            if let Fate::Retry(delay) = fate {
                stopped_groups.insert(group);
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = record.message_id.clone().unwrap_or_default();
                failures.push(failure);
                if let Some(receipt_handle) = &record.receipt_handle {
                    delays.push((receipt_handle.clone(), delay));
                }
            }
        }
        if !delays.is_empty() {
            if let Some(queue) = &self.queue {
                // Best effort: a record whose visibility stays as it is comes back after
                // the queue's visibility timeout instead.
                if let Err(error) = queue.queue.delay_retries(&delays).await {
                    tracing::warn!(request_id = %invocation.request_id, %error, "could not set the backoff of records to retry");
                }
            }
        }
        self.metrics.publish(&tally, &invocation.request_id);
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures = failures;
        response
    }

    async fn dispatch_record(
        &self,
        record: &SqsMessage,
        deadline: Instant,
        invocation: &Invocation,
        tally: &mut Tally,
    ) -> Fate {
        let Some(mode) = &self.queue else {
            tracing::error!(request_id = %invocation.request_id, "an SQS event arrived but DELIVERY_QUEUE_URL is not set; the records go back to the queue");
            tally.event(UNREADABLE_ROUTE, Outcome::Retrying, None, None);
            return Fate::Retry(Duration::from_secs(300));
        };
        let request_id = invocation.request_id.as_str();
        let message_id = record.message_id.as_deref().unwrap_or_default();
        let receives: u32 = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let backoff = mode.backoff(receives);
        let queued_ms = record
            .attributes
            .get("SentTimestamp")
            .and_then(|t| t.parse::<u64>().ok())
            .map(|sent| now_ms().saturating_sub(sent));

        let queued = match QueuedEvent::decode(record.body.as_deref().unwrap_or_default()) {
            Ok(queued) => queued,
            Err(reason) => {
                tracing::error!(request_id, message_id, %reason, outcome = "refused", "queued message unreadable");
                let raw = record.body.as_deref().unwrap_or_default();
                tally.event(UNREADABLE_ROUTE, Outcome::Refused, None, queued_ms);
                return self
                    .park(mode, Err(raw), message_id, None, &[reason], backoff)
                    .await;
            }
        };
        let event = &queued.event;
        let (df_event_id, dedup_key, action, severity, route) = (
            queued.df_event_id.as_deref(),
            event.dedup_key.as_str(),
            event.event_action.as_str(),
            event.payload.severity.as_str(),
            queued.route.as_deref(),
        );
        let path = route_path(route);
        if self.dry_run {
            let rendered = serde_json::to_string(event).unwrap_or_default();
            tracing::info!(request_id, message_id, df_event_id, dedup_key, action, severity, route, queued_ms, outcome = "dry_run", pagerduty_event = %rendered, "event not sent (DRY_RUN)");
            tally.event(&path, Outcome::DryRun, None, queued_ms);
            return Fate::Done;
        }
        let secrets = match self.secrets.get().await {
            Ok(secrets) => secrets,
            Err(error) => {
                tracing::error!(request_id, message_id, df_event_id, %error, receives, outcome = "failed", "cannot read the PagerDuty secret; the event waits in the queue");
                tally.event(&path, Outcome::Retrying, None, None);
                return Fate::Retry(backoff);
            }
        };
        let Some(routing_key) = secrets.routing_key_for(route) else {
            tracing::error!(request_id, message_id, df_event_id, route, receives, outcome = "failed", "the event's route is no longer in the secret; it waits in the queue until it is back or the queue's redrive moves it to the dead-letter queue");
            tally.event(&path, Outcome::Retrying, None, None);
            return Fate::Retry(mode.retry_max);
        };
        let encoded = match event.encode(routing_key.expose()) {
            Ok(encoded) => encoded,
            Err(error) => {
                tally.event(&path, Outcome::Refused, None, queued_ms);
                return self
                    .park(
                        mode,
                        Ok(&queued),
                        message_id,
                        None,
                        &[error.to_string()],
                        backoff,
                    )
                    .await;
            }
        };
        let record_deadline = deadline.min(Instant::now() + mode.time_per_record());
        let report = mode.pagerduty.deliver(&encoded, record_deadline).await;
        let (attempts, ms) = (report.attempts, report.elapsed.as_millis() as u64);
        let call = Some(PagerDutyCall { ms, attempts });
        match report.delivery {
            Delivery::Accepted { status, .. } => {
                tally.event(&path, Outcome::Delivered, call, queued_ms);
                tracing::info!(
                    request_id,
                    message_id,
                    df_event_id,
                    dedup_key,
                    action,
                    severity,
                    route,
                    pagerduty_status = status,
                    attempts,
                    ms,
                    queued_ms,
                    receives,
                    outcome = "sent",
                    "event delivered to PagerDuty"
                );
                Fate::Done
            }
            Delivery::Refused { status, errors } => {
                let reason = errors.join("; ");
                tracing::error!(request_id, message_id, df_event_id, dedup_key, action, severity, route, pagerduty_status = status, attempts, ms, outcome = "refused", %reason, "PagerDuty refused the event; it goes to the dead-letter queue");
                tally.event(&path, Outcome::Refused, call, queued_ms);
                self.park(
                    mode,
                    Ok(&queued),
                    message_id,
                    Some(status),
                    &errors,
                    backoff,
                )
                .await
            }
            Delivery::GaveUp {
                last_failure,
                last_status,
                retry_after,
            } => {
                let delay = retry_after.map_or(backoff, |advised| advised.min(mode.retry_max));
                tally.event(&path, Outcome::Retrying, call, None);
                tracing::warn!(request_id, message_id, df_event_id, dedup_key, action, severity, route, pagerduty_status = last_status, attempts, ms, queued_ms, receives, retry_in_s = delay.as_secs(), outcome = "retrying", reason = %last_failure, "PagerDuty did not take the event; it waits in the queue");
                Fate::Retry(delay)
            }
        }
    }

    /// Moves a record PagerDuty refused for good (or an unreadable one, `Err` with its
    /// body) onto the dead-letter queue, with the reasons. Without a dead-letter queue,
    /// or if SQS will not take it, the record stays in the delivery queue: the queue's own
    /// redrive moves it there in the end.
    async fn park(
        &self,
        mode: &QueueMode,
        queued: Result<&QueuedEvent, &str>,
        message_id: &str,
        pagerduty_status: Option<u16>,
        errors: &[String],
        backoff: Duration,
    ) -> Fate {
        let Some(dead_letters) = &mode.dead_letters else {
            tracing::error!(message_id, "no DEAD_LETTER_QUEUE_URL: the refused event stays in the queue until its redrive policy moves it");
            return Fate::Retry(mode.retry_max);
        };
        let (body, group) = match queued {
            Ok(queued_event) => (
                serde_json::to_string(&DeadLetter {
                    queued_event,
                    pagerduty_status,
                    errors,
                    message_id,
                })
                .unwrap_or_default(),
                queued_event.message_group_id(),
            ),
            Err(raw) => (
                serde_json::json!({ "unreadable_body": raw, "errors": errors, "message_id": message_id })
                    .to_string(),
                "unreadable".to_owned(),
            ),
        };
        match dead_letters.send(body, &group, message_id).await {
            Ok(()) => Fate::Done,
            Err(error) => {
                tracing::error!(message_id, %error, "could not move the refused event to the dead-letter queue; it stays in the queue");
                Fate::Retry(backoff)
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
