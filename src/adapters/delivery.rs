//! The PagerDuty client: send one encoded event, classify the answer, retry what PagerDuty
//! says may be retried, within the invocation's deadline.

use crate::adapters::retry_after;
use crate::domain::pagerduty::refuses_routing_key;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

/// PagerDuty's US endpoint; EU accounts use `https://events.eu.pagerduty.com/v2/enqueue`.
pub const DEFAULT_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// An attempt is not started with less time than this left before the deadline.
const MIN_ATTEMPT: Duration = Duration::from_millis(100);
/// Retry-After values above this are taken as this: still a floor under the backoff,
/// without parking a lane for longer than an hour on one answer.
const MAX_HONOURED_RETRY_AFTER: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempt_timeout: Duration,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempt_timeout: Duration::from_secs(5),
            base_delay: Duration::from_millis(300),
            max_delay: Duration::from_secs(5),
            max_attempts: 8,
        }
    }
}

/// How one delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// PagerDuty took the event (202).
    Accepted {
        dedup_key: Option<String>,
        status: u16,
    },
    /// PagerDuty refused the event for good; sending it again would not help.
    Refused { status: u16, errors: Vec<String> },
    /// PagerDuty refused the routing key (deleted or mistyped integration): the event is
    /// fine and is taken once the secret holds the right key.
    KeyRefused { status: u16, errors: Vec<String> },
    /// Every attempt failed in a way worth retrying, and time or attempts ran out.
    GaveUp {
        last_failure: String,
        last_status: Option<u16>,
        retry_after: Option<Duration>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    pub delivery: Delivery,
    pub attempts: u32,
    pub elapsed: Duration,
}

/// What one attempt's answer means.
#[derive(Debug)]
enum Attempt {
    Done(Delivery),
    Retry {
        why: String,
        status: Option<u16>,
        retry_after: Option<Duration>,
    },
}

pub struct PagerDutyClient {
    http: reqwest::Client,
    url: String,
    policy: RetryPolicy,
}

impl PagerDutyClient {
    pub fn new(http: reqwest::Client, url: impl Into<String>, policy: RetryPolicy) -> Self {
        PagerDutyClient {
            http,
            url: url.into(),
            policy,
        }
    }

    /// The same client (and connection pool) with another retry policy.
    pub fn with_policy(&self, policy: RetryPolicy) -> Self {
        PagerDutyClient {
            http: self.http.clone(),
            url: self.url.clone(),
            policy,
        }
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// An HTTP client fit for PagerDuty: rustls, keep-alive, no redirects to follow.
    pub fn http_client() -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(50))
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("guance-pagerduty/", env!("CARGO_PKG_VERSION")))
            .build()
    }

    /// Sends `body` (an encoded event with its routing key) until PagerDuty accepts or
    /// refuses it, or retrying can no longer finish before `deadline`.
    pub async fn deliver(&self, body: &[u8], deadline: Instant) -> DeliveryReport {
        let started = Instant::now();
        let mut attempts = 0;
        let mut jitter = Jitter::new();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let timeout = self.policy.attempt_timeout.min(remaining);
            attempts += 1;
            let (why, status, retry_after) = match self.attempt(body, timeout).await {
                Attempt::Done(delivery) => {
                    return DeliveryReport {
                        delivery,
                        attempts,
                        elapsed: started.elapsed(),
                    }
                }
                Attempt::Retry {
                    why,
                    status,
                    retry_after,
                } => (why, status, retry_after),
            };
            let backoff = jitter.backoff(&self.policy, attempts);
            let wait = retry_after.map_or(backoff, |advised| advised.max(backoff));
            let next_start = Instant::now() + wait;
            let out_of_time = next_start + MIN_ATTEMPT > deadline;
            if attempts >= self.policy.max_attempts || out_of_time {
                return DeliveryReport {
                    delivery: Delivery::GaveUp {
                        last_failure: why,
                        last_status: status,
                        retry_after,
                    },
                    attempts,
                    elapsed: started.elapsed(),
                };
            }
            tracing::debug!(attempt = attempts, reason = %why, wait_ms = wait.as_millis() as u64, "retrying PagerDuty");
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(&self, body: &[u8], timeout: Duration) -> Attempt {
        if timeout < MIN_ATTEMPT {
            return Attempt::Retry {
                why: "no time left before the Lambda deadline".into(),
                status: None,
                retry_after: None,
            };
        }
        let sent = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .timeout(timeout)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                return Attempt::Retry {
                    why: describe_transport_error(&error),
                    status: None,
                    retry_after: None,
                }
            }
        };
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers()).map(|d| d.min(MAX_HONOURED_RETRY_AFTER));
        // The body is read under the same timeout: a stalled body is a failed attempt.
        let text = match response.text().await {
            Ok(text) => text,
            Err(error) => {
                return Attempt::Retry {
                    why: format!(
                        "PagerDuty answered {status} but the body failed: {}",
                        describe_transport_error(&error)
                    ),
                    status: Some(status),
                    retry_after,
                }
            }
        };
        classify(status, &text, retry_after)
    }
}

