//! Channels for Rust programs: the same ring, layout and protocol as the JavaScript `Channel`
//! (documented in `docs/CHANNELS.md`), so Rust and Node processes can share one channel. This
//! side deals in raw bytes; JavaScript's codecs (`json`, `v8`, ...) are a layer above the bytes.
//!
//! ```text
//! data offset  field
//!      0       ready (CHANNEL_MAGIC, written last by the creator), version, capacity, codec, ended
//!     64       tail, recv_sleepers, recv_event, sent          producers' cache line
//!    128       head, send_sleepers, send_event, received      consumers' cache line
//!    192       send lock (a mutex cell)
//!    256       receive lock (a mutex cell)
//!    320       role bits of the peers (see `crate::peers`; `PEERS_SEEN` at 20)
//!    512       ring: [len u32][payload][pad to 4] ...
//! ```

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorCode, Result};
use crate::header::Kind;
use crate::mutex::{LockOptions, MutexCell};
use crate::peers::{self, Peers};
use crate::platform;
use crate::segment::{CreateOptions, Segment};

/// Byte offsets of the control block in a channel's data area (docs/CHANNELS.md). The binding
/// exports them to JavaScript, whose `Channel` speaks the same protocol.
pub mod layout {
    /// u32: `CHANNEL_MAGIC` once the creator wrote the block.
    pub const READY: usize = 0;
    /// u32: `CHANNEL_VERSION`.
    pub const VERSION: usize = 4;
    /// u32: ring bytes, a power of two.
    pub const CAPACITY: usize = 8;
    /// u32: the codec id recorded at creation.
    pub const CODEC: usize = 12;
    /// u32: 1 once the stream has ended (`end()`).
    pub const ENDED: usize = 16;
    /// u32: roles ever announced (bit 0 producer, bit 1 consumer): see `crate::peers`.
    pub const PEERS_SEEN: usize = 20;
    /// u32: end of the published messages (free-running byte counter).
    pub const TAIL: usize = 64;
    /// u32: 1 when a consumer may be asleep; cleared by the producer that wakes it.
    pub const RECV_SLEEPERS: usize = 68;
    /// u32: bumped to wake consumers.
    pub const RECV_EVENT: usize = 72;
    /// u32: messages published (wraps).
    pub const SENT: usize = 76;
    /// u32: who published last: a caching sender's token, 0 for every other publisher (this
    /// crate's). A handle may trust its cached `head` only while it holds its own token here.
    pub const LAST_SENDER: usize = 80;
    /// u32: start of the unread messages (free-running byte counter).
    pub const HEAD: usize = 128;
    /// u32: 1 when a producer may be asleep waiting for room; cleared on wake.
    pub const SEND_SLEEPERS: usize = 132;
    /// u32: bumped to wake producers.
    pub const SEND_EVENT: usize = 136;
    /// u32: messages consumed (wraps).
    pub const RECEIVED: usize = 140;
    /// u32: who consumed last, as `LAST_SENDER` (a caching receiver's token, else 0).
    pub const LAST_RECEIVER: usize = 144;
    /// Mutex cell serialising producers.
    pub const SEND_LOCK: usize = 192;
    /// Mutex cell serialising consumers.
    pub const RECV_LOCK: usize = 256;
    /// 14 u32: two role bits (producer, consumer) per attach slot: see `crate::peers`.
    pub const ROLES: usize = 320;
    /// The ring itself.
    pub const RING: usize = 512;
}

use layout::*;

