//! The Python binding: thin PyO3 classes over `shmkit-core` that move bytes and convert errors.
//! Codecs, iteration and asyncio live in the `shmkit` package (`shmkit/__init__.py`); every
//! protocol (locks, waits, channels, maps, topics) is the core's.
//!
//! Blocking calls release the GIL and wait in slices of at most 100 ms, checking for signals
//! between slices, so Ctrl-C interrupts them.

use std::os::raw::c_int;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pyo3::create_exception;
use pyo3::exceptions::{
    PyBufferError, PyException, PyFileExistsError, PyFileNotFoundError, PyPermissionError,
    PyTimeoutError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use shmkit_core::map::{Evict, MapOptions, SharedMap};
use shmkit_core::platform::{self, WaitOutcome};
use shmkit_core::segment::{OpenOptions, Owners};
use shmkit_core::topic::{Slow, Subscription, Topic, TopicOptions};
use shmkit_core::{Channel, CreateOptions, Error, ErrorCode, Kind, MutexCell, Segment};

create_exception!(
    _native,
    ShmkitError,
    PyException,
    "An error from shmkit without a builtin counterpart; `code` says which (as in Node)."
);

/// The longest a blocking call waits without the GIL before checking for signals (Ctrl-C).
const SLICE: Duration = Duration::from_millis(100);

/// A core error as the matching Python exception, with `code` (and `missed` for a lag).
fn to_py(py: Python<'_>, error: Error) -> PyErr {
    let message = error.message().to_owned();
    let code = error.code();
    let err = match code {
        ErrorCode::AlreadyExists => PyFileExistsError::new_err(message),
        ErrorCode::NotFound => PyFileNotFoundError::new_err(message),
        ErrorCode::PermissionDenied => PyPermissionError::new_err(message),
        ErrorCode::TimedOut => PyTimeoutError::new_err(message),
        ErrorCode::OutOfRange | ErrorCode::InvalidName | ErrorCode::NameTooLong => {
            PyValueError::new_err(message)
        }
        _ => ShmkitError::new_err(message),
    };
    let value = err.value(py);
    let _ = value.setattr("code", code.as_str());
    if let ErrorCode::Lagged(missed) = code {
        let _ = value.setattr("missed", missed);
    }
    err
}

fn coded(py: Python<'_>, err: PyErr, code: &str) -> PyErr {
    let _ = err.value(py).setattr("code", code);
    err
}

fn value_error(py: Python<'_>, message: String) -> PyErr {
    coded(py, PyValueError::new_err(message), "ERR_OUT_OF_RANGE")
}

/// Seconds (None: no limit) as a duration; negative, NaN or infinite is refused.
fn timeout(py: Python<'_>, seconds: Option<f64>) -> PyResult<Option<Duration>> {
    match seconds {
        None => Ok(None),
        Some(s) if s.is_infinite() && s > 0.0 => Ok(None),
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(value_error(
            py,
            format!("timeout must be a number of seconds >= 0 or None, not {s}"),
        )),
    }
}

fn timed_out(py: Python<'_>, what: &str) -> PyErr {
    coded(
        py,
        PyTimeoutError::new_err(format!("Timed out waiting for {what}")),
        "ETIMEDOUT",
    )
}

/// Runs `attempt(slice)` without the GIL, in slices of at most [`SLICE`], until it returns
/// `Some` or `timeout` passes; checks for signals (Ctrl-C) between slices. `attempt` returns
/// `Ok(None)` when its slice ran out.
fn blocking<T: Send>(
    py: Python<'_>,
    timeout: Option<Duration>,
    what: &str,
    mut attempt: impl FnMut(Duration) -> Result<Option<T>, Error> + Send,
) -> PyResult<T> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let slice = left.map_or(SLICE, |l| l.min(SLICE));
        match py.detach(|| attempt(slice)) {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) if e.code() == ErrorCode::TimedOut => {}
            Err(e) => return Err(to_py(py, e)),
        }
        py.check_signals()?;
        if left == Some(Duration::ZERO) || deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(timed_out(py, what));
        }
    }
}

fn owners(py: Python<'_>, owner: Option<&Bound<'_, PyAny>>) -> PyResult<Owners> {
    let Some(owner) = owner else {
        return Ok(Owners::Me);
    };
    if let Ok(text) = owner.extract::<String>() {
        if text == "any" {
            return Ok(Owners::Any);
        }
    }
    if let Ok(uid) = owner.extract::<u32>() {
        return Ok(Owners::Uids(vec![uid]));
    }
    if let Ok(uids) = owner.extract::<Vec<u32>>() {
        return Ok(Owners::Uids(uids));
    }
    Err(coded(
        py,
        PyTypeError::new_err("owner must be a user id, a list of user ids, or 'any'"),
        "ERR_INVALID_ARG_TYPE",
    ))
}

