//! `NativeSegment`: one mapping of a segment, with its lock and wait/notify entry points.
//! The public `Segment`, `Mutex` and guards are in `index.ts`; they call these methods.

use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use shmkit_core::mutex::{Acquired, LockWait};
use shmkit_core::segment::{OpenOptions, Owners};
use shmkit_core::{CreateOptions, Kind, MutexCell, Segment, WaitOutcome};

use crate::buffers::{self, RawValue};
use crate::errors::{coded, to_js, Code};
use crate::introspection::{MutexReport, SegmentInspection};
use crate::timeouts;
use crate::waiting::{spawn_waiter, PassOn, WaitToken};

/// Cell handle meaning "the mutex in the header"; other handles are data-area offsets.
const HEADER_MUTEX: i64 = -1;

#[napi]
pub struct NativeSegment {
    pub(crate) segment: Option<Arc<Segment>>,
    /// The map over this segment, for a segment opened as a map (`lib/map.ts`).
    pub(crate) map: Option<Arc<shmkit_core::SharedMap>>,
    /// The topic over this segment, for a segment opened as a topic (`lib/topic.ts`).
    pub(crate) topic: Option<Arc<shmkit_core::Topic>>,
    pub(crate) created: bool,
    buffers_made: bool,
    /// Channel roles this mapping announced (`shmkit_core::peers`): `close` wakes the other side
    /// (shared with the environment's cleanup hook, which does the same for a handle never closed).
    roles: Arc<std::sync::atomic::AtomicU32>,
    /// For a channel: its record in the environment's cleanup registry (`cleanup.rs`), kept
    /// alive as long as this handle.
    tracked: Option<Arc<crate::cleanup::ChannelHandle>>,
}

fn size_from_js(size: f64) -> Result<usize, Code> {
    if !(size.is_finite()
        && size >= 1.0
        && size.fract() == 0.0
        && size <= shmkit_core::MAX_DATA_SIZE as f64)
    {
        return Err(coded(
            "ERR_OUT_OF_RANGE",
            format!("Invalid segment size {size}"),
        ));
    }
    Ok(size as usize)
}

/// What `Segment.create`/`openOrCreate` (and `Channel.create`) pass down, already validated.
#[napi(object)]
pub struct NativeCreateOptions {
    /// Bytes in the data area.
    pub size: f64,
    /// Permission bits.
    pub mode: u32,
    /// 1: segment, 2: channel.
    pub kind: u32,
    pub auto_unlink: bool,
    /// Allocate every page now (ENOSPC at create instead of SIGBUS later).
    pub reserve: bool,
}

fn create_options(options: &NativeCreateOptions) -> Result<CreateOptions, Code> {
    let kind = Kind::from_u32(options.kind).ok_or_else(|| {
        coded(
            "ERR_OUT_OF_RANGE",
            format!("Unknown segment kind {}", options.kind),
        )
    })?;
    Ok(CreateOptions {
        mode: options.mode,
        kind,
        auto_unlink: options.auto_unlink,
        reserve: options.reserve,
        ..CreateOptions::new(size_from_js(options.size)?)
    })
}

/// What `open`/`openOrCreate` pass down, already validated.
#[napi(object)]
pub struct NativeOpenOptions {
    /// How long to wait for a creator still initialising it (negative: the default 2 s).
    pub ready_timeout_ms: f64,
    /// How long to wait for it to appear (negative: not at all).
    pub wait_ms: f64,
    /// Owners accepted besides nobody (empty: this user only), unless `any_owner`.
    pub owners: Vec<u32>,
    pub any_owner: bool,
}

pub(crate) fn open_options(options: &NativeOpenOptions) -> OpenOptions {
    OpenOptions {
        ready_timeout: timeouts::from_millis(options.ready_timeout_ms)
            .unwrap_or(shmkit_core::segment::DEFAULT_READY_TIMEOUT),
        wait: (options.wait_ms >= 0.0)
            .then(|| timeouts::from_millis(options.wait_ms).unwrap_or(Duration::MAX)),
        owners: if options.any_owner {
            Owners::Any
        } else if options.owners.is_empty() {
            Owners::Me
        } else {
            Owners::Uids(options.owners.clone())
        },
    }
}

