//! Table-driven tests of the pure translation (CONTRACT.md section 3).

use guance_pagerduty::domain::guance::{parse_body, GuanceEvent};
use guance_pagerduty::domain::pagerduty::{EventAction, PagerDutyEvent, Severity};
use guance_pagerduty::domain::pagerduty::{
    MAX_BODY_BYTES, MAX_ROUTING_KEY_CHARS, MAX_SUMMARY_CHARS, OMITTED_DETAILS_KEY,
};
use guance_pagerduty::domain::translate::{
    translate, DropReason, InfoEvents, Outcome, RejectReason, Settings, Translation, Warning,
};
use serde_json::{json, Map, Value};

const EXAMPLE: &str = include_str!("fixtures/contract-example-alert.json");
const EXAMPLE_LINK: &str = "https://console.guance.com/keyevents/monitor?time=1693034040000%2C1693035000000&tags=%7B%22df_event_id%22%3A%22event-f20a38aa58b54c6c8d4c9a84e655db1a%22%7D&w=wksp_968577392a1c4714a464cd2f6ee42a9c";

fn example() -> Map<String, Value> {
    match serde_json::from_str(EXAMPLE).unwrap() {
        Value::Object(fields) => fields,
        _ => unreachable!(),
    }
}

/// The example with some fields replaced (`null` removes the field).
fn example_with(changes: Value) -> GuanceEvent {
    let mut fields = example();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            fields.remove(k);
        } else {
            fields.insert(k.clone(), v.clone());
        }
    }
    GuanceEvent::from_fields(fields)
}

fn event(fields: Value) -> GuanceEvent {
    GuanceEvent::from_fields(fields.as_object().unwrap().clone())
}

fn sent(t: &Translation) -> &PagerDutyEvent {
    match &t.outcome {
        Outcome::Send(e) => e,
        other => panic!("expected an event to send, got {other:?}"),
    }
}

fn wire(e: &PagerDutyEvent) -> Value {
    serde_json::to_value(e).unwrap()
}

#[test]
fn contract_example_translates_to_the_complete_expected_event() {
    let events = parse_body(EXAMPLE.as_bytes()).unwrap();
    assert_eq!(events.len(), 1);
    let t = translate(&events[0], &Settings::default());
    assert_eq!(t.warnings, []);

    let mut details = example();
    details.insert("df_dimension_tags".into(), json!({"host": "share"}));
    details.insert("df_label".into(), json!([]));
    let expected = json!({
        "event_action": "trigger",
        "dedup_key": "13713ac25e993a37d2ca5899e2a7bba6",
        "payload": {
            "summary": "实例名称为 share 磁盘使用率过高",
            "source": "share",
            "severity": "critical",
            "timestamp": "2023-08-26T07:29:00Z",
            "component": "host=share",
            "group": "默认",
            "class": "实例名称为 {{host}} 磁盘使用率过高",
            "custom_details": details,
        },
        "client": "Guance (observer)",
        "client_url": EXAMPLE_LINK,
        "links": [{"href": EXAMPLE_LINK, "text": "View this event in Guance"}],
    });
    assert_eq!(wire(sent(&t)), expected);
    assert_eq!(sent(&t).payload.custom_details.len(), 39);

    // On the wire the routing key is added and nothing else changes.
    let body: Value = serde_json::from_slice(&sent(&t).encode("R0UT1NGKEY").unwrap()).unwrap();
    let mut with_key = expected.clone();
    with_key["routing_key"] = json!("R0UT1NGKEY");
    assert_eq!(body, with_key);
}

