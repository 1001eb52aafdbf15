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
//! woken thread takes the lock as `me | WAITERS`, since other sleepers may remain, and a woken
//! waiter that gives up passes the wake on.
//!
//! Owner identity sits beside the word (`owner_*`, written by the holder right after its CAS,
//! `owner_tid` last; cleared by the holder before it releases), so a waiter whose sleep times out
//! can ask the OS whether the holder still runs and take the lock over with one CAS when it does
//! not. Thread ids repeat across PID namespaces, so "held by this thread" means the whole record
//! matches, never the tid alone. The full protocol, including the JavaScript fast path that
//! shares it and the asynchronous waiters that only wait, is in `docs/LOCKING.md`.
//!
//! ```text
//! offset size field
//!      0    4 state         the lock word above
//!      4    4 owner_tid     thread id the owner fields describe (written last, 0 = none)
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

/// The owner bits of the lock word: a thread id, 0 when the lock is free.
pub const OWNER_MASK: u32 = 0x3FFF_FFFF;
/// The lock word's "someone may be asleep" bit: the unlock that sees it wakes one sleeper.
pub const WAITERS: u32 = 1 << 31;

/// Spin rounds before the first sleep: enough to cover a short critical section on another core.
/// The first [`PAUSE_ROUNDS`] pause for 2, 4 and 8 `spin_loop` hints; the rest yield the CPU, so a
/// holder preempted on this core runs again (more contenders than cores), as parking_lot's
/// `SpinWait` does. docs/LOCKING.md has the measurements.
const SPIN_ROUNDS: u32 = 10;
const PAUSE_ROUNDS: u32 = 3;
/// A waiter sleeps at most this long before checking that the holder still runs.
pub const LIVENESS_SLICE: Duration = Duration::from_millis(50);
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

/// Byte offsets of the fields of a cell (the table in the module docs), for the bindings that
/// implement the fast path themselves.
pub mod cell {
    pub const STATE: usize = std::mem::offset_of!(super::MutexCell, state);
    pub const OWNER_TID: usize = std::mem::offset_of!(super::MutexCell, owner_tid);
    pub const OWNER_NS: usize = std::mem::offset_of!(super::MutexCell, owner_ns);
    pub const OWNER_PID: usize = std::mem::offset_of!(super::MutexCell, owner_pid);
    pub const OWNER_START: usize = std::mem::offset_of!(super::MutexCell, owner_start);
    pub const ACQUISITIONS: usize = std::mem::offset_of!(super::MutexCell, acquisitions);
    pub const CONTENDED: usize = std::mem::offset_of!(super::MutexCell, contended);
    pub const OWNER_DEATHS: usize = std::mem::offset_of!(super::MutexCell, owner_deaths);
    pub const SLEEPERS: usize = std::mem::offset_of!(super::MutexCell, sleepers);
}

/// How an acquisition went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acquired {
    /// The previous holder died holding the lock; the data it protects may be half-updated.
    pub owner_died: bool,
}

/// How a [`MutexCell::wait_for_release`] ended. The waiter never takes the lock: the thread it
/// serves does, with [`MutexCell::lock_after_wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockWait {
    /// The word showed no owner.
    Free,
    /// Woken by an unlock (or spuriously): the lock may be free.
    Woken,
    /// The holder was judged dead: the lock can be taken over.
    OwnerDead,
    TimedOut,
    /// `cancel` was set; a wake this waiter received was passed on to another sleeper.
    Cancelled,
}

/// How long a contended acquisition may take, and what it may presume.
#[derive(Debug, Clone, Copy, Default)]
pub struct LockOptions {
    /// Give up with `TimedOut` at this instant (`None`: never).
    pub deadline: Option<Instant>,
    /// For shmkit's own short critical sections only: a holder whose liveness cannot be judged
    /// (another PID namespace) and that made no progress for this long is presumed dead.
    pub presume_dead_after: Option<Duration>,
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

    /// Takes the lock if it is free, or if its holder died; `None` if a live thread holds it,
    /// this one included (like POSIX `trylock`, it never waits and never fails for "busy").
    pub fn try_lock(&self, me: &ThreadIdentity) -> Option<Acquired> {
        if self.cas_acquire(0, me.tid) {
            self.record_owner(me);
            return Some(Acquired { owner_died: false });
        }
        let current = self.state.load(Ordering::Relaxed);
        if self.try_take_free(current, me) {
            return Some(Acquired { owner_died: false });
        }
        if !self.is_held_by(current, me)
            && self.owner_is_dead(current, &mut None)
            && self.take_over(current, me)
        {
            return Some(Acquired { owner_died: true });
        }
        None
    }

