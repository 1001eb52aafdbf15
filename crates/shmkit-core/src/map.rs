//! `SharedMap`: a key-value map in shared memory (docs/MAP.md). Any number of processes read it
//! without a lock and never see a torn value; writers take the map's robust mutex, and a writer
//! killed at any point leaves the map consistent: every mutation is a transaction with an undo
//! log in the segment, rolled back by the next writer (or a reader that finds the writer dead).
//!
//! ```text
//! data offset  field
//!      0       control block: magic (written last), version, sizes, codec, policy, counters
//!     80       free-list heads (32 size classes)
//!    208       write lock (a mutex cell)
//!    272       undo log: count, then LOG_CAP records { offset u32, old u32 }
//!  [log end]   change ring: CHANGES records { entry u32, seq u32 } (for watchers)
//!              index A, index B: `buckets` u32 each (entry + 1; 0 empty; TOMB removed)
//!              entries: `capacity` × 64 bytes
//!              heap: keys and values, in blocks of a segregated-fit allocator
//! ```
//!
//! An entry has two slots; `seq & 1` names the active one. A writer fills the inactive slot and
//! then bumps `seq` (one store publishes the new version); a reader reads `seq`, the active slot,
//! the bytes it points to, then `seq` again, and retries if it changed. A writer never modifies
//! what an active slot points to: values are copied on write into fresh heap blocks, and a block
//! is freed only after the slot that pointed to it stopped being active.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, ErrorCode, Result};
use crate::header::Kind;
use crate::mutex::{LockOptions, MutexCell, MUTEX_SIZE};
use crate::platform;
use crate::segment::{CreateOptions, OpenOptions, Segment};

/// Byte offsets of the map's control block and of its regions' fixed parts (docs/MAP.md). The
/// binding exports them: JavaScript reads the map with the same protocol.
pub mod layout {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 4;
    pub const CAPACITY: usize = 8;
    pub const BUCKETS: usize = 12;
    pub const HEAP_SIZE: usize = 16;
    pub const CODEC: usize = 20;
    pub const EVICT: usize = 24;
    /// Which index is active (`gen & 1`); bumped by a rebuild.
    pub const INDEX_GEN: usize = 32;
    pub const COUNT: usize = 36;
    pub const BYTES_USED: usize = 40;
    pub const TOMBSTONES: usize = 44;
    pub const FREE_ENTRY: usize = 48;
    pub const CLOCK_HAND: usize = 52;
    pub const EVICTIONS: usize = 56;
    pub const EXPIRATIONS: usize = 60;
    /// Bumped after every committed change; watchers sleep on it.
    pub const EVENTS: usize = 64;
    /// 1 while some watcher may sleep on `EVENTS`.
    pub const WATCHERS: usize = 68;
    /// Next position in the change ring (free-running).
    pub const CHANGE_POS: usize = 72;
    /// Bitmap of non-empty free lists.
    pub const FREE_BITMAP: usize = 76;
    /// 32 free-list heads (heap offset + 1; 0 empty), one per size class.
    pub const FREE_HEADS: usize = 80;
    pub const LOCK: usize = 208;
    pub const LOG_COUNT: usize = 272;
    pub const LOG: usize = 280;
    /// Records of the undo log, and of the change ring.
    pub const LOG_CAP: usize = 2048;
    pub const CHANGES: usize = 1024;
    pub const CHANGE_RING: usize = LOG + LOG_CAP * 8;
    pub const INDEX_A: usize = CHANGE_RING + CHANGES * 8;
    /// Bytes of an entry, and of its fields.
    pub const ENTRY_SIZE: usize = 64;
    pub const E_SEQ: usize = 0;
    pub const E_LIVE: usize = 4;
    pub const E_REF: usize = 8;
    pub const E_NEXT_FREE: usize = 12;
    pub const E_SLOTS: usize = 16;
    pub const SLOT_SIZE: usize = 24;
    pub const S_HASH: usize = 0;
    pub const S_BLOCK: usize = 4;
    pub const S_KEY_LEN: usize = 8;
    pub const S_VALUE_LEN: usize = 12;
    pub const S_EXPIRES_LO: usize = 16;
    pub const S_EXPIRES_HI: usize = 20;
    /// A removed bucket (probing goes on past it).
    pub const TOMB: u32 = u32::MAX;
    /// Bytes of a heap block's header: size (bit 0: used), then the previous block's size.
    pub const BLOCK_HEADER: usize = 8;
}

use layout::*;

/// "smap", the creator's last write.
pub const MAP_MAGIC: u32 = 0x7061_6d73;
pub const MAP_VERSION: u32 = 1;
/// The longest key, in UTF-8 bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Entries and heap bytes a map may have.
pub const MAX_CAPACITY: usize = 1 << 24;
pub const MIN_HEAP: usize = 4096;
pub const MAX_HEAP: usize = (1 << 32) - 4096;
/// Heap blocks and their offsets are multiples of this.
const ALIGN: usize = 8;
/// A reader retries a lookup this many times while writers keep changing it before it checks
/// whether the writer died mid-write (and recovers).
const READ_ATTEMPTS: u32 = 1000;
/// Rebuild the index once tombstones exceed this fraction of the buckets (1/8).
const TOMBSTONE_SHIFT: u32 = 3;

/// The default heap of a map of `capacity` entries: 256 bytes an entry, at least 1 MiB.
pub fn default_memory(capacity: usize) -> usize {
    (capacity.saturating_mul(256)).clamp(1 << 20, 1 << 30)
}

/// The largest value of a map with a `heap`-byte heap: a quarter of it (so one value cannot
/// starve the others), at most 256 MiB.
pub fn max_value_bytes(heap: usize) -> usize {
    (heap / 4).min(256 << 20)
}

/// What to do when a new key does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evict {
    /// Refuse it with `MapFull`.
    None = 0,
    /// Evict entries not used recently (CLOCK, an approximation of LRU).
    Lru = 1,
}

/// How to create a map.
#[derive(Debug, Clone, Copy)]
pub struct MapOptions {
    /// Entries the map holds at most.
    pub capacity: usize,
    /// Heap bytes for keys and values.
    pub memory: usize,
    /// The codec id recorded for bindings (`channel::CODECS`).
    pub codec: u32,
    pub evict: Evict,
    pub mode: u32,
    pub auto_unlink: bool,
}

impl MapOptions {
    pub fn new(capacity: usize) -> Self {
        MapOptions {
            capacity,
            memory: default_memory(capacity),
            codec: crate::channel::CODEC_JSON,
            evict: Evict::None,
            mode: crate::segment::DEFAULT_MODE,
            auto_unlink: false,
        }
    }
}

/// A snapshot of a map's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapStats {
    pub entries: u32,
    pub capacity: u32,
    pub bytes_used: u32,
    pub heap_size: u32,
    pub evictions: u32,
    pub expirations: u32,
    pub tombstones: u32,
}

/// The geometry of a map, validated once at open.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    capacity: usize,
    buckets: usize,
    heap: usize,
    index_a: usize,
    index_b: usize,
    entries: usize,
    heap_base: usize,
}

