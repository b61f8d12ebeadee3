//! hookgate: a durable webhook gateway.
//!
//! The path of a webhook through the crate: [`config`] → [`ingest`] (http,
//! verify, select) → [`store`] → [`dispatch`] (schedule, deliver, retry,
//! breaker, limits) → [`admin`] and [`telemetry`].

pub mod admin;
pub mod alerts;
pub mod app;
pub mod bench;
pub mod cli_extra;
pub mod clock;
pub mod config;
pub mod console;
pub mod control;
pub mod dispatch;
pub mod echo;
pub mod ingest;
pub mod init;
pub mod listen;
pub mod listener;
pub mod select;
pub mod signing;
pub mod store;
pub mod summary;
pub mod svix;
pub mod tasks;
pub mod telemetry;
pub mod throttle;
pub mod tls;
pub mod transform;