#[napi]
impl NativeSegment {
    fn wrap(segment: Segment, created: bool) -> Self {
        Self::wrap_arc(Arc::new(segment), None, created)
    }

    pub(crate) fn wrap_arc(
        segment: Arc<Segment>,
        map: Option<Arc<shmkit_core::SharedMap>>,
        created: bool,
    ) -> Self {
        NativeSegment {
            segment: Some(segment),
            map,
            topic: None,
            created,
            buffers_made: false,
            roles: Arc::default(),
            tracked: None,
        }
    }

    #[napi(factory)]
    pub fn create(name: String, options: NativeCreateOptions) -> Result<Self, Code> {
        let segment = Segment::create(&name, create_options(&options)?).map_err(to_js)?;
        Ok(Self::wrap(segment, true))
    }

    /// Opens `name` as `options` say (see `NativeOpenOptions`).
    #[napi(factory)]
    pub fn open(name: String, options: NativeOpenOptions) -> Result<Self, Code> {
        let segment = Segment::open_with(&name, &open_options(&options)).map_err(to_js)?;
        Ok(Self::wrap(segment, false))
    }

    #[napi(factory)]
    pub fn open_or_create(
        name: String,
        options: NativeCreateOptions,
        open: NativeOpenOptions,
    ) -> Result<Self, Code> {
        let options = create_options(&options)?;
        let (segment, created) =
            Segment::open_or_create_with(&name, options, &open_options(&open)).map_err(to_js)?;
        Ok(Self::wrap(segment, created))
    }

    /// Removes `name` if it is of `kind` (0: any kind).
    #[napi]
    pub fn unlink(name: String, kind: u32) -> Result<(), Code> {
        Segment::unlink_kind(&name, Kind::from_u32(kind)).map_err(to_js)
    }

    /// Notes a mutex placed at `offset` in the header, for introspection.
    #[napi]
    pub fn note_placed_mutex(&self, offset: f64) -> Result<(), Code> {
        self.segment()?
            .note_placed_mutex(offset as usize)
            .map_err(to_js)
    }

    /// Describes segment `name` without opening it for use (it is not recorded as an attacher).
    #[napi]
    pub fn inspect(name: String) -> Result<SegmentInspection, Code> {
        Ok(Segment::inspect(&name).map_err(to_js)?.into())
    }

    /// Reaps dead attachers of `name`; removes it if it is auto-unlink and nobody live has it.
    #[napi]
    pub fn collect(name: String) -> Result<bool, Code> {
        Segment::collect(&name).map_err(to_js)
    }

    /// Names of the shmkit segments on this machine (Linux).
    #[napi]
    pub fn list() -> Result<Vec<String>, Code> {
        Segment::list().map_err(to_js)
    }

    #[napi(getter)]
    pub fn auto_unlink(&self) -> Result<bool, Code> {
        Ok(self.segment()?.info().auto_unlink)
    }

    /// A snapshot of a mutex cell for introspection.
    #[napi]
    pub fn mutex_stats(&self, cell: i64) -> Result<MutexReport, Code> {
        Ok(self.cell(cell)?.stats().into())
    }

    fn segment(&self) -> Result<&Arc<Segment>, Code> {
        self.segment
            .as_ref()
            .ok_or_else(|| coded("ERR_SHM_CLOSED", "The segment is closed"))
    }

    /// The segment's instance: differs between two segments created under one name.
    #[napi(getter)]
    pub fn instance(&self) -> Result<String, Code> {
        Ok(format!("{:016x}", self.segment()?.info().instance))
    }

    #[napi(getter)]
    pub fn created(&self) -> bool {
        self.created
    }

    #[napi(getter)]
    pub fn name(&self) -> Result<String, Code> {
        Ok(self.segment()?.name().to_owned())
    }

    /// 1 for a plain segment, 2 for a channel.
    #[napi(getter)]
    pub fn kind(&self) -> Result<u32, Code> {
        Ok(self.segment()?.info().kind as u32)
    }

    #[napi(getter)]
    pub fn size(&self) -> Result<f64, Code> {
        Ok(self.segment()?.data_len() as f64)
    }

