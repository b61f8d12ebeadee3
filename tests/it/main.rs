//! Integration tests: the gateway in this process or as the real `hookgate`
//! binary (see `harness`), real HTTP on 127.0.0.1.

mod harness;

mod alerts;
mod bench;
mod cli;
mod console;
mod console_actions;
mod control;
mod core;
mod diskfull;
mod events;
mod failover;
mod install;
mod listen;
mod listen_faults;
mod listener;
mod multinode;
mod openapi;
mod outage;
mod portal;
mod providers;
mod pull;
mod readiness;
mod rejected;
mod reload;
mod svix;
mod tls;
mod traces;
mod transforms;

// The store suites and the layering check: in the same binary, so that they run
// beside the gateway tests instead of after them.
mod layering;
mod store_memory;
mod store_model;
mod store_postgres;
mod store_sqlite;
