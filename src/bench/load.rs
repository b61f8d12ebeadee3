//! The load generator: HTTP/1.1 keep-alive connections on hyper's client, driven
//! either in a closed loop or in an open loop.
//!
//! - Closed loop (saturation): N connections, each sending its next request as
//!   soon as the last one is answered. Measures throughput.
//! - Open loop (fixed rate): a pacer thread releases request `i` at
//!   `start + i / rate`, whether or not earlier requests were answered, and the
//!   latency of each request is measured from that *scheduled* time. A server
//!   that stalls is charged for every request queued behind the stall, so
//!   coordinated omission cannot hide queueing.
//!
//! Every request carries an `x-bench: <nonce>.<run>.<seq>.<sent_ns>` header (the
//! gateway forwards original headers), and each body holds its sequence number
//! (so every body and every signature differs). The sink reads the header on
//! delivery to measure end-to-end lag on the same monotonic [`Clock`].
//!
//! Invariant: nothing here panics on a bad answer; non-2xx answers, timeouts and
//! connection errors are counted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use hmac::{Hmac, Mac};
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderName, HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use sha2::Sha256;
use tokio::net::TcpStream;

/// The header that tags every generated request.
pub const TAG_HEADER: &str = "x-bench";

/// How long one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest latency a histogram records (60 s, in microseconds).
const MAX_US: u64 = 60_000_000;

/// A new latency histogram in microseconds, 1 µs to 60 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// Nanoseconds on one monotonic clock, shared by the generator and the sink
/// (both run in the bench process), so lag needs no clock synchronisation.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base: Instant,
}

impl Clock {
    /// A clock whose zero is now.
    pub fn new() -> Self {
        Clock {
            base: Instant::now(),
        }
    }

    /// Nanoseconds from the clock's zero to `at`.
    pub fn ns(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_nanos() as u64
    }

    /// Nanoseconds from the clock's zero to now.
    pub fn now_ns(&self) -> u64 {
        self.ns(Instant::now())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// What the `x-bench` header of one request says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    /// Random per bench invocation: deliveries left over from other runs (a
    /// shared PostgreSQL database) are not counted.
    pub nonce: u64,
    /// Which phase sent it.
    pub run: u8,
    /// Sequence number within the phase, from 0.
    pub seq: u64,
    /// When it was sent (closed loop) or scheduled (open loop), on the [`Clock`].
    pub sent_ns: u64,
}

impl Tag {
    /// The header value.
    pub fn encode(&self) -> HeaderValue {
        let s = format!(
            "{:x}.{}.{}.{}",
            self.nonce, self.run, self.seq, self.sent_ns
        );
        HeaderValue::from_str(&s).expect("digits and dots are a valid header value")
    }

