//! `NativeSegment`: one mapping of a segment, with its lock and wait/notify entry points.
//! The public `Segment`, `Mutex` and guards are in `index.ts`; they call these methods.

use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use shmkit_core::{CreateOptions, MutexCell, Segment, WaitOutcome};

use crate::buffers::{self, RawValue};
use crate::errors::{coded, to_js, Code};
use crate::timeouts;

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

fn create_options(size: f64, mode: u32) -> Result<CreateOptions, Code> {
    Ok(CreateOptions {
        mode,
        ..CreateOptions::new(size_from_js(size)?)
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
    pub fn create(name: String, size: f64, mode: u32) -> Result<Self, Code> {
        let segment = Segment::create(&name, create_options(size, mode)?).map_err(to_js)?;
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
        size: f64,
        mode: u32,
        ready_timeout_ms: f64,
    ) -> Result<Self, Code> {
        let options = create_options(size, mode)?;
        let (segment, created) =
            Segment::open_or_create(&name, options, ready_timeout(ready_timeout_ms))
                .map_err(to_js)?;
        Ok(Self::wrap(segment, created))
    }

    #[napi]
    pub fn unlink(name: String) -> Result<(), Code> {
        Segment::unlink(&name).map_err(to_js)
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
        let segment = self.segment()?;
        if handle == HEADER_MUTEX {
            return Ok(segment.header_mutex());
        }
        let offset = usize::try_from(handle)
            .map_err(|_| coded("ERR_OUT_OF_RANGE", "Invalid mutex offset"))?;
        segment.mutex_at(offset).map_err(to_js)
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
        Ok(match outcome {
            WaitOutcome::Woken => "ok",
            WaitOutcome::NotEqual => "not-equal",
            WaitOutcome::TimedOut => "timed-out",
        }
        .to_owned())
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

/// This thread's identity as the lock protocol records it: `[tid, namespace, startLo, startHi]`.
#[napi]
pub fn current_thread_identity() -> Vec<u32> {
    let me = shmkit_core::current_thread();
    vec![
        me.tid,
        me.namespace,
        me.start_time as u32,
        (me.start_time >> 32) as u32,
    ]
}

/// Bytes a placed mutex occupies.
#[napi]
pub const MUTEX_BYTE_LENGTH: u32 = shmkit_core::MUTEX_SIZE as u32;