    /// `[data area, header mutex cell]` as two zero-copy ArrayBuffers over disjoint ranges.
    /// Callable once per mapping: a second ArrayBuffer over the same addresses would crash V8.
    #[napi(ts_return_type = "[ArrayBuffer | SharedArrayBuffer, ArrayBuffer]")]
    pub fn buffers(&mut self, env: Env) -> Result<Vec<RawValue>, Code> {
        let segment = self.segment()?.clone();
        if self.buffers_made {
            return Err(coded(
                "ERR_SHM_BUFFER_TAKEN",
                "The buffers of this mapping were already created",
            ));
        }
        self.buffers_made = true;
        let cell = segment.header_mutex() as *const MutexCell as *mut u8;
        // SAFETY: both ranges stay mapped while the Arc each buffer owns is alive; the data area
        // starts at the page after the header, so the two ranges are disjoint, and `buffers_made`
        // guarantees no other ArrayBuffer is ever made over them from this mapping.
        let data = unsafe {
            buffers::shared(
                env.raw(),
                segment.data_ptr(),
                segment.data_len(),
                segment.clone(),
            )?
        };
        // SAFETY: as above; the cell lies inside the header page.
        let mutex =
            unsafe { buffers::external(env.raw(), cell, shmkit_core::MUTEX_SIZE, segment)? };
        Ok(vec![data, mutex])
    }

    /// Detaches the given buffers (those over this mapping) and drops this handle's reference to
    /// the mapping; it is unmapped once no buffer refers to it. Never unlinks.
    #[napi(ts_args_type = "buffers: Array<ArrayBuffer | SharedArrayBuffer>")]
    pub fn close(&mut self, env: Env, buffers: Vec<Unknown<'_>>) -> Result<(), Code> {
        let Some(segment) = self.segment.take() else {
            return Ok(());
        };
        self.map = None;
        self.topic = None;
        self.tracked = None;
        let header_cell = segment.header_mutex() as *const MutexCell as *mut u8;
        for buffer in buffers {
            for start in [segment.data_ptr(), header_cell] {
                // SAFETY: env and value come from the current call.
                unsafe { buffers::detach_if_over(env.raw(), buffer.raw(), start)? };
            }
        }
        // Forget our attachment (the memory itself is unmapped once no buffer refers to it). The
        // handle is closed either way; an auto-unlink segment this process may not remove is
        // reported.
        let detached = segment.detach().map(|_| ()).map_err(to_js);
        // A producer (consumer) gone: waiting receivers (senders) look at who is left now.
        let roles = self.roles.swap(0, std::sync::atomic::Ordering::Relaxed);
        shmkit_core::peers::left(&segment, roles);
        detached
    }

    /// For a channel just opened: clears the role bits a previous holder of this mapping's attach
    /// slot left.
    /// The handle is also released when its JavaScript environment shuts down without closing
    /// it (a worker thread terminated in a runtime that does not finalize the worker's objects).
    #[napi]
    pub fn channel_join(&mut self, env: Env) -> Result<(), Code> {
        let segment = self.segment()?.clone();
        shmkit_core::peers::join(&segment);
        self.tracked = Some(crate::cleanup::track_channel(&env, &segment, &self.roles)?);
        Ok(())
    }

