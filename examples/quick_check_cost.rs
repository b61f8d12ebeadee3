//! What the integrity check after an unclean shutdown costs: fills an embedded
//! store with N delivered messages (1 KiB bodies, one delivery and one attempt
//! each, as after normal traffic), then times opening it after a clean close
//! (no check) and after an unclean one (`PRAGMA quick_check` first).
//!
//! `cargo run --release --example quick_check_cost -- [MESSAGES] [DIR]`

use std::time::Instant;

use hookgate::store::sqlite::SqliteStore;
use hookgate::store::{MessageId, Store};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: i64 = args
        .next()
        .map_or(1_000_000, |a| a.parse().expect("MESSAGES"));
    let dir = match args.next() {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join("hookgate-quick-check"),
    };
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("hookgate.db");
    let store = SqliteStore::open(&path).unwrap();
    store.close().await;
    drop(store);

    let started = Instant::now();
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;")
            .unwrap();
        let body = vec![b'x'; 1024];
        let headers = vec![0u8; 120];
        let t0: i64 = 1_700_000_000_000;
        for chunk in 0..(n + 99_999) / 100_000 {
            c.execute_batch("BEGIN").unwrap();
            for i in chunk * 100_000..((chunk + 1) * 100_000).min(n) {
                let t = t0 + i;
                c.prepare_cached(
                    "INSERT INTO messages (seq, id, source, event_type, received_at, content_type, headers, body)
                     VALUES (?1, ?2, 'bench', 'order.created', ?3, 'application/json', ?4, ?5)",
                )
                .unwrap()
                .execute(rusqlite::params![i + 1, MessageId::new().to_string(), t, headers, body])
                .unwrap();
                c.prepare_cached(
                    "INSERT INTO deliveries (id, message_seq, destination, status, priority, due_at, attempts, created_at, finished_at)
                     VALUES (?1, ?1, 'sink', 2, 1, ?2, 1, ?2, ?2)",
                )
                .unwrap()
                .execute(rusqlite::params![i + 1, t])
                .unwrap();
                c.prepare_cached(
                    "INSERT INTO attempts (delivery_id, attempt, started_at, duration_us, status, response_body)
                     VALUES (?1, 1, ?2, 900, 200, x'6f6b')",
                )
                .unwrap()
                .execute(rusqlite::params![i + 1, t])
                .unwrap();
            }
            c.execute_batch("COMMIT").unwrap();
        }
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    }
    let size = std::fs::metadata(&path).unwrap().len();
    println!(
        "filled {n} messages in {:.1} s; database {:.0} MiB",
        started.elapsed().as_secs_f64(),
        size as f64 / (1024.0 * 1024.0)
    );

    // A clean close leaves the marker: the open does not check.
    let store = SqliteStore::open(&path).unwrap();
    store.close().await;
    drop(store);
    let t = Instant::now();
    let store = SqliteStore::open(&path).unwrap();
    println!(
        "open after a clean close:   {:.2} s",
        t.elapsed().as_secs_f64()
    );
    // Dropped without close, as after kill -9: the next open checks.
    drop(store);
    let t = Instant::now();
    let store = SqliteStore::open(&path).unwrap();
    println!(
        "open after an unclean stop: {:.2} s (with PRAGMA quick_check)",
        t.elapsed().as_secs_f64()
    );
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
