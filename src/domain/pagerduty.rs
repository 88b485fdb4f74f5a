//! PagerDuty Events API v2: the event we send, and PagerDuty's limits enforced as it is
//! built, so that no event leaves this crate that PagerDuty would answer with a 400.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// PagerDuty cuts `payload.summary` at this many characters.
pub const MAX_SUMMARY_CHARS: usize = 1024;
/// PagerDuty refuses a `dedup_key` longer than this.
pub const MAX_DEDUP_KEY_CHARS: usize = 255;
/// PagerDuty refuses a request body larger than this (512 KB, read as decimal bytes).
pub const MAX_BODY_BYTES: usize = 512_000;
/// Room kept in the body for `"routing_key":"…",`, added only when the event is sent.
pub const MAX_ROUTING_KEY_CHARS: usize = 64;
const ROUTING_KEY_ALLOWANCE: usize = MAX_ROUTING_KEY_CHARS + r#""routing_key":"","#.len();
/// PagerDuty documents no limit for these; a cap keeps the body's size bounded so that
/// shrinking `custom_details` is always enough to fit it.
pub const MAX_LABEL_CHARS: usize = 1024;
/// Where `custom_details` says what had to be left out to fit the body limit.
pub const OMITTED_DETAILS_KEY: &str = "guance_pagerduty_omitted";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "critical" => Ok(Severity::Critical),
            "error" => Ok(Severity::Error),
            "warning" => Ok(Severity::Warning),
            "info" => Ok(Severity::Info),
            _ => Err(format!(
                "{s:?} is not a PagerDuty severity (critical, error, warning, info)"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventAction {
    Trigger,
    Acknowledge,
    Resolve,
}

impl EventAction {
    pub fn as_str(self) -> &'static str {
        match self {
            EventAction::Trigger => "trigger",
            EventAction::Acknowledge => "acknowledge",
            EventAction::Resolve => "resolve",
        }
    }
}

impl fmt::Display for EventAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One Events API v2 event, without the routing key: the key is a secret and joins the
/// event only in [`PagerDutyEvent::encode`], so this value is safe to log and to queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PagerDutyEvent {
    pub event_action: EventAction,
    pub dedup_key: String,
    pub payload: Payload,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    pub summary: String,
    pub source: String,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(default)]
    pub custom_details: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub href: String,
    pub text: String,
}

/// What the translation wants sent, before PagerDuty's limits are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDraft {
    pub event_action: EventAction,
    pub dedup_key: String,
    pub summary: String,
    pub source: String,
    pub severity: Severity,
    pub timestamp: Option<String>,
    pub component: Option<String>,
    pub group: Option<String>,
    pub class: Option<String>,
    pub custom_details: Map<String, Value>,
    pub client: Option<String>,
    pub client_url: Option<String>,
    pub links: Vec<Link>,
}

/// A built event, and the `custom_details` fields dropped to fit the body limit.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltEvent {
    pub event: PagerDutyEvent,
    pub omitted_details: Vec<String>,
}

/// The encoded body would exceed PagerDuty's limit; building prevents this, so seeing it
/// means a routing key longer than [`MAX_ROUTING_KEY_CHARS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyTooLarge {
    pub bytes: usize,
}

impl fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "encoded PagerDuty event is {} bytes, over the {MAX_BODY_BYTES}-byte limit",
            self.bytes
        )
    }
}

impl std::error::Error for BodyTooLarge {}

impl EventDraft {
    /// Applies PagerDuty's limits: summary and labels cut with a trailing `…`, an
    /// over-long `dedup_key` replaced by its hash (cutting could merge two alerts), an
    /// empty source replaced, and `custom_details` shrunk until the body fits.
    pub fn build(self) -> BuiltEvent {
        let label = |s: Option<String>| {
            s.map(|s| truncate_chars(&s, MAX_LABEL_CHARS))
                .filter(|s| !s.trim().is_empty())
        };
        let source = truncate_chars(self.source.trim(), MAX_LABEL_CHARS);
        let mut event = PagerDutyEvent {
            event_action: self.event_action,
            dedup_key: bounded_dedup_key(self.dedup_key),
            payload: Payload {
                summary: truncate_chars(&self.summary, MAX_SUMMARY_CHARS),
                source: if source.is_empty() {
                    "guance".to_owned()
                } else {
                    source
                },
                severity: self.severity,
                timestamp: self.timestamp,
                component: label(self.component),
                group: label(self.group),
                class: label(self.class),
                custom_details: Map::new(),
            },
            client: label(self.client),
            client_url: self.client_url,
            links: self.links,
        };
        let omitted_details = fit_custom_details(
            &mut event,
            self.custom_details,
            MAX_BODY_BYTES - ROUTING_KEY_ALLOWANCE,
            &[],
        );
        BuiltEvent {
            event,
            omitted_details,
        }
    }
}

