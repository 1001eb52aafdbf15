//! Timeouts cross from JS as milliseconds in an f64: negative or non-finite means "no timeout".

use std::time::Duration;

pub fn from_millis(ms: f64) -> Option<Duration> {
    (ms.is_finite() && ms >= 0.0).then(|| Duration::from_secs_f64(ms / 1000.0))
}