fn open_options(
    py: Python<'_>,
    wait: Option<f64>,
    ready_timeout: Option<f64>,
    owner: Option<&Bound<'_, PyAny>>,
) -> PyResult<OpenOptions> {
    let mut options = OpenOptions {
        wait: timeout(py, wait)?,
        owners: owners(py, owner)?,
        ..OpenOptions::default()
    };
    if let Some(ready) = timeout(py, ready_timeout)? {
        options.ready_timeout = ready;
    }
    Ok(options)
}

// ------------------------------------------------------------------------------------ segments

/// A mapped segment (of any kind: channels, maps and topics keep theirs here too).
#[pyclass(module = "shmkit._native", name = "Segment", frozen)]
struct PySegment {
    segment: Mutex<Option<Arc<Segment>>>,
    /// Buffers (memoryviews) exported over the data area: while any is alive, close() refuses,
    /// as `mmap.close()` does, so no view outlives the mapping.
    exports: AtomicUsize,
    created: bool,
}

impl PySegment {
    fn wrap(segment: Arc<Segment>, created: bool) -> Self {
        PySegment {
            segment: Mutex::new(Some(segment)),
            exports: AtomicUsize::new(0),
            created,
        }
    }

    fn get(&self, py: Python<'_>) -> PyResult<Arc<Segment>> {
        self.segment
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| {
                coded(
                    py,
                    ShmkitError::new_err("The segment is closed"),
                    "ERR_SHM_CLOSED",
                )
            })
    }

    fn cell<'a>(
        &self,
        py: Python<'_>,
        segment: &'a Segment,
        offset: i64,
    ) -> PyResult<&'a MutexCell> {
        if offset < 0 {
            return Ok(segment.header_mutex());
        }
        segment.mutex_at(offset as usize).map_err(|e| to_py(py, e))
    }
}

#[pymethods]
impl PySegment {
    #[staticmethod]
    #[pyo3(signature = (name, size, mode = 0o600, auto_unlink = false, reserve = true))]
    fn create(
        py: Python<'_>,
        name: &str,
        size: usize,
        mode: u32,
        auto_unlink: bool,
        reserve: bool,
    ) -> PyResult<Self> {
        let options = CreateOptions {
            mode,
            auto_unlink,
            reserve,
            ..CreateOptions::new(size)
        };
        let segment = py
            .detach(|| Segment::create(name, options))
            .map_err(|e| to_py(py, e))?;
        Ok(PySegment::wrap(Arc::new(segment), true))
    }

    /// Opens segment `name`; `any_kind` also opens a channel, map or topic as raw memory (for
    /// tools and tests: its protocol is then yours to follow).
    #[staticmethod]
    #[pyo3(signature = (name, wait = None, ready_timeout = None, owner = None, any_kind = false))]
    fn open(
        py: Python<'_>,
        name: &str,
        wait: Option<f64>,
        ready_timeout: Option<f64>,
        owner: Option<&Bound<'_, PyAny>>,
        any_kind: bool,
    ) -> PyResult<Self> {
        let options = open_options(py, wait, ready_timeout, owner)?;
        let segment = py
            .detach(|| Segment::open_with(name, &options))
            .map_err(|e| to_py(py, e))?;
        if !any_kind && segment.info().kind != Kind::Segment {
            let kind = segment.info().kind.name();
            let _ = segment.detach();
            return Err(coded(
                py,
                ShmkitError::new_err(format!("{name:?} is a {kind}, not a plain segment")),
                "ERR_SHM_WRONG_KIND",
            ));
        }
        Ok(PySegment::wrap(Arc::new(segment), false))
    }

    #[staticmethod]
    #[pyo3(signature = (name, size, mode = 0o600, auto_unlink = false, ready_timeout = 2.0))]
    fn open_or_create(
        py: Python<'_>,
        name: &str,
        size: usize,
        mode: u32,
        auto_unlink: bool,
        ready_timeout: f64,
    ) -> PyResult<Self> {
        let options = CreateOptions {
            mode,
            auto_unlink,
            ..CreateOptions::new(size)
        };
        let ready = timeout(py, Some(ready_timeout))?.unwrap_or(Duration::from_secs(2));
        let (segment, created) = py
            .detach(|| Segment::open_or_create(name, options, ready))
            .map_err(|e| to_py(py, e))?;
        Ok(PySegment::wrap(Arc::new(segment), created))
    }

