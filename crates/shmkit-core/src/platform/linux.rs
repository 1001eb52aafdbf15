//! Linux: the futex syscall WITHOUT `FUTEX_PRIVATE_FLAG` (private futexes are keyed by address
//! space and would never wake another process), thread ids from `gettid`, liveness from
//! `/proc/<tid>/stat` confirmed by `kill(tid, 0)` where /proc hides the task.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use super::{Liveness, ProcessIdentity, ThreadIdentity, WaitOutcome};

pub use super::portable::object::{open as open_object, MappedObject};
pub use super::portable::{effective_uid, page_size, shm_object_name, unlink_shm, user_name};

/// Creates and maps a new object (see `portable::object::create`); with `reserve_pages`,
/// reserves every page now, so a full /dev/shm is an `ENOSPC` here rather than a SIGBUS on first
/// write.
pub fn create_object(
    os_id: &str,
    size: usize,
    mode: u32,
    reserve_pages: bool,
) -> crate::Result<MappedObject> {
    super::portable::object::create(os_id, size, mode, |fd, size| {
        if reserve_pages {
            reserve(fd, size)
        } else {
            Ok(())
        }
    })
}

/// `posix_fallocate`: the pages exist now, or the creation fails with `ENOSPC`.
fn reserve(fd: libc::c_int, size: usize) -> crate::Result<()> {
    use crate::error::{Error, ErrorCode};
    // SAFETY: posix_fallocate on a descriptor the caller owns; it returns the errno instead of
    // setting it.
    let errno = unsafe { libc::posix_fallocate(fd, 0, size as libc::off_t) };
    match errno {
        0 => Ok(()),
        // A file system that cannot reserve (not tmpfs): keep the lazy behaviour.
        libc::EOPNOTSUPP | libc::EINVAL => Ok(()),
        libc::ENOSPC => Err(Error::new(
            ErrorCode::NoSpace,
            format!(
                "Not enough shared memory for {size} bytes: /dev/shm is too small or full \
                 (Docker's default is 64 MB; raise it with --shm-size, or free space)"
            ),
        )),
        other => Err(Error::os(other, "Cannot reserve the segment's memory")),
    }
}

pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> WaitOutcome {
    // A timeout beyond what a timespec holds is "no deadline" (it would outlast the machine).
    let timespec = timeout.and_then(|t| {
        Some(libc::timespec {
            tv_sec: libc::time_t::try_from(t.as_secs()).ok()?,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        })
    });
    let timespec_ptr = timespec
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call; FUTEX_WAIT only reads
    // it and compares; the timespec outlives the call (or is null for "forever"). The relative
    // timeout is what FUTEX_WAIT takes.
    let result = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            timespec_ptr,
        )
    };
    if result == 0 {
        return WaitOutcome::Woken;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) => WaitOutcome::NotEqual,
        Some(libc::ETIMEDOUT) => WaitOutcome::TimedOut,
        // EINTR: a signal arrived. Nothing else is expected for a valid, mapped word; either
        // way callers re-check their condition and deadline, so "woken" is always safe.
        _ => WaitOutcome::Woken,
    }
}

pub fn wake(word: &AtomicU32, count: u32) -> usize {
    let count = count.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: FUTEX_WAKE only uses the address as a key; `word` is valid and aligned.
    let result = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, count) };
    result.max(0) as usize
}

pub fn current_thread() -> ThreadIdentity {
    // SAFETY: gettid has no preconditions and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as u32;
    let start_time = read_stat(&format!("/proc/{tid}/stat"))
        .map(|stat| stat.start_time)
        .unwrap_or(0);
    ThreadIdentity {
        tid,
        namespace: pid_namespace(),
        start_time,
        pid: std::process::id(),
    }
}

pub fn liveness(owner: &ThreadIdentity) -> Liveness {
    let mine = pid_namespace();
    if owner.namespace != 0 && mine != 0 && owner.namespace != mine {
        return Liveness::Unknown;
    }
    match read_stat(&format!("/proc/{}/stat", owner.tid)) {
        // A zombie has stopped running even though its pid still exists: count it as dead, or a
        // parent that waits for the lock before reaping its child would wait forever.
        Ok(stat) if matches!(stat.state, 'Z' | 'X' | 'x') => Liveness::Dead,
        Ok(stat) if owner.start_time != 0 && stat.start_time != owner.start_time => {
            Liveness::Dead // the tid was reused by a newer thread
        }
        Ok(_) => Liveness::Alive,
        // ENOENT is no proof of death: /proc mounted with `hidepid=invisible` hides other
        // users' tasks. Ask the kernel itself; it answers for hidden tasks too (the start time
        // cannot be compared then, so a reused tid counts as alive: never robbed).
        Err(_) => task_exists(owner.tid),
    }
}

