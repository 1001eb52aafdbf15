//! Topics: broadcast in shared memory. Every subscriber gets every message published after it
//! subscribed, in the one publish order (docs/TOPIC.md is the reference; this is the code).
//!
//! ```text
//! data offset  field
//!      0       ready (TOPIC_MAGIC, written last by the creator), version, capacity, codec, slow,
//!              subscriber slots, ended, ring offset
//!     64       tail, writing, head, published, sub_sleepers, sub_event     publishers' line
//!    128       pub_sleepers, pub_event, reaped                              subscribers' line
//!    192       publish lock (a mutex cell)
//!    256       subscriber table: slots x 64 bytes
//!   ring       records: [length u32][seq u32][payload][pad to 8] ...
//! ```
//!
//! Publishers append under the publish lock; each subscriber reads on its own, without a lock,
//! and only it moves its cursor. In `Block` mode a publisher waits until every live subscriber
//! has read the bytes it is about to overwrite; in `Overwrite` mode it never waits and a
//! subscriber that was lapped notices (the record's sequence number, and `writing`) and is told
//! how many messages it missed.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorCode, Result};
use crate::header::Kind;
use crate::mutex::{LockOptions, MutexCell};
use crate::platform::{self, Liveness, ThreadIdentity};
use crate::segment::{CreateOptions, OpenOptions, Segment};

/// Byte offsets of a topic's data area (docs/TOPIC.md). The binding exports them to
/// JavaScript, whose subscribers read the ring with the same protocol.
pub mod layout {
    /// u32: `TOPIC_MAGIC` once the creator wrote the block.
    pub const READY: usize = 0;
    /// u32: `TOPIC_VERSION`.
    pub const VERSION: usize = 4;
    /// u32: ring bytes, a power of two.
    pub const CAPACITY: usize = 8;
    /// u32: the codec id recorded at creation (as for channels).
    pub const CODEC: usize = 12;
    /// u32: 0 block, 1 overwrite.
    pub const SLOW: usize = 16;
    /// u32: subscriber slots in the table.
    pub const SLOTS: usize = 20;
    /// u32: 1 once the stream has ended (`end()`), set under the publish lock.
    pub const ENDED: usize = 24;
    /// u32: where the ring starts in the data area.
    pub const RING_AT: usize = 28;
    /// u32: end of the published records (free-running byte counter, a multiple of 8).
    pub const TAIL: usize = 64;
    /// u32: end of the region a publisher is writing (`tail` + the record's size while it
    /// writes, then equal to `tail`): bytes before `writing - capacity` may be overwritten.
    pub const WRITING: usize = 68;
    /// u32: start of the oldest whole record in the ring.
    pub const HEAD: usize = 72;
    /// u32: messages published (wraps): the next record's sequence number.
    pub const PUBLISHED: usize = 76;
    /// u32: 1 when a subscriber may be asleep; cleared by the publisher that wakes them.
    pub const SUB_SLEEPERS: usize = 80;
    /// u32: bumped to wake subscribers (a message, or the end).
    pub const SUB_EVENT: usize = 84;
    /// u32: 1 when a publisher may be asleep waiting for room (block mode).
    pub const PUB_SLEEPERS: usize = 128;
    /// u32: bumped to wake publishers.
    pub const PUB_EVENT: usize = 132;
    /// u32: subscribers whose thread died, removed by publishers (wraps).
    pub const REAPED: usize = 136;
    /// The publish lock (a mutex cell).
    pub const PUBLISH_LOCK: usize = 192;
    /// The subscriber table.
    pub const TABLE: usize = 256;
    /// Bytes of one subscriber slot.
    pub const SLOT_SIZE: usize = 64;
    /// In a slot, u32: generation * 2 + 1 while subscribed, generation * 2 while free.
    pub const S_STATE: usize = 0;
    /// In a slot, u32: where the subscriber reads next (byte counter, like `tail`).
    pub const S_CURSOR: usize = 4;
    /// In a slot, u32: the sequence number it expects next (for `inspect`: how far behind).
    pub const S_SEQ: usize = 8;
    /// In a slot, u32: messages it missed by being lapped, in total (overwrite mode).
    pub const S_MISSED: usize = 12;
    /// In a slot, u32 x 5: the subscribing thread: tid, PID namespace, pid, start time (u64).
    pub const S_TID: usize = 16;
    pub const S_NS: usize = 20;
    pub const S_PID: usize = 24;
    pub const S_START_LO: usize = 28;
    pub const S_START_HI: usize = 32;
    /// Bytes of a record header: length, then sequence number.
    pub const RECORD_HEADER: usize = 8;
}

use layout::*;

/// "topc": the creator's last write; openers wait for it.
pub const TOPIC_MAGIC: u32 = 0x6370_6f74;
pub const TOPIC_VERSION: u32 = 1;
pub const MIN_CAPACITY: usize = 64;
pub const MAX_CAPACITY: usize = 1 << 30;
pub const DEFAULT_SUBSCRIBERS: usize = 64;
pub const MAX_SUBSCRIBERS: usize = 4096;
/// A blocking publish or receive spins this long before sleeping in the kernel.
const SPIN: Duration = Duration::from_micros(50);
/// Longest single sleep: the condition (and the liveness of laggards) is re-checked between.
const SLEEP_SLICE: Duration = Duration::from_millis(250);
/// A lapped subscriber re-reads the head this many times while publishers keep lapping it.
const CATCH_UP_ATTEMPTS: usize = 1000;