    /// Blocks until the lock is ours or `timeout` passes (`None`, or a timeout too large for a
    /// deadline: wait forever). Fails with `WouldDeadlock` if `me` already holds it.
    pub fn lock(&self, me: &ThreadIdentity, timeout: Option<Duration>) -> Result<Acquired> {
        self.lock_with(
            me,
            LockOptions {
                deadline: platform::deadline_after(timeout),
                presume_dead_after: None,
            },
        )
    }

    /// [`lock`](Self::lock) with every option.
    pub fn lock_with(&self, me: &ThreadIdentity, options: LockOptions) -> Result<Acquired> {
        if self.cas_acquire(0, me.tid) {
            self.record_owner(me);
            return Ok(Acquired { owner_died: false });
        }
        if self.is_held_by(self.state.load(Ordering::Relaxed), me) {
            return Err(Error::new(
                ErrorCode::WouldDeadlock,
                "This thread already holds the lock; shmkit locks are not recursive",
            ));
        }
        let acquired = self.contend(me, options);
        if acquired.is_ok() {
            // We hold the lock: a plain read-modify-write is enough.
            let count = self.contended.load(Ordering::Relaxed);
            self.contended
                .store(count.wrapping_add(1), Ordering::Relaxed);
        }
        acquired
    }

    #[cold]
    fn contend(&self, me: &ThreadIdentity, options: LockOptions) -> Result<Acquired> {
        for round in 0..SPIN_ROUNDS {
            let current = self.state.load(Ordering::Relaxed);
            if current & OWNER_MASK == 0 && self.try_take_free(current, me) {
                return Ok(Acquired { owner_died: false });
            }
            if round < PAUSE_ROUNDS {
                for _ in 0..(2u32 << round) {
                    std::hint::spin_loop();
                }
            } else if options.deadline.is_some_and(|d| Instant::now() >= d) {
                break; // a yield can last a time slice: the loop below times out at once
            } else {
                std::thread::yield_now();
            }
        }
        let mut unrecorded_dead_since = None;
        let mut unchanged_since: Option<(u32, u32, Instant)> = None;
        loop {
            let current = self.state.load(Ordering::Relaxed);
            if current & OWNER_MASK == 0 {
                // Free. Take it with WAITERS set if other sleepers remain: they must not be lost.
                if self.try_take_free(current, me) {
                    return Ok(Acquired { owner_died: false });
                }
                continue;
            }
            let sleeping_on = current | WAITERS;
            if current & WAITERS == 0 && !self.cas_relaxed(current, sleeping_on) {
                continue;
            }
            let remaining = options
                .deadline
                .map(|d| d.saturating_duration_since(Instant::now()));
            if remaining == Some(Duration::ZERO) {
                return Err(Error::new(
                    ErrorCode::TimedOut,
                    "Timed out waiting for the lock",
                ));
            }
            let outcome = self.sleep(sleeping_on, remaining);
            if outcome != WaitOutcome::TimedOut || self.state.load(Ordering::Relaxed) != sleeping_on
            {
                unchanged_since = None;
                continue;
            }
            let dead = self.owner_is_dead(sleeping_on, &mut unrecorded_dead_since)
                || self.presumed_dead(sleeping_on, options, &mut unchanged_since);
            if dead && self.take_over(sleeping_on, me) {
                return Ok(Acquired { owner_died: true });
            }
        }
    }

    /// One sleep on `sleeping_on`, for at most a liveness slice. The sleeper counts itself in
    /// `sleepers` BEFORE the kernel compares the word (sequentially consistent), so an unlock that
    /// swapped the word and then reads `sleepers` as 0 knows nobody is asleep on the old value.
    fn sleep(&self, sleeping_on: u32, remaining: Option<Duration>) -> WaitOutcome {
        let slice = remaining.map_or(LIVENESS_SLICE, |r| r.min(LIVENESS_SLICE));
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let outcome = platform::wait(&self.state, sleeping_on, Some(slice));
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        outcome
    }

