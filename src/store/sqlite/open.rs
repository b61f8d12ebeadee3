//! Opening a database file: whose it is (`application_id`, its tables), the
//! schema and its upgrades, the integrity check after an unclean shutdown, and
//! the marker of a clean close.
//!
//! Invariant: nothing is written to a file before it is known to be ours,
//! empty, or adopted on purpose.

use super::queue::Pending;
use super::*;

pub(super) const SCHEMA: &str = include_str!("schema.sql");

pub(super) const SCHEMA_VERSION: i64 = 3;

/// `PRAGMA application_id` of hookgate's databases ("hgat"): what tells our
/// file from another program's.
pub(super) const APPLICATION_ID: i64 = 0x6867_6174;

/// The tables of [`SCHEMA`]: a database with only these (and no
/// `application_id`) was made by an earlier hookgate.
pub(super) const TABLES: &[&str] = &[
    "messages",
    "deliveries",
    "attempts",
    "dedup",
    "destination_state",
    "api_destinations",
    "tenant_records",
];

/// Whose database a file is, as found at open.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ownership {
    /// No tables: a new file.
    Empty,
    /// hookgate's (by `application_id`, or only hookgate's tables).
    Ours,
    /// Another program's: what shows it.
    Foreign(String),
}

pub(super) fn ownership(c: &Connection) -> rusqlite::Result<Ownership> {
    let app: i64 = c.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    if app == APPLICATION_ID {
        return Ok(Ownership::Ours);
    }
    let tables: Vec<String> = c
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type IN ('table', 'view')
             AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(if app != 0 {
        Ownership::Foreign(format!("its application_id is {app:#x}, not hookgate's"))
    } else if tables.is_empty() {
        Ownership::Empty
    } else if tables.iter().all(|t| TABLES.contains(&t.as_str())) {
        Ownership::Ours
    } else {
        Ownership::Foreign(format!(
            "it holds tables that are not hookgate's: {}",
            tables
                .iter()
                .filter(|t| !TABLES.contains(&t.as_str()))
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// Whether `table` exists without `column` (a file of an older schema).
fn lacks_column(c: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    c.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1)
            AND NOT EXISTS (SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2)",
        [table, column],
        |r| r.get(0),
    )
}

/// Creates or upgrades the schema, all in one transaction, and marks the file
/// as hookgate's.
pub(super) fn migrate(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch("BEGIN IMMEDIATE")?;
    let r = (|| {
        if lacks_column(c, "deliveries", "replayed_by")? {
            // Schema 2. A dead delivery with a later delivery of its message to
            // the same destination was replayed already: mark it so, so that a
            // bulk replay does not send it again.
            c.execute_batch(
                "ALTER TABLE deliveries ADD COLUMN replayed_by INTEGER;
                 UPDATE deliveries SET status = 4, replayed_by = (
                     SELECT min(n.id) FROM deliveries n WHERE n.message_seq = deliveries.message_seq
                         AND n.destination = deliveries.destination AND n.id > deliveries.id)
                 WHERE status = 3 AND EXISTS (
                     SELECT 1 FROM deliveries n WHERE n.message_seq = deliveries.message_seq
                         AND n.destination = deliveries.destination AND n.id > deliveries.id);",
            )?;
        }
        if lacks_column(c, "attempts", "response_headers")? {
            // Schema 3: attempts recorded before it have no response headers.
            c.execute_batch("ALTER TABLE attempts ADD COLUMN response_headers BLOB;")?;
        }
        c.execute_batch(SCHEMA)?;
        c.execute_batch(&format!(
            "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
        ))
    })();
    match r {
        Ok(()) => c.execute_batch("COMMIT"),
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// The file whose presence says the last close was clean.
pub(super) fn clean_marker(db: &Path) -> std::path::PathBuf {
    db.with_extension("clean")
}

/// Syncs the directory of `db`, so that a file created or removed there stays so.
pub(super) fn sync_dir(db: &Path) -> std::io::Result<()> {
    let dir = match db.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d,
        None => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// `PRAGMA quick_check` after an unclean shutdown: a damaged database is refused
/// before anything is written to it or delivered from it.
pub(super) fn check_integrity(c: &Connection, path: &Path) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    let problems: Vec<String> = c
        .prepare("PRAGMA quick_check(20)")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| {
            StoreError::Refused(format!(
                "{} failed its integrity check after an unclean shutdown: {e}",
                path.display()
            ))
        })?;
    tracing::info!(
        path = %path.display(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "the last shutdown was not clean: checked the database (PRAGMA quick_check)"
    );
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    Err(StoreError::Refused(format!(
        "{} failed its integrity check after an unclean shutdown ({}); \
         restore it from a backup or recover it with `sqlite3 {} .recover`",
        path.display(),
        problems.join("; "),
        path.display()
    )))
}

/// Deliveries per destination that match a condition (run once, at start).
pub(super) fn count_by_destination(
    c: &Connection,
    cond: &str,
) -> rusqlite::Result<Vec<(String, i64)>> {
    c.prepare(&format!(
        "SELECT destination, count(*) FROM deliveries WHERE {cond} GROUP BY destination"
    ))?
    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect()
}

/// Creates the database's directory and takes the lock file beside it: one
/// process owns a database.
pub(super) fn lock_file(path: &Path) -> Result<File, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
    }
    let lock_path = path.with_extension("lock");
    let lock = File::create(&lock_path).map_err(|e| {
        StoreError::Unavailable(format!("cannot create {}: {e}", lock_path.display()))
    })?;
    lock.try_lock().map_err(|_| {
        StoreError::Unavailable(format!(
            "{} is in use by another hookgate process",
            path.display()
        ))
    })?;
    Ok(lock)
}

/// Makes the file ready for use: refuses another program's (unless adopted),
/// checks it after an unclean shutdown, sets WAL, migrates the schema, and
/// removes the clean-close marker before the first write.
pub(super) fn prepare(conn: &Connection, path: &Path, adopt: bool) -> Result<(), StoreError> {
    // Nothing is written (not even the journal mode) before we know the file
    // is ours, empty, or adopted on purpose.
    let owner = ownership(conn).map_err(map_err)?;
    if let Ownership::Foreign(why) = &owner {
        if !adopt {
            return Err(StoreError::Refused(format!(
                "{} is not a hookgate database ({why}); point storage.path at a new file, \
                 or start with `hookgate serve --adopt` to add hookgate's tables to it",
                path.display(),
            )));
        }
        tracing::warn!(path = %path.display(), "adopting a database of another program (--adopt)");
    }
    let marker = clean_marker(path);
    let clean = marker.exists();
    if owner != Ownership::Empty && !clean {
        check_integrity(conn, path)?;
    }
    // WAL with a sync at every commit. Checkpoints run on their own thread
    // (see `checkpointer`), never inside a commit that an ack waits for.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF;
         PRAGMA wal_autocheckpoint = 0;",
    )
    .map_err(map_err)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(map_err)?;
    if version > SCHEMA_VERSION && owner == Ownership::Ours {
        return Err(StoreError::Unavailable(format!(
            "{} was written by a newer hookgate (schema {version})",
            path.display()
        )));
    }
    migrate(conn).map_err(map_err)?;
    // From here on writes happen: until the next clean close, a crash is an
    // unclean shutdown.
    if clean {
        std::fs::remove_file(&marker)
            .and_then(|()| sync_dir(path))
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot remove {}: {e}", marker.display()))
            })?;
    }
    Ok(())
}

/// The in-memory counters, counted once at open.
pub(super) fn count_pending(conn: &Connection) -> Result<Pending, StoreError> {
    let pending = Pending::default();
    for (d, n) in count_by_destination(conn, "status IN (0, 1)").map_err(map_err)? {
        pending.add(&d, n);
    }
    for (d, n) in count_by_destination(conn, "status = 3").map_err(map_err)? {
        pending.add_dead(&d, n);
    }
    Ok(pending)
}
