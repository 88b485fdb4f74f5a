//! guance-pagerduty: Guance alert webhooks in, PagerDuty Events API v2 events out.
//!
//! The pure core ([`guance`], [`pagerduty`], [`translate`]) does no I/O; the adapters
//! around it receive the webhook, read the routing key and deliver to PagerDuty.

pub mod guance;
pub mod pagerduty;
pub mod translate;

pub use guance::{parse_body, BodyError, GuanceEvent};
pub use pagerduty::{EventAction, PagerDutyEvent, Severity};
pub use translate::{translate, InfoEvents, Outcome, Settings, Translation};
