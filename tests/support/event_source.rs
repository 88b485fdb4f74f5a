//! A local stand-in for Lambda's SQS event source mapping on a FIFO queue, for tests and
//! `make demo` (moto cannot run one without Docker). It does what the mapping does:
//! long-polls the queue, hands the function a batch shaped exactly as Lambda shapes an
//! SQS event, deletes the records the function did not report in `batchItemFailures`,
//! and deletes nothing when the invocation failed (crash, timeout). A local tool, not
//! part of the product.

#![allow(dead_code)]

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use serde_json::{json, Value};
use std::collections::HashSet;

/// An SQS client for a local emulator at `endpoint` (fixed test credentials and region).
/// Every message body it sends is checked against SQS's character set, which moto does
/// not enforce: a body real SQS would refuse fails the test.
pub fn local_client(endpoint: &str) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .interceptor(SqsCharacterSet)
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing", "testing", None, None, "local",
        ))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// SQS's documented message body characters: #x9, #xA, #xD, #x20 to #xD7FF, #xE000 to
/// #xFFFD, #x10000 to #x10FFFF. Anything else makes SQS refuse the message.
pub fn sqs_accepts(body: &str) -> bool {
    body.chars().all(|c| {
        let c = u32::from(c);
        matches!(c, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
    })
}

/// Checks each `MessageBody` of `SendMessage` and `SendMessageBatch` as SQS would.
#[derive(Debug)]
struct SqsCharacterSet;

impl aws_sdk_sqs::config::Intercept for SqsCharacterSet {
    fn name(&self) -> &'static str {
        "SqsCharacterSet"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_sqs::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_sdk_sqs::config::RuntimeComponents,
        _cfg: &mut aws_sdk_sqs::config::ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let Some(bytes) = context.request().body().bytes() else {
            return Ok(());
        };
        let Ok(request) = serde_json::from_slice::<Value>(bytes) else {
            return Ok(());
        };
        let bodies = request["Entries"]
            .as_array()
            .map(|entries| entries.iter().map(|e| &e["MessageBody"]).collect())
            .unwrap_or_else(|| vec![&request["MessageBody"]]);
        for body in bodies.into_iter().filter_map(Value::as_str) {
            assert!(
                sqs_accepts(body),
                "SQS would refuse this message body (a character outside its set): {:?}",
                body.chars()
                    .filter(|c| !sqs_accepts(&c.to_string()))
                    .collect::<Vec<_>>()
            );
        }
        Ok(())
    }
}

pub struct EventSource {
    pub client: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub queue_arn: String,
}

impl EventSource {
    pub async fn new(client: aws_sdk_sqs::Client, queue_url: &str) -> EventSource {
        let name = queue_url.rsplit('/').next().unwrap_or_default();
        EventSource {
            client,
            queue_url: queue_url.to_owned(),
            queue_arn: format!("arn:aws:sqs:us-east-1:123456789012:{name}"),
        }
    }

    /// One `ReceiveMessage` of up to 10 records, waiting up to `wait_seconds`.
    pub async fn receive(&self, wait_seconds: i32) -> Vec<Message> {
        self.client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map(|out| out.messages.unwrap_or_default())
            .unwrap_or_default()
    }

    /// The invocation payload Lambda builds from these records.
    pub fn sqs_event(&self, messages: &[Message]) -> Value {
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                let attributes: serde_json::Map<String, Value> = m
                    .attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.as_str().to_owned(), Value::String(v.clone())))
                            .collect()
                    })
                    .unwrap_or_default();
                json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "attributes": attributes,
                    "messageAttributes": {},
                    "md5OfBody": m.md5_of_body(),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.queue_arn,
                    "awsRegion": "us-east-1",
                })
            })
            .collect();
        json!({ "Records": records })
    }

    /// What the mapping does after an invocation: with its response, delete every record
    /// not reported failed; without one (the invocation failed), delete nothing.
    ///
    /// After a failed invocation the records would come back when their visibility times
    /// out, all at once. moto 5.2.5 then hands a FIFO group out of order (it delivers the
    /// last of several in-flight messages that became visible together first); real SQS
    /// keeps the group's order. Making them visible at once instead changes when they
    /// come back, not the order SQS owes, and sidesteps moto's slip.
    pub async fn settle(&self, messages: &[Message], response: Option<&Value>) -> usize {
        let Some(response) = response else {
            for m in messages {
                let _ = self
                    .client
                    .change_message_visibility()
                    .queue_url(&self.queue_url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .visibility_timeout(0)
                    .send()
                    .await;
            }
            return 0;
        };
        let failed: HashSet<&str> = response["batchItemFailures"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter_map(|f| f["itemIdentifier"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        let entries: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .enumerate()
            .filter(|(_, m)| !failed.contains(m.message_id().unwrap_or_default()))
            .map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .unwrap()
            })
            .collect();
        let deleted = entries.len();
        if !entries.is_empty() {
            self.client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("delete the records the function handled");
        }
        deleted
    }

    /// Approximate visible plus in-flight messages: 0 once the queue is drained.
    pub async fn depth(&self) -> u64 {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
            .send()
            .await
            .expect("queue attributes");
        let attributes = out.attributes().cloned().unwrap_or_default();
        [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
        ]
        .iter()
        .map(|name| {
            attributes
                .get(&aws_sdk_sqs::types::QueueAttributeName::from(*name))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
    }
}
