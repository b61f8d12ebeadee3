//! The overview's time series: fixed rings of points, and the arithmetic that
//! turns cumulative counters and histogram buckets (as `/metrics` shows them,
//! counts since the process started) into per-interval figures.
//!
//! Invariants:
//! - A [`Ring`] never holds more than its capacity: pushing onto a full ring
//!   drops the oldest point, so memory is bounded by capacity × series.
//! - Every figure these functions return is finite (no NaN, no infinity) or
//!   absent: a counter that went backwards (a reset) counts from zero, an
//!   interval without observations has no percentile.

use std::collections::VecDeque;

/// The newest `cap` points of a series, oldest first.
#[derive(Debug, Clone)]
pub struct Ring<T> {
    points: VecDeque<T>,
    cap: usize,
}

impl<T> Ring<T> {
    /// An empty ring of at most `cap` points (at least one).
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        Ring {
            points: VecDeque::with_capacity(cap),
            cap,
        }
    }

    /// Adds the newest point, dropping the oldest when full.
    pub fn push(&mut self, p: T) {
        if self.points.len() == self.cap {
            self.points.pop_front();
        }
        self.points.push_back(p);
    }

    /// The points, oldest first.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &T> + '_ {
        self.points.iter()
    }

    /// The newest point.
    pub fn last(&self) -> Option<&T> {
        self.points.back()
    }

    /// How many points it holds.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// How many points it can hold.
    pub fn capacity(&self) -> usize {
        self.cap
    }
}

/// What a cumulative counter grew by between two readings. A counter that went
/// backwards was reset (a restart, a re-registered metric): it counted `cur`
/// since then. Non-finite or negative readings count as zero.
pub fn counter_delta(prev: f64, cur: f64) -> u64 {
    let clean = |v: f64| if v.is_finite() && v > 0.0 { v } else { 0.0 };
    let (prev, cur) = (clean(prev), clean(cur));
    let d = if cur >= prev { cur - prev } else { cur };
    d.round() as u64
}

/// A histogram as Prometheus shows it: `(upper bound, cumulative count)` per
/// bucket, bounds ascending, the last one `+Inf`.
pub type Buckets = Vec<(f64, f64)>;

/// Sorts buckets by bound and makes the counts cumulative-monotone and finite
/// (a torn read could show a bucket below the one before it).
pub fn normalise(mut b: Buckets) -> Buckets {
    b.retain(|(le, _)| !le.is_nan());
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut floor = 0.0_f64;
    for (_, c) in b.iter_mut() {
        let v = if c.is_finite() && *c > 0.0 { *c } else { 0.0 };
        floor = floor.max(v);
        *c = floor;
    }
    b
}

/// The observations between two readings of a histogram, per bucket
/// (cumulative). When the bounds differ or any bucket went backwards the
/// histogram was reset, and `cur` is the whole interval.
pub fn bucket_delta(prev: &[(f64, f64)], cur: &[(f64, f64)]) -> Buckets {
    let same =
        prev.len() == cur.len() && prev.iter().zip(cur).all(|(p, c)| p.0 == c.0 && c.1 >= p.1);
    if !same {
        return cur.to_vec();
    }
    normalise(
        prev.iter()
            .zip(cur)
            .map(|(p, c)| (c.0, c.1 - p.1))
            .collect(),
    )
}

