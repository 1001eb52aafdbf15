//! The inter-process mutex: a 64-byte cell in shared memory, driven by one 32-bit lock word.
//!
//! # The lock word (`state`)
//!
//! | bits   | name    | meaning                                                          |
//! |--------|---------|------------------------------------------------------------------|
//! | 0..=29 | owner   | thread id of the holder; 0 = unlocked                            |
//! | 30     | —       | reserved, always 0 (ignored when read)                           |
//! | 31     | WAITERS | some thread may be asleep on the word: unlock must wake one      |
//!
//! | state               | meaning                                                      |
//! |---------------------|--------------------------------------------------------------|
//! | `0`                 | free                                                         |
//! | `tid`               | held by `tid`, nobody asleep: unlock is one CAS, no syscall   |
//! | `tid \| WAITERS`    | held, sleepers possible: unlock swaps to 0 and wakes one     |
//! | `WAITERS` (no tid)  | never produced; treated as free                              |
//!
//! Invariant that keeps a waiter from being lost: a thread only sleeps on the exact value
//! `tid | WAITERS`, and only after that value is in the word. An unlock replaces the word (so the
//! kernel's compare fails for anyone about to sleep) and, seeing WAITERS, wakes one sleeper; a
//! woken thread takes the lock as `me | WAITERS`, since other sleepers may remain.
//!
//! Owner identity sits beside the word (`owner_*`, written by the holder right after its CAS), so
//! a waiter whose sleep times out can ask the OS whether the holder still runs and take the lock
//! over with one CAS when it does not. The full protocol, including the JavaScript fast path that
//! shares it, is in `docs/LOCKING.md`.
//!
//! ```text
//! offset size field
//!      0    4 state         the lock word above
//!      4    4 owner_tid     thread id the owner fields describe (written last)
//!      8    4 owner_ns      the holder's PID namespace id
//!     12    4 owner_pid     the holder's process id
//!     16    8 owner_start   the holder thread's start time (u64, little-endian)
//!     24    4 acquisitions  counter, bumped by each holder (wraps at 2^32)
//!     28    4 contended     acquisitions that had to wait
//!     32    4 owner_deaths  takeovers from a dead holder
//!     36    4 sleepers      threads asleep in the kernel on this lock (approximate)
//!     40   24 reserved
//! ```

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorCode, Result};
use crate::platform::{self, Liveness, ThreadIdentity, WaitOutcome};

/// Bytes a placed mutex occupies.
pub const MUTEX_SIZE: usize = 64;
/// Required alignment of a placed mutex.
pub const MUTEX_ALIGN: usize = 8;

pub const OWNER_MASK: u32 = 0x3FFF_FFFF;
pub const WAITERS: u32 = 1 << 31;

/// Spins before the first sleep: enough to cover a short critical section on another core.
const SPIN_ROUNDS: u32 = 40;
/// A waiter sleeps at most this long before checking that the holder still runs.
const LIVENESS_SLICE: Duration = Duration::from_millis(50);
/// How long a holder that vanished before recording its identity must stay vanished.
const UNRECORDED_OWNER_GRACE: Duration = Duration::from_millis(500);

/// The in-memory shape of a mutex. Every field is atomic because other processes write it.
#[repr(C, align(8))]
pub struct MutexCell {
    state: AtomicU32,
    owner_tid: AtomicU32,
    owner_ns: AtomicU32,
    owner_pid: AtomicU32,
    owner_start: AtomicU64,
    acquisitions: AtomicU32,
    contended: AtomicU32,
    owner_deaths: AtomicU32,
    sleepers: AtomicU32,
    _reserved: [AtomicU32; 6],
}

/// A snapshot of a mutex for introspection (all values may change right after).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MutexStats {
    /// The holder's thread id (0: unlocked) and, when it recorded itself, its identity.
    pub holder_tid: u32,
    pub holder: Option<ThreadIdentity>,
    /// The WAITERS bit: some thread may be asleep waiting.
    pub waiters: bool,
    pub sleepers: u32,
    pub acquisitions: u32,
    pub contended: u32,
    pub owner_deaths: u32,
}

