//! The queue dispatcher: the entry point for SQS events from the delivery queue's event
//! source mapping. It delivers each record to PagerDuty in order and tells Lambda which
//! records must come back (`batchItemFailures`), with a backoff set on each.
//!
//! Order is kept per message group (one route, one PagerDuty service): after a record
//! fails, every later record of its group in the batch is returned unprocessed, so a
//! resolve never overtakes its trigger; records of other groups go on, so one failing
//! service does not hold up another.
//!
//! Each record PagerDuty takes is deleted at once, before the next is sent: a dispatcher
//! that crashes or times out later in the batch reports nothing, and SQS hands out again
//! only what was not delivered, in order. So a replayed batch never makes PagerDuty see
//! a trigger again after its resolve (which would open a second incident).
//!
//! Refusals go by kind. PagerDuty refusing the routing key is a configuration fault:
//! the secret is read again at once (the key may have been rotated), and otherwise the
//! lane waits as for a 5xx until the secret is fixed, nothing set aside. PagerDuty
//! refusing the event itself parks it on the dead-letter queue, and the later events of
//! the same alert in the batch follow it there, in order.

use crate::adapters::delivery::Delivery;
use crate::adapters::metrics::{Outcome, PagerDutyCall, Tally};
use crate::adapters::queue::{DeadLetter, QueuedEvent};
use crate::adapters::secret::{route_path, SecretSource};
use crate::entry::app::{App, Invocation, QueueMode};
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A record is not started with less time than this before the deadline: it is
/// returned to the queue at once instead.
const MIN_RECORD_TIME: Duration = Duration::from_millis(500);

/// Kept free at the end of a batch for the calls that settle it: the last delete and the
/// backoffs of the records that go back.
const SETTLE_TIME: Duration = Duration::from_millis(500);

/// The longest a delivered record's delete may hold up the next record: SQS answers in
/// milliseconds, and a record left undeleted is deleted by the mapping anyway.
const DELETE_WAIT: Duration = Duration::from_secs(1);

/// The metrics' `Route` for a message whose body is not a queued event.
const UNREADABLE_ROUTE: &str = "unreadable";

/// How one record ended.
enum Fate {
    /// PagerDuty took it: delete it now, before anything else is sent, so that a crash
    /// or timeout later in the batch never sends it again.
    Delivered,
    /// Dropped by `DRY_RUN`, or parked on the dead-letter queue: the event source mapping
    /// deletes it when the invocation returns (a replay would only park it again, once
    /// per message id), unless a follower that could not be parked returns it.
    Done { parked: bool },
    /// Try again after this long.
    Retry(Duration),
}

/// What a batch has learnt so far, record by record.
#[derive(Default)]
struct Batch {
    /// Lanes (message groups) where a record failed: their later records wait.
    stopped_groups: HashSet<String>,
    /// Alerts (group, `dedup_key`) whose event was parked, with that record's index in
    /// the batch: their later events in the batch follow it to the dead-letter queue,
    /// whatever else holds the lane, so that they stay in order there.
    parked_alerts: HashMap<(String, String), usize>,
    /// Receipt handles of delivered records not yet deleted.
    to_delete: Vec<String>,
    /// Records to return, by index in the batch, with their backoff.
    retries: BTreeMap<usize, Duration>,
}

