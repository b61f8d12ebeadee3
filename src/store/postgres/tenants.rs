//! Records of the tenants' API (see [`crate::store::tenants`]).

use sqlx::postgres::PgRow;

use super::*;

const COLUMNS: &str = "kind, tenant, id, uid, body, created_at, updated_at";

fn row(r: PgRow) -> Result<TenantRecord, sqlx::Error> {
    Ok(TenantRecord {
        kind: r.try_get(0)?,
        tenant: r.try_get(1)?,
        id: r.try_get(2)?,
        uid: r.try_get(3)?,
        body: serde_json::from_str(r.try_get::<&str, _>(4)?).unwrap_or(serde_json::Value::Null),
        created_at: r.try_get(5)?,
        updated_at: r.try_get(6)?,
    })
}

/// A taken id or uid is a conflict, not an unavailable store.
fn map_write_err(e: sqlx::Error) -> StoreError {
    match sqlstate(&e).as_deref() {
        Some("23505") => StoreError::Conflict,
        _ => map_err(e),
    }
}

pub(super) async fn record(
    pool: &PgPool,
    kind: &str,
    tenant: &str,
    key: &str,
) -> StoreResult<Option<TenantRecord>> {
    let r = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM tenant_records WHERE kind = $1 AND tenant = $2 AND (id = $3 OR uid = $3)
         ORDER BY id = $3 DESC LIMIT 1"
    ))
    .bind(text(kind))
    .bind(text(tenant))
    .bind(text(key))
    .fetch_optional(pool)
    .await
    .map_err(map_err)?;
    r.map(row).transpose().map_err(map_err)
}

pub(super) async fn records(pool: &PgPool, q: &RecordQuery<'_>) -> StoreResult<Vec<TenantRecord>> {
    let limit = q.limit.clamp(1, 1000) as i64;
    let sql = match q.before {
        Some(_) => format!(
            "SELECT {COLUMNS} FROM tenant_records WHERE kind = $1 AND tenant = $2 AND id < $3
             ORDER BY id DESC LIMIT $4"
        ),
        None => format!(
            "SELECT {COLUMNS} FROM tenant_records WHERE kind = $1 AND tenant = $2 AND id > $3
             ORDER BY id LIMIT $4"
        ),
    };
    let bound = q.before.or(q.after).unwrap_or_default();
    let rows = sqlx::query(&sql)
        .bind(text(q.kind))
        .bind(text(q.tenant))
        .bind(text(bound))
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(map_err)?;
    let mut out = rows
        .into_iter()
        .map(row)
        .collect::<Result<Vec<_>, _>>()
        .map_err(map_err)?;
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

pub(super) async fn put(pool: &PgPool, r: &TenantRecord, create: bool) -> StoreResult<()> {
    let body = text(&r.body.to_string());
    let n = if create {
        sqlx::query(
            "INSERT INTO tenant_records (kind, tenant, id, uid, body, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(text(&r.kind))
        .bind(text(&r.tenant))
        .bind(text(&r.id))
        .bind(r.uid.as_deref().map(text))
        .bind(body)
        .bind(r.created_at)
        .bind(r.updated_at)
        .execute(pool)
        .await
    } else {
        sqlx::query(
            "UPDATE tenant_records SET uid = $4, body = $5, updated_at = $6
             WHERE kind = $1 AND tenant = $2 AND id = $3",
        )
        .bind(text(&r.kind))
        .bind(text(&r.tenant))
        .bind(text(&r.id))
        .bind(r.uid.as_deref().map(text))
        .bind(body)
        .bind(r.updated_at)
        .execute(pool)
        .await
    }
    .map_err(map_write_err)?
    .rows_affected();
    crate::store::put_outcome(n, create)
}

pub(super) async fn delete(pool: &PgPool, kind: &str, tenant: &str, id: &str) -> StoreResult<()> {
    let n = sqlx::query("DELETE FROM tenant_records WHERE kind = $1 AND tenant = $2 AND id = $3")
        .bind(text(kind))
        .bind(text(tenant))
        .bind(text(id))
        .execute(pool)
        .await
        .map_err(map_err)?
        .rows_affected();
    if n == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}