const _: () = assert!(std::mem::size_of::<MutexCell>() == MUTEX_SIZE);

/// How an acquisition went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acquired {
    /// The previous holder died holding the lock; the data it protects may be half-updated.
    pub owner_died: bool,
}

impl MutexCell {
    /// Views the cell at `ptr`.
    ///
    /// # Safety
    /// `ptr` must be aligned to [`MUTEX_ALIGN`] and valid for reads and writes of [`MUTEX_SIZE`]
    /// bytes for `'a` (for instance inside a live mapping). Any bit pattern is a valid cell.
    pub unsafe fn at<'a>(ptr: *mut u8) -> &'a MutexCell {
        debug_assert!((ptr as usize).is_multiple_of(MUTEX_ALIGN));
        // SAFETY: guaranteed by the caller; all fields are atomics, so shared access is sound.
        unsafe { &*(ptr as *const MutexCell) }
    }

    /// The raw lock word (for wait/notify-style introspection and tests).
    pub fn state(&self) -> u32 {
        self.state.load(Ordering::Relaxed)
    }

    /// Takes the lock if it is free, or if its holder died. `Ok(None)` if a live thread holds it.
    pub fn try_lock(&self, me: &ThreadIdentity) -> Result<Option<Acquired>> {
        if self.cas(0, me.tid) {
            self.record_owner(me);
            return Ok(Some(Acquired { owner_died: false }));
        }
        let current = self.state.load(Ordering::Relaxed);
        self.refuse_recursion(current, me)?;
        if self.try_take_free(current, me, false) {
            return Ok(Some(Acquired { owner_died: false }));
        }
        if self.owner_is_dead(current, &mut None) && self.take_over(current, me) {
            return Ok(Some(Acquired { owner_died: true }));
        }
        Ok(None)
    }

    /// Blocks until the lock is ours or `timeout` passes (`None`: wait forever).
    /// Fails with `WouldDeadlock` if `me` already holds it: blocking would never end.
    pub fn lock(&self, me: &ThreadIdentity, timeout: Option<Duration>) -> Result<Acquired> {
        if self.cas(0, me.tid) {
            self.record_owner(me);
            return Ok(Acquired { owner_died: false });
        }
        self.refuse_recursion(self.state.load(Ordering::Relaxed), me)?;
        self.lock_contended(
            me,
            timeout.map(|t| Instant::now() + t),
            &AtomicBool::new(false),
        )
    }

    /// Like [`lock`](Self::lock), for a waiter that runs on another thread on behalf of `me`
    /// (asynchronous acquisition): gives up with `Cancelled` within one sleep slice (50 ms) of
    /// `cancel` being set, and does NOT refuse a lock `me` already
    /// holds: it waits for that holding to end like any other, which is how several pending
    /// acquisitions of one JavaScript thread queue up behind each other.
    pub fn lock_on_behalf(
        &self,
        me: &ThreadIdentity,
        timeout: Option<Duration>,
        cancel: &AtomicBool,
    ) -> Result<Acquired> {
        if self.cas(0, me.tid) {
            self.record_owner(me);
            return Ok(Acquired { owner_died: false });
        }
        self.lock_contended(me, timeout.map(|t| Instant::now() + t), cancel)
    }

    #[cold]
    fn lock_contended(
        &self,
        me: &ThreadIdentity,
        deadline: Option<Instant>,
        cancel: &AtomicBool,
    ) -> Result<Acquired> {
        let acquired = self.contend(me, deadline, cancel);
        if acquired.is_ok() {
            // We hold the lock: a plain read-modify-write is enough.
            let count = self.contended.load(Ordering::Relaxed);
            self.contended
                .store(count.wrapping_add(1), Ordering::Relaxed);
        }
        acquired
    }

