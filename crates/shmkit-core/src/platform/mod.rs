//! Everything that differs per operating system, behind one contract:
//!
//! * `wait(word, expected, timeout)`: sleep while `*word == expected`, across processes (the
//!   word lives in a shared mapping), until woken, the timeout passes, or a spurious wake-up;
//! * `wake(word, count)`: wake up to `count` sleepers on `word`, in any process;
//! * `current_thread()`: who this thread is, in a form another process can check for liveness;
//! * `liveness(owner)`: whether the thread recorded as a lock owner still runs.
//!
//! One file per OS implements it (`linux.rs`, `macos.rs`, `windows.rs`); `fallback.rs` serves
//! the rest; both take the portable defaults of `portable.rs` where they lack a native piece.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

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

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
mod portable;

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
    /// Nonzero and below 2^30; unique among live threads of the machine (Linux: the TID).
    pub tid: u32,
    /// Which PID namespace `tid` belongs to (0 when unknown): liveness is only judged inside it.
    pub namespace: u32,
    /// When the thread started, in OS-specific units: guards against TID reuse.
    pub start_time: u64,
    /// The process the thread belongs to (for display; liveness is judged by `tid`).
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

/// Sleeps while `word == expected`; see the module docs.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> WaitOutcome {
    os::wait(word, expected, timeout)
}

/// Wakes up to `count` threads sleeping on `word` (all of them for `u32::MAX`).
pub fn wake(word: &AtomicU32, count: u32) -> usize {
    os::wake(word, count)
}

thread_local! {
    static CURRENT: ThreadIdentity = os::current_thread();
}

/// This thread's identity (computed once per thread).
pub fn current_thread() -> ThreadIdentity {
    CURRENT.with(|identity| *identity)
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

/// This process's identity (computed once).
pub fn current_process() -> ProcessIdentity {
    static CURRENT: std::sync::OnceLock<ProcessIdentity> = std::sync::OnceLock::new();
    *CURRENT.get_or_init(os::current_process)
}

/// Whether the process `who` still runs (`Unknown` where the OS cannot tell: never reaped).
pub fn process_liveness(who: &ProcessIdentity) -> Liveness {
    os::process_liveness(who)
}
