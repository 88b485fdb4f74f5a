//! What kind of invocation arrived. The one `bootstrap` binary is invoked by its function
//! URL and may be by other triggers; it tells them apart by the payload's shape, because
//! Lambda says nothing else about where an invocation came from.
//!
//! The payload is read as plain JSON first, so that a payload of the wrong shape becomes
//! our own error message. The runtime's message would quote serde's, and serde quotes the
//! offending value: in a function URL event that can be the token.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_http::aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde_json::Value;
use std::fmt;

/// One invocation, by its trigger.
#[derive(Debug)]
pub enum Incoming {
    /// A request to the function URL (payload format 2.0).
    FunctionUrl(Box<ApiGatewayV2httpRequest>),
    /// A batch from the delivery queue's event source mapping.
    Queue(SqsEvent),
}

/// The answer to an invocation, serialized by the runtime as the entry point returned it.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
pub enum Answer {
    FunctionUrl(Box<ApiGatewayV2httpResponse>),
    Queue(SqsBatchResponse),
}

/// The payload is not an invocation this function serves. The message names the shape
/// and, for a function URL event, the field at fault, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnrecognizedInvocation(pub String);

impl fmt::Display for UnrecognizedInvocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UnrecognizedInvocation {}

/// Classifies `payload` by shape: a function URL event has `requestContext.http`; an
/// SQS event has `Records` whose `eventSource` is `aws:sqs`.
pub fn classify(payload: Value) -> Result<Incoming, UnrecognizedInvocation> {
    let records = payload.get("Records").and_then(Value::as_array);
    if records.is_some_and(|records| {
        !records.is_empty()
            && records
                .iter()
                .all(|r| r.get("eventSource").and_then(Value::as_str) == Some("aws:sqs"))
    }) {
        return serde_path_to_error::deserialize(payload)
            .map(Incoming::Queue)
            .map_err(|error| {
                UnrecognizedInvocation(format!(
                    "the invocation looks like an SQS event, but its field `{}` is missing or \
                     of the wrong type",
                    error.path()
                ))
            });
    }
    if payload
        .pointer("/requestContext/http")
        .is_some_and(Value::is_object)
    {
        return serde_path_to_error::deserialize(payload)
            .map(|request| Incoming::FunctionUrl(Box::new(request)))
            .map_err(|error| {
                UnrecognizedInvocation(format!(
                    "the invocation looks like a function URL request, but its field `{}` is \
                     missing or of the wrong type",
                    error.path()
                ))
            });
    }
    Err(UnrecognizedInvocation(format!(
        "the invocation payload ({}) is neither a function URL request nor an SQS event \
         from the delivery queue",
        shape(&payload)
    )))
}

/// The payload's kind, from names AWS defines, never from what the caller wrote.
fn shape(payload: &Value) -> String {
    match payload {
        Value::Object(fields) => {
            let source = payload
                .pointer("/Records/0/eventSource")
                .and_then(Value::as_str)
                .filter(|s| {
                    s.len() <= 32
                        && s.strip_prefix("aws:")
                            .is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_lowercase()))
                });
            match source {
                Some(source) => format!("records from {source}"),
                None if fields.is_empty() => "an empty object".to_owned(),
                None => format!("an object of {} field(s)", fields.len()),
            }
        }
        Value::Array(_) => "an array".to_owned(),
        Value::String(_) => "a string".to_owned(),
        Value::Number(_) => "a number".to_owned(),
        Value::Bool(_) => "a boolean".to_owned(),
        Value::Null => "null".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shapes() {
        let url = json!({
            "version": "2.0", "rawPath": "/", "rawQueryString": "token=SECRET",
            "headers": {}, "isBase64Encoded": false,
            "requestContext": {"http": {"method": "POST", "path": "/"}},
        });
        assert!(matches!(
            classify(url.clone()),
            Ok(Incoming::FunctionUrl(_))
        ));

        let mut wrong_type = url;
        wrong_type["headers"] = json!("token=SECRET");
        let error = classify(wrong_type).unwrap_err().to_string();
        assert!(error.contains("`headers`"), "{error}");
        assert!(!error.contains("SECRET"), "{error}");

        let sqs = json!({"Records": [{"eventSource": "aws:sqs", "messageId": "m", "body": "{}",
                                      "attributes": {"MessageGroupId": "/"}}]});
        assert!(matches!(classify(sqs), Ok(Incoming::Queue(e)) if e.records.len() == 1));
        let bad_sqs =
            json!({"Records": [{"eventSource": "aws:sqs", "messageId": 7, "body": "SECRET"}]});
        let error = classify(bad_sqs).unwrap_err().to_string();
        assert!(
            error.contains("messageId") && !error.contains("SECRET"),
            "{error}"
        );

        for (payload, says) in [
            (json!({"SECRET": "SECRET"}), "an object of 1 field(s)"),
            (
                json!({"Records": [{"eventSource": "aws:sns", "Sns": {"Message": "SECRET"}}]}),
                "records from aws:sns",
            ),
            (
                json!({"Records": [{"eventSource": "SECRET"}]}),
                "an object of 1 field(s)",
            ),
            (json!({}), "an empty object"),
            (json!("SECRET"), "a string"),
            (json!([1]), "an array"),
            (json!(null), "null"),
        ] {
            let error = classify(payload).unwrap_err().to_string();
            assert!(error.contains(says), "{error}");
            assert!(!error.contains("SECRET"), "{error}");
        }
    }
}