impl PagerDutyEvent {
    /// The request body for PagerDuty: this event with the routing key added.
    pub fn encode(&self, routing_key: &str) -> Result<Vec<u8>, BodyTooLarge> {
        #[derive(Serialize)]
        struct Envelope<'a> {
            routing_key: &'a str,
            #[serde(flatten)]
            event: &'a PagerDutyEvent,
        }
        let body = serde_json::to_vec(&Envelope {
            routing_key,
            event: self,
        })
        .unwrap_or_default();
        if body.len() > MAX_BODY_BYTES || body.is_empty() {
            return Err(BodyTooLarge { bytes: body.len() });
        }
        Ok(body)
    }

    /// Size of this event encoded without its routing key.
    pub fn encoded_len(&self) -> usize {
        serde_json_len(self)
    }

    /// Shrinks `custom_details` as [`EventDraft::build`] does, until the event encoded
    /// (without its routing key) takes at most `max_encoded_len` bytes, for a carrier
    /// smaller than PagerDuty's limit. Returns the fields left out now.
    pub fn shrink_to(&mut self, max_encoded_len: usize) -> Vec<String> {
        if self.encoded_len() <= max_encoded_len {
            return Vec::new();
        }
        let mut details = std::mem::take(&mut self.payload.custom_details);
        // Fields already left out stay named in the new note.
        let before: Vec<String> = details
            .remove(OMITTED_DETAILS_KEY)
            .and_then(|note| note.get("fields").cloned())
            .and_then(|fields| serde_json::from_value(fields).ok())
            .unwrap_or_default();
        let budget = max_encoded_len.min(MAX_BODY_BYTES - ROUTING_KEY_ALLOWANCE);
        fit_custom_details(self, details, budget, &before)
    }
}

fn serde_json_len<T: Serialize + ?Sized>(value: &T) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Serializing plain data (string keys, JSON values) into a counter cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// Whether PagerDuty refused the routing key rather than the event: "Invalid routing
/// key" once an integration is deleted (a key rotated away), "Length of 'routing_key' is
/// incorrect", "'routing_key' cannot contain non-alphanumeric characters". The same event
/// is taken under the right key, so this is a configuration fault to fix and wait out,
/// not a bad event to set aside.
pub fn refuses_routing_key(status: u16, errors: &[String]) -> bool {
    status == 400
        && errors.iter().any(|error| {
            let error = error.to_ascii_lowercase();
            error.contains("routing key") || error.contains("routing_key")
        })
}

/// Cuts `text` to at most `max` characters, the last being `…` when anything was cut.
pub fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some(_) => {
            let keep = max.saturating_sub(1);
            let end = text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i);
            let mut cut = String::with_capacity(end + '…'.len_utf8());
            cut.push_str(&text[..end]);
            cut.push('…');
            cut
        }
    }
}

/// A stable key of PagerDuty's length for any input: short keys pass, long ones hash.
fn bounded_dedup_key(key: String) -> String {
    if key.chars().count() <= MAX_DEDUP_KEY_CHARS {
        key
    } else {
        hashed_key(key.as_bytes())
    }
}

