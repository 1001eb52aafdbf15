//! Named segments: a validated header page followed by the page-aligned data area.
//!
//! ```text
//! mapping:  [ header (header_size bytes, >= 1 page) | data area (data_size bytes) ]
//!             ^ magic, sizes, header mutex, name      ^ every user offset is relative to here
//! ```

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::attach::{AttachTable, Attached, Attacher};
use crate::error::{Error, ErrorCode, Result};
use crate::header::{self, HeaderInfo, Inspection, Kind, RawHeader};
use crate::mutex::{MutexCell, MutexStats, MUTEX_ALIGN, MUTEX_SIZE};
use crate::name;
use crate::platform::{self, WaitOutcome};
use crate::shm::{self, Mapping};

/// The largest data area accepted (16 TiB): beyond any machine's shared memory, below the limits
/// of JavaScript numbers and ArrayBuffers.
pub const MAX_DATA_SIZE: usize = 1 << 44;
/// Default permission bits of a new segment (owner read/write).
pub const DEFAULT_MODE: u32 = 0o600;
/// How long `open` waits for a concurrent creator to finish writing the header.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Options for creating a segment.
#[derive(Debug, Clone, Copy)]
pub struct CreateOptions {
    /// Bytes in the data area.
    pub size: usize,
    /// Permission bits, applied exactly (the umask does not narrow them).
    pub mode: u32,
    pub kind: Kind,
    /// Unlink the segment when the last process that has it open closes it or dies.
    pub auto_unlink: bool,
    /// Allocate every page at creation (Linux), so a too-small /dev/shm fails here with `ENOSPC`
    /// instead of a SIGBUS on first write. Costs the page allocation up front (about 350 µs per
    /// MiB on a small VM); without it pages are allocated on first touch.
    pub reserve: bool,
}

impl CreateOptions {
    pub fn new(size: usize) -> Self {
        CreateOptions {
            size,
            mode: DEFAULT_MODE,
            kind: Kind::Segment,
            auto_unlink: false,
            reserve: true,
        }
    }
}

/// Whose segments an open accepts. A name in /dev/shm can be taken by any user first (the
/// squatting attack on shared names), so by default only the calling user's segments are opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Owners {
    /// Only segments owned by this process's effective user (the default).
    #[default]
    Me,
    /// Segments owned by any of these user ids.
    Uids(Vec<u32>),
    /// Any owner: for segments shared across users on purpose.
    Any,
}

/// How to open a segment.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// How long to wait for a creator that is still initialising the segment.
    pub ready_timeout: Duration,
    /// How long to wait for a segment that does not exist yet (`None`: `NotFound` at once).
    pub wait: Option<Duration>,
    /// Whose segments to accept (checked on the descriptor mapped, with `fstat`).
    pub owners: Owners,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            ready_timeout: DEFAULT_READY_TIMEOUT,
            wait: None,
            owners: Owners::Me,
        }
    }
}

/// A mapped, validated segment, recorded in the segment's attach table. [`detach`] forgets the
/// attachment and, for a segment created with `auto_unlink` whose last live attacher this was,
/// unlinks it; dropping forgets the attachment too (if `detach` did not) and unmaps, but never
/// unlinks.
///
/// [`detach`]: Segment::detach
pub struct Segment {
    mapping: Mapping,
    info: HeaderInfo,
    os_id: String,
    attachment: std::sync::Mutex<Option<Attached>>,
}

/// What [`Segment::inspect`] reports about a segment, without attaching to it.
#[derive(Debug, Clone)]
pub struct SegmentReport {
    pub info: HeaderInfo,
    pub attachers: Vec<Attacher>,
    /// Attachments that found no free slot in the table.
    pub overflow: u32,
    /// A closer decided to remove it (its name is gone or about to be).
    pub doomed: bool,
    pub header_mutex: MutexStats,
    /// Mutexes placed in the data area (noted when first used; a channel's side locks are among
    /// them), by offset: a wedged lock shows here.
    pub placed_mutexes: Vec<(usize, MutexStats)>,
    /// The first bytes of the data area as 32-bit words (channels keep their indices there; a
    /// topic's words include its subscriber table).
    pub data_words: Vec<u32>,
    /// For a topic: its counters and subscribers, each with its liveness.
    pub topic: Option<crate::topic::TopicStats>,
    /// For a channel: its producers and consumers, each with its liveness.
    pub channel_peers: Option<crate::peers::Peers>,
    /// The OS object's owner and permission bits (`None` where the OS has none).
    pub owner: Option<u32>,
    pub mode: Option<u32>,
}

