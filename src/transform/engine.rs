//! The JavaScript side: one QuickJS runtime per script on each pool thread,
//! compiled once per script version and kept, a memory limit per runtime and a
//! deadline checked by the interrupt handler. Nothing here runs on tokio's
//! threads: [`super::Engine`] hands jobs over a channel to the threads that
//! own these runtimes.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use rquickjs::context::EvalOptions;
use rquickjs::{CaughtError, Context, Ctx, Function, Object, Persistent, Runtime, Value};

use super::{helpers, Script, TransformError};

/// Scripts kept compiled per thread at most; past it, the cache starts afresh.
const CACHE_MAX: usize = 256;

/// Stack a script may use (QuickJS's default; the pool threads have more).
const JS_STACK: usize = 512 * 1024;

/// One compiled script: its own runtime (so its memory limit is its own),
/// context, and the `transform` function.
struct Compiled {
    /// The function, kept across runs (dropped before the context and runtime).
    func: Persistent<Function<'static>>,
    ctx: Context,
    /// Its memory limit, to name in an error.
    memory: usize,
    /// Kept for the limits set on it; dropped last.
    _rt: Runtime,
}

/// What a pool thread keeps between jobs.
pub(super) struct Thread {
    /// Compiled scripts by name and version.
    cache: HashMap<(String, u64), Compiled>,
    /// The deadline of the run in progress, read by every interrupt handler.
    deadline: Rc<Cell<Option<Instant>>>,
    /// The message id of the run in progress, for `console.log`.
    message_id: Rc<RefCell<String>>,
}

impl Thread {
    pub(super) fn new() -> Self {
        Thread {
            cache: HashMap::new(),
            deadline: Rc::new(Cell::new(None)),
            message_id: Rc::new(RefCell::new(String::new())),
        }
    }

    /// Runs `script` on `input` (JSON text) and returns the JSON text of its
    /// answer (`None`: it returned `null`, the message is dropped).
    pub(super) fn run(
        &mut self,
        script: &Script,
        input: &str,
        context: &str,
        message_id: &str,
    ) -> Result<Option<String>, TransformError> {
        *self.message_id.borrow_mut() = message_id.to_string();
        let started = Instant::now();
        self.deadline.set(Some(started + script.limits.time));
        let key = (script.name.clone(), script.version);
        let out = self
            .compiled(script, &key)
            .and_then(|c| call(c, input, context));
        self.deadline.set(None);
        let out = named_limit(out, script, started);
        if matches!(
            out,
            Err(TransformError::Timeout(_) | TransformError::Memory(_))
        ) {
            // A runtime stopped mid-run or out of memory starts afresh next time.
            self.cache.remove(&key);
        }
        out
    }

    /// Compiles `script` (kept for its runs) without running it: why it
    /// cannot run, if it cannot.
    pub(super) fn check(&mut self, script: &Script) -> Result<Option<String>, TransformError> {
        let started = Instant::now();
        self.deadline.set(Some(started + script.limits.time));
        let key = (script.name.clone(), script.version);
        let out = self.compiled(script, &key).map(|_| None);
        self.deadline.set(None);
        named_limit(out, script, started)
    }

    /// The compiled `script`, from the cache or compiled now and kept.
    fn compiled(
        &mut self,
        script: &Script,
        key: &(String, u64),
    ) -> Result<&Compiled, TransformError> {
        if !self.cache.contains_key(key) {
            let c = self.compile(script)?;
            if self.cache.len() >= CACHE_MAX {
                self.cache.clear();
            }
            // Older versions of the same script are not run again.
            self.cache.retain(|(name, _), _| *name != script.name);
            self.cache.insert(key.clone(), c);
        }
        Ok(&self.cache[key])
    }
}

/// A run's error, the interrupt handler's stop named as the time limit.
fn named_limit<T>(
    out: Result<T, TransformError>,
    script: &Script,
    started: Instant,
) -> Result<T, TransformError> {
    out.map_err(|e| match e {
        // The interrupt handler stopped it: name the limit, not QuickJS's words.
        TransformError::Threw(m)
            if m.contains("interrupted") && started.elapsed() >= script.limits.time =>
        {
            TransformError::Timeout(script.limits.time)
        }
        e => e,
    })
}