impl Geometry {
    fn new(capacity: usize, buckets: usize, heap: usize) -> Geometry {
        let index_b = INDEX_A + buckets * 4;
        let entries = (index_b + buckets * 4).next_multiple_of(64);
        let heap_base = (entries + capacity * ENTRY_SIZE).next_multiple_of(64);
        Geometry {
            capacity,
            buckets,
            heap,
            index_a: INDEX_A,
            index_b,
            entries,
            heap_base,
        }
    }

    fn data_size(&self) -> usize {
        self.heap_base + self.heap
    }

    fn for_capacity(capacity: usize, heap: usize) -> Geometry {
        let buckets = (capacity * 2).next_power_of_two().max(16);
        Geometry::new(capacity, buckets, heap.next_multiple_of(ALIGN))
    }
}

/// A shared map, mapped into this process.
pub struct SharedMap {
    segment: std::sync::Arc<Segment>,
    geometry: Geometry,
}

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::Corrupt, format!("Damaged map: {what}"))
}

/// FNV-1a, 32 bits, of a key's UTF-8 bytes: the hash every implementation uses (32-bit
/// arithmetic only, so JavaScript computes it with `Math.imul`).
pub fn key_hash(key: &[u8]) -> u32 {
    key.iter().fold(0x811c_9dc5u32, |hash, &byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One slot of an entry, as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    hash: u32,
    block: u32,
    key_len: u32,
    value_len: u32,
    expires: u64,
}

impl SharedMap {
    /// Creates map `name`; `EEXIST` if it exists.
    pub fn create(name: &str, options: MapOptions) -> Result<SharedMap> {
        check_options(&options)?;
        let geometry = Geometry::for_capacity(options.capacity, options.memory);
        let segment = Segment::create(
            name,
            CreateOptions {
                size: geometry.data_size(),
                mode: options.mode,
                kind: Kind::Map,
                auto_unlink: options.auto_unlink,
                reserve: true,
            },
        )?;
        let map = SharedMap {
            segment: std::sync::Arc::new(segment),
            geometry,
        };
        map.initialise(&options);
        Ok(map)
    }

    /// Opens map `name` as `options` say (owner, wait).
    pub fn open(name: &str, options: &OpenOptions) -> Result<SharedMap> {
        let segment = Segment::open_with(name, options)?;
        Self::over(segment, options.ready_timeout)
    }

    /// Opens `name`, creating it if needed; `SizeMismatch` for a map of another geometry.
    pub fn open_or_create(
        name: &str,
        options: MapOptions,
        open: &OpenOptions,
    ) -> Result<(SharedMap, bool)> {
        check_options(&options)?;
        let geometry = Geometry::for_capacity(options.capacity, options.memory);
        let create = CreateOptions {
            size: geometry.data_size(),
            mode: options.mode,
            kind: Kind::Map,
            auto_unlink: options.auto_unlink,
            reserve: true,
        };
        let (segment, created) = Segment::open_or_create_with(name, create, open)?;
        if created {
            let map = SharedMap {
                segment: std::sync::Arc::new(segment),
                geometry,
            };
            map.initialise(&options);
            return Ok((map, true));
        }
        Ok((Self::over(segment, open.ready_timeout)?, false))
    }

    /// Removes map `name` (`WrongKind` if it is not a map).
    pub fn unlink(name: &str) -> Result<()> {
        Segment::unlink_kind(name, Some(Kind::Map))
    }

    fn initialise(&self, options: &MapOptions) {
        let g = self.geometry;
        self.word(VERSION).store(MAP_VERSION, Ordering::Relaxed);
        self.word(CAPACITY)
            .store(g.capacity as u32, Ordering::Relaxed);
        self.word(BUCKETS)
            .store(g.buckets as u32, Ordering::Relaxed);
        self.word(HEAP_SIZE).store(g.heap as u32, Ordering::Relaxed);
        self.word(CODEC).store(options.codec, Ordering::Relaxed);
        self.word(EVICT)
            .store(options.evict as u32, Ordering::Relaxed);
        // Entries on the free list, in order.
        for e in 0..g.capacity {
            let next = if e + 1 < g.capacity { e as u32 + 2 } else { 0 };
            self.entry_word(e, E_NEXT_FREE)
                .store(next, Ordering::Relaxed);
        }
        self.word(FREE_ENTRY).store(1, Ordering::Relaxed);
        // The heap: an 8-byte used sentinel at 0 (so no block ever has offset 0, which slots use
        // for "no block"), one free block, and an 8-byte used sentinel at the end: the sentinels
        // stop coalescing at both ends.
        let end = g.heap - BLOCK_HEADER;
        let free = end - BLOCK_HEADER;
        self.heap_word(0)
            .store(BLOCK_HEADER as u32 | 1, Ordering::Relaxed);
        self.heap_word(4).store(0, Ordering::Relaxed);
        self.heap_word(BLOCK_HEADER)
            .store(free as u32, Ordering::Relaxed);
        self.heap_word(BLOCK_HEADER + 4)
            .store(BLOCK_HEADER as u32, Ordering::Relaxed);
        self.heap_word(BLOCK_HEADER + 8).store(0, Ordering::Relaxed);
        self.heap_word(BLOCK_HEADER + 12)
            .store(0, Ordering::Relaxed);
        self.heap_word(end)
            .store(BLOCK_HEADER as u32 | 1, Ordering::Relaxed);
        self.heap_word(end + 4)
            .store(free as u32, Ordering::Relaxed);
        let class = size_class(free);
        self.word(FREE_HEADS + class * 4)
            .store(BLOCK_HEADER as u32 + 1, Ordering::Relaxed);
        self.word(FREE_BITMAP).store(1 << class, Ordering::Relaxed);
        self.word(BYTES_USED)
            .store(2 * BLOCK_HEADER as u32, Ordering::Relaxed);
        self.segment
            .note_placed_mutex(LOCK)
            .expect("the lock lies in every map's data area");
        // SYNC POINT (creator): openers that see the magic see everything above.
        self.word(MAGIC).store(MAP_MAGIC, Ordering::Release);
    }

    /// A map over an opened segment, once its creator finished; the geometry is validated.
    fn over(segment: Segment, ready_timeout: Duration) -> Result<SharedMap> {
        let name = segment.name().to_owned();
        if segment.info().kind != Kind::Map {
            return Err(Error::new(
                ErrorCode::WrongKind,
                format!("{name:?} is a {}, not a map", segment.info().kind.name()),
            ));
        }
        if segment.data_len() < INDEX_A {
            return Err(corrupt("too small for a map"));
        }
        let word = |offset: usize| segment.word_at(offset).expect("inside the control block");
        let deadline = platform::deadline_after(Some(ready_timeout));
        while word(MAGIC).load(Ordering::Acquire) != MAP_MAGIC {
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Err(Error::new(
                    ErrorCode::NotReady,
                    format!("Map {name:?} was never initialised"),
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let version = word(VERSION).load(Ordering::Relaxed);
        if version != MAP_VERSION {
            return Err(Error::new(
                ErrorCode::VersionMismatch,
                format!("Map {name:?} uses map layout {version}; this reads {MAP_VERSION}"),
            ));
        }
        let capacity = word(CAPACITY).load(Ordering::Relaxed) as usize;
        let buckets = word(BUCKETS).load(Ordering::Relaxed) as usize;
        let heap = word(HEAP_SIZE).load(Ordering::Relaxed) as usize;
        let geometry = Geometry::new(capacity, buckets, heap);
        let plausible = (1..=MAX_CAPACITY).contains(&capacity)
            && buckets.is_power_of_two()
            && buckets >= capacity * 2
            && (MIN_HEAP..=MAX_HEAP).contains(&heap)
            && heap.is_multiple_of(ALIGN)
            && geometry.data_size() <= segment.data_len();
        if !plausible {
            return Err(corrupt(format!(
                "impossible geometry: {capacity} entries, {buckets} buckets, {heap}-byte heap"
            )));
        }
        Ok(SharedMap {
            segment: std::sync::Arc::new(segment),
            geometry,
        })
    }

    pub fn name(&self) -> &str {
        self.segment.name()
    }

    /// The codec id recorded at creation.
    pub fn codec(&self) -> u32 {
        self.word(CODEC).load(Ordering::Relaxed)
    }

    pub fn evict_policy(&self) -> Evict {
        if self.word(EVICT).load(Ordering::Relaxed) == Evict::Lru as u32 {
            Evict::Lru
        } else {
            Evict::None
        }
    }

    pub fn segment(&self) -> &std::sync::Arc<Segment> {
        &self.segment
    }

    /// Live entries (a snapshot).
    pub fn len(&self) -> usize {
        self.word(COUNT).load(Ordering::Acquire) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> MapStats {
        let w = |o| self.word(o).load(Ordering::Relaxed);
        MapStats {
            entries: w(COUNT),
            capacity: self.geometry.capacity as u32,
            bytes_used: w(BYTES_USED),
            heap_size: self.geometry.heap as u32,
            evictions: w(EVICTIONS),
            expirations: w(EXPIRATIONS),
            tombstones: w(TOMBSTONES),
        }
    }

    // ----------------------------------------------------------------------------- reading

    /// The value of `key`, if present and not expired. Takes no lock and never sees a torn
    /// value: see the module docs.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.find(key)?.map(|found| found.value))
    }

    /// Whether `key` is present (and not expired).
    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        Ok(self.find(key)?.is_some())
    }

    fn find(&self, key: &[u8]) -> Result<Option<Found>> {
        if key.len() > MAX_KEY_BYTES {
            return Ok(None);
        }
        let hash = key_hash(key);
        for attempt in 0..READ_ATTEMPTS * 2 {
            if attempt == READ_ATTEMPTS {
                // Writers kept changing what we read: if one died mid-write, repair the map.
                self.recover_if_abandoned()?;
            }
            match self.try_find(key, hash)? {
                Lookup::Found(found) => {
                    if found.expires != 0 && found.expires <= now_ms() {
                        return Ok(None);
                    }
                    return Ok(Some(found));
                }
                Lookup::Absent => return Ok(None),
                Lookup::Retry => std::hint::spin_loop(),
            }
        }
        Err(corrupt("lookups keep changing under readers"))
    }

    /// One lookup attempt over a consistent snapshot, or `Retry`.
    fn try_find(&self, key: &[u8], hash: u32) -> Result<Lookup> {
        let g = self.geometry;
        let gen = self.word(INDEX_GEN).load(Ordering::Acquire);
        let index = self.index_base(gen);
        let mask = g.buckets - 1;
        for probe in 0..g.buckets {
            let bucket = self
                .word(index + ((hash as usize + probe) & mask) * 4)
                .load(Ordering::Acquire);
            if bucket == 0 {
                break;
            }
            if bucket == TOMB {
                continue;
            }
            let entry = bucket as usize - 1;
            if entry >= g.capacity {
                return Err(corrupt(format!("bucket names entry {entry}")));
            }
            let seq = self.entry_word(entry, E_SEQ).load(Ordering::Acquire);
            let slot = self.read_slot(entry, seq & 1);
            if slot.hash != hash || slot.key_len as usize != key.len() {
                if self.entry_word(entry, E_SEQ).load(Ordering::Acquire) != seq {
                    return Ok(Lookup::Retry);
                }
                continue;
            }
            let Some(bytes) = self.block_bytes(slot) else {
                if self.entry_word(entry, E_SEQ).load(Ordering::Acquire) != seq {
                    return Ok(Lookup::Retry);
                }
                return Err(corrupt(format!("entry {entry} points outside the heap")));
            };
            let same_key = bytes[..key.len()] == *key;
            let value = bytes[key.len()..].to_vec();
            // SYNC POINT (read): the slot and its bytes are consistent if `seq` did not move.
            std::sync::atomic::fence(Ordering::Acquire);
            if self.entry_word(entry, E_SEQ).load(Ordering::Relaxed) != seq {
                return Ok(Lookup::Retry);
            }
            if !same_key {
                continue;
            }
            if self.word(INDEX_GEN).load(Ordering::Acquire) != gen {
                return Ok(Lookup::Retry);
            }
            if self.evict_policy() == Evict::Lru {
                let mark = self.entry_word(entry, E_REF);
                if mark.load(Ordering::Relaxed) == 0 {
                    mark.store(1, Ordering::Relaxed);
                }
            }
            return Ok(Lookup::Found(Found {
                value,
                expires: slot.expires,
            }));
        }
        if self.word(INDEX_GEN).load(Ordering::Acquire) != gen {
            return Ok(Lookup::Retry);
        }
        Ok(Lookup::Absent)
    }

    /// The key and value bytes a slot points to, copied out; `None` if they lie outside the heap.
    fn block_bytes(&self, slot: Slot) -> Option<Vec<u8>> {
        let len = slot.key_len as usize + slot.value_len as usize;
        let start = slot.block as usize + BLOCK_HEADER;
        let end = start.checked_add(len)?;
        if !(slot.block as usize).is_multiple_of(ALIGN) || end > self.geometry.heap {
            return None;
        }
        if end.next_multiple_of(4) > self.geometry.heap {
            return None;
        }
        // Other processes may be writing these bytes right now (a reader can follow a slot
        // that a writer is retiring): they are read as the same relaxed 4-byte atomic words
        // every writer stores, never interpreted here, and the caller discards them unless the
        // entry's `seq` proves they were stable. Plain byte copies would be a data race.
        let mut bytes = Vec::with_capacity(len.next_multiple_of(4));
        let mut offset = start;
        while offset < end {
            let word = self.heap_word(offset).load(Ordering::Relaxed);
            bytes.extend_from_slice(&word.to_ne_bytes());
            offset += 4;
        }
        bytes.truncate(len);
        Some(bytes)
    }

    /// Every live, unexpired entry: `(key, value)`, each read consistently (a snapshot per
    /// entry, weakly consistent as a whole, like iterating a `Map` that is being modified).
    pub fn entries(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let now = now_ms();
        let mut out = Vec::new();
        for entry in 0..self.geometry.capacity {
            for _ in 0..READ_ATTEMPTS {
                let seq = self.entry_word(entry, E_SEQ).load(Ordering::Acquire);
                let live = self.entry_word(entry, E_LIVE).load(Ordering::Acquire) != 0;
                let slot = self.read_slot(entry, seq & 1);
                let bytes = if live { self.block_bytes(slot) } else { None };
                std::sync::atomic::fence(Ordering::Acquire);
                if self.entry_word(entry, E_SEQ).load(Ordering::Relaxed) != seq {
                    continue;
                }
                if let Some(mut bytes) = bytes.filter(|_| slot.expires == 0 || slot.expires > now) {
                    let value = bytes.split_off(slot.key_len as usize);
                    out.push((bytes, value));
                }
                break;
            }
        }
        Ok(out)
    }

    // ----------------------------------------------------------------------------- writing

    /// Sets `key` to `value`, expiring after `ttl` if given. `MapFull` when it does not fit and
    /// the map does not evict.
    pub fn set(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<()> {
        self.check_key_value(key, value.len())?;
        let expires = ttl.map_or(0, |t| now_ms().saturating_add(t.as_millis() as u64).max(1));
        self.write_locked(|tx| tx.set(key, value, expires))
    }

    /// Removes `key`; whether it was there.
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        if key.len() > MAX_KEY_BYTES {
            return Ok(false);
        }
        self.write_locked(|tx| tx.delete(key))
    }

    /// Removes every entry, one transaction each (a writer killed in the middle leaves the
    /// entries not yet removed).
    pub fn clear(&self) -> Result<()> {
        for entry in 0..self.geometry.capacity {
            self.write_locked(|tx| tx.remove_entry_if_live(entry))?;
        }
        Ok(())
    }

    /// Atomically replaces the value of `key` with `f(current)`: `None` from `f` deletes it.
    /// Runs `f` holding the map's lock: keep it short.
    pub fn update(
        &self,
        key: &[u8],
        ttl: Option<Duration>,
        f: impl FnOnce(Option<&[u8]>) -> Option<Vec<u8>>,
    ) -> Result<()> {
        self.check_key_value(key, 0)?;
        self.write_locked(|tx| {
            let current = tx.map.find(key)?.map(|found| found.value);
            match f(current.as_deref()) {
                Some(next) => {
                    tx.map.check_key_value(key, next.len())?;
                    let expires =
                        ttl.map_or(0, |t| now_ms().saturating_add(t.as_millis() as u64).max(1));
                    tx.set(key, &next, expires)
                }
                None => tx.delete(key).map(|_| ()),
            }
        })
    }

    /// For a binding that holds the map's lock itself (through the lock cell at `layout::LOCK`):
    /// the operations of `write_locked` without taking the lock. The caller must hold it and must
    /// have called [`recover`](Self::recover) if it took the lock over from a dead writer.
    pub fn set_locked(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<()> {
        self.check_key_value(key, value.len())?;
        let expires = ttl.map_or(0, |t| now_ms().saturating_add(t.as_millis() as u64).max(1));
        self.transaction(|tx| tx.set(key, value, expires))
    }

    /// See [`set_locked`](Self::set_locked).
    pub fn delete_locked(&self, key: &[u8]) -> Result<bool> {
        if key.len() > MAX_KEY_BYTES {
            return Ok(false);
        }
        self.transaction(|tx| tx.delete(key))
    }

    /// The map's write lock (for bindings that hold it across their own code, like `update`).
    pub fn lock_cell(&self) -> &MutexCell {
        self.segment
            .mutex_at(LOCK)
            .expect("the lock lies in every map's data area")
    }

    fn check_key_value(&self, key: &[u8], value_len: usize) -> Result<()> {
        if key.len() > MAX_KEY_BYTES {
            return Err(Error::new(
                ErrorCode::OutOfRange,
                format!(
                    "A key of {} bytes is longer than the {MAX_KEY_BYTES} allowed",
                    key.len()
                ),
            ));
        }
        let limit = max_value_bytes(self.geometry.heap);
        if value_len > limit {
            return Err(Error::new(
                ErrorCode::OutOfRange,
                format!(
                    "A {value_len}-byte value is larger than the {limit} bytes this map allows \
                     (a quarter of its memory)"
                ),
            ));
        }
        Ok(())
    }

    /// Runs `f` as one transaction holding the write lock (taken over, and the map repaired, if
    /// its holder died).
    fn write_locked<R>(&self, f: impl FnOnce(&mut Txn) -> Result<R>) -> Result<R> {
        let me = platform::current_thread();
        let acquired = self.lock_cell().lock_with(&me, LockOptions::default())?;
        if acquired.owner_died {
            self.recover();
        }
        let result = self.transaction(f);
        let _ = self.lock_cell().unlock(&me);
        result
    }

    /// Runs `f` as one transaction: its writes are undone if it fails (or the writer dies).
    fn transaction<R>(&self, f: impl FnOnce(&mut Txn) -> Result<R>) -> Result<R> {
        let mut tx = Txn {
            map: self,
            logged: 0,
            changes: Vec::new(),
        };
        match f(&mut tx) {
            Ok(result) => {
                tx.commit();
                Ok(result)
            }
            Err(err) => {
                self.rollback();
                Err(err)
            }
        }
    }

    /// Repairs the map after a writer died mid-transaction: undoes its logged writes, newest
    /// first. Sequence words only ever move forward (a reader that read the rolled-back version
    /// must see a change). Call holding the write lock.
    pub fn recover(&self) {
        self.rollback();
        self.bump_events();
    }

    fn rollback(&self) {
        let count = (self.word(LOG_COUNT).load(Ordering::Acquire) as usize).min(LOG_CAP);
        for record in (0..count).rev() {
            let raw_offset = self.word(LOG + record * 8).load(Ordering::Relaxed);
            let old = self.word(LOG + record * 8 + 4).load(Ordering::Relaxed);
            let monotonic = raw_offset & 1 != 0;
            let offset = (raw_offset & !3) as usize;
            let in_log_or_lock = (LOCK..CHANGE_RING).contains(&offset);
            if offset + 4 > self.segment.data_len() || in_log_or_lock {
                continue; // a damaged record: nothing of ours is ever logged there
            }
            let word = self.word(offset);
            if monotonic {
                // The next value with the old one's parity, strictly ahead of the current one.
                let current = word.load(Ordering::Relaxed);
                if current != old {
                    let step = if (current ^ old) & 1 != 0 { 1 } else { 2 };
                    word.store(current.wrapping_add(step), Ordering::Release);
                }
            } else {
                word.store(old, Ordering::Release);
            }
        }
        self.word(LOG_COUNT).store(0, Ordering::Release);
    }

    /// For readers that kept seeing changes: if the writer holding the lock is dead, take the
    /// lock over and repair the map (readers never wait for a live writer).
    fn recover_if_abandoned(&self) -> Result<()> {
        let me = platform::current_thread();
        if let Some(acquired) = self.lock_cell().try_lock(&me) {
            if acquired.owner_died {
                self.recover();
            }
            let _ = self.lock_cell().unlock(&me);
        }
        Ok(())
    }

    fn bump_events(&self) {
        self.word(EVENTS).fetch_add(1, Ordering::SeqCst);
        if self.word(WATCHERS).load(Ordering::SeqCst) != 0 {
            platform::wake(self.word(EVENTS), u32::MAX);
        }
    }

    // ----------------------------------------------------------------------------- memory

    fn word(&self, offset: usize) -> &AtomicU32 {
        debug_assert!(offset.is_multiple_of(4));
        assert!(offset + 4 <= self.segment.data_len());
        // SAFETY: in bounds of the data area (asserted) and 4-aligned (the data area is
        // page-aligned and every offset used is a multiple of 4); the mapping lives as long as
        // `self`; all access is atomic.
        unsafe { &*(self.segment.data_ptr().add(offset) as *const AtomicU32) }
    }

    fn entry_word(&self, entry: usize, field: usize) -> &AtomicU32 {
        debug_assert!(entry < self.geometry.capacity);
        self.word(self.geometry.entries + entry * ENTRY_SIZE + field)
    }

    fn slot_offset(&self, entry: usize, slot: u32) -> usize {
        self.geometry.entries + entry * ENTRY_SIZE + E_SLOTS + (slot as usize & 1) * SLOT_SIZE
    }

    fn read_slot(&self, entry: usize, slot: u32) -> Slot {
        let base = self.slot_offset(entry, slot);
        let w = |field: usize| self.word(base + field).load(Ordering::Relaxed);
        Slot {
            hash: w(S_HASH),
            block: w(S_BLOCK),
            key_len: w(S_KEY_LEN),
            value_len: w(S_VALUE_LEN),
            expires: u64::from(w(S_EXPIRES_LO)) | (u64::from(w(S_EXPIRES_HI)) << 32),
        }
    }

    fn heap_word(&self, offset: usize) -> &AtomicU32 {
        assert!(offset + 4 <= self.geometry.heap);
        self.word(self.geometry.heap_base + offset)
    }

    fn index_base(&self, gen: u32) -> usize {
        if gen & 1 == 0 {
            self.geometry.index_a
        } else {
            self.geometry.index_b
        }
    }
}

fn check_options(options: &MapOptions) -> Result<()> {
    if !(1..=MAX_CAPACITY).contains(&options.capacity) {
        return Err(Error::new(
            ErrorCode::OutOfRange,
            format!(
                "The capacity must be from 1 to {MAX_CAPACITY} entries, not {}",
                options.capacity
            ),
        ));
    }
    if !(MIN_HEAP..=MAX_HEAP).contains(&options.memory) {
        return Err(Error::new(
            ErrorCode::OutOfRange,
            format!(
                "The memory must be from {MIN_HEAP} to {MAX_HEAP} bytes, not {}",
                options.memory
            ),
        ));
    }
    Ok(())
}

/// The size class of a free block of `size` bytes: floor(log2(size)).
fn size_class(size: usize) -> usize {
    (usize::BITS - 1 - size.leading_zeros()) as usize
}

struct Found {
    value: Vec<u8>,
    expires: u64,
}

enum Lookup {
    Found(Found),
    Absent,
    Retry,
}

/// A write transaction: every shared word it changes is logged first (offset and old value), so
/// `rollback` (a failure, or the next writer after a crash) can undo it.
struct Txn<'a> {
    map: &'a SharedMap,
    logged: usize,
    /// Entries changed, for the change ring (watchers).
    changes: Vec<(u32, u32)>,
}

impl Txn<'_> {
    /// Logs `offset`'s current value, then stores `value` there.
    fn write(&mut self, offset: usize, value: u32) -> Result<()> {
        self.log(offset, false)?;
        self.map.word(offset).store(value, Ordering::Release);
        Ok(())
    }

    /// For sequence words: rollback moves them forward, never back.
    fn bump(&mut self, offset: usize) -> Result<u32> {
        self.log(offset, true)?;
        let word = self.map.word(offset);
        let next = word.load(Ordering::Relaxed).wrapping_add(1);
        // SYNC POINT (publish): a slot's fields and bytes are written before its seq moves.
        word.store(next, Ordering::Release);
        Ok(next)
    }

    fn log(&mut self, offset: usize, monotonic: bool) -> Result<()> {
        if self.logged >= LOG_CAP {
            return Err(Error::new(
                ErrorCode::Os(libc::EAGAIN),
                "The map's undo log is full: the operation is too large for one transaction",
            ));
        }
        let old = self.map.word(offset).load(Ordering::Relaxed);
        let record = LOG + self.logged * 8;
        self.map
            .word(record)
            .store(offset as u32 | u32::from(monotonic), Ordering::Relaxed);
        self.map.word(record + 4).store(old, Ordering::Relaxed);
        self.logged += 1;
        // SYNC POINT (log): the record is complete before the count covers it.
        self.map
            .word(LOG_COUNT)
            .store(self.logged as u32, Ordering::Release);
        Ok(())
    }

    fn read(&self, offset: usize) -> u32 {
        self.map.word(offset).load(Ordering::Relaxed)
    }

    fn commit(mut self) {
        self.checkpoint();
    }

    /// Commits what the transaction did so far (the map must be consistent at this point): the
    /// undo log is emptied and the changes go to the change ring; the transaction goes on.
    fn checkpoint(&mut self) {
        let map = self.map;
        map.word(LOG_COUNT).store(0, Ordering::Release);
        self.logged = 0;
        let mut changed = false;
        for (entry, seq) in self.changes.drain(..) {
            let position = map.word(CHANGE_POS).load(Ordering::Relaxed);
            let record = CHANGE_RING + (position as usize % CHANGES) * 8;
            map.word(record).store(entry, Ordering::Relaxed);
            map.word(record + 4).store(seq, Ordering::Relaxed);
            map.word(CHANGE_POS)
                .store(position.wrapping_add(1), Ordering::Release);
            changed = true;
        }
        if changed {
            map.bump_events();
        }
    }

    // ----------------------------------------------------------------------------- operations

    fn set(&mut self, key: &[u8], value: &[u8], expires: u64) -> Result<()> {
        let hash = key_hash(key);
        let existing = self.find_bucket(key, hash)?;
        let need = BLOCK_HEADER + key.len() + value.len();
        let block = match self.allocate(need)? {
            Some(block) => block,
            None => {
                self.make_room(need, existing.map(|(_, e)| e))?;
                self.allocate(need)?.ok_or_else(|| full(self.map))?
            }
        };
        self.copy_into(block, key, value)?;
        let slot = Slot {
            hash,
            block: block as u32,
            key_len: key.len() as u32,
            value_len: value.len() as u32,
            expires,
        };
        match existing {
            Some((_, entry)) => {
                let old = self.publish(entry, slot)?;
                self.free(old.block as usize)?;
            }
            None => {
                let entry = match self.take_free_entry()? {
                    Some(entry) => entry,
                    None => {
                        self.evict_one(None)?;
                        self.take_free_entry()?.ok_or_else(|| full(self.map))?
                    }
                };
                self.publish(entry, slot)?;
                self.write(self.map.entry_offset(entry, E_LIVE), 1)?;
                self.write(self.map.entry_offset(entry, E_REF), 1)?;
                self.insert_bucket(hash, entry)?;
                let count = self.read(COUNT);
                self.write(COUNT, count + 1)?;
            }
        }
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<bool> {
        let hash = key_hash(key);
        match self.find_bucket(key, hash)? {
            Some((bucket, entry)) => {
                self.remove(bucket, entry)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn remove_entry_if_live(&mut self, entry: usize) -> Result<()> {
        if self.read(self.map.entry_offset(entry, E_LIVE)) == 0 {
            return Ok(());
        }
        let seq = self.read(self.map.entry_offset(entry, E_SEQ));
        let slot = self.map.read_slot(entry, seq & 1);
        let key = self
            .map
            .block_bytes(slot)
            .ok_or_else(|| corrupt(format!("entry {entry} points outside the heap")))?;
        let key = &key[..slot.key_len as usize];
        if let Some((bucket, found)) = self.find_bucket(key, slot.hash)? {
            if found == entry {
                return self.remove(bucket, entry);
            }
        }
        Err(corrupt(format!("live entry {entry} is not in the index")))
    }

    /// Removes the live `entry` found at index `bucket`: tombstone, empty slot, free its block
    /// and its entry.
    fn remove(&mut self, bucket: usize, entry: usize) -> Result<()> {
        self.write(bucket, TOMB)?;
        let tombstones = self.read(TOMBSTONES);
        self.write(TOMBSTONES, tombstones + 1)?;
        let empty = Slot {
            hash: 0,
            block: 0,
            key_len: 0,
            value_len: 0,
            expires: 0,
        };
        let old = self.publish(entry, empty)?;
        self.write(self.map.entry_offset(entry, E_LIVE), 0)?;
        self.free(old.block as usize)?;
        let head = self.read(FREE_ENTRY);
        self.write(self.map.entry_offset(entry, E_NEXT_FREE), head)?;
        self.write(FREE_ENTRY, entry as u32 + 1)?;
        let count = self.read(COUNT);
        self.write(COUNT, count.saturating_sub(1))?;
        if tombstones + 1 > (self.map.geometry.buckets as u32) >> TOMBSTONE_SHIFT {
            self.rebuild_index()?;
        }
        Ok(())
    }

    /// Fills the inactive slot of `entry` with `slot`, then makes it active; returns the slot
    /// that was active.
    fn publish(&mut self, entry: usize, slot: Slot) -> Result<Slot> {
        let seq_offset = self.map.entry_offset(entry, E_SEQ);
        let seq = self.read(seq_offset);
        let old = self.map.read_slot(entry, seq & 1);
        let base = self.map.slot_offset(entry, seq.wrapping_add(1));
        self.write(base + S_HASH, slot.hash)?;
        self.write(base + S_BLOCK, slot.block)?;
        self.write(base + S_KEY_LEN, slot.key_len)?;
        self.write(base + S_VALUE_LEN, slot.value_len)?;
        self.write(base + S_EXPIRES_LO, slot.expires as u32)?;
        self.write(base + S_EXPIRES_HI, (slot.expires >> 32) as u32)?;
        let next = self.bump(seq_offset)?;
        self.changes.push((entry as u32, next));
        Ok(old)
    }

    /// The bucket offset and entry holding `key`, under the write lock (no retries needed).
    fn find_bucket(&self, key: &[u8], hash: u32) -> Result<Option<(usize, usize)>> {
        let g = self.map.geometry;
        let index = self.map.index_base(self.read(INDEX_GEN));
        let mask = g.buckets - 1;
        for probe in 0..g.buckets {
            let offset = index + ((hash as usize + probe) & mask) * 4;
            let bucket = self.read(offset);
            if bucket == 0 {
                return Ok(None);
            }
            if bucket == TOMB {
                continue;
            }
            let entry = bucket as usize - 1;
            if entry >= g.capacity {
                return Err(corrupt(format!("bucket names entry {entry}")));
            }
            let seq = self.read(self.map.entry_offset(entry, E_SEQ));
            let slot = self.map.read_slot(entry, seq & 1);
            if slot.hash != hash || slot.key_len as usize != key.len() {
                continue;
            }
            let bytes = self
                .map
                .block_bytes(slot)
                .ok_or_else(|| corrupt(format!("entry {entry} points outside the heap")))?;
            if bytes[..key.len()] == *key {
                return Ok(Some((offset, entry)));
            }
        }
        Ok(None)
    }

    /// Puts `entry` in the first empty or removed bucket of `hash`'s probe sequence.
    fn insert_bucket(&mut self, hash: u32, entry: usize) -> Result<()> {
        let g = self.map.geometry;
        let index = self.map.index_base(self.read(INDEX_GEN));
        let mask = g.buckets - 1;
        for probe in 0..g.buckets {
            let offset = index + ((hash as usize + probe) & mask) * 4;
            let bucket = self.read(offset);
            if bucket == 0 || bucket == TOMB {
                if bucket == TOMB {
                    let tombstones = self.read(TOMBSTONES);
                    self.write(TOMBSTONES, tombstones.saturating_sub(1))?;
                }
                return self.write(offset, entry as u32 + 1);
            }
        }
        Err(corrupt("the index has no free bucket"))
    }

    /// Rebuilds the inactive index from the live entries and makes it active (one logged flip:
    /// a crash before it leaves the active index as it was).
    fn rebuild_index(&mut self) -> Result<()> {
        let g = self.map.geometry;
        let gen = self.read(INDEX_GEN);
        let target = self.map.index_base(gen.wrapping_add(1));
        for bucket in 0..g.buckets {
            self.map
                .word(target + bucket * 4)
                .store(0, Ordering::Relaxed);
        }
        let mask = g.buckets - 1;
        for entry in 0..g.capacity {
            if self.read(self.map.entry_offset(entry, E_LIVE)) == 0 {
                continue;
            }
            let seq = self.read(self.map.entry_offset(entry, E_SEQ));
            let hash = self.map.read_slot(entry, seq & 1).hash;
            let placed = (0..g.buckets).find_map(|probe| {
                let offset = target + ((hash as usize + probe) & mask) * 4;
                (self.map.word(offset).load(Ordering::Relaxed) == 0).then_some(offset)
            });
            let offset = placed.ok_or_else(|| corrupt("more live entries than buckets"))?;
            self.map
                .word(offset)
                .store(entry as u32 + 1, Ordering::Relaxed);
        }
        // SYNC POINT (index): the new index is complete before readers can switch to it.
        self.bump(INDEX_GEN)?;
        self.write(TOMBSTONES, 0)
    }

    fn take_free_entry(&mut self) -> Result<Option<usize>> {
        let head = self.read(FREE_ENTRY);
        if head == 0 {
            return Ok(None);
        }
        let entry = head as usize - 1;
        if entry >= self.map.geometry.capacity {
            return Err(corrupt(format!("the free entry list names entry {entry}")));
        }
        let next = self.read(self.map.entry_offset(entry, E_NEXT_FREE));
        self.write(FREE_ENTRY, next)?;
        Ok(Some(entry))
    }

    /// Evicts (LRU maps) or reports full, until `need` heap bytes can be allocated. Expired
    /// entries go first, whatever the policy. Called before the transaction wrote anything, each
    /// eviction is committed on its own: a big value may need more evictions than one undo log
    /// holds, and the map is consistent between two of them.
    fn make_room(&mut self, need: usize, keep: Option<usize>) -> Result<()> {
        let on_its_own = self.logged == 0;
        for _ in 0..self.map.geometry.capacity * 2 + 2 {
            if self.fits(need)? {
                return Ok(());
            }
            if !self.evict_one(keep)? {
                break;
            }
            if on_its_own {
                self.checkpoint();
            }
        }
        if self.fits(need)? {
            Ok(())
        } else {
            Err(full(self.map))
        }
    }

    /// Removes one entry: an expired one, or (LRU maps) one the CLOCK hand finds unused. Returns
    /// false when there is nothing it may remove.
    fn evict_one(&mut self, keep: Option<usize>) -> Result<bool> {
        let g = self.map.geometry;
        let lru = self.map.evict_policy() == Evict::Lru;
        let now = now_ms();
        let mut hand = self.read(CLOCK_HAND) as usize % g.capacity;
        // Two sweeps: the first clears reference bits, the second finds one cleared.
        for _ in 0..g.capacity * 2 {
            let entry = hand;
            hand = (hand + 1) % g.capacity;
            if Some(entry) == keep || self.read(self.map.entry_offset(entry, E_LIVE)) == 0 {
                continue;
            }
            let seq = self.read(self.map.entry_offset(entry, E_SEQ));
            let slot = self.map.read_slot(entry, seq & 1);
            let expired = slot.expires != 0 && slot.expires <= now;
            let referenced = self.read(self.map.entry_offset(entry, E_REF)) != 0;
            if !expired && (!lru || referenced) {
                if lru {
                    self.map
                        .entry_word(entry, E_REF)
                        .store(0, Ordering::Relaxed);
                }
                continue;
            }
            self.write(CLOCK_HAND, hand as u32)?;
            self.remove_entry_if_live(entry)?;
            let counter = if expired { EXPIRATIONS } else { EVICTIONS };
            let value = self.read(counter);
            self.write(counter, value.wrapping_add(1))?;
            return Ok(true);
        }
        Ok(false)
    }

    fn verify(&mut self) -> Result<MapCheck> {
        let g = self.map.geometry;
        // The heap, block by block.
        let (mut offset, mut previous, mut used, mut free, mut free_blocks) = (0, 0, 0, 0, 0);
        let mut free_set = std::collections::HashSet::new();
        while offset < g.heap {
            let size = self.block_size(offset)?;
            let prev = self.map.heap_word(offset + 4).load(Ordering::Relaxed) as usize;
            if prev != previous {
                return Err(corrupt(format!(
                    "block {offset} says its predecessor has {prev} bytes, not {previous}"
                )));
            }
            if self.map.heap_word(offset).load(Ordering::Relaxed) & 1 != 0 {
                used += size;
            } else {
                if previous != 0
                    && self
                        .map
                        .heap_word(offset - previous)
                        .load(Ordering::Relaxed)
                        & 1
                        == 0
                {
                    return Err(corrupt(format!(
                        "free blocks {} and {offset} were not merged",
                        offset - previous
                    )));
                }
                free += size;
                free_blocks += 1;
                free_set.insert(offset);
            }
            previous = size;
            offset += size;
        }
        if offset != g.heap {
            return Err(corrupt("heap blocks overrun the heap"));
        }
        if used as u32 != self.read(BYTES_USED) {
            return Err(corrupt(format!(
                "{used} heap bytes used, the counter says {}",
                self.read(BYTES_USED)
            )));
        }
        // The free lists hold exactly the free blocks.
        let mut listed = 0;
        for class in 0..32 {
            let mut cursor = self.read(FREE_HEADS + class * 4);
            let present = self.read(FREE_BITMAP) & (1 << class) != 0;
            if present != (cursor != 0) {
                return Err(corrupt(format!(
                    "free-list bitmap disagrees for class {class}"
                )));
            }
            while cursor != 0 {
                let block = cursor as usize - 1;
                if !free_set.contains(&block) || size_class(self.block_size(block)?) != class {
                    return Err(corrupt(format!("free list {class} holds block {block}")));
                }
                listed += 1;
                if listed > free_blocks {
                    return Err(corrupt("a free list loops"));
                }
                cursor = self.map.heap_word(block + 8).load(Ordering::Relaxed);
            }
        }
        if listed != free_blocks {
            return Err(corrupt(format!(
                "{free_blocks} free blocks, {listed} on the lists"
            )));
        }
        // Entries: the live ones are counted and indexed; the others are on the free list.
        let mut live = 0;
        for entry in 0..g.capacity {
            if self.read(self.map.entry_offset(entry, E_LIVE)) == 0 {
                continue;
            }
            live += 1;
            let seq = self.read(self.map.entry_offset(entry, E_SEQ));
            let slot = self.map.read_slot(entry, seq & 1);
            let bytes = self
                .map
                .block_bytes(slot)
                .ok_or_else(|| corrupt(format!("entry {entry} points outside the heap")))?;
            match self.find_bucket(&bytes[..slot.key_len as usize], slot.hash)? {
                Some((_, found)) if found == entry => {}
                _ => return Err(corrupt(format!("live entry {entry} is not in the index"))),
            }
        }
        if live as u32 != self.read(COUNT) {
            return Err(corrupt(format!(
                "{live} live entries, the counter says {}",
                self.read(COUNT)
            )));
        }
        let mut free_entries = 0;
        let mut cursor = self.read(FREE_ENTRY);
        while cursor != 0 {
            free_entries += 1;
            if free_entries > g.capacity || cursor as usize > g.capacity {
                return Err(corrupt("the free entry list loops or leaves the table"));
            }
            cursor = self.read(self.map.entry_offset(cursor as usize - 1, E_NEXT_FREE));
        }
        if live + free_entries != g.capacity {
            return Err(corrupt(format!(
                "{live} live and {free_entries} free entries of {}",
                g.capacity
            )));
        }
        Ok(MapCheck {
            entries: live,
            used_bytes: used,
            free_bytes: free,
            free_blocks,
        })
    }

    // ----------------------------------------------------------------------------- the heap

    /// Copies key and value into a block just allocated. The block was free before: its first
    /// payload words held its free-list links, which a rollback must find again, so they are
    /// logged before the bytes go over them.
    fn copy_into(&mut self, block: usize, key: &[u8], value: &[u8]) -> Result<()> {
        let base = self.map.geometry.heap_base + block + BLOCK_HEADER;
        self.log(base, false)?;
        self.log(base + 4, false)?;
        // The block was allocated for at least key + value bytes after its header, rounded up
        // to 8, so the last word's padding lies inside it. A reader following a stale slot may
        // read these words while they are written: both sides use relaxed 4-byte atomics (the
        // heap's only access size), and the reader's seq check discards what it saw.
        let len = key.len() + value.len();
        let mut padded = Vec::with_capacity(len.next_multiple_of(4));
        padded.extend_from_slice(key);
        padded.extend_from_slice(value);
        padded.resize(len.next_multiple_of(4), 0);
        let first = block + BLOCK_HEADER;
        for (i, word) in padded.chunks_exact(4).enumerate() {
            let word = u32::from_ne_bytes([word[0], word[1], word[2], word[3]]);
            self.map
                .heap_word(first + i * 4)
                .store(word, Ordering::Relaxed);
        }
        Ok(())
    }

    fn block_size(&self, block: usize) -> Result<usize> {
        let size = (self.map.heap_word(block).load(Ordering::Relaxed) & !7) as usize;
        if size < BLOCK_HEADER || block + size > self.map.geometry.heap {
            return Err(corrupt(format!("heap block at {block} has size {size}")));
        }
        Ok(size)
    }

    fn fits(&self, need: usize) -> Result<bool> {
        Ok(self.find_fit(need)?.is_some())
    }

    /// A free block of at least `need` bytes (header included, rounded up), if any: any block
    /// of a class above `need`'s fits; in `need`'s own class, the first large enough.
    fn find_fit(&self, need: usize) -> Result<Option<usize>> {
        let need = need.next_multiple_of(ALIGN).max(16);
        let bitmap = self.read(FREE_BITMAP);
        for class in size_class(need)..32 {
            if bitmap & (1 << class) == 0 {
                continue;
            }
            let mut cursor = self.read(FREE_HEADS + class * 4);
            for _ in 0..4096 {
                if cursor == 0 {
                    break;
                }
                let block = cursor as usize - 1;
                if self.block_size(block)? >= need {
                    return Ok(Some(block));
                }
                cursor = self.map.heap_word(block + 8).load(Ordering::Relaxed);
            }
        }
        Ok(None)
    }

    /// Allocates a block of at least `need` bytes (header included); `None` if none is free.
    fn allocate(&mut self, need: usize) -> Result<Option<usize>> {
        let best = self.find_fit(need)?;
        let need = need.next_multiple_of(ALIGN).max(16);
        let Some(block) = best else {
            return Ok(None);
        };
        let size = self.block_size(block)?;
        self.unlink_free(block)?;
        let rest = size - need;
        if rest >= 32 {
            // Split: the tail becomes a free block of its own.
            self.write_heap(block, need as u32 | 1)?;
            let tail = block + need;
            self.write_heap(tail, rest as u32)?;
            self.write_heap(tail + 4, need as u32)?;
            let after = tail + rest;
            self.write_heap(after + 4, rest as u32)?;
            self.link_free(tail, rest)?;
            self.add_used(need)?;
        } else {
            self.write_heap(block, size as u32 | 1)?;
            self.add_used(size)?;
        }
        Ok(Some(block))
    }

    /// Frees `block` (0 is "no block"), merging it with free neighbours.
    fn free(&mut self, block: usize) -> Result<()> {
        if block == 0 {
            return Ok(()); // an empty slot points to no block
        }
        let mut start = block;
        let mut size = self.block_size(block)?;
        if self.map.heap_word(block).load(Ordering::Relaxed) & 1 == 0 {
            return Err(corrupt(format!("heap block at {block} freed twice")));
        }
        self.add_used_negative(size)?;
        let heap = self.map.geometry.heap;
        let next = start + size;
        if next + BLOCK_HEADER <= heap && self.map.heap_word(next).load(Ordering::Relaxed) & 1 == 0
        {
            let next_size = self.block_size(next)?;
            self.unlink_free(next)?;
            size += next_size;
        }
        let previous_size = self.map.heap_word(start + 4).load(Ordering::Relaxed) as usize;
        if start > 0 && previous_size > 0 && previous_size <= start {
            let previous = start - previous_size;
            if self.map.heap_word(previous).load(Ordering::Relaxed) & 1 == 0
                && self.block_size(previous)? == previous_size
            {
                self.unlink_free(previous)?;
                start = previous;
                size += previous_size;
            }
        }
        self.write_heap(start, size as u32)?;
        if start + size + 8 <= heap {
            self.write_heap(start + size + 4, size as u32)?;
        }
        self.link_free(start, size)
    }

    fn link_free(&mut self, block: usize, size: usize) -> Result<()> {
        let class = size_class(size);
        let head_offset = FREE_HEADS + class * 4;
        let head = self.read(head_offset);
        self.write_heap(block + 8, head)?;
        self.write_heap(block + 12, 0)?;
        if head != 0 {
            self.write_heap(head as usize - 1 + 12, block as u32 + 1)?;
        }
        self.write(head_offset, block as u32 + 1)?;
        let bitmap = self.read(FREE_BITMAP);
        self.write(FREE_BITMAP, bitmap | (1 << class))
    }

    fn unlink_free(&mut self, block: usize) -> Result<()> {
        let size = self.block_size(block)?;
        let class = size_class(size);
        let next = self.map.heap_word(block + 8).load(Ordering::Relaxed);
        let previous = self.map.heap_word(block + 12).load(Ordering::Relaxed);
        for link in [next, previous] {
            if link != 0 && link as usize > self.map.geometry.heap {
                return Err(corrupt(format!("free list link {link}")));
            }
        }
        if previous == 0 {
            self.write(FREE_HEADS + class * 4, next)?;
            if next == 0 {
                let bitmap = self.read(FREE_BITMAP);
                self.write(FREE_BITMAP, bitmap & !(1 << class))?;
            }
        } else {
            self.write_heap(previous as usize - 1 + 8, next)?;
        }
        if next != 0 {
            self.write_heap(next as usize - 1 + 12, previous)?;
        }
        Ok(())
    }

    fn write_heap(&mut self, offset: usize, value: u32) -> Result<()> {
        if offset + 4 > self.map.geometry.heap {
            return Err(corrupt(format!("heap offset {offset}")));
        }
        self.write(self.map.geometry.heap_base + offset, value)
    }

    fn add_used(&mut self, bytes: usize) -> Result<()> {
        let used = self.read(BYTES_USED);
        self.write(BYTES_USED, used.wrapping_add(bytes as u32))
    }

    fn add_used_negative(&mut self, bytes: usize) -> Result<()> {
        let used = self.read(BYTES_USED);
        self.write(BYTES_USED, used.saturating_sub(bytes as u32))
    }
}

impl SharedMap {
    fn entry_offset(&self, entry: usize, field: usize) -> usize {
        self.geometry.entries + entry * ENTRY_SIZE + field
    }

    /// Checks the whole structure, holding the write lock (repairing first if a writer died):
    /// every heap block chained from start to end, free blocks on the right lists, counters
    /// matching what they count, every live entry in the index. For tests and `shmkit inspect`;
    /// `Corrupt` says what is wrong.
    pub fn verify(&self) -> Result<MapCheck> {
        self.write_locked(|tx| tx.verify())
    }

    /// The data-area offsets of the map's regions, for bindings that read the map themselves.
    pub fn regions(&self) -> MapRegions {
        let g = self.geometry;
        MapRegions {
            index_a: g.index_a,
            index_b: g.index_b,
            entries: g.entries,
            heap: g.heap_base,
            capacity: g.capacity,
            buckets: g.buckets,
            heap_size: g.heap,
        }
    }
}

/// What [`SharedMap::verify`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapCheck {
    pub entries: usize,
    pub used_bytes: usize,
    pub free_bytes: usize,
    pub free_blocks: usize,
}

/// Where a map's regions lie in its data area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapRegions {
    pub index_a: usize,
    pub index_b: usize,
    pub entries: usize,
    pub heap: usize,
    pub capacity: usize,
    pub buckets: usize,
    pub heap_size: usize,
}

fn full(map: &SharedMap) -> Error {
    Error::new(
        ErrorCode::MapFull,
        format!(
            "Map {:?} is full ({} entries, {} of {} heap bytes used) and does not evict: delete \
             entries, or create it with evict: 'lru' or more capacity or memory",
            map.name(),
            map.word(COUNT).load(Ordering::Relaxed),
            map.word(BYTES_USED).load(Ordering::Relaxed),
            map.geometry.heap
        ),
    )
}

const _: () = assert!(INDEX_A.is_multiple_of(64) || INDEX_A.is_multiple_of(4));
const _: () = assert!(LOCK.is_multiple_of(8) && LOCK + MUTEX_SIZE <= LOG_COUNT);
const _: () = assert!(FREE_HEADS + 32 * 4 <= LOCK);
