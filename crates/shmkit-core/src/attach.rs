//! The attach table: which processes have a segment mapped, so that a segment created with
//! `auto_unlink` is removed when the last of them closes it or dies, and so that tools can show
//! who uses a segment.
//!
//! It lives in the header page (see `docs/LAYOUT.md`), guarded by its own mutex cell (never the
//! user-visible header mutex, which user code may hold at any time):
//!
//! ```text
//! offset size field
//!    128   64 attach mutex   a mutex cell (docs/LOCKING.md)
//!    192    4 doomed         1 once a closer decided to unlink: openers must not attach
//!    196    4 overflow       attachments that found no free slot (they keep it alive forever)
//!    512 16*N slots          { pid u32, namespace u32, start_time u64 }, pid 0 = free
//! ```
//!
//! Attaching, detaching and the unlink decision all happen under the attach mutex, so an opener
//! can never attach to a segment whose name a closer is removing: it sees `doomed` and retries
//! its open, which then finds the name gone (or a new segment). Every attach, detach and collect
//! first reaps the slots of dead processes, so SIGKILLed attachers never pile up.
//!
//! The closer unlinks FIRST and marks the segment doomed only once the name is gone: a closer
//! that may not unlink (another user's segment in a sticky /dev/shm) reports the error and leaves
//! the segment usable, instead of dooming a segment that still has a name.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::error::{Error, ErrorCode, Result};
use crate::header::MIN_HEADER_SIZE;
use crate::mutex::{LockOptions, MutexCell};
use crate::platform::{self, Liveness, ProcessIdentity};

pub const OFF_ATTACH_LOCK: usize = 128;
pub const OFF_DOOMED: usize = 192;
pub const OFF_OVERFLOW: usize = 196;
pub const OFF_SLOTS: usize = 512;
const SLOT_SIZE: usize = 16;
/// Slots in a 4096-byte header (larger headers do not get more: the layout stays fixed).
pub const SLOTS: usize = (MIN_HEADER_SIZE - OFF_SLOTS) / SLOT_SIZE;
/// How long attach/detach wait for the attach mutex before giving up.
const LOCK_TIMEOUT: Duration = Duration::from_secs(2);
/// The attach mutex is held for microseconds. A holder whose liveness cannot be judged (it runs
/// in another PID namespace, such as a second container sharing /dev/shm) and that makes no
/// progress for this long is presumed dead, so one crashed container cannot block every open.
const PRESUME_DEAD_AFTER: Duration = Duration::from_secs(1);

/// One attacher, as seen by introspection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attacher {
    pub pid: u32,
    pub alive: Liveness,
}

/// Outcome of an attach attempt.
pub enum Attached {
    /// Recorded in this slot.
    Slot(usize),
    /// No free slot (non-auto-unlink segments only): counted in `overflow`.
    Overflow,
}

/// View of the attach area of a header.
pub struct AttachTable {
    header: *mut u8,
}

