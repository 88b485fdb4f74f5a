//! PagerDuty's webhooks (v3) as they come back to the bridge: the signature rule, what a
//! delivery says, and whether it asks for anything (CONTRACT.md section 6). Pure: no I/O.
//!
//! Only a person's resolve of an incident is acted on: an automated resolve (no agent, or
//! the integration itself, which is what this bridge's own resolve looks like) must not
//! echo back into Guance, or the two would chase each other.

use crate::domain::pagerduty::truncate_chars;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;
use std::fmt;

/// The header PagerDuty signs each delivery in.
pub const SIGNATURE_HEADER: &str = "x-pagerduty-signature";

/// Whether `header` (PagerDuty's `X-PagerDuty-Signature`: a comma-separated list such as
/// `v1=<hex>,v1=<hex>`) holds a `v1` signature of `body` under any of `secrets`. Entries
/// of other versions are ignored; each secret is used as its bytes (not base64-decoded);
/// every candidate is checked in constant time, and all of them are checked.
pub fn signature_matches<S: AsRef<[u8]>>(body: &[u8], header: &str, secrets: &[S]) -> bool {
    // A SHA-256 digest's length; the body is hashed once per secret, however many
    // entries a header holds, so a long header costs comparisons, not hashing.
    const DIGEST_BYTES: usize = 32;
    let signatures: Vec<Vec<u8>> = header
        .split(',')
        .filter_map(|entry| entry.trim().strip_prefix("v1="))
        .filter(|hex| hex.len() == 2 * DIGEST_BYTES)
        .filter_map(decode_hex)
        .collect();
    if signatures.is_empty() {
        return false;
    }
    let mut matched = false;
    for secret in secrets {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_ref()) else {
            continue;
        };
        mac.update(body);
        for signature in &signatures {
            matched |= mac.clone().verify_slice(signature).is_ok();
        }
    }
    matched
}

/// Lowercase or uppercase hex, whole bytes only.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let digit = |b: u8| (b as char).to_digit(16);
            Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
        })
        .collect()
}

/// One v3 delivery: `{"event": {...}}`. Only what the decision needs is read.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookDelivery {
    pub event: WebhookEvent,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WebhookEvent {
    #[serde(default)]
    pub id: Option<String>,
    pub event_type: String,
    #[serde(default)]
    pub agent: Option<Agent>,
    #[serde(default)]
    pub data: Value,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Agent {
    #[serde(rename = "type")]
    pub kind: String,
}

/// What a delivery asks of the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A person resolved this incident: recover its Guance events.
    Recover { incident_id: String },
    /// Nothing to do, and why (answered 2xx: PagerDuty must not retry it).
    Ignore(IgnoreReason),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IgnoreReason {
    /// PagerDuty's test delivery.
    Ping,
    /// Any event type but `incident.resolved` (an acknowledge has no counterpart in
    /// Guance's OpenAPI).
    EventType(String),
    /// Resolved by automation: no agent, the integration itself (this bridge's own
    /// resolve), or a service's auto-resolve.
    NotAPerson(Option<String>),
    /// Resolved by a merge into another incident, which stays open.
    Merged,
    /// An `incident.resolved` without an incident id (or with one that is not an id).
    NoIncident,
}

impl IgnoreReason {
    /// A fixed code: the log line's and the metric's reason.
    pub fn code(&self) -> &'static str {
        match self {
            IgnoreReason::Ping => "ping",
            IgnoreReason::EventType(_) => "other_event_type",
            IgnoreReason::NotAPerson(_) => "not_a_person",
            IgnoreReason::Merged => "merged",
            IgnoreReason::NoIncident => "no_incident",
        }
    }
}

impl fmt::Display for IgnoreReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IgnoreReason::Ping => f.write_str("a ping"),
            IgnoreReason::EventType(kind) => write!(f, "{kind} is not acted on"),
            IgnoreReason::NotAPerson(None) => f.write_str("resolved with no agent: automation"),
            IgnoreReason::NotAPerson(Some(kind)) => {
                write!(f, "resolved by automation (agent {kind}), not a person")
            }
            IgnoreReason::Merged => {
                f.write_str("resolved by a merge; the other incident stays open")
            }
            IgnoreReason::NoIncident => f.write_str("no incident id in the delivery"),
        }
    }
}

