//! Acknowledged receive on a channel (docs/CHANNELS.md, "Acknowledged receive"), the protocol of
//! the JavaScript `ch.take()`, byte for byte: a message taken from the ring goes into the
//! channel's in-flight table (the `SharedMap` `<channel>.inflight`) under the receive lock, the
//! record written before the head moves, so a crash cannot lose it; `ack` removes it; a message
//! whose holder (a thread) died or whose lease ended is taken again by the next `take` of any
//! consumer, in any language, with its delivery count, or sent to a dead-letter channel after
//! `max_deliveries`.
//!
//! ```text
//! record offset  size  field
//!      0          20   holder: tid, namespace, start time (lo, hi), pid (u32 each)
//!     20           4   deliveries: 1 on the first take, +1 on each redelivery
//!     24           8   deadline: f64, ms since the epoch (0: given back, due at once)
//!     32         ...   the message's bytes, as they were in the ring
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::channel::Channel;
use crate::error::{Error, ErrorCode, Result};
use crate::map::{MapOptions, SharedMap};
use crate::name::MAX_NAME_LEN;
use crate::platform::{self, Liveness, ThreadIdentity};
use crate::segment::OpenOptions;

/// Entries of an in-flight table: messages taken and not acknowledged, channel-wide.
pub const INFLIGHT_CAPACITY: usize = 4096;
/// The in-flight table of channel `name` is the map `name + INFLIGHT_SUFFIX`.
pub const INFLIGHT_SUFFIX: &str = ".inflight";
/// Bytes before the payload in a record.
pub const RECORD_HEADER: usize = 32;
/// The longest lease (as the TypeScript `leaseMs`: 2^31 ms).
pub const MAX_LEASE: Duration = Duration::from_millis(1 << 31);
/// Longest sleep of a waiting take: leases and deaths are looked for between sleeps.
const SLEEP_SLICE: Duration = Duration::from_millis(250);
/// How often a handle looks through the table for messages due again, at most, while messages
/// keep coming (a look reads every record).
const SCAN_EVERY_MS: f64 = 50.0;

/// The in-flight table's heap: the same for every opener, computed from the ring's capacity.
pub fn inflight_memory(ring_capacity: usize) -> usize {
    (4 * ring_capacity + 4 * RECORD_HEADER * INFLIGHT_CAPACITY)
        .max(1 << 20)
        .next_power_of_two()
}

/// Opens (or creates) the in-flight table of channel `name`, whose ring holds `ring_capacity`
/// bytes.
pub fn open_inflight(name: &str, ring_capacity: usize) -> Result<SharedMap> {
    let map_name = format!("{name}{INFLIGHT_SUFFIX}");
    if map_name.len() > MAX_NAME_LEN {
        return Err(Error::new(
            ErrorCode::NameTooLong,
            format!(
                "take() keeps the messages in flight in a map named \"<channel>{INFLIGHT_SUFFIX}\": the \
                 channel's name must be at most {} characters for take(), not {}",
                MAX_NAME_LEN - INFLIGHT_SUFFIX.len(),
                name.len()
            ),
        ));
    }
    let options = MapOptions {
        memory: inflight_memory(ring_capacity),
        codec: crate::channel::CODEC_BYTES,
        ..MapOptions::new(INFLIGHT_CAPACITY)
    };
    SharedMap::open_or_create(
        &format!("{name}.inflight"),
        options,
        &OpenOptions::default(),
    )
    .map(|(map, _)| map)
}

/// Reports a message given up after `max_deliveries` without a dead letter: its bytes and how
/// many times it was delivered.
pub type OnDropped<'a> = &'a dyn Fn(&[u8], u32);

/// How `take` behaves.
pub struct TakeOptions<'a> {
    /// How long to wait for a message (`None`: no limit).
    pub timeout: Option<Duration>,
    /// How long the taker has to `ack` before the message is delivered again. Default 30 s.
    pub lease: Duration,
    /// Deliveries after which a message goes to `dead_letter` (or `on_dropped`). Default 5.
    pub max_deliveries: u32,
    /// Where a message goes after `max_deliveries` (its bytes as they are).
    pub dead_letter: Option<&'a Channel>,
    /// Called with the bytes and delivery count of a message given up without a dead letter.
    pub on_dropped: Option<OnDropped<'a>>,
}

impl Default for TakeOptions<'_> {
    fn default() -> Self {
        TakeOptions {
            timeout: None,
            lease: Duration::from_secs(30),
            max_deliveries: 5,
            dead_letter: None,
            on_dropped: None,
        }
    }
}

/// A message taken with [`Channel::take`]: acknowledge it when done ([`Channel::ack`]), or give
/// it back ([`Channel::nack`]). It belongs to the thread that took it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Its id in the in-flight table.
    pub id: String,
    /// How many times it has been delivered, this time included.
    pub deliveries: u32,
    /// The message.
    pub payload: Vec<u8>,
}

