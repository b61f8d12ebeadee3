//! TLS on both listeners: webhooks and the admin API over HTTPS with a CA
//! made here, HTTP/2 on the admin listener, certificates replaced without a
//! restart, TLS 1.1 and plain HTTP refused without harm, and `check` on bad
//! PEM files.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SerialNumber};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::console::Browser;
use crate::harness::{app_to_svc, config_text, eventually, Gateway, Receiver, ADMIN_TOKEN};

/// A CA made for one test, and the files of the certificates it issues.
struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
    dir: tempfile::TempDir,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "hookgate test CA");
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            params,
            key,
            pem,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Issues a certificate for `localhost` with `serial` and writes it and
    /// its key to `<name>.crt` and `<name>.key`; returns its DER.
    fn issue(&self, name: &str, serial: u64) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.serial_number = Some(SerialNumber::from(serial));
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        // The key first: the files' watcher then never sees a new
        // certificate with the old key.
        std::fs::write(self.key_path(name), key.serialize_pem()).unwrap();
        std::fs::write(self.cert_path(name), cert.pem()).unwrap();
        cert.der().clone()
    }

    fn cert_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.crt"))
    }

    fn key_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.key"))
    }

    /// The `tls = { … }` value of the files of `name`.
    fn setting(&self, name: &str) -> String {
        format!(
            "{{ cert = \"{}\", key = \"{}\" }}",
            self.cert_path(name).display(),
            self.key_path(name).display()
        )
    }

    /// An HTTPS client trusting only this CA.
    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.pem.as_bytes()).unwrap())
            .resolve("localhost", "127.0.0.1:0".parse().unwrap())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    /// The certificate a TLS handshake with `port` presents.
    async fn served(&self, port: u16) -> CertificateDer<'static> {
        let tls = self.connect(port, vec![]).await;
        tls.get_ref().1.peer_certificates().unwrap()[0].clone()
    }

    /// A TLS connection to `port` trusting only this CA, offering `alpn`.
    async fn connect(
        &self,
        port: u16,
        alpn: Vec<Vec<u8>>,
    ) -> tokio_rustls::client::TlsStream<TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        let ca: CertificateDer<'static> = PemObject::from_pem_slice(self.pem.as_bytes()).unwrap();
        roots.add(ca).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut config = config;
        config.alpn_protocols = alpn;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap()
    }
}

/// A gateway in this process, started from its config file as `serve` does
/// (so that a reload reads the file again).
struct TlsGateway {
    running: Option<hookgate::app::Running>,
    ingest: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for TlsGateway {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop();
        }
    }
}

/// A gateway with TLS on ingest (files `ingest`) and on the admin listener
/// (files `admin`), delivering source `app` to `rx`.
async fn gateway(ca: &Ca, rx: &Receiver) -> TlsGateway {
    gateway_with(ca, rx, "").await
}

/// [`gateway`] with `server_extra` lines in `[server]`.
async fn gateway_with(ca: &Ca, rx: &Receiver, server_extra: &str) -> TlsGateway {
    ca.issue("ingest", 1);
    ca.issue("admin", 2);
    let extra = format!(
        "tls = {}\nadmin_tls = {}\n{server_extra}",
        ca.setting("ingest"),
        ca.setting("admin")
    );
    let dir = tempfile::tempdir().unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let text = config_text(&app_to_svc(rx, None, ""), &extra, any, any, dir.path());
    let path = dir.path().join("hookgate.toml");
    std::fs::write(&path, text).unwrap();
    let cfg = hookgate::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let running = hookgate::app::start(cfg, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("the gateway did not start: {e}"));
    TlsGateway {
        ingest: running.ingest_addr,
        admin: running.admin_addr,
        running: Some(running),
        _dir: dir,
    }
}