/// `guance-` and the SHA-256 of `input` in hex: 71 characters.
pub fn hashed_key(input: &[u8]) -> String {
    let digest = Sha256::digest(input);
    let mut key = String::with_capacity(7 + 64);
    key.push_str("guance-");
    for byte in digest {
        key.push(char::from(HEX[usize::from(byte >> 4)]));
        key.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    key
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Puts as much of `details` into the event as fits `budget` (encoded bytes without the
/// routing key), dropping the largest fields first, and names what was dropped (after
/// `earlier`, fields an earlier fitting left out) inside `custom_details` itself.
fn fit_custom_details(
    event: &mut PagerDutyEvent,
    details: Map<String, Value>,
    budget: usize,
    earlier: &[String],
) -> Vec<String> {
    event.payload.custom_details = details;
    if earlier.is_empty() && event.encoded_len() <= budget {
        return Vec::new();
    }

    // Largest first; names break ties so the outcome is the same on every run.
    let mut by_size: Vec<(usize, String)> = event
        .payload
        .custom_details
        .iter()
        .map(|(k, v)| (serde_json_len(k) + serde_json_len(v) + 2, k.clone()))
        .collect();
    by_size.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));

    let mut omitted: Vec<String> = earlier.to_vec();
    let mut current = event.encoded_len();
    for (size, name) in by_size {
        let note_len =
            serde_json_len(OMITTED_DETAILS_KEY) + serde_json_len(&omission_note(&omitted)) + 2;
        if current + note_len <= budget {
            break;
        }
        event.payload.custom_details.remove(&name);
        current = current.saturating_sub(size);
        omitted.push(name);
    }
    // The estimate above is exact but for separators; confirm with the real encoding.
    loop {
        event
            .payload
            .custom_details
            .insert(OMITTED_DETAILS_KEY.to_owned(), omission_note(&omitted));
        if event.encoded_len() <= budget {
            break;
        }
        event.payload.custom_details.remove(OMITTED_DETAILS_KEY);
        let largest = event
            .payload
            .custom_details
            .iter()
            .max_by_key(|(k, v)| serde_json_len(*k) + serde_json_len(*v))
            .map(|(k, _)| k.clone());
        match largest {
            Some(name) => {
                event.payload.custom_details.remove(&name);
                omitted.push(name);
            }
            // Labels are capped, so an event with no details always fits; keep the note
            // out rather than loop if that ever stops being true.
            None => break,
        }
    }
    omitted.split_off(earlier.len().min(omitted.len()))
}

/// The note names the first few fields left out, each cut short, so that it stays small
/// however many fields and however long their names.
fn omission_note(omitted: &[String]) -> Value {
    let named: Vec<String> = omitted
        .iter()
        .take(NOTE_MAX_NAMES)
        .map(|name| truncate_chars(name, NOTE_MAX_NAME_CHARS))
        .collect();
    serde_json::json!({
        "reason": format!(
            "PagerDuty accepts at most {MAX_BODY_BYTES} bytes per event; Guance fields were left out, largest first"
        ),
        "count": omitted.len(),
        "fields": named,
    })
}

const NOTE_MAX_NAMES: usize = 32;
const NOTE_MAX_NAME_CHARS: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn draft() -> EventDraft {
        EventDraft {
            event_action: EventAction::Trigger,
            dedup_key: "k".into(),
            summary: "s".into(),
            source: "host".into(),
            severity: Severity::Critical,
            timestamp: None,
            component: None,
            group: None,
            class: None,
            custom_details: Map::new(),
            client: None,
            client_url: None,
            links: Vec::new(),
        }
    }

    #[test]
    fn truncation_counts_characters_not_bytes() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 3, ""),
            ("abc", 3, "abc"),
            ("abcd", 3, "ab…"),
            ("磁盘使用率", 5, "磁盘使用率"),
            ("磁盘使用率过高", 5, "磁盘使用…"),
            ("🔥🔥🔥🔥", 3, "🔥🔥…"),
            ("a", 1, "a"),
            ("ab", 1, "…"),
        ];
        for (text, max, expected) in cases {
            assert_eq!(truncate_chars(text, *max), *expected, "{text:?} to {max}");
        }
    }

    #[test]
    fn severity_parses_the_four_and_nothing_else() {
        for (text, expected) in [
            ("critical", Ok(Severity::Critical)),
            (" ERROR ", Ok(Severity::Error)),
            ("Warning", Ok(Severity::Warning)),
            ("info", Ok(Severity::Info)),
        ] {
            assert_eq!(text.parse::<Severity>(), expected);
        }
        for text in ["", "ok", "nodata", "fatal", "high"] {
            assert!(text.parse::<Severity>().is_err(), "{text}");
        }
    }

    #[test]
    fn dedup_key_at_the_limit_passes_over_it_hashes() {
        let at_limit = "界".repeat(MAX_DEDUP_KEY_CHARS);
        let built = EventDraft {
            dedup_key: at_limit.clone(),
            ..draft()
        }
        .build();
        assert_eq!(built.event.dedup_key, at_limit);

        let over = "界".repeat(MAX_DEDUP_KEY_CHARS + 1);
        let built = EventDraft {
            dedup_key: over.clone(),
            ..draft()
        }
        .build();
        assert_eq!(built.event.dedup_key, hashed_key(over.as_bytes()));
        assert_eq!(built.event.dedup_key.len(), 71);
        assert_ne!(hashed_key(b"a"), hashed_key(b"b"));
    }

    #[test]
    fn empty_source_and_labels_are_not_sent() {
        let built = EventDraft {
            source: "  ".into(),
            class: Some(" ".into()),
            group: Some(String::new()),
            component: Some("c".repeat(MAX_LABEL_CHARS + 10)),
            ..draft()
        }
        .build();
        let p = &built.event.payload;
        assert_eq!(p.source, "guance");
        assert_eq!(p.class, None);
        assert_eq!(p.group, None);
        assert_eq!(
            p.component.as_deref().map(|c| c.chars().count()),
            Some(MAX_LABEL_CHARS)
        );
    }

    #[test]
    fn encode_adds_routing_key_and_keeps_every_field() {
        let built = EventDraft {
            links: vec![Link {
                href: "https://x".into(),
                text: "t".into(),
            }],
            ..draft()
        }
        .build();
        let body = built.event.encode("R".repeat(32).as_str()).unwrap();
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["routing_key"], json!("R".repeat(32)));
        assert_eq!(value["event_action"], json!("trigger"));
        assert_eq!(value["payload"]["severity"], json!("critical"));
        assert_eq!(value["links"][0]["href"], json!("https://x"));
        assert!(value.get("client").is_none());
        assert_eq!(body.len(), built.event.encoded_len() + 32 + 17);
    }

    #[test]
    fn oversized_details_shrink_largest_first_to_fit() {
        let mut details = Map::new();
        details.insert("huge".into(), json!("x".repeat(400_000)));
        details.insert("big".into(), json!("y".repeat(300_000)));
        details.insert("small".into(), json!("z"));
        details.insert("nested".into(), json!({"a": [1, 2, 3]}));
        let built = EventDraft {
            custom_details: details,
            ..draft()
        }
        .build();
        assert_eq!(built.omitted_details, ["huge"]);
        let cd = &built.event.payload.custom_details;
        assert!(cd.contains_key("big") && cd.contains_key("small") && cd.contains_key("nested"));
        assert_eq!(cd[OMITTED_DETAILS_KEY]["fields"], json!(["huge"]));
        let body = built
            .event
            .encode(&"R".repeat(MAX_ROUTING_KEY_CHARS))
            .unwrap();
        assert!(body.len() <= MAX_BODY_BYTES);
    }

    #[test]
    fn many_small_details_shrink_to_fit() {
        let details: Map<String, Value> = (0..60_000)
            .map(|i| (format!("field_{i:05}"), json!(i)))
            .collect();
        let built = EventDraft {
            custom_details: details,
            ..draft()
        }
        .build();
        assert!(!built.omitted_details.is_empty());
        let body = built
            .event
            .encode(&"R".repeat(MAX_ROUTING_KEY_CHARS))
            .unwrap();
        assert!(body.len() <= MAX_BODY_BYTES, "{}", body.len());
        // Nothing is dropped that did not have to be: one field more would not fit.
        assert!(body.len() > MAX_BODY_BYTES - 1_000, "{}", body.len());
    }

    #[test]
    fn details_that_fit_are_untouched() {
        let mut details = Map::new();
        details.insert("a".into(), json!("x".repeat(100_000)));
        let built = EventDraft {
            custom_details: details.clone(),
            ..draft()
        }
        .build();
        assert!(built.omitted_details.is_empty());
        assert_eq!(built.event.payload.custom_details, details);
    }

    #[test]
    fn too_long_routing_key_is_caught_at_encode() {
        let mut details = Map::new();
        details.insert("a".into(), json!("x".repeat(500_000)));
        let built = EventDraft {
            custom_details: details,
            ..draft()
        }
        .build();
        assert!(built.omitted_details.is_empty());
        assert!(built
            .event
            .encode(&"R".repeat(MAX_ROUTING_KEY_CHARS))
            .is_ok());
        assert_eq!(
            built.event.encode(&"R".repeat(20_000)),
            Err(BodyTooLarge {
                bytes: built.event.encoded_len() + 20_000 + 17
            })
        );
    }

    #[test]
    fn refusals_of_the_routing_key_are_told_from_refusals_of_the_event() {
        let cases: &[(u16, &[&str], bool)] = &[
            (400, &["Invalid routing key"], true),
            (
                400,
                &["Length of 'routing_key' is incorrect (should be 32 characters)"],
                true,
            ),
            (
                400,
                &["'routing_key' cannot contain non-alphanumeric characters."],
                true,
            ),
            (
                400,
                &["'payload.summary' is missing or not a string"],
                false,
            ),
            (400, &["Length of 'dedup_key' is too long"], false),
            (400, &[], false),
            (404, &["Invalid routing key"], false),
        ];
        for (status, errors, expected) in cases {
            let errors: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            assert_eq!(
                refuses_routing_key(*status, &errors),
                *expected,
                "{status} {errors:?}"
            );
        }
    }
}