    /// Parses a header value; `None` when it is not one of ours.
    pub fn parse(v: &[u8]) -> Option<Tag> {
        let s = std::str::from_utf8(v).ok()?;
        let mut it = s.split('.');
        let tag = Tag {
            nonce: u64::from_str_radix(it.next()?, 16).ok()?,
            run: it.next()?.parse().ok()?,
            seq: it.next()?.parse().ok()?,
            sent_ns: it.next()?.parse().ok()?,
        };
        it.next().is_none().then_some(tag)
    }
}

/// How generated requests authenticate themselves to the gateway.
#[derive(Clone)]
pub enum Auth {
    /// Not at all (the baseline, or `--verify off`).
    None,
    /// Hex HMAC-SHA256 of the body in a header, computed per request.
    Hmac {
        /// The signature header.
        header: HeaderName,
        /// The keyed MAC, cloned for each body (so the key schedule runs once).
        mac: Hmac<Sha256>,
    },
    /// A fixed `Authorization: Bearer` token.
    Bearer(HeaderValue),
}

impl Auth {
    /// HMAC-SHA256 with `secret`, in `header`.
    pub fn hmac(header: &str, secret: &[u8]) -> Result<Auth, String> {
        Ok(Auth::Hmac {
            header: HeaderName::from_bytes(header.as_bytes())
                .map_err(|_| format!("{header:?} is not a header name"))?,
            mac: Hmac::new_from_slice(secret).map_err(|e| e.to_string())?,
        })
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(token: &str) -> Result<Auth, String> {
        HeaderValue::from_str(&format!("Bearer {token}"))
            .map(Auth::Bearer)
            .map_err(|_| "the bearer token is not a valid header value".to_string())
    }

    fn header(&self, body: &[u8]) -> Option<(HeaderName, HeaderValue)> {
        match self {
            Auth::None => None,
            Auth::Hmac { header, mac } => {
                let mut mac = mac.clone();
                mac.update(body);
                let sig = hex::encode(mac.finalize().into_bytes());
                let v = HeaderValue::from_str(&sig).expect("hex is a valid header value");
                Some((header.clone(), v))
            }
            Auth::Bearer(v) => Some((http::header::AUTHORIZATION, v.clone())),
        }
    }
}

/// Digits of the sequence number in the body (fixed width, so every body has
/// exactly the requested size).
const SEQ_DIGITS: usize = 16;

/// A JSON body of exactly `size` bytes shaped like a provider event (id, type,
/// created, data object), padded in `data.object.note`. Returns the bytes and the
/// offset of the [`SEQ_DIGITS`] sequence digits in the id.
pub fn body_template(size: usize) -> Result<(Vec<u8>, usize), String> {
    let head = r#"{"id":"evt_"#;
    let mid = concat!(
        r#"","object":"event","type":"order.created","created":1700000000,"#,
        r#""livemode":false,"data":{"object":{"id":"ord_bench","object":"order","#,
        r#""amount":1999,"currency":"usd","status":"paid","customer":"cus_bench","note":""#
    );
    let tail = r#""}}}"#;
    let fixed = head.len() + SEQ_DIGITS + mid.len() + tail.len();
    if size < fixed {
        return Err(format!(
            "--body-size must be at least {fixed} bytes (the JSON envelope)"
        ));
    }
    let mut b = Vec::with_capacity(size);
    b.extend_from_slice(head.as_bytes());
    let at = b.len();
    b.extend_from_slice(&[b'0'; SEQ_DIGITS]);
    b.extend_from_slice(mid.as_bytes());
    // Printable padding, like the free text of a real event.
    let pad = b"lorem ipsum dolor sit amet ";
    for i in 0..size - fixed {
        b.push(pad[i % pad.len()]);
    }
    b.extend_from_slice(tail.as_bytes());
    debug_assert_eq!(b.len(), size);
    Ok((b, at))
}

/// The requests one phase sends: target, body shape, authentication, tag.
pub struct Workload {
    /// Where to send (the first node).
    pub addr: SocketAddr,
    /// Every node the connections are spread over, round-robin (connection
    /// `i` goes to node `i % nodes.len()`); `[addr]` unless [`Workload::spread`].
    pub nodes: Vec<SocketAddr>,
    /// The request path, e.g. `/in/bench`.
    pub path: String,
    template: Bytes,
    seq_at: usize,
    auth: Auth,
    /// The invocation's nonce.
    pub nonce: u64,
    /// The phase's run number (see the sink).
    pub run: u8,
    /// The shared clock.
    pub clock: Clock,
}

impl Workload {
    /// A workload of `body_size`-byte JSON bodies.
    pub fn new(
        addr: SocketAddr,
        path: &str,
        body_size: usize,
        auth: Auth,
        nonce: u64,
        run: u8,
        clock: Clock,
    ) -> Result<Self, String> {
        let (template, seq_at) = body_template(body_size)?;
        Ok(Workload {
            addr,
            nodes: vec![addr],
            path: path.to_string(),
            template: Bytes::from(template),
            seq_at,
            auth,
            nonce,
            run,
            clock,
        })
    }

    /// The same requests spread over `nodes` (at least one), round-robin by connection.
    pub fn spread(mut self, nodes: Vec<SocketAddr>) -> Self {
        if let Some(first) = nodes.first() {
            self.addr = *first;
            self.nodes = nodes;
        }
        self
    }

    /// The node of connection `i`.
    fn node_of(&self, i: usize) -> usize {
        i % self.nodes.len().max(1)
    }