/// What a publisher does about a subscriber that has not read the bytes it is about to reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slow {
    /// Wait for the slowest live subscriber (dead ones are removed).
    Block = 0,
    /// Never wait: overwrite, and the lapped subscriber is told how many messages it missed.
    Overwrite = 1,
}

/// How to create a topic.
#[derive(Debug, Clone)]
pub struct TopicOptions {
    /// Ring bytes (rounded up to a power of two, at least 64).
    pub capacity: usize,
    /// Codec id, as for channels (0 bytes, 1 string, 2 json, 3 v8).
    pub codec: u32,
    pub slow: Slow,
    /// Most subscribers at once, 1 to 4096.
    pub subscribers: usize,
    pub mode: u32,
    pub auto_unlink: bool,
}

impl TopicOptions {
    pub fn new(capacity: usize) -> TopicOptions {
        TopicOptions {
            capacity,
            codec: crate::channel::CODEC_BYTES,
            slow: Slow::Block,
            subscribers: DEFAULT_SUBSCRIBERS,
            mode: crate::segment::DEFAULT_MODE,
            auto_unlink: false,
        }
    }
}

/// One subscriber slot, as `stats` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriberInfo {
    pub slot: usize,
    pub pid: u32,
    pub tid: u32,
    /// Whether its thread still runs (`Unknown` counts as alive).
    pub alive: bool,
    /// Messages published that it has not read yet.
    pub behind: u32,
    /// Bytes of the ring it has not read yet.
    pub behind_bytes: u32,
    /// Messages it missed by being lapped (overwrite mode).
    pub missed: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicStats {
    pub published: u32,
    pub capacity: u32,
    pub slow: Slow,
    pub ended: bool,
    pub reaped: u32,
    pub subscriber_slots: usize,
    pub subscribers: Vec<SubscriberInfo>,
}

/// Where a topic's regions lie, for bindings that read the ring themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicRegions {
    pub ring: usize,
    pub capacity: usize,
    pub slots: usize,
}

/// A topic mapped into this process.
pub struct Topic {
    segment: Arc<Segment>,
    capacity: u32,
    slots: usize,
    ring: usize,
    slow: Slow,
    /// A lower bound of every live subscriber's cursor, seen by this handle's last scan (block
    /// mode): cursors only move forward and new subscribers start at the tail, so it stays a
    /// lower bound; the table is scanned again only when it shows no room.
    min_cursor: AtomicU32,
    min_cursor_known: AtomicBool,
}

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::Corrupt, format!("Damaged topic: {what}"))
}

fn ended(name: &str) -> Error {
    Error::new(
        ErrorCode::ChannelEnded,
        format!("Topic {name:?} has ended: end() was called"),
    )
}

/// Bytes a record of a `length`-byte message occupies: header, payload, padding to 8.
pub fn record_size(length: usize) -> usize {
    RECORD_HEADER + length.next_multiple_of(8)
}

impl Topic {
    /// Creates topic `name`; `EEXIST` if it exists.
    pub fn create(name: &str, options: TopicOptions) -> Result<Topic> {
        let (create, ring, capacity) = Self::plan(&options)?;
        let segment = Segment::create(name, create)?;
        let topic = Topic::with(
            Arc::new(segment),
            capacity,
            options.subscribers,
            ring,
            options.slow,
        );
        topic.initialise(&options);
        Ok(topic)
    }

    /// Opens topic `name` as `options` say (owner, wait).
    pub fn open(name: &str, options: &OpenOptions) -> Result<Topic> {
        Self::over(Segment::open_with(name, options)?, options.ready_timeout)
    }

    /// Opens `name`, creating it if needed; `SizeMismatch` for a topic of another geometry.
    pub fn open_or_create(
        name: &str,
        options: TopicOptions,
        open: &OpenOptions,
    ) -> Result<(Topic, bool)> {
        let (create, ring, capacity) = Self::plan(&options)?;
        let (segment, created) = Segment::open_or_create_with(name, create, open)?;
        if created {
            let topic = Topic::with(
                Arc::new(segment),
                capacity,
                options.subscribers,
                ring,
                options.slow,
            );
            topic.initialise(&options);
            return Ok((topic, true));
        }
        Ok((Self::over(segment, open.ready_timeout)?, false))
    }

    /// Removes topic `name` (`WrongKind` if it is not a topic).
    pub fn unlink(name: &str) -> Result<()> {
        Segment::unlink_kind(name, Some(Kind::Topic))
    }

