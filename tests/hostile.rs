//! Hostile input through the real handler: every case gets a 4xx JSON error or a correct
//! event, none panics, none sends a partial request, none leaks a secret.

mod support;

use base64::Engine;
use serde_json::{json, Value};
use support::*;

/// What a case must produce: an error status and code, `sent` events accepted whole, or
/// `sent` events taken and `not_taken` answered with their reason.
enum Expect {
    Error(i64, &'static str),
    Sent(usize),
    Partial { sent: usize, not_taken: usize },
}

fn alert_body() -> Value {
    serde_json::from_str(event_file("alert.json")["body"].as_str().unwrap()).unwrap()
}

fn with_alert_fields(changes: Value) -> String {
    let mut body = alert_body();
    for (k, v) in changes.as_object().unwrap() {
        body[k] = v.clone();
    }
    body.to_string()
}

fn base64_body(event: Value, bytes: &[u8]) -> Value {
    let mut e = with_body(
        event,
        &base64::engine::general_purpose::STANDARD.encode(bytes),
    );
    e["isBase64Encoded"] = json!(true);
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs_get_a_clear_answer_and_lose_nothing() {
    let w = world().await;
    let app = w.app(AppOptions::default());
    let ok = || w.event("alert.json");
    let nested = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let many = format!("[{}]", vec![alert_body().to_string(); 10_000].join(","));
    let long_query = "q".repeat(100_000);
    let fifty_thousand_fields: serde_json::Map<String, Value> = (0..50_000)
        .map(|i| (format!("claim_{i}"), json!(i)))
        .collect();
    let mut many_fields = alert_body();
    many_fields
        .as_object_mut()
        .unwrap()
        .extend(fifty_thousand_fields);

    let cases: Vec<(&str, Value, Expect)> = vec![
        (
            "invalid UTF-8",
            base64_body(ok(), &[0x7b, 0xff, 0xfe, 0x7d]),
            Expect::Error(400, "bad_request"),
        ),
        (
            "invalid UTF-8 inside a string",
            base64_body(ok(), b"{\"df_title\":\"\xc3\x28\"}"),
            Expect::Error(400, "bad_request"),
        ),
        (
            "truncated JSON",
            with_body(ok(), &alert_body().to_string()[..200]),
            Expect::Error(400, "bad_request"),
        ),
        (
            "a 5 MiB body",
            with_body(ok(), &"x".repeat(5 << 20)),
            Expect::Error(413, "payload_too_large"),
        ),
        (
            "a 5 MiB body, base64",
            base64_body(ok(), &vec![b'x'; 5 << 20]),
            Expect::Error(413, "payload_too_large"),
        ),
        (
            "JSON nested 10,000 deep",
            with_body(ok(), &nested),
            Expect::Error(400, "bad_request"),
        ),
        (
            "an array of 10,000 events",
            with_body(ok(), &many),
            Expect::Error(413, "payload_too_large"),
        ),
        (
            "an array of 101 small events",
            with_body(ok(), &format!("[{}]", vec!["{}"; 101].join(","))),
            Expect::Error(400, "bad_request"),
        ),
        (
            "numbers where strings belong",
            with_body(
                ok(),
                &with_alert_fields(
                    json!({"df_title": 12345, "df_status": 3, "df_event_id": 7, "df_dimension_tags": 9}),
                ),
            ),
            Expect::Sent(1),
        ),
        (
            "a 1 MB title",
            with_body(
                ok(),
                &with_alert_fields(json!({"df_title": "t".repeat(1_000_000)})),
            ),
            Expect::Sent(1),
        ),
        (
            "NUL bytes",
            with_body(
                ok(),
                &with_alert_fields(json!({"df_title": "disk\u{0}full", "host": "\u{0}"})),
            ),
            Expect::Sent(1),
        ),
        (
            "right-to-left text and emoji",
            with_body(
                ok(),
                &with_alert_fields(
                    json!({"df_title": "\u{202e}القرص ممتلئ 🔥👩‍👩‍👧", "df_dimension_tags": "{\"host\":\"خادم-١\"}"}),
                ),
            ),
            Expect::Sent(1),
        ),
        (
            "duplicate keys",
            with_body(
                ok(),
                &alert_body()
                    .to_string()
                    .replacen('{', "{\"df_status\":\"ok\",", 1),
            ),
            Expect::Sent(1),
        ),
        (
            "base64 that does not decode",
            base64_body(ok(), b"")
                .pipe(|e| with_body(e, "!!!not-base64***"))
                .pipe(|mut e| {
                    e["isBase64Encoded"] = json!(true);
                    e
                }),
            Expect::Error(400, "bad_request"),
        ),
        (
            "a wrong content type",
            ok().pipe(|mut e| {
                e["headers"]["content-type"] = json!("text/plain");
                e
            }),
            Expect::Sent(1),
        ),
        (
            "no token",
            with_token(ok(), None),
            Expect::Error(401, "unauthorized"),
        ),
        (
            "the token in the wrong case",
            with_token(ok(), Some(&w.token.to_ascii_lowercase())),
            Expect::Error(401, "unauthorized"),
        ),
        (
            "an empty Bearer header",
            with_token(ok(), None).pipe(|mut e| {
                e["headers"]["authorization"] = json!("Bearer ");
                e
            }),
            Expect::Error(401, "unauthorized"),
        ),
        (
            "`..` in a route",
            with_path(ok(), "/../payments"),
            Expect::Error(404, "not_found"),
        ),
        (
            "%2F in a route",
            with_path(ok(), "/payments%2F..%2Fadmin"),
            Expect::Error(404, "not_found"),
        ),
        (
            "a 1,000-character route",
            with_path(ok(), &format!("/{}", "r".repeat(1000))),
            Expect::Error(404, "not_found"),
        ),
        (
            "a very long query string",
            with_token(ok(), Some(&long_query)),
            Expect::Error(401, "unauthorized"),
        ),
        (
            "an empty body",
            with_body(ok(), ""),
            Expect::Error(400, "bad_request"),
        ),
        (
            "a JSON null",
            with_body(ok(), "null"),
            Expect::Error(400, "bad_request"),
        ),
        (
            "an array with a string in it: the string is not taken, the event is",
            with_body(ok(), &format!("[{}, \"x\"]", alert_body())),
            Expect::Partial {
                sent: 1,
                not_taken: 1,
            },
        ),
        (
            "a byte-order mark",
            with_body(ok(), &format!("\u{feff}{}", alert_body())),
            Expect::Error(400, "bad_request"),
        ),
        (
            "a lone surrogate escape",
            with_body(ok(), r#"{"df_title":"\ud800","df_status":"critical"}"#),
            Expect::Error(400, "bad_request"),
        ),
        (
            "a number out of range",
            with_body(
                ok(),
                r#"{"df_status":"critical","df_event_id":"e","Result":1e400}"#,
            ),
            Expect::Error(400, "bad_request"),
        ),
        (
            "a recovery with nothing to match",
            with_body(ok(), r#"{"df_status":"ok","df_event_id":"e1"}"#),
            Expect::Error(400, "untranslatable_event"),
        ),
        (
            "a batch whose second event cannot be matched",
            with_body(
                ok(),
                &format!("[{}, {{\"df_status\":\"ok\"}}]", alert_body()),
            ),
            Expect::Partial {
                sent: 1,
                not_taken: 1,
            },
        ),
        (
            "PUT instead of POST",
            ok().pipe(|mut e| {
                e["requestContext"]["http"]["method"] = json!("PUT");
                e
            }),
            Expect::Error(405, "method_not_allowed"),
        ),
        (
            "control characters",
            with_body(
                ok(),
                &with_alert_fields(
                    json!({"df_title": "\u{7}\u{1b}[31mred\u{8}", "df_message": "\r\n\t"}),
                ),
            ),
            Expect::Sent(1),
        ),
        (
            "50,000 extra fields",
            with_body(ok(), &many_fields.to_string()),
            Expect::Sent(1),
        ),
        (
            "valid base64 of a valid event",
            base64_body(ok(), alert_body().to_string().as_bytes()),
            Expect::Sent(1),
        ),
    ];
    assert!(cases.len() >= 25);

    let mut answers = Vec::new();
    for (name, event, expect) in cases {
        let before = w.standin.accepted().len();
        let requests_before = w.standin.requests();
        let a = call(&app, &event).await;
        let accepted = w.standin.accepted().len() - before;
        match expect {
            Expect::Error(status, code) => {
                assert_eq!(
                    a.status,
                    status,
                    "{name}: {}",
                    &a.text[..a.text.len().min(300)]
                );
                assert_eq!(a.body["error"], code, "{name}");
                assert!(
                    !a.body["message"].as_str().unwrap_or("").is_empty(),
                    "{name}: says what was wrong"
                );
                assert_eq!(
                    w.standin.requests(),
                    requests_before,
                    "{name}: nothing was sent"
                );
            }
            Expect::Sent(n) => {
                assert_eq!(
                    a.status,
                    202,
                    "{name}: {}",
                    &a.text[..a.text.len().min(300)]
                );
                assert_eq!(accepted, n, "{name}: delivered whole");
                let results = a.body["results"].as_array().unwrap();
                assert!(results.iter().all(|r| r["outcome"] == "sent"), "{name}");
            }
            Expect::Partial { sent, not_taken } => {
                assert_eq!(a.status, 202, "{name}: {}", a.text);
                assert_eq!(accepted, sent, "{name}");
                assert_eq!(a.body["not_taken"], not_taken, "{name}");
                let results = a.body["results"].as_array().unwrap();
                let rejected = results.iter().filter(|r| r["outcome"] == "rejected");
                assert_eq!(rejected.clone().count(), not_taken, "{name}");
                assert!(
                    rejected.clone().all(|r| r["reason"].as_str().is_some()),
                    "{name}: each says why"
                );
            }
        }
        answers.push(a);
    }
    // Every accepted event was valid for PagerDuty, and none is oversized.
    for event in w.standin.accepted() {
        assert!(event.body.to_string().len() <= 512_000);
    }
    w.finish(&answers.iter().collect::<Vec<_>>());
}

/// `POST /pagerduty/webhook` under hostile input, with two-way on: what is not signed is
/// 401 and reads nothing; what is signed is never another 4xx (PagerDuty would drop it
/// and disable the subscription after three) and never calls anyone it need not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_pagerduty_webhooks_are_refused_or_ignored_and_never_4xx_when_signed() {
    let signing = secret_value(48);
    let api_token = secret_value(20);
    let w = world_with_secret(|key, token| {
        json!({"routing_key": key, "webhook_token": token,
               "pagerduty_webhook_secrets": [signing], "pagerduty_api_token": api_token})
        .to_string()
    })
    .await;
    w.standin.allow_api_token(&api_token);
    let app = w.app(AppOptions {
        api_url: Some(w.standin.api_url()),
        ..AppOptions::default()
    });
    let resolved = |changes: &dyn Fn(&mut Value)| {
        let mut body = support::pagerduty::webhook_delivery(
            "incident.resolved",
            "QHOSTILE1",
            Some("user_reference"),
            false,
        );
        changes(&mut body);
        body.to_string().into_bytes()
    };
    let event = |body: &[u8], signature: Option<String>| {
        let mut event = with_path(
            with_token(event_file("alert.json"), None),
            "/pagerduty/webhook",
        );
        event["headers"] = match signature {
            Some(signature) => json!({"x-pagerduty-signature": signature}),
            None => json!({}),
        };
        base64_body(event, body)
    };
    let signed = |body: &[u8]| event(body, Some(support::pagerduty::sign(body, &signing)));
    let valid = resolved(&|_| {});
    let good_signature = support::pagerduty::sign(&valid, &signing);
    let many_entries = vec!["v1=".to_owned() + &"0".repeat(64); 2_000].join(",");
    let nested = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));

    // (case, request, status, error code or ignore reason)
    let cases: Vec<(&str, Value, i64, &str)> = vec![
        ("unsigned", event(&valid, None), 401, "bad_signature"),
        (
            "unsigned, 5 MiB",
            event(&vec![b'{'; 5 << 20], None),
            401,
            "bad_signature",
        ),
        (
            "2,000 wrong v1 entries",
            event(&valid, Some(many_entries)),
            401,
            "bad_signature",
        ),
        (
            "a signature of odd hex",
            event(&valid, Some("v1=abc".into())),
            401,
            "bad_signature",
        ),
        (
            "a signature that is not hex",
            event(&valid, Some(format!("v1={}", "zz".repeat(32)))),
            401,
            "bad_signature",
        ),
        (
            "the signature of another body",
            event(b"{}", Some(good_signature.clone())),
            401,
            "bad_signature",
        ),
        ("signed, empty", signed(b""), 200, "unreadable"),
        (
            "signed, nested 10,000 deep",
            signed(nested.as_bytes()),
            200,
            "unreadable",
        ),
        (
            "signed, invalid UTF-8",
            signed(&[0x7b, 0xff, 0xfe, 0x7d]),
            200,
            "unreadable",
        ),
        (
            "signed, event a string",
            signed(br#"{"event": "incident.resolved"}"#),
            200,
            "unreadable",
        ),
        (
            "signed, an event type of 100,000 characters",
            signed(&resolved(&|b| {
                b["event"]["event_type"] = json!("x".repeat(100_000))
            })),
            200,
            "other_event_type",
        ),
        (
            "signed, an agent type of 100,000 characters",
            signed(&resolved(&|b| {
                b["event"]["agent"]["type"] = json!("y".repeat(100_000))
            })),
            200,
            "not_a_person",
        ),
        (
            "signed, an agent of the wrong type",
            signed(&resolved(&|b| b["event"]["agent"] = json!(7))),
            200,
            "unreadable",
        ),
        (
            "signed, an incident id that is a number",
            signed(&resolved(&|b| b["event"]["data"]["id"] = json!(7))),
            200,
            "no_incident",
        ),
        (
            "signed, an incident id with a path",
            signed(&resolved(&|b| {
                b["event"]["data"]["id"] = json!("Q1/../../users")
            })),
            200,
            "no_incident",
        ),
        (
            "signed, an incident id with a query",
            signed(&resolved(&|b| {
                b["event"]["data"]["id"] = json!("Q1?offset=5")
            })),
            200,
            "no_incident",
        ),
        (
            "signed, data a list",
            signed(&resolved(&|b| b["event"]["data"] = json!([1]))),
            200,
            "no_incident",
        ),
        (
            "signed, an incident PagerDuty does not have",
            signed(&valid),
            200,
            "incident_unreadable",
        ),
    ];
    let mut answers = Vec::new();
    for (case, request, status, code) in cases {
        let rest_before = w.standin.rest_requests().len();
        let a = call(&app, &request).await;
        assert_eq!(
            a.status,
            status,
            "{case}: {}",
            &a.text[..a.text.len().min(300)]
        );
        assert!(
            a.body["error"] == code || a.body["reason"] == code,
            "{case}: {}",
            &a.text[..a.text.len().min(300)]
        );
        assert!(
            a.text.len() < 2_000,
            "{case}: the answer does not echo the input"
        );
        let called = w.standin.rest_requests().len() - rest_before;
        assert_eq!(
            called,
            usize::from(code == "incident_unreadable"),
            "{case}: REST calls"
        );
        answers.push(a);
    }
    assert!(
        captured_logs().lines().all(|l| l.len() < 20_000),
        "no log line carries the input whole"
    );
    w.finish(&answers.iter().collect::<Vec<_>>());
}