impl<S: SecretSource> App<S> {
    /// Handles one batch from the delivery queue. Never fails: every record is either
    /// done or reported back, before the invocation's deadline.
    pub async fn dispatch(&self, event: SqsEvent, invocation: &Invocation) -> SqsBatchResponse {
        // Every call ends by the Lambda deadline less its margin; the records' work ends
        // earlier still, keeping time to settle the batch (deletes, backoffs).
        let settle_by = self.work_deadline(invocation);
        let deadline = settle_by.checked_sub(SETTLE_TIME).unwrap_or(settle_by);
        let mut batch = Batch::default();
        let mut tally = Tally::default();
        for (index, record) in event.records.iter().enumerate() {
            let group = record
                .attributes
                .get("MessageGroupId")
                .cloned()
                .unwrap_or_default();
            let queued = QueuedEvent::decode(record.body.as_deref().unwrap_or_default());
            let alert = queued
                .as_ref()
                .ok()
                .map(|q| (q.message_group_id(), q.event.dedup_key.clone()));
            let head = alert
                .as_ref()
                .and_then(|alert| batch.parked_alerts.get(alert).copied());
            // After a failure in its lane, a record must not overtake the failed one. It is
            // made visible again at once: SQS hands out no message of a group while an
            // earlier one is in flight, so the failed record's backoff holds the lane.
            // Out of time, a record goes back at once, for the next invocation.
            let out_of_time = deadline.saturating_duration_since(Instant::now()) < MIN_RECORD_TIME;
            let fate = match (head, queued) {
                // A later event of a parked alert follows it, whatever holds the lane:
                // returned, it would reach PagerDuty ahead of the parked one's redrive.
                (Some(head), Ok(queued)) => {
                    let fate = self
                        .park_follower(record, &queued, settle_by, invocation, &mut tally)
                        .await;
                    if let Fate::Retry(delay) = fate {
                        // It could not follow: the parked one comes back too, ahead of
                        // it, and is parked again (once per message id) next time.
                        batch.retries.insert(head, delay);
                    }
                    fate
                }
                _ if batch.stopped_groups.contains(&group) || out_of_time => {
                    Fate::Retry(Duration::ZERO)
                }
                (_, queued) => {
                    let fate = self
                        .dispatch_record(record, queued, deadline, invocation, &mut tally)
                        .await;
                    if let (Fate::Done { parked: true }, Some(alert)) = (&fate, alert) {
                        batch.parked_alerts.insert(alert, index);
                    }
                    fate
                }
            };
            match fate {
                Fate::Delivered => {
                    batch.to_delete.extend(record.receipt_handle.clone());
                    if !self
                        .delete_delivered(&mut batch, settle_by, invocation)
                        .await
                    {
                        // Undeleted, it would be sent again after a crash; nothing more
                        // of its lane goes until it is gone, so that a replay repeats
                        // at most a trigger, never a trigger after its resolve.
                        batch.stopped_groups.insert(group);
                    }
                }
                Fate::Done { .. } => {}
                Fate::Retry(delay) => {
                    batch.stopped_groups.insert(group);
                    batch.retries.insert(index, delay);
                }
            }
        }
        let mut failures = Vec::with_capacity(batch.retries.len());
        let mut delays = Vec::with_capacity(batch.retries.len());
        for (&index, &delay) in &batch.retries {
            let record = &event.records[index];
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = record.message_id.clone().unwrap_or_default();
            failures.push(failure);
            if let Some(receipt_handle) = &record.receipt_handle {
                delays.push((receipt_handle.clone(), delay));
            }
        }
        if !delays.is_empty() {
            if let Some(queue) = &self.queue {
                // Best effort: a record whose visibility stays as it is comes back after
                // the queue's visibility timeout instead.
                if let Err(error) = queue.queue.delay_retries(&delays, settle_by).await {
                    tracing::warn!(request_id = %invocation.request_id, %error, "could not set the backoff of records to retry");
                }
            }
        }
        self.metrics.publish(&tally, &invocation.request_id);
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures = failures;
        response
    }

    /// Deletes the batch's delivered records now; `false` when SQS did not. Such a
    /// record is still reported done: the event source mapping deletes it when the
    /// invocation returns.
    async fn delete_delivered(
        &self,
        batch: &mut Batch,
        deadline: Instant,
        invocation: &Invocation,
    ) -> bool {
        let Some(mode) = &self.queue else {
            return true;
        };
        let deadline = deadline.min(Instant::now() + DELETE_WAIT);
        match mode.queue.delete(&batch.to_delete, deadline).await {
            Ok(()) => {
                batch.to_delete.clear();
                true
            }
            Err(error) => {
                tracing::warn!(request_id = %invocation.request_id, %error, "could not delete a delivered record at once; its lane waits for the next invocation, and the event source mapping deletes it when the batch returns");
                false
            }
        }
    }

    /// Parks a later event of an alert whose earlier event in the batch was parked.
    async fn park_follower(
        &self,
        record: &SqsMessage,
        queued: &QueuedEvent,
        deadline: Instant,
        invocation: &Invocation,
        tally: &mut Tally,
    ) -> Fate {
        let Some(mode) = &self.queue else {
            return Fate::Retry(Duration::ZERO);
        };
        let message_id = record.message_id.as_deref().unwrap_or_default();
        let event = &queued.event;
        let reason = "an earlier event of this alert was refused by PagerDuty and is on the dead-letter queue; this one follows it there, in order".to_owned();
        tracing::error!(request_id = %invocation.request_id, message_id, df_event_id = queued.df_event_id.as_deref(), dedup_key = %event.dedup_key, action = event.event_action.as_str(), route = queued.route.as_deref(), outcome = "refused", %reason, "event set aside behind its alert's refused event");
        tally.event(
            &route_path(queued.route.as_deref()),
            Outcome::Refused,
            None,
            queued_ms(record),
        );
        let backoff = mode.backoff(receives(record));
        self.park(
            mode,
            Ok(queued),
            message_id,
            None,
            &[reason],
            backoff,
            deadline,
        )
        .await
    }

