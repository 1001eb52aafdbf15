//! Portable defaults for platforms that lack a native piece (Windows, whose `WaitOnAddress` only
//! wakes threads of the same process, and the BSDs):
//!
//! * a cross-process wait that polls the word with a capped exponential back-off (at most 1 ms
//!   between looks): correct everywhere, slower than a kernel wait; `wake` is then a no-op;
//! * a process identity without a start time, and liveness reported as `Unknown`, so attachers
//!   of such a platform are never reaped as dead.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{Liveness, ProcessIdentity, WaitOutcome};

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

pub fn current_process() -> ProcessIdentity {
    ProcessIdentity {
        pid: std::process::id(),
        namespace: 0,
        start_time: 0,
    }
}

pub fn process_liveness(_who: &ProcessIdentity) -> Liveness {
    Liveness::Unknown
}
