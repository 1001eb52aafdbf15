//! `NativeSegment`: one mapping of a segment, with its lock and wait/notify entry points.
//! The public `Segment`, `Mutex` and guards are in `index.ts`; they call these methods.

use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use shmkit_core::{CreateOptions, ErrorCode, Kind, MutexCell, Segment, WaitOutcome};

use crate::buffers::{self, RawValue};
use crate::errors::{coded, to_js, Code};
use crate::introspection::{MutexReport, SegmentInspection};
use crate::timeouts;
use crate::waiting::{spawn_waiter, WaitToken};

/// Cell handle meaning "the mutex in the header"; other handles are data-area offsets.
const HEADER_MUTEX: i64 = -1;

#[napi]
pub struct NativeSegment {
    segment: Option<Arc<Segment>>,
    created: bool,
    buffers_made: bool,
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

fn ready_timeout(ms: f64) -> Duration {
    timeouts::from_millis(ms).unwrap_or(shmkit_core::segment::DEFAULT_READY_TIMEOUT)
}

#[napi]
impl NativeSegment {
    fn wrap(segment: Segment, created: bool) -> Self {
        NativeSegment {
            segment: Some(Arc::new(segment)),
            created,
            buffers_made: false,
        }
    }

    #[napi(factory)]
    pub fn create(name: String, options: NativeCreateOptions) -> Result<Self, Code> {
        let segment = Segment::create(&name, create_options(&options)?).map_err(to_js)?;
        Ok(Self::wrap(segment, true))
    }

    #[napi(factory)]
    pub fn open(name: String, ready_timeout_ms: f64) -> Result<Self, Code> {
        let segment = Segment::open(&name, ready_timeout(ready_timeout_ms)).map_err(to_js)?;
        Ok(Self::wrap(segment, false))
    }

    #[napi(factory)]
    pub fn open_or_create(
        name: String,
        options: NativeCreateOptions,
        ready_timeout_ms: f64,
    ) -> Result<Self, Code> {
        let options = create_options(&options)?;
        let (segment, created) =
            Segment::open_or_create(&name, options, ready_timeout(ready_timeout_ms))
                .map_err(to_js)?;
        Ok(Self::wrap(segment, created))
    }

    #[napi]
    pub fn unlink(name: String) -> Result<(), Code> {
        Segment::unlink(&name).map_err(to_js)
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
    #[napi(ts_return_type = "[ArrayBuffer, ArrayBuffer]")]
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
            buffers::external(
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
    #[napi(ts_args_type = "buffers: ArrayBuffer[]")]
    pub fn close(&mut self, env: Env, buffers: Vec<Unknown<'_>>) -> Result<(), Code> {
        let Some(segment) = self.segment.take() else {
            return Ok(());
        };
        // Forget our attachment now (the memory itself is unmapped once no buffer refers to it).
        // A failure here only means the slot is reaped later, once this process is gone.
        let _ = segment.detach();
        let header_cell = segment.header_mutex() as *const MutexCell as *mut u8;
        for buffer in buffers {
            for start in [segment.data_ptr(), header_cell] {
                // SAFETY: env and value come from the current call.
                unsafe { buffers::detach_if_over(env.raw(), buffer.raw(), start)? };
            }
        }
        Ok(())
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

    /// 0: held by a live thread; 1: acquired; 2: acquired from a holder that died.
    #[napi]
    pub fn try_lock(&self, cell: i64) -> Result<u32, Code> {
        let me = shmkit_core::current_thread();
        Ok(match self.cell(cell)?.try_lock(&me).map_err(to_js)? {
            None => 0,
            Some(acquired) if acquired.owner_died => 2,
            Some(_) => 1,
        })
    }

    #[napi]
    pub fn unlock(&self, cell: i64) -> Result<(), Code> {
        self.cell(cell)?
            .unlock(&shmkit_core::current_thread())
            .map_err(to_js)
    }

    /// Acquires on a waiter thread for this JS thread. Resolves `'acquired'`, `'owner-died'`,
    /// `'timed-out'` or `'cancelled'` (never leaving the lock held in that case).
    #[napi(ts_return_type = "Promise<'acquired' | 'owner-died' | 'timed-out' | 'cancelled'>")]
    pub fn lock_async<'env>(
        &self,
        env: &'env Env,
        cell: i64,
        timeout_ms: f64,
        token: &WaitToken,
    ) -> Result<Object<'env>, Code> {
        self.cell(cell)?; // validate now: errors are thrown synchronously
        let segment = self.segment()?.clone();
        let me = shmkit_core::current_thread();
        let request = token.request();
        let timeout = timeouts::from_millis(timeout_ms);
        spawn_waiter(env, move || {
            let mutex = cell_of(&segment, cell).unwrap_or_else(|_| {
                unreachable!("cell handle validated before the waiter started")
            });
            match mutex.lock_on_behalf(&me, timeout, request.cancel_flag()) {
                Ok(acquired) if request.complete() => {
                    if acquired.owner_died {
                        "owner-died"
                    } else {
                        "acquired"
                    }
                }
                Ok(_) => {
                    // Cancelled just as we acquired: release, never leak.
                    let _ = mutex.unlock(&me);
                    "cancelled"
                }
                Err(err) if err.code() == ErrorCode::TimedOut => {
                    request.complete();
                    "timed-out"
                }
                Err(_) => "cancelled",
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
        spawn_waiter(env, move || {
            match segment.wait_on_behalf(offset, expected as u32, timeout, request.cancel_flag()) {
                Ok(outcome) if request.complete() => wait_outcome_name(outcome),
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