impl AttachTable {
    /// # Safety
    /// `header` must point to a mapped header of at least [`MIN_HEADER_SIZE`] bytes, page-aligned,
    /// valid for as long as the table is used.
    pub unsafe fn new(header: *mut u8) -> Self {
        AttachTable { header }
    }

    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        debug_assert!(offset + 4 <= MIN_HEADER_SIZE && offset.is_multiple_of(4));
        // SAFETY: in bounds of the header page and aligned (offsets are fixed constants or slot
        // offsets below SLOTS); all access is atomic.
        unsafe { &*(self.header.add(offset) as *const AtomicU32) }
    }

    fn start_at(&self, slot: usize) -> &AtomicU64 {
        // SAFETY: slot < SLOTS keeps `OFF_SLOTS + slot * 16 + 8 + 8` inside the header page; the
        // offset is 8-aligned.
        unsafe { &*(self.header.add(OFF_SLOTS + slot * SLOT_SIZE + 8) as *const AtomicU64) }
    }

    fn lock(&self) -> &MutexCell {
        // SAFETY: OFF_ATTACH_LOCK..+64 lies in the header page and is 8-aligned.
        unsafe { MutexCell::at(self.header.add(OFF_ATTACH_LOCK)) }
    }

    fn read_slot(&self, slot: usize) -> ProcessIdentity {
        ProcessIdentity {
            pid: self
                .u32_at(OFF_SLOTS + slot * SLOT_SIZE)
                .load(Ordering::Relaxed),
            namespace: self
                .u32_at(OFF_SLOTS + slot * SLOT_SIZE + 4)
                .load(Ordering::Relaxed),
            start_time: self.start_at(slot).load(Ordering::Relaxed),
        }
    }

    fn write_slot(&self, slot: usize, who: &ProcessIdentity) {
        self.u32_at(OFF_SLOTS + slot * SLOT_SIZE + 4)
            .store(who.namespace, Ordering::Relaxed);
        self.start_at(slot).store(who.start_time, Ordering::Relaxed);
        self.u32_at(OFF_SLOTS + slot * SLOT_SIZE)
            .store(who.pid, Ordering::Release);
    }

    fn clear_slot(&self, slot: usize) {
        self.u32_at(OFF_SLOTS + slot * SLOT_SIZE)
            .store(0, Ordering::Release);
    }

    /// Runs `f` under the attach mutex.
    fn locked<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<R> {
        let me = platform::current_thread();
        let options = LockOptions {
            deadline: platform::deadline_after(Some(LOCK_TIMEOUT)),
            presume_dead_after: Some(PRESUME_DEAD_AFTER),
        };
        self.lock().lock_with(&me, options).map_err(|err| {
            Error::new(
                err.code(),
                format!("Cannot take the segment's attach lock: {}", err.message()),
            )
        })?;
        let result = f();
        let _ = self.lock().unlock(&me);
        result
    }

    /// Clears the slots of processes that are gone. Returns how many live attachers remain.
    fn reap(&self) -> usize {
        let me = platform::current_process();
        let mut live = 0;
        for slot in 0..SLOTS {
            let who = self.read_slot(slot);
            if who.pid == 0 {
                continue;
            }
            if who != me && platform::process_liveness(&who) == Liveness::Dead {
                self.clear_slot(slot);
            } else {
                live += 1;
            }
        }
        live
    }

    /// Records this process. Fails with `NotFound` if the segment is being removed.
    pub fn attach(&self, auto_unlink: bool) -> Result<Attached> {
        self.locked(|| {
            if self.u32_at(OFF_DOOMED).load(Ordering::Acquire) != 0 {
                return Err(Error::new(
                    ErrorCode::NotFound,
                    "The segment is being removed",
                ));
            }
            self.reap();
            if let Some(slot) = (0..SLOTS).find(|&slot| self.read_slot(slot).pid == 0) {
                self.write_slot(slot, &platform::current_process());
                return Ok(Attached::Slot(slot));
            }
            if auto_unlink {
                return Err(Error::new(
                    ErrorCode::Os(libc::EMFILE),
                    format!(
                        "The segment is already mapped {SLOTS} times: its attach table is full"
                    ),
                ));
            }
            self.u32_at(OFF_OVERFLOW).fetch_add(1, Ordering::Relaxed);
            Ok(Attached::Overflow)
        })
    }

    /// Forgets this attachment. With `auto_unlink`, when no live attacher remains, marks the
    /// segment doomed and calls `unlink`. Returns whether it unlinked.
    pub fn detach(
        &self,
        attached: &Attached,
        auto_unlink: bool,
        unlink: impl FnOnce() -> Result<()>,
    ) -> Result<bool> {
        self.locked(|| {
            if let Attached::Slot(slot) = *attached {
                if self.read_slot(slot) == platform::current_process() {
                    self.clear_slot(slot);
                }
            }
            self.remove_if_unused(auto_unlink, unlink)
        })
    }

    /// For garbage collection by a process that is not attached: reaps dead attachers and, with
    /// `auto_unlink`, removes the segment if none is left. Returns whether it unlinked.
    pub fn collect(&self, auto_unlink: bool, unlink: impl FnOnce() -> Result<()>) -> Result<bool> {
        self.locked(|| self.remove_if_unused(auto_unlink, unlink))
    }

    /// Reaps dead attachers; for an auto-unlink segment left with no live one, removes the name
    /// and only then marks the segment doomed (an unlink that fails leaves it usable, and the
    /// error is returned).
    fn remove_if_unused(
        &self,
        auto_unlink: bool,
        unlink: impl FnOnce() -> Result<()>,
    ) -> Result<bool> {
        let live = self.reap();
        let overflow = self.u32_at(OFF_OVERFLOW).load(Ordering::Relaxed);
        let doomed = self.u32_at(OFF_DOOMED).load(Ordering::Acquire) != 0;
        if !auto_unlink || live > 0 || overflow > 0 || doomed {
            return Ok(false);
        }
        let removed = match unlink() {
            Ok(()) => true,
            // Someone else removed the name: nothing left to open either way.
            Err(err) if err.code() == ErrorCode::NotFound => false,
            Err(err) => {
                return Err(Error::new(
                    err.code(),
                    format!(
                        "The segment has no other user and is auto-unlink, but this process may \
                         not remove it ({}); it stays, usable, until its owner removes it",
                        err.message()
                    ),
                ))
            }
        };
        self.u32_at(OFF_DOOMED).store(1, Ordering::Release);
        Ok(removed)
    }

    /// Who is attached now (without reaping).
    pub fn attachers(&self) -> Vec<Attacher> {
        (0..SLOTS)
            .map(|slot| self.read_slot(slot))
            .filter(|who| who.pid != 0)
            .map(|who| Attacher {
                pid: who.pid,
                alive: platform::process_liveness(&who),
            })
            .collect()
    }

    /// Who holds `slot` now, with liveness (`None`: a free slot, or no such slot).
    pub fn attacher_at(&self, slot: usize) -> Option<Attacher> {
        if slot >= SLOTS {
            return None;
        }
        let who = self.read_slot(slot);
        (who.pid != 0).then(|| Attacher {
            pid: who.pid,
            alive: platform::process_liveness(&who),
        })
    }

    pub fn doomed(&self) -> bool {
        self.u32_at(OFF_DOOMED).load(Ordering::Acquire) != 0
    }

    pub fn overflow(&self) -> u32 {
        self.u32_at(OFF_OVERFLOW).load(Ordering::Relaxed)
    }
}
