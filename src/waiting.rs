//! Asynchronous waiting without the libuv thread pool.
//!
//! Each pending `lockAsync`/`waitAsync` that cannot complete at once runs on a native waiter
//! thread of its own (from `waiter_pool`, which keeps finished threads for the next waits): it
//! sleeps on the shared word (in slices of at most 50 ms, so a cancelled request is noticed),
//! then settles the JavaScript promise through a threadsafe function. The libuv pool, which `fs`,
//! `crypto` and `zlib` share, is never used, so any number of pending waiters leaves them at full
//! speed.
//!
//! A waiter only WAITS: it never takes a lock on behalf of the JavaScript thread (that thread
//! takes it itself when the promise settles), so no lock is ever held by a thread that is not
//! running the code that will release it. What a waiter can consume is a wake-up: a waiter that
//! was woken and whose request is then cancelled passes the wake on ([`Request::finish`]).
//!
//! Requests of a JavaScript environment (the main thread or a worker) are cancelled when that
//! environment shuts down (a cleanup hook), so a terminated worker leaves no waiter sleeping.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;
use napi::JsDeferred;
use napi_derive::napi;

use crate::cleanup::EnvRegistry;
use crate::errors::{coded, Code};
use crate::waiter_pool;

const PENDING: u8 = 0;
const FINISHED: u8 = 1;
const CANCELLED: u8 = 2;

/// Undoes what a finished waiter consumed (a wake-up) when its request is cancelled late.
pub type PassOn = Box<dyn FnOnce() + Send>;

/// The state shared by a waiter thread and the JavaScript side of one request.
#[derive(Default)]
pub struct Request {
    state: AtomicU8,
    cancel_flag: AtomicBool,
    pass_on: Mutex<Option<PassOn>>,
}

impl Request {
    /// Called by the waiter thread with its outcome in hand. `pass_on` undoes what the outcome
    /// consumed; it runs now if the request was already cancelled, or later if it is cancelled
    /// before JavaScript uses the outcome. Returns false if the request was cancelled first.
    pub fn finish(&self, pass_on: Option<PassOn>) -> bool {
        *self.pass_on.lock().unwrap_or_else(|e| e.into_inner()) = pass_on;
        if self
            .state
            .compare_exchange(PENDING, FINISHED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return true;
        }
        self.run_pass_on();
        false
    }

    pub fn cancel_flag(&self) -> &AtomicBool {
        &self.cancel_flag
    }

    /// Cancels; true if the waiter had not finished (it will report `cancelled`).
    fn cancel(&self) -> bool {
        self.cancel_flag.store(true, Ordering::Release);
        let previous = self.state.swap(CANCELLED, Ordering::AcqRel);
        if previous == FINISHED {
            self.run_pass_on();
        }
        previous == PENDING
    }

    fn run_pass_on(&self) {
        let pass_on = self
            .pass_on
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(pass_on) = pass_on {
            pass_on();
        }
    }
}

/// The JavaScript handle on a request: `cancel()` for aborts and `close()`.
#[napi]
pub struct WaitToken {
    request: Arc<Request>,
}

#[napi]
impl WaitToken {
    #[napi(constructor)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        WaitToken {
            request: Arc::default(),
        }
    }

    /// Cancels the request. Returns false when the waiter had already finished: its outcome is
    /// then void, and a wake-up it consumed has been passed on to another sleeper.
    #[napi]
    pub fn cancel(&self) -> bool {
        self.request.cancel()
    }

    pub fn request(&self) -> Arc<Request> {
        self.request.clone()
    }
}

type Resolver = Box<dyn FnOnce(Env) -> napi::Result<String> + Send>;

/// Requests in flight per JavaScript environment, cancelled when it shuts down.
static REQUESTS: EnvRegistry<Request> = EnvRegistry::new(|request| {
    request.cancel();
});

/// Records `request` under `env`.
fn track(env: &Env, request: &Arc<Request>) -> Result<(), Code> {
    REQUESTS.track(env, request)
}

/// Runs `work` on a waiter thread and returns a promise of the string it produces.
pub fn spawn_waiter<'env>(
    env: &'env Env,
    request: &Arc<Request>,
    work: impl FnOnce() -> String + Send + 'static,
) -> Result<Object<'env>, Code> {
    track(env, request)?;
    let (deferred, promise): (JsDeferred<String, Resolver>, Object<'env>) =
        env.create_deferred()
            .map_err(|e| coded("ERR_SHM_NAPI", e.reason.clone()))?;
    waiter_pool::run(Box::new(move || {
        let outcome = work();
        deferred.resolve(Box::new(move |_env| Ok(outcome)));
    }))
    .map_err(|e| coded("EAGAIN", format!("Cannot start a waiter thread: {e}")))?;
    Ok(promise)
}