    /// The body of message `seq` and its authentication header (the costly part
    /// of building a request, done before the latency clock starts).
    fn prepare(&self, seq: u64) -> (Bytes, Option<(HeaderName, HeaderValue)>) {
        let mut body = BytesMut::from(&self.template[..]);
        let mut n = seq;
        for i in (0..SEQ_DIGITS).rev() {
            body[self.seq_at + i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        let body = body.freeze();
        let auth = self.auth.header(&body);
        (body, auth)
    }

    /// The request for message `seq`, tagged with its send (or scheduled) time.
    fn request(
        &self,
        host: &HeaderValue,
        prepared: (Bytes, Option<(HeaderName, HeaderValue)>),
        seq: u64,
        sent_ns: u64,
    ) -> Request<Full<Bytes>> {
        let (body, auth) = prepared;
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = http::Uri::try_from(self.path.as_str()).unwrap_or_default();
        let h = req.headers_mut();
        h.insert(HOST, host.clone());
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let tag = Tag {
            nonce: self.nonce,
            run: self.run,
            seq,
            sent_ns,
        };
        h.insert(TAG_HEADER, tag.encode());
        if let Some((k, v)) = auth {
            h.insert(k, v);
        }
        req
    }
}

/// Counts of one phase (or one worker's share of it).
#[derive(Debug, Clone)]
pub struct Tally {
    /// 2xx answers.
    pub ok: u64,
    /// Other answers.
    pub non_2xx: u64,
    /// Timeouts and connection errors.
    pub errors: u64,
    /// Latency of the 2xx answers, in microseconds.
    pub latency_us: Histogram<u64>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            ok: 0,
            non_2xx: 0,
            errors: 0,
            latency_us: histogram(),
        }
    }

    fn merge(&mut self, o: &Tally) {
        self.ok += o.ok;
        self.non_2xx += o.non_2xx;
        self.errors += o.errors;
        let _ = self.latency_us.add(&o.latency_us);
    }

    fn count(&mut self, outcome: &Outcome, latency: Duration) {
        match outcome {
            o if o.is_2xx() => {
                self.ok += 1;
                self.latency_us
                    .saturating_record((latency.as_micros() as u64).clamp(1, MAX_US));
            }
            Outcome::Status(_) => self.non_2xx += 1,
            Outcome::Error => self.errors += 1,
        }
    }
}

/// Live counters of a running phase, for the progress line.
#[derive(Debug, Default)]
pub struct Live {
    /// Answers of any kind so far.
    pub done: AtomicU64,
    /// 2xx answers so far (warm-up included).
    pub acked: AtomicU64,
    /// Non-2xx answers and errors so far.
    pub failed: AtomicU64,
}

/// What a phase measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// The measurement window (warm-up excluded).
    pub window: Duration,
    /// Answers within the window.
    pub tally: Tally,
    /// 2xx answers over the whole phase, warm-up and tail included: the number
    /// of messages the gateway accepted, and so the deliveries to expect.
    pub acked_total: u64,
    /// Open loop: how late the pacer released requests, in microseconds.
    pub pacer_late_us: Option<Histogram<u64>>,
    /// 2xx answers within the window per node (the workload's `nodes`).
    pub per_node_ok: Vec<u64>,
}

impl LoadReport {
    /// 2xx answers per second within the window.
    pub fn rps(&self) -> f64 {
        per_second(self.tally.ok, self.window)
    }
}

/// `n` per `window`, as a rate.
pub fn per_second(n: u64, window: Duration) -> f64 {
    if window.is_zero() {
        0.0
    } else {
        n as f64 / window.as_secs_f64()
    }
}

enum Outcome {
    Status(u16),
    Error,
}

impl Outcome {
    fn is_2xx(&self) -> bool {
        matches!(self, Outcome::Status(s) if (200..300).contains(s))
    }
}

/// One keep-alive connection, reconnected after an error.
struct Conn {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Self {
        Conn { addr, sender: None }
    }

    async fn connect(addr: SocketAddr) -> Option<SendRequest<Full<Bytes>>> {
        let stream = TcpStream::connect(addr).await.ok()?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Some(sender)
    }

    /// Sends one request and reads the whole answer. An error drops the
    /// connection (the next call reconnects).
    async fn send(&mut self, req: Request<Full<Bytes>>) -> Outcome {
        let r = tokio::time::timeout(REQUEST_TIMEOUT, async {
            if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
                self.sender = Conn::connect(self.addr).await;
            }
            let sender = self.sender.as_mut()?;
            sender.ready().await.ok()?;
            let resp = sender.send_request(req).await.ok()?;
            let status = resp.status().as_u16();
            resp.into_body().collect().await.ok()?;
            Some(status)
        })
        .await;
        match r {
            Ok(Some(status)) => Outcome::Status(status),
            _ => {
                self.sender = None;
                Outcome::Error
            }
        }
    }
}

