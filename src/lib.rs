//! guance-pagerduty: Guance alert webhooks in, PagerDuty Events API v2 events out.
//!
//! The pure core, [`domain`] (`guance`, `pagerduty`, `pagerduty_webhook`, `translate`),
//! does no I/O. The entry points, in [`entry`]: `handler` (the function URL) and
//! `dispatcher` (the queue's batches), siblings sharing `app` (`App`, `Invocation`);
//! `invocation` tells them apart. They use one adapter per outside party, in
//! [`adapters`]: `secret` (the routing key and token, cached), `delivery` (sending to
//! PagerDuty with retries), `queue` (the SQS FIFO queue) and `metrics` (CloudWatch metric
//! lines). [`error`] maps every failure to its HTTP answer, [`config`] reads the
//! environment and [`logging`] writes JSON logs. Each name is imported from where it
//! lives: there are no re-exports.

pub mod adapters;
pub mod config;
pub mod domain;
pub mod entry;
pub mod error;
pub mod logging;
