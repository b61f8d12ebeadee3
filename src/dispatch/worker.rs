//! The worker of one destination: leases as many due deliveries as the
//! destination's limits allow now, runs each attempt as a task, records the
//! results in batches (retrying a failed write as a record, never as a
//! re-send), tracks endpoint health, and drains on shutdown. See the
//! invariants in [`super`].

use super::*;

/// The worker of one destination.
pub(super) struct Worker {
    ctx: Arc<Ctx>,
    h: Arc<DestinationHandle>,
    spec: Arc<DestinationSpec>,
    breaker: Option<Breaker>,
    bucket: Option<TokenBucket>,
    in_flight: HashSet<i64>,
    probe: Option<i64>,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    attempts: JoinSet<()>,
    /// Results of finished attempts not yet handed to the store.
    unrecorded: Vec<AttemptResult>,
    /// When the oldest of them arrived.
    unrecorded_since: Option<Instant>,
    /// One of them must be written at once.
    urgent: bool,
    /// The last lease was held back by a cluster-wide limit that this node's
    /// recorded results free (see `LeaseBatch::held_back`): results are
    /// written at once, not grouped, since each frees a place of the limit
    /// only when it is written.
    held_back: bool,
    /// The store write of the previous results, while it runs (one at a time,
    /// so results group into few writes under load). It hands back the results
    /// it could not write.
    recording: Option<tokio::task::JoinHandle<Recorded>>,
    /// The deliveries of the write that runs (or just ran): with those of
    /// `unrecorded`, the settled attempts a cluster-wide lease does not count.
    recording_ids: HashSet<i64>,
    /// Failed writes in a row; while above 0, no new attempt starts.
    record_failures: u32,
    /// When to write again after a failed write.
    record_retry_at: Option<Instant>,
    /// The last write failed while the store said it could take none (a
    /// database out of reach): written again as soon as it says it can, not
    /// at the end of a backoff that grew through the outage.
    record_awaits_store: bool,
}

/// The outcome of one write of results: the results back, with the error, if
/// the store refused them.
type Recorded = Result<(), (StoreError, Vec<AttemptResult>)>;

/// How long to wait before writing results again after `failures` failed
/// writes in a row: [`RECORD_RETRY_FIRST`] doubling to [`RECORD_RETRY_MAX`].
pub(super) fn record_backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    RECORD_RETRY_FIRST
        .saturating_mul(1 << doublings)
        .min(RECORD_RETRY_MAX)
}

/// What one lease call found.
struct LeaseStep {
    /// The batch was as large as asked: there may be more due right now.
    full: bool,
    /// When the next delivery becomes due (meaningful when not full).
    next_due: Option<Instant>,
    /// A cluster-wide limit held the lease back (see `LeaseBatch::held_back`).
    held_back: bool,
}

impl Worker {
    pub(super) fn new(ctx: Arc<Ctx>, h: Arc<DestinationHandle>) -> Self {
        let spec = h.spec();
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Worker {
            breaker: spec.breaker.map(Breaker::new),
            bucket: spec
                .rate_limit
                .as_ref()
                .map(|r| TokenBucket::new(r, Instant::now())),
            spec,
            ctx,
            h,
            in_flight: HashSet::new(),
            probe: None,
            done_tx,
            done_rx,
            attempts: JoinSet::new(),
            unrecorded: Vec::new(),
            unrecorded_since: None,
            urgent: false,
            held_back: false,
            recording: None,
            recording_ids: HashSet::new(),
            record_failures: 0,
            record_retry_at: None,
            record_awaits_store: false,
        }
    }

    /// Picks up changed settings, keeping limiter and breaker state where they still apply.
    fn refresh_spec(&mut self) {
        let spec = self.h.spec();
        if Arc::ptr_eq(&spec, &self.spec) {
            return;
        }
        if spec.rate_limit.as_ref().map(|r| (r.per_second, r.burst()))
            != self
                .spec
                .rate_limit
                .as_ref()
                .map(|r| (r.per_second, r.burst()))
        {
            self.bucket = spec
                .rate_limit
                .as_ref()
                .map(|r| TokenBucket::new(r, Instant::now()));
        }
        if spec.breaker != self.spec.breaker {
            self.breaker = spec.breaker.map(Breaker::new);
        }
        self.spec = spec;
    }

