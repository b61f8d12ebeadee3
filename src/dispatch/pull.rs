//! Pull destinations: a consumer leases due deliveries over the admin API
//! ([`Dispatcher::pull`]) and reports each result ([`Dispatcher::ack`]),
//! instead of the dispatcher sending them.
//!
//! Everything else is a push destination's: the store decides what is due
//! (priorities, delays, retries, one delivery per ordering key at a time),
//! `max_in_flight` bounds the leases held (on every node together), the rate
//! limit bounds leases granted per second, pause hands out nothing, and each
//! result is recorded, classified and counted as a push attempt's would be.
//! A lease that runs out without a result is recorded by a sweeper task as a
//! timed-out attempt and retried on the destination's schedule.
//!
//! The lease token carries what the gateway needs to record a result on any
//! node (the delivery, the attempt, the lease's owner and end); the store
//! checks that the owner still holds the lease, so a forged, replayed or stale
//! token records nothing.

use std::time::Duration;

use ::http::HeaderMap;
use bytes::Bytes;

use super::*;
use crate::store::pull::OWNER_PREFIX;
use crate::store::{ExpiredPull, MessageId, Millis, PullOutcome, PullRelease, PullResult};

/// Most deliveries one pull may take.
pub const MAX_PULL: usize = 1000;
/// The longest a pull waits for work.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// The shortest and longest lease.
pub const MIN_LEASE: Duration = Duration::from_secs(1);
/// See [`MIN_LEASE`].
pub const MAX_LEASE: Duration = Duration::from_secs(12 * 3600);
/// How often a waiting pull looks at the store even without a wake-up (work
/// made due by another node, a lease freed elsewhere).
const PULL_RECHECK: Duration = Duration::from_millis(500);
/// How often expired leases are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Expired leases recorded per sweep at most.
const SWEEP_BATCH: usize = 500;

/// What a consumer asks for.
#[derive(Debug, Clone, Copy)]
pub struct PullParams {
    /// Deliveries at most.
    pub max: usize,
    /// How long to wait for the first one.
    pub wait: Duration,
    /// How long each lease lasts.
    pub lease: Duration,
}

/// One leased delivery as handed to the consumer.
#[derive(Debug)]
pub struct Pulled {
    /// The lease token to acknowledge with.
    pub token: String,
    /// The delivery and its message.
    pub leased: Leased,
    /// The headers a push attempt would carry (Content-Type included).
    pub headers: HeaderMap,
    /// When the lease ends.
    pub lease_expires_at: Millis,
}

/// What a consumer reports for one lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckAction {
    /// Delivered.
    Ok,
    /// Try again on the destination's schedule.
    Retry,
    /// No more attempts: dead-lettered.
    Dead,
    /// End the lease without an attempt: due again at once.
    Release,
    /// Decide from `status` as a push attempt's answer would be.
    Classify,
}

/// One result from a consumer.
#[derive(Debug, Clone)]
pub struct Ack {
    /// The lease token.
    pub token: String,
    /// What happened.
    pub action: AckAction,
    /// The status the consumer's receiver answered, if any.
    pub status: Option<u16>,
    /// Why it failed, when it did without a status.
    pub error: Option<String>,
    /// The first bytes of the receiver's answer.
    pub body: Option<Bytes>,
    /// The receiver's `Retry-After`.
    pub retry_after: Option<Duration>,
    /// How long the attempt took, if the consumer measured it.
    pub duration: Option<Duration>,
}

/// What became of one result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// Recorded (or released).
    Recorded,
    /// The token is not one the gateway makes.
    InvalidToken,
    /// No such delivery.
    UnknownLease,
    /// The token is for another destination's delivery.
    WrongDestination,
    /// The lease ended already (acknowledged or released).
    LeaseEnded,
    /// The lease ran out: the delivery is retried as a timed-out attempt.
    LeaseExpired,
}

impl AckOutcome {
    /// The name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            AckOutcome::Recorded => "recorded",
            AckOutcome::InvalidToken => "invalid_token",
            AckOutcome::UnknownLease => "unknown_lease",
            AckOutcome::WrongDestination => "wrong_destination",
            AckOutcome::LeaseEnded => "lease_ended",
            AckOutcome::LeaseExpired => "lease_expired",
        }
    }
}

