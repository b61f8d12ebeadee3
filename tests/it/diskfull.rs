//! A full disk under the embedded store (on a small tmpfs, mounted when the
//! tests run as root): ingest is refused with room to spare, results that
//! cannot be written are held rather than re-sent, and nothing acknowledged is
//! lost or delivered more than twice.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::harness::{app_to_svc, client, Gateway, Receiver};

/// A tmpfs mounted on a temp dir, unmounted on drop (also when a test fails).
pub(crate) struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `20m`), or says why it cannot.
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map_err(|e| e.to_string())?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Err("not running as root".into());
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "mount failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: the gateway (killed just before) may still hold files open.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes a file until the filesystem is full; returns its path.
pub(crate) fn fill(dir: &Path) -> PathBuf {
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    // What is left is smaller than a chunk: take it too.
    while f.write_all(&chunk[..512]).is_ok() {}
    let _ = f.sync_all();
    p
}

/// A metric's value summed over its label sets, from `/metrics`.
async fn metric(gw: &Gateway, name: &str) -> f64 {
    gw.metrics_text()
        .await
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `/readyz`: its status and the codes of its reasons.
async fn readyz(gw: &Gateway) -> (u16, Vec<String>) {
    let r = client().get(gw.admin_url("/readyz")).send().await.unwrap();
    let status = r.status().as_u16();
    let v: serde_json::Value = r.json().await.unwrap_or_default();
    let codes = v["reasons"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["code"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    (status, codes)
}

/// Mounts the test's tmpfs, or `None` (after one line saying why) when it
/// cannot: not root, say. With `HOOKGATE_TEST_REQUIRE_TMPFS=1` (as in CI) it
/// fails instead.
pub(crate) fn tmpfs_or_skip(test: &str, size: &str) -> Option<Tmpfs> {
    match Tmpfs::mount(size) {
        Ok(fs) => Some(fs),
        Err(why) if std::env::var("HOOKGATE_TEST_REQUIRE_TMPFS").is_ok_and(|v| v == "1") => {
            panic!("{test}: cannot mount a tmpfs ({why}) and HOOKGATE_TEST_REQUIRE_TMPFS=1")
        }
        Err(why) => {
            eprintln!("SKIPPED {test}: cannot mount a tmpfs ({why})");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "soak: fills a 20 MiB tmpfs by ingest, then the rest of it (needs root)"]
async fn a_full_disk_delivers_each_message_at_most_twice() {
    let Some(fs) = tmpfs_or_skip("a_full_disk_delivers_each_message_at_most_twice", "20m") else {
        return;
    };
    let started = Instant::now();
    // Other files on the volume, deleted when "space comes back" below: the
    // gateway may use its whole reserve recording attempts before the filler
    // runs, and then deleting the filler alone would free next to nothing.
    let ballast = fs.path().join("ballast");
    std::fs::write(&ballast, vec![1u8; 2 << 20]).unwrap();
    let rx = Receiver::start().await;
    // 200s per message id, counted as they are answered.
    let ok: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    rx.respond(|_| (503, vec![], String::new()));
    let text = app_to_svc(
        &rx,
        Some(&fs.path().join("hookgate.db")),
        "timeout = \"5s\"\nretry = { max_attempts = 100, initial = \"200ms\", max = \"1s\" }",
    );
    let gw = Gateway::binary(&text).await;

    // Fill the volume by ingest while the destination answers 503, until the
    // gateway refuses (it must, with room left for its own bookkeeping).
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let refused = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (acked, refused, url) = (acked.clone(), refused.clone(), gw.ingest_url("app"));
        tasks.push(tokio::spawn(async move {
            let c = client();
            let body = "x".repeat(16 * 1024);
            for _ in 0..5000 {
                if refused.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                let r = c.post(&url).body(body.clone()).send().await.unwrap();
                match r.status().as_u16() {
                    200 => acked.lock().push(crate::harness::message_id(&r)),
                    503 => {
                        assert!(r.headers().contains_key("retry-after"));
                        refused.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    s => panic!("unexpected ingest status {s}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        refused.load(std::sync::atomic::Ordering::SeqCst),
        "ingest never refused"
    );
    let acked = acked.lock().clone();
    assert!(acked.len() > 100, "only {} messages fit", acked.len());

    // Something else takes the rest of the disk; then the destination comes back.
    let filler = fill(fs.path());
    let seen = ok.clone();
    rx.respond(move |r| {
        if let Some(id) = r.header("webhook-id") {
            *seen.lock().entry(id.to_string()).or_default() += 1;
        }
        (200, vec![], "ok".into())
    });
    // Let it run against the full disk until results fail to be written, and
    // the node says so: the gauge is 1 and `/readyz` answers 503 naming it.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let (mut gauge_seen, mut ready_seen) = (false, false);
    loop {
        let failures = metric(&gw, "hookgate_store_write_failures_total").await;
        gauge_seen |= metric(&gw, "hookgate_store_write_failing").await == 1.0;
        let (status, codes) = readyz(&gw).await;
        ready_seen |= status == 503 && codes.iter().any(|c| c == "results_unrecorded");
        if failures >= 3.0 && gauge_seen && ready_seen {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "with the disk full: {failures} failed result writes, hookgate_store_write_failing \
             at 1: {gauge_seen}, /readyz 503 results_unrecorded: {ready_seen} ({status} \
             {codes:?}); {} of {} delivered:\n{}",
            ok.lock().len(),
            acked.len(),
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let during = ok.lock().clone();
    let failures = metric(&gw, "hookgate_store_write_failures_total").await;
    eprintln!(
        "with the disk full: {} messages answered 200, {} failed result writes",
        during.len(),
        failures
    );
    // Space comes back: everything acknowledged is delivered and recorded.
    std::fs::remove_file(&filler).unwrap();
    std::fs::remove_file(&ballast).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (_, v) = gw.api_get("/api/v1/messages?status=pending&limit=10").await;
        let pending = v["data"].as_array().map_or(usize::MAX, |a| a.len());
        if pending == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "space came back, but messages are still pending ({pending} or more; {} of {} \
             delivered):\n{}",
            ok.lock().len(),
            acked.len(),
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Results are recorded again: the gauge returns to 0 and the node to ready.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let gauge = metric(&gw, "hookgate_store_write_failing").await;
        let (status, codes) = readyz(&gw).await;
        if gauge == 0.0 && status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "space came back, but hookgate_store_write_failing is {gauge} and /readyz {status} \
             {codes:?}:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = ok.lock().clone();
    for id in &acked {
        let n = got.get(id).copied().unwrap_or(0);
        assert!(n >= 1, "{id} was acknowledged but never delivered");
        assert!(n <= 2, "{id} was delivered {n} times");
    }
    let total: usize = got.values().sum();
    eprintln!("{} messages, {} successful deliveries", acked.len(), total);

    // Repeated failures are logged once per interval, not per event.
    let secs = started.elapsed().as_secs() as usize;
    let log = gw.log();
    for line in [
        "WAL checkpoint failed",
        "ingest refused",
        "could not record delivery results",
    ] {
        let n = log.lines().filter(|l| l.contains(line)).count();
        assert!(n <= secs / 10 + 2, "{n} lines of {line:?} in {secs} s");
    }
    drop(gw);
    drop(fs);
}
