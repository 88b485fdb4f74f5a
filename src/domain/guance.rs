//! The body Guance POSTs to a "webhook custom" notification object, read leniently.
//!
//! Guance's field types drift between versions (numbers sent as strings, lists sent as
//! JSON-encoded strings), so nothing here rejects an event for the type of a field; the
//! accessors answer `None` where a value is absent or unusable and the translation falls
//! back as CONTRACT.md section 3 says.

use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// Aggregated notifications are unverified; a batch larger than this is refused whole
/// rather than half-sent.
pub const MAX_EVENTS_PER_BODY: usize = 100;

/// Fields that carry human prose: never decoded as JSON even when they look like it.
const PROSE_FIELDS: &[&str] = &["df_title", "df_message", "df_event_reason"];

/// One Guance event: every field as sent, with JSON-encoded strings decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct GuanceEvent {
    fields: Map<String, Value>,
    dimension_tags: BTreeMap<String, String>,
}

/// Why a body holds no usable Guance event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Not JSON at all; the parser's own words (position, not content).
    InvalidJson(String),
    /// JSON, but neither an object nor an array of objects.
    NotAnEvent {
        found: &'static str,
    },
    EmptyBatch,
    TooManyEvents {
        limit: usize,
        count: usize,
    },
    ElementNotAnEvent {
        index: usize,
        found: &'static str,
    },
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::InvalidJson(why) => write!(f, "body is not valid JSON: {why}"),
            BodyError::NotAnEvent { found } => write!(
                f,
                "body must be a JSON object (one Guance event) or an array of them, found {found}"
            ),
            BodyError::EmptyBatch => write!(f, "body is an empty array: no Guance event to send"),
            BodyError::TooManyEvents { count, limit } => write!(
                f,
                "body holds {count} events, more than the {limit} accepted at once"
            ),
            BodyError::ElementNotAnEvent { index, found } => write!(
                f,
                "element {index} of the array must be a JSON object (a Guance event), found {found}"
            ),
        }
    }
}

impl std::error::Error for BodyError {}

/// Parses a webhook body: one event object, or an array of 1 to 100 of them.
/// Either every event parses or none is returned, so a request is never half-sent.
pub fn parse_body(body: &[u8]) -> Result<Vec<GuanceEvent>, BodyError> {
    parse_body_up_to(body, MAX_EVENTS_PER_BODY)
}

/// [`parse_body`] with another cap on the number of events. Direct delivery keeps 100,
/// so that a body is delivered within one invocation; queue mode takes any number the
/// body-size cap lets through.
pub fn parse_body_up_to(body: &[u8], max_events: usize) -> Result<Vec<GuanceEvent>, BodyError> {
    parse_body_elements(body, max_events)?.into_iter().collect()
}

/// A body element by element: refused whole only when it is not JSON, not an object nor
/// an array of them, empty, or over `max_events`; an array element that is not an object
/// is its own [`BodyError::ElementNotAnEvent`], so that one bad element does not cost
/// the other events of the body.
pub fn parse_body_elements(
    body: &[u8],
    max_events: usize,
) -> Result<Vec<Result<GuanceEvent, BodyError>>, BodyError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| BodyError::InvalidJson(e.to_string()))?;
    match value {
        Value::Object(fields) => Ok(vec![Ok(GuanceEvent::from_fields(fields))]),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(BodyError::EmptyBatch);
            }
            if items.len() > max_events {
                return Err(BodyError::TooManyEvents {
                    count: items.len(),
                    limit: max_events,
                });
            }
            Ok(items
                .into_iter()
                .enumerate()
                .map(|(index, item)| match item {
                    Value::Object(fields) => Ok(GuanceEvent::from_fields(fields)),
                    other => Err(BodyError::ElementNotAnEvent {
                        index,
                        found: json_kind(&other),
                    }),
                })
                .collect())
        }
        other => Err(BodyError::NotAnEvent {
            found: json_kind(&other),
        }),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl GuanceEvent {
    /// Builds an event from a JSON object's fields, decoding JSON-encoded strings.
    pub fn from_fields(mut fields: Map<String, Value>) -> Self {
        for (name, value) in fields.iter_mut() {
            if name.starts_with("df_") && !PROSE_FIELDS.contains(&name.as_str()) {
                if let Some(decoded) = decode_embedded_json(value) {
                    *value = decoded;
                }
            }
        }
        let dimension_tags = match fields.get("df_dimension_tags") {
            Some(Value::Object(tags)) => tags
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), scalar_text(v)?.into_owned())))
                .collect(),
            _ => BTreeMap::new(),
        };
        GuanceEvent {
            fields,
            dimension_tags,
        }
    }

    /// Every field as sent (JSON-encoded strings decoded), unknown ones included.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }

    /// Dimension tags with every value as text; empty where Guance sent none usable.
    pub fn dimension_tags(&self) -> &BTreeMap<String, String> {
        &self.dimension_tags
    }

    /// A field as trimmed, non-empty text; numbers and booleans count as text.
    pub fn text(&self, name: &str) -> Option<Cow<'_, str>> {
        scalar_text(self.fields.get(name)?)
    }

    pub fn status(&self) -> Option<Cow<'_, str>> {
        self.text("df_status")
    }

    pub fn sub_status(&self) -> Option<Cow<'_, str>> {
        self.text("df_sub_status")
    }

    /// The event time in milliseconds since the epoch: `timestamp`, else `date`; a
    /// value above 10^12 is taken as milliseconds, anything else as seconds.
    pub fn time_millis(&self) -> Option<i64> {
        ["timestamp", "date"]
            .iter()
            .find_map(|name| self.fields.get(*name).and_then(epoch_millis))
    }
}