/// "chnl": the creator's last write; openers wait for it.
pub const CHANNEL_MAGIC: u32 = 0x6c6e_6863;
pub const CHANNEL_VERSION: u32 = 1;
pub const MIN_CAPACITY: usize = 64;
pub const MAX_CAPACITY: usize = 1 << 30;
/// Codec ids recorded in a channel (the index into [`CODECS`]): how its messages' bytes are to be
/// read. This crate moves bytes; the codecs are applied by the language bindings.
pub const CODECS: [&str; 4] = ["bytes", "string", "json", "v8"];
/// Raw bytes.
pub const CODEC_BYTES: u32 = 0;
/// UTF-8 text.
pub const CODEC_STRING: u32 = 1;
/// UTF-8 JSON text.
pub const CODEC_JSON: u32 = 2;
/// V8's structured-clone serialisation (Node, Deno and Bun only).
pub const CODEC_V8: u32 = 3;
/// A blocking send or receive spins this long before sleeping in the kernel.
const SPIN: Duration = Duration::from_micros(50);
/// Longest single sleep: the condition is re-checked between sleeps.
const SLEEP_SLICE: Duration = Duration::from_secs(1);

/// Traffic counters of a channel (both wrap at 2^32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelStats {
    pub sent: u32,
    pub received: u32,
    pub bytes_in_flight: u32,
    pub capacity: u32,
    pub ended: bool,
}

/// What a waiting receiver (or sender) does once every producer (or consumer) it saw is gone:
/// dead, or closed (see [`crate::peers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IfPeersGone {
    /// Keep waiting (the default): another may come.
    #[default]
    Wait,
    /// Receivers: treat the empty channel as ended (`ChannelEnded`). Senders: fail with
    /// `NoConsumers` (a message cannot be "ended" into a channel nobody reads).
    End,
    /// Receivers fail with `NoProducers`, senders with `NoConsumers`.
    Fail,
}

/// A channel mapped into this process.
pub struct Channel {
    segment: Segment,
    capacity: u32,
    /// Roles this mapping announced (`peers::PRODUCER`, `peers::CONSUMER`).
    announced: AtomicU32,
    /// `IfPeersGone` as its discriminant (settable through a shared reference).
    if_peers_gone: AtomicU32,
    /// The in-flight table of `take` (`crate::queue`), opened on first use.
    pub(crate) inflight: std::sync::OnceLock<crate::map::SharedMap>,
    /// `take`: f64 bits of the time (ms since the epoch) before which no record is due.
    pub(crate) next_scan: std::sync::atomic::AtomicU64,
}

impl Channel {
    /// Creates channel `name` with a ring of `capacity` bytes (rounded up to a power of two).
    pub fn create(name: &str, capacity: usize, codec: u32) -> Result<Channel> {
        if !(1..=MAX_CAPACITY).contains(&capacity) {
            return Err(Error::new(
                ErrorCode::OutOfRange,
                format!("The capacity must be from 1 to {MAX_CAPACITY} bytes, not {capacity}"),
            ));
        }
        let ring = capacity.max(MIN_CAPACITY).next_power_of_two();
        let options = CreateOptions {
            kind: Kind::Channel,
            ..CreateOptions::new(RING + ring)
        };
        let segment = Segment::create(name, options)?;
        let channel = Channel {
            segment,
            capacity: ring as u32,
            announced: AtomicU32::new(0),
            if_peers_gone: AtomicU32::new(IfPeersGone::Wait as u32),
            inflight: std::sync::OnceLock::new(),
            next_scan: std::sync::atomic::AtomicU64::new(0),
        };
        channel
            .word(VERSION)
            .store(CHANNEL_VERSION, Ordering::Relaxed);
        channel.word(CAPACITY).store(ring as u32, Ordering::Relaxed);
        channel.word(CODEC).store(codec, Ordering::Relaxed);
        peers::join(&channel.segment);
        for lock in [SEND_LOCK, RECV_LOCK] {
            // Shown by `inspect` (as the JavaScript side notes them when it first uses them).
            channel
                .segment
                .note_placed_mutex(lock)
                .expect("the side locks lie in every channel's data area");
        }
        // SYNC POINT (creator): openers that see the magic see the fields above.
        channel.word(READY).store(CHANNEL_MAGIC, Ordering::Release);
        Ok(channel)
    }