impl Thread {
    /// A new runtime and context for `script`, its code evaluated (within the
    /// run's deadline) and its `transform` function found.
    fn compile(&self, script: &Script) -> Result<Compiled, TransformError> {
        let rt = Runtime::new().map_err(|e| TransformError::Engine(e.to_string()))?;
        rt.set_memory_limit(script.limits.memory);
        rt.set_max_stack_size(JS_STACK);
        let deadline = self.deadline.clone();
        rt.set_interrupt_handler(Some(Box::new(move || {
            deadline.get().is_some_and(|d| Instant::now() >= d)
        })));
        let ctx = Context::full(&rt).map_err(|e| TransformError::Engine(e.to_string()))?;
        let limits = script.limits;
        let func = ctx.with(|ctx| -> Result<_, TransformError> {
            helpers::install(&ctx, self.message_id.clone(), script.name.clone())
                .map_err(|e| caught(&ctx, e, limits.memory))?;
            // Named after the script, so an error's place reads `(at transform (name:3))`.
            let mut options = EvalOptions::default();
            options.filename = Some(script.name.clone());
            ctx.eval_with_options::<(), _>(script.code.as_bytes(), options)
                .map_err(|e| caught(&ctx, e, limits.memory))?;
            let f: Value = ctx
                .globals()
                .get("transform")
                .map_err(|e| caught(&ctx, e, limits.memory))?;
            match f.into_function() {
                Some(f) => Ok(Persistent::save(&ctx, f)),
                None => Err(TransformError::NoFunction),
            }
        })?;
        Ok(Compiled {
            func,
            ctx,
            memory: limits.memory,
            _rt: rt,
        })
    }
}

/// Calls a compiled script's `transform(request, context)`.
fn call(c: &Compiled, input: &str, context: &str) -> Result<Option<String>, TransformError> {
    let memory = c.memory;
    c.ctx.with(|ctx| {
        let f = c
            .func
            .clone()
            .restore(&ctx)
            .map_err(|e| TransformError::Engine(e.to_string()))?;
        let req = ctx.json_parse(input).map_err(|e| caught(&ctx, e, memory))?;
        let cx: Object = ctx
            .json_parse(context)
            .map_err(|e| caught(&ctx, e, memory))?
            .into_object()
            .ok_or_else(|| TransformError::Engine("context is not an object".into()))?;
        let out: Value = f.call((req, cx)).map_err(|e| caught(&ctx, e, memory))?;
        if out.is_null() {
            return Ok(None);
        }
        if out.is_undefined() {
            return Err(TransformError::Invalid(
                "returned nothing: return the request to deliver, or null to drop it".into(),
            ));
        }
        if !out.is_object() || out.is_array() || out.is_function() {
            return Err(TransformError::Invalid(format!(
                "returned {}: return an object (the request to deliver), or null to drop it",
                type_name(&out)
            )));
        }
        let text = ctx
            .json_stringify(out)
            .map_err(|e| caught(&ctx, e, memory))?
            .ok_or_else(|| TransformError::Invalid("returned an object that is not JSON".into()))?;
        text.to_string()
            .map(Some)
            .map_err(|e| TransformError::Engine(e.to_string()))
    })
}

/// A JavaScript type, as `typeof` would say it (with `array` told apart).
fn type_name(v: &Value) -> &'static str {
    if v.is_array() {
        "an array"
    } else if v.is_string() {
        "a string"
    } else if v.is_number() {
        "a number"
    } else if v.is_bool() {
        "a boolean"
    } else if v.is_function() {
        "a function"
    } else {
        "a value that is not an object"
    }
}

/// The error of a failed engine call, with the exception's name and message.
fn caught(ctx: &Ctx<'_>, e: rquickjs::Error, memory: usize) -> TransformError {
    match CaughtError::from_error(ctx, e) {
        CaughtError::Exception(ex) => {
            let name: String = ex
                .get::<_, Option<String>>("name")
                .ok()
                .flatten()
                .unwrap_or_else(|| "Error".into());
            let message = ex.message().unwrap_or_default();
            if name == "InternalError" && message.contains("out of memory") {
                return TransformError::Memory(memory);
            }
            let mut text = format!("{name}: {message}");
            if let Some(at) = ex.stack().and_then(|s| first_frame(&s)) {
                text.push_str(" (");
                text.push_str(&at);
                text.push(')');
            }
            TransformError::Threw(text)
        }
        CaughtError::Value(v) => {
            let shown = ctx
                .json_stringify(v)
                .ok()
                .flatten()
                .and_then(|s| s.to_string().ok())
                .unwrap_or_else(|| "a value".into());
            TransformError::Threw(format!("threw {shown}"))
        }
        CaughtError::Error(rquickjs::Error::Allocation) => TransformError::Memory(memory),
        CaughtError::Error(e) => TransformError::Engine(e.to_string()),
    }
}

/// The first line of a stack that names a place (`at transform (eval_script:3)`).
fn first_frame(stack: &str) -> Option<String> {
    stack
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("at "))
        .map(str::to_string)
}
