//! Records of the tenants' API (see [`crate::store::tenants`]).

use super::*;

const COLUMNS: &str = "kind, tenant, id, uid, body, created_at, updated_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TenantRecord> {
    let body: String = r.get(4)?;
    Ok(TenantRecord {
        kind: r.get(0)?,
        tenant: r.get(1)?,
        id: r.get(2)?,
        uid: r.get(3)?,
        body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
    })
}

/// A taken id or uid is a conflict, not an unavailable store.
fn map_write_err(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ffi::ErrorCode::ConstraintViolation) => StoreError::Conflict,
        _ => map_err(e),
    }
}

pub(super) async fn record(
    store: &SqliteStore,
    kind: &str,
    tenant: &str,
    key: &str,
) -> StoreResult<Option<TenantRecord>> {
    let (kind, tenant, key) = (kind.to_string(), tenant.to_string(), key.to_string());
    store
        .read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM tenant_records WHERE kind = ?1 AND tenant = ?2 AND (id = ?3 OR uid = ?3)
                 ORDER BY id = ?3 DESC LIMIT 1"
            ))
            .and_then(|mut s| s.query_row(params![kind, tenant, key], row).optional())
            .map_err(map_err)
        })
        .await
}

pub(super) async fn records(
    store: &SqliteStore,
    q: &RecordQuery<'_>,
) -> StoreResult<Vec<TenantRecord>> {
    let (kind, tenant) = (q.kind.to_string(), q.tenant.to_string());
    let limit = q.limit.clamp(1, 1000) as i64;
    let (after, before) = (q.after.map(str::to_string), q.before.map(str::to_string));
    store
        .read(move |c| {
            let mut out: Vec<TenantRecord> = match before {
                Some(b) => c
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM tenant_records WHERE kind = ?1 AND tenant = ?2 AND id < ?3
                         ORDER BY id DESC LIMIT ?4"
                    ))
                    .and_then(|mut s| s.query_map(params![kind, tenant, b, limit], row)?.collect()),
                None => c
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM tenant_records WHERE kind = ?1 AND tenant = ?2 AND id > ?3
                         ORDER BY id LIMIT ?4"
                    ))
                    .and_then(|mut s| {
                        s.query_map(params![kind, tenant, after.unwrap_or_default(), limit], row)?
                            .collect()
                    }),
            }
            .map_err(map_err)?;
            out.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(out)
        })
        .await
}

pub(super) async fn put(store: &SqliteStore, r: &TenantRecord, create: bool) -> StoreResult<()> {
    let r = r.clone();
    store
        .inner
        .writer
        .exec(move |c| {
            let body = r.body.to_string();
            let n = if create {
                c.prepare_cached(
                    "INSERT INTO tenant_records (kind, tenant, id, uid, body, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        r.kind,
                        r.tenant,
                        r.id,
                        r.uid,
                        body,
                        r.created_at,
                        r.updated_at
                    ])
                })
            } else {
                c.prepare_cached(
                    "UPDATE tenant_records SET uid = ?4, body = ?5, updated_at = ?6
                     WHERE kind = ?1 AND tenant = ?2 AND id = ?3",
                )
                .and_then(|mut s| {
                    s.execute(params![r.kind, r.tenant, r.id, r.uid, body, r.updated_at])
                })
            }
            .map_err(map_write_err)?;
            crate::store::put_outcome(n as u64, create)
        })
        .await
}

pub(super) async fn delete(
    store: &SqliteStore,
    kind: &str,
    tenant: &str,
    id: &str,
) -> StoreResult<()> {
    let (kind, tenant, id) = (kind.to_string(), tenant.to_string(), id.to_string());
    store
        .inner
        .writer
        .exec(move |c| {
            let n = c
                .prepare_cached(
                    "DELETE FROM tenant_records WHERE kind = ?1 AND tenant = ?2 AND id = ?3",
                )
                .and_then(|mut s| s.execute(params![kind, tenant, id]))
                .map_err(map_err)?;
            if n == 0 {
                Err(StoreError::NotFound)
            } else {
                Ok(())
            }
        })
        .await
}