    /// Whether some thread may be asleep on the word (approximate upwards: a sleeper killed in
    /// its sleep stays counted, which only costs wake-ups).
    fn has_sleepers(&self) -> bool {
        self.sleepers.load(Ordering::SeqCst) != 0
    }

    /// For `presume_dead_after`: true once a holder whose liveness is unknown has kept the
    /// exact same word and acquisition count for that long.
    fn presumed_dead(
        &self,
        state: u32,
        options: LockOptions,
        unchanged_since: &mut Option<(u32, u32, Instant)>,
    ) -> bool {
        let Some(limit) = options.presume_dead_after else {
            return false;
        };
        if self.owner_liveness(state) != Liveness::Unknown {
            *unchanged_since = None;
            return false;
        }
        let acquisitions = self.acquisitions.load(Ordering::Relaxed);
        match *unchanged_since {
            Some((seen_state, seen_acquisitions, since))
                if seen_state == state && seen_acquisitions == acquisitions =>
            {
                since.elapsed() >= limit
            }
            _ => {
                *unchanged_since = Some((state, acquisitions, Instant::now()));
                false
            }
        }
    }

    /// For an asynchronous waiter thread serving `me`: sleeps until the lock looks free, an unlock
    /// wakes it, its holder is judged dead, `deadline` passes or `cancel` is set. It never takes
    /// the lock (the thread it serves does, with [`lock_after_wait`](Self::lock_after_wait)), so
    /// no lock is ever held by a thread that is not running the code that will release it. It
    /// checks `cancel` at least every [`LIVENESS_SLICE`]; a wake it consumed after `cancel` was set
    /// is passed on to another sleeper.
    pub fn wait_for_release(&self, deadline: Option<Instant>, cancel: &AtomicBool) -> LockWait {
        let mut unrecorded_dead_since = None;
        loop {
            if cancel.load(Ordering::Acquire) {
                return LockWait::Cancelled;
            }
            let current = self.state.load(Ordering::Relaxed);
            if current & OWNER_MASK == 0 {
                return LockWait::Free;
            }
            let sleeping_on = current | WAITERS;
            if current & WAITERS == 0 && !self.cas_relaxed(current, sleeping_on) {
                continue;
            }
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if remaining == Some(Duration::ZERO) {
                return LockWait::TimedOut;
            }
            match self.sleep(sleeping_on, remaining) {
                WaitOutcome::Woken if cancel.load(Ordering::Acquire) => {
                    self.pass_on_wake();
                    return LockWait::Cancelled;
                }
                WaitOutcome::Woken => return LockWait::Woken,
                WaitOutcome::NotEqual => {}
                WaitOutcome::TimedOut => {
                    if self.state.load(Ordering::Relaxed) == sleeping_on
                        && self.owner_is_dead(sleeping_on, &mut unrecorded_dead_since)
                    {
                        return LockWait::OwnerDead;
                    }
                }
            }
        }
    }

    /// The second half of an asynchronous acquisition, run by the thread that will hold the lock
    /// after [`wait_for_release`](Self::wait_for_release) returned `Free`, `Woken` or `OwnerDead`
    /// (`owner_dead`). Takes a free word keeping WAITERS (other sleepers may remain), or takes
    /// over from a holder that is (still) dead; `None` if a live thread holds it: wait again.
    pub fn lock_after_wait(&self, me: &ThreadIdentity, owner_dead: bool) -> Option<Acquired> {
        let current = self.state.load(Ordering::Relaxed);
        if self.try_take_free(current, me) {
            return Some(Acquired { owner_died: false });
        }
        let dead = owner_dead && !self.is_held_by(current, me) && {
            // The waiter already waited out the grace for a holder that never recorded itself.
            let mut grace_over = Instant::now().checked_sub(UNRECORDED_OWNER_GRACE);
            self.owner_is_dead(current, &mut grace_over)
        };
        if dead && self.take_over(current, me) {
            return Some(Acquired { owner_died: true });
        }
        None
    }

    /// Wakes one sleeper: for a waiter that consumed a wake it will not use (it gave up), so the
    /// next sleeper is not left asleep on a free lock until its liveness slice ends.
    pub fn pass_on_wake(&self) {
        platform::wake(&self.state, 1);
    }

