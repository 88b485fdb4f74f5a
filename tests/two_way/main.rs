//! Two-way: PagerDuty's signed webhook back to the function, and Guance's events
//! recovered: the flows (`flows`) and the faults a hostile review found (`faults`).

#[path = "../support/mod.rs"]
mod support;

mod faults;
mod flows;
