//! The Guance OpenAPI stand-in itself: it must hold a client to what Guance documents
//! (CONTRACT.md section 6), or tests against it prove nothing.

use crate::support::guance::*;
use serde_json::Value;
use std::time::Duration;

const WORKSPACE: &str = "wksp_968577392a1c4714a464cd2f6ee42a9c";
const OTHER: &str = "wksp_0123456789abcdef0123456789abcdef";
const KEY: &str = "key-one";
const SECOND_KEY: &str = "key-two";
const OTHER_KEY: &str = "key-other";

async fn standin() -> StandIn {
    let standin = StandIn::start().await;
    standin.add_workspace(WORKSPACE, KEY);
    standin.add_workspace(WORKSPACE, SECOND_KEY);
    standin.add_workspace(OTHER, OTHER_KEY);
    standin
}

struct Answer {
    status: u16,
    body: Value,
}

impl Answer {
    fn error_code(&self) -> &str {
        self.body["errorCode"].as_str().unwrap()
    }
}

/// One request; checks the envelope every answer must have.
async fn call(method: reqwest::Method, url: &str, key: Option<&str>) -> Answer {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(key) = key {
        request = request.header("DF-API-KEY", key);
    }
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).expect("JSON");
    assert_eq!(body["code"], status, "code mirrors the status: {body}");
    assert_eq!(body["success"], (200..300).contains(&status), "{body}");
    assert!(body["errorCode"].is_string() && body["message"].is_string());
    let trace = body["traceId"].as_str().expect("a traceId");
    assert!(trace.len() == 32 && trace.chars().all(|c| c.is_ascii_hexdigit()));
    Answer { status, body }
}

fn restore_url(standin: &StandIn, reference: &str) -> String {
    format!(
        "{}/api/v1/keyevent/restore?monitorCheckerEventRef={reference}",
        standin.openapi_url()
    )
}

async fn restore(standin: &StandIn, key: &str, reference: &str) -> Answer {
    call(
        reqwest::Method::GET,
        &restore_url(standin, reference),
        Some(key),
    )
    .await
}

#[tokio::test]
async fn a_restore_answers_the_success_envelope_and_repeats_are_recorded() {
    let standin = standin().await;
    let answer = restore(&standin, KEY, "13713ac25e993a37d2ca5899e2a7bba6").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["content"], true);
    assert_eq!(answer.body["errorCode"], "");
    assert_eq!(answer.body["message"], "");
    // Again with the workspace's other key: the same ref, idempotent, a repeat.
    let again = restore(&standin, SECOND_KEY, "13713ac25e993a37d2ca5899e2a7bba6").await;
    assert_eq!(
        (again.status, &again.body["content"]),
        (200, &Value::Bool(true))
    );
    assert_ne!(answer.body["traceId"], again.body["traceId"]);
    // The same ref in another workspace is another event.
    restore(&standin, OTHER_KEY, "13713ac25e993a37d2ca5899e2a7bba6").await;
    // Percent-encoding is decoded.
    restore(&standin, KEY, "a%2Fb+c").await;

    let restores = standin.restores();
    let seen: Vec<(&str, &str, bool)> = restores
        .iter()
        .map(|r| {
            let (w, m) = (&r.workspace_uuid, &r.monitor_checker_event_ref);
            (w.as_str(), m.as_str(), r.repeat)
        })
        .collect();
    assert_eq!(
        seen,
        [
            (WORKSPACE, "13713ac25e993a37d2ca5899e2a7bba6", false),
            (WORKSPACE, "13713ac25e993a37d2ca5899e2a7bba6", true),
            (OTHER, "13713ac25e993a37d2ca5899e2a7bba6", false),
            (WORKSPACE, "a/b c", false),
        ]
    );
    assert!(standin.refused().is_empty());
    assert_eq!(standin.requests(), 4);

    // The control endpoint lists them, never a key.
    let listed = reqwest::get(format!("{}/_restores", standin.openapi_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let list: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 4);
    assert_eq!(list[1]["repeat"], true);
    assert_eq!(list[0]["workspace_uuid"], WORKSPACE);
    for key in [KEY, SECOND_KEY, OTHER_KEY] {
        assert!(!listed.contains(key));
    }
    assert_eq!(
        standin.requests(),
        4,
        "control endpoints are not API requests"
    );
}

