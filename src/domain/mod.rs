//! The pure core: Guance's event in, PagerDuty's event out, PagerDuty's webhook back
//! (its signature rule and what it asks for); no I/O.

pub mod guance;
pub mod pagerduty;
pub mod pagerduty_webhook;
pub mod translate;
