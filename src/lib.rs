//! guance-pagerduty: Guance alert webhooks in, PagerDuty Events API v2 events out.
//!
//! The pure core ([`guance`], [`pagerduty`], [`translate`]) does no I/O. Two entry
//! points, [`handler`] (the function URL) and [`dispatcher`] (the queue's batches), use
//! one adapter per job: [`secret`] (the routing key and token, cached), [`delivery`]
//! (sending to PagerDuty with retries), [`queue`] (the SQS FIFO queue) and [`metrics`]
//! (CloudWatch metric lines). [`invocation`] tells the kinds of invocation apart;
//! [`error`] maps every failure to its HTTP answer and [`config`] reads the environment.

pub mod config;
pub mod delivery;
pub mod dispatcher;
pub mod error;
pub mod guance;
pub mod handler;
pub mod invocation;
pub mod logging;
pub mod metrics;
pub mod pagerduty;
pub mod queue;
pub mod secret;
pub mod translate;

pub use guance::{parse_body, BodyError, GuanceEvent};
pub use pagerduty::{EventAction, PagerDutyEvent, Severity};
pub use translate::{translate, InfoEvents, Outcome, Settings, Translation};