    /// Removes segment `name` (of kind `kind`: 'segment', 'channel', 'map', 'topic'; None: any).
    #[staticmethod]
    #[pyo3(signature = (name, kind = None))]
    fn unlink(py: Python<'_>, name: &str, kind: Option<&str>) -> PyResult<()> {
        let kind =
            match kind {
                None => None,
                Some(k) => Some(Kind::ALL.into_iter().find(|x| x.name() == k).ok_or_else(
                    || {
                        coded(
                            py,
                            PyValueError::new_err(format!("unknown kind {k:?}")),
                            "ERR_INVALID_ARG_VALUE",
                        )
                    },
                )?),
            };
        Segment::unlink_kind(name, kind).map_err(|e| to_py(py, e))
    }

    #[staticmethod]
    fn list(py: Python<'_>) -> PyResult<Vec<String>> {
        Segment::list().map_err(|e| to_py(py, e))
    }

    #[getter]
    fn name(&self, py: Python<'_>) -> PyResult<String> {
        Ok(self.get(py)?.name().to_owned())
    }

    #[getter]
    fn size(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.get(py)?.data_len())
    }

    #[getter]
    fn kind(&self, py: Python<'_>) -> PyResult<&'static str> {
        Ok(self.get(py)?.info().kind.name())
    }

    #[getter]
    fn created(&self) -> bool {
        self.created
    }

    #[getter]
    fn closed(&self) -> bool {
        self.segment
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    /// Unmaps this handle (the segment stays for others). Refused while memoryviews over it
    /// are alive (release them first), so none outlives the mapping.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let mut slot = self.segment.lock().unwrap_or_else(|e| e.into_inner());
        if self.exports.load(Ordering::SeqCst) != 0 {
            return Err(coded(
                py,
                PyBufferError::new_err(
                    "cannot close a segment while memoryviews of it exist (release them first)",
                ),
                "EBUSY",
            ));
        }
        if let Some(segment) = slot.take() {
            segment.detach().map_err(|e| to_py(py, e))?;
        }
        Ok(())
    }

    /// Sleeps while the 32-bit word at `offset` holds `expected` (across processes).
    #[pyo3(signature = (offset, expected, timeout = None))]
    fn wait(
        &self,
        py: Python<'_>,
        offset: usize,
        expected: u32,
        timeout: Option<f64>,
    ) -> PyResult<&'static str> {
        let segment = self.get(py)?;
        let word = segment.word_at(offset).map_err(|e| to_py(py, e))?;
        if word.load(Ordering::SeqCst) != expected {
            return Ok("not-equal");
        }
        let limit = self::timeout(py, timeout)?;
        let result = blocking(py, limit, "a notify", |slice| {
            if word.load(Ordering::SeqCst) != expected {
                return Ok(Some("ok"));
            }
            Ok(match platform::wait(word, expected, Some(slice)) {
                WaitOutcome::Woken => Some("ok"),
                WaitOutcome::NotEqual => Some("ok"),
                WaitOutcome::TimedOut => None,
            })
        });
        match result {
            Err(e) if e.is_instance_of::<PyTimeoutError>(py) => Ok("timed-out"),
            other => other,
        }
    }

    /// Wakes up to `count` waiters on the word at `offset` (None: all); how many were woken.
    #[pyo3(signature = (offset, count = None))]
    fn notify(&self, py: Python<'_>, offset: usize, count: Option<u32>) -> PyResult<usize> {
        let segment = self.get(py)?;
        let word = segment.word_at(offset).map_err(|e| to_py(py, e))?;
        Ok(platform::wake(word, count.unwrap_or(u32::MAX)))
    }

    /// Takes the mutex at `offset` (-1: the header's), waiting up to `timeout` seconds. Returns
    /// whether the previous holder died holding it (its data may be half-updated).
    #[pyo3(signature = (offset, timeout = None))]
    fn lock(&self, py: Python<'_>, offset: i64, timeout: Option<f64>) -> PyResult<bool> {
        let segment = self.get(py)?;
        let cell = self.cell(py, &segment, offset)?;
        let me = platform::current_thread();
        if cell.is_held_by(cell.state(), &me) {
            return Err(coded(
                py,
                ShmkitError::new_err(
                    "This thread already holds the lock (locks are not recursive)",
                ),
                "EDEADLK",
            ));
        }
        let limit = self::timeout(py, timeout)?;
        blocking(py, limit, "the lock", |slice| {
            let options = shmkit_core::mutex::LockOptions {
                deadline: Instant::now().checked_add(slice),
                presume_dead_after: None,
            };
            cell.lock_with(&me, options)
                .map(|acquired| Some(acquired.owner_died))
        })
    }

    /// Takes the mutex if it is free now: None when busy (by anyone, this thread included),
    /// else whether the previous holder died holding it.
    fn try_lock(&self, py: Python<'_>, offset: i64) -> PyResult<Option<bool>> {
        let segment = self.get(py)?;
        let cell = self.cell(py, &segment, offset)?;
        Ok(cell
            .try_lock(&platform::current_thread())
            .map(|acquired| acquired.owner_died))
    }

    fn unlock(&self, py: Python<'_>, offset: i64) -> PyResult<()> {
        let segment = self.get(py)?;
        let cell = self.cell(py, &segment, offset)?;
        cell.unlock(&platform::current_thread())
            .map_err(|e| to_py(py, e))
    }

    /// The data area as a writable buffer (`memoryview(seg)`), zero copy.
    // SAFETY (of the method): PyO3 calls it with a valid `view` from the buffer protocol.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let segment = me.get(py)?;
        me.exports.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the data area lies inside the mapping, which stays mapped while this export
        // lives: `close` refuses while `exports` is nonzero, and `view.obj` keeps `slf` (and so
        // the `Arc<Segment>`) alive. `view` is valid for writing per the buffer protocol.
        let filled = unsafe {
            pyo3::ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                segment.data_ptr().cast(),
                segment.data_len() as pyo3::ffi::Py_ssize_t,
                0,
                flags,
            )
        };
        if filled != 0 {
            me.exports.fetch_sub(1, Ordering::SeqCst);
            return Err(PyErr::fetch(py));
        }
        Ok(())
    }

    // SAFETY (of the method): called by Python once per successful `__getbuffer__`.
    unsafe fn __releasebuffer__(&self, _view: *mut pyo3::ffi::Py_buffer) {
        self.exports.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A native object shared by a Python handle, until `close()`.
struct Held<T> {
    inner: Mutex<Option<Arc<T>>>,
    what: &'static str,
}

impl<T> Held<T> {
    fn new(value: T, what: &'static str) -> Self {
        Held {
            inner: Mutex::new(Some(Arc::new(value))),
            what,
        }
    }

    fn get(&self, py: Python<'_>) -> PyResult<Arc<T>> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| {
                coded(
                    py,
                    ShmkitError::new_err(format!("The {} is closed", self.what)),
                    "ERR_SHM_CLOSED",
                )
            })
    }

    fn close(&self) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    fn is_closed(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }
}

