//! The limits both listeners hold every connection to, over raw TCP: head size
//! (431), RFC 9112 framing (400 for a missing `Host` or bare LF), header and
//! idle timeouts, and the admin listener's connection limit.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::harness::*;

const CONFIG: &str = r#"
[[sources]]
name = "app"
"#;

/// Sends `request` on a new connection and returns the status line of the
/// answer, or `None` if the connection was closed without one.
fn exchange(addr: SocketAddr, request: &[u8]) -> Option<String> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // The server may answer and close before the whole request is written.
    let _ = s.write_all(request);
    status_line(&mut s)
}

/// Reads one answer's head from `s`; `None` if the connection closed first.
fn status_line(s: &mut TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("no answer and no close: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&got);
    text.lines().next().map(str::to_string)
}

/// Whether the server closes `s` (without answering) before the 30 s read
/// timeout; the caller knows how long the server should take.
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            // hyper may answer a timed-out head with 408 before closing.
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn heads_are_limited_in_size_and_framed_as_rfc_9112_asks() {
    let gw = Gateway::start(CONFIG).await;
    let ok = b"POST /in/app HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok";
    for addr in [gw.ingest, gw.admin] {
        // A 200 KB header line, and many headers adding up past 64 KiB.
        let mut big = b"POST /in/app HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 200_000));
        big.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
        let line = exchange(addr, &big);
        assert_eq!(
            line.as_deref(),
            Some("HTTP/1.1 431 Request Header Fields Too Large")
        );
        let mut many = b"POST /in/app HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..90 {
            many.extend_from_slice(format!("X-H{i}: {}\r\n", "b".repeat(800)).as_bytes());
        }
        many.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        let line = exchange(addr, &many);
        assert_eq!(
            line.as_deref(),
            Some("HTTP/1.1 431 Request Header Fields Too Large")
        );

        for bad in [
            &b"POST /in/app HTTP/1.1\r\nContent-Length: 2\r\n\r\nok"[..],
            b"POST /in/app HTTP/1.1\r\nHost: x\r\nHost: y\r\nContent-Length: 2\r\n\r\nok",
            b"POST /in/app HTTP/1.1\nHost: x\nContent-Length: 2\n\nok",
            b"POST /in/app HTTP/1.1\r\nHost: x\nContent-Length: 2\r\n\r\nok",
            b"POST /in/app HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\nok",
        ] {
            let line = exchange(addr, bad);
            assert_eq!(
                line.as_deref(),
                Some("HTTP/1.1 400 Bad Request"),
                "{:?} on {addr}",
                String::from_utf8_lossy(bad)
            );
        }
    }
    // What is right still goes through: a head just under the limit, HTTP/1.0
    // without Host, and a body with bare LFs followed by a second request on
    // the same connection.
    let mut near = b"POST /in/app HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    near.extend(std::iter::repeat_n(b'a', 60_000));
    near.extend_from_slice(b"\r\nContent-Length: 2\r\n\r\nok");
    assert_eq!(
        exchange(gw.ingest, &near).as_deref(),
        Some("HTTP/1.1 200 OK")
    );
    let old = b"POST /in/app HTTP/1.0\r\nContent-Length: 2\r\n\r\nok";
    assert_eq!(exchange(gw.ingest, old).as_deref(), Some("HTTP/1.0 200 OK"));
    let mut s = TcpStream::connect(gw.ingest).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"POST /in/app HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\na\nb\n\n")
        .unwrap();
    assert_eq!(status_line(&mut s).as_deref(), Some("HTTP/1.1 200 OK"));
    s.write_all(ok).unwrap();
    assert_eq!(status_line(&mut s).as_deref(), Some("HTTP/1.1 200 OK"));
    s.write_all(b"GET /in/app HTTP/1.1\nHost: x\n\n").unwrap();
    assert_eq!(
        status_line(&mut s).as_deref(),
        Some("HTTP/1.1 400 Bad Request")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_listener_closes_idle_and_slow_connections() {
    let gw = Gateway::start_opts(CONFIG, "read_timeout = \"1s\"", &[]).await;
    for addr in [gw.admin, gw.ingest] {
        // Connected, never a byte.
        let mut idle = TcpStream::connect(addr).unwrap();
        // A head that never ends (slowloris).
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        // Idle after one request on a keep-alive connection.
        let mut kept = TcpStream::connect(addr).unwrap();
        kept.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert!(status_line(&mut kept).is_some());
        assert!(closed_by_server(&mut idle), "idle connection to {addr}");
        assert!(closed_by_server(&mut slow), "slowloris on {addr}");
        assert!(closed_by_server(&mut kept), "idle keep-alive on {addr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_listener_holds_at_most_admin_max_connections() {
    let gw = Gateway::start_opts(CONFIG, "admin_max_connections = 4", &[]).await;
    let get = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    // Connections of the harness's own health checks may still be open for a
    // moment: open until one is refused, and start over until exactly four
    // were served before it.
    let held = eventually(
        Duration::from_secs(30),
        "four held, the fifth refused",
        || async {
            let mut held = Vec::new();
            loop {
                let mut s = TcpStream::connect(gw.admin).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let _ = s.write_all(get);
                match status_line(&mut s) {
                    Some(line) => {
                        assert_eq!(line, "HTTP/1.1 200 OK");
                        held.push(s);
                        assert!(held.len() <= 4, "a fifth connection was served");
                    }
                    None => break,
                }
            }
            (held.len() == 4).then_some(held)
        },
    )
    .await;
    // One closed frees a slot.
    let mut held = held;
    drop(held.pop());
    eventually(Duration::from_secs(30), "a freed slot", || async {
        exchange(gw.admin, get).filter(|l| l == "HTTP/1.1 200 OK")
    })
    .await;
    // Ingest has no such limit.
    let mut many = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(gw.ingest).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(b"GET /in/none HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert_eq!(
            status_line(&mut s).as_deref(),
            Some("HTTP/1.1 404 Not Found")
        );
        many.push(s);
    }
}
