//! Asynchronous waiting without the libuv thread pool.
//!
//! Each pending `lockAsync`/`waitAsync` that cannot complete at once runs on a native waiter
//! thread of its own (from `waiter_pool`, which keeps finished threads for the next waits): it
//! sleeps on the shared word (in slices of at most 50 ms, so a cancelled request is noticed),
//! then settles the JavaScript promise through a threadsafe function. The libuv pool, which `fs`, `crypto` and `zlib` share, is never used, so any number
//! of pending waiters leaves them at full speed. A cancelled or timed-out request never leaks a
//! lock: whichever of "acquired" and "cancelled" happens first wins a CAS on the request state,
//! and the loser undoes its side (see `Request`).

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::JsDeferred;
use napi_derive::napi;

use crate::errors::{coded, Code};
use crate::waiter_pool;

const PENDING: u8 = 0;
const COMPLETED: u8 = 1;
const CANCELLED: u8 = 2;

/// The state shared by a waiter thread and the JavaScript side of one request.
#[derive(Default)]
pub struct Request {
    state: AtomicU8,
    cancel_flag: AtomicBool,
}

impl Request {
    /// Called by the waiter thread with its result in hand: false if JavaScript cancelled first
    /// (the thread must then undo, e.g. release a lock it just took).
    pub fn complete(&self) -> bool {
        self.state
            .compare_exchange(PENDING, COMPLETED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub fn cancel_flag(&self) -> &AtomicBool {
        &self.cancel_flag
    }
}

/// The JavaScript handle on a request: `cancel()` for aborts.
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

    /// Cancels the request. Returns false when the waiter already completed it, in which case
    /// its result is on its way and the caller must undo it (release the lock) when it arrives.
    #[napi]
    pub fn cancel(&self) -> bool {
        self.request.cancel_flag.store(true, Ordering::Release);
        self.request
            .state
            .compare_exchange(PENDING, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub fn request(&self) -> Arc<Request> {
        self.request.clone()
    }
}

type Resolver = Box<dyn FnOnce(Env) -> napi::Result<String> + Send>;

/// Runs `work` on a waiter thread and returns a promise of the string it produces.
pub fn spawn_waiter<'env>(
    env: &'env Env,
    work: impl FnOnce() -> String + Send + 'static,
) -> Result<Object<'env>, Code> {
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