    fn plan(options: &TopicOptions) -> Result<(CreateOptions, usize, u32)> {
        if !(1..=MAX_CAPACITY).contains(&options.capacity) {
            return Err(Error::new(
                ErrorCode::OutOfRange,
                format!(
                    "The capacity must be from 1 to {MAX_CAPACITY} bytes, not {}",
                    options.capacity
                ),
            ));
        }
        if !(1..=MAX_SUBSCRIBERS).contains(&options.subscribers) {
            return Err(Error::new(
                ErrorCode::OutOfRange,
                format!(
                    "subscribers must be from 1 to {MAX_SUBSCRIBERS}, not {}",
                    options.subscribers
                ),
            ));
        }
        if options.codec as usize >= crate::channel::CODECS.len() {
            return Err(Error::new(
                ErrorCode::OutOfRange,
                format!("Unknown codec id {}", options.codec),
            ));
        }
        let capacity = options.capacity.max(MIN_CAPACITY).next_power_of_two();
        let ring = TABLE + options.subscribers * SLOT_SIZE;
        let create = CreateOptions {
            size: ring + capacity,
            mode: options.mode,
            kind: Kind::Topic,
            auto_unlink: options.auto_unlink,
            reserve: true,
        };
        Ok((create, ring, capacity as u32))
    }

    fn with(segment: Arc<Segment>, capacity: u32, slots: usize, ring: usize, slow: Slow) -> Topic {
        Topic {
            segment,
            capacity,
            slots,
            ring,
            slow,
            min_cursor: AtomicU32::new(0),
            min_cursor_known: AtomicBool::new(false),
        }
    }

    fn initialise(&self, options: &TopicOptions) {
        self.word(VERSION).store(TOPIC_VERSION, Ordering::Relaxed);
        self.word(CAPACITY).store(self.capacity, Ordering::Relaxed);
        self.word(CODEC).store(options.codec, Ordering::Relaxed);
        self.word(SLOW)
            .store(options.slow as u32, Ordering::Relaxed);
        self.word(SLOTS).store(self.slots as u32, Ordering::Relaxed);
        self.word(RING_AT)
            .store(self.ring as u32, Ordering::Relaxed);
        self.segment
            .note_placed_mutex(PUBLISH_LOCK)
            .expect("the publish lock lies in every topic's data area");
        // SYNC POINT (creator): openers that see the magic see everything above.
        self.word(READY).store(TOPIC_MAGIC, Ordering::Release);
    }

