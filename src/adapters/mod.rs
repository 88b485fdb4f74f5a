//! One adapter per outside party: the secret, PagerDuty's Events API (`delivery`) and
//! REST API (`pagerduty_rest`), Guance's OpenAPI, the queue, CloudWatch metrics.

pub mod delivery;
pub mod guance_openapi;
pub mod metrics;
pub mod pagerduty_rest;
pub mod queue;
pub mod secret;

use std::time::{Duration, Instant};

/// AWS answers in milliseconds: an attempt that takes longer than this is stuck (a
/// connection accepted and never answered), and the SDK's retry takes over.
const AWS_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// One AWS call, its retries included. Every call is also bounded by the invocation's
/// deadline, which is what keeps an answer in time.
const AWS_OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// The timeouts every AWS client of the function gets, whatever it was built with.
pub fn aws_call_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(AWS_ATTEMPT_TIMEOUT)
        .operation_attempt_timeout(AWS_ATTEMPT_TIMEOUT)
        .operation_timeout(AWS_OPERATION_TIMEOUT)
        .build()
}

/// What an outside party answered to a bounded call.
pub struct HttpAnswer {
    pub status: u16,
    /// Its `Retry-After`, in seconds, when it gave one.
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

/// A response's `Retry-After` given in seconds (the form PagerDuty uses).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Sends `request` and reads its whole answer within `cap` and by `deadline`: a peer
/// that accepts and never answers, or stalls in its body, costs that and no more. The
/// error is why, in words without the URL (ours, and saying nothing more).
pub async fn bounded_call(
    request: reqwest::RequestBuilder,
    deadline: Instant,
    cap: Duration,
) -> Result<HttpAnswer, String> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err("no time left in the delivery".into());
    }
    let timeout = cap.min(remaining);
    let request = request.timeout(timeout).send();
    let answer = tokio::time::timeout(timeout, async {
        let response = request.await?;
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let body = response.bytes().await?.to_vec();
        Ok::<_, reqwest::Error>(HttpAnswer {
            status,
            retry_after,
            body,
        })
    })
    .await;
    match answer {
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        Ok(Err(error)) => Err(error.without_url().to_string()),
        Ok(Ok(answer)) => Ok(answer),
    }
}