    /// Records that this mapping produces (1) or consumes (2) in a channel.
    #[napi]
    pub fn channel_announce(&mut self, role: u32) -> Result<(), Code> {
        let segment = self.segment()?.clone();
        shmkit_core::peers::announce(&segment, role);
        let role = role & (shmkit_core::peers::PRODUCER | shmkit_core::peers::CONSUMER);
        self.roles
            .fetch_or(role, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// A channel's producers and consumers, with their liveness.
    #[napi]
    pub fn channel_peers(&self) -> Result<crate::introspection::ChannelPeers, Code> {
        Ok(shmkit_core::peers::peers(self.segment()?).into())
    }

    fn cell(&self, handle: i64) -> Result<&MutexCell, Code> {
        cell_of(self.segment()?, handle)
    }

    /// Blocks until locked. Returns whether the previous holder died holding it.
    #[napi]
    pub fn lock(&self, cell: i64, timeout_ms: f64) -> Result<bool, Code> {
        let me = shmkit_core::current_thread();
        let acquired = self
            .cell(cell)?
            .lock(&me, timeouts::from_millis(timeout_ms))
            .map_err(to_js)?;
        Ok(acquired.owner_died)
    }

    /// 0: held by a live thread (this one included); 1: acquired; 2: acquired from a holder
    /// that died. Never waits.
    #[napi]
    pub fn try_lock(&self, cell: i64) -> Result<u32, Code> {
        let me = shmkit_core::current_thread();
        Ok(acquired_code(self.cell(cell)?.try_lock(&me)))
    }

    /// The release for a holder whose own CAS failed because WAITERS is set (the JS fast path
    /// has checked it holds the lock, through its guard, and cleared the owner record).
    #[napi]
    pub fn unlock_contended(&self, cell: i64) -> Result<(), Code> {
        self.cell(cell)?.unlock_contended();
        Ok(())
    }

    /// The second half of `lockAsync`, after `waitForRelease` settled with `'free'`, `'woken'`
    /// or `'owner-dead'` (`ownerDead`): 0 busy (wait again), 1 acquired, 2 taken over.
    #[napi]
    pub fn lock_after_wait(&self, cell: i64, owner_dead: bool) -> Result<u32, Code> {
        let me = shmkit_core::current_thread();
        Ok(acquired_code(
            self.cell(cell)?.lock_after_wait(&me, owner_dead),
        ))
    }

    /// Wakes one sleeper of the lock: for a woken async acquisition that gave up.
    #[napi]
    pub fn pass_on_wake(&self, cell: i64) -> Result<(), Code> {
        self.cell(cell)?.pass_on_wake();
        Ok(())
    }

    /// Waits on a waiter thread until the lock looks free, an unlock wakes us, its holder is
    /// judged dead, the timeout passes or the token is cancelled. Never takes the lock: the
    /// calling thread does, with `lockAfterWait`.
    #[napi(ts_return_type = "Promise<'free' | 'woken' | 'owner-dead' | 'timed-out' | 'cancelled'>")]
    pub fn wait_for_release<'env>(
        &self,
        env: &'env Env,
        cell: i64,
        timeout_ms: f64,
        token: &WaitToken,
    ) -> Result<Object<'env>, Code> {
        self.cell(cell)?; // validate now: errors are thrown synchronously
        let segment = self.segment()?.clone();
        let request = token.request();
        let deadline = shmkit_core::platform::deadline_after(timeouts::from_millis(timeout_ms));
        spawn_waiter(env, &request.clone(), move || {
            let mutex = cell_of(&segment, cell).unwrap_or_else(|_| {
                unreachable!("cell handle validated before the waiter started")
            });
            let outcome = mutex.wait_for_release(deadline, request.cancel_flag());
            let pass_on: Option<PassOn> = (outcome == LockWait::Woken).then(|| {
                let segment = segment.clone();
                Box::new(move || {
                    if let Ok(mutex) = cell_of(&segment, cell) {
                        mutex.pass_on_wake();
                    }
                }) as PassOn
            });
            if outcome == LockWait::Cancelled || !request.finish(pass_on) {
                return "cancelled".to_owned();
            }
            match outcome {
                LockWait::Free => "free",
                LockWait::Woken => "woken",
                LockWait::OwnerDead => "owner-dead",
                LockWait::TimedOut => "timed-out",
                LockWait::Cancelled => "cancelled",
            }
            .to_owned()
        })
    }