#[test]
fn every_status_maps_to_its_action_and_severity() {
    use EventAction::{Resolve, Trigger};
    use Severity::{Critical, Error, Info, Warning as Warn};
    // (df_status, df_sub_status, expected action and severity, expected warning)
    type Case<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        EventAction,
        Severity,
        Option<Warning>,
    );
    let cases: &[Case] = &[
        (Some("critical"), None, Trigger, Critical, None),
        (Some("fatal"), None, Trigger, Critical, None),
        (Some("security_critical"), None, Trigger, Critical, None),
        (Some("error"), None, Trigger, Error, None),
        (Some("security_high"), None, Trigger, Error, None),
        (Some("warning"), None, Trigger, Warn, None),
        (Some("security_medium"), None, Trigger, Warn, None),
        (Some("info"), None, Trigger, Info, None),
        (Some("security_low"), None, Trigger, Info, None),
        (Some("security_info"), None, Trigger, Info, None),
        (Some("nodata"), Some("nodata"), Trigger, Error, None),
        (Some("ok"), Some("ok"), Resolve, Info, None),
        (Some("ok"), Some("nodata_ok"), Resolve, Info, None),
        (Some("ok"), Some("nodata_as_ok"), Resolve, Info, None),
        (Some("ok"), Some("manual_ok"), Resolve, Info, None),
        (Some("ok"), Some("critical"), Resolve, Info, None),
        (Some("nodata_ok"), None, Resolve, Info, None),
        (Some("nodata_as_ok"), None, Resolve, Info, None),
        (Some("manual_ok"), None, Resolve, Info, None),
        (Some("  Critical "), None, Trigger, Critical, None),
        (Some("OK"), None, Resolve, Info, None),
        (None, None, Trigger, Error, Some(Warning::MissingStatus)),
        (Some(""), None, Trigger, Error, Some(Warning::MissingStatus)),
        (None, Some("manual_ok"), Resolve, Info, None),
        (None, Some("critical"), Trigger, Critical, None),
        (
            Some("alarm"),
            None,
            Trigger,
            Error,
            Some(Warning::UnknownStatus("alarm".into())),
        ),
        (
            Some("okay"),
            Some("ok"),
            Trigger,
            Error,
            Some(Warning::UnknownStatus("okay".into())),
        ),
    ];
    for (status, sub, action, severity, warning) in cases {
        let e = example_with(json!({
            "df_status": status.map_or(Value::Null, |s| json!(s)),
            "df_sub_status": sub.map_or(Value::Null, |s| json!(s)),
        }));
        let t = translate(&e, &Settings::default());
        let pd = sent(&t);
        assert_eq!(
            (pd.event_action, pd.payload.severity),
            (*action, *severity),
            "status {status:?} sub {sub:?}"
        );
        assert_eq!(
            t.warnings,
            warning.iter().cloned().collect::<Vec<_>>(),
            "{status:?}"
        );
        // An alert and its recovery always share the alert's key.
        assert_eq!(pd.dedup_key, "13713ac25e993a37d2ca5899e2a7bba6");
    }
}

#[test]
fn settings_change_nodata_unknown_and_info() {
    let settings = Settings {
        nodata_severity: Severity::Warning,
        unknown_status_severity: Severity::Critical,
        info_events: InfoEvents::Drop,
    };
    let cases: &[(&str, Result<Severity, DropReason>)] = &[
        ("nodata", Ok(Severity::Warning)),
        ("mystery", Ok(Severity::Critical)),
        ("info", Err(DropReason::InfoEventsDisabled)),
        ("security_low", Err(DropReason::InfoEventsDisabled)),
        ("security_info", Err(DropReason::InfoEventsDisabled)),
        ("critical", Ok(Severity::Critical)),
        ("ok", Ok(Severity::Info)),
    ];
    for (status, expected) in cases {
        let t = translate(&example_with(json!({ "df_status": status })), &settings);
        let got = match t.outcome {
            Outcome::Send(e) => Ok(e.payload.severity),
            Outcome::Drop(reason) => Err(reason),
            Outcome::Reject(r) => panic!("{status} rejected: {r}"),
        };
        assert_eq!(got, *expected, "{status}");
    }
}