/// Opens `name` with `open` (one of the kinds' `open`), without the GIL, as `wait`,
/// `ready_timeout` and `owner` say.
fn open_kind<T: Send>(
    py: Python<'_>,
    name: &str,
    (wait, ready_timeout, owner): (Option<f64>, Option<f64>, Option<&Bound<'_, PyAny>>),
    open: impl FnOnce(&str, &OpenOptions) -> Result<T, Error> + Send,
) -> PyResult<T> {
    let options = open_options(py, wait, ready_timeout, owner)?;
    py.detach(|| open(name, &options)).map_err(|e| to_py(py, e))
}

// ------------------------------------------------------------------------------------ channels

#[pyclass(module = "shmkit._native", name = "Channel", frozen)]
struct PyChannel {
    channel: Held<Channel>,
}

impl PyChannel {
    fn get(&self, py: Python<'_>) -> PyResult<Arc<Channel>> {
        self.channel.get(py)
    }
}

#[pymethods]
impl PyChannel {
    #[staticmethod]
    fn create(py: Python<'_>, name: &str, capacity: usize, codec: u32) -> PyResult<Self> {
        let channel = Channel::create(name, capacity, codec).map_err(|e| to_py(py, e))?;
        Ok(PyChannel {
            channel: Held::new(channel, "channel"),
        })
    }

    #[staticmethod]
    #[pyo3(signature = (name, ready_timeout = 2.0))]
    fn open(py: Python<'_>, name: &str, ready_timeout: f64) -> PyResult<Self> {
        let ready = timeout(py, Some(ready_timeout))?.unwrap_or(Duration::from_secs(2));
        let channel = py
            .detach(|| Channel::open(name, ready))
            .map_err(|e| to_py(py, e))?;
        Ok(PyChannel {
            channel: Held::new(channel, "channel"),
        })
    }

    #[getter]
    fn name(&self, py: Python<'_>) -> PyResult<String> {
        Ok(self.get(py)?.name().to_owned())
    }

    #[getter]
    fn capacity(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.get(py)?.capacity())
    }

    #[getter]
    fn codec(&self, py: Python<'_>) -> PyResult<u32> {
        Ok(self.get(py)?.codec())
    }

    #[getter]
    fn ended(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.get(py)?.is_ended())
    }

    #[getter]
    fn closed(&self) -> bool {
        self.channel.is_closed()
    }

    #[pyo3(signature = (message, timeout = None))]
    fn send(&self, py: Python<'_>, message: &[u8], timeout: Option<f64>) -> PyResult<()> {
        let channel = self.get(py)?;
        let limit = self::timeout(py, timeout)?;
        let message = message.to_vec();
        blocking(py, limit, "room in the channel", |slice| {
            match channel.send(&message, Some(slice)) {
                Ok(()) => Ok(Some(())),
                Err(e) if e.code() == ErrorCode::TimedOut => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn try_send(&self, py: Python<'_>, message: &[u8]) -> PyResult<bool> {
        self.get(py)?.try_send(message).map_err(|e| to_py(py, e))
    }

    #[pyo3(signature = (timeout = None))]
    fn recv<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyBytes>> {
        let channel = self.get(py)?;
        let limit = self::timeout(py, timeout)?;
        let message = blocking(py, limit, "a message", |slice| {
            match channel.recv(Some(slice)) {
                Ok(message) => Ok(Some(message)),
                Err(e) if e.code() == ErrorCode::TimedOut => Ok(None),
                Err(e) => Err(e),
            }
        })?;
        Ok(PyBytes::new(py, &message))
    }

    fn try_recv<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let message = self.get(py)?.try_recv().map_err(|e| to_py(py, e))?;
        Ok(message.map(|m| PyBytes::new(py, &m)))
    }

    /// Waits up to `timeout` seconds (at most one slice) until a message may be there or the
    /// stream ended, taking nothing (asyncio waits run this on an executor thread).
    fn wait_readable(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let channel = self.get(py)?;
        let limit = self::timeout(py, Some(timeout))?.unwrap_or(SLICE);
        py.detach(|| channel.wait_readable(limit))
            .map_err(|e| to_py(py, e))
    }

    fn wait_writable(&self, py: Python<'_>, length: usize, timeout: f64) -> PyResult<bool> {
        let channel = self.get(py)?;
        let limit = self::timeout(py, Some(timeout))?.unwrap_or(SLICE);
        py.detach(|| channel.wait_writable(length, limit))
            .map_err(|e| to_py(py, e))
    }

    #[pyo3(signature = (timeout = None))]
    fn end(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let channel = self.get(py)?;
        let limit = self::timeout(py, timeout)?;
        py.detach(|| channel.end(limit)).map_err(|e| to_py(py, e))
    }

    fn close(&self) {
        self.channel.close();
    }

    /// Takes the next message to be acknowledged: `(id, deliveries, bytes)`. The job belongs to
    /// this thread (ack it from the thread that took it).
    #[pyo3(signature = (timeout = None, lease = 30.0, max_deliveries = 5, dead_letter = None))]
    fn take<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
        lease: f64,
        max_deliveries: u32,
        dead_letter: Option<&Bound<'py, PyChannel>>,
    ) -> PyResult<(String, u32, Bound<'py, PyBytes>)> {
        let channel = self.get(py)?;
        let limit = self::timeout(py, timeout)?;
        let most = shmkit_core::queue::MAX_LEASE.as_secs_f64();
        if !(0.001..=most).contains(&lease) {
            return Err(value_error(
                py,
                format!("lease must be from 0.001 to {most} seconds, not {lease}"),
            ));
        }
        if max_deliveries == 0 {
            return Err(value_error(
                py,
                "max_deliveries must be at least 1".to_owned(),
            ));
        }
        let dead_letter = dead_letter.map(|d| d.get().get(py)).transpose()?;
        let lease = Duration::from_secs_f64(lease);
        let job = blocking(py, limit, "a message", |slice| {
            let options = shmkit_core::TakeOptions {
                timeout: Some(slice),
                lease,
                max_deliveries,
                dead_letter: dead_letter.as_deref(),
                on_dropped: None,
            };
            match channel.take(&options) {
                Ok(job) => Ok(Some(job)),
                Err(e) if e.code() == ErrorCode::TimedOut => Ok(None),
                Err(e) => Err(e),
            }
        })?;
        Ok((job.id, job.deliveries, PyBytes::new(py, &job.payload)))
    }

    /// Acknowledges job `id` (delivery `deliveries`); whether it was still this thread's.
    fn ack(&self, py: Python<'_>, id: String, deliveries: u32) -> PyResult<bool> {
        let job = shmkit_core::Job {
            id,
            deliveries,
            payload: Vec::new(),
        };
        self.get(py)?.ack(&job).map_err(|e| to_py(py, e))
    }

    /// Gives job `id` back; whether it was still this thread's.
    fn nack(&self, py: Python<'_>, id: String, deliveries: u32) -> PyResult<bool> {
        let job = shmkit_core::Job {
            id,
            deliveries,
            payload: Vec::new(),
        };
        self.get(py)?.nack(&job).map_err(|e| to_py(py, e))
    }

    /// What waiting receives and sends do once the other side is gone: 0 wait, 1 end, 2 raise.
    fn set_if_peers_gone(&self, py: Python<'_>, mode: u32) -> PyResult<()> {
        use shmkit_core::channel::IfPeersGone;
        let mode = match mode {
            0 => IfPeersGone::Wait,
            1 => IfPeersGone::End,
            2 => IfPeersGone::Fail,
            _ => {
                return Err(PyValueError::new_err(format!(
                    "unknown if_peers_gone mode {mode}"
                )))
            }
        };
        self.get(py)?.set_if_peers_gone(mode);
        Ok(())
    }

    /// `(peers, (producers, consumers), (producers_gone, consumers_gone), unlisted)`, each peer
    /// as `(pid, producer, consumer, state)`, the counts and verdicts as the core judges them: the
    /// Python layer builds the report.
    #[allow(clippy::type_complexity)]
    fn peers(
        &self,
        py: Python<'_>,
    ) -> PyResult<(
        Vec<(u32, bool, bool, &'static str)>,
        (usize, usize),
        (bool, bool),
        u32,
    )> {
        use shmkit_core::peers::{CONSUMER, PRODUCER};
        let report = self.get(py)?.peers();
        let peers = report
            .peers
            .iter()
            .map(|p| {
                let state = match p.alive {
                    shmkit_core::Liveness::Alive => "alive",
                    shmkit_core::Liveness::Dead => "dead",
                    shmkit_core::Liveness::Unknown => "unknown",
                };
                (
                    p.pid,
                    p.roles & PRODUCER != 0,
                    p.roles & CONSUMER != 0,
                    state,
                )
            })
            .collect();
        Ok((
            peers,
            (report.live(PRODUCER), report.live(CONSUMER)),
            (report.gone(PRODUCER), report.gone(CONSUMER)),
            report.unlisted,
        ))
    }
}

// ------------------------------------------------------------------------------------ maps

#[pyclass(module = "shmkit._native", name = "SharedMap", frozen)]
struct PyMap {
    map: Held<SharedMap>,
}

impl PyMap {
    fn get_map(&self, py: Python<'_>) -> PyResult<Arc<SharedMap>> {
        self.map.get(py)
    }
}

#[pymethods]
impl PyMap {
    #[staticmethod]
    #[pyo3(signature = (name, capacity, memory = None, codec = 2, evict = "none", mode = 0o600, auto_unlink = false))]
    #[allow(clippy::too_many_arguments)]
    fn create(
        py: Python<'_>,
        name: &str,
        capacity: usize,
        memory: Option<usize>,
        codec: u32,
        evict: &str,
        mode: u32,
        auto_unlink: bool,
    ) -> PyResult<Self> {
        let evict = match evict {
            "none" => Evict::None,
            "lru" => Evict::Lru,
            other => {
                return Err(coded(
                    py,
                    PyValueError::new_err(format!("evict must be 'none' or 'lru', not {other:?}")),
                    "ERR_INVALID_ARG_VALUE",
                ))
            }
        };
        let options = MapOptions {
            memory: memory.unwrap_or_else(|| shmkit_core::map::default_memory(capacity)),
            codec,
            evict,
            mode,
            auto_unlink,
            ..MapOptions::new(capacity)
        };
        let map = SharedMap::create(name, options).map_err(|e| to_py(py, e))?;
        Ok(PyMap {
            map: Held::new(map, "map"),
        })
    }

    #[staticmethod]
    #[pyo3(signature = (name, wait = None, ready_timeout = None, owner = None))]
    fn open(
        py: Python<'_>,
        name: &str,
        wait: Option<f64>,
        ready_timeout: Option<f64>,
        owner: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let map = open_kind(py, name, (wait, ready_timeout, owner), SharedMap::open)?;
        Ok(PyMap {
            map: Held::new(map, "map"),
        })
    }

    #[getter]
    fn name(&self, py: Python<'_>) -> PyResult<String> {
        Ok(self.get_map(py)?.name().to_owned())
    }

    #[getter]
    fn codec(&self, py: Python<'_>) -> PyResult<u32> {
        Ok(self.get_map(py)?.codec())
    }

    fn get<'py>(&self, py: Python<'py>, key: &[u8]) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let value = self.get_map(py)?.get(key).map_err(|e| to_py(py, e))?;
        Ok(value.map(|v| PyBytes::new(py, &v)))
    }

    fn contains(&self, py: Python<'_>, key: &[u8]) -> PyResult<bool> {
        self.get_map(py)?.contains(key).map_err(|e| to_py(py, e))
    }

    #[pyo3(signature = (key, value, ttl = None))]
    fn set(&self, py: Python<'_>, key: &[u8], value: &[u8], ttl: Option<f64>) -> PyResult<()> {
        let ttl = timeout(py, ttl)?;
        let map = self.get_map(py)?;
        py.detach(|| map.set(key, value, ttl))
            .map_err(|e| to_py(py, e))
    }

    fn delete(&self, py: Python<'_>, key: &[u8]) -> PyResult<bool> {
        let map = self.get_map(py)?;
        py.detach(|| map.delete(key)).map_err(|e| to_py(py, e))
    }

    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        let map = self.get_map(py)?;
        py.detach(|| map.clear()).map_err(|e| to_py(py, e))
    }

    fn len(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.get_map(py)?.len())
    }

    fn entries<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Vec<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)>> {
        let entries = self.get_map(py)?.entries().map_err(|e| to_py(py, e))?;
        Ok(entries
            .iter()
            .map(|(k, v)| (PyBytes::new(py, k), PyBytes::new(py, v)))
            .collect())
    }

    /// Replaces the value of `key` with `function(current bytes or None)` (bytes, or None to
    /// delete) under the map's lock, atomically across processes. If `function` raises, nothing
    /// changes.
    #[pyo3(signature = (key, function, ttl = None, timeout = None))]
    fn update(
        &self,
        py: Python<'_>,
        key: &[u8],
        function: Bound<'_, PyAny>,
        ttl: Option<f64>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let ttl = self::timeout(py, ttl)?;
        let limit = self::timeout(py, timeout)?;
        let map = self.get_map(py)?;
        let cell = map.lock_cell();
        let me = platform::current_thread();
        let owner_died = blocking(py, limit, "the map's lock", |slice| {
            let options = shmkit_core::mutex::LockOptions {
                deadline: Instant::now().checked_add(slice),
                presume_dead_after: None,
            };
            cell.lock_with(&me, options)
                .map(|acquired| Some(acquired.owner_died))
        })?;
        if owner_died {
            map.recover(); // a writer died mid-transaction: roll it back first
        }
        let result = (|| -> PyResult<()> {
            let current = map.get(key).map_err(|e| to_py(py, e))?;
            let argument = current.as_deref().map(|c| PyBytes::new(py, c));
            let next = function.call1((argument,))?.extract::<Option<Vec<u8>>>()?;
            match next {
                Some(bytes) => map.set_locked(key, &bytes, ttl),
                None => map.delete_locked(key).map(|_| ()),
            }
            .map_err(|e| to_py(py, e))
        })();
        let _ = cell.unlock(&me);
        result
    }

    fn close(&self) {
        self.map.close();
    }
}

