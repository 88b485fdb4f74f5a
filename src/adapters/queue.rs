//! The SQS FIFO adapter: what a queued message holds, and putting messages on the
//! delivery queue, changing their visibility and parking refused ones on the dead-letter
//! queue.
//!
//! A message is the PagerDuty event without its routing key: the key never rests in the
//! queue; the dispatcher looks it up when it sends. Each route is one message group, so
//! each PagerDuty service gets one strictly ordered lane.

use crate::adapters::aws_call_timeouts;
use crate::adapters::secret::route_path;
use crate::domain::pagerduty::{PagerDutyEvent, MAX_BODY_BYTES};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    SendMessageBatchRequestEntry,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant};

/// SQS's largest message, and largest `SendMessageBatch` (the sum of its bodies).
pub const SQS_MAX_MESSAGE_BYTES: usize = 1_048_576;
/// SQS takes at most this many entries per batch call.
const MAX_BATCH_ENTRIES: usize = 10;
/// A batch whose entries SQS partly refused is sent again (its accepted entries are
/// deduplicated by SQS) this many times before the request is answered 503.
const BATCH_ATTEMPTS: u32 = 3;

/// One queued PagerDuty event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedEvent {
    /// The route it came in on: `None` for `POST /`, else the route's name.
    #[serde(default)]
    pub route: Option<String>,
    /// Guance's id of the notification, for logs and deduplication.
    #[serde(default)]
    pub df_event_id: Option<String>,
    pub event: PagerDutyEvent,
}

impl QueuedEvent {
    /// The FIFO lane: one per route, so one per PagerDuty service.
    pub fn message_group_id(&self) -> String {
        route_path(self.route.as_deref())
    }

    /// Guance sending the same notification again (within SQS's 5 minutes) is queued
    /// once: the id is the route, `df_event_id` and action, or the whole event where
    /// Guance gave no id. SHA-256 in hex: 64 characters, within SQS's 128.
    pub fn deduplication_id(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.message_group_id());
        hasher.update([0]);
        match &self.df_event_id {
            Some(id) => {
                hasher.update(b"df_event_id:");
                hasher.update(id);
                hasher.update([0]);
                hasher.update(self.event.event_action.as_str());
            }
            None => {
                hasher.update(b"event:");
                hasher.update(serde_json::to_vec(&self.event).unwrap_or_default());
            }
        }
        hex(&hasher.finalize())
    }

    /// The message body, shrunk to `max_bytes` the way an event is shrunk to PagerDuty's
    /// limit (largest `custom_details` first, named in the event), never refused.
    pub fn encode(&mut self, max_bytes: usize) -> String {
        let body = self.to_json();
        if body.len() <= max_bytes {
            return body;
        }
        let envelope = body.len() - self.event.encoded_len();
        let omitted = self
            .event
            .shrink_to(max_bytes.saturating_sub(envelope).min(MAX_BODY_BYTES));
        tracing::warn!(
            df_event_id = self.df_event_id.as_deref(),
            omitted = omitted.len(),
            "event shrunk to fit the queue's maximum message size"
        );
        self.to_json()
    }

    fn to_json(&self) -> String {
        sqs_safe(serde_json::to_string(self).unwrap_or_default())
    }

    /// Reads a message: a queued event, or a dead-letter message moved back to the queue
    /// by a redrive (`StartMessageMoveTask`), whose queued event is taken out again.
    pub fn decode(body: &str) -> Result<QueuedEvent, String> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Queued(QueuedEvent),
            DeadLetter { queued_event: QueuedEvent },
        }
        match serde_json::from_str::<Either>(body) {
            Ok(Either::Queued(queued))
            | Ok(Either::DeadLetter {
                queued_event: queued,
            }) => Ok(queued),
            // serde's text may quote the body; say where, not what.
            Err(error) => Err(format!(
                "the message is not a queued PagerDuty event (JSON error at line {}, column {})",
                error.line(),
                error.column()
            )),
        }
    }
}