    /// Opens channel `name`, waiting up to `ready_timeout` for its creator to finish.
    pub fn open(name: &str, ready_timeout: Duration) -> Result<Channel> {
        let deadline = platform::deadline_after(Some(ready_timeout));
        let segment = Segment::open(name, ready_timeout)?;
        if segment.info().kind != Kind::Channel {
            return Err(Error::new(
                ErrorCode::WrongKind,
                format!("{name:?} is a plain segment, not a channel"),
            ));
        }
        // The kind is only a claim: a header that says "channel" over a data area too small for
        // the control block is damaged, and must not be read past its end.
        if segment.data_len() < RING + MIN_CAPACITY {
            return Err(corrupt(format!(
                "a {}-byte data area cannot hold a channel",
                segment.data_len()
            )));
        }
        let mut channel = Channel {
            segment,
            capacity: 0,
            announced: AtomicU32::new(0),
            if_peers_gone: AtomicU32::new(IfPeersGone::Wait as u32),
            inflight: std::sync::OnceLock::new(),
            next_scan: std::sync::atomic::AtomicU64::new(0),
        };
        while channel.word(READY).load(Ordering::Acquire) != CHANNEL_MAGIC {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::new(
                    ErrorCode::NotReady,
                    format!("Channel {name:?} was never initialised"),
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let version = channel.word(VERSION).load(Ordering::Relaxed);
        if version != CHANNEL_VERSION {
            return Err(Error::new(
                ErrorCode::VersionMismatch,
                format!(
                    "Channel {name:?} uses channel layout {version}; this reads {CHANNEL_VERSION}"
                ),
            ));
        }
        let capacity = channel.word(CAPACITY).load(Ordering::Relaxed) as usize;
        if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity)
            || !capacity.is_power_of_two()
            || RING + capacity > channel.segment.data_len()
        {
            return Err(corrupt(format!("impossible capacity {capacity}")));
        }
        channel.capacity = capacity as u32;
        peers::join(&channel.segment);
        Ok(channel)
    }

    /// What blocking `recv` and `send` do once every producer (consumer) is gone; see
    /// [`IfPeersGone`]. Detected before each sleep: within a sleep slice (1 s) of a death, at
    /// once when a peer closes its handle (or drops it, in Rust).
    pub fn set_if_peers_gone(&self, mode: IfPeersGone) {
        self.if_peers_gone.store(mode as u32, Ordering::Relaxed);
    }

    /// Who produces into and consumes from this channel, alive or dead.
    pub fn peers(&self) -> Peers {
        peers::peers(&self.segment)
    }

    /// Records this mapping's role the first time it plays it.
    pub(crate) fn announce(&self, role: u32) {
        if self.announced.load(Ordering::Relaxed) & role == 0 {
            // Shared memory first (idempotent), then the local cache: no thread skips the
            // announcement while another is between the two.
            peers::announce(&self.segment, role);
            self.announced.fetch_or(role, Ordering::Relaxed);
        }
    }

    /// Before a sleep: stops a receiver (`role` PRODUCER) or sender (CONSUMER) whose other side
    /// is gone, if it asked to, and if `still_waiting()` (re-read after the peers: a producer's
    /// last message is published before it can be seen dead) says the wait is still needed.
    pub(crate) fn check_peers(&self, role: u32, still_waiting: impl Fn() -> bool) -> Result<()> {
        let mode = self.if_peers_gone.load(Ordering::Relaxed);
        if mode == IfPeersGone::Wait as u32 || !self.peers().gone(role) || !still_waiting() {
            return Ok(());
        }
        let name = self.name();
        Err(match role {
            peers::PRODUCER if mode == IfPeersGone::End as u32 => Error::new(
                ErrorCode::ChannelEnded,
                format!("Channel {name:?} is empty and every producer is gone"),
            ),
            peers::PRODUCER => Error::new(
                ErrorCode::NoProducers,
                format!("Channel {name:?} is empty and every producer is gone"),
            ),
            _ => Error::new(
                ErrorCode::NoConsumers,
                format!("Channel {name:?} is full and every consumer is gone"),
            ),
        })
    }

    pub fn name(&self) -> &str {
        self.segment.name()
    }

    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// The codec id recorded at creation (see the JavaScript `Codec`; 0 is raw bytes).
    pub fn codec(&self) -> u32 {
        self.word(CODEC).load(Ordering::Relaxed)
    }

    pub fn is_ended(&self) -> bool {
        self.word(ENDED).load(Ordering::Acquire) != 0
    }

    pub fn stats(&self) -> ChannelStats {
        ChannelStats {
            sent: self.word(SENT).load(Ordering::Relaxed),
            received: self.word(RECEIVED).load(Ordering::Relaxed),
            bytes_in_flight: self.in_flight(),
            capacity: self.capacity,
            ended: self.is_ended(),
        }
    }

    /// Ends the stream for every process: later sends fail with `ChannelEnded`, receivers
    /// drain what is left and then get `ChannelEnded`. Idempotent. The flag is set under the
    /// send lock, so no send that has not published yet can publish after it (`timeout` bounds
    /// the wait for that lock; `None`: no limit).
    pub fn end(&self, timeout: Option<Duration>) -> Result<()> {
        self.locked(SEND_LOCK, platform::deadline_after(timeout), || {
            self.word(ENDED).store(1, Ordering::SeqCst);
            Ok(())
        })?;
        for event in [RECV_EVENT, SEND_EVENT] {
            self.word(event).fetch_add(1, Ordering::SeqCst);
            platform::wake(self.word(event), u32::MAX);
        }
        Ok(())
    }

    /// Appends `message` if there is room now. Never waits: `Ok(false)` when the channel is full
    /// or another producer holds the send lock at this instant.
    pub fn try_send(&self, message: &[u8]) -> Result<bool> {
        self.check_sendable(message.len())?;
        self.announce(peers::PRODUCER);
        Ok(self.append(message, Attempt::Once)? == Appended::Yes)
    }

    /// Appends `message`, waiting while the channel is full; `TimedOut` after `timeout`.
    pub fn send(&self, message: &[u8], timeout: Option<Duration>) -> Result<()> {
        self.check_sendable(message.len())?;
        self.announce(peers::PRODUCER);
        let deadline = platform::deadline_after(timeout);
        let need = frame_size(message.len());
        loop {
            if self.append(message, Attempt::Until(deadline))? == Appended::Yes {
                return Ok(());
            }
            let ready = || self.free() >= need || self.is_ended();
            self.wait_for(
                SEND_SLEEPERS,
                SEND_EVENT,
                deadline,
                "room in the channel",
                ready,
                || self.check_peers(peers::CONSUMER, || !ready()),
            )?;
            if self.is_ended() {
                return Err(ended(self.name()));
            }
        }
    }

    /// Takes the next message if one is there. Never waits: `Ok(None)` when the channel is
    /// empty or another consumer holds the receive lock at this instant.
    pub fn try_recv(&self) -> Result<Option<Vec<u8>>> {
        self.announce(peers::CONSUMER);
        self.take_one(Attempt::Once)
    }

    /// Takes the next message, waiting for one; `ChannelEnded` once ended and drained.
    pub fn recv(&self, timeout: Option<Duration>) -> Result<Vec<u8>> {
        self.announce(peers::CONSUMER);
        let deadline = platform::deadline_after(timeout);
        loop {
            if let Some(message) = self.take_one(Attempt::Until(deadline))? {
                return Ok(message);
            }
            if self.is_ended() && self.in_flight() == 0 {
                return Err(ended(self.name()));
            }
            let ready = || self.in_flight() != 0 || self.is_ended();
            self.wait_for(
                RECV_SLEEPERS,
                RECV_EVENT,
                deadline,
                "a message",
                ready,
                || self.check_peers(peers::PRODUCER, || !ready()),
            )?;
        }
    }

    /// Waits (at most `timeout`, and at most one sleep slice) until a message may be there or
    /// the stream ended, without taking anything: for bindings whose receivers wait on one
    /// thread and receive on another (asyncio). Whether one may be there now.
    pub fn wait_readable(&self, timeout: Duration) -> Result<bool> {
        self.announce(peers::CONSUMER);
        let ready = || self.in_flight() != 0 || self.is_ended();
        if !ready() {
            self.wait_readable_for(timeout, || true)?;
        }
        Ok(ready())
    }

    /// As [`wait_readable`](Self::wait_readable), until there may be room for a `length`-byte
    /// message or the stream ended.
    pub fn wait_writable(&self, length: usize, timeout: Duration) -> Result<bool> {
        self.announce(peers::PRODUCER);
        let need = frame_size(length);
        let ready = || self.free() >= need || self.is_ended();
        if !ready() {
            let deadline = platform::deadline_after(Some(timeout));
            match self.wait_for(
                SEND_SLEEPERS,
                SEND_EVENT,
                deadline,
                "room in the channel",
                ready,
                || self.check_peers(peers::CONSUMER, || !ready()),
            ) {
                Err(e) if e.code() == ErrorCode::TimedOut => return Ok(false),
                other => other?,
            }
        }
        Ok(ready())
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        self.segment
            .word_at(offset)
            .expect("control-block offsets lie inside every channel's data area")
    }

    fn lock(&self, offset: usize) -> &MutexCell {
        self.segment
            .mutex_at(offset)
            .expect("lock offsets lie inside every channel's data area")
    }

    fn ring(&self) -> *mut u8 {
        // SAFETY: RING + capacity <= data_len was checked when the channel was created or opened.
        unsafe { self.segment.data_ptr().add(RING) }
    }

    fn in_flight(&self) -> u32 {
        let tail = self.word(TAIL).load(Ordering::SeqCst);
        tail.wrapping_sub(self.word(HEAD).load(Ordering::SeqCst))
    }

    fn free(&self) -> usize {
        (self.capacity as usize).saturating_sub(self.in_flight() as usize)
    }

    fn check_sendable(&self, length: usize) -> Result<()> {
        if length > self.capacity as usize - 4 {
            return Err(Error::new(
                ErrorCode::OutOfRange,
                format!(
                    "A {length}-byte message can never fit this channel: the limit is {} bytes",
                    self.capacity - 4
                ),
            ));
        }
        if self.is_ended() {
            return Err(ended(self.name()));
        }
        Ok(())
    }

    /// `tail - head`, validated: a damaged index is an error, never an out-of-bounds access.
    fn used(&self, head: u32, tail: u32) -> Result<usize> {
        let used = tail.wrapping_sub(head);
        if used > self.capacity || !used.is_multiple_of(4) || !head.is_multiple_of(4) {
            return Err(corrupt(format!("indices head={head} tail={tail}")));
        }
        Ok(used as usize)
    }

    /// Runs `f` holding the lock at `offset` (taken by `deadline`).
    fn locked<R>(
        &self,
        offset: usize,
        deadline: Option<Instant>,
        f: impl FnOnce() -> Result<R>,
    ) -> Result<R> {
        let me = platform::current_thread();
        let options = LockOptions {
            deadline,
            presume_dead_after: None,
        };
        self.lock(offset).lock_with(&me, options)?;
        let result = f();
        let _ = self.lock(offset).unlock(&me);
        result
    }

    /// Runs `f` holding the lock at `offset` as `attempt` says; `None` if it was busy (`Once`).
    fn locked_as<R>(
        &self,
        offset: usize,
        attempt: Attempt,
        f: impl FnOnce() -> Result<R>,
    ) -> Result<Option<R>> {
        match attempt {
            Attempt::Until(deadline) => self.locked(offset, deadline, f).map(Some),
            Attempt::Once => {
                let me = platform::current_thread();
                if self.lock(offset).try_lock(&me).is_none() {
                    return Ok(None);
                }
                let result = f();
                let _ = self.lock(offset).unlock(&me);
                result.map(Some)
            }
        }
    }

    fn append(&self, message: &[u8], attempt: Attempt) -> Result<Appended> {
        let appended = self.locked_as(SEND_LOCK, attempt, || {
            // Re-checked under the send lock: `end` sets the flag under it, so nothing published
            // after this check can follow the end of the stream.
            if self.is_ended() {
                return Err(ended(self.name()));
            }
            let tail = self.word(TAIL).load(Ordering::SeqCst);
            let used = self.used(self.word(HEAD).load(Ordering::SeqCst), tail)?;
            let need = frame_size(message.len());
            if self.capacity as usize - used < need {
                return Ok(Appended::NoRoom);
            }
            let start = (tail & (self.capacity - 1)) as usize;
            self.copy_in(start, &(message.len() as u32).to_le_bytes());
            self.copy_in((start + 4) % self.capacity as usize, message);
            // SYNC POINT (publish): the message is whole before the tail moves past it.
            self.word(TAIL)
                .store(tail.wrapping_add(need as u32), Ordering::SeqCst);
            let sent = self.word(SENT).load(Ordering::Relaxed);
            self.word(SENT)
                .store(sent.wrapping_add(1), Ordering::Relaxed);
            // Not a caching sender: any cached `head` of another handle is no longer to be trusted.
            self.word(LAST_SENDER).store(0, Ordering::Relaxed);
            Ok(Appended::Yes)
        })?;
        let appended = appended.unwrap_or(Appended::Busy);
        if appended == Appended::Yes {
            self.wake_sleepers(RECV_SLEEPERS, RECV_EVENT);
        }
        Ok(appended)
    }

    fn take_one(&self, attempt: Attempt) -> Result<Option<Vec<u8>>> {
        self.take_then(attempt, Ok)
    }

    /// Takes the next message as `take` does, waiting for the receive lock until `deadline`,
    /// and passes it to `f` before consuming it: if `f` fails, the message stays in the ring.
    pub(crate) fn take_with<R>(
        &self,
        deadline: Option<Instant>,
        f: impl FnOnce(Vec<u8>) -> Result<R>,
    ) -> Result<Option<R>> {
        self.take_then(Attempt::Until(deadline), f)
    }

    /// Bytes of messages waiting in the ring.
    pub(crate) fn bytes_waiting(&self) -> u32 {
        self.in_flight()
    }

    /// One sleep of at most `slice` until a message may be there or the stream ended (never a
    /// `TimedOut`); with `IfPeersGone`, stops once every producer is gone and `nothing_else()`.
    pub(crate) fn wait_readable_for(
        &self,
        slice: Duration,
        nothing_else: impl Fn() -> bool,
    ) -> Result<()> {
        let ready = || self.in_flight() != 0 || self.is_ended();
        let deadline = platform::deadline_after(Some(slice));
        match self.wait_for(
            RECV_SLEEPERS,
            RECV_EVENT,
            deadline,
            "a message",
            ready,
            || self.check_peers(peers::PRODUCER, || !ready() && nothing_else()),
        ) {
            Err(e) if e.code() == ErrorCode::TimedOut => Ok(()),
            other => other,
        }
    }

    fn take_then<R>(
        &self,
        attempt: Attempt,
        f: impl FnOnce(Vec<u8>) -> Result<R>,
    ) -> Result<Option<R>> {
        let message = self
            .locked_as(RECV_LOCK, attempt, || {
                let head = self.word(HEAD).load(Ordering::SeqCst);
                let used = self.used(head, self.word(TAIL).load(Ordering::SeqCst))?;
                if used == 0 {
                    return Ok(None);
                }
                let start = (head & (self.capacity - 1)) as usize;
                let mut length = [0u8; 4];
                self.copy_out(start, &mut length);
                let length = u32::from_le_bytes(length) as usize;
                if length > self.capacity as usize - 4 || frame_size(length) > used {
                    return Err(corrupt(format!(
                        "message length {length} with {used} bytes in flight"
                    )));
                }
                let mut message = vec![0u8; length];
                self.copy_out((start + 4) % self.capacity as usize, &mut message);
                let out = f(message)?;
                // SYNC POINT (consume): the bytes are copied out before they are handed back.
                self.word(HEAD).store(
                    head.wrapping_add(frame_size(length) as u32),
                    Ordering::SeqCst,
                );
                let received = self.word(RECEIVED).load(Ordering::Relaxed);
                self.word(RECEIVED)
                    .store(received.wrapping_add(1), Ordering::Relaxed);
                self.word(LAST_RECEIVER).store(0, Ordering::Relaxed);
                Ok(Some(out))
            })?
            .flatten();
        if message.is_some() {
            self.wake_sleepers(SEND_SLEEPERS, SEND_EVENT);
        }
        Ok(message)
    }

    /// Copies `bytes` into the ring at `position`, wrapping at the end.
    fn copy_in(&self, position: usize, bytes: &[u8]) {
        let capacity = self.capacity as usize;
        let first = bytes.len().min(capacity - position);
        // SAFETY: position < capacity and `first` bytes fit before the end of the ring, the rest
        // (< capacity) from its start; the ring lies inside the mapped data area. Only producers
        // holding the send lock write this unpublished region; other processes read it only
        // after the tail store publishes it. A hostile peer writing concurrently can only make
        // these bytes garbage: they are never interpreted as Rust values.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ring().add(position), first);
            std::ptr::copy_nonoverlapping(
                bytes[first..].as_ptr(),
                self.ring(),
                bytes.len() - first,
            );
        }
    }

