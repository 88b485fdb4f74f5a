//! The Guance OpenAPI stand-in itself: it must hold a client to what Guance documents
//! (CONTRACT.md section 6), or tests against it prove nothing.

use crate::support::guance::*;
use serde_json::{json, Value};
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

// ---------------------------------------------------------------------------------------
// Notification objects and alert policies (`make setup`).

const BRIDGE_URL: &str = "https://abc.lambda-url.us-east-1.on.aws/guance?token=t0k3n";

/// A POST with a JSON body, as Guance's pages show (`Content-Type: application/json`).
async fn post(url: &str, key: Option<&str>, body: &Value) -> Answer {
    post_raw(url, key, "application/json;charset=UTF-8", body.to_string()).await
}

async fn post_raw(url: &str, key: Option<&str>, content_type: &str, body: String) -> Answer {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body);
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

async fn get(standin: &StandIn, key: &str, path_and_query: &str) -> Answer {
    call(
        reqwest::Method::GET,
        &format!("{}{path_and_query}", standin.openapi_url()),
        Some(key),
    )
    .await
}

fn url(standin: &StandIn, path: &str) -> String {
    format!("{}{path}", standin.openapi_url())
}

fn webhook(name: &str, url: &str) -> Value {
    json!({"type": "HTTPRequest", "name": name, "optSet": {"url": url}})
}

async fn create(standin: &StandIn, key: &str, body: &Value) -> Answer {
    post(&url(standin, NOTIFY_OBJECT_CREATE_PATH), Some(key), body).await
}

fn is_uuid(text: &str, prefix: &str) -> bool {
    text.strip_prefix(prefix)
        .is_some_and(|hex| hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Five levels to a notification object, as `make setup` attaches one.
fn paging_alert_opt(notify: &str) -> Value {
    json!({
        "alertTarget": [{
            "name": "PagerDuty",
            "targets": [{"status": "critical,error,warning,nodata,info", "to": [notify]}],
        }],
        "silentTimeout": 21600,
        "aggInterval": 0,
        "aggFields": [],
    })
}

#[tokio::test]
async fn a_webhook_object_is_created_in_the_keys_workspace_and_found_by_list() {
    let standin = standin().await;
    let created = create(&standin, KEY, &webhook("PagerDuty bridge", BRIDGE_URL)).await;
    assert_eq!(created.status, 200, "{}", created.body);
    let object = &created.body["content"];
    let uuid = object["uuid"].as_str().unwrap().to_owned();
    assert!(is_uuid(&uuid, "notify_"), "{uuid}");
    assert_eq!(object["workspaceUUID"], WORKSPACE);
    assert_eq!(object["type"], "HTTPRequest");
    assert_eq!(object["name"], "PagerDuty bridge");
    assert_eq!(object["optSet"]["url"], BRIDGE_URL);

    // Found by a search on its name (a substring, any case), with Guance's paging.
    let listed = get(
        &standin,
        SECOND_KEY,
        "/api/v1/notify_object/list?search=pagerduty%20BRIDGE&pageIndex=1&pageSize=10",
    )
    .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["content"]["data"][0]["uuid"], uuid.as_str());
    assert_eq!(listed.body["content"]["declaration"], json!({}));
    assert_eq!(
        listed.body["pageInfo"],
        json!({"count": 1, "pageIndex": 1, "pageSize": 10, "totalCount": 1})
    );
    // Another workspace neither sees it nor can read it.
    let other = get(
        &standin,
        OTHER_KEY,
        "/api/v1/notify_object/list?search=PagerDuty&pageIndex=1&pageSize=10",
    )
    .await;
    assert_eq!(other.body["content"]["data"], json!([]));
    assert_eq!(other.body["pageInfo"]["totalCount"], 0);
    let get_url = format!("/api/v1/notify_object/get?notifyObjectUUID={uuid}");
    let theirs = get(&standin, OTHER_KEY, &get_url).await;
    assert_eq!(
        (theirs.status, theirs.error_code()),
        (404, OBJECT_NOT_FOUND)
    );
    let ours = get(&standin, KEY, &get_url).await;
    assert_eq!(ours.body["content"]["optSet"]["url"], BRIDGE_URL);

    let objects = standin.notify_objects(WORKSPACE);
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0]["uuid"], uuid.as_str());
    assert!(standin.notify_objects(OTHER).is_empty());

    // Every request is recorded with its workspace, and a POST with its body; never a key.
    let seen = standin.seen();
    let first = &seen[0];
    assert_eq!(
        (first.method.as_str(), first.target.as_str()),
        ("POST", NOTIFY_OBJECT_CREATE_PATH)
    );
    assert_eq!(first.workspace_uuid.as_deref(), Some(WORKSPACE));
    assert_eq!(first.body.as_ref().unwrap()["optSet"]["url"], BRIDGE_URL);
    assert_eq!(first.status, Some(200));
    assert_eq!(
        seen[1].target,
        "/api/v1/notify_object/list?search=pagerduty%20BRIDGE&pageIndex=1&pageSize=10"
    );
    assert_eq!(seen[1].body, None);
    assert_eq!(seen[2].workspace_uuid.as_deref(), Some(OTHER));
    assert_eq!(standin.requests(), 5);
}

