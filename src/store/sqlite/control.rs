//! Operator state of destinations (paused, disabled by endpoint health),
//! destinations, transformations and alert channels created through the API,
//! and the alerts raised.

use super::*;

pub(super) async fn destination_states(
    store: &SqliteStore,
) -> StoreResult<HashMap<String, DestinationState>> {
    store
        .read(|c| {
            c.prepare_cached(
                "SELECT name, paused, disabled_at, failing_since FROM destination_state",
            )
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        DestinationState {
                            paused: r.get::<_, i64>(1)? != 0,
                            disabled_at: r.get(2)?,
                            failing_since: r.get(3)?,
                        },
                    ))
                })?
                .collect()
            })
            .map_err(map_err)
        })
        .await
}

pub(super) async fn put_destination_state(
    store: &SqliteStore,
    name: &str,
    state: &DestinationState,
) -> StoreResult<()> {
    let name = name.to_string();
    let st = state.clone();
    let inner = store.inner.clone();
    let n2 = name.clone();
    store.inner
        .writer
        .exec_then(
            move |c| {
                c.prepare_cached(
                    "INSERT INTO destination_state (name, paused, disabled_at, failing_since) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (name) DO UPDATE SET paused = excluded.paused,
                         disabled_at = excluded.disabled_at, failing_since = excluded.failing_since",
                )
                .and_then(|mut s| s.execute(params![name, st.paused as i64, st.disabled_at, st.failing_since]))
                .map(|_| ())
                .map_err(map_err)
            },
            move |_| inner.wakeups.wake(&n2),
        )
        .await
}

/// The table of destinations made through the API.
pub(super) const DESTINATIONS: &str = "api_destinations";
/// The table of transformations made through the API (the same columns).
pub(super) const TRANSFORMS: &str = "api_transforms";
/// The table of alert channels made through the API (the same columns).
pub(super) const CHANNELS: &str = "api_alert_channels";

/// The rows of `table` (API destinations or transformations), by name.
pub(super) async fn stored_rows(
    store: &SqliteStore,
    table: &'static str,
) -> StoreResult<Vec<StoredDestination>> {
    store
        .read(move |c| {
            c.prepare_cached(&format!(
                "SELECT name, spec, created_at, updated_at FROM {table} ORDER BY name"
            ))
            .and_then(|mut s| {
                s.query_map([], |r| {
                    let spec: String = r.get(1)?;
                    Ok(StoredDestination {
                        name: r.get(0)?,
                        spec: serde_json::from_str(&spec).unwrap_or(serde_json::Value::Null),
                        created_at: r.get(2)?,
                        updated_at: r.get(3)?,
                    })
                })?
                .collect()
            })
            .map_err(map_err)
        })
        .await
}

/// Creates or replaces a row of `table` (API destinations or transformations).
pub(super) async fn put_stored_row(
    store: &SqliteStore,
    table: &'static str,
    d: &StoredDestination,
    create: bool,
) -> StoreResult<()> {
    let d = d.clone();
    store.inner
        .writer
        .exec(move |c| {
            let spec = d.spec.to_string();
            let n = if create {
                c.prepare_cached(&format!(
                    "INSERT INTO {table} (name, spec, created_at, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (name) DO NOTHING"
                ))
                .and_then(|mut s| s.execute(params![d.name, spec, d.created_at, d.updated_at]))
            } else {
                c.prepare_cached(&format!("UPDATE {table} SET spec = ?2, updated_at = ?3 WHERE name = ?1"))
                    .and_then(|mut s| s.execute(params![d.name, spec, d.updated_at]))
            }
            .map_err(map_err)?;
            crate::store::put_outcome(n as u64, create)
        })
        .await
}

/// Removes a row of `table` (API destinations or transformations).
pub(super) async fn delete_stored_row(
    store: &SqliteStore,
    table: &'static str,
    name: &str,
) -> StoreResult<()> {
    let name = name.to_string();
    store
        .inner
        .writer
        .exec(move |c| {
            let n = c
                .prepare_cached(&format!("DELETE FROM {table} WHERE name = ?1"))
                .and_then(|mut s| s.execute([&name]))
                .map_err(map_err)?;
            if n == 0 {
                Err(StoreError::NotFound)
            } else {
                Ok(())
            }
        })
        .await
}

pub(super) async fn put_alert(store: &SqliteStore, a: &StoredAlert) -> StoreResult<()> {
    let a = a.clone();
    store
        .inner
        .writer
        .exec(move |c| {
            c.prepare_cached(
                "INSERT INTO alerts (id, at, channel, outcome, record) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO NOTHING",
            )
            .and_then(|mut s| {
                s.execute(params![
                    a.id,
                    a.at,
                    a.channel,
                    a.outcome,
                    a.record.to_string()
                ])
            })
            .and_then(|_| {
                c.prepare_cached(
                    "DELETE FROM alerts WHERE id IN
                       (SELECT id FROM alerts ORDER BY at DESC, id DESC LIMIT -1 OFFSET ?1)",
                )
                .and_then(|mut s| s.execute([ALERTS_KEPT as i64]))
            })
            .map(|_| ())
            .map_err(map_err)
        })
        .await
}

pub(super) async fn alert_history(
    store: &SqliteStore,
    limit: usize,
) -> StoreResult<Vec<StoredAlert>> {
    let limit = limit.min(i64::MAX as usize) as i64;
    store
        .read(move |c| {
            c.prepare_cached(
                "SELECT id, at, channel, outcome, record FROM alerts ORDER BY at DESC, id DESC LIMIT ?1",
            )
            .and_then(|mut s| {
                s.query_map([limit], |r| {
                    let record: String = r.get(4)?;
                    Ok(StoredAlert {
                        id: r.get(0)?,
                        at: r.get(1)?,
                        channel: r.get(2)?,
                        outcome: r.get(3)?,
                        record: serde_json::from_str(&record).unwrap_or(serde_json::Value::Null),
                    })
                })?
                .collect()
            })
            .map_err(map_err)
        })
        .await
}
