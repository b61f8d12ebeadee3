//! The control plane: destinations and routes, from the config file and from the
//! admin API, on one path.
//!
//! A destination is written once as a [`DestinationDef`] (the TOML table and the
//! API's JSON body are the same struct), checked by [`validate::destination`]
//! (one set of messages, each with the path of its field), defaulted from
//! [`defaults`] and compiled by [`compile::destination`] into the dispatcher's
//! `DestinationSpec`. The [`Registry`] owns the set of them at run time: config
//! destinations read-only, API destinations stored in the store and kept in step
//! across nodes, and the route table built from both. [`reload`] applies a
//! changed config file to the running gateway.

pub mod channels;
pub mod compile;
pub mod registry;
pub mod reload;
pub mod transforms;

pub use crate::config::check as validate;
pub use crate::config::{def, defaults};

pub use crate::config::check::Problem;
pub use crate::config::def::{DestinationDef, RouteDef, StoredKey};
pub use registry::{ControlError, Registry};
pub use reload::Reloader;
