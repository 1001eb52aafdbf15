//! Timeouts cross from JS as milliseconds in an f64: negative or non-finite means "no timeout",
//! and so does one too large for a `Duration` (it would outlast the machine).

use std::time::Duration;

pub fn from_millis(ms: f64) -> Option<Duration> {
    if !(ms.is_finite() && ms >= 0.0) {
        return None;
    }
    Duration::try_from_secs_f64(ms / 1000.0).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_or_invalid_timeouts_are_no_timeout() {
        assert_eq!(from_millis(1e300), None);
        assert_eq!(from_millis(f64::INFINITY), None);
        assert_eq!(from_millis(-1.0), None);
        assert_eq!(from_millis(1500.0), Some(Duration::from_millis(1500)));
    }
}