/// The `q` quantile (0..=1) of cumulative buckets, interpolated linearly inside
/// the bucket it falls in, as Prometheus' `histogram_quantile` does. `None`
/// without observations; a quantile in the `+Inf` bucket is the highest finite
/// bound (the histogram knows no more).
pub fn quantile(b: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = b.last()?.1;
    if total.is_nan() || total <= 0.0 || !q.is_finite() {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total;
    let (mut lower, mut below) = (0.0_f64, 0.0_f64);
    for &(le, c) in b {
        if c >= rank && c > below {
            if !le.is_finite() {
                return Some(lower);
            }
            let v = lower + (le - lower) * ((rank - below) / (c - below));
            return Some(if v.is_finite() { v.max(0.0) } else { le });
        }
        if le.is_finite() {
            lower = le;
        }
        below = c;
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INF: f64 = f64::INFINITY;

    #[test]
    fn a_ring_keeps_the_newest_points() {
        let mut r = Ring::new(3);
        assert!(r.is_empty());
        for i in 0..5 {
            r.push(i);
        }
        assert_eq!(r.iter().copied().collect::<Vec<_>>(), vec![2, 3, 4]);
        assert_eq!(r.len(), 3);
        assert_eq!(r.last(), Some(&4));
        assert_eq!(Ring::<u8>::new(0).capacity(), 1);
    }

    #[test]
    fn counters_count_growth_and_survive_resets() {
        assert_eq!(counter_delta(10.0, 15.0), 5);
        assert_eq!(counter_delta(10.0, 10.0), 0);
        assert_eq!(counter_delta(10.0, 3.0), 3, "a reset counts from zero");
        assert_eq!(counter_delta(f64::NAN, 4.0), 4);
        assert_eq!(counter_delta(2.0, f64::NAN), 0);
        assert_eq!(counter_delta(0.0, INF), 0);
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        // 10 observations: 4 in (0, 0.1], 4 in (0.1, 1], 2 in (1, 10].
        let b = [(0.1, 4.0), (1.0, 8.0), (10.0, 10.0), (INF, 10.0)];
        let p50 = quantile(&b, 0.5).unwrap();
        assert!((p50 - 0.325).abs() < 1e-9, "{p50}");
        let p99 = quantile(&b, 0.99).unwrap();
        assert!((p99 - 9.55).abs() < 1e-9, "{p99}");
        assert_eq!(quantile(&b, 0.0), Some(0.0));
    }

    #[test]
    fn empty_intervals_have_no_quantile() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[(0.1, 0.0), (INF, 0.0)], 0.5), None);
        assert_eq!(quantile(&[(0.1, 1.0), (INF, 1.0)], f64::NAN), None);
    }

    #[test]
    fn the_inf_bucket_answers_the_highest_finite_bound() {
        let b = [(0.1, 0.0), (1.0, 1.0), (INF, 10.0)];
        assert_eq!(quantile(&b, 0.99), Some(1.0));
        assert_eq!(quantile(&[(INF, 3.0)], 0.5), Some(0.0));
    }

    #[test]
    fn deltas_of_buckets_and_resets() {
        let prev = [(0.1, 4.0), (1.0, 8.0), (INF, 10.0)];
        let cur = [(0.1, 5.0), (1.0, 11.0), (INF, 14.0)];
        assert_eq!(
            bucket_delta(&prev, &cur),
            vec![(0.1, 1.0), (1.0, 3.0), (INF, 4.0)]
        );
        // Nothing new: an empty interval, no quantile.
        let none = bucket_delta(&cur, &cur);
        assert_eq!(quantile(&none, 0.5), None);
        // A bucket went backwards: the histogram restarted, `cur` is the interval.
        let reset = [(0.1, 1.0), (1.0, 1.0), (INF, 2.0)];
        assert_eq!(bucket_delta(&cur, &reset), reset);
        // Other bounds: the same.
        let other = [(0.5, 1.0), (INF, 1.0)];
        assert_eq!(bucket_delta(&cur, &other), other);
    }

    #[test]
    fn torn_or_garbage_buckets_give_finite_figures() {
        let b = normalise(vec![
            (INF, 3.0),
            (1.0, f64::NAN),
            (0.1, 2.0),
            (f64::NAN, 9.0),
            (10.0, -1.0),
        ]);
        assert_eq!(b, vec![(0.1, 2.0), (1.0, 2.0), (10.0, 2.0), (INF, 3.0)]);
        for q in [0.0, 0.5, 0.99, 1.0] {
            let v = quantile(&b, q).unwrap();
            assert!(v.is_finite() && v >= 0.0, "{q}: {v}");
        }
        let huge = [(f64::MAX, f64::MAX), (INF, f64::MAX)];
        assert!(quantile(&huge, 0.5).unwrap().is_finite());
    }
}