/// Why a pull or an ack was refused as a whole.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// No destination of that name.
    #[error("destination not found")]
    NotFound,
    /// The destination is pushed to, not pulled from.
    #[error("this destination is not a pull destination (type = \"pull\")")]
    NotPull,
    /// The store failed; nothing of the call was applied.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The lease a token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub delivery_id: i64,
    pub attempt: u32,
    pub retry_index: u32,
    pub issued_at: Millis,
    pub expires_at: Millis,
    pub received_at: Millis,
    pub message_id: MessageId,
    /// Random hex: the lease's owner is `pull:` followed by it.
    pub nonce: String,
}

/// Tokens are this long at most (a longer one is refused before parsing).
const MAX_TOKEN: usize = 256;

impl Token {
    /// The owner string of the lease in the store.
    pub fn owner(&self) -> String {
        format!("{OWNER_PREFIX}{}", self.nonce)
    }

    pub fn encode(&self) -> String {
        format!(
            "p1.{}.{}.{}.{}.{}.{}.{}.{}",
            self.delivery_id,
            self.attempt,
            self.retry_index,
            self.issued_at,
            self.expires_at,
            self.received_at,
            self.message_id.0,
            self.nonce
        )
    }

    pub fn parse(s: &str) -> Option<Token> {
        if s.len() > MAX_TOKEN {
            return None;
        }
        let mut it = s.split('.');
        if it.next()? != "p1" {
            return None;
        }
        let t = Token {
            delivery_id: it.next()?.parse().ok()?,
            attempt: it.next()?.parse().ok()?,
            retry_index: it.next()?.parse().ok()?,
            issued_at: it.next()?.parse().ok()?,
            expires_at: it.next()?.parse().ok()?,
            received_at: it.next()?.parse().ok()?,
            message_id: MessageId(ulid::Ulid::from_string(it.next()?).ok()?),
            nonce: it.next()?.to_string(),
        };
        let hex_nonce = t.nonce.len() == 32 && t.nonce.bytes().all(|b| b.is_ascii_hexdigit());
        (it.next().is_none() && hex_nonce).then_some(t)
    }
}

/// A new random lease owner's nonce (128 bits, hex).
fn new_nonce() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The rate-limit bucket of a pull destination, rebuilt when its settings change.
#[derive(Default)]
pub(super) struct PullBucket {
    bucket: Option<TokenBucket>,
    /// (per second, burst) the bucket was made for.
    made_for: Option<(f64, u32)>,
}

impl PullBucket {
    /// Deliveries the bucket allows now (at most `want`), or when the next token comes.
    fn allow(
        &mut self,
        spec: &DestinationSpec,
        want: usize,
        now: Instant,
    ) -> (usize, Option<Instant>) {
        let Some(r) = &spec.rate_limit else {
            self.bucket = None;
            self.made_for = None;
            return (want, None);
        };
        let key = (r.per_second, r.burst());
        if self.made_for != Some(key) {
            self.bucket = Some(TokenBucket::new(r, now));
            self.made_for = Some(key);
        }
        let b = self.bucket.as_mut().expect("made above");
        let avail = b.available(now) as usize;
        if avail == 0 {
            return (0, Some(b.next_token_at(now)));
        }
        (want.min(avail), None)
    }

    fn take(&mut self, n: usize, now: Instant) {
        if let Some(b) = &mut self.bucket {
            for _ in 0..n {
                b.take(now);
            }
        }
    }
}

impl Dispatcher {
    /// A pull destination's handle, or why there is none.
    fn pull_handle(
        &self,
        name: &str,
    ) -> Result<(Arc<DestinationHandle>, Arc<DestinationSpec>), PullError> {
        let h = self.get(name).ok_or(PullError::NotFound)?;
        let spec = h.spec();
        if !spec.is_pull() {
            return Err(PullError::NotPull);
        }
        Ok((h, spec))
    }