#[tokio::test]
async fn a_create_guance_would_refuse_is_refused_400_and_makes_nothing() {
    let standin = standin().await;
    // More requests than a key may make in a minute (20): this test is about shapes.
    standin.set_limits(1000, 1000, Duration::from_secs(60));
    let cases = [
        (
            "no name",
            json!({"type": "HTTPRequest", "optSet": {"url": BRIDGE_URL}}),
        ),
        (
            "null name",
            json!({"type": "HTTPRequest", "name": null, "optSet": {"url": BRIDGE_URL}}),
        ),
        ("empty name", webhook("  ", BRIDGE_URL)),
        (
            "name a number",
            json!({"type": "HTTPRequest", "name": 7, "optSet": {"url": BRIDGE_URL}}),
        ),
        (
            "no type",
            json!({"name": "n", "optSet": {"url": BRIDGE_URL}}),
        ),
        (
            "unknown type",
            json!({"type": "webhook", "name": "n", "optSet": {"url": BRIDGE_URL}}),
        ),
        (
            "type in another case",
            json!({"type": "httprequest", "name": "n", "optSet": {"url": BRIDGE_URL}}),
        ),
        ("no optSet", json!({"type": "HTTPRequest", "name": "n"})),
        (
            "no url",
            json!({"type": "HTTPRequest", "name": "n", "optSet": {}}),
        ),
        (
            "url not a string",
            json!({"type": "HTTPRequest", "name": "n", "optSet": {"url": ["x"]}}),
        ),
        ("url not http", webhook("n", "ftp://example.com/x")),
        ("url without a host", webhook("n", "https:///x")),
        (
            "optSet not an object",
            json!({"type": "HTTPRequest", "name": "n", "optSet": "https://x"}),
        ),
        (
            "an undocumented optSet key",
            json!({"type": "HTTPRequest", "name": "n", "optSet": {"url": BRIDGE_URL, "method": "POST"}}),
        ),
        (
            "an undocumented field",
            json!({"type": "HTTPRequest", "name": "n", "optSet": {"url": BRIDGE_URL}, "workspaceUUID": WORKSPACE}),
        ),
        (
            "openPermissionSet not a boolean",
            json!({"type": "HTTPRequest", "name": "n", "optSet": {"url": BRIDGE_URL}, "openPermissionSet": "yes"}),
        ),
        (
            "a robot without its secret",
            json!({"type": "dingTalkRobot", "name": "n", "optSet": {"webhook": "https://x"}}),
        ),
        ("an array", json!([webhook("n", BRIDGE_URL)])),
    ];
    for (case, body) in cases {
        let answer = create(&standin, KEY, &body).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (400, PARAM_ERROR),
            "{case}: {}",
            answer.body
        );
        assert_eq!(answer.body["success"], false);
    }
    let url = url(&standin, NOTIFY_OBJECT_CREATE_PATH);
    let body = webhook("n", BRIDGE_URL).to_string();
    for (case, content_type, body) in [
        ("not JSON", "application/json", "{\"type\":".to_owned()),
        ("not said to be JSON", "text/plain", body.clone()),
    ] {
        let answer = post_raw(&url, Some(KEY), content_type, body).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (400, PARAM_ERROR),
            "{case}"
        );
    }
    assert!(standin.notify_objects(WORKSPACE).is_empty());

    // The key is checked first, and GET is not create.
    let unkeyed = post(&url, None, &webhook("n", BRIDGE_URL)).await;
    assert_eq!(
        (unkeyed.status, unkeyed.error_code()),
        (403, INVALID_API_KEY)
    );
    let got = call(reqwest::Method::GET, &url, Some(KEY)).await;
    assert_eq!((got.status, got.error_code()), (405, METHOD_NOT_ALLOWED));

    // Other documented types and fields are taken.
    for body in [
        json!({"type": "HTTPRequest", "name": "h", "optSet": {"url": "http://10.0.0.1:8080/x", "headersConfig": {"isOpen": true, "items": [{"key": "X-A", "value": "b"}]}}, "openPermissionSet": false, "permissionSet": ["wsAdmin"]}),
        json!({"type": "simpleHTTPRequest", "name": "s", "optSet": {"url": "https://x"}}),
        json!({"type": "mailGroup", "name": "m", "optSet": {"to": ["acnt_1"]}}),
    ] {
        assert_eq!(create(&standin, KEY, &body).await.status, 200, "{body}");
    }
    assert_eq!(standin.notify_objects(WORKSPACE).len(), 3);
}

