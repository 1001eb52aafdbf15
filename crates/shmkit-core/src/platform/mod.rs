//! Everything that differs per operating system, behind one contract:
//!
//! * `wait(word, expected, timeout)`: sleep while `*word == expected`, across processes (the
//!   word lives in a shared mapping), until woken, the timeout passes, or a spurious wake-up;
//! * `wake(word, count)`: wake up to `count` sleepers on `word`, in any process;
//! * `current_thread()`: who this thread is, in a form another process can check for liveness;
//! * `liveness(owner)`: whether the thread recorded as a lock owner still runs.
//!
//! One file per OS implements it (`linux.rs`, `macos.rs`, `windows.rs`); `fallback.rs` serves
//! the rest; they take the portable pieces of `portable.rs` where they lack a native one. This
//! directory is the only place in the crate with `cfg(target_os)`.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod os;

#[cfg(target_os = "macos")]
#[path = "macos.rs"]
mod os;

#[cfg(windows)]
#[path = "windows.rs"]
mod os;

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
#[path = "fallback.rs"]
mod os;

#[cfg_attr(target_os = "linux", allow(dead_code))]
mod portable;

pub use os::{
    create_object, effective_uid, list_shm_names, open_object, page_size, shm_object_name,
    unlink_shm, user_name, MappedObject,
};

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// Woken by `wake`, or spuriously: the caller re-checks its condition.
    Woken,
    /// The word did not hold the expected value when the wait began.
    NotEqual,
    TimedOut,
}

/// Identity of a thread, as recorded next to a lock it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadIdentity {
    /// Nonzero and below 2^30; unique among the live threads of one PID namespace (Linux: the
    /// TID). Threads of different namespaces can share it: the whole identity tells them apart.
    pub tid: u32,
    /// Which PID namespace `tid` belongs to (0 when unknown): liveness is only judged inside it.
    pub namespace: u32,
    /// When the thread started, in OS-specific units: guards against TID reuse.
    pub start_time: u64,
    /// The process the thread belongs to (liveness checks and display).
    pub pid: u32,
}

/// What a liveness check concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Dead,
    /// Cannot tell (another PID namespace, no permission): treated as alive, never robbed.
    Unknown,
}

/// Sleeps while `word == expected`; see the module docs. `None` (or a timeout too large to
/// represent) waits without a deadline.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> WaitOutcome {
    os::wait(word, expected, timeout)
}

/// Wakes up to `count` threads sleeping on `word` (all of them for `u32::MAX`).
pub fn wake(word: &AtomicU32, count: u32) -> usize {
    os::wake(word, count)
}

/// The instant `timeout` from now, or `None` (no deadline) when there is no timeout or it lies
/// beyond what `Instant` can represent: a huge timeout means "wait forever", never a panic.
pub fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// Bumped in the child after every `fork()`: cached identities of the parent are stale there.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

#[cfg(unix)]
fn watch_forks() {
    extern "C" fn in_child() {
        // Async-signal-safe: a single atomic add.
        FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
    }
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        // SAFETY: registers a handler that only performs an atomic add, which is safe in the
        // child of a fork; the function lives for the whole program.
        unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
    });
}

#[cfg(not(unix))]
fn watch_forks() {}

thread_local! {
    /// This thread's identity and the fork generation it was computed in.
    static CURRENT: Cell<Option<(u64, ThreadIdentity)>> = const { Cell::new(None) };
}

/// This thread's identity (computed once per thread, and again in the child after a `fork`).
pub fn current_thread() -> ThreadIdentity {
    let generation = FORK_GENERATION.load(Ordering::Relaxed);
    CURRENT.with(|cached| match cached.get() {
        Some((seen, identity)) if seen == generation => identity,
        _ => {
            watch_forks();
            let generation = FORK_GENERATION.load(Ordering::Relaxed);
            let identity = os::current_thread();
            cached.set(Some((generation, identity)));
            identity
        }
    })
}

/// Whether `owner` still runs.
pub fn liveness(owner: &ThreadIdentity) -> Liveness {
    os::liveness(owner)
}

/// Identity of a process, as recorded in a segment's attach table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessIdentity {
    pub pid: u32,
    /// PID namespace (0 when unknown): liveness is only judged inside it.
    pub namespace: u32,
    /// When the process started, in OS-specific units (0 when unknown): guards against pid reuse.
    pub start_time: u64,
}

/// This process's identity (computed once, and again in the child after a `fork`).
pub fn current_process() -> ProcessIdentity {
    static CURRENT: std::sync::Mutex<Option<(u64, ProcessIdentity)>> = std::sync::Mutex::new(None);
    watch_forks();
    let generation = FORK_GENERATION.load(Ordering::Relaxed);
    // `try_lock`: in the child of a fork, another (now vanished) thread may have held the cache
    // lock forever; computing the identity afresh is always correct, only slower.
    let Ok(mut cached) = CURRENT.try_lock() else {
        return os::current_process();
    };
    match *cached {
        Some((seen, identity)) if seen == generation => identity,
        _ => {
            let identity = os::current_process();
            *cached = Some((generation, identity));
            identity
        }
    }
}

/// Whether the process `who` still runs (`Unknown` where the OS cannot tell: never reaped).
pub fn process_liveness(who: &ProcessIdentity) -> Liveness {
    os::process_liveness(who)
}
