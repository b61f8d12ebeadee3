//! The pending-work estimate of one node: a periodic count of the live
//! deliveries per destination, plus this node's own changes since.
//!
//! Invariant: a local change is counted exactly once. Each change is recorded
//! with the id of the transaction that made it, and each count with the snapshot
//! it was taken in; a change whose transaction that snapshot already sees is part
//! of the count and is dropped, any other is added on top. So on a single node
//! the estimate is exact at every moment, and with several nodes it lags the
//! others' changes by at most one refresh.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};

use parking_lot::Mutex;

/// A PostgreSQL snapshot (`pg_current_snapshot()` as text: `xmin:xmax:xip,...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Snapshot {
    xmin: u64,
    xmax: u64,
    xip: Vec<u64>,
}

impl Snapshot {
    /// Parses the text form; `None` if it is not one.
    pub(super) fn parse(s: &str) -> Option<Snapshot> {
        let mut parts = s.trim().splitn(3, ':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let xip = match parts.next()? {
            "" => Vec::new(),
            list => list
                .split(',')
                .map(|x| x.parse().ok())
                .collect::<Option<Vec<u64>>>()?,
        };
        Some(Snapshot { xmin, xmax, xip })
    }

    /// Whether a committed transaction's writes are visible in this snapshot.
    pub(super) fn sees(&self, xid: u64) -> bool {
        xid < self.xmin || (xid < self.xmax && !self.xip.contains(&xid))
    }
}

struct Change {
    xid: u64,
    deltas: Vec<(String, i64)>,
}

#[derive(Default)]
struct State {
    /// The snapshot of the last count.
    snapshot: Option<Snapshot>,
    /// The last count per destination.
    base: HashMap<String, i64>,
    /// Committed local changes the last count does not include.
    changes: Vec<Change>,
    /// `base` plus `changes`, per destination.
    by_destination: HashMap<String, i64>,
}

/// Pending deliveries per destination: the last count plus local changes.
#[derive(Default)]
pub(super) struct PendingCounts {
    state: Mutex<State>,
    total: AtomicI64,
}

impl PendingCounts {
    /// Records the changes a committed transaction `xid` made.
    pub(super) fn record(&self, xid: u64, deltas: HashMap<String, i64>) {
        if deltas.is_empty() {
            return;
        }
        let mut st = self.state.lock();
        if st.snapshot.as_ref().is_some_and(|s| s.sees(xid)) {
            // The last count already includes them.
            return;
        }
        let mut sum = 0;
        for (d, n) in &deltas {
            *st.by_destination.entry(d.clone()).or_default() += n;
            sum += n;
        }
        st.changes.push(Change {
            xid,
            deltas: deltas.into_iter().collect(),
        });
        self.total.fetch_add(sum, Ordering::Relaxed);
    }

    /// Replaces the base with a count taken in `snapshot`.
    pub(super) fn refresh(&self, snapshot: Snapshot, counts: HashMap<String, i64>) {
        let mut st = self.state.lock();
        st.changes.retain(|c| !snapshot.sees(c.xid));
        let mut by = counts.clone();
        for c in &st.changes {
            for (d, n) in &c.deltas {
                *by.entry(d.clone()).or_default() += n;
            }
        }
        self.total.store(by.values().sum(), Ordering::Relaxed);
        st.base = counts;
        st.by_destination = by;
        st.snapshot = Some(snapshot);
    }

    /// All pending deliveries (never negative).
    pub(super) fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed).max(0) as u64
    }

    /// Pending deliveries per destination (destinations with none left out).
    pub(super) fn by_destination(&self) -> HashMap<String, u64> {
        self.state
            .lock()
            .by_destination
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(d, n)| (d.clone(), *n as u64))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deltas(d: &[(&str, i64)]) -> HashMap<String, i64> {
        d.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn snapshots_parse_and_see() {
        let s = Snapshot::parse("10:20:12,15").unwrap();
        assert!(s.sees(9));
        assert!(s.sees(11));
        assert!(!s.sees(12));
        assert!(s.sees(13));
        assert!(!s.sees(15));
        assert!(!s.sees(20));
        assert!(!s.sees(25));
        assert_eq!(Snapshot::parse("5:5:").unwrap().xip, Vec::<u64>::new());
        assert!(Snapshot::parse("x:1:").is_none());
        assert!(Snapshot::parse("1:2:a").is_none());
        assert!(Snapshot::parse("").is_none());
    }

    #[test]
    fn a_change_is_counted_once_whichever_comes_first() {
        let p = PendingCounts::default();
        p.refresh(Snapshot::parse("100:100:").unwrap(), deltas(&[("a", 5)]));
        assert_eq!(p.total(), 5);
        // Committed after the count: added.
        p.record(100, deltas(&[("a", 2)]));
        assert_eq!(p.total(), 7);
        // A count that sees xid 100 replaces it.
        p.refresh(Snapshot::parse("101:101:").unwrap(), deltas(&[("a", 7)]));
        assert_eq!(p.total(), 7);
        // A change recorded late whose transaction the count already saw.
        p.record(100, deltas(&[("a", 2)]));
        assert_eq!(p.total(), 7);
        // In progress when counted: not in the count, kept on top.
        p.record(105, deltas(&[("b", 3)]));
        p.refresh(Snapshot::parse("101:110:105").unwrap(), deltas(&[("a", 7)]));
        assert_eq!(p.total(), 10);
        assert_eq!(p.by_destination()["b"], 3);
        // A transaction that started after the count.
        p.record(110, deltas(&[("a", -7)]));
        assert_eq!(p.total(), 3);
        assert!(!p.by_destination().contains_key("a"));
    }
}