#[tokio::test]
async fn lists_page_as_documented_and_refuse_bad_paging() {
    let standin = standin().await;
    // More requests than a key may make in a minute (20): this test is about shapes.
    standin.set_limits(1000, 1000, Duration::from_secs(60));
    for name in ["bridge a", "bridge b", "other", "Bridge c"] {
        create(&standin, KEY, &webhook(name, BRIDGE_URL)).await;
    }
    standin.add_notify_object(OTHER, "HTTPRequest", "bridge z", json!({"url": BRIDGE_URL}));
    let page = |query: &str| {
        let standin = &standin;
        let query = query.to_owned();
        async move { get(standin, KEY, &format!("{NOTIFY_OBJECT_LIST_PATH}?{query}")).await }
    };
    let names = |answer: &Answer| -> Vec<String> {
        answer.body["content"]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_owned())
            .collect()
    };
    // Newest first; pageIndex counts from 1.
    let second = page("search=bridge&pageIndex=2&pageSize=2").await;
    assert_eq!(names(&second), ["bridge a"]);
    assert_eq!(
        second.body["pageInfo"],
        json!({"count": 1, "pageIndex": 2, "pageSize": 2, "totalCount": 3})
    );
    assert_eq!(
        names(&page("search=&pageIndex=1&pageSize=100").await).len(),
        4
    );
    assert_eq!(names(&page("pageIndex=1&pageSize=100").await).len(), 4);
    assert!(names(&page("search=bridge&pageIndex=3&pageSize=2").await).is_empty());
    assert_eq!(
        names(&page("search=Bridge+C&pageIndex=1&pageSize=5").await),
        ["Bridge c"]
    );

    for query in [
        "search=bridge",
        "search=bridge&pageSize=10",
        "search=bridge&pageIndex=1",
        "pageIndex=0&pageSize=10",
        "pageIndex=1&pageSize=0",
        "pageIndex=1&pageSize=101",
        "pageIndex=one&pageSize=10",
        "pageIndex=1.0&pageSize=10",
        "pageIndex=1&pageSize=10&pageSize=20",
        "pageIndex=1&pageSize=10&type=HTTPRequest",
        "pageIndex=1&pageSize=10&search=%zz",
    ] {
        for path in [NOTIFY_OBJECT_LIST_PATH, ALERT_POLICY_LIST_PATH] {
            let answer = get(&standin, KEY, &format!("{path}?{query}")).await;
            assert_eq!(
                (answer.status, answer.error_code()),
                (400, PARAM_ERROR),
                "{path}?{query}"
            );
        }
    }
    let post_list = post(
        &url(&standin, NOTIFY_OBJECT_LIST_PATH),
        Some(KEY),
        &json!({}),
    )
    .await;
    assert_eq!(
        (post_list.status, post_list.error_code()),
        (405, METHOD_NOT_ALLOWED)
    );
}