#[test]
fn an_alert_and_its_recovery_share_one_dedup_key_on_every_fallback() {
    let base = json!({
        "df_event_id": "event-1", "df_title": "t", "timestamp": 1693034940,
        "df_monitor_checker_id": "rul_1", "df_workspace_uuid": "wksp_1",
        "df_dimension_tags": "{\"host\":\"a\",\"disk\":\"/\"}", "df_fault_id": "event-0",
    });
    // Each row removes the fields above it in the dedup order.
    let strip: &[&[&str]] = &[
        &[],
        &["df_monitor_checker_id"],
        &["df_monitor_checker_id", "df_fault_id"],
    ];
    for removed in strip {
        let mut alert = base.clone();
        for name in *removed {
            alert.as_object_mut().unwrap().remove(*name);
        }
        let mut recovery = alert.clone();
        recovery["df_status"] = json!("ok");
        recovery["df_event_id"] = json!("event-2");
        alert["df_status"] = json!("critical");
        let a = translate(&event(alert), &Settings::default());
        let r = translate(&event(recovery), &Settings::default());
        match (&a.outcome, &r.outcome) {
            (Outcome::Send(a), Outcome::Send(r)) => {
                assert_eq!(a.dedup_key, r.dedup_key, "removed {removed:?}");
                assert_eq!(
                    (a.event_action, r.event_action),
                    (EventAction::Trigger, EventAction::Resolve)
                );
            }
            // With only df_event_id left, the recovery cannot be matched: it is refused.
            (Outcome::Send(_), Outcome::Reject(reason)) => {
                assert_eq!(*reason, RejectReason::ResolveWithoutDedupKey);
                assert_eq!(*removed, ["df_monitor_checker_id", "df_fault_id"]);
            }
            other => panic!("removed {removed:?}: {other:?}"),
        }
    }
}