impl Segment {
    /// Creates segment `name`; `EEXIST` if it exists.
    pub fn create(name: &str, options: CreateOptions) -> Result<Segment> {
        name::validate(name)?;
        check_size(options.size)?;
        if options.mode > 0o777 {
            return Err(Error::new(
                ErrorCode::OutOfRange,
                format!("The mode {:#o} has bits beyond 0o777", options.mode),
            ));
        }
        let header_size = platform::page_size().max(header::MIN_HEADER_SIZE);
        let total = header_size + options.size;
        let mapping = Mapping::create(&name::os_id(name), total, options.mode, options.reserve)
            .map_err(|err| match err.code() {
                ErrorCode::AlreadyExists => Error::new(
                    ErrorCode::AlreadyExists,
                    format!("Segment {name:?} already exists: open it, or unlink it first"),
                ),
                _ => err,
            })?;
        let info = HeaderInfo {
            header_size,
            data_size: options.size,
            kind: options.kind,
            created_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            creator_pid: std::process::id(),
            name: name.to_owned(),
            auto_unlink: options.auto_unlink,
            instance: header::new_instance(),
            mode: options.mode,
        };
        // Attach before publishing the header: nobody (not even a garbage collector) can see an
        // auto-unlink segment with no attacher. A failed attach removes the half-made segment.
        let os_id = name::os_id(name);
        let segment = match Segment::attach(mapping, info, os_id.clone()) {
            Ok(segment) => segment,
            Err(err) => {
                let _ = shm::unlink(&os_id);
                return Err(err);
            }
        };
        // SAFETY: the mapping is page-aligned, `total` >= header_size bytes long, and lives in
        // `segment`, which outlives this temporary view.
        let raw = unsafe { RawHeader::new(segment.mapping.as_ptr(), header_size) };
        raw.initialize(&segment.info);
        Ok(segment)
    }

    /// Records this mapping in the attach table.
    fn attach(mapping: Mapping, info: HeaderInfo, os_id: String) -> Result<Segment> {
        // SAFETY: the mapping starts with a header page of at least MIN_HEADER_SIZE bytes and
        // outlives the table view (both live in the returned Segment or die here).
        let table = unsafe { AttachTable::new(mapping.as_ptr()) };
        let attached = table.attach(info.auto_unlink)?;
        Ok(Segment {
            mapping,
            info,
            os_id,
            attachment: std::sync::Mutex::new(Some(attached)),
        })
    }

    fn attach_table(&self) -> AttachTable {
        // SAFETY: the header page is mapped as long as `self`.
        unsafe { AttachTable::new(self.mapping.as_ptr()) }
    }