#[tokio::test]
async fn a_notification_object_is_modified_in_place_and_only_as_documented() {
    let standin = standin().await;
    let created = create(&standin, KEY, &webhook("bridge", BRIDGE_URL)).await;
    let uuid = created.body["content"]["uuid"].as_str().unwrap().to_owned();
    let modify = url(&standin, NOTIFY_OBJECT_MODIFY_PATH);
    let new_url = "https://new.lambda-url.us-east-1.on.aws/guance?token=other";
    let answer = post(
        &modify,
        Some(SECOND_KEY),
        &json!({"notifyObjectUUID": uuid, "optSet": {"url": new_url}}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["content"]["optSet"]["url"], new_url);
    assert_eq!(answer.body["content"]["name"], "bridge");
    assert_eq!(
        standin.notify_objects(WORKSPACE)[0]["optSet"]["url"],
        new_url
    );

    let cases = [
        (json!({"optSet": {"url": BRIDGE_URL}}), 400, PARAM_ERROR),
        (
            json!({"notifyObjectUUID": uuid, "optSet": {}}),
            400,
            PARAM_ERROR,
        ),
        (
            json!({"notifyObjectUUID": uuid, "optSet": {"url": "nope"}}),
            400,
            PARAM_ERROR,
        ),
        (
            json!({"notifyObjectUUID": uuid, "type": "sms"}),
            400,
            PARAM_ERROR,
        ),
        (
            json!({"notifyObjectUUID": uuid, "name": ""}),
            400,
            PARAM_ERROR,
        ),
        (
            json!({"notifyObjectUUID": "notify_00000000000000000000000000000000", "name": "x"}),
            404,
            OBJECT_NOT_FOUND,
        ),
    ];
    for (body, status, code) in cases {
        let answer = post(&modify, Some(KEY), &body).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (status, code),
            "{body}"
        );
    }
    // Another workspace's key cannot touch it.
    let theirs = post(
        &modify,
        Some(OTHER_KEY),
        &json!({"notifyObjectUUID": uuid, "name": "taken"}),
    )
    .await;
    assert_eq!(
        (theirs.status, theirs.error_code()),
        (404, OBJECT_NOT_FOUND)
    );
    let object = &standin.notify_objects(WORKSPACE)[0];
    assert_eq!(
        (object["name"].as_str(), object["optSet"]["url"].as_str()),
        (Some("bridge"), Some(new_url))
    );
}

