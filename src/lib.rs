//! guance-pagerduty: Guance alert webhooks in, PagerDuty Events API v2 events out.
//!
//! The pure core, [`domain`] ([`guance`], [`pagerduty`], [`mod@translate`]), does no I/O.
//! Two entry points, in [`entry`]: [`handler`] (the function URL) and [`dispatcher`] (the
//! queue's batches); [`invocation`] tells them apart. They use one adapter per outside
//! party, in [`adapters`]: [`secret`] (the routing key and token, cached), [`delivery`]
//! (sending to PagerDuty with retries), [`queue`] (the SQS FIFO queue) and [`metrics`]
//! (CloudWatch metric lines). [`error`] maps every failure to its HTTP answer, [`config`]
//! reads the environment and [`logging`] writes JSON logs.

pub mod adapters;
pub mod config;
pub mod domain;
pub mod entry;
pub mod error;
pub mod logging;

// Each module is also reachable by its own name, as `guance_pagerduty::handler`.
pub use adapters::{delivery, metrics, queue, secret};
pub use domain::{guance, pagerduty, translate};
pub use entry::{dispatcher, handler, invocation};

pub use guance::{parse_body, BodyError, GuanceEvent};
pub use pagerduty::{EventAction, PagerDutyEvent, Severity};
pub use translate::{translate, InfoEvents, Outcome, Settings, Translation};