/// A dead-letter message: the queued event and why PagerDuty refused it.
#[derive(Debug, Serialize)]
pub struct DeadLetter<'a> {
    pub queued_event: &'a QueuedEvent,
    pub pagerduty_status: Option<u16>,
    pub errors: &'a [String],
    /// The delivery queue's message id, which the dead-letter message replaces.
    pub message_id: &'a str,
}

/// SQS takes only these characters in a message body (#x9, #xA, #xD, #x20 to #xD7FF,
/// #xE000 to #xFFFD, #x10000 to #x10FFFF) and refuses the whole message otherwise.
fn is_sqs_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// A JSON text with every character SQS refuses written as a `\u` escape: the same JSON
/// value, in a body SQS takes. serde_json escapes control characters itself but writes
/// U+FFFE and U+FFFF as they are; in its output they stand only inside strings, where an
/// escape means the same character.
pub fn sqs_safe(json: String) -> String {
    if json.chars().all(is_sqs_char) {
        return json;
    }
    let mut safe = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if is_sqs_char(c) {
            safe.push(c);
        } else {
            safe.push_str(&format!("\\u{:04x}", u32::from(c)));
        }
    }
    safe
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueError(pub String);

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for QueueError {}

/// A backoff as SQS's whole-second visibility timeout, rounded up (a jittered 0.7 s
/// truncated to 0 would retry at once) and within SQS's 12 hours.
fn visibility_seconds(delay: Duration) -> i32 {
    let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    seconds.min(43_200) as i32
}

/// An SQS FIFO queue.
#[derive(Clone)]
pub struct FifoQueue {
    client: aws_sdk_sqs::Client,
    url: String,
    max_message_bytes: usize,
}

/// `future` unless `deadline` comes first.
async fn by<T>(
    deadline: Instant,
    future: impl std::future::Future<Output = Result<T, QueueError>>,
) -> Result<T, QueueError> {
    tokio::time::timeout_at(deadline.into(), future)
        .await
        .unwrap_or_else(|_| {
            Err(QueueError(
                "SQS did not answer before the invocation's deadline".to_owned(),
            ))
        })
}

