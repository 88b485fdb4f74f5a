//! The stand-ins' own tests: a stand-in that drifts from the contract it plays
//! (PagerDuty's Events API, REST API and webhooks; Guance's OpenAPI) fails here.

#[path = "../support/mod.rs"]
mod support;

mod guance;
mod pagerduty;
