//! Platforms with no dedicated file yet (the BSDs and others): polling waits, and owner
//! liveness reported as `Unknown`, so a lock whose holder died is never taken over here.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Liveness, ThreadIdentity};

pub use super::portable::object::{open as open_object, MappedObject};
pub use super::portable::{
    current_process, effective_uid, list_shm_names, page_size, process_liveness, shm_object_name,
    unlink_shm, user_name, wait, wake,
};

/// Creates and maps a new object (nothing to reserve outside Linux's tmpfs).
pub fn create_object(
    os_id: &str,
    size: usize,
    mode: u32,
    reserve: bool,
) -> crate::Result<MappedObject> {
    let _ = reserve;
    super::portable::object::create(os_id, size, mode, super::portable::reserve)
}

pub fn current_thread() -> ThreadIdentity {
    /// Threads started so far: tells apart two threads that used the same slot one after the
    /// other.
    static STARTED: AtomicU64 = AtomicU64::new(1);
    let pid = std::process::id();
    ThreadIdentity {
        // pid (below 2^17 on the BSDs) in the high bits, a live-unique slot below.
        tid: ((pid & 0x1_FFFF) << 13) | super::portable::thread_slot(),
        namespace: 0,
        start_time: STARTED.fetch_add(1, Ordering::Relaxed),
        pid,
    }
}

pub fn liveness(_owner: &ThreadIdentity) -> Liveness {
    Liveness::Unknown
}
