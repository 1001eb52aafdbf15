//! The segment header: the first page of every segment, written by the creator and validated by
//! every opener. The byte layout is documented in `docs/LAYOUT.md`; change both together and bump
//! [`LAYOUT_VERSION`] when an existing field moves or changes meaning.
//!
//! ```text
//! offset size field
//!      0    8 magic            "shmkit\0\0", stored LAST by the creator (release): the ready flag
//!      8    4 layout_version   2
//!     12    4 header_size      bytes before the data area; a multiple of 4096, <= 65536
//!     16    8 data_size        bytes in the data area
//!     24    4 kind             1 = segment, 2 = channel, 3 = map, 4 = topic
//!     28    4 flags            bit 0: auto-unlink; other bits 0
//!     32    8 created_unix_ms  creation time
//!     40    4 creator_pid
//!     44    4 name_len         bytes of the name at offset 256
//!     48    4 checksum         FNV-1a (folded to 32 bits) of bytes 8..48, 52..64 and the name
//!     52    4 mode             the permission bits asked for at creation (for introspection)
//!     56    8 instance         random, per creation: tells apart two segments of one name
//!     64   64 header mutex     see docs/LOCKING.md
//!    128   72 attach mutex, doomed flag, overflow count (see attach.rs)
//!    200   56 placed mutexes   14 u32 slots: offset + 1 of a mutex placed in the data area, 0 = free
//!    256  256 name             the segment name, as given to create
//!    512 3584 attach table     224 slots of 16 bytes (see attach.rs)
//! ```
//!
//! SYNC POINT: the creator writes every field, then stores `magic` with `Release`; an opener
//! loads `magic` with `Acquire` and only then reads the rest. A zero magic means "still being
//! initialised" and the opener retries until its deadline.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::error::{Error, ErrorCode, Result};
use crate::name::{fnv1a64, MAX_NAME_LEN};

pub const MAGIC: u64 = u64::from_le_bytes(*b"shmkit\0\0");
/// 2: owner records are cleared on release and asynchronous waiters never acquire (0.2).
pub const LAYOUT_VERSION: u32 = 2;
/// The smallest header, and the unit every header size is a multiple of.
pub const MIN_HEADER_SIZE: usize = 4096;
/// The largest header an opener accepts (macOS on Apple silicon has 16 KiB pages).
pub const MAX_HEADER_SIZE: usize = 65536;

pub const OFF_MAGIC: usize = 0;
pub const OFF_VERSION: usize = 8;
pub const OFF_HEADER_SIZE: usize = 12;
pub const OFF_DATA_SIZE: usize = 16;
pub const OFF_KIND: usize = 24;
pub const OFF_FLAGS: usize = 28;
pub const OFF_CREATED_MS: usize = 32;
pub const OFF_CREATOR_PID: usize = 40;
pub const OFF_NAME_LEN: usize = 44;
pub const OFF_CHECKSUM: usize = 48;
pub const OFF_MODE: usize = 52;
pub const OFF_INSTANCE: usize = 56;
/// Where the header mutex lives, from the start of the segment.
pub const OFF_HEADER_MUTEX: usize = 64;
pub const OFF_NAME: usize = 256;
/// Where the offsets of placed mutexes are noted (for introspection), and how many fit.
pub const OFF_PLACED: usize = 200;
pub const PLACED_SLOTS: usize = 14;
/// Header flag: unlink the segment when its last attacher closes it or dies.
pub const FLAG_AUTO_UNLINK: u32 = 1;
const KNOWN_FLAGS: u32 = FLAG_AUTO_UNLINK;
const CHECKSUMMED: std::ops::Range<usize> = OFF_VERSION..OFF_CHECKSUM;

/// What a segment holds; channels are segments whose data area is a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Kind {
    Segment = 1,
    Channel = 2,
    Map = 3,
    Topic = 4,
}

/// A number that differs between any two segments created on this machine: time, process and a
/// per-process counter, mixed (not a secret: it only tells segments apart).
pub fn new_instance() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut bytes = [0u8; 24];
    bytes[..8].copy_from_slice(&nanos.to_le_bytes());
    bytes[8..16].copy_from_slice(&u64::from(std::process::id()).to_le_bytes());
    bytes[16..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    fnv1a64(&bytes) | 1
}

impl Kind {
    /// Every kind, in id order.
    pub const ALL: [Kind; 4] = [Kind::Segment, Kind::Channel, Kind::Map, Kind::Topic];

    pub fn from_u32(value: u32) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| *kind as u32 == value)
    }

    /// The kind's name, as users see it (`"segment"`, `"channel"`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Segment => "segment",
            Kind::Channel => "channel",
            Kind::Map => "map",
            Kind::Topic => "topic",
        }
    }
}

/// The validated, immutable facts of a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderInfo {
    pub header_size: usize,
    pub data_size: usize,
    pub kind: Kind,
    pub created_unix_ms: u64,
    pub creator_pid: u32,
    pub name: String,
    pub auto_unlink: bool,
    /// Random, chosen at creation: two segments created under one name one after the other
    /// have different instances (a process may still have the first one mapped).
    pub instance: u64,
    /// The permission bits asked for at creation (the object's own mode may since have been
    /// widened with chmod: introspection compares the two).
    pub mode: u32,
}