/// Text of a scalar JSON value, trimmed; `None` for empty text, null, arrays, objects.
fn scalar_text(value: &Value) -> Option<Cow<'_, str>> {
    let text: Cow<'_, str> = match value {
        Value::String(s) => Cow::Borrowed(s.trim()),
        Value::Number(n) => Cow::Owned(n.to_string()),
        Value::Bool(b) => Cow::Owned(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => return None,
    };
    (!text.is_empty()).then_some(text)
}

/// Decodes a string that holds a JSON object or array; other values stay as they are.
fn decode_embedded_json(value: &Value) -> Option<Value> {
    let Value::String(s) = value else { return None };
    let trimmed = s.trim_start();
    if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
        return None;
    }
    serde_json::from_str::<Value>(s)
        .ok()
        .filter(|v| v.is_object() || v.is_array())
}

const MILLIS_THRESHOLD: f64 = 1e12;

fn epoch_millis(value: &Value) -> Option<i64> {
    let number = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    if !number.is_finite() || number <= 0.0 {
        return None;
    }
    let millis = if number > MILLIS_THRESHOLD {
        number
    } else {
        number * 1000.0
    };
    // Bounded well inside i64, so the cast cannot saturate silently.
    (millis < 1e17).then_some(millis.round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(value: Value) -> GuanceEvent {
        match value {
            Value::Object(fields) => GuanceEvent::from_fields(fields),
            _ => panic!("test event must be an object"),
        }
    }

    #[test]
    fn body_shapes() {
        let cases: &[(&str, Result<usize, BodyError>)] = &[
            (r#"{"df_status":"ok"}"#, Ok(1)),
            (r#"[{"a":1},{"b":2}]"#, Ok(2)),
            ("[]", Err(BodyError::EmptyBatch)),
            ("42", Err(BodyError::NotAnEvent { found: "a number" })),
            (r#""x""#, Err(BodyError::NotAnEvent { found: "a string" })),
            ("null", Err(BodyError::NotAnEvent { found: "null" })),
            (
                r#"[{"a":1}, 3]"#,
                Err(BodyError::ElementNotAnEvent {
                    index: 1,
                    found: "a number",
                }),
            ),
            (
                r#"[{"a":1}, [{}]]"#,
                Err(BodyError::ElementNotAnEvent {
                    index: 1,
                    found: "an array",
                }),
            ),
        ];
        for (body, expected) in cases {
            let got = parse_body(body.as_bytes()).map(|events| events.len());
            assert_eq!(&got, expected, "body {body}");
        }
    }

    #[test]
    fn invalid_json_is_reported_with_position() {
        for body in ["", "{", "{\"a\":", "not json", "{\"a\":1}}", "\u{feff}{}"] {
            match parse_body(body.as_bytes()) {
                Err(BodyError::InvalidJson(why)) => assert!(!why.is_empty(), "{body:?}"),
                other => panic!("{body:?} gave {other:?}"),
            }
        }
        assert!(matches!(
            parse_body(&[0xff, 0xfe, b'{']),
            Err(BodyError::InvalidJson(_))
        ));
    }

    #[test]
    fn batch_limit_is_inclusive() {
        let batch = |n: usize| format!("[{}]", vec!["{}"; n].join(","));
        assert_eq!(
            parse_body(batch(MAX_EVENTS_PER_BODY).as_bytes()).map(|v| v.len()),
            Ok(MAX_EVENTS_PER_BODY)
        );
        assert_eq!(
            parse_body(batch(MAX_EVENTS_PER_BODY + 1).as_bytes()).map(|v| v.len()),
            Err(BodyError::TooManyEvents {
                limit: MAX_EVENTS_PER_BODY,
                count: MAX_EVENTS_PER_BODY + 1
            })
        );
    }

    #[test]
    fn encoded_strings_are_decoded_where_they_parse() {
        let e = event(json!({
            "df_dimension_tags": "{\"host\":\"share\",\"port\":5432}",
            "df_label": "[\"db\",\"prod\"]",
            "df_meta": "{not json",
            "df_title": "[1,2]",
            "df_message": "{\"a\":1}",
            "host": "{\"left\":\"alone\"}",
            "df_issue_duration": "3840",
        }));
        let f = e.fields();
        assert_eq!(f["df_dimension_tags"], json!({"host":"share","port":5432}));
        assert_eq!(f["df_label"], json!(["db", "prod"]));
        assert_eq!(f["df_meta"], json!("{not json"));
        assert_eq!(f["df_title"], json!("[1,2]"));
        assert_eq!(f["df_message"], json!("{\"a\":1}"));
        assert_eq!(f["host"], json!("{\"left\":\"alone\"}"));
        assert_eq!(f["df_issue_duration"], json!("3840"));
        let tags: Vec<(&str, &str)> = e
            .dimension_tags()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(tags, [("host", "share"), ("port", "5432")]);
    }

    #[test]
    fn dimension_tags_of_any_shape() {
        let cases: &[(Value, &[(&str, &str)])] = &[
            (json!("{\"host\":\"a\"}"), &[("host", "a")]),
            (
                json!({"host": "a", "n": 1, "gone": null, "empty": ""}),
                &[("host", "a"), ("n", "1")],
            ),
            (json!("not json"), &[]),
            (json!("[\"a\"]"), &[]),
            (json!(17), &[]),
            (json!(null), &[]),
        ];
        for (tags, expected) in cases {
            let e = event(json!({ "df_dimension_tags": tags }));
            let got: Vec<(&str, &str)> = e
                .dimension_tags()
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert_eq!(&got, expected, "tags {tags}");
        }
        assert!(event(json!({})).dimension_tags().is_empty());
    }

    #[test]
    fn text_is_lenient() {
        let e = event(json!({
            "s": "  critical ", "n": 100, "f": 1.5, "b": true, "blank": "   ",
            "null": null, "list": [1], "obj": {"a": 1}
        }));
        let cases: &[(&str, Option<&str>)] = &[
            ("s", Some("critical")),
            ("n", Some("100")),
            ("f", Some("1.5")),
            ("b", Some("true")),
            ("blank", None),
            ("null", None),
            ("list", None),
            ("obj", None),
            ("missing", None),
        ];
        for (name, expected) in cases {
            assert_eq!(e.text(name).as_deref(), *expected, "field {name}");
        }
    }

    #[test]
    fn event_time_in_seconds_or_milliseconds() {
        let cases: &[(Value, Option<i64>)] = &[
            (json!({"timestamp": 1693034940}), Some(1_693_034_940_000)),
            (
                json!({"timestamp": 1693034940123_i64}),
                Some(1_693_034_940_123),
            ),
            (json!({"timestamp": "1693034940"}), Some(1_693_034_940_000)),
            (json!({"timestamp": 1693034940.5}), Some(1_693_034_940_500)),
            (json!({"date": 1693034940}), Some(1_693_034_940_000)),
            (json!({"date": 1693034940000_i64}), Some(1_693_034_940_000)),
            (json!({"date": "1693034940000"}), Some(1_693_034_940_000)),
            (json!({"timestamp": 1, "date": 2}), Some(1000)),
            (
                json!({"timestamp": "soon", "date": 1693034940}),
                Some(1_693_034_940_000),
            ),
            (json!({"timestamp": -5}), None),
            (json!({"timestamp": 0}), None),
            (json!({"timestamp": 1e300}), None),
            (json!({"timestamp": [1]}), None),
            (json!({}), None),
        ];
        for (fields, expected) in cases {
            assert_eq!(event(fields.clone()).time_millis(), *expected, "{fields}");
        }
    }
}
