//! The dispatcher's behaviour on paused tokio time: ordering through failures,
//! the circuit breaker, `max_in_flight`, `rate_limit`, priorities, the retry
//! schedule and the shutdown drain. Each test runs a real dispatcher against
//! [`MemoryStore`] and a real HTTP receiver on 127.0.0.1 whose answers the test
//! scripts, with [`TokioClock`] as the wall clock.
//!
//! How the tests stay deterministic: simulated time moves only when a test calls
//! [`tokio::time::advance`]. With paused time tokio also advances the clock by
//! itself whenever the runtime has nothing to run, and it does so even while a
//! request is on its way over a socket, which would stretch an HTTP exchange
//! (and fire its timeout) at random. The tests never let the runtime go idle:
//! they wait for state with [`until`], which yields to the other tasks without
//! ever parking, so socket readiness is polled but the clock stands still. Each
//! exchange therefore takes no simulated time, and every time the tests assert
//! (arrivals, `started_at`, `next_attempt_at`) is exact. A step is taken only
//! once everything expected at the current instant has happened, and the
//! destinations' timeouts are an hour, beyond any step, as a second guard.
//!
//! A finished attempt is recorded [`RECORD_DELAY`] after it ends unless it ends
//! an ordering key, so tests step the clock by that much before asserting on
//! the store (see [`Rig::record`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::destination::Origin;
use super::*;
use crate::clock::{Clock, TokioClock};
use crate::config::Priority;
use crate::store::conformance::T0;
use crate::store::memory::MemoryStore;
use crate::store::{
    AttemptInfo, DeliveryInfo, DeliveryQuery, DeliveryStatus, MessageId, Millis, NewDelivery,
    NewMessage,
};

/// Real time a wait may take before the test fails (simulated time stands
/// still meanwhile; this only bounds a test that would otherwise hang).
const WAIT_BOUND: std::time::Duration = std::time::Duration::from_secs(20);

/// The destination every test delivers to.
const DEST: &str = "d";

/// Yields to the other tasks until a condition (which may `.await`) holds,
/// without letting simulated time pass (see the module docs).
macro_rules! until {
    ($what:expr, $cond:expr) => {{
        let started = std::time::Instant::now();
        while !$cond {
            assert!(
                started.elapsed() < WAIT_BOUND,
                "still waiting for {}",
                $what
            );
            tokio::task::yield_now().await;
        }
    }};
}

/// What the receiver answers one request.
#[derive(Debug, Clone, Copy)]
struct Reply {
    status: u16,
    /// Simulated time before the answer.
    delay: Duration,
}

impl Reply {
    fn status(status: u16) -> Self {
        Reply {
            status,
            delay: Duration::ZERO,
        }
    }
}

/// A request the receiver got.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    /// Arrival, in simulated milliseconds after the test's start.
    at: Millis,
    /// The body (each test's bodies name their message).
    body: String,
    /// The `hookgate-attempt` header.
    attempt: u32,
}

/// Decides the answer from the body and how many times (1-based) that body came.
type Script = Box<dyn Fn(&str, usize) -> Reply + Send + Sync>;

struct ReceiverState {
    clock: TokioClock,
    script: Script,
    seen: Mutex<Vec<Seen>>,
    /// Requests being answered now, and the most at any moment.
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// An HTTP receiver on 127.0.0.1, on the test's runtime.
struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
}