/// PagerDuty's advice: 2xx taken; 400 invalid, never retry (unless it is the routing key
/// that is refused); 429 rate limited and 5xx failed, retry later; 408 a timeout. 401,
/// 403, 404 and 405 mean the URL or a proxy is wrong: retried, since no event is at fault.
/// Any other 4xx (413, say) refuses the event.
fn classify(status: u16, body: &str, retry_after: Option<Duration>) -> Attempt {
    #[derive(serde::Deserialize, Default)]
    struct Answer {
        #[serde(default)]
        dedup_key: Option<String>,
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        errors: Vec<serde_json::Value>,
    }
    let answer: Answer = serde_json::from_str(body).unwrap_or_default();
    match status {
        200..=299 => Attempt::Done(Delivery::Accepted {
            dedup_key: answer.dedup_key,
            status,
        }),
        408 | 429 | 500..=599 => Attempt::Retry {
            why: match status {
                429 => "PagerDuty rate limited the event (429)".to_owned(),
                408 => "PagerDuty timed out reading the event (408)".to_owned(),
                _ => format!("PagerDuty failed with {status}"),
            },
            status: Some(status),
            retry_after,
        },
        // Not about the event: the Events API has one path and takes no credentials but
        // the routing key, so these mean PAGERDUTY_EVENTS_URL or something between us and
        // PagerDuty is wrong. Every event would meet the same; they wait, not park.
        401 | 403 | 404 | 405 => Attempt::Retry {
            why: format!(
                "PagerDuty answered {status}: PAGERDUTY_EVENTS_URL or a proxy on the way is misconfigured"
            ),
            status: Some(status),
            retry_after,
        },
        _ => {
            let mut errors: Vec<String> = answer
                .errors
                .iter()
                .map(|e| match e {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            if errors.is_empty() {
                errors.push(
                    answer.message.unwrap_or_else(|| {
                        format!("PagerDuty refused the event with HTTP {status}")
                    }),
                );
            }
            if refuses_routing_key(status, &errors) {
                Attempt::Done(Delivery::KeyRefused { status, errors })
            } else {
                Attempt::Done(Delivery::Refused { status, errors })
            }
        }
    }
}

/// Transport errors as words; reqwest's own text can carry the URL, which is not secret
/// but says nothing more than the kind does.
fn describe_transport_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "PagerDuty did not answer in time".into()
    } else if error.is_connect() {
        "could not connect to PagerDuty".into()
    } else if error.is_body() || error.is_decode() {
        "the connection to PagerDuty broke while reading the answer".into()
    } else {
        "the connection to PagerDuty failed".into()
    }
}

/// `full` with equal jitter: between half of it and all of it.
pub fn jittered(full: Duration) -> Duration {
    Jitter::new().equal(full)
}

/// Exponential backoff with equal jitter: half the delay fixed, half random, so retries
/// from many containers spread out without ever retrying at once.
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u128(Instant::now().elapsed().as_nanos());
        Jitter(hasher.finish() | 1)
    }

    fn next(&mut self) -> u64 {
        // xorshift64: plenty for spreading retries.
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn backoff(&mut self, policy: &RetryPolicy, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(16);
        let full = policy
            .base_delay
            .saturating_mul(1 << exponent)
            .min(policy.max_delay);
        self.equal(full)
    }

    /// Half of `full` fixed, the other half random.
    fn equal(&mut self, full: Duration) -> Duration {
        let half = full / 2;
        let half_ms = half.as_millis() as u64;
        half + Duration::from_millis(if half_ms == 0 {
            0
        } else {
            self.next() % (half_ms + 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let cases: &[(u16, &str, &str)] = &[
            (
                202,
                r#"{"status":"success","message":"Event processed","dedup_key":"k"}"#,
                "accepted k",
            ),
            (202, "not json", "accepted -"),
            (
                400,
                r#"{"status":"invalid event","message":"Event object is invalid","errors":["Length of 'dedup_key' is too long"]}"#,
                "refused 400 Length of 'dedup_key' is too long",
            ),
            (
                400,
                "",
                "refused 400 PagerDuty refused the event with HTTP 400",
            ),
            (404, r#"{"message":"Not found"}"#, "retry 404"),
            (403, "", "retry 403"),
            (
                400,
                r#"{"status":"invalid event","message":"Event object is invalid","errors":["Invalid routing key"]}"#,
                "key refused 400 Invalid routing key",
            ),
            (
                413,
                "",
                "refused 413 PagerDuty refused the event with HTTP 413",
            ),
            (408, "", "retry 408"),
            (429, "", "retry 429"),
            (500, "", "retry 500"),
            (502, "<html>", "retry 502"),
            (503, "", "retry 503"),
        ];
        for (status, body, expected) in cases {
            let got = match classify(*status, body, None) {
                Attempt::Done(Delivery::Accepted { dedup_key, .. }) => {
                    format!("accepted {}", dedup_key.as_deref().unwrap_or("-"))
                }
                Attempt::Done(Delivery::Refused { status, errors }) => {
                    format!("refused {status} {}", errors.join(";"))
                }
                Attempt::Done(Delivery::KeyRefused { status, errors }) => {
                    format!("key refused {status} {}", errors.join(";"))
                }
                Attempt::Retry { status, .. } => format!("retry {}", status.unwrap_or(0)),
                Attempt::Done(other) => panic!("{other:?}"),
            };
            assert_eq!(&got, expected, "{status} {body}");
        }
    }

    #[test]
    fn backoff_grows_caps_and_stays_within_jitter() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        let mut jitter = Jitter::new();
        for (attempt, full) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (40, 1000),
        ] {
            for _ in 0..50 {
                let d = jitter.backoff(&policy, attempt).as_millis() as u64;
                assert!((full / 2..=full).contains(&d), "attempt {attempt}: {d}");
            }
        }
    }
}