    async fn dispatch_record(
        &self,
        record: &SqsMessage,
        queued: Result<QueuedEvent, String>,
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
        let receives = receives(record);
        let backoff = mode.backoff(receives);
        let queued_ms = queued_ms(record);

        let queued = match queued {
            Ok(queued) => queued,
            Err(reason) => {
                tracing::error!(request_id, message_id, %reason, outcome = "refused", "queued message unreadable");
                let raw = record.body.as_deref().unwrap_or_default();
                tally.event(UNREADABLE_ROUTE, Outcome::Refused, None, queued_ms);
                return self
                    .park(
                        mode,
                        Err(raw),
                        message_id,
                        None,
                        &[reason],
                        backoff,
                        deadline,
                    )
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
            return Fate::Done { parked: false };
        }
        let secrets = match self.secrets.get(deadline).await {
            Ok(secrets) => secrets,
            Err(error) => {
                tracing::error!(request_id, message_id, df_event_id, %error, receives, outcome = "failed", "cannot read the PagerDuty secret; the event waits in the queue");
                tally.event(&path, Outcome::Retrying, None, queued_ms);
                return Fate::Retry(backoff);
            }
        };
        let Some(routing_key) = secrets.routing_key_for(route) else {
            tracing::error!(request_id, message_id, df_event_id, route, receives, outcome = "failed", "the event's route is no longer in the secret; it waits in the queue until it is back or the queue's redrive moves it to the dead-letter queue");
            tally.event(&path, Outcome::Retrying, None, queued_ms);
            return Fate::Retry(mode.retry_max);
        };
        let mut routing_key = routing_key.clone();
        let mut key_refreshed = false;
        loop {
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
                            deadline,
                        )
                        .await;
                }
            };
            let record_deadline = deadline.min(Instant::now() + mode.time_per_record());
            let report = mode.pagerduty.deliver(&encoded, record_deadline).await;
            let (attempts, ms) = (report.attempts, report.elapsed.as_millis() as u64);
            let call = Some(PagerDutyCall { ms, attempts });
            return match report.delivery {
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
                    Fate::Delivered
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
                        deadline,
                    )
                    .await
                }
                Delivery::KeyRefused { status, errors } => {
                    if !key_refreshed {
                        key_refreshed = true;
                        // A rotation may have replaced the key since it was cached.
                        if let Some(fresh) =
                            self.fresh_routing_key(route, &routing_key, deadline).await
                        {
                            tracing::warn!(request_id, message_id, df_event_id, route, "PagerDuty refused the routing key; sending again with the key just read from the secret");
                            routing_key = fresh;
                            continue;
                        }
                    }
                    let reason = errors.join("; ");
                    tally.event(&path, Outcome::KeyRefused, call, queued_ms);
                    tracing::error!(request_id, message_id, df_event_id, dedup_key, action, severity, route, pagerduty_status = status, attempts, ms, queued_ms, receives, retry_in_s = backoff.as_secs(), outcome = "key_refused", %reason, "PagerDuty refused the routing key; the lane waits in the queue until the secret's key for this route is fixed");
                    Fate::Retry(backoff)
                }
                Delivery::GaveUp {
                    last_failure,
                    last_status,
                    retry_after,
                } => {
                    // PagerDuty's advice is a floor, never a shortcut past our backoff.
                    let delay = retry_after.map_or(backoff, |advised| advised.max(backoff));
                    tally.event(&path, Outcome::Retrying, call, queued_ms);
                    tracing::warn!(request_id, message_id, df_event_id, dedup_key, action, severity, route, pagerduty_status = last_status, attempts, ms, queued_ms, receives, retry_in_s = delay.as_secs(), outcome = "retrying", reason = %last_failure, "PagerDuty did not take the event; it waits in the queue");
                    Fate::Retry(delay)
                }
            };
        }
    }

    /// Moves a record PagerDuty refused for good (or an unreadable one, `Err` with its
    /// body) onto the dead-letter queue, with the reasons. Without a dead-letter queue,
    /// or if SQS will not take it, the record stays in the delivery queue: the queue's own
    /// redrive moves it there in the end.
    #[allow(clippy::too_many_arguments)]
    async fn park(
        &self,
        mode: &QueueMode,
        queued: Result<&QueuedEvent, &str>,
        message_id: &str,
        pagerduty_status: Option<u16>,
        errors: &[String],
        backoff: Duration,
        deadline: Instant,
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
        match dead_letters.send(body, &group, message_id, deadline).await {
            Ok(()) => Fate::Done { parked: true },
            Err(error) => {
                tracing::error!(message_id, %error, "could not move the refused event to the dead-letter queue; it stays in the queue");
                Fate::Retry(backoff)
            }
        }
    }
}

/// How many times SQS has handed the record out, this time included.
fn receives(record: &SqsMessage) -> u32 {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// How long the record has been in the queue.
fn queued_ms(record: &SqsMessage) -> Option<u64> {
    record
        .attributes
        .get("SentTimestamp")
        .and_then(|t| t.parse::<u64>().ok())
        .map(|sent| now_ms().saturating_sub(sent))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
