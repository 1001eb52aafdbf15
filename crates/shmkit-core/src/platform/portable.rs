//! Portable pieces for platforms that lack a native one:
//!
//! * a cross-process wait that polls the word with a capped exponential back-off (at most 1 ms
//!   between looks): correct everywhere, slower than a kernel wait; `wake` is then a no-op
//!   (Windows, whose `WaitOnAddress` only wakes threads of the same process, and the BSDs);
//! * a process identity without a start time, and liveness reported as `Unknown`, so attachers
//!   of such a platform are never reaped as dead;
//! * thread slots for systems whose thread ids do not fit the lock word (macOS, the BSDs): a
//!   slot is unique among the live threads of its process and returns to the pool when its
//!   thread ends, so two live threads never share one however many threads come and go;
//! * the page size from `sysconf` on every Unix.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{Liveness, ProcessIdentity, WaitOutcome};

pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> WaitOutcome {
    if word.load(Ordering::Acquire) != expected {
        return WaitOutcome::NotEqual;
    }
    let deadline = super::deadline_after(timeout);
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

/// Slots available per process: 13 bits beside a 17-bit pid in the 30-bit owner field.
pub const THREAD_SLOTS: u32 = 1 << 13;

/// Taken slots, one bit each (slot 0 is never handed out: an owner of 0 means "free").
static SLOTS: [AtomicU32; (THREAD_SLOTS / 32) as usize] =
    [const { AtomicU32::new(0) }; (THREAD_SLOTS / 32) as usize];

/// Returns its slot to the pool when the thread ends.
struct SlotLease(u32);

impl Drop for SlotLease {
    fn drop(&mut self) {
        SLOTS[(self.0 / 32) as usize].fetch_and(!(1 << (self.0 % 32)), Ordering::AcqRel);
    }
}

thread_local! {
    static LEASE: std::cell::OnceCell<SlotLease> = const { std::cell::OnceCell::new() };
}

/// This thread's slot, from 1 to `THREAD_SLOTS - 1`, unique among the process's live threads.
/// A process with more live threads than slots gets a panic rather than a shared identity.
pub fn thread_slot() -> u32 {
    LEASE.with(|lease| {
        lease
            .get_or_init(|| {
                for slot in 1..THREAD_SLOTS {
                    let bit = 1 << (slot % 32);
                    let word = &SLOTS[(slot / 32) as usize];
                    if word.fetch_or(bit, Ordering::AcqRel) & bit == 0 {
                        return SlotLease(slot);
                    }
                }
                panic!(
                    "more than {} live threads use shmkit locks",
                    THREAD_SLOTS - 1
                )
            })
            .0
    })
}

#[cfg(unix)]
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

#[cfg(not(unix))]
pub fn page_size() -> usize {
    4096
}

/// POSIX shared-memory object names: `/shmkit.<name>`.
#[allow(dead_code)]
pub fn shm_object_name(name: &str) -> String {
    format!("/{}{name}", crate::name::OS_PREFIX)
}

/// Applies `mode` exactly (not masked by the umask) to a new object. `reserve` is ignored: other
/// Unixes back POSIX shm with anonymous memory, not a size-limited tmpfs.
#[cfg(unix)]
#[allow(dead_code)]
pub fn finish_create(os_id: &str, _size: usize, mode: u32, _reserve: bool) -> crate::Result<()> {
    with_shm_fd(os_id, |fd| set_mode(fd, mode))
}

/// Opens the new object `os_id` read-write for `f` (then closes it).
#[cfg(unix)]
pub fn with_shm_fd(
    os_id: &str,
    f: impl FnOnce(libc::c_int) -> crate::Result<()>,
) -> crate::Result<()> {
    let name = std::ffi::CString::new(os_id).expect("validated names hold no NUL");
    // SAFETY: `name` is a valid C string; the returned descriptor is closed below.
    let fd = unsafe { libc::shm_open(name.as_ptr(), libc::O_RDWR, 0) };
    if fd < 0 {
        return Err(crate::Error::last_os("Cannot reopen the new segment"));
    }
    let result = f(fd);
    // SAFETY: fd is a descriptor we own and close once.
    unsafe { libc::close(fd) };
    result
}

/// `fchmod`, so the mode is exactly what the caller asked (the umask narrowed the create).
#[cfg(unix)]
pub fn set_mode(fd: libc::c_int, mode: u32) -> crate::Result<()> {
    // SAFETY: fchmod on a descriptor the caller owns.
    if unsafe { libc::fchmod(fd, mode as libc::mode_t) } != 0 {
        return Err(crate::Error::last_os("Cannot set the segment's mode"));
    }
    Ok(())
}

/// Removes the object's name; existing mappings stay valid until closed.
#[cfg(unix)]
pub fn unlink_shm(os_id: &str) -> crate::Result<()> {
    let name = std::ffi::CString::new(os_id).expect("validated names hold no NUL");
    // SAFETY: `name` is a valid C string.
    if unsafe { libc::shm_unlink(name.as_ptr()) } != 0 {
        return Err(crate::Error::last_os("Cannot unlink the segment"));
    }
    Ok(())
}

/// Systems without a listable shared-memory directory.
#[allow(dead_code)]
pub fn list_shm_names(_prefix: &str) -> std::io::Result<Vec<String>> {
    Err(std::io::Error::from_raw_os_error(libc::ENOSYS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_threads_never_share_a_slot_and_slots_are_reused() {
        let mine = thread_slot();
        assert_eq!(mine, thread_slot(), "stable within a thread");
        let others: Vec<u32> = (0..4)
            .map(|_| std::thread::spawn(thread_slot).join().unwrap())
            .collect();
        assert!(others.iter().all(|&slot| slot != mine && slot != 0));
        // Each finished thread returned its slot: the next thread may reuse it.
        assert!(others.windows(2).all(|pair| pair[0] == pair[1]));
        let (tx, rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let live = std::thread::spawn(move || {
            tx.send(thread_slot()).unwrap();
            release_rx.recv().unwrap();
        });
        let live_slot = rx.recv().unwrap();
        let concurrent = std::thread::spawn(thread_slot).join().unwrap();
        assert_ne!(live_slot, concurrent);
        release_tx.send(()).unwrap();
        live.join().unwrap();
    }
}