/// `kill(tid, 0)` finds any task by its id (a thread's too) without signalling it: ESRCH means
/// no such task, EPERM a task of another user that exists.
fn task_exists(tid: u32) -> Liveness {
    let Ok(tid) = libc::pid_t::try_from(tid) else {
        return Liveness::Unknown;
    };
    if tid <= 0 {
        return Liveness::Unknown;
    }
    // SAFETY: signal 0 performs only the existence and permission checks; nothing is delivered.
    if unsafe { libc::kill(tid, 0) } == 0 {
        return Liveness::Alive;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ESRCH) => Liveness::Dead,
        Some(libc::EPERM) => Liveness::Alive,
        _ => Liveness::Unknown,
    }
}

pub fn current_process() -> ProcessIdentity {
    ProcessIdentity {
        // SAFETY: getpid has no preconditions (not `std::process::id`, which some libcs cache
        // across fork).
        pid: unsafe { libc::getpid() } as u32,
        namespace: pid_namespace(),
        start_time: read_stat("/proc/self/stat").map_or(0, |stat| stat.start_time),
    }
}

/// A process is alive while any of its threads runs. Its main thread may have ended with
/// `pthread_exit` while others go on: the leader then shows as a zombie, so a zombie with more
/// than one thread is alive.
pub fn process_liveness(who: &ProcessIdentity) -> Liveness {
    let mine = pid_namespace();
    if who.namespace != 0 && mine != 0 && who.namespace != mine {
        return Liveness::Unknown;
    }
    match read_stat(&format!("/proc/{}/stat", who.pid)) {
        Ok(stat) if who.start_time != 0 && stat.start_time != who.start_time => Liveness::Dead,
        Ok(stat) if matches!(stat.state, 'Z' | 'X' | 'x') => {
            if thread_count(who.pid).is_some_and(|threads| threads > 1) {
                Liveness::Alive
            } else {
                Liveness::Dead
            }
        }
        Ok(_) => Liveness::Alive,
        Err(_) => task_exists(who.pid),
    }
}

fn thread_count(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|count| count.trim().parse().ok())
}

struct Stat {
    state: char,
    start_time: u64,
}

/// Parses `/proc/<tid>/stat`: the command name may hold spaces and parentheses, so fields are
/// counted after the LAST `)`. State is field 3, starttime field 22 (proc(5)).
fn read_stat(path: &str) -> std::io::Result<Stat> {
    let text = std::fs::read_to_string(path)?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "unparsable stat");
    let after_name = &text[text.rfind(')').ok_or_else(bad)? + 1..];
    let mut fields = after_name.split_whitespace();
    let state = fields
        .next()
        .and_then(|f| f.chars().next())
        .ok_or_else(bad)?;
    let start_time = fields
        .nth(18)
        .and_then(|f| f.parse().ok())
        .ok_or_else(bad)?;
    Ok(Stat { state, start_time })
}

fn pid_namespace() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid")
        .map(|m| m.ino() as u32)
        .unwrap_or(0)
}

/// Names in the shared-memory directory that start with `prefix` (without it), sorted.
pub fn list_shm_names(prefix: &str) -> std::io::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir("/dev/shm")?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter_map(|file| file.strip_prefix(prefix).map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_thread_is_alive_and_a_finished_one_is_dead() {
        let me = current_thread();
        assert!(me.tid > 0 && me.tid < (1 << 30));
        assert_ne!(me.start_time, 0);
        assert_eq!(liveness(&me), Liveness::Alive);

        let finished = std::thread::spawn(current_thread).join().unwrap();
        // `join` returns once the thread cleared its tid, which the kernel does before it has
        // released the task: /proc may show it a moment longer (seen under valgrind). Seen
        // alive a little late is safe (a lock is taken over a little later); never dead early.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while liveness(&finished) == Liveness::Alive && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(liveness(&finished), Liveness::Dead);

        let reused = ThreadIdentity {
            start_time: me.start_time + 1,
            ..me
        };
        assert_eq!(liveness(&reused), Liveness::Dead);

        let foreign = ThreadIdentity {
            namespace: me.namespace ^ 1,
            ..finished
        };
        assert_eq!(liveness(&foreign), Liveness::Unknown);
    }

    #[test]
    fn the_kernel_confirms_what_proc_cannot_show() {
        let me = current_thread();
        assert_eq!(task_exists(me.tid), Liveness::Alive);
        let finished = std::thread::spawn(current_thread).join().unwrap();
        assert_eq!(task_exists(finished.tid), Liveness::Dead);
        assert_eq!(task_exists(0), Liveness::Unknown);
    }

    #[test]
    fn wait_reports_not_equal_and_timeout_and_survives_huge_timeouts() {
        let word = AtomicU32::new(5);
        assert_eq!(wait(&word, 4, None), WaitOutcome::NotEqual);
        let outcome = wait(&word, 5, Some(Duration::from_millis(10)));
        assert_eq!(outcome, WaitOutcome::TimedOut);
        assert_eq!(wait(&word, 4, Some(Duration::MAX)), WaitOutcome::NotEqual);
    }
}
