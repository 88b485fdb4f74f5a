//! The translation from one Guance event to what PagerDuty should receive: the rules of
//! CONTRACT.md section 3, as a pure function with no I/O.

use crate::domain::guance::GuanceEvent;
use crate::domain::pagerduty::{
    hashed_key, EventAction, EventDraft, Link, PagerDutyEvent, Severity,
};
use std::fmt;

/// The choices a deployment makes about the mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Severity of a `nodata` (data gap) alert.
    pub nodata_severity: Severity,
    /// Severity when `df_status` is missing or not one Guance documents.
    pub unknown_status_severity: Severity,
    /// Whether `info` events page at all.
    pub info_events: InfoEvents,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            nodata_severity: Severity::Error,
            unknown_status_severity: Severity::Error,
            info_events: InfoEvents::Send,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfoEvents {
    Send,
    Drop,
}

/// What to do with one Guance event.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Send this event (a trigger or a resolve: see its `event_action`).
    Send(Box<PagerDutyEvent>),
    /// Deliberately not sent; the caller is told, nothing is wrong.
    Drop(DropReason),
    /// Cannot be sent as it stands; the caller must be told it is wrong.
    Reject(RejectReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    InfoEventsDisabled,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::InfoEventsDisabled => {
                f.write_str("info events are configured not to be sent (INFO_EVENTS=drop)")
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// A recovery PagerDuty could not match to its alert: it would be dropped there.
    ResolveWithoutDedupKey,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::ResolveWithoutDedupKey => f.write_str(
                "recovery event has none of df_monitor_checker_event_ref, df_monitor_checker_id \
                 or df_fault_id, so the alert it resolves cannot be identified",
            ),
        }
    }
}

/// Something worth a warning log line; the event is still handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    MissingStatus,
    UnknownStatus(String),
    UnusableTimestamp,
    EventLinkIgnored,
    DetailsOmitted(Vec<String>),
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::MissingStatus => f.write_str("df_status is missing; sent as an alert"),
            Warning::UnknownStatus(status) => {
                write!(
                    f,
                    "df_status {status:?} is not a known Guance status; sent as an alert"
                )
            }
            Warning::UnusableTimestamp => f.write_str(
                "neither timestamp nor date is a usable time; PagerDuty will use its receive time",
            ),
            Warning::EventLinkIgnored => {
                f.write_str("df_event_link is not an http(s) URL of sensible length; not linked")
            }
            Warning::DetailsOmitted(fields) => write!(
                f,
                "{} custom_details field(s) left out to fit PagerDuty's size limit",
                fields.len()
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    pub outcome: Outcome,
    pub warnings: Vec<Warning>,
}

/// What a Guance status means for PagerDuty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Alert(Severity),
    Info,
    NoData,
    Recovery,
    Unknown,
}

fn classify(status: &str) -> Status {
    match status.trim().to_ascii_lowercase().as_str() {
        "critical" | "fatal" | "security_critical" => Status::Alert(Severity::Critical),
        "error" | "security_high" => Status::Alert(Severity::Error),
        "warning" | "security_medium" => Status::Alert(Severity::Warning),
        "info" | "security_low" | "security_info" => Status::Info,
        "nodata" => Status::NoData,
        "ok" | "nodata_ok" | "nodata_as_ok" | "manual_ok" => Status::Recovery,
        _ => Status::Unknown,
    }
}

/// Links longer than this are almost certainly not Guance's; they are left out rather
/// than cut into a broken URL.
const MAX_LINK_CHARS: usize = 4096;

