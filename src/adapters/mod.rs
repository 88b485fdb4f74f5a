//! One adapter per outside party: the secret, PagerDuty's Events API (`delivery`) and
//! REST API (`pagerduty_rest`), Guance's OpenAPI, the queue, CloudWatch metrics.

pub mod delivery;
pub mod guance_openapi;
pub mod metrics;
pub mod pagerduty_rest;
pub mod queue;
pub mod secret;

use std::time::Duration;

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
