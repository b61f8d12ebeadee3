//! A delivery's transformation, run before its attempt: the script that
//! applies (through [`TransformLookup`], which `control` provides), run on the
//! engine's pool, and its answer turned into the request to send, or into a
//! final outcome (dropped, or transform failed) that makes no request.

use std::sync::Arc;

use super::destination::DestinationSpec;
use crate::store::{decode_headers, Leased, Next, StoredMessage};
use crate::transform::request::Parts;
use crate::transform::{Delivery, Engine, Request, Script};

/// Which transformation a delivery runs through.
pub trait TransformLookup: Send + Sync {
    /// The script for a delivery of `msg` to `spec`: `None` when none applies;
    /// `Err` with the reason when the named one is not defined.
    fn script(
        &self,
        msg: &StoredMessage,
        spec: &DestinationSpec,
    ) -> Option<Result<Arc<Script>, String>>;
}

/// The engine and the lookup, set once at start.
pub struct Transforming {
    /// The pool that runs scripts.
    pub engine: Arc<Engine>,
    /// Which script applies.
    pub lookup: Arc<dyn TransformLookup>,
}

/// What a delivery's transformation decided.
pub(super) enum Prepared {
    /// Send: the transformed request, or the message as received.
    Send(Option<Delivery>),
    /// Send nothing: this final outcome, with the text for the attempt record.
    Final(Next, String),
}

/// The request object of a stored message.
pub fn request_of(msg: &StoredMessage) -> Request {
    let headers = decode_headers(&msg.headers);
    Request::from_parts(Parts {
        source: &msg.source,
        event_type: msg.event_type.as_deref(),
        content_type: msg.content_type.as_deref(),
        headers: &headers,
        body: &msg.body,
    })
}

/// Runs the delivery's transformation, if one applies.
pub(super) async fn prepare(
    t: Option<&Transforming>,
    spec: &DestinationSpec,
    item: &Leased,
) -> Prepared {
    let Some(t) = t else {
        return Prepared::Send(None);
    };
    let script = match t.lookup.script(&item.message, spec) {
        None => return Prepared::Send(None),
        Some(Err(e)) => return Prepared::Final(Next::TransformFailed, e),
        Some(Ok(s)) => s,
    };
    let name = script.name.clone();
    let req = request_of(&item.message);
    match t
        .engine
        .run(script, &req, &item.message.id.to_string())
        .await
    {
        Ok(None) => Prepared::Final(Next::Dropped, format!("dropped by transform `{name}`")),
        Ok(Some(out)) => match Delivery::from_output(&out, item.message.content_type.as_deref()) {
            Ok(d) => Prepared::Send(Some(d)),
            Err(e) => Prepared::Final(
                Next::TransformFailed,
                format!("transform `{name}` returned an invalid request: {e}"),
            ),
        },
        Err(e) => Prepared::Final(Next::TransformFailed, format!("transform `{name}` {e}")),
    }
}
