//! Ingest: the public listener that receives webhooks, verifies them, selects
//! their keys and event types, routes them, and makes them durable before it answers.

pub mod http;
pub mod rejects;
pub mod route;
pub mod source;
pub mod verify;

/// Selectors live in [`crate::select`] (config reads them too); re-exported
/// here, where ingest uses them.
pub use crate::select;