    /// Leases up to `p.max` due deliveries of a pull destination, waiting up to
    /// `p.wait` for the first; an empty list when none came (or the gateway is
    /// stopping).
    pub async fn pull(&self, name: &str, p: PullParams) -> Result<Vec<Pulled>, PullError> {
        let (h, _) = self.pull_handle(name)?;
        let deadline = Instant::now() + p.wait;
        let lease_ms = p.lease.as_millis() as i64;
        let stop = self.ctx.stop.clone();
        loop {
            let (h2, spec) = self.pull_handle(name)?;
            if !Arc::ptr_eq(&h, &h2) {
                // Removed and made again meanwhile: the old lease of life is over.
                return Err(PullError::NotFound);
            }
            let now = Instant::now();
            let mut wake_at = deadline.min(now + PULL_RECHECK);
            let st = h.state();
            if !st.paused && st.disabled_at.is_none() {
                let (limit, token_at) = h.pull_bucket.lock().allow(&spec, p.max, now);
                if limit > 0 {
                    let now_ms = self.ctx.clock.now_millis();
                    let nonce = new_nonce();
                    let owner = format!("{OWNER_PREFIX}{nonce}");
                    let batch = self
                        .ctx
                        .store
                        .lease_pull(
                            name,
                            &owner,
                            now_ms,
                            limit,
                            lease_ms,
                            &LeaseLimits {
                                max_in_flight: spec.max_in_flight,
                                rate: spec.rate_limit,
                                settled: Vec::new(),
                            },
                        )
                        .await?;
                    if !batch.items.is_empty() {
                        h.pull_bucket.lock().take(batch.items.len(), Instant::now());
                        return Ok(batch
                            .items
                            .into_iter()
                            .map(|leased| {
                                let token = Token {
                                    delivery_id: leased.delivery_id,
                                    attempt: leased.attempt,
                                    retry_index: leased.retry_index,
                                    issued_at: now_ms,
                                    expires_at: now_ms + lease_ms,
                                    received_at: leased.message.received_at,
                                    message_id: leased.message.id,
                                    nonce: nonce.clone(),
                                };
                                Pulled {
                                    token: token.encode(),
                                    headers: http::request_headers(&spec, &leased, now_ms),
                                    lease_expires_at: token.expires_at,
                                    leased,
                                }
                            })
                            .collect());
                    }
                    if let Some(t) = batch.next_due {
                        wake_at = wake_at.min(instant_in(t - now_ms));
                    }
                } else if let Some(t) = token_at {
                    wake_at = wake_at.min(t);
                }
            }
            if Instant::now() >= deadline {
                return Ok(Vec::new());
            }
            tokio::select! {
                _ = h.wake.notified() => {}
                _ = tokio::time::sleep_until(wake_at) => {}
                _ = stop.cancelled() => return Ok(Vec::new()),
                _ = h.removed.cancelled() => return Err(PullError::NotFound),
            }
        }
    }

    /// Records a consumer's results (and releases): each valid one applies on
    /// its own; one outcome per ack, in order. A store failure applies none of
    /// the results (the caller sends them again).
    pub async fn ack(&self, name: &str, acks: Vec<Ack>) -> Result<Vec<AckOutcome>, PullError> {
        let (h, spec) = self.pull_handle(name)?;
        let now_ms = self.ctx.clock.now_millis();
        let tokens: Vec<Option<Token>> = acks.iter().map(|a| Token::parse(&a.token)).collect();
        let mut results = Vec::new();
        let mut releases = Vec::new();
        // Where each ack's outcome will come from.
        enum Slot {
            Invalid,
            Result(usize),
            Release(usize),
        }
        let mut slots = Vec::with_capacity(acks.len());
        for (a, t) in acks.iter().zip(&tokens) {
            let Some(t) = t else {
                slots.push(Slot::Invalid);
                continue;
            };
            if a.action == AckAction::Release {
                slots.push(Slot::Release(releases.len()));
                releases.push(PullRelease {
                    owner: t.owner(),
                    delivery_id: t.delivery_id,
                });
            } else {
                slots.push(Slot::Result(results.len()));
                results.push(PullResult {
                    owner: t.owner(),
                    result: attempt_of(&spec, t, a, now_ms),
                });
            }
        }
        let recorded = if results.is_empty() {
            Vec::new()
        } else {
            self.ctx
                .store
                .complete_pull(name, results.clone(), now_ms, false)
                .await?
        };
        let released = if releases.is_empty() {
            Vec::new()
        } else {
            self.ctx.store.release_pull(name, releases, now_ms).await?
        };
        let mut out = Vec::with_capacity(acks.len());
        for (i, slot) in slots.into_iter().enumerate() {
            let store_outcome = match slot {
                Slot::Invalid => {
                    out.push(AckOutcome::InvalidToken);
                    continue;
                }
                Slot::Result(j) => {
                    if recorded[j] == PullOutcome::Applied {
                        let t = tokens[i].as_ref().expect("a result has a token");
                        attempted(&h, t, &results[j].result, now_ms);
                        dead_pulled(&self.ctx, name, t.message_id, t.attempt, &results[j].result);
                    }
                    recorded[j]
                }
                Slot::Release(j) => released[j],
            };
            let t = tokens[i].as_ref().expect("a valid slot has a token");
            out.push(self.outcome(name, t, store_outcome, now_ms).await?);
        }
        Ok(out)
    }