#[tokio::test]
async fn webhooks_and_the_admin_api_over_https_with_http2_on_admin() {
    let (ca, rx) = (Ca::new(), Receiver::start().await);
    let gw = gateway(&ca, &rx).await;
    let client = ca.client();

    let r = client
        .post(format!("https://localhost:{}/in/app", gw.ingest.port()))
        .body(r#"{"hello":"tls"}"#)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        r.version(),
        http::Version::HTTP_11,
        "ingest offers http/1.1 only"
    );
    let got = rx.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got[0].body.as_ref(), br#"{"hello":"tls"}"#);

    let r = client
        .get(format!(
            "https://localhost:{}/api/v1/messages",
            gw.admin.port()
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), http::Version::HTTP_2, "h2 by ALPN on admin");
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["data"].as_array().is_some_and(|d| !d.is_empty()),
        "{body}"
    );

    // A client without the CA does not get through.
    let plain = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    assert!(plain
        .get(format!("https://127.0.0.1:{}/healthz", gw.admin.port()))
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn replaced_certificates_are_served_without_a_restart() {
    let (ca, rx) = (Ca::new(), Receiver::start().await);
    let gw = gateway(&ca, &rx).await;
    let (ingest, admin) = (gw.ingest.port(), gw.admin.port());
    let first = ca.served(ingest).await;
    assert_eq!(ca.served(admin).await, ca_der(&ca, "admin"));

    // An open connection keeps working across the swap.
    let client = ca.client();
    let health = format!("https://localhost:{admin}/healthz");
    assert!(client
        .get(&health)
        .send()
        .await
        .unwrap()
        .status()
        .is_success());

    // Replaced, then reloaded through the API: served from the answer on.
    let second = ca.issue("ingest", 10);
    assert_ne!(first, second);
    let r = client
        .post(format!("https://localhost:{admin}/api/v1/reload"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(ca.served(ingest).await, second);
    assert!(client
        .get(&health)
        .send()
        .await
        .unwrap()
        .status()
        .is_success());

    // Replaced with no signal at all: the files' watcher loads them.
    let third = ca.issue("ingest", 11);
    let new_admin = ca.issue("admin", 12);
    eventually(Duration::from_secs(20), "the watcher's reload", || async {
        (ca.served(ingest).await == third && ca.served(admin).await == new_admin).then_some(())
    })
    .await;

    // A broken file: the reload is refused naming the file, and the running
    // certificate stays.
    std::fs::write(ca.cert_path("ingest"), "-----BEGIN CERTIFICATE-----\n!!\n").unwrap();
    let r = client
        .post(format!("https://localhost:{admin}/api/v1/reload"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let text = r.text().await.unwrap();
    assert!(text.contains("ingest.crt"), "{text}");
    assert_eq!(ca.served(ingest).await, third);
    // A key that is not the certificate's: the same.
    let other = KeyPair::generate().unwrap();
    ca.issue("ingest", 13);
    std::fs::write(ca.key_path("ingest"), other.serialize_pem()).unwrap();
    let r = client
        .post(format!("https://localhost:{admin}/api/v1/reload"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let text = r.text().await.unwrap();
    assert!(text.contains("does not match"), "{text}");
    assert_eq!(ca.served(ingest).await, third);
}

/// The DER of the certificate file `name`.
fn ca_der(ca: &Ca, name: &str) -> CertificateDer<'static> {
    let pem = std::fs::read(ca.cert_path(name)).unwrap();
    PemObject::from_pem_slice(&pem).unwrap()
}

/// A TLS 1.1 ClientHello (legacy version 3.2, no `supported_versions`), with
/// TLS_RSA_WITH_AES_128_CBC_SHA.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend([7u8; 32]); // random
    body.push(0); // no session id
    body.extend([0x00, 0x02, 0x00, 0x2f]); // one cipher suite
    body.extend([0x01, 0x00]); // null compression
    let mut hs = vec![0x01, 0, (body.len() >> 8) as u8, body.len() as u8];
    hs.extend(body);
    let mut record = vec![0x16, 0x03, 0x02, (hs.len() >> 8) as u8, hs.len() as u8];
    record.extend(hs);
    record
}

/// Reads what the server sends until it closes (at most 5 s).
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    out
}

#[tokio::test]
async fn tls_1_1_and_plain_http_are_refused_without_harm() {
    let (ca, rx) = (Ca::new(), Receiver::start().await);
    let gw = gateway(&ca, &rx).await;
    for port in [gw.ingest.port(), gw.admin.port()] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(&tls11_client_hello()).await.unwrap();
        let answer = read_to_close(&mut s).await;
        // One fatal alert record, handshake_failure (40) or
        // protocol_version (70), and the connection closed.
        assert!(
            answer.len() == 7
                && answer[0] == 0x15
                && answer[5] == 2
                && [40, 70].contains(&answer[6]),
            "{answer:?}"
        );

        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let answer = read_to_close(&mut s).await;
        assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    }
    // Both listeners still serve.
    let client = ca.client();
    let r = client
        .post(format!("https://localhost:{}/in/app", gw.ingest.port()))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let r = client
        .get(format!("https://localhost:{}/healthz", gw.admin.port()))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

/// `check` on a config whose certificate files are missing, not PEM, or do
/// not match.
#[test]
fn check_loads_the_files_and_names_them() {
    let ca = Ca::new();
    ca.issue("good", 1);
    ca.issue("other", 2);
    std::fs::write(
        ca.key_path("secret"),
        "-----BEGIN PRIVATE KEY-----\nTOPSECRETKEYMATERIAL\n",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = |server: &str| {
        let path: PathBuf = dir.path().join("c.toml");
        std::fs::write(&path, format!("[server]\n{server}\n")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .arg("check")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let path: PathBuf = dir.path().join("c.toml");
    let (ok, err) = run(&format!(
        "tls = {}\nadmin_tls = {}",
        ca.setting("good"),
        ca.setting("other")
    ));
    assert!(ok, "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("(TLS: ") && summary.contains("good.crt"),
        "{summary}"
    );

    let missing = Path::new("/nonexistent/x.crt");
    let (ok, err) = run(&format!(
        "tls = {{ cert = \"{}\", key = \"{}\" }}\nadmin_tls = {{ cert = \"{}\", key = \"{}\" }}",
        missing.display(),
        ca.key_path("good").display(),
        ca.cert_path("good").display(),
        ca.key_path("secret").display(),
    ));
    assert!(!ok);
    assert!(err.contains("c.toml:2:") && err.contains("x.crt"), "{err}");
    assert!(
        err.contains("c.toml:3:") && err.contains("secret.key"),
        "{err}"
    );
    assert!(!err.contains("TOPSECRET"), "{err}");

    let (ok, err) = run(&format!(
        "tls = {{ cert = \"{}\", key = \"{}\" }}",
        ca.cert_path("good").display(),
        ca.key_path("other").display(),
    ));
    assert!(!ok);
    assert!(err.contains("does not match"), "{err}");
}

/// The real binary with TLS on ingest only: SIGHUP moves ingest to the files
/// a changed `tls` names (files the watcher does not look at), and the
/// console's **Send test webhook** posts to the HTTPS ingest.
#[tokio::test]
async fn sighup_applies_new_certificate_paths_and_the_console_posts_over_https() {
    let (ca, rx) = (Ca::new(), Receiver::start().await);
    let first = ca.issue("ingest", 1);
    let body = format!(
        "[[sources]]\nname = \"gh\"\nverify = {{ type = \"github\", secret = \"gh-secret\" }}\n\n\
         [[routes]]\nsource = \"gh\"\nto = \"svc\"\n\n{}",
        app_to_svc(&rx, None, "")
    );
    let gw = Gateway::binary_opts(&body, &format!("tls = {}\n", ca.setting("ingest")), &[]).await;
    let port = gw.ingest.port();
    assert_eq!(ca.served(port).await, first);

    let second = ca.issue("moved", 5);
    let text = std::fs::read_to_string(&gw.config)
        .unwrap()
        .replace(&ca.setting("ingest"), &ca.setting("moved"));
    std::fs::write(&gw.config, text).unwrap();
    let hup = Command::new("kill")
        .arg("-HUP")
        .arg(gw.pid().to_string())
        .status()
        .unwrap();
    assert!(hup.success());
    eventually(Duration::from_secs(20), "the SIGHUP reload", || async {
        (ca.served(port).await == second).then_some(())
    })
    .await;
    assert!(gw.log().contains("server.tls changed"), "{}", gw.log());

    let mut b = Browser::new(&gw);
    assert_eq!(b.login(ADMIN_TOKEN).await, reqwest::StatusCode::SEE_OTHER);
    let csrf = crate::console::csrf_field(&b.page("/sources").await);
    let r = b
        .post("/sources/gh/test", &[("csrf", &csrf)], "same-origin")
        .await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Accepted: ingest answered 200") && html.contains("https://"),
        "{html}"
    );
    rx.wait_for(1, Duration::from_secs(20)).await;
}

/// Runs `hookgate listen` against the admin listener at `url` with `extra`
/// flags on the push destination `svc` until it exits, or until its stderr
/// satisfies `until` (then it is stopped); returns its exit code (None when
/// it was stopped) and its stderr. Panics after 20 s.
fn listen_against(url: &str, extra: &[&str], until: fn(&str) -> bool) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["listen", "--gateway", url, "--destination", "svc"])
        .args(["--forward-to", "http://127.0.0.1:9/hook"])
        .args(extra)
        .env("HOOKGATE_TOKEN", ADMIN_TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let err = Arc::new(parking_lot::Mutex::new(String::new()));
    let mut pipe = child.stderr.take().unwrap();
    let reader = {
        let err = err.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = std::io::Read::read(&mut pipe, &mut buf) {
                err.lock().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if until(&err.lock()) {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        assert!(std::time::Instant::now() < deadline, "{}", err.lock());
        std::thread::sleep(Duration::from_millis(20));
    };
    reader.join().unwrap();
    let said = err.lock().clone();
    (code, said)
}

#[tokio::test]
async fn listen_trusts_a_private_ca_with_ca_and_only_then() {
    let (ca, rx) = (Ca::new(), Receiver::start().await);
    let gw = gateway(&ca, &rx).await;
    let pem = ca.dir.path().join("ca.pem");
    std::fs::write(&pem, &ca.pem).unwrap();
    let url = format!("https://localhost:{}", gw.admin.port());
    let pem_arg = pem.to_str().unwrap().to_string();

    // Trusted: the gateway answers, and says `svc` is no pull destination.
    let u = url.clone();
    let (code, err) =
        tokio::task::spawn_blocking(move || listen_against(&u, &["--ca", &pem_arg], |_| false))
            .await
            .unwrap();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("\"svc\" is a push destination"), "{err}");

    // Not trusted: the handshake fails; listen says why and keeps trying
    // (stopped here once it has said so), never reaching the API.
    let u = url.clone();
    let (code, err) = tokio::task::spawn_blocking(move || {
        listen_against(&u, &[], |e| e.to_lowercase().contains("certificate"))
    })
    .await
    .unwrap();
    assert_eq!(code, None, "{err}");
    assert!(!err.contains("push destination"), "{err}");

    // A file that holds no certificate: a usage error naming the flag.
    let junk = ca.dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let junk_arg = junk.to_str().unwrap().to_string();
    let (code, err) =
        tokio::task::spawn_blocking(move || listen_against(&url, &["--ca", &junk_arg], |_| false))
            .await
            .unwrap();
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--ca") && err.contains("junk.pem"), "{err}");
}

/// An HTTP/2 connection to the admin listener is closed (GOAWAY, then the
/// end of the connection) once no request has been under way for the header
/// timeout, as an idle HTTP/1.1 keep-alive connection is; a request under
/// way longer than that is not cut.
#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_header_timeout() {
    let (ca, rx) = (Ca::new(), Receiver::start().await);
    let gw = gateway_with(&ca, &rx, "read_timeout = \"1s\"\n").await;
    let r = ca
        .client()
        .post(format!(
            "https://localhost:{}/api/v1/destinations",
            gw.admin.port()
        ))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"name": "q", "type": "pull"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let tls = ca.connect(gw.admin.port(), vec![b"h2".to_vec()]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let ended = tokio::spawn(async move {
        let _ = conn.await;
        started.elapsed()
    });
    // A pull that waits 2.5 s for work that never comes: under way for
    // longer than the idle limit.
    let req = http::Request::post("https://localhost/api/v1/destinations/q/pull")
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            br#"{"wait": "2500ms"}"#,
        )))
        .unwrap();
    let r = send.send_request(req).await.unwrap();
    let answered = started.elapsed();
    assert_eq!(r.status(), 200);
    assert!(answered >= Duration::from_millis(2400), "{answered:?}");
    let lasted = tokio::time::timeout(Duration::from_secs(20), ended)
        .await
        .expect("the idle connection was closed")
        .unwrap();
    assert!(lasted >= answered, "closed after {lasted:?}");
}