#[tokio::test]
async fn a_missing_or_unknown_key_is_refused_403_invalid_api_key() {
    let standin = standin().await;
    let url = restore_url(&standin, "ref");
    for key in [None, Some(""), Some("not-a-key"), Some("KEY-ONE")] {
        let answer = call(reqwest::Method::GET, &url, key).await;
        assert_eq!(answer.status, 403, "{key:?}");
        assert_eq!(answer.error_code(), INVALID_API_KEY);
        assert_eq!(answer.body["success"], false);
    }
    assert!(standin.restores().is_empty());
    assert_eq!(
        standin.refused(),
        vec![(403, INVALID_API_KEY.to_owned()); 4]
    );
}

#[tokio::test]
async fn only_get_on_the_restore_path_with_a_ref() {
    let standin = standin().await;
    let base = standin.openapi_url();
    let cases = [
        (
            reqwest::Method::GET,
            format!("{base}/api/v1/keyevent/restores?monitorCheckerEventRef=r"),
            404,
            NOT_FOUND,
        ),
        (reqwest::Method::GET, format!("{base}/"), 404, NOT_FOUND),
        (
            reqwest::Method::POST,
            restore_url(&standin, "r"),
            405,
            METHOD_NOT_ALLOWED,
        ),
        (
            reqwest::Method::DELETE,
            restore_url(&standin, "r"),
            405,
            METHOD_NOT_ALLOWED,
        ),
        (
            reqwest::Method::GET,
            format!("{base}/api/v1/keyevent/restore"),
            400,
            PARAM_ERROR,
        ),
        (
            reqwest::Method::GET,
            restore_url(&standin, ""),
            400,
            PARAM_ERROR,
        ),
        (
            reqwest::Method::GET,
            format!("{base}/api/v1/keyevent/restore?monitorCheckerEventRef"),
            400,
            PARAM_ERROR,
        ),
        (
            reqwest::Method::GET,
            format!("{base}/api/v1/keyevent/restore?ref=r"),
            400,
            PARAM_ERROR,
        ),
        (
            reqwest::Method::GET,
            format!(
                "{base}/api/v1/keyevent/restore?monitorCheckerEventRef=a&monitorCheckerEventRef=b"
            ),
            400,
            PARAM_ERROR,
        ),
        (
            reqwest::Method::GET,
            restore_url(&standin, "bad%zz"),
            400,
            PARAM_ERROR,
        ),
    ];
    for (method, url, status, code) in cases {
        let answer = call(method.clone(), &url, Some(KEY)).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (status, code),
            "{method} {url}"
        );
    }
    assert!(standin.restores().is_empty());
    assert_eq!(standin.requests(), 10);
}

#[tokio::test]
async fn the_21st_request_of_a_minute_from_one_key_is_refused_401() {
    let standin = standin().await;
    for n in 0..20 {
        let answer = restore(&standin, KEY, &format!("ref-{n}")).await;
        assert_eq!(answer.status, 200, "request {n}");
    }
    let limited = restore(&standin, KEY, "ref-20").await;
    assert_eq!(limited.status, 401, "Guance answers 401, not 429");
    assert_eq!(limited.error_code(), KEY_LIMITED);
    // The workspace's other key has its own allowance.
    assert_eq!(restore(&standin, SECOND_KEY, "ref-20").await.status, 200);
    assert_eq!(
        restore(&standin, KEY, "ref-21").await.error_code(),
        KEY_LIMITED
    );
    // Rate-limited requests are not restores.
    let restores = standin.restores();
    assert_eq!(restores.len(), 21);
    assert!(restores.iter().all(|r| !r.repeat));
    assert_eq!(standin.refused(), vec![(401, KEY_LIMITED.to_owned()); 2]);
}