// ------------------------------------------------------------------------------------ topics

#[pyclass(module = "shmkit._native", name = "Topic", frozen)]
struct PyTopic {
    topic: Held<Topic>,
}

impl PyTopic {
    fn get_topic(&self, py: Python<'_>) -> PyResult<Arc<Topic>> {
        self.topic.get(py)
    }
}

#[pymethods]
impl PyTopic {
    #[staticmethod]
    #[pyo3(signature = (name, capacity, codec = 2, slow = "block", subscribers = 64, mode = 0o600, auto_unlink = false))]
    #[allow(clippy::too_many_arguments)]
    fn create(
        py: Python<'_>,
        name: &str,
        capacity: usize,
        codec: u32,
        slow: &str,
        subscribers: usize,
        mode: u32,
        auto_unlink: bool,
    ) -> PyResult<Self> {
        let slow = match slow {
            "block" => Slow::Block,
            "overwrite" => Slow::Overwrite,
            other => {
                return Err(coded(
                    py,
                    PyValueError::new_err(format!(
                        "slow must be 'block' or 'overwrite', not {other:?}"
                    )),
                    "ERR_INVALID_ARG_VALUE",
                ))
            }
        };
        let options = TopicOptions {
            codec,
            slow,
            subscribers,
            mode,
            auto_unlink,
            ..TopicOptions::new(capacity)
        };
        let topic = Topic::create(name, options).map_err(|e| to_py(py, e))?;
        Ok(PyTopic {
            topic: Held::new(topic, "topic"),
        })
    }

