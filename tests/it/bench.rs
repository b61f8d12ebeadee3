//! `hookgate bench`: the JSON report has every key with a sane type, and bad
//! flags get clear errors. Behaviour only: no figure is held to a threshold.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bench(args: &[&str], timeout: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .arg("bench")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "hookgate bench {args:?} ran over {timeout:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// The JSON report of a run that must succeed, and its stderr.
fn report(out: Output) -> (serde_json::Value, String) {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}; stderr:\n{stderr}",
        out.status
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let v = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("stdout is not one JSON object ({e}):\n{stdout}\nstderr:\n{stderr}")
    });
    (v, stderr)
}

#[test]
fn a_short_bench_reports_every_figure_as_json() {
    let out = bench(
        &[
            "--json",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--connections",
            "8",
            "--rate",
            "200",
            "--backlog",
            "1000",
        ],
        Duration::from_secs(120),
    );
    let (v, stderr) = report(out);
    assert!(v.is_object());

    for key in [
        "baseline_rps",
        "ingest_rps",
        "ingest_vs_baseline",
        "ack_p50_ms",
        "ack_p99_ms",
        "ack_p999_ms",
        "delivered_per_s",
        "lag_p99_ms",
        "rss_mb",
        "backlog_rss_mb",
        "restart_to_first_delivery_ms",
        "drain_per_s",
        "drain_vs_baseline",
    ] {
        let x = v[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} is not a number: {}\nstderr:\n{stderr}", v[key]));
        assert!(x.is_finite() && x >= 0.0, "{key} = {x}");
    }
    for key in [
        "baseline_rps",
        "ingest_rps",
        "delivered_per_s",
        "rss_mb",
        "drain_per_s",
    ] {
        assert!(
            v[key].as_f64().unwrap() > 0.0,
            "{key} is 0\nstderr:\n{stderr}"
        );
    }
    let p = |k: &str| v[k].as_f64().unwrap();
    assert!(p("ack_p50_ms") <= p("ack_p99_ms") && p("ack_p99_ms") <= p("ack_p999_ms"));
    assert_eq!(
        v["backlog_messages"], 1000,
        "every backlog message accepted"
    );
    assert_eq!(
        v["backlog_delivered"], 1000,
        "every backlog message delivered"
    );
    assert!(v["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(!v["machine"]["kernel"].as_str().unwrap().is_empty());
    assert_eq!(v["params"]["body_size"], 1024);
    assert_eq!(v["params"]["connections"], 8);
    assert_eq!(v["params"]["rate"], 200);
    assert_eq!(v["params"]["backend"], "sqlite");
    let used = v["verify_used"].as_str().unwrap();
    assert!(used == "hmac-sha256" || used == "bearer", "{used}");
    for phase in ["baseline", "saturation", "rate", "backlog"] {
        let e = &v["errors"][phase];
        assert!(
            e["non_2xx"].is_u64() && e["errors"].is_u64(),
            "{phase}: {e}"
        );
    }
    assert!(v["notes"].is_array());
    // The table goes to stderr with --json, and the progress lines are there too.
    assert!(stderr.contains("target (issue 7)"), "{stderr}");
    assert!(stderr.contains("baseline:"), "{stderr}");
}

#[test]
fn a_skipped_phase_is_null_and_bad_flags_are_usage_errors() {
    let out = bench(
        &[
            "--json",
            "--phases",
            "baseline",
            // Long enough for the first answers on a loaded machine (300 ms
            // once saw none).
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--connections",
            "2",
        ],
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["baseline_rps"].as_f64().unwrap() > 0.0);
    assert!(v["ingest_rps"].is_null() && v["ingest_vs_baseline"].is_null());
    assert!(v["backlog_rss_mb"].is_null());

    for (args, says) in [
        (&["--verify", "maybe"][..], "maybe"),
        (&["--duration", "soon"][..], "duration"),
        (&["--body-size", "3"][..], "--body-size must be at least"),
        (&["--backend", "postgres"][..], "--pg-url"),
        (&["--phases", "everything"][..], "everything"),
    ] {
        let out = bench(args, Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn the_pull_phase_drains_every_message_through_consumers() {
    let out = bench(
        &[
            "--json",
            "--phases",
            "backlog,pull",
            "--backlog",
            "500",
            "--connections",
            "4",
            "--pull-consumers",
            "3",
            "--pull-batch",
            "40",
            "--backlog-timeout",
            "60s",
        ],
        Duration::from_secs(120),
    );
    let (v, stderr) = report(out);
    assert_eq!(v["pull_messages"], 500, "every message accepted\n{stderr}");
    assert_eq!(
        v["pull_acknowledged"], 500,
        "every message acknowledged\n{stderr}"
    );
    assert_eq!(v["pull_repeats"], 0, "{stderr}");
    assert_eq!(v["pull_not_recorded"], 0, "{stderr}");
    assert_eq!(v["backlog_delivered"], 500, "{stderr}");
    let f = |k: &str| {
        v[k].as_f64()
            .unwrap_or_else(|| panic!("{k} is not a number: {}\nstderr:\n{stderr}", v[k]))
    };
    for key in [
        "pull_per_s",
        "pull_ingest_rps",
        "drain_per_s",
        "pull_rss_mb",
    ] {
        assert!(f(key).is_finite() && f(key) > 0.0, "{key} = {}", v[key]);
    }
    // Acknowledged per second over the drain's span, as the report says.
    let per_s = 500.0 / f("pull_drain_s");
    assert!(
        (f("pull_per_s") - per_s).abs() <= per_s * 0.01 + 1.0,
        "pull_per_s {} against 500 / {} s",
        v["pull_per_s"],
        v["pull_drain_s"]
    );
    let ratio = f("pull_per_s") / f("drain_per_s");
    assert!((f("pull_vs_push_drain") - ratio).abs() < 0.01, "{ratio}");
    assert!(f("pull_call_p50_ms") > 0.0 && f("pull_call_p50_ms") <= f("pull_call_p99_ms"));
    assert!(f("pull_ack_p50_ms") > 0.0 && f("pull_ack_p50_ms") <= f("pull_ack_p99_ms"));
    // At most a batch per pull, and at least 500 / 40 pulls that returned some.
    let batch = f("pull_batch_avg");
    assert!((1.0..=40.0).contains(&batch), "{batch}");
    assert!(v["pull_calls"].as_u64().unwrap() >= 13);
    assert_eq!(v["params"]["pull_consumers"], 3);
    assert_eq!(v["params"]["pull_batch"], 40);
    assert_eq!(
        v["params"]["phases"],
        serde_json::json!(["backlog", "pull"])
    );
    assert!(v["errors"]["pull"]["non_2xx"].is_u64());
    assert!(v["baseline_rps"].is_null() && v["ingest_rps"].is_null());
    assert!(stderr.contains("pull drain, deliveries/s"), "{stderr}");
}

#[test]
fn two_postgres_nodes_share_the_load_and_the_report_says_what_each_did() {
    let server = hookgate::store::postgres::scratch::server_url();
    let addr = url::Url::parse(&server).unwrap();
    let reachable = std::net::TcpStream::connect((
        addr.host_str().unwrap_or("127.0.0.1"),
        addr.port().unwrap_or(5432),
    ))
    .is_ok();
    if !reachable {
        assert_ne!(
            std::env::var(hookgate::store::postgres::scratch::REQUIRE_VAR).as_deref(),
            Ok("1"),
            "no PostgreSQL server at {server}"
        );
        eprintln!("SKIPPED: no PostgreSQL server at {server}");
        return;
    }
    let out = bench(
        &[
            "--json",
            "--backend",
            "postgres",
            "--pg-url",
            &server,
            "--nodes",
            "2",
            "--phases",
            "saturation",
            "--duration",
            "2s",
            "--warmup",
            "500ms",
            "--connections",
            "8",
        ],
        Duration::from_secs(180),
    );
    let (v, stderr) = report(out);
    assert_eq!(v["params"]["nodes"], 2);
    assert_eq!(v["params"]["backend"], "postgres");
    let nodes = v["saturation_nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{stderr}");
    let mut acks = 0.0;
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(n["node"], i);
        let a = n["acks_per_s"].as_f64().unwrap();
        assert!(a > 0.0, "node {i} acknowledged nothing: {n}\n{stderr}");
        acks += a;
        assert!(n["delivered_per_s"].as_f64().unwrap() >= 0.0, "{n}");
        let cpu = n["cpu_share"].as_f64().unwrap();
        assert!(cpu > 0.0 && cpu <= 1.0, "{n}");
    }
    // The nodes' acks within the window are the total's (each node's window
    // starts a sampling round trip apart: a few percent at most).
    let total = v["ingest_rps"].as_f64().unwrap();
    assert!(
        (acks - total).abs() <= total * 0.1 + 1.0,
        "nodes {acks} against total {total}"
    );
    // The server runs on this machine in CI and here: its CPU is read.
    let share = v["db_cpu_share"].as_f64().unwrap();
    assert!(share > 0.0 && share <= 1.0, "{share}");
    assert!(v["db_cpu_us_per_message"].as_f64().unwrap() > 0.0);
    assert!(stderr.contains("node 1, saturation:"), "{stderr}");
    assert!(stderr.contains("database, saturation: CPU"), "{stderr}");
    // The fresh database is dropped at the end.
    let note = v["notes"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|n| {
            n.as_str()
                .filter(|n| n.starts_with("postgres: a fresh database"))
        })
        .unwrap_or_else(|| panic!("no note of the fresh database: {}", v["notes"]));
    assert!(note.contains("hookgate_scratch_"), "{note}");
}