impl Receiver {
    async fn start(clock: TokioClock, script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ReceiverState {
            clock,
            script,
            seen: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| answer(st.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Receiver { addr, state }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().clone()
    }

    fn count(&self) -> usize {
        self.state.seen.lock().len()
    }

    /// Requests being answered now.
    fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests answered at once so far.
    fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

async fn answer(
    st: Arc<ReceiverState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let attempt = req
        .headers()
        .get("hookgate-attempt")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0);
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    let body = String::from_utf8_lossy(&body.unwrap_or_default()).into_owned();
    let nth = {
        let mut seen = st.seen.lock();
        seen.push(Seen {
            at: st.clock.now_millis() - T0,
            body: body.clone(),
            attempt,
        });
        seen.iter().filter(|s| s.body == body).count()
    };
    let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    st.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let reply = (st.script)(&body, nth);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    st.in_flight.fetch_sub(1, Ordering::SeqCst);
    let mut r = Response::new(Full::new(Bytes::from_static(b"ok")));
    *r.status_mut() = StatusCode::from_u16(reply.status).unwrap();
    Ok(r)
}

/// A dispatcher, its store and clock, and the receiver of destination [`DEST`].
struct Rig {
    store: Arc<MemoryStore>,
    dispatcher: Arc<Dispatcher>,
    rx: Receiver,
    /// Body to message id, of the messages appended.
    ids: HashMap<String, MessageId>,
}

impl Rig {
    /// A rig whose receiver answers by `script`; the destination is not added yet.
    async fn new(script: Script) -> Self {
        let clock = TokioClock::starting_at(T0);
        let store = Arc::new(MemoryStore::new());
        let dispatcher = Dispatcher::new(
            store.clone(),
            Arc::new(clock),
            client::DeliveryClient::new(false),
            client::DeliveryClient::new(false),
            false,
            Duration::from_secs(30),
        );
        Rig {
            store,
            dispatcher,
            rx: Receiver::start(clock, script).await,
            ids: HashMap::new(),
        }
    }

    /// Starts delivering to [`DEST`] with these extra destination settings
    /// (TOML lines), a one-hour timeout and a one-second retry schedule unless
    /// they say otherwise.
    fn add_destination(&self, settings: &str) -> Arc<DestinationHandle> {
        let mut text = format!(
            "[[destinations]]\nname = \"{DEST}\"\nurl = \"{}\"\n{settings}\n",
            self.rx.url()
        );
        if !settings.contains("timeout") {
            text.push_str("timeout = \"1h\"\n");
        }
        if !settings.contains("retry") {
            text.push_str("retry = { schedule = [\"0s\", \"1s\", \"1s\", \"1s\", \"1s\"] }\n");
        }
        let cfg = crate::config::parse(&text, "t.toml", &|_| None).unwrap();
        let spec =
            crate::control::compile::destination(&cfg.destinations[0], Origin::Config).unwrap();
        self.dispatcher.add(spec, DestinationState::default())
    }

    /// Stores a message for [`DEST`] whose body is `body`, due `due_in` ms from now.
    async fn append(&mut self, body: &str, key: Option<&str>, priority: Priority, due_in: Millis) {
        let now = self.now();
        let id = MessageId::new();
        self.store
            .append(NewMessage {
                id,
                source: "src".into(),
                event_type: None,
                received_at: now,
                content_type: Some("text/plain".into()),
                headers: Bytes::new(),
                body: Bytes::copy_from_slice(body.as_bytes()),
                dedup: None,
                deliveries: vec![NewDelivery {
                    destination: DEST.into(),
                    due_at: now + due_in,
                    priority,
                    ordering_key: key.map(str::to_string),
                }],
            })
            .await
            .unwrap();
        self.ids.insert(body.to_string(), id);
    }

    /// Simulated time, as the dispatcher's clock reads it.
    fn now(&self) -> Millis {
        self.dispatcher.ctx.clock.now_millis()
    }

    /// Waits until the receiver has had `n` requests in all, the dispatcher
    /// has taken in every answer (none in flight), and, [`RECORD_DELAY`] later,
    /// the store holds all `n` attempts.
    async fn exchanged(&self, n: usize, h: &DestinationHandle) {
        until!(
            format!("{n} requests answered"),
            self.rx.count() == n && h.in_flight() == 0
        );
        tokio::time::advance(RECORD_DELAY).await;
        until!(
            format!("{n} attempts recorded"),
            self.recorded_attempts().await == n
        );
    }

    /// Attempts the store has recorded, over every delivery.
    async fn recorded_attempts(&self) -> usize {
        self.deliveries()
            .await
            .iter()
            .map(|d| d.attempts as usize)
            .sum()
    }

    /// Every delivery to [`DEST`].
    async fn deliveries(&self) -> Vec<DeliveryInfo> {
        self.store
            .deliveries(&DeliveryQuery {
                destination: Some(DEST.into()),
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .items
    }

    /// The delivery of the message with this body.
    async fn delivery(&self, body: &str) -> DeliveryInfo {
        let id = self.ids[body];
        let mut d = self.store.message(id).await.unwrap().deliveries;
        assert_eq!(d.len(), 1);
        d.remove(0)
    }

    /// The recorded attempts of the message with this body.
    async fn attempts(&self, body: &str) -> Vec<AttemptInfo> {
        self.delivery(body).await.attempt_log.unwrap()
    }

    /// Asserts that every appended message has been delivered.
    async fn assert_all_delivered(&self) {
        let all = self.deliveries().await;
        assert_eq!(all.len(), self.ids.len());
        for d in all {
            assert_eq!(d.status, DeliveryStatus::Delivered, "{d:?}");
        }
    }

    /// Starts the dispatcher's shutdown in a task, and returns once it has
    /// begun (so its grace period counts from now).
    async fn shut_down(&self, grace: Duration) -> tokio::task::JoinHandle<()> {
        let dispatcher = self.dispatcher.clone();
        let task = tokio::spawn(async move { dispatcher.shutdown(grace).await });
        until!(
            "the shutdown to begin",
            self.dispatcher.ctx.stop.is_cancelled()
        );
        task
    }

    /// Moves simulated time forward to `at` ms after the start, in steps of at
    /// most `step`, so the dispatcher gets its turn at each step.
    async fn step_to(&self, at: Millis, step: Duration) {
        while self.now() - T0 < at {
            let left = Duration::from_millis((at - (self.now() - T0)) as u64);
            tokio::time::advance(left.min(step)).await;
        }
    }
}

/// The answer for everything: 200 at once.
fn always_ok() -> Script {
    ok_after(Duration::ZERO)
}

/// The answer for everything: 200 after `delay`.
fn ok_after(delay: Duration) -> Script {
    Box::new(move |_, _| Reply { status: 200, delay })
}

/// The (body, arrival) pairs of what the receiver got.
fn arrivals(seen: &[Seen]) -> Vec<(&str, Millis)> {
    seen.iter().map(|s| (s.body.as_str(), s.at)).collect()
}

/// Key A's head fails twice and then succeeds: A's later messages wait for it,
/// in order, while key B flows at once.
#[tokio::test(start_paused = true)]
async fn a_failing_head_holds_its_key_back_but_not_other_keys() {
    let mut rig = Rig::new(Box::new(|body, nth| match (body, nth) {
        ("a1", 1 | 2) => Reply::status(500),
        _ => Reply::status(200),
    }))
    .await;
    for (body, key) in [
        ("a1", "A"),
        ("a2", "A"),
        ("b1", "B"),
        ("a3", "A"),
        ("b2", "B"),
    ] {
        rig.append(body, Some(key), Priority::Normal, 0).await;
    }
    let h = rig.add_destination("retry = { schedule = [\"0s\", \"10s\", \"10s\"] }");

    // At once: a1 fails; b1 and then b2 (promoted when b1 finished) go through.
    rig.exchanged(3, &h).await;
    let a1 = rig.delivery("a1").await;
    assert_eq!(a1.status, DeliveryStatus::Pending);
    assert_eq!(a1.attempts, 1);
    assert_eq!(a1.next_attempt_at, Some(T0 + 10_000));
    for later in ["a2", "a3"] {
        let d = rig.delivery(later).await;
        assert_eq!(d.status, DeliveryStatus::Queued, "{later} waits behind a1");
        assert_eq!(d.attempts, 0);
    }
    assert_eq!(rig.delivery("b2").await.status, DeliveryStatus::Delivered);

    // The retry at 10 s fails too; the one at 20 s succeeds and releases a2, then a3.
    rig.step_to(10_000, Duration::from_secs(1)).await;
    rig.exchanged(4, &h).await;
    assert_eq!(rig.delivery("a1").await.next_attempt_at, Some(T0 + 20_000));
    assert_eq!(rig.delivery("a2").await.status, DeliveryStatus::Queued);
    rig.step_to(20_000, Duration::from_secs(1)).await;
    rig.exchanged(7, &h).await;
    rig.assert_all_delivered().await;

    let seen = rig.rx.seen();
    let mut at_start = arrivals(&seen[..3]);
    at_start.sort();
    assert_eq!(at_start, vec![("a1", 0), ("b1", 0), ("b2", 0)]);
    assert!(
        seen.iter().position(|s| s.body == "b1") < seen.iter().position(|s| s.body == "b2"),
        "b1 before b2: {seen:?}"
    );
    assert_eq!(
        arrivals(&seen[3..]),
        vec![
            ("a1", 10_000),
            ("a1", 20_000),
            ("a2", 20_000),
            ("a3", 20_000)
        ]
    );
    let tries: Vec<u32> = seen
        .iter()
        .filter(|s| s.body == "a1")
        .map(|s| s.attempt)
        .collect();
    assert_eq!(tries, vec![1, 2, 3]);
}

/// Three failures open the circuit: nothing is attempted during the cooldown;
/// then one probe goes; a failed probe reopens it for a whole cooldown, and a
/// successful one closes it and lets the rest through.
#[tokio::test(start_paused = true)]
async fn the_breaker_opens_probes_reopens_and_closes() {
    let healthy = Arc::new(AtomicBool::new(false));
    let answers_ok = healthy.clone();
    let mut rig = Rig::new(Box::new(move |_, _| {
        Reply::status(if answers_ok.load(Ordering::SeqCst) {
            200
        } else {
            500
        })
    }))
    .await;
    for body in ["m1", "m2", "m3"] {
        rig.append(body, None, Priority::Normal, 0).await;
    }
    let h = rig.add_destination("circuit_breaker = { failures = 3, cooldown = \"60s\" }");

    rig.exchanged(3, &h).await;
    assert!(h.circuit_open());
    // Due again at 1 s, but the circuit holds them until the cooldown ends.
    rig.step_to(59_999, Duration::from_secs(1)).await;
    for body in ["m1", "m2", "m3"] {
        let d = rig.delivery(body).await;
        assert_eq!(d.status, DeliveryStatus::Pending);
        assert_eq!(d.attempts, 1, "{body} was not attempted while open");
        assert_eq!(d.next_attempt_at, Some(T0 + 1_000));
    }
    assert_eq!(rig.rx.count(), 3);

    // The probe at 60 s fails: open again until 120 s.
    rig.step_to(60_000, Duration::from_secs(1)).await;
    rig.exchanged(4, &h).await;
    assert!(h.circuit_open());
    let probe = &rig.rx.seen()[3];
    assert_eq!((probe.body.as_str(), probe.at), ("m1", 60_000));
    let m1 = rig.delivery("m1").await;
    assert_eq!(m1.attempts, 2);
    assert_eq!(m1.next_attempt_at, Some(T0 + 61_000));
    assert_eq!(rig.attempts("m1").await[1].started_at, T0 + 60_000);

    // The probe at 120 s succeeds: closed, and the other two go at once.
    healthy.store(true, Ordering::SeqCst);
    rig.step_to(120_000, Duration::from_secs(1)).await;
    rig.exchanged(7, &h).await;
    rig.assert_all_delivered().await;
    assert!(!h.circuit_open());

    let seen = rig.rx.seen();
    let times: Vec<Millis> = seen.iter().map(|s| s.at).collect();
    assert_eq!(times, vec![0, 0, 0, 60_000, 120_000, 120_000, 120_000]);
    assert_eq!(seen[4].body, "m2", "the second probe: the earliest due");
    let mut after: Vec<&str> = seen[5..].iter().map(|s| s.body.as_str()).collect();
    after.sort();
    assert_eq!(after, vec!["m1", "m3"]);
}

/// With `max_in_flight = 3` and slow answers, exactly three requests are open
/// at a time until the backlog is through.
#[tokio::test(start_paused = true)]
async fn max_in_flight_is_never_exceeded() {
    let mut rig = Rig::new(ok_after(Duration::from_secs(1))).await;
    for i in 0..10 {
        rig.append(&format!("m{i}"), None, Priority::Normal, 0)
            .await;
    }
    let h = rig.add_destination("max_in_flight = 3");

    // Each second the three open requests are answered and three more start.
    for (second, open) in [(0, 3), (1, 3), (2, 3), (3, 1)] {
        let arrived = 3 * second + open;
        until!(
            format!("{arrived} arrived, {open} open"),
            rig.rx.count() == arrived && rig.rx.in_flight() == open && h.in_flight() == open as u32
        );
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    rig.exchanged(10, &h).await;
    rig.assert_all_delivered().await;
    assert_eq!(rig.rx.max_in_flight(), 3);
    let times: Vec<Millis> = rig.rx.seen().iter().map(|s| s.at).collect();
    assert_eq!(
        times,
        vec![0, 0, 0, 1_000, 1_000, 1_000, 2_000, 2_000, 2_000, 3_000]
    );
}

/// `rate_limit = { per_second = 2, burst = 2 }`: two at once, then one every
/// 500 ms; eight requests take 3 s.
#[tokio::test(start_paused = true)]
async fn rate_limit_spaces_requests_out() {
    let mut rig = Rig::new(always_ok()).await;
    for i in 0..8 {
        rig.append(&format!("m{i}"), None, Priority::Normal, 0)
            .await;
    }
    let h = rig.add_destination("rate_limit = { per_second = 2, burst = 2 }");
    let want: Vec<Millis> = vec![0, 0, 500, 1_000, 1_500, 2_000, 2_500, 3_000];
    // Steps of 100 ms: a request sent early would show at a time not in `want`.
    while rig.rx.count() < want.len() {
        let elapsed = rig.now() - T0;
        let expected = want.iter().filter(|t| **t <= elapsed).count();
        until!(
            format!("{expected} requests by {elapsed} ms"),
            rig.rx.count() >= expected && h.in_flight() == 0
        );
        assert_eq!(rig.rx.count(), expected, "at {elapsed} ms");
        if expected < want.len() {
            tokio::time::advance(Duration::from_millis(100)).await;
        }
    }
    rig.exchanged(want.len(), &h).await;
    rig.assert_all_delivered().await;
    let times: Vec<Millis> = rig.rx.seen().iter().map(|s| s.at).collect();
    assert_eq!(times, want);
}

/// Among due deliveries, high goes before normal before low (one at a time,
/// so the order is the receiver's order); one due later waits for its time
/// whatever its priority.
#[tokio::test(start_paused = true)]
async fn due_deliveries_go_by_priority() {
    let mut rig = Rig::new(always_ok()).await;
    for (body, prio) in [
        ("low1", Priority::Low),
        ("normal1", Priority::Normal),
        ("high1", Priority::High),
        ("low2", Priority::Low),
        ("normal2", Priority::Normal),
        ("high2", Priority::High),
    ] {
        rig.append(body, None, prio, 0).await;
    }
    rig.append("late-high", None, Priority::High, 5_000).await;
    let h = rig.add_destination("max_in_flight = 1");

    rig.exchanged(6, &h).await;
    assert_eq!(
        rig.delivery("late-high").await.status,
        DeliveryStatus::Pending
    );
    rig.step_to(5_000, Duration::from_secs(1)).await;
    rig.exchanged(7, &h).await;
    rig.assert_all_delivered().await;
    assert_eq!(
        arrivals(&rig.rx.seen()),
        vec![
            ("high1", 0),
            ("high2", 0),
            ("normal1", 0),
            ("normal2", 0),
            ("low1", 0),
            ("low2", 0),
            ("late-high", 5_000),
        ]
    );
}

/// Every attempt happens at the time the schedule gave it, and the delivery
/// goes dead after the last one.
#[tokio::test(start_paused = true)]
async fn retries_follow_the_schedule_to_the_millisecond() {
    let mut rig = Rig::new(Box::new(|_, _| Reply::status(503))).await;
    rig.append("m", None, Priority::Normal, 0).await;
    let h = rig.add_destination("retry = { schedule = [\"0s\", \"5s\", \"30s\", \"5m\"] }");
    // Attempt k starts at `starts[k - 1]` (ms after the start).
    let starts: [Millis; 4] = [0, 5_000, 35_000, 335_000];
    for (k, start) in starts.iter().enumerate() {
        let k = k + 1;
        rig.exchanged(k, &h).await;
        let d = rig.delivery("m").await;
        assert_eq!(d.attempts, k as u32);
        let log = rig.attempts("m").await;
        assert_eq!(log[k - 1].started_at, T0 + start, "attempt {k}");
        assert_eq!(log[k - 1].response_status, Some(503));
        let Some(next) = starts.get(k) else {
            assert_eq!(d.status, DeliveryStatus::Dead, "no attempt left");
            assert_eq!(d.finished_at, Some(T0 + start));
            break;
        };
        assert_eq!(d.status, DeliveryStatus::Pending);
        assert_eq!(d.next_attempt_at, Some(T0 + next), "after attempt {k}");
        // A millisecond before its time the next attempt has not been made.
        rig.step_to(next - 1, Duration::from_secs(10)).await;
        assert_eq!(rig.delivery("m").await.attempts, k as u32);
        tokio::time::advance(Duration::from_millis(1)).await;
    }
    let tries: Vec<(u32, Millis)> = rig.rx.seen().iter().map(|s| (s.attempt, s.at)).collect();
    assert_eq!(tries, vec![(1, 0), (2, 5_000), (3, 35_000), (4, 335_000)]);
}

/// Shutdown lets the attempts in flight finish within the grace period and
/// records them; deliveries not started stay pending and unleased.
#[tokio::test(start_paused = true)]
async fn shutdown_finishes_in_flight_attempts_and_leaves_the_rest_pending() {
    let mut rig = Rig::new(ok_after(Duration::from_secs(5))).await;
    for body in ["m1", "m2", "m3", "m4"] {
        rig.append(body, None, Priority::Normal, 0).await;
    }
    let h = rig.add_destination("max_in_flight = 2");
    until!(
        "two requests open",
        rig.rx.in_flight() == 2 && h.in_flight() == 2
    );

    let shutdown = rig.shut_down(Duration::from_secs(10)).await;
    tokio::time::advance(Duration::from_secs(5)).await;
    until!("the shutdown to end", shutdown.is_finished());
    assert_eq!(rig.now() - T0, 5_000, "it ended when the answers came");

    let mut started: Vec<String> = rig.rx.seen().into_iter().map(|s| s.body).collect();
    started.sort();
    assert_eq!(started, vec!["m1", "m2"]);
    for body in ["m1", "m2"] {
        let d = rig.delivery(body).await;
        assert_eq!(d.status, DeliveryStatus::Delivered, "{body}");
        assert_eq!(rig.attempts(body).await[0].response_status, Some(200));
    }
    for body in ["m3", "m4"] {
        let d = rig.delivery(body).await;
        assert_eq!(d.status, DeliveryStatus::Pending, "{body}");
        assert_eq!(d.attempts, 0);
    }
    // Nothing is left leased: the next run can take both at once.
    let next = rig.store.lease(DEST, rig.now(), 10, 1_000).await.unwrap();
    let mut free: Vec<MessageId> = next.items.iter().map(|l| l.message.id).collect();
    free.sort();
    let mut want = vec![rig.ids["m3"], rig.ids["m4"]];
    want.sort();
    assert_eq!(free, want);
}

/// An attempt that outlasts the grace period is given up at its end (plus the
/// half second the dispatcher allows for recording): nothing is recorded for
/// it, so the delivery is still pending with no attempt counted.
#[tokio::test(start_paused = true)]
async fn shutdown_gives_up_on_attempts_that_outlast_the_grace() {
    let mut rig = Rig::new(ok_after(Duration::from_secs(60))).await;
    rig.append("slow", None, Priority::Normal, 0).await;
    let h = rig.add_destination("");
    until!(
        "the request open",
        rig.rx.in_flight() == 1 && h.in_flight() == 1
    );

    let shutdown = rig.shut_down(Duration::from_secs(10)).await;
    rig.step_to(10_500, Duration::from_millis(500)).await;
    until!("the shutdown to end", shutdown.is_finished());
    assert_eq!(rig.now() - T0, 10_500);
    let d = rig.delivery("slow").await;
    assert_eq!(d.status, DeliveryStatus::Pending);
    assert_eq!(d.attempts, 0, "an attempt cut off is not counted");
    assert_eq!(rig.rx.count(), 1);
}