    /// Releases the lock held by `me`; `NotOwner` if `me` does not hold it.
    pub fn unlock(&self, me: &ThreadIdentity) -> Result<()> {
        if !self.is_held_by(self.state.load(Ordering::Relaxed), me) {
            return Err(Error::new(
                ErrorCode::NotOwner,
                "Cannot unlock: this thread does not hold the lock",
            ));
        }
        self.owner_tid.store(0, Ordering::Relaxed);
        if self
            .state
            .compare_exchange(me.tid, 0, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            self.unlock_contended();
        }
        Ok(())
    }

    /// The slow half of unlock, for a holder whose CAS failed because WAITERS is set. The caller
    /// has checked it is the holder and cleared the owner record (the JavaScript fast path calls
    /// this after its own check).
    #[cold]
    pub fn unlock_contended(&self) {
        self.owner_tid.store(0, Ordering::Relaxed);
        let previous = self.state.swap(0, Ordering::SeqCst);
        // SYNC POINT (wake): a sleeper counts itself before the kernel compares the word, and we
        // read the count after swapping the word: if we see no sleeper, any thread about to sleep
        // will find the word changed and not sleep. WAITERS alone may be stale (set by a thread
        // that then took the lock, or kept for sleepers since woken): no system call then.
        if previous & WAITERS != 0 && self.has_sleepers() {
            platform::wake(&self.state, 1);
        }
    }

    /// Who holds the lock, if anyone, and whether the identity beside the word describes them.
    pub fn holder(&self) -> Option<(u32, Option<ThreadIdentity>)> {
        let owner = self.state.load(Ordering::Acquire) & OWNER_MASK;
        if owner == 0 {
            return None;
        }
        Some((owner, self.recorded_owner(owner)))
    }

    /// Whether `me` holds the lock whose word reads `state`: the owner bits name its tid AND the
    /// owner record is its whole identity (tids repeat across PID namespaces; the record is
    /// cleared before every release, so a record naming a live thread is that thread's holding).
    pub fn is_held_by(&self, state: u32, me: &ThreadIdentity) -> bool {
        state & OWNER_MASK == me.tid
            && self
                .recorded_owner(me.tid)
                .is_some_and(|r| r.namespace == me.namespace && r.start_time == me.start_time)
    }

