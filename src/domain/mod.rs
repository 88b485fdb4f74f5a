//! The pure core: Guance's event in, PagerDuty's event out, no I/O.

pub mod guance;
pub mod pagerduty;
pub mod translate;
