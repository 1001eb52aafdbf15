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

/// Other Unixes back POSIX shm with anonymous memory, not a size-limited tmpfs: nothing to
/// reserve.
#[cfg(unix)]
#[allow(dead_code)]
pub fn reserve(_fd: libc::c_int, _size: usize) -> crate::Result<()> {
    Ok(())
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

/// A POSIX shared-memory object mapped whole (`MAP_SHARED`), with who owns it: every Unix.
#[cfg(unix)]
pub mod object {
    use std::ffi::CString;

    use crate::error::{Error, ErrorCode, Result};

    /// An open, mapped object; unmapped (and its descriptor closed) on drop.
    pub struct MappedObject {
        ptr: *mut u8,
        len: usize,
        fd: libc::c_int,
        /// The object's owner and permission bits, from `fstat` on the very descriptor mapped.
        pub owner: Option<u32>,
        pub mode: Option<u32>,
    }

    // SAFETY: the region is MAP_SHARED memory valid until `drop`, not tied to any thread; the
    // descriptor is a plain integer. Accesses go through atomics or through views whose
    // synchronisation is the caller's (as with any shared memory).
    unsafe impl Send for MappedObject {}
    // SAFETY: as above; `&MappedObject` only exposes the pointer and length.
    unsafe impl Sync for MappedObject {}

    impl MappedObject {
        pub fn as_ptr(&self) -> *mut u8 {
            self.ptr
        }

        #[allow(clippy::len_without_is_empty)] // a mapping is never empty
        pub fn len(&self) -> usize {
            self.len
        }
    }

    impl Drop for MappedObject {
        fn drop(&mut self) {
            // SAFETY: `ptr..ptr+len` is the mapping made in `map`, unmapped once; `fd` is ours.
            unsafe {
                libc::munmap(self.ptr.cast(), self.len);
                libc::close(self.fd);
            }
        }
    }

    fn c_name(os_id: &str) -> CString {
        CString::new(os_id).expect("validated names hold no NUL")
    }

    /// Creates `os_id` exclusively (`O_CREAT | O_EXCL`: never someone else's object) with the
    /// final `mode` from the start (the umask can only narrow it, and `fchmod` then sets it
    /// exactly: it never exists with a wider mode than asked), sizes it, reserves its pages with
    /// `reserve`, and maps it. A failure after the create removes the object again.
    pub fn create(
        os_id: &str,
        size: usize,
        mode: u32,
        reserve: impl FnOnce(libc::c_int, usize) -> Result<()>,
    ) -> Result<MappedObject> {
        let name = c_name(os_id);
        let flags = libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC;
        // SAFETY: `name` is a valid C string; the descriptor is owned by the result or closed.
        let fd = unsafe { libc::shm_open(name.as_ptr(), flags, mode as libc::mode_t) };
        if fd < 0 {
            let err = std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            return Err(if err == libc::EEXIST {
                Error::new(ErrorCode::AlreadyExists, "The segment already exists")
            } else {
                Error::os(err, "Cannot create the segment")
            });
        }
        let built = (|| {
            super::set_mode(fd, mode)?;
            let length = libc::off_t::try_from(size)
                .map_err(|_| Error::new(ErrorCode::OutOfRange, "The segment is too large"))?;
            // SAFETY: ftruncate on a descriptor we own.
            if unsafe { libc::ftruncate(fd, length) } != 0 {
                return Err(Error::last_os("Cannot size the segment"));
            }
            reserve(fd, size)?;
            map(fd, size, Some(0), Some(mode))
        })();
        if built.is_err() {
            // SAFETY: `name` is valid; the object is ours (O_EXCL) and never published.
            unsafe {
                libc::shm_unlink(name.as_ptr());
                libc::close(fd);
            }
        }
        built.map(|mut object| {
            // SAFETY: geteuid has no preconditions.
            object.owner = Some(unsafe { libc::geteuid() });
            object
        })
    }

    /// Opens and maps `os_id` whole; the owner and mode come from `fstat` on the descriptor
    /// mapped, not from the name (which may be replaced at any time).
    pub fn open(os_id: &str) -> Result<MappedObject> {
        let name = c_name(os_id);
        // SAFETY: `name` is a valid C string; the descriptor is owned by the result or closed.
        let fd = unsafe {
            libc::shm_open(
                name.as_ptr(),
                libc::O_RDWR | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                0,
            )
        };
        if fd < 0 {
            let err = std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            return Err(Error::os(err, "Cannot open the segment"));
        }
        // SAFETY: an all-zero `stat` is a valid value to be overwritten by fstat.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat on a descriptor we own, into a valid `stat`.
        if unsafe { libc::fstat(fd, &mut stat) } != 0 {
            let err = Error::last_os("Cannot read the segment's owner");
            // SAFETY: closing our own descriptor once.
            unsafe { libc::close(fd) };
            return Err(err);
        }
        let Ok(size) = usize::try_from(stat.st_size) else {
            // SAFETY: closing our own descriptor once.
            unsafe { libc::close(fd) };
            return Err(Error::new(
                ErrorCode::NotShmkit,
                "The object has a negative size",
            ));
        };
        if size == 0 {
            // SAFETY: closing our own descriptor once.
            unsafe { libc::close(fd) };
            // Not sized yet: its creator is between create and ftruncate.
            return Err(Error::new(
                ErrorCode::Os(libc::EINVAL),
                "The segment is empty",
            ));
        }
        #[allow(clippy::useless_conversion)] // `st_mode` is a u16 on macOS, a u32 on Linux
        let mode = u32::from(stat.st_mode) & 0o7777;
        let result = map(fd, size, Some(stat.st_uid), Some(mode));
        if result.is_err() {
            // SAFETY: closing our own descriptor once (map failed, nothing took it).
            unsafe { libc::close(fd) };
        }
        result
    }

    fn map(
        fd: libc::c_int,
        size: usize,
        owner: Option<u32>,
        mode: Option<u32>,
    ) -> Result<MappedObject> {
        // SAFETY: a fresh shared read-write mapping of `size` bytes of our descriptor; the
        // result is checked against MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Error::last_os("Cannot map the segment"));
        }
        Ok(MappedObject {
            ptr: ptr.cast(),
            len: size,
            fd,
            owner,
            mode,
        })
    }
}

/// The effective user of this process, as owners are compared to it.
#[cfg(unix)]
pub fn effective_uid() -> Option<u32> {
    // SAFETY: geteuid has no preconditions.
    Some(unsafe { libc::geteuid() })
}

/// The login name of user `uid`, for messages (`None` if unknown).
#[cfg(unix)]
pub fn user_name(uid: u32) -> Option<String> {
    let mut buffer = vec![0 as libc::c_char; 1024];
    // SAFETY: all-zero is a valid `passwd` to be overwritten.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer refers to a live, writable buffer of the stated size; the result is
    // read only if `found` is set (pointing at `entry`, whose strings live in `buffer`).
    let status = unsafe {
        libc::getpwuid_r(
            uid as libc::uid_t,
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if status != 0 || found.is_null() || entry.pw_name.is_null() {
        return None;
    }
    // SAFETY: `pw_name` is a NUL-terminated string inside `buffer`, still alive here.
    let name = unsafe { std::ffi::CStr::from_ptr(entry.pw_name) };
    Some(name.to_string_lossy().into_owned())
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