    /// The API's outcome of one result from the store's.
    async fn outcome(
        &self,
        name: &str,
        t: &Token,
        o: PullOutcome,
        now_ms: Millis,
    ) -> Result<AckOutcome, PullError> {
        Ok(match o {
            PullOutcome::Applied => AckOutcome::Recorded,
            PullOutcome::Expired => AckOutcome::LeaseExpired,
            PullOutcome::OtherDestination => AckOutcome::WrongDestination,
            PullOutcome::NotHeld => match self.ctx.store.delivery_destination(t.delivery_id).await?
            {
                None => AckOutcome::UnknownLease,
                Some(d) if d != name => AckOutcome::WrongDestination,
                Some(_) if t.expires_at <= now_ms => AckOutcome::LeaseExpired,
                Some(_) => AckOutcome::LeaseEnded,
            },
        })
    }
}

/// The attempt record of a consumer's result.
fn attempt_of(spec: &DestinationSpec, t: &Token, a: &Ack, now_ms: Millis) -> AttemptResult {
    let class = match a.action {
        AckAction::Ok => Class::Success,
        AckAction::Dead => Class::Stop,
        AckAction::Retry | AckAction::Release => Class::Retry(a.retry_after),
        AckAction::Classify => {
            let outcome = http::Outcome {
                status: a.status,
                retry_after: a.retry_after,
                error: a.error.clone(),
                ..Default::default()
            };
            http::classify(&outcome, spec.retry_4xx)
        }
    };
    let next = next_after(spec, class, t.retry_index, now_ms);
    // A failure the consumer gave no reason for still reads as one.
    let error = match (&a.error, a.status, next) {
        (None, None, Next::Retry(_)) => Some("the consumer reported a failure (retry)".to_string()),
        (None, None, Next::Dead) => Some("the consumer reported a failure (dead)".to_string()),
        (e, _, _) => e.clone(),
    };
    let duration = a
        .duration
        .unwrap_or_else(|| Duration::from_millis((now_ms - t.issued_at).max(0) as u64));
    AttemptResult {
        delivery_id: t.delivery_id,
        attempt: t.attempt,
        started_at: t.issued_at,
        duration_us: duration.as_micros().min(i64::MAX as u128) as i64,
        status: a.status,
        response_body: a.body.clone(),
        response_headers: None,
        error,
        next,
    }
}

/// Logs and counts a recorded result as a push attempt's.
fn attempted(h: &DestinationHandle, t: &Token, r: &AttemptResult, now_ms: Millis) {
    DeliveryAttempted {
        dest: &h.metrics,
        message_id: t.message_id,
        delivery_id: t.delivery_id,
        attempt: t.attempt,
        status: r.status,
        error: r.error.as_deref(),
        elapsed: Duration::from_micros(r.duration_us.max(0) as u64),
        next: r.next,
        lag: Duration::from_millis((now_ms - t.received_at).max(0) as u64),
    }
    .emit();
}

/// Tells the dead-letter hook (alerts) of a pulled delivery that a recorded
/// result has just dead-lettered: the consumer said `dead`, or the retries ran
/// out. The token carries neither the message's source nor the delivery's
/// priority, so they are read from the store, off the ack's path.
fn dead_pulled(
    ctx: &Arc<Ctx>,
    destination: &str,
    message_id: MessageId,
    attempt: u32,
    r: &AttemptResult,
) {
    let (Next::Dead, Some(hook)) = (r.next, ctx.on_dead.get()) else {
        return;
    };
    let hook = hook.clone();
    let store = ctx.store.clone();
    let destination = destination.to_string();
    let delivery_id = r.delivery_id;
    let (status, error) = (r.status, r.error.clone());
    tokio::spawn(async move {
        let detail = match store.message(message_id).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(%destination, %message_id, error = %e, "could not read a dead pulled message for its alert");
                return;
            }
        };
        let priority = detail
            .deliveries
            .iter()
            .find(|d| d.id == delivery_id)
            .and_then(|d| crate::config::Priority::from_name(d.priority))
            .unwrap_or_default();
        hook(DeadLetter {
            destination,
            message_id,
            source: detail.message.source,
            event_type: detail.message.event_type,
            priority,
            delivery_id,
            attempts: attempt,
            status,
            error,
        });
    });
}

