//! The sink: the gateway's destination during the bench. A hyper server that
//! answers 200 and, for each delivery, records its arrival on the shared
//! [`Clock`]: lag = arrival − the generator's send time for that message, read
//! from the `x-bench` header the gateway forwards.
//!
//! Deliveries are counted per phase ("run") and per sequence number, so a
//! redelivery (delivery is at-least-once) is counted as a duplicate, not twice,
//! and a delivery tagged by another bench invocation is ignored.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use parking_lot::Mutex;
use tokio::net::TcpListener;

use super::load::{histogram, Clock, Tag, TAG_HEADER};

/// Number of distinct runs (phases) kept apart: the sink's four, and the pull
/// phase's, whose consumers record each acknowledged delivery here too.
pub const RUNS: usize = 5;

/// What the sink saw of one run.
#[derive(Debug, Clone)]
pub struct RunStats {
    /// Distinct messages delivered.
    pub distinct: u64,
    /// Deliveries of a message that had already arrived.
    pub repeats: u64,
    /// Lag of each first delivery, in microseconds.
    pub lag_us: Histogram<u64>,
    /// First arrival, on the clock (ns).
    pub first_ns: Option<u64>,
    /// Last first-arrival, on the clock (ns).
    pub last_ns: Option<u64>,
    seen: Vec<u64>,
}

impl RunStats {
    fn new() -> Self {
        RunStats {
            distinct: 0,
            repeats: 0,
            lag_us: histogram(),
            first_ns: None,
            last_ns: None,
            seen: Vec::new(),
        }
    }

    fn record(&mut self, seq: u64, lag_us: u64, at_ns: u64) {
        // A bitset of sequence numbers: a million messages cost 125 KiB.
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if word >= self.seen.len() {
            self.seen.resize((word + 1).next_power_of_two(), 0);
        }
        if self.seen[word] & (1 << bit) != 0 {
            self.repeats += 1;
            return;
        }
        self.seen[word] |= 1 << bit;
        self.distinct += 1;
        self.lag_us.saturating_record(lag_us.max(1));
        self.first_ns.get_or_insert(at_ns);
        self.last_ns = Some(at_ns);
    }
}

/// Everything the sink counts; shared with the orchestrator.
pub struct SinkStats {
    nonce: u64,
    clock: Clock,
    runs: [Mutex<RunStats>; RUNS],
    /// Every request, tagged or not.
    pub requests: AtomicU64,
    /// Requests without a tag of this invocation.
    pub foreign: AtomicU64,
}

impl SinkStats {
    /// Stats for the invocation with `nonce`.
    pub fn new(nonce: u64, clock: Clock) -> Self {
        SinkStats {
            nonce,
            clock,
            runs: std::array::from_fn(|_| Mutex::new(RunStats::new())),
            requests: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
        }
    }

    /// Records one arrival (at `at_ns`) with its tag header value.
    pub fn arrive(&self, tag: Option<&[u8]>, at_ns: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let tag = tag.and_then(Tag::parse);
        match tag {
            Some(t) if t.nonce == self.nonce && usize::from(t.run) < RUNS => {
                let lag_us = at_ns.saturating_sub(t.sent_ns) / 1000;
                self.runs[usize::from(t.run)]
                    .lock()
                    .record(t.seq, lag_us, at_ns);
            }
            _ => {
                self.foreign.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Distinct messages of `run` delivered so far.
    pub fn distinct(&self, run: u8) -> u64 {
        self.runs[usize::from(run)].lock().distinct
    }

    /// A copy of what `run` has seen so far.
    pub fn snapshot(&self, run: u8) -> RunStats {
        self.runs[usize::from(run)].lock().clone()
    }
}

/// Runs the sink on `listener` until the task is aborted.
pub async fn run(listener: TcpListener, stats: Arc<SinkStats>) {
    super::baseline::serve(listener, move |req: Request<Incoming>| {
        // Arrival is when the request's head has been read, before the body.
        let at_ns = stats.clock.now_ns();
        let stats = stats.clone();
        async move {
            let tag = req.headers().get(TAG_HEADER).map(|v| v.as_bytes().to_vec());
            let _ = req.into_body().collect().await;
            stats.arrive(tag.as_deref(), at_ns);
            Response::new(Full::new(Bytes::new()))
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distinct_deliveries_per_run_and_ignores_strangers() {
        let clock = Clock::new();
        let s = SinkStats::new(0xabc, clock);
        let tag = |run, seq, sent| {
            Tag {
                nonce: 0xabc,
                run,
                seq,
                sent_ns: sent,
            }
            .encode()
        };
        s.arrive(Some(tag(1, 5, 1_000).as_bytes()), 3_001_000);
        s.arrive(Some(tag(1, 5, 1_000).as_bytes()), 4_000_000);
        s.arrive(Some(tag(1, 700, 2_000).as_bytes()), 5_002_000);
        s.arrive(Some(tag(2, 5, 0).as_bytes()), 10_000);
        let other = Tag {
            nonce: 0xdef,
            run: 1,
            seq: 9,
            sent_ns: 0,
        }
        .encode();
        s.arrive(Some(other.as_bytes()), 1);
        s.arrive(None, 1);
        s.arrive(Some(b"junk"), 1);
        let r = s.snapshot(1);
        assert_eq!((r.distinct, r.repeats), (2, 1));
        assert_eq!(r.first_ns, Some(3_001_000));
        assert_eq!(r.last_ns, Some(5_002_000));
        assert_eq!(r.lag_us.len(), 2);
        assert!(r.lag_us.max() >= 4_999 && r.lag_us.max() <= 5_010);
        assert_eq!(s.distinct(2), 1);
        assert_eq!(s.foreign.load(Ordering::Relaxed), 3);
        assert_eq!(s.requests.load(Ordering::Relaxed), 7);
    }
}