/// What the bridge should do with a verified delivery.
pub fn decide(event: &WebhookEvent) -> Decision {
    let ignore = Decision::Ignore;
    match event.event_type.as_str() {
        "pagey.ping" => return ignore(IgnoreReason::Ping),
        "incident.resolved" => {}
        // Cut short: the type is the sender's text, and it is logged.
        other => return ignore(IgnoreReason::EventType(truncate_chars(other, 64))),
    }
    match event.agent.as_ref().map(|a| a.kind.as_str()) {
        Some("user_reference") => {}
        other => {
            return ignore(IgnoreReason::NotAPerson(
                other.map(|kind| truncate_chars(kind, 64)),
            ))
        }
    }
    let merged = event.data["resolve_reason"]["type"].as_str() == Some("merge_resolve_reason");
    if merged {
        return ignore(IgnoreReason::Merged);
    }
    match event.data["id"].as_str().filter(|id| is_incident_id(id)) {
        Some(id) => Decision::Recover {
            incident_id: id.to_owned(),
        },
        None => ignore(IgnoreReason::NoIncident),
    }
}

/// Whether `id` can be one of PagerDuty's incident ids (letters and digits): it goes into
/// the path of the REST API's URL, so nothing else is taken.
pub fn is_incident_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A Guance event to recover: its workspace and its `df_monitor_checker_event_ref`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GuanceRef {
    pub workspace_uuid: String,
    pub monitor_checker_event_ref: String,
}