#[tokio::test]
async fn the_window_slides() {
    let standin = standin().await;
    standin.set_limits(2, 100, Duration::from_millis(400));
    assert_eq!(restore(&standin, KEY, "a").await.status, 200);
    assert_eq!(restore(&standin, KEY, "b").await.status, 200);
    assert_eq!(restore(&standin, KEY, "c").await.error_code(), KEY_LIMITED);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(restore(&standin, KEY, "c").await.status, 200);
    assert_eq!(standin.restores().len(), 3);
}

#[tokio::test]
async fn the_workspace_limit_spans_its_keys_and_only_its_own() {
    let standin = standin().await;
    standin.set_limits(100, 3, Duration::from_secs(60));
    for (n, key) in [KEY, SECOND_KEY, KEY].into_iter().enumerate() {
        assert_eq!(restore(&standin, key, &format!("r{n}")).await.status, 200);
    }
    for key in [SECOND_KEY, KEY] {
        let answer = restore(&standin, key, "r3").await;
        assert_eq!(answer.status, 401);
        assert_eq!(answer.error_code(), WORKSPACE_LIMITED);
    }
    // Another workspace is not limited by this one.
    assert_eq!(restore(&standin, OTHER_KEY, "r3").await.status, 200);
    assert_eq!(standin.restores().len(), 4);
}

#[tokio::test]
async fn an_unknown_ref_is_refused_once_refs_are_registered() {
    let standin = standin().await;
    standin.add_event(WORKSPACE, "known");
    assert_eq!(restore(&standin, KEY, "known").await.status, 200);
    let unknown = restore(&standin, KEY, "unknown").await;
    assert_eq!(
        (unknown.status, unknown.error_code()),
        (400, KEYEVENT_NOT_FOUND)
    );
    // A workspace without registered refs restores any.
    assert_eq!(restore(&standin, OTHER_KEY, "unknown").await.status, 200);
    let refs: Vec<String> = standin
        .restores()
        .into_iter()
        .map(|r| r.monitor_checker_event_ref)
        .collect();
    assert_eq!(refs, ["known", "unknown"]);
    assert_eq!(standin.refused(), [(400, KEYEVENT_NOT_FOUND.to_owned())]);
}

#[tokio::test]
async fn scripted_failures_come_first_then_service_resumes() {
    let standin = standin().await;
    standin.script([
        Fault::Status(500),
        Fault::Pass,
        Fault::Error(503, "ft.ServiceUnavailable"),
    ]);
    let failed = restore(&standin, KEY, "r").await;
    assert_eq!((failed.status, failed.error_code()), (500, INTERNAL_ERROR));
    assert_eq!(restore(&standin, KEY, "r").await.status, 200);
    let unavailable = restore(&standin, KEY, "r").await;
    assert_eq!(
        (unavailable.status, unavailable.error_code()),
        (503, "ft.ServiceUnavailable")
    );
    assert_eq!(restore(&standin, KEY, "r").await.status, 200);
    assert_eq!(standin.restores().len(), 2);
    assert_eq!(
        standin.refused(),
        [
            (500, INTERNAL_ERROR.to_owned()),
            (503, "ft.ServiceUnavailable".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_stall_never_answers_and_a_drop_closes() {
    let standin = standin().await;
    standin.script([Fault::Stall(Duration::from_secs(5)), Fault::Drop]);
    let client = reqwest::Client::new();
    let url = restore_url(&standin, "r");
    let stalled = client
        .get(&url)
        .header("DF-API-KEY", KEY)
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .expect_err("no answer within the stall");
    assert!(stalled.is_timeout(), "{stalled:?}");
    let dropped = client
        .get(&url)
        .header("DF-API-KEY", KEY)
        .send()
        .await
        .expect_err("the connection is closed");
    assert!(!dropped.is_timeout(), "{dropped:?}");
    assert_eq!(restore(&standin, KEY, "r").await.status, 200);
    assert_eq!(standin.restores().len(), 1);
    let statuses: Vec<Option<u16>> = standin.seen().iter().map(|s| s.status).collect();
    assert_eq!(statuses, [None, None, Some(200)]);
    assert!(standin.refused().is_empty());
}