#[tokio::test]
async fn an_alert_policy_is_listed_read_and_given_a_webhook_at_every_paging_level() {
    let standin = standin().await;
    let policy = standin.add_alert_policy(WORKSPACE, "Production");
    assert!(is_uuid(&policy, "altpl_"), "{policy}");
    standin.add_alert_policy(WORKSPACE, "Staging");
    let theirs = standin.add_alert_policy(OTHER, "Production");

    let listed = get(
        &standin,
        KEY,
        &format!("{ALERT_POLICY_LIST_PATH}?search=production&pageIndex=1&pageSize=100"),
    )
    .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let data = listed.body["content"]["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "only this workspace's: {data:?}");
    assert_eq!(data[0]["uuid"], policy.as_str());
    assert_eq!(data[0]["name"], "Production");
    assert_eq!(data[0]["ruleTimezone"], "Asia/Shanghai");
    assert_eq!(data[0]["alertOpt"]["alertTarget"], json!([]));
    assert_eq!(listed.body["pageInfo"]["totalCount"], 1);

    let notify = create(&standin, KEY, &webhook("PagerDuty bridge", BRIDGE_URL)).await;
    let notify = notify.body["content"]["uuid"].as_str().unwrap().to_owned();
    let modify = url(&standin, &alert_policy_path(&policy, "modify"));
    let body = json!({
        "name": "Production",
        "ruleTimezone": "Asia/Shanghai",
        "alertOpt": paging_alert_opt(&notify),
    });
    let answer = post(&modify, Some(KEY), &body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["content"]["uuid"], policy.as_str());
    assert_eq!(
        answer.body["content"]["alertOpt"],
        paging_alert_opt(&notify)
    );

    let stored = standin.alert_policy(&policy);
    assert_eq!(
        stored["alertOpt"]["alertTarget"][0]["targets"][0]["to"][0],
        notify.as_str()
    );
    assert_eq!(stored["workspaceUUID"], WORKSPACE);
    // The other workspace's policy of the same name is untouched.
    assert_eq!(
        standin.alert_policy(&theirs)["alertOpt"]["alertTarget"],
        json!([])
    );
    assert_eq!(standin.alert_policy("altpl_none"), Value::Null);

    // get names the notification objects it targets.
    let read = get(&standin, KEY, &alert_policy_path(&policy, "get")).await;
    assert_eq!(read.status, 200);
    assert_eq!(
        read.body["content"]["notifyObjectName"][&notify],
        "PagerDuty bridge"
    );
    assert_eq!(read.body["content"]["alertOpt"], paging_alert_opt(&notify));
    let cross = get(&standin, OTHER_KEY, &alert_policy_path(&policy, "get")).await;
    assert_eq!((cross.status, cross.error_code()), (404, OBJECT_NOT_FOUND));

    // modify_v2 takes the same body and v2's own fields; a level per target works too.
    let mut v2 = body.clone();
    v2["checkerUUIDs"] = json!(["rule_1"]);
    v2["alertOpt"]["alertTarget"][0]["targets"] =
        json!(["critical", "error", "warning", "nodata", "info"]
            .iter()
            .map(|level| json!({"status": level, "to": [notify]}))
            .collect::<Vec<_>>());
    v2["alertOpt"]
        .as_object_mut()
        .unwrap()
        .remove("silentTimeout");
    let answer = post(
        &url(&standin, &alert_policy_path(&policy, "modify_v2")),
        Some(SECOND_KEY),
        &v2,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let stored = standin.alert_policy(&policy);
    assert_eq!(
        stored["alertOpt"]["alertTarget"][0]["targets"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    assert_eq!(stored["checkerUUIDs"], json!(["rule_1"]));
    assert_eq!(stored["name"], "Production");
}

#[tokio::test]
async fn a_modify_guance_would_refuse_is_refused_and_changes_nothing() {
    let standin = standin().await;
    // More requests than a key may make in a minute (20): this test is about shapes.
    standin.set_limits(1000, 1000, Duration::from_secs(60));
    let existing = json!({
        "alertTarget": [{"targets": [{"status": "critical", "to": ["acnt_0123"]}]}],
        "silentTimeout": 3600,
        "aggInterval": 120,
        "aggFields": ["df_monitor_checker_id"],
    });
    let policy = standin.add_alert_policy_with(WORKSPACE, "Production", existing.clone());
    let notify = standin.add_notify_object(
        WORKSPACE,
        "HTTPRequest",
        "bridge",
        json!({"url": BRIDGE_URL}),
    );
    let theirs =
        standin.add_notify_object(OTHER, "HTTPRequest", "bridge", json!({"url": BRIDGE_URL}));
    let good = json!({"ruleTimezone": "Asia/Shanghai", "alertOpt": paging_alert_opt(&notify)});
    let with = |path: &str, value: Value| {
        let mut body = good.clone();
        let mut at = &mut body;
        let parts: Vec<&str> = path.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            at = match part.parse::<usize>() {
                Ok(i) => &mut at[i],
                Err(_) => &mut at[*part],
            };
        }
        let last = parts[parts.len() - 1];
        if value == Value::Null {
            at.as_object_mut().unwrap().remove(last);
        } else {
            at[last] = value;
        }
        body
    };
    let target = "alertOpt.alertTarget.0.targets.0";
    let cases = [
        (
            "the ok level",
            with(&format!("{target}.status"), "ok".into()),
        ),
        (
            "ok among others",
            with(&format!("{target}.status"), "critical,ok".into()),
        ),
        ("OK", with(&format!("{target}.status"), "OK".into())),
        (
            "an unknown level",
            with(&format!("{target}.status"), "fatal".into()),
        ),
        ("no status", with(&format!("{target}.status"), Value::Null)),
        ("no to", with(&format!("{target}.to"), Value::Null)),
        ("an empty to", with(&format!("{target}.to"), json!([]))),
        (
            "to a string",
            with(&format!("{target}.to"), notify.clone().into()),
        ),
        (
            "another workspace's object",
            with(&format!("{target}.to"), json!([theirs])),
        ),
        (
            "an unknown object",
            with(
                &format!("{target}.to"),
                json!(["notify_00000000000000000000000000000000"]),
            ),
        ),
        (
            "no targets",
            with("alertOpt.alertTarget.0.targets", Value::Null),
        ),
        ("no ruleTimezone", with("ruleTimezone", Value::Null)),
        ("an empty ruleTimezone", with("ruleTimezone", "".into())),
        ("no aggInterval", with("alertOpt.aggInterval", Value::Null)),
        (
            "aggInterval over 1800",
            with("alertOpt.aggInterval", 1801.into()),
        ),
        (
            "aggInterval a string",
            with("alertOpt.aggInterval", "0".into()),
        ),
        (
            "no silentTimeout in v1",
            with("alertOpt.silentTimeout", Value::Null),
        ),
        (
            "an unknown alertType",
            with("alertOpt.alertType", "level".into()),
        ),
        (
            "an unknown aggType",
            with("alertOpt.aggType", "byName".into()),
        ),
        (
            "an unknown aggField",
            with("alertOpt.aggFields", json!(["host"])),
        ),
        ("alertOpt not an object", with("alertOpt", json!([]))),
        ("an undocumented field", with("uuid", policy.clone().into())),
        (
            "an undocumented alertOpt field",
            with("alertOpt.targets", json!([])),
        ),
        (
            "crontab alone",
            with("alertOpt.alertTarget.0.crontab", "0 9 * * *".into()),
        ),
        ("a v2 field in v1", with("checkerUUIDs", json!([]))),
        ("a long desc", with("desc", "x".repeat(257).into())),
    ];
    let modify = url(&standin, &alert_policy_path(&policy, "modify"));
    for (case, body) in &cases {
        let answer = post(&modify, Some(KEY), body).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (400, PARAM_ERROR),
            "{case}: {}",
            answer.body
        );
    }
    // The ok level is refused by v2 too, and the message says why.
    let ok = post(
        &url(&standin, &alert_policy_path(&policy, "modify_v2")),
        Some(KEY),
        &cases[0].1,
    )
    .await;
    assert_eq!((ok.status, ok.error_code()), (400, PARAM_ERROR));
    assert!(
        ok.body["message"]
            .as_str()
            .unwrap()
            .contains("ok is not a level"),
        "{}",
        ok.body
    );

    // An unknown or another workspace's policy is not found; GET cannot modify.
    for (uuid, key) in [
        ("altpl_00000000000000000000000000000000", KEY),
        (policy.as_str(), OTHER_KEY),
    ] {
        let answer = post(
            &url(&standin, &alert_policy_path(uuid, "modify")),
            Some(key),
            &good,
        )
        .await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (404, OBJECT_NOT_FOUND)
        );
    }
    let got = call(reqwest::Method::GET, &modify, Some(KEY)).await;
    assert_eq!((got.status, got.error_code()), (405, METHOD_NOT_ALLOWED));
    let unkeyed = post(&modify, None, &good).await;
    assert_eq!(
        (unkeyed.status, unkeyed.error_code()),
        (403, INVALID_API_KEY)
    );
    let other_action = post(
        &url(&standin, &alert_policy_path(&policy, "delete")),
        Some(KEY),
        &good,
    )
    .await;
    assert_eq!(
        (other_action.status, other_action.error_code()),
        (404, NOT_FOUND)
    );

    assert_eq!(standin.alert_policy(&policy)["alertOpt"], existing);
    // The good body was good all along.
    assert_eq!(post(&modify, Some(KEY), &good).await.status, 200);
}

#[tokio::test]
async fn the_new_calls_need_a_key_and_count_against_the_limits() {
    let standin = standin().await;
    let policy = standin.add_alert_policy(WORKSPACE, "p");
    let gets = [
        format!("{NOTIFY_OBJECT_LIST_PATH}?pageIndex=1&pageSize=10"),
        format!("{NOTIFY_OBJECT_GET_PATH}?notifyObjectUUID=notify_x"),
        format!("{ALERT_POLICY_LIST_PATH}?pageIndex=1&pageSize=10"),
        alert_policy_path(&policy, "get"),
    ];
    for path in &gets {
        for key in [None, Some("not-a-key")] {
            let answer = call(reqwest::Method::GET, &url(&standin, path), key).await;
            assert_eq!(
                (answer.status, answer.error_code()),
                (403, INVALID_API_KEY),
                "{path}"
            );
        }
    }
    for path in [
        NOTIFY_OBJECT_CREATE_PATH.to_owned(),
        NOTIFY_OBJECT_MODIFY_PATH.to_owned(),
        alert_policy_path(&policy, "modify"),
        alert_policy_path(&policy, "modify_v2"),
    ] {
        let answer = post(&url(&standin, &path), None, &json!({})).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (403, INVALID_API_KEY),
            "{path}"
        );
    }

    // One allowance per key across every call, restores included.
    standin.set_limits(3, 100, Duration::from_secs(60));
    assert_eq!(get(&standin, KEY, &gets[0]).await.status, 200);
    assert_eq!(
        create(&standin, KEY, &webhook("n", BRIDGE_URL))
            .await
            .status,
        200
    );
    assert_eq!(restore(&standin, KEY, "r").await.status, 200);
    let limited = get(&standin, KEY, &gets[2]).await;
    assert_eq!((limited.status, limited.error_code()), (401, KEY_LIMITED));
    let limited = create(&standin, KEY, &webhook("m", BRIDGE_URL)).await;
    assert_eq!((limited.status, limited.error_code()), (401, KEY_LIMITED));
    assert_eq!(standin.notify_objects(WORKSPACE).len(), 1);
    // A scripted fault plays Guance's trouble on these calls as on restores.
    standin.script([Fault::Status(503)]);
    let failed = get(&standin, SECOND_KEY, &gets[2]).await;
    assert_eq!((failed.status, failed.error_code()), (503, INTERNAL_ERROR));
    assert_eq!(get(&standin, SECOND_KEY, &gets[2]).await.status, 200);
}