    /// `wait` on a waiter thread: resolves `'ok'`, `'not-equal'`, `'timed-out'` or `'cancelled'`.
    #[napi(ts_return_type = "Promise<'ok' | 'not-equal' | 'timed-out' | 'cancelled'>")]
    pub fn wait_async<'env>(
        &self,
        env: &'env Env,
        offset: f64,
        expected: i32,
        timeout_ms: f64,
        token: &WaitToken,
    ) -> Result<Object<'env>, Code> {
        let segment = self.segment()?.clone();
        let offset = offset as usize;
        segment.word_at(offset).map_err(to_js)?;
        let request = token.request();
        let timeout = timeouts::from_millis(timeout_ms);
        spawn_waiter(env, &request.clone(), move || {
            let outcome =
                segment.wait_on_behalf(offset, expected as u32, timeout, request.cancel_flag());
            let woken = matches!(outcome, Ok(WaitOutcome::Woken));
            // A notify this waiter consumed for a request cancelled late goes to another waiter.
            let pass_on: Option<PassOn> = woken.then(|| {
                let segment = segment.clone();
                Box::new(move || {
                    let _ = segment.notify(offset, 1);
                }) as PassOn
            });
            match outcome {
                Ok(outcome) if request.finish(pass_on) => wait_outcome_name(outcome),
                _ => "cancelled",
            }
            .to_owned()
        })
    }

    #[napi]
    pub fn wait(&self, offset: f64, expected: i32, timeout_ms: f64) -> Result<String, Code> {
        let segment = self.segment()?;
        let outcome = segment
            .wait(
                offset as usize,
                expected as u32,
                timeouts::from_millis(timeout_ms),
            )
            .map_err(to_js)?;
        Ok(wait_outcome_name(outcome).to_owned())
    }

    #[napi]
    pub fn notify(&self, offset: f64, count: f64) -> Result<u32, Code> {
        let count = if count.is_finite() {
            count.clamp(0.0, u32::MAX as f64) as u32
        } else {
            u32::MAX
        };
        Ok(self
            .segment()?
            .notify(offset as usize, count)
            .map_err(to_js)? as u32)
    }
}

fn acquired_code(acquired: Option<Acquired>) -> u32 {
    match acquired {
        None => 0,
        Some(acquired) if acquired.owner_died => 2,
        Some(_) => 1,
    }
}

fn wait_outcome_name(outcome: WaitOutcome) -> &'static str {
    match outcome {
        WaitOutcome::Woken => "ok",
        WaitOutcome::NotEqual => "not-equal",
        WaitOutcome::TimedOut => "timed-out",
    }
}

/// The mutex behind a cell handle: the header mutex, or a placed one at a checked offset.
fn cell_of(segment: &Segment, handle: i64) -> Result<&MutexCell, Code> {
    if handle == HEADER_MUTEX {
        return Ok(segment.header_mutex());
    }
    let offset =
        usize::try_from(handle).map_err(|_| coded("ERR_OUT_OF_RANGE", "Invalid mutex offset"))?;
    segment.mutex_at(offset).map_err(to_js)
}

/// This thread's identity as the lock protocol records it:
/// `[tid, namespace, startLo, startHi, pid]`.
#[napi]
pub fn current_thread_identity() -> Vec<u32> {
    let me = shmkit_core::current_thread();
    let start = me.start_time;
    vec![
        me.tid,
        me.namespace,
        start as u32,
        (start >> 32) as u32,
        me.pid,
    ]
}

/// Bytes a placed mutex occupies.
#[napi]
pub const MUTEX_BYTE_LENGTH: u32 = shmkit_core::MUTEX_SIZE as u32;

/// Whether the thread `[tid, namespace, startLo, startHi, pid]` (as `current_thread_identity`
/// gives it, and as shmkit records it in shared memory) still runs: `'alive'`, `'dead'`, or
/// `'unknown'` (another PID namespace, no permission: never treated as dead).
/// Whether `seg.buffer` is a real SharedArrayBuffer in this runtime (Node 22 and later, where the
/// experimental `node_api_create_external_sharedarraybuffer` exists; an ArrayBuffer elsewhere).
#[napi]
pub fn shared_array_buffers() -> bool {
    buffers::sharedarraybuffers()
}

#[napi]
pub fn thread_liveness(identity: Vec<u32>) -> Result<&'static str, Code> {
    let [tid, namespace, start_lo, start_hi, pid] = identity[..] else {
        return Err(coded("ERR_INVALID_ARG_VALUE", "An identity is 5 numbers"));
    };
    let who = shmkit_core::ThreadIdentity {
        tid,
        namespace,
        start_time: u64::from(start_lo) | (u64::from(start_hi) << 32),
        pid,
    };
    Ok(match shmkit_core::platform::liveness(&who) {
        shmkit_core::Liveness::Alive => "alive",
        shmkit_core::Liveness::Dead => "dead",
        shmkit_core::Liveness::Unknown => "unknown",
    })
}