    #[staticmethod]
    #[pyo3(signature = (name, wait = None, ready_timeout = None, owner = None))]
    fn open(
        py: Python<'_>,
        name: &str,
        wait: Option<f64>,
        ready_timeout: Option<f64>,
        owner: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let topic = open_kind(py, name, (wait, ready_timeout, owner), Topic::open)?;
        Ok(PyTopic {
            topic: Held::new(topic, "topic"),
        })
    }

    #[getter]
    fn name(&self, py: Python<'_>) -> PyResult<String> {
        Ok(self.get_topic(py)?.name().to_owned())
    }

    #[getter]
    fn codec(&self, py: Python<'_>) -> PyResult<u32> {
        Ok(self.get_topic(py)?.codec())
    }

    #[getter]
    fn ended(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.get_topic(py)?.is_ended())
    }

    #[pyo3(signature = (message, timeout = None))]
    fn publish(&self, py: Python<'_>, message: &[u8], timeout: Option<f64>) -> PyResult<()> {
        let topic = self.get_topic(py)?;
        let limit = self::timeout(py, timeout)?;
        let message = message.to_vec();
        blocking(py, limit, "room in the topic", |slice| {
            match topic.publish(&message, Some(slice)) {
                Ok(()) => Ok(Some(())),
                Err(e) if e.code() == ErrorCode::TimedOut => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn try_publish(&self, py: Python<'_>, message: &[u8]) -> PyResult<bool> {
        self.get_topic(py)?
            .try_publish(message)
            .map_err(|e| to_py(py, e))
    }

    #[pyo3(signature = (timeout = None))]
    fn end(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let topic = self.get_topic(py)?;
        let limit = self::timeout(py, timeout)?;
        py.detach(|| topic.end(limit)).map_err(|e| to_py(py, e))
    }

    fn subscribe(&self, py: Python<'_>) -> PyResult<PySubscription> {
        let topic = self.get_topic(py)?;
        let subscription = py.detach(|| topic.subscribe()).map_err(|e| to_py(py, e))?;
        Ok(PySubscription {
            subscription: Mutex::new(Some(subscription)),
        })
    }

    fn close(&self) {
        self.topic.close();
    }
}

#[pyclass(module = "shmkit._native", name = "Subscription", frozen)]
struct PySubscription {
    subscription: Mutex<Option<Subscription>>,
}

#[pymethods]
impl PySubscription {
    #[pyo3(signature = (timeout = None))]
    fn recv<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyBytes>> {
        let limit = self::timeout(py, timeout)?;
        let message = blocking(py, limit, "a message", |slice| {
            let mut slot = self.subscription.lock().unwrap_or_else(|e| e.into_inner());
            let Some(subscription) = slot.as_mut() else {
                return Err(Error::new(ErrorCode::Closed, "This subscription is closed"));
            };
            match subscription.recv(Some(slice)) {
                Ok(message) => Ok(Some(message)),
                Err(e) if e.code() == ErrorCode::TimedOut => Ok(None),
                Err(e) => Err(e),
            }
        })?;
        Ok(PyBytes::new(py, &message))
    }

    fn try_recv<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let mut slot = self.subscription.lock().unwrap_or_else(|e| e.into_inner());
        let Some(subscription) = slot.as_mut() else {
            return Err(coded(
                py,
                ShmkitError::new_err("This subscription is closed"),
                "ERR_SHM_CLOSED",
            ));
        };
        let message = subscription.try_recv().map_err(|e| to_py(py, e))?;
        Ok(message.map(|m| PyBytes::new(py, &m)))
    }

    fn close(&self) {
        self.subscription
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySegment>()?;
    m.add_class::<PyChannel>()?;
    m.add_class::<PyMap>()?;
    m.add_class::<PyTopic>()?;
    m.add_class::<PySubscription>()?;
    m.add("ShmkitError", m.py().get_type::<ShmkitError>())?;
    m.add(
        "ERROR_CODES",
        shmkit_core::error::ERROR_CODES
            .iter()
            .map(|(code, _)| *code)
            .collect::<Vec<_>>(),
    )?;
    m.add("CODECS", shmkit_core::channel::CODECS.to_vec())?;
    Ok(())
}
