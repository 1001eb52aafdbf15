//! Platforms without a native cross-process wait wired up yet (macOS, Windows, the BSDs).
//!
//! Waiting polls the word with a capped exponential back-off (at most 1 ms between looks), which
//! is correct but slower than a kernel wait; waking is then a no-op. Owner liveness is reported
//! as `Unknown`, so a lock whose holder died is never taken over here: owner-death recovery is a
//! Linux feature until these platforms get their own file.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{Liveness, ThreadIdentity, WaitOutcome};

pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> WaitOutcome {
    if word.load(Ordering::Acquire) != expected {
        return WaitOutcome::NotEqual;
    }
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut pause = Duration::from_micros(20);
    loop {
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if remaining == Some(Duration::ZERO) {
            return WaitOutcome::TimedOut;
        }
        std::thread::sleep(remaining.map_or(pause, |r| r.min(pause)));
        if word.load(Ordering::Acquire) != expected {
            return WaitOutcome::Woken;
        }
        pause = (pause * 2).min(Duration::from_millis(1));
    }
}

pub fn wake(_word: &AtomicU32, _count: u32) -> usize {
    0
}

pub fn current_thread() -> ThreadIdentity {
    ThreadIdentity {
        tid: thread_token(),
        namespace: 0,
        start_time: 0,
    }
}

pub fn liveness(_owner: &ThreadIdentity) -> Liveness {
    Liveness::Unknown
}

/// A nonzero id below 2^30, unique among live threads of the machine.
#[cfg(windows)]
fn thread_token() -> u32 {
    // SAFETY: GetCurrentThreadId has no preconditions. Windows thread ids are unique among live
    // threads system-wide, nonzero and multiples of 4, far below 2^30 in practice.
    let id = unsafe { windows_sys::Win32::System::Threading::GetCurrentThreadId() };
    id & 0x3FFF_FFFF
}

/// pid (below 2^17 on macOS and the BSDs) in the high bits, a per-process thread counter below.
#[cfg(unix)]
fn thread_token() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let slot = NEXT.fetch_add(1, Ordering::Relaxed) & 0x1FFF;
    let pid = std::process::id() & 0x1_FFFF;
    (pid << 13) | slot.max(1)
}
