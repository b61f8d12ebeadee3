//! The store conformance suite against the in-memory store that the
//! dispatcher's unit tests run on, so they exercise the same queue semantics as
//! the real backends.

use std::sync::Arc;

use hookgate::store::conformance::Made;
use hookgate::store::memory::MemoryStore;

async fn make() -> Made {
    (Arc::new(MemoryStore::new()), Box::new(()))
}

hookgate::store_conformance_tests!(make());
