//! The entry points: one per kind of invocation (`handler`: Guance's webhook and the
//! function URL's routes; `pagerduty_webhook`: PagerDuty's webhook at
//! `/pagerduty/webhook`; `dispatcher`: the queue's batches), and what tells them apart.

pub mod app;
pub mod dispatcher;
pub mod handler;
pub mod invocation;
pub mod pagerduty_webhook;