struct Record {
    holder: ThreadIdentity,
    deliveries: u32,
    deadline: f64,
    payload: Vec<u8>,
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn u32_at(bytes: &[u8], index: usize) -> u32 {
    u32::from_le_bytes(bytes[index * 4..index * 4 + 4].try_into().unwrap())
}

fn record(holder: &ThreadIdentity, deliveries: u32, deadline: f64, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(RECORD_HEADER + payload.len());
    for word in [
        holder.tid,
        holder.namespace,
        holder.start_time as u32,
        (holder.start_time >> 32) as u32,
        holder.pid,
        deliveries,
    ] {
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    bytes.extend_from_slice(&deadline.to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// A record as read from shared memory (untrusted: too short is `None`).
fn parse(bytes: &[u8]) -> Option<Record> {
    if bytes.len() < RECORD_HEADER {
        return None;
    }
    Some(Record {
        holder: ThreadIdentity {
            tid: u32_at(bytes, 0),
            namespace: u32_at(bytes, 1),
            start_time: u64::from(u32_at(bytes, 2)) | u64::from(u32_at(bytes, 3)) << 32,
            pid: u32_at(bytes, 4),
        },
        deliveries: u32_at(bytes, 5),
        deadline: f64::from_le_bytes(bytes[24..32].try_into().unwrap()),
        payload: bytes[RECORD_HEADER..].to_vec(),
    })
}

/// Liveness verdicts of one scan of the table: each holder is judged once (a scan may read
/// thousands of records, and it re-checks each claim under the map's lock).
struct Verdicts {
    me: ThreadIdentity,
    /// By holder: (tid, namespace, start time, pid).
    dead: std::collections::HashMap<(u32, u32, u64, u32), bool>,
}

impl Verdicts {
    fn new() -> Self {
        Verdicts {
            me: platform::current_thread(),
            dead: std::collections::HashMap::new(),
        }
    }

    /// Whether a record is due again: its lease ended, or its holder is dead (a holder in
    /// another PID namespace is never judged dead).
    fn due(&mut self, r: &Record, now: f64) -> bool {
        if r.deadline <= now {
            return true;
        }
        if r.holder == self.me {
            return false;
        }
        *self
            .dead
            .entry((
                r.holder.tid,
                r.holder.namespace,
                r.holder.start_time,
                r.holder.pid,
            ))
            .or_insert_with(|| platform::liveness(&r.holder) == Liveness::Dead)
    }
}

/// Ids unique per process and per take: a prefix drawn once (with the pid in it, so that a
/// forked child, which inherits the prefix and the counter, still makes ids of its own) and a
/// counter.
fn new_id() -> String {
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(crate::header::new_instance);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
    format!("j:{prefix:016x}.{:x}.r{n:x}", std::process::id())
}

impl Channel {
    /// Takes the next message for processing, to be acknowledged: until [`ack`](Self::ack) it
    /// stays in the channel's in-flight table, and if this thread dies, does not ack within
    /// `options.lease`, or calls [`nack`](Self::nack), the next `take` of any consumer (in any
    /// process or language) gets it again, with `deliveries` counting. At least once, where
    /// `recv` is exactly once. `ChannelEnded` once the channel ended, is drained and nothing is
    /// in flight; `TimedOut` after `options.timeout`.
    pub fn take(&self, options: &TakeOptions<'_>) -> Result<Job> {
        if options.max_deliveries == 0 {
            return Err(Error::new(
                ErrorCode::OutOfRange,
                "max_deliveries must be at least 1",
            ));
        }
        if options.lease < Duration::from_millis(1) || options.lease > MAX_LEASE {
            return Err(Error::new(
                ErrorCode::OutOfRange,
                format!(
                    "The lease must be from 1 ms to {} s, not {:?}",
                    MAX_LEASE.as_secs(),
                    options.lease
                ),
            ));
        }
        self.announce(crate::peers::CONSUMER);
        let inflight = self.inflight()?;
        let deadline = platform::deadline_after(options.timeout);
        let lease_ms = options.lease.as_secs_f64() * 1000.0;
        loop {
            if let Some(job) = self.redeliver(inflight, lease_ms, options)? {
                return Ok(job);
            }
            let me = platform::current_thread();
            let taken = self.take_with(deadline, |message| {
                // The record goes into the table BEFORE the head moves: a consumer killed in
                // between leaves the message in the ring, and possibly in the table (delivered
                // twice: at least once), never lost.
                let id = new_id();
                inflight.set(
                    id.as_bytes(),
                    &record(&me, 1, now_ms() + lease_ms, &message),
                    None,
                )?;
                Ok(Job {
                    id,
                    deliveries: 1,
                    payload: message,
                })
            })?;
            if let Some(job) = taken {
                return Ok(job);
            }
            // The end, and peers gone, before the timeout: as the TypeScript side decides.
            let drained_after_end = self.is_ended() && self.bytes_waiting() == 0;
            if drained_after_end && inflight.is_empty() {
                return Err(Error::new(
                    ErrorCode::ChannelEnded,
                    format!("Channel {:?} has ended", self.name()),
                ));
            }
            // A message in flight may still come back: only an empty table lets producers be
            // "gone".
            self.check_peers(crate::peers::PRODUCER, || {
                self.bytes_waiting() == 0 && inflight.is_empty()
            })?;
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                self.next_scan.store(0, Ordering::Relaxed);
                if let Some(job) = self.redeliver(inflight, lease_ms, options)? {
                    return Ok(job); // a last look before giving up
                }
                return Err(Error::new(
                    ErrorCode::TimedOut,
                    format!(
                        "Timed out waiting for a message in channel {:?}",
                        self.name()
                    ),
                ));
            }
            let slice = SLEEP_SLICE
                .min(options.lease)
                .min(left.unwrap_or(SLEEP_SLICE));
            if drained_after_end {
                // Ended and drained, but messages are in flight: one may come back (its holder
                // dies, its lease ends, it is given back). Nothing bumps the event: look later.
                std::thread::sleep(slice);
                continue;
            }
            self.wait_readable_for(slice, || inflight.is_empty())?;
        }
    }

    /// Done with `job`: removes it for good. `false` if it was no longer this thread's (its
    /// lease ended and another consumer took it).
    pub fn ack(&self, job: &Job) -> Result<bool> {
        self.settle(job, |_| None)
    }

    /// Gives `job` back: the next `take` (of any consumer) gets it again. `false` if it was no
    /// longer this thread's.
    pub fn nack(&self, job: &Job) -> Result<bool> {
        let given_back = self.settle(job, |r| {
            Some(record(&r.holder, r.deliveries, 0.0, &r.payload))
        })?;
        self.next_scan.store(0, Ordering::Relaxed);
        Ok(given_back)
    }

    /// Applies `change` to `job`'s record if it is still this delivery's (same holder, same
    /// count); whether it was.
    fn settle(&self, job: &Job, change: impl FnOnce(Record) -> Option<Vec<u8>>) -> Result<bool> {
        let inflight = self.inflight()?;
        let me = platform::current_thread();
        let mut mine = false;
        inflight.update(job.id.as_bytes(), None, |current| {
            match current.and_then(parse) {
                Some(r) if r.holder == me && r.deliveries == job.deliveries => {
                    mine = true;
                    change(r)
                }
                _ => current.map(<[u8]>::to_vec),
            }
        })?;
        Ok(mine)
    }

    /// The in-flight table, opened on first use.
    fn inflight(&self) -> Result<&SharedMap> {
        if let Some(map) = self.inflight.get() {
            return Ok(map);
        }
        let map = open_inflight(self.name(), self.capacity())?;
        Ok(self.inflight.get_or_init(|| map))
    }

    /// Takes over one in-flight message whose holder died or whose lease ended, if any.
    fn redeliver(
        &self,
        inflight: &SharedMap,
        lease_ms: f64,
        options: &TakeOptions<'_>,
    ) -> Result<Option<Job>> {
        if inflight.is_empty() {
            return Ok(None);
        }
        let now = now_ms();
        if now < f64::from_bits(self.next_scan.load(Ordering::Relaxed)) {
            return Ok(None);
        }
        let mut next = now + SCAN_EVERY_MS;
        let mut verdicts = Verdicts::new();
        let me = verdicts.me;
        for (key, value) in inflight.entries()? {
            let Some(seen) = parse(&value) else {
                continue;
            };
            if !verdicts.due(&seen, now) {
                next = next.min(seen.deadline);
                continue;
            }
            let mut claimed = None;
            inflight.update(&key, None, |current| match current.and_then(parse) {
                // Re-checked under the map's lock: another consumer may have claimed it.
                Some(r) if verdicts.due(&r, now) => {
                    let deliveries = r.deliveries.saturating_add(1);
                    let bytes = record(&me, deliveries, now + lease_ms, &r.payload);
                    claimed = Some((deliveries, r.payload));
                    Some(bytes)
                }
                _ => current.map(<[u8]>::to_vec),
            })?;
            let Some((deliveries, payload)) = claimed else {
                continue;
            };
            if deliveries > options.max_deliveries {
                if let Some(dead_letter) = options.dead_letter {
                    dead_letter.send(&payload, Some(Duration::from_secs(10)))?;
                } else if let Some(report) = options.on_dropped {
                    report(&payload, deliveries - 1);
                }
                inflight.delete(&key)?;
                continue;
            }
            self.next_scan.store(0, Ordering::Relaxed); // more may be due
            return Ok(Some(Job {
                id: String::from_utf8_lossy(&key).into_owned(),
                deliveries,
                payload,
            }));
        }
        self.next_scan.store(next.to_bits(), Ordering::Relaxed);
        Ok(None)
    }
}
