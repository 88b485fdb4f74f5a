//! One adapter per outside party: the secret, PagerDuty, the queue, CloudWatch metrics.

pub mod delivery;
pub mod metrics;
pub mod queue;
pub mod secret;
