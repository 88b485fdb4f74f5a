//! The entry points: one per kind of invocation, and what tells them apart.

pub mod app;
pub mod dispatcher;
pub mod handler;
pub mod invocation;