impl FifoQueue {
    /// `client` with this adapter's attempt and operation timeouts, whatever it had.
    pub fn new(
        client: aws_sdk_sqs::Client,
        url: impl Into<String>,
        max_message_bytes: usize,
    ) -> Self {
        let config = client
            .config()
            .to_builder()
            .timeout_config(aws_call_timeouts())
            .build();
        FifoQueue {
            client: aws_sdk_sqs::Client::from_conf(config),
            url: url.into(),
            max_message_bytes: max_message_bytes.min(SQS_MAX_MESSAGE_BYTES),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Queues `events` in their order; `Ok` only once SQS has accepted every one, by
    /// `deadline`.
    ///
    /// A batch never holds two events for the same PagerDuty alert (route and
    /// `dedup_key`), and the next batch is sent only once SQS accepted the whole batch
    /// before it. SQS may refuse some entries of a batch and take the rest; the refused
    /// ones are sent again behind them, which can reorder only events of different
    /// alerts, and PagerDuty cares for order only within one alert.
    pub async fn enqueue(
        &self,
        events: Vec<QueuedEvent>,
        deadline: Instant,
    ) -> Result<(), QueueError> {
        by(deadline, self.enqueue_all(events)).await
    }

    async fn enqueue_all(&self, events: Vec<QueuedEvent>) -> Result<(), QueueError> {
        let mut messages: Vec<(QueuedEvent, String)> = events
            .into_iter()
            .map(|mut queued| {
                let body = queued.encode(self.max_message_bytes);
                (queued, body)
            })
            .collect();
        let mut start = 0;
        while start < messages.len() {
            let end = batch_end(&messages, start);
            self.send_batch(&mut messages[start..end]).await?;
            start = end;
        }
        Ok(())
    }

    async fn send_batch(&self, batch: &mut [(QueuedEvent, String)]) -> Result<(), QueueError> {
        let mut pending: Vec<usize> = (0..batch.len()).collect();
        let mut last_error = String::new();
        for attempt in 0..BATCH_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            let entries = pending
                .iter()
                .map(|&i| {
                    let (queued, body) = &batch[i];
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body.as_str())
                        .message_group_id(queued.message_group_id())
                        .message_deduplication_id(queued.deduplication_id())
                        .build()
                        .map_err(|e| QueueError(format!("cannot build an SQS entry: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let output = match self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(output) => output,
                Err(error) => {
                    last_error = describe_sdk_error(&error);
                    continue;
                }
            };
            let failed: HashSet<&str> = output.failed().iter().map(|f| f.id()).collect();
            if let Some(first) = output.failed().first() {
                last_error = format!(
                    "SQS refused {} of {} messages ({}{})",
                    failed.len(),
                    pending.len(),
                    first.code(),
                    first
                        .message()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                );
            }
            pending.retain(|i| failed.contains(i.to_string().as_str()));
            if pending.is_empty() {
                return Ok(());
            }
        }
        Err(QueueError(last_error))
    }

    /// Sets how long each received message (by receipt handle) stays hidden: the
    /// dispatcher's backoff before it is tried again.
    pub async fn delay_retries(
        &self,
        retries: &[(String, Duration)],
        deadline: Instant,
    ) -> Result<(), QueueError> {
        by(deadline, self.change_visibility(retries)).await
    }

    async fn change_visibility(&self, retries: &[(String, Duration)]) -> Result<(), QueueError> {
        for chunk in retries.chunks(MAX_BATCH_ENTRIES) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, (receipt_handle, delay))| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt_handle)
                        .visibility_timeout(visibility_seconds(*delay))
                        .build()
                        .map_err(|e| QueueError(format!("cannot build an SQS entry: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let output = self
                .client
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| QueueError(describe_sdk_error(&e)))?;
            if let Some(first) = output.failed().first() {
                return Err(QueueError(format!(
                    "SQS did not change the visibility of {} message(s) ({})",
                    output.failed().len(),
                    first.code()
                )));
            }
        }
        Ok(())
    }

    /// Deletes received messages (by receipt handle), at most ten: the dispatcher's
    /// records as PagerDuty takes them, so that a crash later in the batch never sends
    /// them again.
    pub async fn delete(
        &self,
        receipt_handles: &[String],
        deadline: Instant,
    ) -> Result<(), QueueError> {
        let entries = receipt_handles
            .iter()
            .take(MAX_BATCH_ENTRIES)
            .enumerate()
            .map(|(i, receipt_handle)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(receipt_handle)
                    .build()
                    .map_err(|e| QueueError(format!("cannot build an SQS entry: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let call = async {
            let output = self
                .client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| QueueError(describe_sdk_error(&e)))?;
            match output.failed().first() {
                Some(first) => Err(QueueError(format!(
                    "SQS did not delete {} message(s) ({})",
                    output.failed().len(),
                    first.code()
                ))),
                None => Ok(()),
            }
        };
        by(deadline, call).await
    }

    /// Puts one message (JSON) on this (dead-letter) queue, in `group`, once per
    /// `dedup_id`, by `deadline`.
    pub async fn send(
        &self,
        json: String,
        group: &str,
        dedup_id: &str,
        deadline: Instant,
    ) -> Result<(), QueueError> {
        let call = async {
            self.client
                .send_message()
                .queue_url(&self.url)
                .message_body(sqs_safe(json))
                .message_group_id(group)
                .message_deduplication_id(dedup_id)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| QueueError(describe_sdk_error(&e)))
        };
        by(deadline, call).await
    }
}

/// Where the batch starting at `start` ends: at 10 entries, at SQS's size for a whole
/// batch, or before a second event for the same PagerDuty alert.
fn batch_end(messages: &[(QueuedEvent, String)], start: usize) -> usize {
    let mut alerts = HashSet::new();
    let mut bytes = 0;
    let mut end = start;
    while end < messages.len() && end - start < MAX_BATCH_ENTRIES {
        let (queued, body) = &messages[end];
        let alert = (queued.message_group_id(), queued.event.dedup_key.as_str());
        let fits = bytes + body.len() <= SQS_MAX_MESSAGE_BYTES;
        if end > start && (!fits || alerts.contains(&alert)) {
            break;
        }
        alerts.insert(alert);
        bytes += body.len();
        end += 1;
    }
    end
}

/// The SDK error as words: its kind and the service's error code, never a request.
fn describe_sdk_error<E, R>(error: &aws_sdk_sqs::error::SdkError<E, R>) -> String
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error,
{
    use aws_sdk_sqs::error::SdkError;
    match error {
        SdkError::ServiceError(service) => format!(
            "SQS refused the call: {}",
            service.err().code().unwrap_or("unknown error")
        ),
        SdkError::TimeoutError(_) => "SQS did not answer in time".to_owned(),
        SdkError::DispatchFailure(_) => "could not reach SQS".to_owned(),
        _ => "the call to SQS failed".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::pagerduty::{EventAction, Payload, Severity};
    use serde_json::{json, Map};

    #[test]
    fn a_backoff_becomes_whole_seconds_rounded_up() {
        for (delay_ms, seconds) in [
            (0, 0),
            (1, 1),
            (700, 1),
            (1000, 1),
            (2500, 3),
            (300_000, 300),
            (100_000_000, 43_200),
        ] {
            assert_eq!(
                visibility_seconds(Duration::from_millis(delay_ms)),
                seconds,
                "{delay_ms} ms"
            );
        }
    }

    fn queued(
        route: Option<&str>,
        id: Option<&str>,
        action: EventAction,
        key: &str,
    ) -> QueuedEvent {
        QueuedEvent {
            route: route.map(str::to_owned),
            df_event_id: id.map(str::to_owned),
            event: PagerDutyEvent {
                event_action: action,
                dedup_key: key.to_owned(),
                payload: Payload {
                    summary: "s".into(),
                    source: "h".into(),
                    severity: Severity::Critical,
                    timestamp: None,
                    component: None,
                    group: None,
                    class: None,
                    custom_details: Map::new(),
                },
                client: None,
                client_url: None,
                links: vec![],
            },
        }
    }

    #[test]
    fn groups_and_deduplication_ids() {
        use EventAction::*;
        let a = queued(None, Some("e1"), Trigger, "k");
        assert_eq!(a.message_group_id(), "/");
        assert_eq!(
            queued(Some("payments"), None, Trigger, "k").message_group_id(),
            "/payments"
        );
        let id = a.deduplication_id();
        assert_eq!(id.len(), 64);
        assert_eq!(
            id,
            queued(None, Some("e1"), Trigger, "k").deduplication_id(),
            "stable"
        );
        for other in [
            queued(Some("payments"), Some("e1"), Trigger, "k"),
            queued(None, Some("e2"), Trigger, "k"),
            queued(None, Some("e1"), Resolve, "k"),
            queued(None, None, Trigger, "k"),
        ] {
            assert_ne!(id, other.deduplication_id(), "{other:?}");
        }
        // Without an id, the event decides.
        assert_eq!(
            queued(None, None, Trigger, "k").deduplication_id(),
            queued(None, None, Trigger, "k").deduplication_id()
        );
        assert_ne!(
            queued(None, None, Trigger, "k").deduplication_id(),
            queued(None, None, Trigger, "j").deduplication_id()
        );
    }

    #[test]
    fn round_trip_redrive_and_garbage() {
        let mut a = queued(Some("r"), Some("e1"), EventAction::Trigger, "k");
        let body = a.encode(SQS_MAX_MESSAGE_BYTES);
        assert_eq!(QueuedEvent::decode(&body).unwrap(), a);
        let dead = serde_json::to_string(&DeadLetter {
            queued_event: &a,
            pagerduty_status: Some(400),
            errors: &["bad".to_owned()],
            message_id: "m",
        })
        .unwrap();
        assert_eq!(
            QueuedEvent::decode(&dead).unwrap(),
            a,
            "a redriven dead letter"
        );
        let error = QueuedEvent::decode(r#"{"secret": "SECRET"}"#).unwrap_err();
        assert!(!error.contains("SECRET"), "{error}");
    }

    #[test]
    fn characters_sqs_refuses_are_escaped_and_the_json_is_unchanged() {
        let mut a = queued(None, Some("e1"), EventAction::Trigger, "k");
        a.event.payload.summary = "bad \u{FFFF} and \u{FFFE}, fine \u{FFFD} \u{10348} \u{7}".into();
        let body = a.encode(SQS_MAX_MESSAGE_BYTES);
        assert!(body.chars().all(is_sqs_char), "{body}");
        assert!(
            body.contains("\\uffff") && body.contains("\\ufffe"),
            "{body}"
        );
        assert_eq!(QueuedEvent::decode(&body).unwrap(), a, "the same event");
        for (c, allowed) in [
            ('\u{9}', true),
            ('\u{0}', false),
            ('\u{1F}', false),
            ('\u{20}', true),
            ('\u{D7FF}', true),
            ('\u{E000}', true),
            ('\u{FFFD}', true),
            ('\u{FFFE}', false),
            ('\u{FFFF}', false),
            ('\u{10000}', true),
            ('\u{10FFFF}', true),
        ] {
            assert_eq!(is_sqs_char(c), allowed, "{:x}", u32::from(c));
        }
        let plain = r#"{"a":"b"}"#.to_owned();
        assert_eq!(sqs_safe(plain.clone()), plain);
    }

    #[test]
    fn an_event_bigger_than_the_queue_allows_is_shrunk_not_refused() {
        let mut a = queued(None, Some("e1"), EventAction::Trigger, "k");
        for i in 0..50 {
            a.event
                .payload
                .custom_details
                .insert(format!("field{i}"), json!("x".repeat(1000)));
        }
        let body = a.encode(10_000);
        assert!(body.len() <= 10_000, "{}", body.len());
        let back = QueuedEvent::decode(&body).unwrap();
        let note =
            &back.event.payload.custom_details[crate::domain::pagerduty::OMITTED_DETAILS_KEY];
        assert!(note["count"].as_u64().unwrap() >= 40, "{note}");
        assert_eq!(back.event.dedup_key, "k");
    }

    #[test]
    fn batches_split_at_ten_at_size_and_before_a_second_event_of_one_alert() {
        use EventAction::*;
        let msg = |q: QueuedEvent, size: usize| (q, "x".repeat(size));
        let ends = |messages: &[(QueuedEvent, String)]| {
            let mut ends = vec![];
            let mut start = 0;
            while start < messages.len() {
                start = batch_end(messages, start);
                ends.push(start);
            }
            ends
        };
        let many: Vec<_> = (0..25)
            .map(|i| msg(queued(None, None, Trigger, &format!("k{i}")), 10))
            .collect();
        assert_eq!(ends(&many), [10, 20, 25]);
        let trigger_resolve = vec![
            msg(queued(None, None, Trigger, "a"), 10),
            msg(queued(None, None, Trigger, "b"), 10),
            msg(queued(None, None, Resolve, "a"), 10),
            msg(queued(Some("r"), None, Resolve, "b"), 10),
        ];
        assert_eq!(
            ends(&trigger_resolve),
            [2, 4],
            "a's resolve waits for a's trigger"
        );
        let big = vec![
            msg(queued(None, None, Trigger, "a"), 600_000),
            msg(queued(None, None, Trigger, "b"), 600_000),
            msg(queued(None, None, Trigger, "c"), 10),
        ];
        assert_eq!(ends(&big), [1, 3]);
    }
}
