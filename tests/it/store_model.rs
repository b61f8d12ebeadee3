//! A model check of the queue of the embedded store and of the in-memory store
//! the dispatcher tests use: random sequences of appends, leases, completions,
//! releases and time steps, compared with a plain model after every step.

use hookgate::store::conformance::{model_check, ModelOp};
use hookgate::store::memory::MemoryStore;
use hookgate::store::sqlite::SqliteStore;
use hookgate::store::Store;
use proptest::prelude::*;

fn op() -> impl Strategy<Value = ModelOp> {
    prop_oneof![
        4 => (0u8..2, proptest::option::of(0u8..3), 0u8..3, prop_oneof![Just(0u16), 0u16..500])
            .prop_map(|(dest, key, prio, due_in)| ModelOp::Append { dest, key, prio, due_in }),
        3 => (0u8..2, 0u8..8).prop_map(|(dest, limit)| ModelOp::Lease { dest, limit }),
        3 => (any::<u8>(), prop_oneof![Just(0u16), Just(1u16), 2u16..400])
            .prop_map(|(pick, outcome)| ModelOp::Complete { pick, outcome }),
        1 => any::<u8>().prop_map(|pick| ModelOp::Release { pick }),
        2 => (1u16..300).prop_map(|ms| ModelOp::Tick { ms }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn the_sqlite_queue_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(dir.path().join("m.db")).unwrap();
            model_check(&store, &ops).await;
            store.close().await;
        });
    }

    #[test]
    fn the_memory_queue_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let store = MemoryStore::new();
            model_check(&store, &ops).await;
            store.close().await;
        });
    }
}
