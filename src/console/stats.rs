//! Figures read from the Prometheus text of `/metrics`: counts since the
//! gateway started, at no cost to the ingest or delivery paths (they are
//! counted there anyway).

use std::collections::HashMap;

/// The samples of metric `name` (exactly that name), each with its labels.
pub fn samples(text: &str, name: &str) -> Vec<(HashMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = if let Some(rest) = rest.strip_prefix('{') {
            match rest.rsplit_once("} ") {
                Some((l, v)) => (l, v),
                None => continue,
            }
        } else if let Some(v) = rest.strip_prefix(' ') {
            ("", v)
        } else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let mut map = HashMap::new();
        for kv in labels.split("\",").filter(|kv| !kv.is_empty()) {
            if let Some((k, v)) = kv.split_once("=\"") {
                map.insert(k.trim().to_string(), v.trim_end_matches('"').to_string());
            }
        }
        out.push((map, value));
    }
    out
}

/// Sums of metric `name` by the values of labels `a` and `b`.
pub fn by_labels(text: &str, name: &str, a: &str, b: &str) -> HashMap<(String, String), f64> {
    let mut out = HashMap::new();
    for (labels, v) in samples(text, name) {
        if let (Some(x), Some(y)) = (labels.get(a), labels.get(b)) {
            *out.entry((x.clone(), y.clone())).or_insert(0.0) += v;
        }
    }
    out
}

/// Sums of metric `name` by the value of label `a`.
pub fn by_label(text: &str, name: &str, a: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for (labels, v) in samples(text, name) {
        if let Some(x) = labels.get(a) {
            *out.entry(x.clone()).or_insert(0.0) += v;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_with_their_labels() {
        let text = "# TYPE hookgate_ingest_requests_total counter\n\
            hookgate_ingest_requests_total{source=\"shop\",outcome=\"stored\"} 5\n\
            hookgate_ingest_requests_total{outcome=\"unauthorized\",source=\"shop\"} 2\n\
            hookgate_ingest_requests_total_other{source=\"shop\",outcome=\"stored\"} 9\n\
            hookgate_delivery_attempt_seconds_sum{destination=\"app\"} 0.25\n\
            hookgate_delivery_attempt_seconds_count{destination=\"app\"} 10\n\
            hookgate_store_commit_seconds_count 3\n";
        let c = by_labels(text, "hookgate_ingest_requests_total", "source", "outcome");
        assert_eq!(c[&("shop".into(), "stored".into())], 5.0);
        assert_eq!(c[&("shop".into(), "unauthorized".into())], 2.0);
        assert_eq!(c.len(), 2);
        let s = by_label(text, "hookgate_delivery_attempt_seconds_sum", "destination");
        assert_eq!(s["app"], 0.25);
        assert_eq!(
            samples(text, "hookgate_store_commit_seconds_count")[0].1,
            3.0
        );
    }
}
