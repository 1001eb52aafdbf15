//! macOS: `__ulock_wait`/`__ulock_wake` with `UL_COMPARE_AND_WAIT_SHARED`, which, unlike the
//! process-private variant, keys the wait by the shared page so another process's wake reaches
//! it (libSystem has exported these since macOS 10.12; libc++ relies on them too). Thread
//! identities are `pid << 13 | thread slot` (macOS pids are below 100000 < 2^17; slots come from
//! `portable::thread_slot`, unique among live threads and reused once a thread ends), and the
//! start time packs the process start (high 32 bits, µs, for pid reuse) with the thread's
//! system-wide id (low 32 bits, never reused while the machine runs), so a new thread that reuses
//! a slot is never mistaken for the one before. Liveness is judged per process with
//! `proc_pidinfo`: a dead or zombie process, or one whose start time differs (a reused pid), is
//! dead. A worker thread that dies while its process lives is not detected on macOS.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{Liveness, ProcessIdentity, ThreadIdentity, WaitOutcome};

pub use super::portable::object::{open as open_object, MappedObject};
pub use super::portable::{effective_uid, list_shm_names, page_size, unlink_shm, user_name};

/// Creates and maps a new object (nothing to reserve: macOS backs POSIX shm with anonymous
/// memory).
pub fn create_object(
    os_id: &str,
    size: usize,
    mode: u32,
    reserve: bool,
) -> crate::Result<MappedObject> {
    let _ = reserve;
    super::portable::object::create(os_id, size, mode, super::portable::reserve)
}

/// macOS limits POSIX shm names to 31 bytes (PSHMNAMLEN). Longer names are replaced by a
/// deterministic 64-bit hash; the header stores the full name and `open` compares it, so a hash
/// collision is refused rather than silently shared.
pub fn shm_object_name(name: &str) -> String {
    const PSHMNAMLEN: usize = 31;
    let plain = super::portable::shm_object_name(name);
    if plain.len() <= PSHMNAMLEN {
        plain
    } else {
        format!(
            "/{}{:016x}",
            crate::name::OS_PREFIX,
            crate::name::fnv1a64(name.as_bytes())
        )
    }
}

const UL_COMPARE_AND_WAIT_SHARED: u32 = 3;
const ULF_WAKE_ALL: u32 = 0x0000_0100;
const ULF_NO_ERRNO: u32 = 0x0100_0000;
/// `SZOMB` from <sys/proc.h>.
const PROCESS_ZOMBIE: u32 = 5;

extern "C" {
    fn __ulock_wait(
        operation: u32,
        addr: *mut libc::c_void,
        value: u64,
        timeout_us: u32,
    ) -> libc::c_int;
    fn __ulock_wake(operation: u32, addr: *mut libc::c_void, wake_value: u64) -> libc::c_int;
}

pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> WaitOutcome {
    let deadline = super::deadline_after(timeout);
    loop {
        if word.load(Ordering::Acquire) != expected {
            return WaitOutcome::NotEqual;
        }
        // The kernel takes a u32 of microseconds, 0 meaning forever: longer waits go in chunks.
        let micros = match deadline {
            None => 0,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return WaitOutcome::TimedOut;
                }
                left.as_micros().clamp(1, u32::MAX as u128) as u32
            }
        };
        // SAFETY: `word` is a valid, aligned u32 in a shared mapping for the whole call; the
        // kernel only reads it to compare with `expected`.
        let result = unsafe {
            __ulock_wait(
                UL_COMPARE_AND_WAIT_SHARED | ULF_NO_ERRNO,
                word.as_ptr().cast(),
                u64::from(expected),
                micros,
            )
        };
        if result >= 0 || -result == libc::EINTR {
            return WaitOutcome::Woken;
        }
        if -result != libc::ETIMEDOUT {
            return WaitOutcome::Woken; // unexpected: callers re-check their condition anyway
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return WaitOutcome::TimedOut;
        }
    }
}

/// Wakes one or all sleepers. macOS does not say how many woke: this returns 1 if any did.
pub fn wake(word: &AtomicU32, count: u32) -> usize {
    let all = if count > 1 { ULF_WAKE_ALL } else { 0 };
    // SAFETY: the address is only used as a key by the kernel; `word` is valid and aligned.
    let result = unsafe {
        __ulock_wake(
            UL_COMPARE_AND_WAIT_SHARED | ULF_NO_ERRNO | all,
            word.as_ptr().cast(),
            0,
        )
    };
    usize::from(result >= 0)
}

pub fn current_thread() -> ThreadIdentity {
    // SAFETY: getpid has no preconditions (fresh after a fork, unlike a cached value).
    let pid = unsafe { libc::getpid() } as u32;
    let mut thread_id = 0u64;
    // SAFETY: a null thread means the calling thread; `thread_id` is a valid out-pointer.
    unsafe { libc::pthread_threadid_np(0 as libc::pthread_t, &mut thread_id) };
    let process_start = process_info(pid as libc::pid_t).map_or(0, |info| info.1);
    ThreadIdentity {
        tid: ((pid & 0x1_FFFF) << 13) | super::portable::thread_slot(),
        namespace: 0,
        start_time: ((process_start & 0xFFFF_FFFF) << 32) | (thread_id & 0xFFFF_FFFF),
        pid,
    }
}

pub fn liveness(owner: &ThreadIdentity) -> Liveness {
    let pid = owner.pid as libc::pid_t;
    match process_info(pid) {
        None => Liveness::Dead,
        Some((status, _)) if status == PROCESS_ZOMBIE => Liveness::Dead,
        Some((_, started))
            if owner.start_time != 0 && (started & 0xFFFF_FFFF) != owner.start_time >> 32 =>
        {
            Liveness::Dead
        }
        Some(_) => Liveness::Alive,
    }
}

pub fn current_process() -> ProcessIdentity {
    let pid = std::process::id();
    ProcessIdentity {
        pid,
        namespace: 0,
        start_time: process_info(pid as libc::pid_t).map_or(0, |info| info.1),
    }
}

pub fn process_liveness(who: &ProcessIdentity) -> Liveness {
    match process_info(who.pid as libc::pid_t) {
        None => Liveness::Dead,
        Some((status, _)) if status == PROCESS_ZOMBIE => Liveness::Dead,
        Some((_, started)) if who.start_time != 0 && started != who.start_time => Liveness::Dead,
        Some(_) => Liveness::Alive,
    }
}

/// `(status, start time in µs)` of `pid`, or `None` if no such process exists.
fn process_info(pid: libc::pid_t) -> Option<(u32, u64)> {
    // SAFETY: proc_bsdinfo is plain old data; zeroed is a valid value.
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
    // SAFETY: `info` is a writable buffer of exactly `size` bytes.
    let written = unsafe {
        libc::proc_pidinfo(
            pid,
            libc::PROC_PIDTBSDINFO,
            0,
            (&mut info as *mut libc::proc_bsdinfo).cast(),
            size,
        )
    };
    (written == size).then(|| {
        (
            info.pbi_status,
            info.pbi_start_tvsec * 1_000_000 + info.pbi_start_tvusec,
        )
    })
}