    fn cas_acquire(&self, from: u32, to: u32) -> bool {
        self.state
            .compare_exchange(from, to, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    fn cas_relaxed(&self, from: u32, to: u32) -> bool {
        self.state
            .compare_exchange(from, to, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// Takes a lock observed free in `current`, with WAITERS set exactly when some thread may be
    /// asleep on it (so its unlock wakes one; and only then makes a system call).
    fn try_take_free(&self, current: u32, me: &ThreadIdentity) -> bool {
        let waiters = if self.has_sleepers() { WAITERS } else { 0 };
        if current & OWNER_MASK == 0 && self.cas_acquire(current, me.tid | waiters) {
            self.record_owner(me);
            return true;
        }
        false
    }

    /// Takes the lock from the exact word `dead_state` judged dead: one CAS, so two waiters
    /// cannot both take it, and a holder that released in the meantime is never robbed.
    fn take_over(&self, dead_state: u32, me: &ThreadIdentity) -> bool {
        let waiters = if self.has_sleepers() { WAITERS } else { 0 };
        if self.cas_acquire(dead_state, me.tid | waiters) {
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
        // SYNC POINT (record): written last; a reader that sees this tid sees the fields above.
        self.owner_tid.store(me.tid, Ordering::Release);
    }

    /// The owner record, if it describes `tid` and was not rewritten while being read.
    fn recorded_owner(&self, tid: u32) -> Option<ThreadIdentity> {
        // SYNC POINT (record): pairs with the release store of `owner_tid` in `record_owner`.
        if tid == 0 || self.owner_tid.load(Ordering::Acquire) != tid {
            return None;
        }
        let identity = ThreadIdentity {
            tid,
            namespace: self.owner_ns.load(Ordering::Relaxed),
            start_time: self.owner_start.load(Ordering::Relaxed),
            pid: self.owner_pid.load(Ordering::Relaxed),
        };
        // A holder that cleared the record (releasing) or a new one rewriting it shows here.
        std::sync::atomic::fence(Ordering::Acquire);
        (self.owner_tid.load(Ordering::Relaxed) == tid).then_some(identity)
    }

    /// A snapshot for introspection.
    pub fn stats(&self) -> MutexStats {
        let state = self.state.load(Ordering::Acquire);
        let holder_tid = state & OWNER_MASK;
        MutexStats {
            holder_tid,
            holder: self.recorded_owner(holder_tid),
            waiters: state & WAITERS != 0,
            sleepers: self.sleepers.load(Ordering::Relaxed),
            acquisitions: self.acquisitions.load(Ordering::Relaxed),
            contended: self.contended.load(Ordering::Relaxed),
            owner_deaths: self.owner_deaths.load(Ordering::Relaxed),
        }
    }

    /// The liveness of the holder in `state`, as far as its record lets us judge.
    fn owner_liveness(&self, state: u32) -> Liveness {
        match self.recorded_owner(state & OWNER_MASK) {
            Some(recorded) => platform::liveness(&recorded),
            None => Liveness::Unknown,
        }
    }

    /// Whether the holder in `state` has stopped running. A holder that has not recorded its
    /// identity yet (it is between its CAS and `record_owner`, or died right there) is only
    /// declared dead once its thread id has been gone for [`UNRECORDED_OWNER_GRACE`].
    fn owner_is_dead(&self, state: u32, unrecorded_dead_since: &mut Option<Instant>) -> bool {
        let owner = state & OWNER_MASK;
        match self.recorded_owner(owner) {
            Some(recorded) => platform::liveness(&recorded) == Liveness::Dead,
            None => {
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
    use std::cell::UnsafeCell;
    use std::sync::Arc;

    fn cell() -> Arc<Vec<AtomicU64>> {
        Arc::new((0..MUTEX_SIZE / 8).map(|_| AtomicU64::new(0)).collect())
    }

    fn view(memory: &[AtomicU64]) -> &MutexCell {
        // SAFETY: the vector holds 64 bytes of 8-aligned atomics and outlives the view.
        unsafe { MutexCell::at(memory.as_ptr() as *mut u8) }
    }

    /// Data the mutex protects, read and written WITHOUT atomics: under ThreadSanitizer, an
    /// unlock without Release ordering shows as a data race here (it did, before the fix).
    struct Unprotected(UnsafeCell<u64>);
    // SAFETY: every access happens under the mutex being tested.
    unsafe impl Sync for Unprotected {}

    #[test]
    fn excludes_threads() {
        let memory = cell();
        let counter = Arc::new(Unprotected(UnsafeCell::new(0)));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (memory, counter) = (memory.clone(), counter.clone());
                std::thread::spawn(move || {
                    let me = platform::current_thread();
                    for round in 0..20_000 {
                        if round % 3 == 0 {
                            while view(&memory).try_lock(&me).is_none() {
                                std::hint::spin_loop();
                            }
                        } else {
                            view(&memory).lock(&me, None).unwrap();
                        }
                        // SAFETY: we hold the lock; no other thread touches the counter now.
                        unsafe { *counter.0.get() += 1 };
                        view(&memory).unlock(&me).unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        // SAFETY: every thread has finished.
        assert_eq!(unsafe { *counter.0.get() }, 80_000);
        assert_eq!(view(&memory).state(), 0);
    }

    #[test]
    fn misuse_is_an_error_and_try_lock_never_fails_for_busy() {
        let memory = cell();
        let mutex = view(&memory);
        let me = platform::current_thread();
        assert_eq!(mutex.unlock(&me).unwrap_err().code(), ErrorCode::NotOwner);
        mutex.lock(&me, None).unwrap();
        assert_eq!(
            mutex.lock(&me, None).unwrap_err().code(),
            ErrorCode::WouldDeadlock
        );
        assert_eq!(mutex.try_lock(&me), None, "held by this thread: busy");
        mutex.unlock(&me).unwrap();
        assert_eq!(mutex.unlock(&me).unwrap_err().code(), ErrorCode::NotOwner);
        assert_eq!(mutex.holder(), None, "the record is cleared on release");
    }

    /// Defect: thread ids repeat across PID namespaces (two containers, each with its pid 1).
    /// The same tid with another namespace or start time is another thread: it waits, it does
    /// not get EDEADLK, and it cannot unlock the holder's lock.
    #[test]
    fn the_same_tid_in_another_namespace_is_another_thread() {
        let memory = cell();
        let mutex = view(&memory);
        let me = platform::current_thread();
        let twin = ThreadIdentity {
            namespace: me.namespace ^ 0x5a5a,
            start_time: me.start_time + 7,
            pid: 1,
            ..me
        };
        mutex.lock(&twin, None).unwrap();
        assert_eq!(mutex.try_lock(&me), None);
        let started = Instant::now();
        assert_eq!(
            mutex
                .lock(&me, Some(Duration::from_millis(120)))
                .unwrap_err()
                .code(),
            ErrorCode::TimedOut,
            "waits for the twin (whose liveness is unknown), never EDEADLK"
        );
        assert!(started.elapsed() >= Duration::from_millis(120));
        assert_eq!(mutex.unlock(&me).unwrap_err().code(), ErrorCode::NotOwner);
        assert_eq!(mutex.state() & OWNER_MASK, me.tid, "still held by the twin");
        mutex.unlock(&twin).unwrap();
        assert!(!mutex.lock(&me, None).unwrap().owner_died);
        mutex.unlock(&me).unwrap();
    }

    #[test]
    fn huge_timeouts_mean_no_deadline() {
        let memory = cell();
        let me = platform::current_thread();
        let acquired = view(&memory).lock(&me, Some(Duration::MAX)).unwrap();
        assert!(!acquired.owner_died);
        view(&memory).unlock(&me).unwrap();
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
        view(&memory).unlock(&me).unwrap();
    }

    #[test]
    fn an_async_waiter_only_waits_and_the_served_thread_takes_the_lock() {
        let memory = cell();
        let holder = platform::current_thread();
        view(&memory).lock(&holder, None).unwrap();
        let (other, flag) = (memory.clone(), Arc::new(AtomicBool::new(false)));
        let cancel = flag.clone();
        let waiter = std::thread::spawn(move || view(&other).wait_for_release(None, &flag));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(
            view(&memory).state(),
            holder.tid | WAITERS,
            "the waiter set WAITERS"
        );
        cancel.store(true, Ordering::Release);
        assert_eq!(waiter.join().unwrap(), LockWait::Cancelled);
        assert_eq!(
            view(&memory).state() & OWNER_MASK,
            holder.tid,
            "nothing taken"
        );

        // Not cancelled: woken by the unlock; the lock is still free for the served thread.
        let other = memory.clone();
        let waiter = std::thread::spawn(move || {
            let outcome = view(&other).wait_for_release(None, &AtomicBool::new(false));
            let me = platform::current_thread();
            let acquired = view(&other).lock_after_wait(&me, false);
            view(&other).unlock(&me).unwrap();
            (outcome, acquired)
        });
        std::thread::sleep(Duration::from_millis(30));
        view(&memory).unlock(&holder).unwrap();
        let (outcome, acquired) = waiter.join().unwrap();
        assert!(matches!(outcome, LockWait::Woken | LockWait::Free));
        assert_eq!(acquired, Some(Acquired { owner_died: false }));

        let deadline = Some(Instant::now() + Duration::from_millis(40));
        view(&memory).lock(&holder, None).unwrap();
        assert_eq!(
            view(&memory).wait_for_release(deadline, &AtomicBool::new(false)),
            LockWait::TimedOut
        );
        view(&memory).unlock(&holder).unwrap();
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
        view(&memory).unlock(&me).unwrap();

        // An async waiter reports the death; the served thread takes over.
        let holder = memory.clone();
        std::thread::spawn(move || {
            view(&holder)
                .lock(&platform::current_thread(), None)
                .unwrap();
        })
        .join()
        .unwrap();
        let outcome = view(&memory).wait_for_release(None, &AtomicBool::new(false));
        assert_eq!(outcome, LockWait::OwnerDead);
        assert_eq!(
            view(&memory).lock_after_wait(&me, true),
            Some(Acquired { owner_died: true })
        );
        view(&memory).unlock(&me).unwrap();
    }

    #[test]
    fn a_holder_of_unknown_liveness_is_presumed_dead_only_when_asked() {
        let memory = cell();
        let me = platform::current_thread();
        let foreign = ThreadIdentity {
            namespace: me.namespace ^ 1,
            ..me
        };
        view(&memory).lock(&foreign, None).unwrap();
        let options = LockOptions {
            deadline: Some(Instant::now() + Duration::from_secs(5)),
            presume_dead_after: Some(Duration::from_millis(150)),
        };
        let started = Instant::now();
        assert!(view(&memory).lock_with(&me, options).unwrap().owner_died);
        assert!(started.elapsed() >= Duration::from_millis(150));
        view(&memory).unlock(&me).unwrap();
    }
}
