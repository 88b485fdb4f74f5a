//! `make setup`, `make pagerduty-webhook` and `make guance-workspace` against moto and the
//! stand-ins.

#[path = "../support/mod.rs"]
mod support;

mod guance_workspace;
mod pagerduty_webhook;
mod setup;