    /// Copies from the ring at `position` into `bytes`, wrapping at the end.
    fn copy_out(&self, position: usize, bytes: &mut [u8]) {
        let capacity = self.capacity as usize;
        let first = bytes.len().min(capacity - position);
        // SAFETY: bounds as in `copy_in`; the region was published by the tail store we read
        // (SeqCst) and stays ours until the head store hands it back.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ring().add(position), bytes.as_mut_ptr(), first);
            let rest = bytes.len() - first;
            std::ptr::copy_nonoverlapping(self.ring(), bytes[first..].as_mut_ptr(), rest);
        }
    }

    /// The sleeper protocol of docs/CHANNELS.md: read the event, raise the flag, re-check, sleep.
    /// After the spin and before sleeping, `stop()` may end the wait with an error (the other
    /// side is gone).
    fn wait_for(
        &self,
        flag: usize,
        event: usize,
        deadline: Option<Instant>,
        what: &str,
        ready: impl Fn() -> bool,
        stop: impl Fn() -> Result<()>,
    ) -> Result<()> {
        let spin_until = Instant::now() + SPIN;
        while Instant::now() < spin_until {
            if ready() {
                return Ok(());
            }
            std::hint::spin_loop();
        }
        stop()?;
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

    /// Wakes one side's sleepers if any announced itself (the waker clears the flag).
    fn wake_sleepers(&self, flag: usize, event: usize) {
        if self.word(flag).load(Ordering::SeqCst) != 0
            && self.word(flag).swap(0, Ordering::SeqCst) != 0
        {
            self.word(event).fetch_add(1, Ordering::SeqCst);
            platform::wake(self.word(event), u32::MAX);
        }
    }
}

impl Drop for Channel {
    /// A producer (consumer) going away wakes waiting receivers (senders) once its attach slot
    /// is free, so that those stopping when the other side is gone look again at once.
    fn drop(&mut self) {
        let roles = *self.announced.get_mut();
        if roles != 0 {
            self.segment.release_attachment();
            peers::left(&self.segment, roles);
        }
    }
}

/// How a send or receive takes its side's lock.
#[derive(Clone, Copy)]
enum Attempt {
    /// Only if it is free now (`try_send`, `try_recv`): never waits.
    Once,
    /// Waiting until the deadline (`None`: no limit).
    Until(Option<Instant>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Appended {
    Yes,
    NoRoom,
    /// The send lock was held by another producer (`Attempt::Once` only).
    Busy,
}

fn frame_size(length: usize) -> usize {
    4 + length.next_multiple_of(4)
}

fn corrupt(what: String) -> Error {
    Error::new(ErrorCode::Corrupt, format!("Damaged channel: {what}"))
}

fn ended(name: &str) -> Error {
    Error::new(
        ErrorCode::ChannelEnded,
        format!("Channel {name:?} has ended"),
    )
}
