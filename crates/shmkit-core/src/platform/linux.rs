//! Linux: the futex syscall WITHOUT `FUTEX_PRIVATE_FLAG` (private futexes are keyed by address
//! space and would never wake another process), thread ids from `gettid`, liveness from
//! `/proc/<tid>/stat`.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use super::{Liveness, ProcessIdentity, ThreadIdentity, WaitOutcome};

pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> WaitOutcome {
    let timespec = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
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
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Liveness::Dead,
        // ESRCH: the task vanished between open and read.
        Err(err) if err.raw_os_error() == Some(libc::ESRCH) => Liveness::Dead,
        Err(_) => Liveness::Unknown,
        // A zombie has stopped running even though its pid still exists: count it as dead, or a
        // parent that waits for the lock before reaping its child would wait forever.
        Ok(stat) if matches!(stat.state, 'Z' | 'X' | 'x') => Liveness::Dead,
        Ok(stat) if owner.start_time != 0 && stat.start_time != owner.start_time => {
            Liveness::Dead // the tid was reused by a newer thread
        }
        Ok(_) => Liveness::Alive,
    }
}

pub fn current_process() -> ProcessIdentity {
    let pid = std::process::id();
    ProcessIdentity {
        pid,
        namespace: pid_namespace(),
        start_time: read_stat("/proc/self/stat").map_or(0, |stat| stat.start_time),
    }
}

/// A process is its main thread's id on Linux, so the thread check applies as is.
pub fn process_liveness(who: &ProcessIdentity) -> Liveness {
    liveness(&ThreadIdentity {
        tid: who.pid,
        namespace: who.namespace,
        start_time: who.start_time,
        pid: who.pid,
    })
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
    fn wait_reports_not_equal_and_timeout() {
        let word = AtomicU32::new(5);
        assert_eq!(wait(&word, 4, None), WaitOutcome::NotEqual);
        let outcome = wait(&word, 5, Some(Duration::from_millis(10)));
        assert_eq!(outcome, WaitOutcome::TimedOut);
    }
}