    pub(super) async fn run(mut self) {
        let stop = self.ctx.stop.clone();
        let removed = self.h.removed.clone();
        let wake = self.h.wake.clone();
        let mut next_due: Option<Instant> = None;
        // Whether the store may hold due work this worker has not leased: after
        // a wake-up, a timer, or a lease that came back full. A freed slot alone
        // is no reason to ask the store again.
        let mut need_lease = true;
        loop {
            while let Ok(d) = self.done_rx.try_recv() {
                self.on_done(d);
            }
            if self.recording.as_ref().is_some_and(|r| r.is_finished()) {
                if let Some(out) = self.recording.take().and_then(|r| r.now_or_never()) {
                    self.on_recorded(out);
                }
                need_lease |= self.held_back;
            }
            self.record();
            if stop.is_cancelled() || removed.is_cancelled() {
                break;
            }
            self.refresh_spec();
            let now = Instant::now();
            let (limit, mut wait_until) = self.capacity(now);
            if limit > 0 && need_lease {
                match self.lease_and_start(limit).await {
                    Some(l) => {
                        self.held_back = l.held_back;
                        if !l.full {
                            next_due = l.next_due;
                        }
                        need_lease = l.full;
                        if l.full {
                            // There may be more due right now.
                            continue;
                        }
                    }
                    None => wait_until = Some(Instant::now() + Duration::from_secs(1)),
                }
            }
            let deadline = self.deadline(wait_until, if limit > 0 { next_due } else { None });
            let recording = async {
                match self.recording.as_mut() {
                    Some(r) => r.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = wake.notified() => need_lease = true,
                Some(d) = self.done_rx.recv() => self.on_done(d),
                out = recording => {
                    self.recording = None;
                    self.on_recorded(out);
                    need_lease |= self.held_back;
                }
                _ = tokio::time::sleep_until(deadline) => need_lease = true,
                _ = stop.cancelled() => {}
                _ = removed.cancelled() => {}
            }
        }
        self.drain().await;
    }

    /// Leases up to `limit` due deliveries (within the cluster-wide limits) and
    /// starts them; `None` when the store failed (logged).
    async fn lease_and_start(&mut self, limit: usize) -> Option<LeaseStep> {
        let now_ms = self.ctx.clock.now_millis();
        let traced = self
            .ctx
            .traces
            .get()
            .map(|t| (t, std::time::SystemTime::now()));
        let batch = self
            .ctx
            .store
            .lease_limited(
                &self.spec.name,
                now_ms,
                limit.min(LEASE_BATCH),
                self.spec.lease_ms(self.ctx.lease_margin),
                &LeaseLimits {
                    max_in_flight: self.spec.max_in_flight,
                    rate: self.spec.rate_limit,
                    settled: self.settled(),
                },
            )
            .await;
        if let Some((t, started)) = traced {
            match &batch {
                Ok(b) => t.lease(&self.spec.name, started, &b.items, None),
                Err(e) => t.lease(&self.spec.name, started, &[], Some(&e.to_string())),
            }
        }
        match batch {
            Ok(batch) => {
                let step = LeaseStep {
                    full: batch.items.len() == limit.min(LEASE_BATCH),
                    next_due: batch.next_due.map(|t| instant_in(t - now_ms)),
                    held_back: batch.held_back,
                };
                for item in batch.items {
                    self.start(item);
                }
                Some(step)
            }
            Err(e) => {
                tracing::error!(destination = %self.spec.name, error = %e, "lease failed");
                None
            }
        }
    }

    /// The deliveries whose attempts ended and whose results are not known to
    /// be recorded: waiting, or in the write that runs. Their leases do not
    /// hold a place of `max_in_flight` (no request is in flight for them).
    fn settled(&self) -> Vec<i64> {
        self.unrecorded
            .iter()
            .map(|r| r.delivery_id)
            .chain(self.recording_ids.iter().copied())
            .collect()
    }

    /// When the loop wakes at the latest: the idle tick, a wait for capacity,
    /// the next due delivery, or the next write of results.
    fn deadline(&self, wait_until: Option<Instant>, next_due: Option<Instant>) -> Instant {
        let mut deadline = Instant::now() + IDLE_TICK;
        let record_at = match self.record_retry_at {
            Some(t) => Some(t),
            None => self.unrecorded_since.map(|t| t + RECORD_DELAY),
        };
        for t in [wait_until, next_due, record_at].into_iter().flatten() {
            deadline = deadline.min(t);
        }
        deadline
    }

    /// Hands the waiting attempt results to the store, unless a write is running
    /// or a failed one waits for its retry time.
    fn record(&mut self) {
        if self.recording.is_some() || self.unrecorded.is_empty() {
            return;
        }
        if let Some(at) = self.record_retry_at {
            // The store wakes every worker when it is back (`Store::wakeups`).
            let back = self.record_awaits_store && self.ctx.store.writable().is_ok();
            if Instant::now() < at && !back {
                return;
            }
        }
        let due = self.record_retry_at.is_some()
            || self.urgent
            || self.held_back
            || self.unrecorded.len() >= RECORD_BATCH
            || self
                .unrecorded_since
                .is_some_and(|t| t.elapsed() >= RECORD_DELAY);
        if !due {
            return;
        }
        self.urgent = false;
        self.unrecorded_since = None;
        self.record_retry_at = None;
        let results = std::mem::take(&mut self.unrecorded);
        self.recording_ids = results.iter().map(|r| r.delivery_id).collect();
        let store = self.ctx.store.clone();
        self.recording = Some(tokio::spawn(async move {
            // `complete` consumes its argument; the copy comes back on failure
            // (bodies are `Bytes`, so it shares them).
            let kept = results.clone();
            store.complete(results).await.map_err(|e| (e, kept))
        }));
    }

    /// A write of results ended. A failed one puts its results back in front of
    /// the waiting ones, to be written again after a backoff: the deliveries
    /// stay leased, so none of them is sent again meanwhile.
    fn on_recorded(&mut self, out: Result<Recorded, tokio::task::JoinError>) {
        // Recorded, or back among the unrecorded.
        self.recording_ids.clear();
        let (e, mut results) = match out {
            Ok(Ok(())) => {
                if self.record_failures > 0 {
                    self.record_failures = 0;
                    self.ctx.write_health_changed(true);
                }
                return;
            }
            Ok(Err(failed)) => failed,
            // The write task panicked: its results are lost to this worker (their
            // leases end with the process); nothing to put back.
            Err(e) => {
                tracing::error!(destination = %self.spec.name, error = %e, "the write of delivery results failed");
                return;
            }
        };
        self.record_failures += 1;
        self.record_awaits_store = self.ctx.store.writable().is_err();
        if self.record_failures == 1 {
            self.ctx.write_health_changed(false);
        }
        let wait = record_backoff(self.record_failures);
        ResultsUnrecorded {
            destination: &self.spec.name,
            attempts: results.len(),
            error: &e,
            retry_in: wait,
        }
        .emit();
        results.append(&mut self.unrecorded);
        self.unrecorded = results;
        self.unrecorded_since.get_or_insert_with(Instant::now);
        self.record_retry_at = Some(Instant::now() + wait);
    }

    /// How many deliveries may start now, and until when to wait if none.
    fn capacity(&mut self, now: Instant) -> (usize, Option<Instant>) {
        let st = self.h.state.lock().clone();
        if st.paused || st.disabled_at.is_some() {
            return (0, None);
        }
        // A store that cannot take results gets no more of them: the attempts
        // in flight finish, and nothing new starts until it recovers.
        if self.unrecorded.len() >= MAX_UNRECORDED || self.record_failures > 0 {
            return (0, None);
        }
        let free = self
            .spec
            .max_in_flight
            .saturating_sub(self.in_flight.len() as u32) as usize;
        if free == 0 {
            return (0, None);
        }
        let mut limit = free;
        if let Some(b) = &mut self.breaker {
            match b.permit(now) {
                Permit::Open => {}
                Permit::Probe => {
                    if !self.in_flight.is_empty() {
                        return (0, None);
                    }
                    limit = 1;
                }
                Permit::Wait(until) => {
                    if !self.h.circuit_open() {
                        self.h.set_circuit_open(true);
                    }
                    return (0, until);
                }
            }
        }
        if let Some(bucket) = &mut self.bucket {
            let avail = bucket.available(now) as usize;
            if avail == 0 {
                return (0, Some(bucket.next_token_at(now)));
            }
            limit = limit.min(avail);
        }
        (limit, None)
    }

    /// Starts one attempt.
    fn start(&mut self, item: Leased) {
        let now = Instant::now();
        if let Some(bucket) = &mut self.bucket {
            bucket.take(now);
        }
        if let Some(b) = &mut self.breaker {
            if b.permit(now) == Permit::Probe {
                b.probe_started();
                self.probe = Some(item.delivery_id);
            }
        }
        // Leased again (its last result was recorded, and it was due at once):
        // in flight now, whatever the write that recorded it has told us yet.
        self.recording_ids.remove(&item.delivery_id);
        self.in_flight.insert(item.delivery_id);
        self.h
            .in_flight
            .store(self.in_flight.len() as u32, Ordering::Relaxed);
        let ctx = self.ctx.clone();
        let h = self.h.clone();
        let spec = self.spec.clone();
        let done = self.done_tx.clone();
        self.attempts
            .spawn(async move { attempt(ctx, h, spec, item, done).await });
    }

    fn on_done(&mut self, d: Done) {
        self.in_flight.remove(&d.delivery_id);
        self.unrecorded.push(d.result);
        self.unrecorded_since.get_or_insert_with(Instant::now);
        self.urgent |= d.urgent;
        self.h
            .in_flight
            .store(self.in_flight.len() as u32, Ordering::Relaxed);
        // Reap finished attempt tasks.
        while self.attempts.try_join_next().is_some() {}
        let Some(class) = d.class else {
            // No request was made: nothing to learn of the endpoint, and a
            // probe that made none leaves the circuit half-open for the next.
            if self.probe == Some(d.delivery_id) {
                self.probe = None;
                if let Some(b) = &mut self.breaker {
                    b.probe_abandoned();
                }
            }
            return;
        };
        let failed = class.is_endpoint_failure();
        let counter = if matches!(class, Class::Success) {
            &self.h.succeeded
        } else {
            &self.h.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(b) = &mut self.breaker {
            let was_open = b.is_open();
            if failed {
                b.on_failure(Instant::now());
            } else {
                b.on_success();
            }
            if self.probe == Some(d.delivery_id) {
                self.probe = None;
            }
            let open = b.is_open();
            self.h.set_circuit_open(open);
            if open != was_open {
                CircuitChanged {
                    destination: &self.spec.name,
                    open,
                }
                .emit();
            }
        }
        self.track_health(failed);
    }

    /// Endpoint health: disable after every attempt has failed for `disable_after`.
    fn track_health(&mut self, failed: bool) {
        let now = self.ctx.clock.now_millis();
        let changed = {
            let mut s = self.h.state.lock();
            let before = s.clone();
            if failed {
                let since = *s.failing_since.get_or_insert(now);
                let limit = self.spec.disable_after.as_millis() as i64;
                if s.disabled_at.is_none() && now - since >= limit {
                    *self.h.changed_here.lock() = Some(Instant::now());
                    s.disabled_at = Some(now);
                    DestinationHealthChanged {
                        destination: &self.spec.name,
                        disabled: true,
                    }
                    .emit();
                }
            } else {
                s.failing_since = None;
            }
            (*s != before).then(|| s.clone())
        };
        if let Some(st) = changed {
            self.h.mirror_state();
            let store = self.ctx.store.clone();
            let name = self.spec.name.clone();
            tokio::spawn(async move {
                if let Err(e) = store.put_destination_state(&name, &st).await {
                    tracing::error!(destination = %name, error = %e, "could not save the destination state");
                }
            });
        }
    }

    /// Shutdown: wait for attempts in flight (the dispatcher bounds the wait),
    /// record their results, and release the leases of any that were cancelled.
    async fn drain(mut self) {
        let ids: Vec<i64> = self.in_flight.iter().copied().collect();
        let cut_off = self.ctx.cut_off.clone();
        loop {
            tokio::select! {
                r = self.attempts.join_next() => if r.is_none() { break },
                _ = cut_off.cancelled() => {
                    // Cut-off attempts send no result: they stay in `in_flight`
                    // and their leases are released below.
                    self.attempts.shutdown().await;
                    break;
                }
            }
        }
        while let Ok(d) = self.done_rx.try_recv() {
            self.in_flight.remove(&d.delivery_id);
            self.unrecorded.push(d.result);
        }
        if let Some(r) = self.recording.take() {
            if let Ok(Err((_, mut failed))) = r.await {
                failed.append(&mut self.unrecorded);
                self.unrecorded = failed;
            }
        }
        if !self.unrecorded.is_empty() {
            let results = std::mem::take(&mut self.unrecorded);
            let n = results.len();
            if let Err(e) = self.ctx.store.complete(results).await {
                // Their deliveries are due again after the restart (at-least-once).
                tracing::error!(destination = %self.spec.name, attempts = n, error = %e, "could not record attempts at shutdown");
            }
        }
        if self.record_failures > 0 {
            self.ctx.write_failing.fetch_sub(1, Ordering::Relaxed);
        }
        let left: Vec<i64> = ids
            .into_iter()
            .filter(|i| self.in_flight.contains(i))
            .collect();
        if !left.is_empty() {
            let _ = self.ctx.store.release(left).await;
        }
    }
}

/// Runs one attempt: the transformation, HTTP, classification, bookkeeping.
async fn attempt(
    ctx: Arc<Ctx>,
    h: Arc<DestinationHandle>,
    spec: Arc<DestinationSpec>,
    item: Leased,
    done: mpsc::UnboundedSender<Done>,
) {
    let started_ms = ctx.clock.now_millis();
    let t0 = Instant::now();
    let transformed = match transform::prepare(ctx.transforms.get(), &spec, &item).await {
        transform::Prepared::Send(t) => t,
        transform::Prepared::Final(next, error) => {
            let result = AttemptResult {
                delivery_id: item.delivery_id,
                attempt: item.attempt,
                started_at: started_ms,
                duration_us: t0.elapsed().as_micros() as i64,
                status: None,
                response_body: None,
                response_headers: None,
                error: Some(error),
                next,
            };
            finish(&ctx, &h, &item, None, result, t0.elapsed(), &done);
            return;
        }
    };
    let span = ctx.traces.get().map(|t| t.attempt(&item));
    let client = match spec.origin.guarded() {
        false => &ctx.trusted,
        true => &ctx.guarded,
    };
    let refused = (spec.origin.guarded() && ctx.guard)
        .then(|| ssrf::literal_ip(&spec.url))
        .flatten()
        .filter(|ip| !ssrf::is_public(*ip));
    let outcome = match refused {
        Some(ip) => self::http::Outcome {
            error: Some(ssrf::Refused::NonPublic(ip).to_string()),
            refused: true,
            ..Default::default()
        },
        None => {
            self::http::send(
                client,
                &spec,
                &item,
                started_ms,
                span.as_ref(),
                transformed.as_ref(),
            )
            .await
        }
    };
    let elapsed = t0.elapsed();
    let class = self::http::classify(&outcome, spec.retry_4xx);
    let now_ms = ctx.clock.now_millis();
    let next = next_after(&spec, class, item.retry_index, now_ms);
    if let Some(span) = span {
        let what = match next {
            Next::Delivered => "delivered",
            Next::Retry(_) => "retry",
            Next::Dead => "dead",
            Next::Dropped => "dropped",
            Next::TransformFailed => "transform_failed",
        };
        span.end(outcome.status, what, outcome.error.as_deref());
    }
    let result = AttemptResult {
        delivery_id: item.delivery_id,
        attempt: item.attempt,
        started_at: started_ms,
        duration_us: elapsed.as_micros() as i64,
        status: outcome.status,
        response_body: outcome.body,
        response_headers: outcome.headers,
        error: outcome.error,
        next,
    };
    finish(&ctx, &h, &item, Some(class), result, elapsed, &done);
}

/// Counts and logs an attempt's result and hands it to the worker, which
/// records it (with others, in one write).
fn finish(
    ctx: &Ctx,
    h: &DestinationHandle,
    item: &Leased,
    class: Option<Class>,
    result: AttemptResult,
    elapsed: Duration,
    done: &mpsc::UnboundedSender<Done>,
) {
    let now_ms = ctx.clock.now_millis();
    let next = result.next;
    DeliveryAttempted {
        dest: &h.metrics,
        message_id: item.message.id,
        delivery_id: item.delivery_id,
        attempt: item.attempt,
        status: result.status,
        error: result.error.as_deref(),
        elapsed,
        next,
        lag: Duration::from_millis((now_ms - item.message.received_at).max(0) as u64),
    }
    .emit();
    if let (Next::Dead, Some(hook)) = (next, ctx.on_dead.get()) {
        hook(DeadLetter {
            destination: item.destination.clone(),
            message_id: item.message.id,
            source: item.message.source.clone(),
            event_type: item.message.event_type.clone(),
            priority: item.priority,
            delivery_id: item.delivery_id,
            attempts: item.attempt,
            status: result.status,
            error: result.error.clone(),
        });
    }
    let _ = done.send(Done {
        class,
        delivery_id: item.delivery_id,
        urgent: item.ordering_key.is_some() && !matches!(next, Next::Retry(_)),
        result,
    });
}
