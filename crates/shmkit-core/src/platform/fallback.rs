//! Platforms with no dedicated file yet (the BSDs and others): polling waits, and owner
//! liveness reported as `Unknown`, so a lock whose holder died is never taken over here.

use std::sync::atomic::{AtomicU32, Ordering};

use super::{Liveness, ThreadIdentity};

pub use super::portable::{current_process, process_liveness, wait, wake};

pub fn current_thread() -> ThreadIdentity {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    // pid (below 2^17 on the BSDs) in the high bits, a per-process thread counter below.
    let slot = NEXT.fetch_add(1, Ordering::Relaxed) & 0x1FFF;
    let pid = std::process::id() & 0x1_FFFF;
    ThreadIdentity {
        tid: (pid << 13) | slot.max(1),
        namespace: 0,
        start_time: 0,
        pid: std::process::id(),
    }
}

pub fn liveness(_owner: &ThreadIdentity) -> Liveness {
    Liveness::Unknown
}