/// The Guance event an alert of PagerDuty's REST API (`GET /incidents/{id}/alerts`) came
/// from, when this bridge created it: its body carries the `custom_details` we sent, in
/// `body.cef_details.details`, else `body.details`. `None` for any other alert.
pub fn guance_ref_of_alert(alert: &Value) -> Option<GuanceRef> {
    let body = &alert["body"];
    let details = [&body["cef_details"]["details"], &body["details"]]
        .into_iter()
        .find(|d| d.is_object())?;
    let text = |name: &str| {
        details[name]
            .as_str()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    Some(GuanceRef {
        workspace_uuid: text("df_workspace_uuid")?,
        monitor_checker_event_ref: text("df_monitor_checker_event_ref")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// CONTRACT.md section 6: a real ping delivery.
    const VECTOR_SECRET: &str = "HvPtlQNKMPpHSSqJpCdndXfo7HnGXa1pnH6w5axpxLFn9aRBNBGh4e8/HlonK5mz";
    const VECTOR_BODY: &str = r#"{"event":{"id":"01FKZOXA868SHYEE4DVNWB5P9W","event_type":"pagey.ping","resource_type":"pagey","occurred_at":"2025-04-07T03:00:55.532Z","agent":{"id":"PVE0ZR9","type":"user_reference"},"client":null,"data":{"message":"Hello from your friend Pagey!","type":"ping"}}}"#;
    const VECTOR_SIGNATURE: &str =
        "v1=0e83584cbab86f98c51517cf96a70c90e910532d3d2f067d58c753cc8980a05b";

    #[test]
    fn the_contracts_test_vector_and_what_must_not_pass() {
        assert_eq!(VECTOR_BODY.len(), 264);
        let body = VECTOR_BODY.as_bytes();
        let other = "another-secret";
        let flipped = VECTOR_BODY.replace("Pagey!", "Pagey?");
        /// (what, body, header, secrets, accepted)
        type Case<'a> = (&'a str, &'a [u8], &'a str, &'a [&'a str], bool);
        let cases: &[Case] = &[
            ("the vector", body, VECTOR_SIGNATURE, &[VECTOR_SECRET], true),
            (
                "uppercase hex",
                body,
                &VECTOR_SIGNATURE.to_uppercase().replace("V1=", "v1="),
                &[VECTOR_SECRET],
                true,
            ),
            (
                "during a rotation: the second secret",
                body,
                VECTOR_SIGNATURE,
                &[other, VECTOR_SECRET],
                true,
            ),
            (
                "during a rotation: the second entry",
                body,
                &format!("v1=00ff, {VECTOR_SIGNATURE}"),
                &[VECTOR_SECRET],
                true,
            ),
            ("a wrong secret", body, VECTOR_SIGNATURE, &[other], false),
            ("no secret", body, VECTOR_SIGNATURE, &[], false),
            (
                "one byte changed in the body",
                flipped.as_bytes(),
                VECTOR_SIGNATURE,
                &[VECTOR_SECRET],
                false,
            ),
            ("an empty header", body, "", &[VECTOR_SECRET], false),
            (
                "another version only",
                body,
                &VECTOR_SIGNATURE.replace("v1=", "v2="),
                &[VECTOR_SECRET],
                false,
            ),
            ("not hex", body, "v1=zz", &[VECTOR_SECRET], false),
            (
                "odd length",
                body,
                &VECTOR_SIGNATURE[..VECTOR_SIGNATURE.len() - 1],
                &[VECTOR_SECRET],
                false,
            ),
            (
                "truncated",
                body,
                &VECTOR_SIGNATURE[..VECTOR_SIGNATURE.len() - 2],
                &[VECTOR_SECRET],
                false,
            ),
        ];
        for (name, body, header, secrets, expected) in cases {
            assert_eq!(
                signature_matches(body, header, secrets),
                *expected,
                "{name}"
            );
        }
    }

    fn event(event_type: &str, agent: Value, data: Value) -> WebhookEvent {
        serde_json::from_value(json!({
            "event_type": event_type,
            "agent": agent,
            "data": data,
        }))
        .unwrap()
    }

    #[test]
    fn only_a_persons_resolve_is_acted_on() {
        let person = json!({"id": "PUSER1", "type": "user_reference"});
        let incident = json!({"id": "PINC1", "type": "incident", "resolve_reason": null});
        let cases = [
            (
                event("incident.resolved", person.clone(), incident.clone()),
                Decision::Recover {
                    incident_id: "PINC1".into(),
                },
            ),
            (
                event("pagey.ping", person.clone(), json!({"type": "ping"})),
                Decision::Ignore(IgnoreReason::Ping),
            ),
            (
                event("incident.acknowledged", person.clone(), incident.clone()),
                Decision::Ignore(IgnoreReason::EventType("incident.acknowledged".into())),
            ),
            (
                event("incident.resolved", Value::Null, incident.clone()),
                Decision::Ignore(IgnoreReason::NotAPerson(None)),
            ),
            (
                event(
                    "incident.resolved",
                    json!({"type": "inbound_integration_reference"}),
                    incident.clone(),
                ),
                Decision::Ignore(IgnoreReason::NotAPerson(Some(
                    "inbound_integration_reference".into(),
                ))),
            ),
            (
                event(
                    "incident.resolved",
                    json!({"type": "service_reference"}),
                    incident.clone(),
                ),
                Decision::Ignore(IgnoreReason::NotAPerson(Some("service_reference".into()))),
            ),
            (
                event(
                    "incident.resolved",
                    person.clone(),
                    json!({"id": "PINC1", "resolve_reason": {"type": "merge_resolve_reason", "incident": {"id": "PINC2"}}}),
                ),
                Decision::Ignore(IgnoreReason::Merged),
            ),
            (
                event(
                    "incident.resolved",
                    person.clone(),
                    json!({"type": "incident"}),
                ),
                Decision::Ignore(IgnoreReason::NoIncident),
            ),
        ];
        for (event, expected) in cases {
            assert_eq!(decide(&event), expected, "{event:?}");
        }
        let delivery: WebhookDelivery = serde_json::from_str(VECTOR_BODY).unwrap();
        assert_eq!(
            decide(&delivery.event),
            Decision::Ignore(IgnoreReason::Ping)
        );
    }

    #[test]
    fn an_alert_carries_its_guance_event_in_the_details_we_sent() {
        let ours = json!({"df_workspace_uuid": "wksp_1", "df_monitor_checker_event_ref": "ref-1", "df_title": "t"});
        let cases = [
            (
                json!({"body": {"cef_details": {"details": ours.clone()}, "details": {}}}),
                Some(("wksp_1", "ref-1")),
            ),
            (
                json!({"body": {"details": ours.clone()}}),
                Some(("wksp_1", "ref-1")),
            ),
            (
                json!({"body": {"cef_details": {"details": "a string"}, "details": ours.clone()}}),
                Some(("wksp_1", "ref-1")),
            ),
            (
                json!({"body": {"details": {"df_monitor_checker_event_ref": "ref-1"}}}),
                None,
            ),
            (
                json!({"body": {"details": {"df_workspace_uuid": "wksp_1", "df_monitor_checker_event_ref": " "}}}),
                None,
            ),
            (
                json!({"body": {"details": {"custom": "from another tool"}}}),
                None,
            ),
            (json!({"body": null}), None),
            (json!("not an alert"), None),
        ];
        for (alert, expected) in cases {
            let expected = expected.map(|(w, r)| GuanceRef {
                workspace_uuid: w.into(),
                monitor_checker_event_ref: r.into(),
            });
            assert_eq!(guance_ref_of_alert(&alert), expected, "{alert}");
        }
    }
}
