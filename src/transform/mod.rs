//! Transformations: a user's JavaScript `function transform(request, context)`
//! that reshapes, enriches or drops a message before it is delivered.
//!
//! - [`Engine`]: a bounded pool of OS threads, each with its own QuickJS
//!   runtimes ([`engine`]); jobs go over a channel and answers come back on a
//!   oneshot, so JavaScript never runs on tokio's threads and a slow script
//!   holds a pool thread, never the dispatcher or ingest.
//! - Each script is compiled once per version on each thread and kept; each has
//!   its own runtime with a memory limit, and a deadline enforced by the
//!   interrupt handler (an endless loop costs one timeout, not a thread).
//! - The sandbox is what is *not* there: QuickJS without its `std`/`os`
//!   modules has no file, network or environment access; `require`, `import`,
//!   `fetch` and `process` do not exist. [`helpers`] adds encoders, hashes and
//!   `console.log`.
//! - [`request`]: the request object a script receives (secret and signature
//!   headers removed) and what its answer becomes.
//!
//! The dispatcher runs a delivery's transformation before its attempt, never
//! on ingest's ack path.

mod engine;
mod helpers;
pub mod request;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, Semaphore};

pub use request::{Delivery, Request};

/// Memory a script's runtime may use by default.
pub const DEFAULT_MEMORY: usize = 16 * 1024 * 1024;
/// How long one run may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);

/// The limits of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes the script's runtime may allocate.
    pub memory: usize,
    /// How long a run (compiling included) may take.
    pub time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: DEFAULT_MEMORY,
            time: DEFAULT_TIMEOUT,
        }
    }
}

/// A named script at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// Its name (`[[transforms]] name`).
    pub name: String,
    /// The JavaScript text.
    pub code: String,
    /// A hash of the code and limits: a compiled script is reused while it
    /// stays the same.
    pub version: u64,
    /// Its limits.
    pub limits: Limits,
}

impl Script {
    /// A script; its version follows from its code and limits.
    pub fn new(name: impl Into<String>, code: impl Into<String>, limits: Limits) -> Self {
        use std::hash::{Hash, Hasher};
        let code = code.into();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        code.hash(&mut h);
        limits.memory.hash(&mut h);
        limits.time.hash(&mut h);
        Script {
            name: name.into(),
            code,
            version: h.finish(),
            limits,
        }
    }
}

/// Why a run gave no request to deliver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    /// The script threw (its exception's name and message).
    #[error("threw {0}")]
    Threw(String),
    /// It ran past its time limit.
    #[error("ran longer than its time limit ({}ms) and was stopped", .0.as_millis())]
    Timeout(Duration),
    /// It needed more memory than its limit.
    #[error("ran out of memory (limit {} KiB)", .0 / 1024)]
    Memory(usize),
    /// It returned something that is not a request.
    #[error("{0}")]
    Invalid(String),
    /// The code defines no `transform` function.
    #[error("defines no function transform(request, context)")]
    NoFunction,
    /// The engine itself failed (not the script).
    #[error("could not run: the JavaScript engine failed: {0}")]
    Engine(String),
    /// The pool has stopped (shutdown).
    #[error("could not run: the transformation pool has stopped")]
    Stopped,
}

/// One job for the pool.
struct Job {
    script: Arc<Script>,
    input: String,
    context: String,
    message_id: String,
    /// Compile only (a check before a script is saved), not run.
    check: bool,
    reply: oneshot::Sender<Result<Option<String>, TransformError>>,
}

/// The pool of JavaScript threads. Dropping the last handle ends them once
/// their current job is done.
pub struct Engine {
    /// The threads start at the first job (a gateway without
    /// transformations starts none).
    tx: std::sync::OnceLock<crossbeam_channel::Sender<Job>>,
    /// Jobs queued or running at most; a caller waits (asynchronously) for a place.
    permits: Arc<Semaphore>,
    threads: usize,
}

/// Jobs that may wait per pool thread before callers wait for a place.
const QUEUE_PER_THREAD: usize = 16;