    fn contend(
        &self,
        me: &ThreadIdentity,
        deadline: Option<Instant>,
        cancel: &AtomicBool,
    ) -> Result<Acquired> {
        for round in 0..SPIN_ROUNDS {
            let current = self.state.load(Ordering::Relaxed);
            if current & OWNER_MASK == 0 && self.try_take_free(current, me, false) {
                return Ok(Acquired { owner_died: false });
            }
            for _ in 0..(1u32 << round.min(5)) {
                std::hint::spin_loop();
            }
        }
        let mut unrecorded_dead_since = None;
        loop {
            if cancel.load(Ordering::Acquire) {
                return Err(Error::new(
                    ErrorCode::Cancelled,
                    "The lock request was cancelled",
                ));
            }
            let current = self.state.load(Ordering::Relaxed);
            if current & OWNER_MASK == 0 {
                // Free. Take it with WAITERS set: other sleepers may exist and must not be lost.
                if self.try_take_free(current, me, true) {
                    return Ok(Acquired { owner_died: false });
                }
                continue;
            }
            let sleeping_on = current | WAITERS;
            if current & WAITERS == 0 && !self.cas(current, sleeping_on) {
                continue;
            }
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if remaining == Some(Duration::ZERO) {
                return Err(Error::new(
                    ErrorCode::TimedOut,
                    "Timed out waiting for the lock",
                ));
            }
            let slice = remaining.map_or(LIVENESS_SLICE, |r| r.min(LIVENESS_SLICE));
            self.sleepers.fetch_add(1, Ordering::Relaxed);
            let outcome = platform::wait(&self.state, sleeping_on, Some(slice));
            self.sleepers.fetch_sub(1, Ordering::Relaxed);
            if outcome == WaitOutcome::TimedOut
                && self.state.load(Ordering::Relaxed) == sleeping_on
                && self.owner_is_dead(sleeping_on, &mut unrecorded_dead_since)
                && self.take_over(sleeping_on, me)
            {
                return Ok(Acquired { owner_died: true });
            }
        }
    }

    /// Releases the lock held by `me`.
    pub fn unlock(&self, me: &ThreadIdentity) -> Result<()> {
        if self.cas(me.tid, 0) {
            return Ok(());
        }
        let current = self.state.load(Ordering::Relaxed);
        if current & OWNER_MASK != me.tid {
            return Err(Error::new(
                ErrorCode::NotOwner,
                "Cannot unlock: this thread does not hold the lock",
            ));
        }
        self.unlock_contended();
        Ok(())
    }

    /// The slow half of unlock, for a holder whose CAS failed because WAITERS is set. The caller
    /// has checked it is the holder (the JavaScript fast path calls this after its own check).
    #[cold]
    pub fn unlock_contended(&self) {
        let previous = self.state.swap(0, Ordering::Release);
        if previous & WAITERS != 0 {
            platform::wake(&self.state, 1);
        }
    }

    /// Who holds the lock, if anyone, and whether the identity beside the word describes them.
    pub fn holder(&self) -> Option<(u32, Option<ThreadIdentity>)> {
        let owner = self.state.load(Ordering::Acquire) & OWNER_MASK;
        if owner == 0 {
            return None;
        }
        let recorded = self.recorded_owner();
        Some((owner, recorded.filter(|r| r.tid == owner)))
    }