#[test]
fn dedup_key_fallback_order() {
    let hash_of = |ws: &str, checker: &str, tags: Value| {
        guance_pagerduty::domain::pagerduty::hashed_key(
            json!([ws, checker, tags]).to_string().as_bytes(),
        )
    };
    let cases: Vec<(Value, Option<String>)> = vec![
        (
            json!({"df_monitor_checker_event_ref": "ref1", "df_monitor_checker_id": "rul_1",
                   "df_fault_id": "f1", "df_event_id": "e1"}),
            Some("ref1".into()),
        ),
        (
            json!({"df_monitor_checker_id": "rul_1", "df_workspace_uuid": "wksp_1",
                   "df_dimension_tags": "{\"host\":\"a\",\"disk\":\"/\"}",
                   "df_fault_id": "f1", "df_event_id": "e1"}),
            Some(hash_of(
                "wksp_1",
                "rul_1",
                json!({"disk": "/", "host": "a"}),
            )),
        ),
        (
            // Tags in another order, as an object, from the top-level workspace field.
            json!({"df_monitor_checker_id": "rul_1", "workspace_uuid": "wksp_1",
                   "df_dimension_tags": {"host": "a", "disk": "/"}}),
            Some(hash_of(
                "wksp_1",
                "rul_1",
                json!({"disk": "/", "host": "a"}),
            )),
        ),
        (
            json!({"df_monitor_checker_id": "rul_1"}),
            Some(hash_of("", "rul_1", json!({}))),
        ),
        (
            json!({"df_fault_id": "f1", "df_event_id": "e1"}),
            Some("f1".into()),
        ),
        (json!({"df_event_id": "e1"}), Some("e1".into())),
        (
            json!({"df_monitor_checker_event_ref": "  ", "df_event_id": "e1"}),
            Some("e1".into()),
        ),
        (
            json!({"df_monitor_checker_event_ref": 12345}),
            Some("12345".into()),
        ),
        // No identifier at all (Guance's "test" button, a shape never seen): the hash
        // of the whole event, status included, so it still pages.
        (
            json!({"df_title": "nothing to key on"}),
            Some(whole_event_hash(
                r#"{"df_status":"critical","df_title":"nothing to key on"}"#,
            )),
        ),
        (
            json!({}),
            Some(whole_event_hash(r#"{"df_status":"critical"}"#)),
        ),
    ];
    for (fields, expected) in cases {
        let mut alert = fields.clone();
        alert["df_status"] = json!("critical");
        let t = translate(&event(alert), &Settings::default());
        match (&t.outcome, &expected) {
            (Outcome::Send(e), Some(key)) => assert_eq!(&e.dedup_key, key, "{fields}"),
            (other, _) => panic!("{fields}: {other:?}"),
        }
    }
    // Different tags or monitors never share a key.
    let key = |fields: Value| {
        guance_pagerduty::domain::translate::dedup_key(&event(fields), EventAction::Trigger)
    };
    assert_ne!(
        key(json!({"df_monitor_checker_id": "rul_1", "df_dimension_tags": "{\"host\":\"a\"}"})),
        key(json!({"df_monitor_checker_id": "rul_1", "df_dimension_tags": "{\"host\":\"b\"}"}))
    );
    assert_ne!(
        key(json!({"df_monitor_checker_id": "rul_1"})),
        key(json!({"df_monitor_checker_id": "rul_2"}))
    );
    // The whole-event key: the same fields in any order give one key; any change of
    // content gives another; a resolve never gets one (it would close nothing).
    let parsed = |body: &str| parse_body(body.as_bytes()).unwrap().remove(0);
    let whole = |body: &str| {
        guance_pagerduty::domain::translate::dedup_key(&parsed(body), EventAction::Trigger).unwrap()
    };
    assert_eq!(
        whole(r#"{"df_title":"Test","df_message":"This is a test","n":1}"#),
        whole(r#"{"n":1,"df_message":"This is a test","df_title":"Test"}"#)
    );
    assert_ne!(
        whole(r#"{"df_title":"Test","df_message":"This is a test"}"#),
        whole(r#"{"df_title":"Test","df_message":"This is another test"}"#)
    );
    assert_eq!(
        guance_pagerduty::domain::translate::dedup_key(
            &parsed(r#"{"df_title":"Test"}"#),
            EventAction::Resolve
        ),
        None
    );
}

/// The key an event without any identifier gets: `guance-` and the SHA-256 of `event:`
/// followed by the event's canonical JSON (sorted keys, no spaces).
fn whole_event_hash(canonical: &str) -> String {
    guance_pagerduty::domain::pagerduty::hashed_key(format!("event:{canonical}").as_bytes())
}

#[test]
fn summary_fallbacks_and_truncation_at_1024_characters() {
    let exactly = format!("{}{}", "磁盘".repeat(500), "🔥".repeat(24));
    assert_eq!(exactly.chars().count(), MAX_SUMMARY_CHARS);
    let over = format!("{exactly}😀");
    let cut = format!("{}{}…", "磁盘".repeat(500), "🔥".repeat(23));
    let cases: Vec<(Value, String)> = vec![
        (
            json!({"df_title": "Disk full", "df_message": "m"}),
            "Disk full".into(),
        ),
        (json!({"df_title": exactly.clone()}), exactly.clone()),
        (json!({"df_title": over}), cut.clone()),
        (
            json!({"df_title": "", "df_message": "\n  \n>等级：critical  \n>second"}),
            ">等级：critical".into(),
        ),
        (json!({"df_title": 42}), "42".into()),
        (
            json!({"df_title": ["x"], "df_message": "line"}),
            "line".into(),
        ),
        (
            json!({"df_monitor_checker_name": "CPU high"}),
            "Guance critical event from monitor CPU high".into(),
        ),
        (
            json!({"df_monitor_name": "默认"}),
            "Guance critical event from monitor 默认".into(),
        ),
        (json!({}), "Guance critical event".into()),
    ];
    for (fields, expected) in cases {
        let mut fields = fields;
        fields["df_status"] = json!("critical");
        fields["df_event_id"] = json!("e");
        let t = translate(&event(fields.clone()), &Settings::default());
        let summary = &sent(&t).payload.summary;
        assert_eq!(
            summary,
            &expected,
            "{}",
            &fields.to_string()[..80.min(fields.to_string().len())]
        );
        assert!(summary.chars().count() <= MAX_SUMMARY_CHARS);
    }
}

#[test]
fn source_class_group_and_component() {
    // (fields, source, component)
    let cases: &[(Value, &str, Option<&str>)] = &[
        (
            json!({"df_dimension_tags": "{\"host\":\"web-1\",\"zone\":\"a\"}"}),
            "web-1",
            Some("host=web-1,zone=a"),
        ),
        (
            json!({"df_dimension_tags": "{\"service\":\"db\",\"zone\":\"a\"}"}),
            "service=db,zone=a",
            Some("service=db,zone=a"),
        ),
        (
            json!({"df_dimension_tags": "{\"host\":\"  \"}", "df_workspace_name": "ws"}),
            "ws",
            None,
        ),
        (
            json!({"df_dimension_tags": "{}", "df_workspace_name": "ws"}),
            "ws",
            None,
        ),
        (
            json!({"df_dimension_tags": "oops", "workspace_name": "ws2"}),
            "ws2",
            None,
        ),
        (json!({}), "guance", None),
        (json!({"host": "top-level-only"}), "guance", None),
    ];
    for (fields, source, component) in cases {
        let mut fields = fields.clone();
        fields["df_status"] = json!("error");
        fields["df_event_id"] = json!("e");
        let t = translate(&event(fields.clone()), &Settings::default());
        let p = &sent(&t).payload;
        assert_eq!(p.source, *source, "{fields}");
        assert_eq!(p.component.as_deref(), *component, "{fields}");
    }
    let t = translate(&example_with(json!({})), &Settings::default());
    let p = &sent(&t).payload;
    assert_eq!(
        p.class.as_deref(),
        Some("实例名称为 {{host}} 磁盘使用率过高")
    );
    assert_eq!(p.group.as_deref(), Some("默认"));
}

#[test]
fn event_time_from_timestamp_or_date_in_seconds_or_milliseconds() {
    let cases: &[(Value, Option<&str>)] = &[
        (
            json!({"timestamp": 1693034940}),
            Some("2023-08-26T07:29:00Z"),
        ),
        (
            json!({"timestamp": 1693034940123_i64}),
            Some("2023-08-26T07:29:00.123Z"),
        ),
        (
            json!({"timestamp": "1693034940"}),
            Some("2023-08-26T07:29:00Z"),
        ),
        (
            json!({"timestamp": null, "date": 1693034940}),
            Some("2023-08-26T07:29:00Z"),
        ),
        (
            json!({"timestamp": null, "date": 1693034940000_i64}),
            Some("2023-08-26T07:29:00Z"),
        ),
        (
            json!({"timestamp": null, "date": "1693034940000"}),
            Some("2023-08-26T07:29:00Z"),
        ),
        (
            json!({"timestamp": "later", "date": 1693034940}),
            Some("2023-08-26T07:29:00Z"),
        ),
        (json!({"timestamp": null, "date": null}), None),
        (json!({"timestamp": -1, "date": null}), None),
        (
            json!({"timestamp": 99_999_999_999_999_i64, "date": null}),
            Some("5138-11-16T09:46:39.999Z"),
        ),
        (
            json!({"timestamp": 90_000_000_000_000_000_i64, "date": null}),
            None,
        ),
    ];
    for (changes, expected) in cases {
        let t = translate(&example_with(changes.clone()), &Settings::default());
        assert_eq!(
            sent(&t).payload.timestamp.as_deref(),
            *expected,
            "{changes}"
        );
        assert_eq!(
            t.warnings.contains(&Warning::UnusableTimestamp),
            expected.is_none(),
            "{changes}"
        );
    }
}

#[test]
fn optional_fields_missing_empty_or_of_the_wrong_type_never_reject() {
    let optional = [
        "Result",
        "date",
        "df_at_accounts",
        "df_channels",
        "df_check_range_end",
        "df_date_range",
        "df_event_link",
        "df_event_reason",
        "df_issue_duration",
        "df_label",
        "df_message",
        "df_monitor_checker",
        "df_monitor_checker_name",
        "df_monitor_name",
        "df_monitor_type",
        "df_site_name",
        "df_source",
        "df_sub_status",
        "df_workspace_name",
        "df_meta",
        "df_is_silent",
        "host",
        "workspace_name",
    ];
    let odd_values = [
        Value::Null,
        json!(""),
        json!("  "),
        json!(0),
        json!(-1.5),
        json!(true),
        json!([]),
        json!({}),
        json!([1, {"a": null}]),
        json!("{\"half\":"),
    ];
    for field in optional {
        for value in &odd_values {
            let t = translate(&example_with(json!({ field: value })), &Settings::default());
            let pd = sent(&t);
            assert_eq!(pd.event_action, EventAction::Trigger, "{field}={value}");
            assert_eq!(pd.payload.severity, Severity::Critical, "{field}={value}");
            assert_eq!(pd.dedup_key, "13713ac25e993a37d2ca5899e2a7bba6");
            assert!(!pd.payload.source.is_empty());
        }
    }
    // Number-typed Result and df_date_range as strings, df_is_silent as a string.
    let t = translate(
        &example_with(json!({"Result": "100", "df_date_range": "60", "df_is_silent": "false"})),
        &Settings::default(),
    );
    let cd = &sent(&t).payload.custom_details;
    assert_eq!(
        (&cd["Result"], &cd["df_date_range"]),
        (&json!("100"), &json!("60"))
    );
}

#[test]
fn event_link_is_linked_only_when_it_is_a_url() {
    let cases: &[(Value, bool)] = &[
        (json!("https://console.guance.com/x"), true),
        (json!("http://guance.local/x"), true),
        (json!("javascript:alert(1)"), false),
        (json!("ftp://x"), false),
        (json!("https://a b"), false),
        (json!(format!("https://x/{}", "a".repeat(5000))), false),
        (json!(7), false),
    ];
    for (link, linked) in cases {
        let t = translate(
            &example_with(json!({ "df_event_link": link })),
            &Settings::default(),
        );
        let pd = sent(&t);
        assert_eq!(pd.links.len() == 1, *linked, "{link}");
        assert_eq!(pd.client_url.is_some(), *linked, "{link}");
        assert_eq!(
            t.warnings.contains(&Warning::EventLinkIgnored),
            !linked,
            "{link}"
        );
    }
    let t = translate(
        &example_with(json!({ "df_event_link": null })),
        &Settings::default(),
    );
    assert!(sent(&t).links.is_empty() && t.warnings.is_empty());
}

#[test]
fn df_label_as_string_or_list_and_other_encoded_fields_decode() {
    let cases: &[(Value, Value)] = &[
        (json!("[]"), json!([])),
        (json!("[\"db\",\"prod\"]"), json!(["db", "prod"])),
        (json!(["db", "prod"]), json!(["db", "prod"])),
        (json!("db"), json!("db")),
        (json!("[broken"), json!("[broken")),
    ];
    for (label, expected) in cases {
        let t = translate(
            &example_with(json!({ "df_label": label, "df_meta": "{\"alert_info\":{\"k\":1}}" })),
            &Settings::default(),
        );
        let cd = &sent(&t).payload.custom_details;
        assert_eq!(&cd["df_label"], expected, "{label}");
        assert_eq!(cd["df_meta"], json!({"alert_info": {"k": 1}}));
        assert_eq!(cd["df_dimension_tags"], json!({"host": "share"}));
    }
}

#[test]
fn unknown_fields_reach_custom_details() {
    let t = translate(
        &example_with(json!({"team_owner": "dba", "cost_center": 42})),
        &Settings::default(),
    );
    let cd = &sent(&t).payload.custom_details;
    assert_eq!(
        (&cd["team_owner"], &cd["cost_center"]),
        (&json!("dba"), &json!(42))
    );
}

#[test]
fn huge_custom_details_shrink_to_fit_512000_bytes_and_say_so() {
    let t = translate(
        &example_with(json!({
            "df_message": "日志".repeat(150_000),
            "stack_trace": "x".repeat(300_000),
        })),
        &Settings::default(),
    );
    let pd = sent(&t);
    let body = pd.encode(&"R".repeat(MAX_ROUTING_KEY_CHARS)).unwrap();
    assert!(body.len() <= MAX_BODY_BYTES, "{}", body.len());
    let cd = &pd.payload.custom_details;
    assert!(
        !cd.contains_key("df_message"),
        "the largest field goes first"
    );
    assert!(cd.contains_key("stack_trace"), "what fits stays");
    assert_eq!(cd[OMITTED_DETAILS_KEY]["fields"], json!(["df_message"]));
    assert_eq!(
        t.warnings,
        [Warning::DetailsOmitted(vec!["df_message".into()])]
    );
    // The summary still comes from the title, untouched.
    assert_eq!(pd.payload.summary, "实例名称为 share 磁盘使用率过高");

    // A huge title is cut for the summary, and its full text still fits in the details.
    let t = translate(
        &example_with(json!({"df_title": "t".repeat(300_000)})),
        &Settings::default(),
    );
    let pd = sent(&t);
    assert_eq!(pd.payload.summary.chars().count(), MAX_SUMMARY_CHARS);
    assert!(pd.encode(&"R".repeat(32)).unwrap().len() <= MAX_BODY_BYTES);
}

#[test]
fn a_batch_translates_event_by_event() {
    let alert = example();
    let mut recovery = example();
    recovery.insert("df_status".into(), json!("ok"));
    let body = serde_json::to_vec(&json!([alert, recovery])).unwrap();
    let events = parse_body(&body).unwrap();
    let actions: Vec<_> = events
        .iter()
        .map(|e| sent(&translate(e, &Settings::default())).event_action)
        .collect();
    assert_eq!(actions, [EventAction::Trigger, EventAction::Resolve]);
}

/// The README's status table is what users read; it must say what the code does.
#[test]
fn readme_status_table_matches_the_code() {
    let readme = include_str!("../README.md");
    let table = readme
        .split("| Guance `df_status`")
        .nth(1)
        .expect("README has the status table");
    let mut rows = 0;
    for line in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (statuses, action, severity) = (cells[1], cells[2], cells[3]);
        let severity: Severity = severity
            .rsplit(['`', ' '])
            .find(|w| !w.is_empty())
            .unwrap()
            .parse()
            .unwrap_or_else(|e| panic!("README severity in {line}: {e}"));
        let action = if action.starts_with("resolve") {
            EventAction::Resolve
        } else {
            assert!(action.starts_with("trigger"), "{line}");
            EventAction::Trigger
        };
        let named: Vec<&str> = statuses.split('`').skip(1).step_by(2).collect();
        let named = if statuses.starts_with("missing") {
            vec!["", "no-such-status"]
        } else {
            named
        };
        assert!(!named.is_empty(), "{line}");
        for status in named {
            if status == "df_sub_status" {
                continue;
            }
            let t = translate(
                &example_with(json!({ "df_status": status, "df_sub_status": null })),
                &Settings::default(),
            );
            let pd = sent(&t);
            assert_eq!(
                (pd.event_action, pd.payload.severity),
                (action, severity),
                "{line}"
            );
            rows += 1;
        }
    }
    assert_eq!(rows, 17, "every status of the table is checked");
}