impl Engine {
    /// A pool of `threads` threads (at least one), started at the first job.
    pub fn start(threads: usize) -> Arc<Self> {
        let threads = threads.max(1);
        Arc::new(Engine {
            tx: std::sync::OnceLock::new(),
            permits: Arc::new(Semaphore::new(threads * QUEUE_PER_THREAD)),
            threads,
        })
    }

    /// Sends a job to the pool, starting its threads the first time.
    fn send(&self, job: Job) -> Result<(), TransformError> {
        self.tx
            .get_or_init(|| spawn(self.threads))
            .send(job)
            .map_err(|_| TransformError::Stopped)
    }

    /// A pool sized for this machine: one thread per core, at most four.
    pub fn for_machine() -> Arc<Self> {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::start(n.min(4))
    }

    /// The number of pool threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `script` on `request` for `message_id`: the object to deliver, or
    /// `None` when the script returned `null` (drop).
    pub async fn run(
        &self,
        script: Arc<Script>,
        request: &Request,
        message_id: &str,
    ) -> Result<Option<serde_json::Value>, TransformError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| TransformError::Stopped)?;
        let (job, rx) = job(script, request, message_id);
        self.send(job)?;
        answer(rx.await.map_err(|_| TransformError::Stopped)?)
    }

    /// Compiles `script` on the pool without running it: `Ok` when its code
    /// evaluates and defines `transform`, else why not (a syntax error, a
    /// throw or an endless loop at the top level, no function).
    pub async fn check(&self, script: Arc<Script>) -> Result<(), TransformError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| TransformError::Stopped)?;
        let (mut job, rx) = job(script, &Request::default(), "msg_check");
        job.check = true;
        self.send(job)?;
        rx.await.map_err(|_| TransformError::Stopped)?.map(|_| ())
    }

    /// [`Engine::run`] for a caller that is not async (benchmarks, tests,
    /// `check`); never call it on a tokio thread.
    pub fn run_blocking(
        &self,
        script: Arc<Script>,
        request: &Request,
        message_id: &str,
    ) -> Result<Option<serde_json::Value>, TransformError> {
        let (job, rx) = job(script, request, message_id);
        self.send(job)?;
        answer(rx.blocking_recv().map_err(|_| TransformError::Stopped)?)
    }
}

/// Starts `threads` pool threads, which end when the sender is dropped.
fn spawn(threads: usize) -> crossbeam_channel::Sender<Job> {
    let (tx, rx) = crossbeam_channel::unbounded::<Job>();
    for i in 0..threads {
        let rx = rx.clone();
        std::thread::Builder::new()
            .name(format!("hookgate-js-{i}"))
            .stack_size(4 * 1024 * 1024)
            .spawn(move || {
                let mut t = engine::Thread::new();
                while let Ok(job) = rx.recv() {
                    let out = if job.check {
                        t.check(&job.script)
                    } else {
                        t.run(&job.script, &job.input, &job.context, &job.message_id)
                    };
                    let _ = job.reply.send(out);
                }
            })
            .expect("the transformation pool's threads start");
    }
    tx
}

/// A job and the receiver of its answer.
fn job(
    script: Arc<Script>,
    request: &Request,
    message_id: &str,
) -> (
    Job,
    oneshot::Receiver<Result<Option<String>, TransformError>>,
) {
    let (reply, rx) = oneshot::channel();
    let context = serde_json::json!({
        "message_id": message_id,
        "transform": script.name,
    });
    let job = Job {
        input: serde_json::to_string(request).expect("a request is JSON"),
        context: context.to_string(),
        message_id: message_id.to_string(),
        check: false,
        script,
        reply,
    };
    (job, rx)
}

/// The answer's JSON text parsed.
fn answer(
    out: Result<Option<String>, TransformError>,
) -> Result<Option<serde_json::Value>, TransformError> {
    match out? {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| TransformError::Invalid(format!("the returned object is not JSON: {e}"))),
    }
}

#[cfg(test)]
mod tests;