    fn cas(&self, from: u32, to: u32) -> bool {
        self.state
            .compare_exchange(from, to, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    fn refuse_recursion(&self, current: u32, me: &ThreadIdentity) -> Result<()> {
        if current & OWNER_MASK == me.tid {
            return Err(Error::new(
                ErrorCode::WouldDeadlock,
                "This thread already holds the lock; shmkit locks are not recursive",
            ));
        }
        Ok(())
    }

    /// Takes a lock observed free in `current`, keeping WAITERS if it was set or `keep_waiters`.
    fn try_take_free(&self, current: u32, me: &ThreadIdentity, keep_waiters: bool) -> bool {
        let waiters = if keep_waiters {
            WAITERS
        } else {
            current & WAITERS
        };
        if current & OWNER_MASK == 0 && self.cas(current, me.tid | waiters) {
            self.record_owner(me);
            return true;
        }
        false
    }

    fn take_over(&self, dead_state: u32, me: &ThreadIdentity) -> bool {
        if self.cas(dead_state, me.tid | WAITERS) {
            let deaths = self.owner_deaths.load(Ordering::Relaxed);
            self.owner_deaths
                .store(deaths.wrapping_add(1), Ordering::Relaxed);
            self.record_owner(me);
            return true;
        }
        false
    }

    /// Called by every new holder: counts the acquisition and records who holds the lock.
    fn record_owner(&self, me: &ThreadIdentity) {
        // We hold the lock: a plain read-modify-write is enough for the counter.
        let count = self.acquisitions.load(Ordering::Relaxed);
        self.acquisitions
            .store(count.wrapping_add(1), Ordering::Relaxed);
        self.owner_ns.store(me.namespace, Ordering::Relaxed);
        self.owner_pid.store(me.pid, Ordering::Relaxed);
        self.owner_start.store(me.start_time, Ordering::Relaxed);
        // Written last: a reader that sees this tid also sees the fields above.
        self.owner_tid.store(me.tid, Ordering::Release);
    }

    fn recorded_owner(&self) -> Option<ThreadIdentity> {
        let tid = self.owner_tid.load(Ordering::Acquire);
        (tid != 0).then(|| ThreadIdentity {
            tid,
            namespace: self.owner_ns.load(Ordering::Relaxed),
            start_time: self.owner_start.load(Ordering::Relaxed),
            pid: self.owner_pid.load(Ordering::Relaxed),
        })
    }

    /// A snapshot for introspection.
    pub fn stats(&self) -> MutexStats {
        let state = self.state.load(Ordering::Acquire);
        let holder_tid = state & OWNER_MASK;
        MutexStats {
            holder_tid,
            holder: self
                .recorded_owner()
                .filter(|r| holder_tid != 0 && r.tid == holder_tid),
            waiters: state & WAITERS != 0,
            sleepers: self.sleepers.load(Ordering::Relaxed),
            acquisitions: self.acquisitions.load(Ordering::Relaxed),
            contended: self.contended.load(Ordering::Relaxed),
            owner_deaths: self.owner_deaths.load(Ordering::Relaxed),
        }
    }

    /// Whether the holder in `state` has stopped running. A holder that has not recorded its
    /// identity yet (it is between its CAS and `record_owner`, or died right there) is only
    /// declared dead once its thread id has been gone for [`UNRECORDED_OWNER_GRACE`].
    fn owner_is_dead(&self, state: u32, unrecorded_dead_since: &mut Option<Instant>) -> bool {
        let owner = state & OWNER_MASK;
        match self.recorded_owner() {
            Some(recorded) if recorded.tid == owner => {
                platform::liveness(&recorded) == Liveness::Dead
            }
            _ => {
                let bare = ThreadIdentity {
                    tid: owner,
                    namespace: 0,
                    start_time: 0,
                    pid: 0,
                };
                if platform::liveness(&bare) != Liveness::Dead {
                    *unrecorded_dead_since = None;
                    return false;
                }
                let since = *unrecorded_dead_since.get_or_insert_with(Instant::now);
                since.elapsed() >= UNRECORDED_OWNER_GRACE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn cell() -> Arc<Vec<AtomicU64>> {
        Arc::new((0..MUTEX_SIZE / 8).map(|_| AtomicU64::new(0)).collect())
    }

    fn view(memory: &[AtomicU64]) -> &MutexCell {
        // SAFETY: the vector holds 64 bytes of 8-aligned atomics and outlives the view.
        unsafe { MutexCell::at(memory.as_ptr() as *mut u8) }
    }

    #[test]
    fn excludes_threads() {
        let memory = cell();
        let counter = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (memory, counter) = (memory.clone(), counter.clone());
                std::thread::spawn(move || {
                    let me = platform::current_thread();
                    for _ in 0..20_000 {
                        view(&memory).lock(&me, None).unwrap();
                        // A non-atomic read-modify-write: lost updates would show without mutual exclusion.
                        let value = counter.load(Ordering::Relaxed);
                        counter.store(value + 1, Ordering::Relaxed);
                        view(&memory).unlock(&me).unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(counter.load(Ordering::Relaxed), 80_000);
        assert_eq!(view(&memory).state(), 0);
    }

    #[test]
    fn misuse_is_an_error() {
        let memory = cell();
        let mutex = view(&memory);
        let me = platform::current_thread();
        assert_eq!(mutex.unlock(&me).unwrap_err().code(), ErrorCode::NotOwner);
        mutex.lock(&me, None).unwrap();
        assert_eq!(
            mutex.lock(&me, None).unwrap_err().code(),
            ErrorCode::WouldDeadlock
        );
        assert_eq!(
            mutex.try_lock(&me).unwrap_err().code(),
            ErrorCode::WouldDeadlock
        );
        mutex.unlock(&me).unwrap();
        assert_eq!(mutex.unlock(&me).unwrap_err().code(), ErrorCode::NotOwner);
    }

    #[test]
    fn times_out_while_a_live_thread_holds_it() {
        let memory = cell();
        let me = platform::current_thread();
        view(&memory).lock(&me, None).unwrap();
        let other = memory.clone();
        let result = std::thread::spawn(move || {
            let started = Instant::now();
            let outcome = view(&other).lock(
                &platform::current_thread(),
                Some(Duration::from_millis(120)),
            );
            (outcome, started.elapsed())
        })
        .join()
        .unwrap();
        assert_eq!(result.0.unwrap_err().code(), ErrorCode::TimedOut);
        assert!(result.1 >= Duration::from_millis(120));
        assert_eq!(
            view(&memory)
                .try_lock(&platform::current_thread())
                .unwrap_err()
                .code(),
            ErrorCode::WouldDeadlock
        );
    }

    #[test]
    fn a_waiter_on_behalf_gives_up_when_cancelled_and_queues_behind_its_own_thread() {
        let memory = cell();
        let me = platform::current_thread();
        view(&memory).lock(&me, None).unwrap();
        let cancel = Arc::new(AtomicBool::new(false));
        let (other, flag) = (memory.clone(), cancel.clone());
        let waiter = std::thread::spawn(move || view(&other).lock_on_behalf(&me, None, &flag));
        std::thread::sleep(Duration::from_millis(30));
        cancel.store(true, Ordering::Release);
        let outcome = waiter.join().unwrap();
        assert_eq!(outcome.unwrap_err().code(), ErrorCode::Cancelled);

        // Not cancelled: it waits for this thread's own holding, then takes the lock for `me`.
        let other = memory.clone();
        let waiter = std::thread::spawn(move || {
            view(&other).lock_on_behalf(&me, Some(Duration::from_secs(5)), &AtomicBool::new(false))
        });
        std::thread::sleep(Duration::from_millis(30));
        view(&memory).unlock(&me).unwrap();
        assert!(!waiter.join().unwrap().unwrap().owner_died);
        view(&memory).unlock(&me).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_dead_holder_is_taken_over_once() {
        let memory = cell();
        let holder = memory.clone();
        std::thread::spawn(move || {
            view(&holder)
                .lock(&platform::current_thread(), None)
                .unwrap();
        })
        .join()
        .unwrap();
        let me = platform::current_thread();
        let acquired = view(&memory)
            .lock(&me, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(acquired.owner_died);
        view(&memory).unlock(&me).unwrap();
        let again = view(&memory).lock(&me, None).unwrap();
        assert!(!again.owner_died);
    }
}