/// Records the leases of a pull destination that ran out without a result as
/// timed-out attempts, every [`SWEEP_EVERY`], until the dispatcher stops or the
/// destination is removed. On several nodes every node sweeps; the store
/// records each expired lease once.
pub(super) async fn sweep(ctx: Arc<Ctx>, h: Arc<DestinationHandle>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = ctx.stop.cancelled() => return,
            _ = h.removed.cancelled() => return,
        }
        let spec = h.spec();
        let now_ms = ctx.clock.now_millis();
        let expired = match ctx
            .store
            .expired_pulls(&spec.name, now_ms, SWEEP_BATCH)
            .await
        {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(destination = %spec.name, error = %e, "could not look for expired pull leases");
                continue;
            }
        };
        if expired.is_empty() {
            continue;
        }
        let results: Vec<PullResult> = expired
            .iter()
            .map(|e| timed_out(&spec, e, now_ms))
            .collect();
        match ctx
            .store
            .complete_pull(&spec.name, results.clone(), now_ms, true)
            .await
        {
            Ok(outcomes) => {
                for ((e, r), o) in expired.iter().zip(&results).zip(outcomes) {
                    if o == PullOutcome::Applied {
                        DeliveryAttempted {
                            dest: &h.metrics,
                            message_id: e.message_id,
                            delivery_id: e.delivery_id,
                            attempt: e.attempt,
                            status: None,
                            error: r.result.error.as_deref(),
                            elapsed: Duration::ZERO,
                            next: r.result.next,
                            lag: Duration::from_millis((now_ms - e.created_at).max(0) as u64),
                        }
                        .emit();
                        dead_pulled(&ctx, &spec.name, e.message_id, e.attempt, &r.result);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(destination = %spec.name, error = %e, "could not record expired pull leases");
            }
        }
    }
}

/// The attempt record of a lease that ran out.
fn timed_out(spec: &DestinationSpec, e: &ExpiredPull, now_ms: Millis) -> PullResult {
    let next = next_after(spec, Class::Retry(None), e.retry_index, now_ms);
    PullResult {
        owner: e.owner.clone(),
        result: AttemptResult {
            delivery_id: e.delivery_id,
            attempt: e.attempt,
            started_at: now_ms,
            duration_us: 0,
            status: None,
            response_body: None,
            response_headers: None,
            error: Some("timeout: the consumer's lease ran out with no result".into()),
            next,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Token {
        Token {
            delivery_id: 42,
            attempt: 3,
            retry_index: 2,
            issued_at: 1_700_000_000_000,
            expires_at: 1_700_000_030_000,
            received_at: 1_699_999_999_000,
            message_id: MessageId::new(),
            nonce: new_nonce(),
        }
    }

    #[test]
    fn a_token_reads_back_as_written() {
        let t = token();
        assert_eq!(Token::parse(&t.encode()), Some(t.clone()));
        assert!(t.owner().starts_with(OWNER_PREFIX));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = token().encode();
        let cut = &good[..good.len() - 1];
        let long = format!("{good}{}", "0".repeat(MAX_TOKEN));
        let extra = format!("{good}.x");
        let wrong_version = good.replacen("p1.", "p2.", 1);
        let not_hex = format!("{}zz", &good[..good.len() - 2]);
        for bad in [
            "",
            "p1",
            "p1.........",
            cut,
            long.as_str(),
            extra.as_str(),
            wrong_version.as_str(),
            not_hex.as_str(),
            "p1.1.-1.0.0.0.0.01ARZ3NDEKTSV4RRFFQ69G5FAV.00000000000000000000000000000000",
            "p1.1.1.0.0.0.0.NOTAULID.00000000000000000000000000000000",
        ] {
            assert_eq!(Token::parse(bad), None, "{bad:?}");
        }
    }
}