    /// Forgets this mapping's attachment now (idempotent; dropping does it otherwise). For an
    /// `auto_unlink` segment whose last live attacher this was, removes the name. Returns whether
    /// it removed it. The memory stays mapped until the `Segment` is dropped.
    pub fn detach(&self) -> Result<bool> {
        let Some(attached) = self
            .attachment
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return Ok(false);
        };
        let os_id = &self.os_id;
        self.attach_table()
            .detach(&attached, self.info.auto_unlink, || shm::unlink(os_id))
    }

    /// The attach-table slot this mapping holds: `None` once detached, or if it found the table
    /// full (it is then only counted in [`attach_overflow`](Self::attach_overflow)).
    pub fn attach_slot(&self) -> Option<usize> {
        match *self.attachment.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(Attached::Slot(slot)) => Some(slot),
            _ => None,
        }
    }

    /// Who holds attach slot `slot` now, with liveness (`None`: free).
    pub fn attacher_at(&self, slot: usize) -> Option<Attacher> {
        self.attach_table().attacher_at(slot)
    }

    /// Mappings that found the attach table full (never decreases).
    pub fn attach_overflow(&self) -> u32 {
        self.attach_table().overflow()
    }

    /// Forgets this mapping's attachment now, as a drop does: never unlinks, even with
    /// `auto_unlink` (idempotent). For owners that must act once the slot is free (a channel
    /// wakes its peers).
    pub fn release_attachment(&self) {
        let attached = self
            .attachment
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(attached) = attached {
            // Errors cannot be reported here; a leftover slot is reaped once we are dead.
            let _ = self.attach_table().detach(&attached, false, || Ok(()));
        }
    }

    /// Reaps dead attachers of segment `name` without attaching and, for an `auto_unlink`
    /// segment with no live attacher left, removes it. Returns whether it was removed.
    pub fn collect(name: &str) -> Result<bool> {
        let (mapping, info) = Self::open_mapping(name, DEFAULT_READY_TIMEOUT, None)?;
        // SAFETY: as in `attach`.
        let table = unsafe { AttachTable::new(mapping.as_ptr()) };
        let os_id = name::os_id(name);
        table.collect(info.auto_unlink, || shm::unlink(&os_id))
    }

    /// Describes segment `name` without attaching to it.
    pub fn inspect(name: &str) -> Result<SegmentReport> {
        let (mapping, info) = Self::open_mapping(name, DEFAULT_READY_TIMEOUT, None)?;
        // SAFETY: as in `attach`.
        let table = unsafe { AttachTable::new(mapping.as_ptr()) };
        // SAFETY: the header mutex cell lies in the header page, 8-aligned.
        let mutex = unsafe { MutexCell::at(mapping.as_ptr().add(header::OFF_HEADER_MUTEX)) };
        let data = mapping.as_ptr().wrapping_add(info.header_size) as *const AtomicU32;
        let mut words = 128;
        if info.kind == Kind::Topic && info.data_size >= 128 * 4 {
            // A topic's subscriber table follows its control block: read it too.
            // SAFETY: word `SLOTS / 4` < 128 <= data_size / 4 lies inside the data area.
            let slots =
                unsafe { (*data.add(crate::topic::layout::SLOTS / 4)).load(Ordering::Relaxed) };
            words = crate::topic::words_for_stats(slots);
        }
        let words = (info.data_size / 4).min(words);
        let data_words: Vec<u32> = (0..words)
            // SAFETY: i < data_size / 4 keeps each word inside the validated data area; the
            // data area is page-aligned.
            .map(|i| unsafe { (*data.add(i)).load(Ordering::Relaxed) })
            .collect();
        let data = mapping.as_ptr().wrapping_add(info.header_size);
        let placed_mutexes = placed_offsets(mapping.as_ptr(), info.data_size)
            .into_iter()
            .map(|offset| {
                // SAFETY: `placed_offsets` only returns aligned offsets whose whole cell lies in
                // the validated data area.
                let cell = unsafe { MutexCell::at(data.wrapping_add(offset)) };
                (offset, cell.stats())
            })
            .collect();
        Ok(SegmentReport {
            attachers: table.attachers(),
            overflow: table.overflow(),
            doomed: table.doomed(),
            header_mutex: mutex.stats(),
            placed_mutexes,
            topic: (info.kind == Kind::Topic)
                .then(|| crate::topic::stats_from_words(&data_words))
                .flatten(),
            // The role words lie within the 128 words read above.
            channel_peers: (info.kind == Kind::Channel).then(|| {
                crate::peers::peers_from(
                    |offset| data_words.get(offset / 4).copied(),
                    |slot| table.attacher_at(slot),
                    table.overflow(),
                )
            }),
            data_words,
            owner: mapping.owner(),
            mode: mapping.mode(),
            info,
        })
    }

    /// Opens segment `name` (owned by this user), waiting up to `ready_timeout` for a concurrent
    /// creator to finish.
    pub fn open(name: &str, ready_timeout: Duration) -> Result<Segment> {
        Self::open_with(
            name,
            &OpenOptions {
                ready_timeout,
                ..OpenOptions::default()
            },
        )
    }

    /// Like [`open`](Self::open), but a segment that does not exist yet is waited for, up to
    /// `wait` (`None`: `NotFound` at once): for a process that may start before its creator.
    pub fn open_waiting(
        name: &str,
        ready_timeout: Duration,
        wait: Option<Duration>,
    ) -> Result<Segment> {
        Self::open_with(
            name,
            &OpenOptions {
                ready_timeout,
                wait,
                owners: Owners::Me,
            },
        )
    }

    /// Opens segment `name` as `options` say: waiting for it to appear, and refusing one whose
    /// owner is not accepted (`ForeignOwner`), checked on the descriptor mapped.
    pub fn open_with(name: &str, options: &OpenOptions) -> Result<Segment> {
        let appear_by = options.wait.map(|w| platform::deadline_after(Some(w)));
        let mut pause = Duration::from_micros(100);
        loop {
            match Self::open_attached(name, options) {
                Err(err)
                    if err.code() == ErrorCode::NotFound
                        && appear_by.is_some_and(|d| d.is_none_or(|d| Instant::now() < d)) =>
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(10));
                }
                other => return other,
            }
        }
    }

    fn open_attached(name: &str, options: &OpenOptions) -> Result<Segment> {
        let deadline = platform::deadline_after(Some(options.ready_timeout));
        loop {
            let (mapping, info) =
                Self::open_mapping(name, options.ready_timeout, Some(&options.owners))?;
            match Segment::attach(mapping, info, name::os_id(name)) {
                // A closer is removing it: the next open finds the name gone, or a new segment.
                Err(err)
                    if err.code() == ErrorCode::NotFound
                        && deadline.is_none_or(|d| Instant::now() < d) =>
                {
                    std::thread::sleep(Duration::from_millis(1))
                }
                other => return other,
            }
        }
    }

    /// Maps and validates segment `name` without attaching.
    /// With `owners`, a mapping of an owner they do not accept is refused before anything in it
    /// is read.
    fn open_mapping(
        name: &str,
        ready_timeout: Duration,
        owners: Option<&Owners>,
    ) -> Result<(Mapping, HeaderInfo)> {
        name::validate(name)?;
        let os_id = name::os_id(name);
        let deadline = platform::deadline_after(Some(ready_timeout));
        loop {
            match Self::try_open(name, &os_id, owners)? {
                Some(opened) => return Ok(opened),
                None if deadline.is_some_and(|d| Instant::now() >= d) => {
                    return Err(Error::new(
                        ErrorCode::NotReady,
                        format!(
                            "Segment {name:?} exists but its creator never finished initialising \
                             it (it may have died while creating it): unlink it and create it again"
                        ),
                    ))
                }
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }

    /// One attempt: `Ok(None)` while the creator is still writing the header.
    fn try_open(
        name: &str,
        os_id: &str,
        owners: Option<&Owners>,
    ) -> Result<Option<(Mapping, HeaderInfo)>> {
        let mapping = match Mapping::open(os_id) {
            Ok(mapping) => mapping,
            // A zero-length object cannot be mapped: the creator has not sized it yet.
            Err(err) if err.code() == ErrorCode::Os(libc::EINVAL) => return Ok(None),
            Err(err) if err.code() == ErrorCode::NotFound => {
                return Err(Error::new(
                    ErrorCode::NotFound,
                    format!("No segment named {name:?}: create it first"),
                ))
            }
            Err(err) if err.code() == ErrorCode::PermissionDenied => {
                return Err(Error::new(
                    ErrorCode::PermissionDenied,
                    format!(
                    "Permission denied opening segment {name:?}: its mode does not let this user \
                         read and write it (the creator chooses the mode, 0o600 by default)"
                ),
                ))
            }
            Err(err) => return Err(err),
        };
        if let Some(owners) = owners {
            check_owner(name, &mapping, owners)?;
        }
        if mapping.len() < header::MIN_HEADER_SIZE {
            return Err(Error::new(
                ErrorCode::NotShmkit,
                format!(
                    "{name:?} is too small ({} bytes) to be a shmkit segment",
                    mapping.len()
                ),
            ));
        }
        // SAFETY: the mapping is page-aligned and at least MIN_HEADER_SIZE bytes long; the view
        // lives only while `mapping` does.
        let raw = unsafe { RawHeader::new(mapping.as_ptr(), header::MIN_HEADER_SIZE) };
        let info = match raw.inspect(mapping.len())? {
            Inspection::NotReady => return Ok(None),
            Inspection::Ready(info) => info,
        };
        if info.name != name {
            return Err(Error::new(
                ErrorCode::NotShmkit,
                format!(
                    "The object behind {name:?} belongs to segment {:?}",
                    info.name
                ),
            ));
        }
        Ok(Some((mapping, info)))
    }

    /// Opens `name`, or creates it if it does not exist. Exactly one of any number of concurrent
    /// callers creates it; the others wait for its header. Returns whether this call created it.
    pub fn open_or_create(
        name: &str,
        options: CreateOptions,
        ready_timeout: Duration,
    ) -> Result<(Segment, bool)> {
        let open = OpenOptions {
            ready_timeout,
            ..OpenOptions::default()
        };
        Self::open_or_create_with(name, options, &open)
    }

    /// [`open_or_create`](Self::open_or_create) with open options: an existing segment of an
    /// owner `open` does not accept is refused (`ForeignOwner`), never quietly adopted.
    pub fn open_or_create_with(
        name: &str,
        options: CreateOptions,
        open: &OpenOptions,
    ) -> Result<(Segment, bool)> {
        const ATTEMPTS: usize = 100;
        for _ in 0..ATTEMPTS {
            match Self::create(name, options) {
                Ok(segment) => return Ok((segment, true)),
                Err(err) if err.code() == ErrorCode::AlreadyExists => {}
                Err(err) => return Err(err),
            }
            let existing = OpenOptions {
                wait: None,
                ..open.clone()
            };
            match Self::open_with(name, &existing) {
                Ok(segment) if segment.info.kind != options.kind => {
                    return Err(Error::new(
                        ErrorCode::WrongKind,
                        format!(
                            "{name:?} exists as a {}, not a {}",
                            segment.info.kind.name(),
                            options.kind.name()
                        ),
                    ))
                }
                Ok(segment) if segment.info.data_size != options.size => {
                    return Err(Error::new(
                        ErrorCode::SizeMismatch,
                        format!(
                            "The {} {name:?} exists with a {}-byte data area, not the {} asked for",
                            options.kind.name(),
                            segment.info.data_size,
                            options.size
                        ),
                    ))
                }
                Ok(segment) => return Ok((segment, false)),
                // Unlinked between our create and open: try again.
                Err(err) if err.code() == ErrorCode::NotFound => continue,
                Err(err) => return Err(err),
            }
        }
        Err(Error::new(
            ErrorCode::Os(libc::EAGAIN),
            format!("Segment {name:?} kept being created and removed; gave up"),
        ))
    }

    /// Names of the shmkit segments on this machine (from the OS's shared-memory directory;
    /// objects with the shmkit prefix whose name is not a valid segment name are skipped).
    /// Linux only: other systems have no way to list POSIX shared-memory objects.
    pub fn list() -> Result<Vec<String>> {
        list_names()
    }

    /// Removes segment `name`, of any kind. Processes that have it open keep their mapping.
    pub fn unlink(name: &str) -> Result<()> {
        Self::unlink_kind(name, None)
    }

    /// Removes `name` if it is of `kind` (`None`: any): one of another kind is refused with
    /// `WrongKind`. A header that cannot be read (damaged, not ready, not shmkit's) does not
    /// prevent the removal.
    pub fn unlink_kind(name: &str, kind: Option<Kind>) -> Result<()> {
        name::validate(name)?;
        if let Some(expected) = kind {
            if let Ok(Some((_, info))) = Self::try_open(name, &name::os_id(name), None) {
                if info.kind != expected {
                    return Err(Error::new(
                        ErrorCode::WrongKind,
                        format!(
                            "{name:?} is a {}, not a {}: remove it as a {0}",
                            info.kind.name(),
                            expected.name()
                        ),
                    ));
                }
            }
        }
        shm::unlink(&name::os_id(name)).map_err(|err| match err.code() {
            ErrorCode::NotFound => {
                Error::new(ErrorCode::NotFound, format!("No segment named {name:?}"))
            }
            _ => err,
        })
    }

    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// The user id owning the OS object (`None` where the OS has none: Windows).
    pub fn owner(&self) -> Option<u32> {
        self.mapping.owner()
    }

    /// The OS object's permission bits (`None` on Windows).
    pub fn mode(&self) -> Option<u32> {
        self.mapping.mode()
    }

    pub fn info(&self) -> &HeaderInfo {
        &self.info
    }

    /// Start of the data area (page-aligned).
    pub fn data_ptr(&self) -> *mut u8 {
        // SAFETY: header_size was validated to be within the mapping.
        unsafe { self.mapping.as_ptr().add(self.info.header_size) }
    }

    /// Bytes in the data area.
    pub fn data_len(&self) -> usize {
        self.info.data_size
    }

    /// The mutex in the header.
    pub fn header_mutex(&self) -> &MutexCell {
        // SAFETY: OFF_HEADER_MUTEX + MUTEX_SIZE lies inside the header page, 8-aligned, and the
        // mapping lives as long as `self`.
        unsafe { MutexCell::at(self.mapping.as_ptr().add(header::OFF_HEADER_MUTEX)) }
    }

    /// A mutex placed at `offset` in the data area.
    pub fn mutex_at(&self, offset: usize) -> Result<&MutexCell> {
        self.check_range(offset, MUTEX_SIZE, MUTEX_ALIGN, "mutex")?;
        // SAFETY: checked in bounds and aligned just above; lives as long as `self`.
        Ok(unsafe { MutexCell::at(self.data_ptr().add(offset)) })
    }

    /// Notes in the header that a mutex is placed at `offset`, so introspection can show it
    /// (`inspect`, `shmkit inspect`). Idempotent; beyond the header's 14 slots, nothing is noted.
    pub fn note_placed_mutex(&self, offset: usize) -> Result<()> {
        self.check_range(offset, MUTEX_SIZE, MUTEX_ALIGN, "mutex")?;
        let Ok(value) = u32::try_from(offset + 1) else {
            return Ok(()); // beyond 4 GiB: not noted
        };
        for slot in 0..header::PLACED_SLOTS {
            let word = placed_slot(self.mapping.as_ptr(), slot);
            match word.compare_exchange(0, value, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(seen) if seen == value => return Ok(()),
                Err(_) => {}
            }
        }
        Ok(())
    }

    /// Offsets of the mutexes noted with [`note_placed_mutex`](Self::note_placed_mutex).
    pub fn placed_mutexes(&self) -> Vec<usize> {
        placed_offsets(self.mapping.as_ptr(), self.data_len())
    }

    /// The 32-bit word at `offset` in the data area.
    pub fn word_at(&self, offset: usize) -> Result<&AtomicU32> {
        self.check_range(offset, 4, 4, "32-bit word")?;
        // SAFETY: in bounds and 4-aligned (checked above), valid as long as `self`.
        Ok(unsafe { &*(self.data_ptr().add(offset) as *const AtomicU32) })
    }

    /// Sleeps while the word at `offset` equals `expected`, like `Atomics.wait` but across processes.
    pub fn wait(
        &self,
        offset: usize,
        expected: u32,
        timeout: Option<Duration>,
    ) -> Result<WaitOutcome> {
        Ok(platform::wait(self.word_at(offset)?, expected, timeout))
    }

    /// Like [`wait`](Self::wait), for a waiter thread serving an asynchronous caller: sleeps in
    /// slices of at most 50 ms and gives up with `Cancelled` once `cancel` is set.
    pub fn wait_on_behalf(
        &self,
        offset: usize,
        expected: u32,
        timeout: Option<Duration>,
        cancel: &AtomicBool,
    ) -> Result<WaitOutcome> {
        const SLICE: Duration = Duration::from_millis(50);
        let word = self.word_at(offset)?;
        let deadline = platform::deadline_after(timeout);
        loop {
            if cancel.load(Ordering::Acquire) {
                return Err(Error::new(ErrorCode::Cancelled, "The wait was cancelled"));
            }
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if remaining == Some(Duration::ZERO) {
                return Ok(WaitOutcome::TimedOut);
            }
            let slice = remaining.map_or(SLICE, |r| r.min(SLICE));
            match platform::wait(word, expected, Some(slice)) {
                WaitOutcome::TimedOut => continue,
                outcome => return Ok(outcome),
            }
        }
    }

    /// Wakes up to `count` waiters on the word at `offset`, in any process.
    pub fn notify(&self, offset: usize, count: u32) -> Result<usize> {
        Ok(platform::wake(self.word_at(offset)?, count))
    }

    fn check_range(&self, offset: usize, len: usize, align: usize, what: &str) -> Result<()> {
        if !offset.is_multiple_of(align) {
            return Err(Error::new(
                ErrorCode::OutOfRange,
                format!("A {what} needs an offset that is a multiple of {align}, not {offset}"),
            ));
        }
        if offset
            .checked_add(len)
            .is_none_or(|end| end > self.data_len())
        {
            return Err(Error::new(
                ErrorCode::OutOfRange,
                format!(
                    "A {what} at offset {offset} ({len} bytes) does not fit the {}-byte segment",
                    self.data_len()
                ),
            ));
        }
        Ok(())
    }
}

/// Refuses a mapping whose owner `owners` does not accept.
fn check_owner(name: &str, mapping: &Mapping, owners: &Owners) -> Result<()> {
    let (Some(owner), Some(me)) = (mapping.owner(), platform::effective_uid()) else {
        return Ok(()); // no Unix owners here (Windows)
    };
    let accepted = match owners {
        Owners::Any => true,
        Owners::Me => owner == me,
        Owners::Uids(uids) => uids.contains(&owner),
    };
    if accepted {
        return Ok(());
    }
    let expected = match owners {
        Owners::Uids(uids) => format!("uid {uids:?}"),
        _ => format!("this user (uid {me})"),
    };
    Err(Error::new(
        ErrorCode::ForeignOwner,
        format!(
            "{name:?} is owned by uid {owner}{}, not by {expected}: another user may have created \
             it first to read or feed what you exchange. If that user is expected, open it with \
             the owner option (owner: {owner}, or 'any')",
            platform::user_name(owner).map_or(String::new(), |n| format!(" ({n})"))
        ),
    ))
}

/// Slot `slot` of the placed-mutex notes in the header at `base`.
fn placed_slot<'a>(base: *mut u8, slot: usize) -> &'a AtomicU32 {
    assert!(slot < header::PLACED_SLOTS);
    // SAFETY: OFF_PLACED + 4 * slot < OFF_NAME lies in the header page, 4-aligned; callers hold
    // the mapping for as long as they use the word.
    unsafe { &*(base.add(header::OFF_PLACED + 4 * slot) as *const AtomicU32) }
}

/// The noted placed mutexes of the header at `base`, keeping only offsets whose whole cell lies
/// aligned in a `data_len`-byte data area (the notes are shared memory: untrusted).
fn placed_offsets(base: *mut u8, data_len: usize) -> Vec<usize> {
    let mut offsets: Vec<usize> = (0..header::PLACED_SLOTS)
        .map(|slot| placed_slot(base, slot).load(Ordering::Acquire) as usize)
        .filter(|&value| value != 0)
        .map(|value| value - 1)
        .filter(|&offset| {
            offset.is_multiple_of(MUTEX_ALIGN)
                && offset
                    .checked_add(MUTEX_SIZE)
                    .is_some_and(|end| end <= data_len)
        })
        .collect();
    offsets.sort_unstable();
    offsets.dedup();
    offsets
}

fn check_size(size: usize) -> Result<()> {
    if size == 0 || size > MAX_DATA_SIZE {
        return Err(Error::new(
            ErrorCode::OutOfRange,
            format!("The size must be from 1 to {MAX_DATA_SIZE} bytes, not {size}"),
        ));
    }
    Ok(())
}

impl Drop for Segment {
    /// A segment dropped without `detach` (in Node: garbage-collected without `close()`) forgets
    /// its attachment but never unlinks, even with `auto_unlink`: nothing is removed behind the
    /// user's back. Such a segment is removed by the next close or `collect` that finds no live
    /// attacher.
    fn drop(&mut self) {
        self.release_attachment();
    }
}

fn list_names() -> Result<Vec<String>> {
    let names = platform::list_shm_names(name::OS_PREFIX).map_err(|e| {
        let errno = e.raw_os_error().unwrap_or(libc::EIO);
        if errno == libc::ENOSYS {
            Error::new(
                ErrorCode::Os(libc::ENOSYS),
                "Listing segments needs Linux: this system offers no way to enumerate shared-memory objects",
            )
        } else {
            Error::os(errno, "Cannot list the shared-memory directory")
        }
    })?;
    Ok(names
        .into_iter()
        .filter(|name| name::validate(name).is_ok())
        .collect())
}