/// Translates one Guance event following CONTRACT.md section 3.
pub fn translate(event: &GuanceEvent, settings: &Settings) -> Translation {
    let mut warnings = Vec::new();

    // `df_status` decides; a missing one falls back to `df_sub_status`, so a recovery
    // whose status was lost on the way still resolves instead of paging.
    let status_text = event.status().or_else(|| event.sub_status());
    let status = match &status_text {
        None => {
            warnings.push(Warning::MissingStatus);
            Status::Unknown
        }
        Some(text) => {
            let status = classify(text);
            if status == Status::Unknown {
                warnings.push(Warning::UnknownStatus(text.to_string()));
            }
            status
        }
    };
    let (event_action, severity) = match status {
        Status::Alert(severity) => (EventAction::Trigger, severity),
        Status::Info => match settings.info_events {
            InfoEvents::Send => (EventAction::Trigger, Severity::Info),
            InfoEvents::Drop => {
                return Translation {
                    outcome: Outcome::Drop(DropReason::InfoEventsDisabled),
                    warnings,
                }
            }
        },
        Status::NoData => (EventAction::Trigger, settings.nodata_severity),
        Status::Recovery => (EventAction::Resolve, Severity::Info),
        Status::Unknown => (EventAction::Trigger, settings.unknown_status_severity),
    };

    let Some(dedup_key) = dedup_key(event, event_action) else {
        return Translation {
            outcome: Outcome::Reject(RejectReason::ResolveWithoutDedupKey),
            warnings,
        };
    };

    let timestamp = event.time_millis().and_then(rfc3339_utc);
    if timestamp.is_none() {
        warnings.push(Warning::UnusableTimestamp);
    }

    let event_link = event.text("df_event_link").and_then(|link| {
        let usable = (link.starts_with("https://") || link.starts_with("http://"))
            && link.chars().count() <= MAX_LINK_CHARS
            && !link.chars().any(char::is_whitespace);
        if !usable {
            warnings.push(Warning::EventLinkIgnored);
        }
        usable.then(|| link.into_owned())
    });

    let workspace_name = event
        .text("df_workspace_name")
        .or_else(|| event.text("workspace_name"));
    let client = Some(match &workspace_name {
        Some(name) => format!("Guance ({name})"),
        None => "Guance".to_owned(),
    });

    let tags_as_pairs = tag_pairs(event);
    let source = event
        .dimension_tags()
        .get("host")
        .map(|host| host.trim().to_owned())
        .filter(|host| !host.is_empty())
        .or_else(|| tags_as_pairs.clone())
        .or_else(|| workspace_name.as_deref().map(str::to_owned))
        .unwrap_or_else(|| "guance".to_owned());

    let draft = EventDraft {
        event_action,
        dedup_key,
        summary: summary(event, status_text.as_deref()),
        source,
        severity,
        timestamp,
        component: tags_as_pairs,
        group: event.text("df_monitor_name").map(|s| s.into_owned()),
        class: event
            .text("df_monitor_checker_name")
            .map(|s| s.into_owned()),
        custom_details: event.fields().clone(),
        client,
        client_url: event_link.clone(),
        links: event_link
            .map(|href| {
                vec![Link {
                    href,
                    text: "View this event in Guance".to_owned(),
                }]
            })
            .unwrap_or_default(),
    };
    let built = draft.build();
    if !built.omitted_details.is_empty() {
        warnings.push(Warning::DetailsOmitted(built.omitted_details));
    }
    Translation {
        outcome: Outcome::Send(Box::new(built.event)),
        warnings,
    }
}

/// The key that ties an alert to its recovery, first that exists:
/// `df_monitor_checker_event_ref`; a hash of workspace, monitor and dimension tags;
/// `df_fault_id`; and, for a trigger only, `df_event_id` (unique per notification, so a
/// resolve keyed by it could never match its alert), else a hash of the whole event: an
/// alert of a shape never seen (Guance's "test" button sends an undocumented one) still
/// pages, and its exact repeats collapse into one alert. `None` only for a resolve.
pub fn dedup_key(event: &GuanceEvent, action: EventAction) -> Option<String> {
    if let Some(event_ref) = event.text("df_monitor_checker_event_ref") {
        return Some(event_ref.into_owned());
    }
    if let Some(checker_id) = event.text("df_monitor_checker_id") {
        let workspace = event
            .text("df_workspace_uuid")
            .or_else(|| event.text("workspace_uuid"))
            .unwrap_or_default();
        // JSON of a sorted map is canonical: the same tags give the same bytes.
        let canonical = serde_json::json!([workspace, checker_id, event.dimension_tags()]);
        return Some(hashed_key(canonical.to_string().as_bytes()));
    }
    if let Some(fault_id) = event.text("df_fault_id") {
        return Some(fault_id.into_owned());
    }
    match action {
        EventAction::Trigger => Some(
            event
                .text("df_event_id")
                .map(|id| id.into_owned())
                .unwrap_or_else(|| whole_event_key(event)),
        ),
        EventAction::Acknowledge | EventAction::Resolve => None,
    }
}