/// One connection's worker: sends requests, counts what comes back.
struct Worker {
    w: Arc<Workload>,
    live: Arc<Live>,
    /// Its node's index in the workload's `nodes`.
    node: usize,
    host: HeaderValue,
    conn: Conn,
    /// Answers within the measurement window.
    tally: Tally,
    /// 2xx answers over the whole phase.
    acked: u64,
    /// When the last answer came.
    last: Option<Instant>,
}

impl Worker {
    /// The worker of connection `i`.
    fn new(w: Arc<Workload>, live: Arc<Live>, i: usize) -> Self {
        let node = w.node_of(i);
        let addr = w.nodes.get(node).copied().unwrap_or(w.addr);
        Worker {
            conn: Conn::new(addr),
            host: HeaderValue::from_str(&addr.to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
            node,
            w,
            live,
            tally: Tally::new(),
            acked: 0,
            last: None,
        }
    }

    /// Sends message `seq`. Its latency (and its tag's send time) starts at
    /// `scheduled` in the open loop, else just before the request is written
    /// (after the body and signature are built). Returns the outcome, the
    /// start and the time of the answer.
    async fn send(&mut self, seq: u64, scheduled: Option<Instant>) -> (Outcome, Instant, Instant) {
        let prepared = self.w.prepare(seq);
        let start = scheduled.unwrap_or_else(Instant::now);
        let req = self
            .w
            .request(&self.host, prepared, seq, self.w.clock.ns(start));
        let outcome = self.conn.send(req).await;
        let done = Instant::now();
        self.last = Some(done);
        self.live.done.fetch_add(1, Ordering::Relaxed);
        if outcome.is_2xx() {
            self.acked += 1;
            self.live.acked.fetch_add(1, Ordering::Relaxed);
        } else {
            self.live.failed.fetch_add(1, Ordering::Relaxed);
        }
        (outcome, start, done)
    }
}

/// What the workers of a phase counted together.
struct Joined {
    /// The window's tally.
    tally: Tally,
    /// 2xx answers of the whole phase.
    acked: u64,
    /// The time of the last answer.
    last: Option<Instant>,
    /// The window's 2xx answers per node.
    per_node_ok: Vec<u64>,
}

/// Waits for every worker and adds up their counts.
async fn join(nodes: usize, workers: Vec<tokio::task::JoinHandle<Worker>>) -> Joined {
    let mut j = Joined {
        tally: Tally::new(),
        acked: 0,
        last: None,
        per_node_ok: vec![0; nodes.max(1)],
    };
    for t in workers {
        if let Ok(w) = t.await {
            j.tally.merge(&w.tally);
            j.acked += w.acked;
            j.last = j.last.max(w.last);
            if let Some(n) = j.per_node_ok.get_mut(w.node) {
                *n += w.tally.ok;
            }
        }
    }
    j
}

/// Closed loop: `connections` connections send back to back. Requests answered
/// within `[warmup, warmup + duration)` are counted. With `limit`, the phase
/// stops after that many requests (or at `warmup + duration`, whichever is
/// first) and the window is the time the requests took.
pub async fn closed_loop(
    w: Arc<Workload>,
    connections: usize,
    warmup: Duration,
    duration: Duration,
    limit: Option<u64>,
    live: Arc<Live>,
) -> LoadReport {
    let from = Instant::now() + warmup;
    let until = from + duration;
    let next = Arc::new(AtomicU64::new(0));
    let nodes = w.nodes.len();
    let workers = (0..connections)
        .map(|i| {
            let mut worker = Worker::new(w.clone(), live.clone(), i);
            let next = next.clone();
            tokio::spawn(async move {
                while Instant::now() < until {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    if limit.is_some_and(|n| seq >= n) {
                        break;
                    }
                    let (outcome, start, done) = worker.send(seq, None).await;
                    if done >= from && done < until {
                        worker.tally.count(&outcome, done - start);
                    }
                    if matches!(outcome, Outcome::Error) {
                        // A dead server refuses at once: do not spin on it.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                worker
            })
        })
        .collect();
    let j = join(nodes, workers).await;
    let window = match limit {
        // A counted phase ends when its last answer came.
        Some(_) => j
            .last
            .map_or(Duration::ZERO, |l| l.saturating_duration_since(from)),
        None => duration,
    };
    LoadReport {
        window,
        tally: j.tally,
        acked_total: j.acked,
        pacer_late_us: None,
        per_node_ok: j.per_node_ok,
    }
}

/// One scheduled request of the open loop.
struct Job {
    seq: u64,
    scheduled: Instant,
}

/// Open loop: `rate` requests per second for `warmup + duration` over at most
/// `connections` connections. Latency runs from each request's scheduled time;
/// requests scheduled within the window are counted.
pub async fn open_loop(
    w: Arc<Workload>,
    connections: usize,
    rate: u32,
    warmup: Duration,
    duration: Duration,
    live: Arc<Live>,
) -> LoadReport {
    let start = Instant::now() + Duration::from_millis(5);
    let from = start + warmup;
    let until = from + duration;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Job>();

    // The pacer is an OS thread: the runtime's timer ticks in milliseconds,
    // coarser than the gap between requests at a few thousand per second.
    let pacer = std::thread::Builder::new()
        .name("bench-pacer".into())
        .spawn(move || {
            let mut late = histogram();
            let mut seq = 0u64;
            loop {
                let at = start + interval.mul_f64(seq as f64);
                if at >= until {
                    break;
                }
                let now = Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                }
                let lateness = Instant::now().saturating_duration_since(at);
                late.saturating_record((lateness.as_micros() as u64).clamp(1, MAX_US));
                if tx.send(Job { seq, scheduled: at }).is_err() {
                    break;
                }
                seq += 1;
            }
            late
        })
        .expect("spawn the pacer thread");

    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let nodes = w.nodes.len();
    let workers = (0..connections)
        .map(|i| {
            let mut worker = Worker::new(w.clone(), live.clone(), i);
            let rx = rx.clone();
            tokio::spawn(async move {
                loop {
                    let job = rx.lock().await.recv().await;
                    let Some(job) = job else { break };
                    let (outcome, start, done) = worker.send(job.seq, Some(job.scheduled)).await;
                    if start >= from && start < until {
                        worker
                            .tally
                            .count(&outcome, done.saturating_duration_since(start));
                    }
                }
                worker
            })
        })
        .collect();
    let j = join(nodes, workers).await;
    let late = tokio::task::spawn_blocking(move || pacer.join().ok())
        .await
        .ok()
        .flatten();
    LoadReport {
        window: duration,
        tally: j.tally,
        acked_total: j.acked,
        pacer_late_us: late,
        per_node_ok: j.per_node_ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_exact_size_and_are_json() {
        for size in [241, 256, 1024, 4096] {
            let (b, at) = body_template(size).unwrap();
            assert_eq!(b.len(), size);
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            assert_eq!(v["type"], "order.created");
            assert_eq!(&b[at..at + SEQ_DIGITS], &[b'0'; SEQ_DIGITS]);
        }
        let err = body_template(10).unwrap_err();
        assert!(err.contains("at least"), "{err}");
    }

    #[test]
    fn each_body_carries_its_sequence_number_and_signature() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let auth = Auth::hmac("X-Signature", b"secret").unwrap();
        let w = Workload::new(addr, "/in/x", 512, auth, 7, 1, Clock::new()).unwrap();
        let (b1, s1) = w.prepare(1);
        let (b2, s2) = w.prepare(1234567);
        assert_ne!(b1, b2);
        assert_eq!(b1.len(), 512);
        let v: serde_json::Value = serde_json::from_slice(&b2).unwrap();
        assert_eq!(v["id"], "evt_0000000001234567");
        let (name, sig) = s1.unwrap();
        assert_eq!(name.as_str(), "x-signature");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(&b1);
        assert_eq!(
            sig.to_str().unwrap(),
            hex::encode(mac.finalize().into_bytes())
        );
        assert_ne!(s2.unwrap().1, sig);
    }

    #[test]
    fn tags_round_trip_and_garbage_is_refused() {
        let t = Tag {
            nonce: 0xdead_beef,
            run: 3,
            seq: 42,
            sent_ns: 123_456_789,
        };
        assert_eq!(Tag::parse(t.encode().as_bytes()), Some(t));
        for bad in [
            "",
            "x",
            "1.2.3",
            "1.2.3.4.5",
            "zz.1.2.3",
            "1.999.2.3",
            "1.1.-2.3",
        ] {
            assert_eq!(Tag::parse(bad.as_bytes()), None, "{bad}");
        }
    }
}
