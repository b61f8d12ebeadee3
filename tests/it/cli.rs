//! The command line with the real binary: start-up errors printed once,
//! `echo`'s address and secret checks.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

fn hookgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hookgate"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_reported_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookgate.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"{addr}\"\nadmin_listen = \"127.0.0.1:{}\"\n\n[storage]\npath = \"{}\"\n",
            free_port(),
            dir.path().join("db").display()
        ),
    )
    .unwrap();
    let out = hookgate()
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("cannot listen on").count(),
        1,
        "printed once:\n{err}"
    );
    assert!(err.contains(&addr.to_string()), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_listens_on_a_host_name() {
    let port = free_port();
    let mut child = hookgate()
        .args(["echo", "--listen", &format!("localhost:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://localhost:{port}/hello");
    let answer = eventually(Duration::from_secs(20), "echo answering", || async {
        let r = client().post(&url).body("hi").send().await.ok()?;
        r.text().await.ok()
    })
    .await;
    assert!(child.try_wait().unwrap().is_none(), "echo is still running");
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(answer, "ok\n");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("POST /hello"), "{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_refuses_a_secret_not_in_the_whsec_form() {
    for bad in ["notwhsec", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_***"] {
        let out = hookgate()
            .args(["echo", "--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--secret", bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--secret must be"), "{err}");
        assert!(err.contains("whsec_"), "{err}");
        assert!(!err.contains(bad), "the secret is not repeated: {err}");
    }
}
