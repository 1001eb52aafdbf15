//! A portable cross-process wait: poll the word with a capped exponential back-off (at most
//! 1 ms between looks). Correct everywhere, slower than a kernel wait; `wake` is then a no-op.
//! Used where no shared-memory wait primitive is wired up (Windows, whose `WaitOnAddress` only
//! wakes threads of the same process, and the BSDs).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::WaitOutcome;

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