/// Outcome of looking at a header that may still be under construction.
#[derive(Debug)]
pub enum Inspection {
    Ready(HeaderInfo),
    /// Magic still zero: the creator has not finished (or died before finishing).
    NotReady,
}

/// Header view over the first `len` bytes of a mapping.
///
/// Every read is an atomic load at an aligned offset inside `len`, so a peer writing concurrently
/// can give us garbage values (which validation rejects) but never undefined behaviour.
pub struct RawHeader {
    base: *mut u8,
    len: usize,
}

impl RawHeader {
    /// # Safety
    /// `base` must be valid for reads and writes of `len` bytes for the lifetime of the returned
    /// value, and aligned to 8 bytes (mappings are page-aligned).
    pub unsafe fn new(base: *mut u8, len: usize) -> Self {
        RawHeader { base, len }
    }

    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        assert!(offset.is_multiple_of(4) && offset + 4 <= self.len);
        // SAFETY: in bounds and 4-aligned (asserted above; base is page-aligned); the memory is
        // valid for the lifetime of self (constructor contract); AtomicU32 tolerates concurrent
        // writes by other processes.
        unsafe { &*(self.base.add(offset) as *const AtomicU32) }
    }

    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        assert!(offset.is_multiple_of(8) && offset + 8 <= self.len);
        // SAFETY: as in u32_at, with 8-byte alignment.
        unsafe { &*(self.base.add(offset) as *const AtomicU64) }
    }

    fn name_bytes(&self, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| {
                let word = self.u32_at(OFF_NAME + (i & !3)).load(Ordering::Relaxed);
                word.to_le_bytes()[i & 3]
            })
            .collect()
    }

    fn write_name(&self, name: &[u8]) {
        for (chunk_index, chunk) in name.chunks(4).enumerate() {
            let mut word = [0u8; 4];
            word[..chunk.len()].copy_from_slice(chunk);
            self.u32_at(OFF_NAME + chunk_index * 4)
                .store(u32::from_le_bytes(word), Ordering::Relaxed);
        }
    }

    fn checksum(&self, name: &[u8]) -> u32 {
        let mut bytes = Vec::with_capacity(CHECKSUMMED.len() + 12 + name.len());
        for offset in CHECKSUMMED
            .step_by(4)
            .chain([OFF_MODE, OFF_INSTANCE, OFF_INSTANCE + 4])
        {
            bytes.extend_from_slice(&self.u32_at(offset).load(Ordering::Relaxed).to_le_bytes());
        }
        bytes.extend_from_slice(name);
        let hash = fnv1a64(&bytes);
        (hash ^ (hash >> 32)) as u32
    }

    /// Writes a fresh header into zeroed memory; the magic goes last, making it visible.
    pub fn initialize(&self, info: &HeaderInfo) {
        assert!(info.name.len() <= MAX_NAME_LEN && info.header_size <= self.len);
        self.u32_at(OFF_VERSION)
            .store(LAYOUT_VERSION, Ordering::Relaxed);
        self.u32_at(OFF_HEADER_SIZE)
            .store(info.header_size as u32, Ordering::Relaxed);
        self.u64_at(OFF_DATA_SIZE)
            .store(info.data_size as u64, Ordering::Relaxed);
        self.u32_at(OFF_KIND)
            .store(info.kind as u32, Ordering::Relaxed);
        let flags = if info.auto_unlink {
            FLAG_AUTO_UNLINK
        } else {
            0
        };
        self.u32_at(OFF_FLAGS).store(flags, Ordering::Relaxed);
        self.u64_at(OFF_CREATED_MS)
            .store(info.created_unix_ms, Ordering::Relaxed);
        self.u32_at(OFF_CREATOR_PID)
            .store(info.creator_pid, Ordering::Relaxed);
        self.u32_at(OFF_NAME_LEN)
            .store(info.name.len() as u32, Ordering::Relaxed);
        self.write_name(info.name.as_bytes());
        self.u64_at(OFF_INSTANCE)
            .store(info.instance, Ordering::Relaxed);
        self.u32_at(OFF_MODE).store(info.mode, Ordering::Relaxed);
        let checksum = self.checksum(info.name.as_bytes());
        self.u32_at(OFF_CHECKSUM).store(checksum, Ordering::Relaxed);
        // SYNC POINT (creator): publishes every store above to openers that see the magic.
        self.u64_at(OFF_MAGIC).store(MAGIC, Ordering::Release);
    }

    /// Reads and validates the header; `mapping_len` is the whole mapping.
    pub fn inspect(&self, mapping_len: usize) -> Result<Inspection> {
        // SYNC POINT (opener): pairs with the creator's release store of the magic.
        let magic = self.u64_at(OFF_MAGIC).load(Ordering::Acquire);
        if magic == 0 {
            return Ok(Inspection::NotReady);
        }
        if magic != MAGIC {
            return Err(Error::new(
                ErrorCode::NotShmkit,
                "This shared-memory object was not created by shmkit (wrong magic number)",
            ));
        }
        let version = self.u32_at(OFF_VERSION).load(Ordering::Relaxed);
        if version != LAYOUT_VERSION {
            return Err(Error::new(
                ErrorCode::VersionMismatch,
                format!(
                    "The segment uses shmkit layout version {version}; this shmkit reads version \
                     {LAYOUT_VERSION}. Use matching shmkit versions in every process"
                ),
            ));
        }
        let corrupt =
            |why: String| Error::new(ErrorCode::Corrupt, format!("Damaged header: {why}"));
        let header_size = self.u32_at(OFF_HEADER_SIZE).load(Ordering::Relaxed) as usize;
        if !(MIN_HEADER_SIZE..=MAX_HEADER_SIZE).contains(&header_size)
            || !header_size.is_multiple_of(MIN_HEADER_SIZE)
        {
            return Err(corrupt(format!("impossible header size {header_size}")));
        }
        let data_size = self.u64_at(OFF_DATA_SIZE).load(Ordering::Relaxed);
        let total = (header_size as u64).checked_add(data_size);
        if data_size == 0 || total.is_none_or(|total| total > mapping_len as u64) {
            return Err(corrupt(format!(
                "data size {data_size} does not fit the {mapping_len}-byte object (truncated?)"
            )));
        }
        let kind_raw = self.u32_at(OFF_KIND).load(Ordering::Relaxed);
        let kind = Kind::from_u32(kind_raw)
            .ok_or_else(|| corrupt(format!("unknown segment kind {kind_raw}")))?;
        let flags = self.u32_at(OFF_FLAGS).load(Ordering::Relaxed);
        if flags & !KNOWN_FLAGS != 0 {
            return Err(corrupt(format!("unknown flags {flags:#x}")));
        }
        let name_len = self.u32_at(OFF_NAME_LEN).load(Ordering::Relaxed) as usize;
        if name_len == 0 || name_len > MAX_NAME_LEN {
            return Err(corrupt(format!("impossible name length {name_len}")));
        }
        let name = self.name_bytes(name_len);
        let stored_checksum = self.u32_at(OFF_CHECKSUM).load(Ordering::Relaxed);
        if stored_checksum != self.checksum(&name) {
            return Err(corrupt("checksum mismatch".into()));
        }
        let name = String::from_utf8(name).map_err(|_| corrupt("name is not UTF-8".into()))?;
        Ok(Inspection::Ready(HeaderInfo {
            header_size,
            data_size: data_size as usize,
            kind,
            created_unix_ms: self.u64_at(OFF_CREATED_MS).load(Ordering::Relaxed),
            creator_pid: self.u32_at(OFF_CREATOR_PID).load(Ordering::Relaxed),
            name,
            auto_unlink: flags & FLAG_AUTO_UNLINK != 0,
            instance: self.u64_at(OFF_INSTANCE).load(Ordering::Relaxed),
            mode: self.u32_at(OFF_MODE).load(Ordering::Relaxed) & 0o7777,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HeaderInfo {
        HeaderInfo {
            header_size: 4096,
            data_size: 100,
            kind: Kind::Segment,
            created_unix_ms: 1_700_000_000_000,
            creator_pid: 42,
            name: "jobs".into(),
            auto_unlink: true,
            instance: 0x1234_5678_9abc_def0,
            mode: 0o600,
        }
    }

    fn with_header<R>(f: impl FnOnce(&RawHeader) -> R) -> R {
        let mut memory = vec![0u64; 8192 / 8];
        let base = memory.as_mut_ptr() as *mut u8;
        // SAFETY: `memory` outlives the header and is 8-aligned, 8192 bytes long.
        let header = unsafe { RawHeader::new(base, 8192) };
        f(&header)
    }

    #[test]
    fn round_trips() {
        with_header(|header| {
            assert!(matches!(header.inspect(8192), Ok(Inspection::NotReady)));
            header.initialize(&sample());
            match header.inspect(8192).unwrap() {
                Inspection::Ready(info) => assert_eq!(info, sample()),
                Inspection::NotReady => panic!("not ready"),
            }
        })
    }

    #[test]
    fn refuses_truncation_version_and_damage() {
        with_header(|header| {
            header.initialize(&sample());
            let err = header.inspect(4096 + 99).unwrap_err();
            assert_eq!(err.code(), ErrorCode::Corrupt);

            header.u32_at(OFF_CREATOR_PID).store(7, Ordering::Relaxed);
            assert_eq!(header.inspect(8192).unwrap_err().code(), ErrorCode::Corrupt);

            header.u32_at(OFF_VERSION).store(99, Ordering::Relaxed);
            assert_eq!(
                header.inspect(8192).unwrap_err().code(),
                ErrorCode::VersionMismatch
            );

            header
                .u64_at(OFF_MAGIC)
                .store(0xdead_beef, Ordering::Relaxed);
            assert_eq!(
                header.inspect(8192).unwrap_err().code(),
                ErrorCode::NotShmkit
            );
        })
    }
}