/// serde_json's `Map` is sorted by key (the `preserve_order` feature is off, and a test
/// holds it so), so the same fields in any order give the same bytes and the same key.
fn whole_event_key(event: &GuanceEvent) -> String {
    let canonical = serde_json::to_vec(event.fields()).unwrap_or_default();
    hashed_key(&[b"event:".as_slice(), &canonical].concat())
}

/// Dimension tags as `k=v` pairs in key order, or `None` when there are none.
fn tag_pairs(event: &GuanceEvent) -> Option<String> {
    let tags = event.dimension_tags();
    (!tags.is_empty()).then(|| {
        tags.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    })
}

fn summary(event: &GuanceEvent, status: Option<&str>) -> String {
    if let Some(title) = event.text("df_title") {
        return title.into_owned();
    }
    if let Some(message) = event.text("df_message") {
        if let Some(line) = message.lines().map(str::trim).find(|l| !l.is_empty()) {
            return line.to_owned();
        }
    }
    let monitor = event
        .text("df_monitor_checker_name")
        .or_else(|| event.text("df_monitor_name"))
        .or_else(|| event.text("df_monitor_checker_id"));
    match monitor {
        Some(monitor) => format!(
            "Guance {} event from monitor {monitor}",
            status.unwrap_or("unknown status")
        ),
        None => format!("Guance {} event", status.unwrap_or("unknown status")),
    }
}

/// Milliseconds since the epoch as RFC 3339 UTC; years 1970 to 9999 only.
fn rfc3339_utc(millis: i64) -> Option<String> {
    const MAX_MILLIS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    if !(0..=MAX_MILLIS).contains(&millis) {
        return None;
    }
    let secs = millis / 1000;
    let ms = millis % 1000;
    let (days, secs_of_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    let (h, m, s) = (
        secs_of_day / 3600,
        secs_of_day % 3600 / 60,
        secs_of_day % 60,
    );
    Some(if ms == 0 {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
    } else {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
    })
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        let cases: &[(i64, Option<&str>)] = &[
            (0, Some("1970-01-01T00:00:00Z")),
            (1_693_034_940_000, Some("2023-08-26T07:29:00Z")),
            (1_693_034_940_123, Some("2023-08-26T07:29:00.123Z")),
            (951_782_400_000, Some("2000-02-29T00:00:00Z")),
            (1_709_164_800_000, Some("2024-02-29T00:00:00Z")),
            (4_107_542_400_000, Some("2100-03-01T00:00:00Z")),
            (253_402_300_799_999, Some("9999-12-31T23:59:59.999Z")),
            (253_402_300_800_000, None),
            (-1, None),
        ];
        for (millis, expected) in cases {
            assert_eq!(rfc3339_utc(*millis).as_deref(), *expected, "{millis}");
        }
    }

    #[test]
    fn every_status_classifies() {
        let cases: &[(&str, Status)] = &[
            ("critical", Status::Alert(Severity::Critical)),
            ("fatal", Status::Alert(Severity::Critical)),
            ("security_critical", Status::Alert(Severity::Critical)),
            ("error", Status::Alert(Severity::Error)),
            ("security_high", Status::Alert(Severity::Error)),
            ("warning", Status::Alert(Severity::Warning)),
            ("security_medium", Status::Alert(Severity::Warning)),
            ("info", Status::Info),
            ("security_low", Status::Info),
            ("security_info", Status::Info),
            ("nodata", Status::NoData),
            ("ok", Status::Recovery),
            ("nodata_ok", Status::Recovery),
            ("nodata_as_ok", Status::Recovery),
            ("manual_ok", Status::Recovery),
            (" CRITICAL ", Status::Alert(Severity::Critical)),
            ("Ok", Status::Recovery),
            ("", Status::Unknown),
            ("okay", Status::Unknown),
            ("critical!", Status::Unknown),
        ];
        for (text, expected) in cases {
            assert_eq!(classify(text), *expected, "{text:?}");
        }
    }
}