    /// A topic over an opened segment, once its creator finished; the geometry is validated.
    fn over(segment: Segment, ready_timeout: Duration) -> Result<Topic> {
        let name = segment.name().to_owned();
        if segment.info().kind != Kind::Topic {
            return Err(Error::new(
                ErrorCode::WrongKind,
                format!("{name:?} is a {}, not a topic", segment.info().kind.name()),
            ));
        }
        if segment.data_len() < TABLE + SLOT_SIZE + MIN_CAPACITY {
            return Err(corrupt("too small for a topic"));
        }
        let word = |offset: usize| segment.word_at(offset).expect("inside the control block");
        let deadline = platform::deadline_after(Some(ready_timeout));
        while word(READY).load(Ordering::Acquire) != TOPIC_MAGIC {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::new(
                    ErrorCode::NotReady,
                    format!("Topic {name:?} was never initialised"),
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let version = word(VERSION).load(Ordering::Relaxed);
        if version != TOPIC_VERSION {
            return Err(Error::new(
                ErrorCode::VersionMismatch,
                format!("Topic {name:?} uses topic layout {version}; this reads {TOPIC_VERSION}"),
            ));
        }
        let capacity = word(CAPACITY).load(Ordering::Relaxed) as usize;
        let slots = word(SLOTS).load(Ordering::Relaxed) as usize;
        let ring = word(RING_AT).load(Ordering::Relaxed) as usize;
        let slow = match word(SLOW).load(Ordering::Relaxed) {
            0 => Some(Slow::Block),
            1 => Some(Slow::Overwrite),
            _ => None,
        };
        let plausible = (MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity)
            && capacity.is_power_of_two()
            && (1..=MAX_SUBSCRIBERS).contains(&slots)
            && ring == TABLE + slots * SLOT_SIZE
            && ring + capacity <= segment.data_len();
        let (true, Some(slow)) = (plausible, slow) else {
            return Err(corrupt(format!(
                "impossible geometry: {capacity}-byte ring at {ring}, {slots} subscriber slots"
            )));
        };
        Ok(Topic::with(
            Arc::new(segment),
            capacity as u32,
            slots,
            ring,
            slow,
        ))
    }

    pub fn name(&self) -> &str {
        self.segment.name()
    }

    pub fn segment(&self) -> &Arc<Segment> {
        &self.segment
    }

    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    pub fn slow(&self) -> Slow {
        self.slow
    }

    /// The largest message: the ring minus one record header.
    pub fn max_message(&self) -> usize {
        self.capacity as usize - RECORD_HEADER
    }

    pub fn codec(&self) -> u32 {
        self.word(CODEC).load(Ordering::Relaxed)
    }

    pub fn regions(&self) -> TopicRegions {
        TopicRegions {
            ring: self.ring,
            capacity: self.capacity as usize,
            slots: self.slots,
        }
    }

    pub fn is_ended(&self) -> bool {
        self.word(ENDED).load(Ordering::Acquire) != 0
    }

    /// Publishes `message` if it can now: `Ok(false)` when a live subscriber has not read the
    /// room it needs (block mode) or another publisher holds the lock at this instant.
    pub fn try_publish(&self, message: &[u8]) -> Result<bool> {
        self.check_publishable(message.len())?;
        let me = platform::current_thread();
        let Some(acquired) = self.lock().try_lock(&me) else {
            return Ok(false);
        };
        let published = self.publish_locked(message, acquired.owner_died);
        let _ = self.lock().unlock(&me);
        if published? {
            self.wake(SUB_SLEEPERS, SUB_EVENT);
            return Ok(true);
        }
        Ok(false)
    }

    /// Publishes `message`, waiting (block mode) while a live subscriber has not read the room
    /// it needs; `TimedOut` after `timeout` (`None`: no limit).
    pub fn publish(&self, message: &[u8], timeout: Option<Duration>) -> Result<()> {
        self.check_publishable(message.len())?;
        let deadline = platform::deadline_after(timeout);
        let me = platform::current_thread();
        let mut spin_until = None;
        loop {
            let options = LockOptions {
                deadline,
                presume_dead_after: None,
            };
            let acquired = self.lock().lock_with(&me, options)?;
            let published = self.publish_locked(message, acquired.owner_died);
            let _ = self.lock().unlock(&me);
            if published? {
                self.wake(SUB_SLEEPERS, SUB_EVENT);
                return Ok(());
            }
            // No room: spin a little (an awake subscriber reads within microseconds), then sleep
            // until a subscriber moves (or leaves), re-checking the laggards' liveness each slice.
            let spin_until = *spin_until.get_or_insert_with(|| Instant::now() + SPIN);
            if Instant::now() < spin_until {
                std::hint::spin_loop();
                continue;
            }
            let need = record_size(message.len());
            self.sleep_on(
                PUB_SLEEPERS,
                PUB_EVENT,
                deadline,
                "room in the topic",
                || self.is_ended() || self.has_room(need),
            )?;
        }
    }

    /// Publishes `message` while the caller holds the publish lock (a binding that takes the
    /// lock itself; `owner_died` as its acquisition said): `Ok(false)` when a live subscriber
    /// holds the room. Wakes nobody: call [`Topic::wake_subscribers`] once the lock is released.
    pub fn publish_held(&self, message: &[u8], owner_died: bool) -> Result<bool> {
        self.check_publishable(message.len())?;
        self.publish_locked(message, owner_died)
    }

    /// Wakes subscribers asleep waiting for a message, if any announced itself.
    pub fn wake_subscribers(&self) {
        self.wake(SUB_SLEEPERS, SUB_EVENT);
    }

    /// Whether the slowest subscriber leaves `need` bytes of room (a hint, without the lock).
    fn has_room(&self, need: usize) -> bool {
        let tail = self.word(TAIL).load(Ordering::SeqCst);
        self.slowest(tail).is_ok_and(|slowest| {
            slowest.is_none_or(|(_, behind)| self.capacity as usize - behind as usize >= need)
        })
    }

    fn check_publishable(&self, length: usize) -> Result<()> {
        if length > self.max_message() {
            return Err(Error::new(
                ErrorCode::OutOfRange,
                format!(
                    "A {length}-byte message can never fit this topic: the limit is {} bytes",
                    self.max_message()
                ),
            ));
        }
        if self.is_ended() {
            return Err(ended(self.name()));
        }
        Ok(())
    }

    /// The publish step, holding the lock: `Ok(false)` if a live subscriber holds the room.
    fn publish_locked(&self, message: &[u8], owner_died: bool) -> Result<bool> {
        if owner_died {
            self.repair()?;
        }
        // Re-checked under the lock: `end` sets the flag under it.
        if self.is_ended() {
            return Err(ended(self.name()));
        }
        let capacity = self.capacity;
        let need = record_size(message.len()) as u32;
        let tail = self.word(TAIL).load(Ordering::SeqCst);
        if !tail.is_multiple_of(8) {
            return Err(corrupt(format!("tail {tail}")));
        }
        if self.slow == Slow::Block && !self.room_for(tail, need)? {
            return Ok(false);
        }
        // Move the head past the records this one will overwrite (each stays whole until then).
        let mut head = self.word(HEAD).load(Ordering::SeqCst);
        let mut used = self.used(head, tail)?;
        while capacity - used < need {
            let length = self.ring_word(head);
            let size = record_size(length as usize) as u32;
            if length > capacity - RECORD_HEADER as u32 || size > used {
                return Err(corrupt(format!("record length {length} at {head}")));
            }
            head = head.wrapping_add(size);
            used -= size;
        }
        let seq = self.word(PUBLISHED).load(Ordering::SeqCst);
        self.word(HEAD).store(head, Ordering::SeqCst);
        // SYNC POINT (overwrite): readers that see `writing` past their record know it may be
        // overwritten, so they check it after copying. It never moves back: a publisher that
        // died writing may have overwritten bytes up to the `writing` it stored.
        let writing = self.word(WRITING).load(Ordering::SeqCst);
        let ahead = writing.wrapping_sub(tail);
        if ahead > capacity || ahead < need {
            self.word(WRITING)
                .store(tail.wrapping_add(need), Ordering::SeqCst);
        }
        // The ring is written with relaxed stores: keep them after `writing` (the seqlock
        // writer's fence), so a reader that sees new bytes also sees the new `writing`.
        std::sync::atomic::fence(Ordering::Release);
        self.write_record(tail, seq, message);
        // SYNC POINT (publish): the record is whole before the tail moves past it.
        self.word(TAIL)
            .store(tail.wrapping_add(need), Ordering::SeqCst);
        self.word(PUBLISHED)
            .store(seq.wrapping_add(1), Ordering::SeqCst);
        Ok(true)
    }

    /// Block mode: whether every live subscriber has read the `need` bytes from `tail` on
    /// (removing dead subscribers that hold them).
    fn room_for(&self, tail: u32, need: u32) -> Result<bool> {
        let capacity = self.capacity;
        if self.min_cursor_known.load(Ordering::Relaxed) {
            let behind = tail.wrapping_sub(self.min_cursor.load(Ordering::Relaxed));
            if behind <= capacity && capacity - behind >= need {
                return Ok(true);
            }
        }
        loop {
            match self.slowest(tail)? {
                None => {
                    self.min_cursor.store(tail, Ordering::Relaxed);
                    self.min_cursor_known.store(true, Ordering::Relaxed);
                    return Ok(true);
                }
                Some((slot, behind)) => {
                    self.min_cursor
                        .store(tail.wrapping_sub(behind), Ordering::Relaxed);
                    self.min_cursor_known.store(true, Ordering::Relaxed);
                    if capacity - behind >= need {
                        return Ok(true);
                    }
                    if !self.reap_if_dead(slot) {
                        return Ok(false);
                    }
                }
            }
        }
    }

    /// The active subscriber furthest behind `tail`, and how many bytes behind.
    fn slowest(&self, tail: u32) -> Result<Option<(usize, u32)>> {
        let mut slowest: Option<(usize, u32)> = None;
        for slot in 0..self.slots {
            if self.slot_word(slot, S_STATE).load(Ordering::SeqCst) & 1 == 0 {
                continue;
            }
            let cursor = self.slot_word(slot, S_CURSOR).load(Ordering::SeqCst);
            let behind = tail.wrapping_sub(cursor);
            if behind > self.capacity || !cursor.is_multiple_of(8) {
                return Err(corrupt(format!(
                    "subscriber {slot} at {cursor}, tail {tail}"
                )));
            }
            if slowest.is_none_or(|(_, most)| behind > most) {
                slowest = Some((slot, behind));
            }
        }
        Ok(slowest)
    }

    /// Frees `slot` if its thread is dead; whether it did (or the slot was freed meanwhile).
    fn reap_if_dead(&self, slot: usize) -> bool {
        let state = self.slot_word(slot, S_STATE).load(Ordering::SeqCst);
        if state & 1 == 0 {
            return true;
        }
        if platform::liveness(&self.subscriber(slot)) != Liveness::Dead {
            return false;
        }
        if self
            .slot_word(slot, S_STATE)
            .compare_exchange(
                state,
                state.wrapping_add(1),
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
        {
            self.word(REAPED).fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    fn subscriber(&self, slot: usize) -> ThreadIdentity {
        let w = |offset| self.slot_word(slot, offset).load(Ordering::Relaxed);
        ThreadIdentity {
            tid: w(S_TID),
            namespace: w(S_NS),
            pid: w(S_PID),
            start_time: u64::from(w(S_START_LO)) | (u64::from(w(S_START_HI)) << 32),
        }
    }

    /// After taking the lock over from a dead publisher: `published` must follow the last
    /// record (the publisher may have died between moving the tail and counting the message).
    fn repair(&self) -> Result<()> {
        let tail = self.word(TAIL).load(Ordering::SeqCst);
        let mut position = self.word(HEAD).load(Ordering::SeqCst);
        let mut used = self.used(position, tail)?;
        let mut last = None;
        while used > 0 {
            let length = self.ring_word(position);
            let size = record_size(length as usize) as u32;
            if length > self.capacity - RECORD_HEADER as u32 || size > used {
                return Err(corrupt(format!("record length {length} at {position}")));
            }
            last = Some(self.ring_word(position.wrapping_add(4)));
            position = position.wrapping_add(size);
            used -= size;
        }
        if let Some(seq) = last {
            self.word(PUBLISHED)
                .store(seq.wrapping_add(1), Ordering::SeqCst);
        }
        Ok(())
    }

    /// `tail - head`, validated.
    fn used(&self, head: u32, tail: u32) -> Result<u32> {
        let used = tail.wrapping_sub(head);
        if used > self.capacity || !head.is_multiple_of(8) {
            return Err(corrupt(format!("head {head}, tail {tail}")));
        }
        Ok(used)
    }

    /// Ends the stream for everyone: publishing fails with `ChannelEnded` from now on;
    /// subscribers read what is left, then get `ChannelEnded`. Idempotent.
    pub fn end(&self, timeout: Option<Duration>) -> Result<()> {
        let me = platform::current_thread();
        let options = LockOptions {
            deadline: platform::deadline_after(timeout),
            presume_dead_after: None,
        };
        let acquired = self.lock().lock_with(&me, options)?;
        let repaired = if acquired.owner_died {
            self.repair()
        } else {
            Ok(())
        };
        self.word(ENDED).store(1, Ordering::SeqCst);
        let _ = self.lock().unlock(&me);
        for event in [SUB_EVENT, PUB_EVENT] {
            self.word(event).fetch_add(1, Ordering::SeqCst);
            platform::wake(self.word(event), u32::MAX);
        }
        repaired
    }

    /// Subscribes this thread: the subscription sees what is published from now on.
    pub fn subscribe(self: &Arc<Self>) -> Result<Subscription> {
        let (slot, state, cursor, seq) = self.claim_slot(&platform::current_thread())?;
        Ok(Subscription {
            topic: Arc::clone(self),
            slot,
            state,
            cursor,
            seq,
        })
    }

    /// Takes a free subscriber slot for `me` under the publish lock (so that the cursor it
    /// starts at is the tail, and no publisher overwrites what it has not read): the slot, its
    /// state value, and the cursor and sequence number it starts at. For bindings.
    pub fn claim_slot(&self, me: &ThreadIdentity) -> Result<(usize, u32, u32, u32)> {
        let options = LockOptions {
            deadline: platform::deadline_after(Some(Duration::from_secs(10))),
            presume_dead_after: None,
        };
        let acquired = self.lock().lock_with(me, options)?;
        let claimed = (|| {
            if acquired.owner_died {
                self.repair()?;
            }
            for pass in 0..2 {
                for slot in 0..self.slots {
                    let state = self.slot_word(slot, S_STATE).load(Ordering::SeqCst);
                    if state & 1 == 1 && !(pass == 1 && self.reap_if_dead(slot)) {
                        continue;
                    }
                    let state = self.slot_word(slot, S_STATE).load(Ordering::SeqCst);
                    if state & 1 == 1 {
                        continue;
                    }
                    let tail = self.word(TAIL).load(Ordering::SeqCst);
                    let seq = self.word(PUBLISHED).load(Ordering::SeqCst);
                    let w =
                        |offset, value| self.slot_word(slot, offset).store(value, Ordering::SeqCst);
                    w(S_CURSOR, tail);
                    w(S_SEQ, seq);
                    w(S_MISSED, 0);
                    w(S_TID, me.tid);
                    w(S_NS, me.namespace);
                    w(S_PID, me.pid);
                    w(S_START_LO, me.start_time as u32);
                    w(S_START_HI, (me.start_time >> 32) as u32);
                    // Publishers see the slot (with the cursor above) once this store lands; they
                    // scan under the lock we hold, so none can overwrite the tail meanwhile.
                    let active = state.wrapping_add(1);
                    self.slot_word(slot, S_STATE)
                        .store(active, Ordering::SeqCst);
                    return Ok((slot, active, tail, seq));
                }
            }
            Err(Error::new(
                ErrorCode::OutOfRange,
                format!(
                    "Topic {:?} has {} subscribers already, its most (the subscribers option)",
                    self.name(),
                    self.slots
                ),
            ))
        })();
        let _ = self.lock().unlock(me);
        claimed
    }

    /// Frees `slot` if it still holds the subscription `state` (a stale or repeated release
    /// does nothing), and wakes publishers that may be waiting for it. For bindings.
    pub fn release_slot(&self, slot: usize, state: u32) {
        if slot >= self.slots {
            return;
        }
        if self
            .slot_word(slot, S_STATE)
            .compare_exchange(
                state,
                state.wrapping_add(1),
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
        {
            self.wake(PUB_SLEEPERS, PUB_EVENT);
        }
    }

    pub fn stats(&self) -> TopicStats {
        let words: Vec<u32> = (0..(TABLE + self.slots * SLOT_SIZE) / 4)
            .map(|i| self.word(i * 4).load(Ordering::SeqCst))
            .collect();
        stats_from_words(&words).expect("a topic's own control block and table")
    }

    // ------------------------------------------------------------------------ memory access

    fn word(&self, offset: usize) -> &AtomicU32 {
        self.segment
            .word_at(offset)
            .expect("control-block offsets lie inside every topic's data area")
    }

    fn lock(&self) -> &MutexCell {
        self.segment
            .mutex_at(PUBLISH_LOCK)
            .expect("the publish lock lies inside every topic's data area")
    }

    fn slot_word(&self, slot: usize, offset: usize) -> &AtomicU32 {
        debug_assert!(slot < self.slots);
        self.word(TABLE + slot * SLOT_SIZE + offset)
    }

    /// The ring word at byte counter `position`, masked into the ring (and down to a multiple
    /// of 4: positions read from shared memory are untrusted, callers validate their alignment).
    fn ring_word(&self, position: u32) -> u32 {
        let offset = (position & (self.capacity - 1) & !3) as usize;
        self.word(self.ring + offset).load(Ordering::Relaxed)
    }

    /// Writes a record at `tail`: length, sequence number, payload (padded to 8). The ring is
    /// written and read as relaxed 4-byte atomics only: in overwrite mode a subscriber may read
    /// bytes a publisher is overwriting (and then discards them), which plain copies would make
    /// a data race.
    fn write_record(&self, tail: u32, seq: u32, message: &[u8]) {
        let mask = self.capacity - 1;
        let word = |position: u32| self.word(self.ring + (position & mask) as usize);
        word(tail).store(message.len() as u32, Ordering::Relaxed);
        word(tail.wrapping_add(4)).store(seq, Ordering::Relaxed);
        let mut position = tail.wrapping_add(RECORD_HEADER as u32);
        let mut chunks = message.chunks_exact(4);
        for chunk in chunks.by_ref() {
            word(position).store(
                u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                Ordering::Relaxed,
            );
            position = position.wrapping_add(4);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 4];
            last[..rest.len()].copy_from_slice(rest);
            word(position).store(u32::from_ne_bytes(last), Ordering::Relaxed);
        }
    }

    /// Copies `length` payload bytes of the record at `position`.
    fn read_payload(&self, position: u32, length: usize) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(length.next_multiple_of(4));
        let mut at = position.wrapping_add(RECORD_HEADER as u32);
        while bytes.len() < length {
            bytes.extend_from_slice(&self.ring_word(at).to_ne_bytes());
            at = at.wrapping_add(4);
        }
        bytes.truncate(length);
        bytes
    }

    /// Wakes one side's sleepers if any announced itself (the waker clears the flag).
    fn wake(&self, flag: usize, event: usize) {
        if self.word(flag).load(Ordering::SeqCst) != 0
            && self.word(flag).swap(0, Ordering::SeqCst) != 0
        {
            self.word(event).fetch_add(1, Ordering::SeqCst);
            platform::wake(self.word(event), u32::MAX);
        }
    }

    /// The sleeper protocol of docs/CHANNELS.md: read the event, raise the flag, re-check, sleep
    /// (one slice at most).
    fn sleep_on(
        &self,
        flag: usize,
        event: usize,
        deadline: Option<Instant>,
        what: &str,
        ready: impl Fn() -> bool,
    ) -> Result<()> {
        let seen = self.word(event).load(Ordering::SeqCst);
        self.word(flag).store(1, Ordering::SeqCst);
        if ready() {
            return Ok(());
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            return Err(Error::new(
                ErrorCode::TimedOut,
                format!("Timed out waiting for {what}"),
            ));
        }
        let slice = left.map_or(SLEEP_SLICE, |l| l.min(SLEEP_SLICE));
        platform::wait(self.word(event), seen, Some(slice));
        Ok(())
    }
}

/// What one look at the ring found for a subscriber.
enum Look {
    Message(Vec<u8>),
    Empty,
    Ended,
}

/// A subscription of a Rust thread. Dropping it unsubscribes.
pub struct Subscription {
    topic: Arc<Topic>,
    slot: usize,
    state: u32,
    cursor: u32,
    seq: u32,
}

impl Subscription {
    /// The next message if one is there; `Ok(None)` when none is (also once the topic ended:
    /// see [`Topic::is_ended`]). `Lagged` (with the count) when publishers lapped this
    /// subscriber (overwrite mode): it then continues from the oldest message still there.
    pub fn try_recv(&mut self) -> Result<Option<Vec<u8>>> {
        match self.look()? {
            Look::Message(message) => Ok(Some(message)),
            Look::Empty | Look::Ended => Ok(None),
        }
    }

    /// The next message, waiting for one; `TimedOut` after `timeout` (`None`: no limit).
    pub fn recv(&mut self, timeout: Option<Duration>) -> Result<Vec<u8>> {
        let deadline = platform::deadline_after(timeout);
        let spin_until = Instant::now() + SPIN;
        loop {
            match self.look()? {
                Look::Message(message) => return Ok(message),
                Look::Ended => return Err(ended(self.topic.name())),
                Look::Empty => {}
            }
            if Instant::now() < spin_until {
                std::hint::spin_loop();
                continue;
            }
            let cursor = self.cursor;
            let topic = Arc::clone(&self.topic);
            topic.sleep_on(SUB_SLEEPERS, SUB_EVENT, deadline, "a message", || {
                topic.is_ended() || topic.word(TAIL).load(Ordering::SeqCst) != cursor
            })?;
        }
    }

    fn look(&mut self) -> Result<Look> {
        let topic = Arc::clone(&self.topic);
        // A slot whose thread was judged dead is freed, and may be another subscriber's now:
        // this handle (used from another thread) must not read on or write into it.
        if topic.slot_word(self.slot, S_STATE).load(Ordering::SeqCst) != self.state {
            return Err(Error::new(
                ErrorCode::Closed,
                "This subscription was removed: the thread that subscribed ended",
            ));
        }
        let capacity = topic.capacity;
        // `ended` before `tail`: once it is set nothing more is published.
        let ended = topic.is_ended();
        let tail = topic.word(TAIL).load(Ordering::SeqCst);
        if tail == self.cursor {
            return Ok(if ended { Look::Ended } else { Look::Empty });
        }
        let behind = tail.wrapping_sub(self.cursor);
        if behind <= capacity {
            let length = topic.ring_word(self.cursor);
            let seq = topic.ring_word(self.cursor.wrapping_add(4));
            let size = record_size(length as usize) as u32;
            let plausible =
                length <= capacity - RECORD_HEADER as u32 && size <= behind && seq == self.seq;
            let message = plausible.then(|| topic.read_payload(self.cursor, length as usize));
            // SYNC POINT (overwrite check): what was read is whole if no publisher had begun to
            // overwrite it by then (`writing` only grows, see `publish_locked`).
            std::sync::atomic::fence(Ordering::SeqCst);
            let intact = topic
                .word(WRITING)
                .load(Ordering::SeqCst)
                .wrapping_sub(self.cursor)
                <= capacity;
            match (intact, message) {
                (true, Some(message)) => {
                    self.advance(self.cursor.wrapping_add(size), self.seq.wrapping_add(1));
                    return Ok(Look::Message(message));
                }
                (true, None) => {
                    // Nothing overwrote it, yet it is not the record expected.
                    return Err(corrupt(format!(
                        "record at {} has length {length} and number {seq}, expected number {}",
                        self.cursor, self.seq
                    )));
                }
                (false, _) => {}
            }
        }
        self.catch_up()
    }

    /// Lapped: continue from the oldest record still whole, and say how many were missed.
    fn catch_up(&mut self) -> Result<Look> {
        let topic = Arc::clone(&self.topic);
        for _ in 0..CATCH_UP_ATTEMPTS {
            // `tail` before `head`. A publish that must drop every record first moves the head
            // to the tail, where its own record is not written yet: the number there is stale.
            // Then the record to expect next is number `published`, if the tail did not move.
            let tail = topic.word(TAIL).load(Ordering::SeqCst);
            let head = topic.word(HEAD).load(Ordering::SeqCst);
            let seq = if head == tail {
                let published = topic.word(PUBLISHED).load(Ordering::SeqCst);
                if topic.word(TAIL).load(Ordering::SeqCst) != tail {
                    std::hint::spin_loop();
                    continue;
                }
                published
            } else {
                let seq = topic.ring_word(head.wrapping_add(4));
                std::sync::atomic::fence(Ordering::SeqCst);
                let whole = tail.wrapping_sub(head) <= topic.capacity
                    && head.is_multiple_of(8)
                    && topic
                        .word(WRITING)
                        .load(Ordering::SeqCst)
                        .wrapping_sub(head)
                        <= topic.capacity;
                if !whole {
                    std::hint::spin_loop();
                    continue;
                }
                seq
            };
            let missed = seq.wrapping_sub(self.seq);
            let total = topic.slot_word(self.slot, S_MISSED).load(Ordering::Relaxed);
            topic
                .slot_word(self.slot, S_MISSED)
                .store(total.wrapping_add(missed), Ordering::Relaxed);
            self.advance(head, seq);
            return Err(Error::new(
                ErrorCode::Lagged(u64::from(missed)),
                format!(
                    "This subscriber of topic {:?} fell behind and missed {missed} messages; it continues from the oldest one still there",
                    topic.name()
                ),
            ));
        }
        Err(corrupt(
            "publishers keep lapping a subscriber that tries to catch up",
        ))
    }

    fn advance(&mut self, cursor: u32, seq: u32) {
        self.cursor = cursor;
        self.seq = seq;
        let topic = &*self.topic;
        // SYNC POINT (consume): the record was copied before publishers may reuse its bytes.
        topic
            .slot_word(self.slot, S_CURSOR)
            .store(cursor, Ordering::SeqCst);
        topic
            .slot_word(self.slot, S_SEQ)
            .store(seq, Ordering::Relaxed);
        if topic.slow == Slow::Block {
            topic.wake(PUB_SLEEPERS, PUB_EVENT);
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.topic.release_slot(self.slot, self.state);
    }
}

/// Statistics from a snapshot of a topic's first words (control block and subscriber table, as
/// [`Segment::inspect`] reads them), with each subscriber's liveness; `None` if the words are
/// too few or name an impossible geometry.
pub fn stats_from_words(words: &[u32]) -> Option<TopicStats> {
    let word = |offset: usize| words.get(offset / 4).copied();
    let slots = word(SLOTS)? as usize;
    if !(1..=MAX_SUBSCRIBERS).contains(&slots) || words.len() * 4 < TABLE + slots * SLOT_SIZE {
        return None;
    }
    let published = word(PUBLISHED)?;
    let tail = word(TAIL)?;
    let slot_word =
        |slot: usize, offset: usize| word(TABLE + slot * SLOT_SIZE + offset).unwrap_or(0);
    let subscribers = (0..slots)
        .filter(|&slot| slot_word(slot, S_STATE) & 1 == 1)
        .map(|slot| {
            let identity = ThreadIdentity {
                tid: slot_word(slot, S_TID),
                namespace: slot_word(slot, S_NS),
                pid: slot_word(slot, S_PID),
                start_time: u64::from(slot_word(slot, S_START_LO))
                    | (u64::from(slot_word(slot, S_START_HI)) << 32),
            };
            SubscriberInfo {
                slot,
                pid: identity.pid,
                tid: identity.tid,
                alive: platform::liveness(&identity) != Liveness::Dead,
                behind: published.wrapping_sub(slot_word(slot, S_SEQ)),
                behind_bytes: tail.wrapping_sub(slot_word(slot, S_CURSOR)),
                missed: slot_word(slot, S_MISSED),
            }
        })
        .collect();
    Some(TopicStats {
        published,
        capacity: word(CAPACITY)?,
        slow: if word(SLOW)? == 1 {
            Slow::Overwrite
        } else {
            Slow::Block
        },
        ended: word(ENDED)? != 0,
        reaped: word(REAPED)?,
        subscriber_slots: slots,
        subscribers,
    })
}

/// How many of a topic's first words [`stats_from_words`] needs, given its `slots` word.
pub fn words_for_stats(slots_word: u32) -> usize {
    (TABLE + (slots_word as usize).clamp(1, MAX_SUBSCRIBERS) * SLOT_SIZE) / 4
}
