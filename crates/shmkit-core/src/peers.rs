//! Channel peers: which mappings of a channel produce into it or consume from it, and whether
//! their processes are alive, so that receivers can stop waiting once every producer is gone and
//! senders once every consumer is (docs/CHANNELS.md, "Peers").
//!
//! Every mapping holds a slot in the segment's attach table (docs/LAYOUT.md). The channel's
//! control block keeps two role bits per attach slot, and a word of roles ever seen:
//!
//! ```text
//! data offset  field
//!     20       seen    bit 0: a producer announced itself once; bit 1: a consumer did
//!    320       roles   14 u32 words: slot s has bits (s % 16) * 2 (producer) and +1 (consumer)
//!                      of word s / 16
//! ```
//!
//! A mapping clears its slot's bits when it opens the channel ([`join`]: a previous holder of
//! the slot may have left them) and sets them on its first send or receive ([`announce`]). The
//! bits of a free slot mean nothing. Everything here errs towards "a peer is there": bits left by
//! a dead holder on a slot a new mapping has not cleared yet, a process whose liveness cannot be
//! judged, and mappings that found the attach table full all count as live peers. So a receiver
//! may wait longer than needed (a sleep slice), never stop while a producer that announced itself
//! lives. The words are untrusted like all shared memory: a scribbling peer can only make peers
//! appear or disappear, never make this code read outside the control block.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::attach::{Attacher, SLOTS};
use crate::channel::layout::{PEERS_SEEN, ROLES};
use crate::header::Kind;
use crate::platform::Liveness;
use crate::segment::Segment;

/// Role bit of a mapping that sent (or tried to send) a message.
pub const PRODUCER: u32 = 1;
/// Role bit of a mapping that received (or tried to receive or take) a message.
pub const CONSUMER: u32 = 2;
/// u32 words of role bits: two bits for each attach slot.
pub const ROLE_WORDS: usize = SLOTS.div_ceil(16);

/// One mapping of a channel that announced a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub pid: u32,
    /// [`PRODUCER`], [`CONSUMER`] or both.
    pub roles: u32,
    pub alive: Liveness,
}

/// A snapshot of a channel's peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peers {
    /// One entry per mapping (a process that opened the channel twice shows twice).
    pub peers: Vec<Peer>,
    /// Roles ever announced on this channel ([`PRODUCER`], [`CONSUMER`] bits).
    pub seen: u32,
    /// Mappings that found the attach table full: their roles are unknown, so they count as
    /// live peers of both kinds.
    pub unlisted: u32,
}

impl Peers {
    /// Mappings in `role` whose process is alive, or whose liveness cannot be judged.
    pub fn live(&self, role: u32) -> usize {
        self.peers
            .iter()
            .filter(|p| p.roles & role != 0 && p.alive != Liveness::Dead)
            .count()
    }

    /// Whether `role` was announced once and no mapping that could still hold it is left: the
    /// condition on which receivers (producers gone) and senders (consumers gone) stop waiting.
    pub fn gone(&self, role: u32) -> bool {
        self.seen & role != 0 && self.unlisted == 0 && self.live(role) == 0
    }
}

/// The control-block word at `offset`; `None` for a segment that is not a channel (whose data
/// area belongs to its user: never written here).
fn word(segment: &Segment, offset: usize) -> Option<&AtomicU32> {
    if segment.info().kind != Kind::Channel {
        return None;
    }
    segment.word_at(offset).ok()
}

/// The role word and bit shift of attach slot `slot`.
fn slot_bits(segment: &Segment, slot: usize) -> Option<(&AtomicU32, u32)> {
    let word = word(segment, ROLES + slot / 16 * 4)?;
    Some((word, (slot % 16) as u32 * 2))
}

/// Clears the role bits of this mapping's attach slot, left there by a previous holder of the
/// slot. Called once, right after opening a channel, before any [`announce`].
pub fn join(segment: &Segment) {
    if let Some((word, shift)) = segment.attach_slot().and_then(|s| slot_bits(segment, s)) {
        word.fetch_and(!(3 << shift), Ordering::SeqCst);
    }
}

/// Records that this mapping plays `role` ([`PRODUCER`] or [`CONSUMER`]). Idempotent; callers
/// remember what they announced and call this once per role.
pub fn announce(segment: &Segment, role: u32) {
    let role = role & (PRODUCER | CONSUMER);
    if let Some((word, shift)) = segment.attach_slot().and_then(|s| slot_bits(segment, s)) {
        word.fetch_or(role << shift, Ordering::SeqCst);
    }
    // After the slot's bits: whoever sees the role as seen also sees this peer.
    if let Some(seen) = word(segment, PEERS_SEEN) {
        seen.fetch_or(role, Ordering::SeqCst);
    }
}

/// Wakes the other side after a mapping that played `roles` let go of its attach slot (closed):
/// receivers when a producer left, senders when a consumer left, so that they look again at who
/// is left instead of sleeping out their slice.
pub fn left(segment: &Segment, roles: u32) {
    use crate::channel::layout::{RECV_EVENT, SEND_EVENT};
    for (role, event) in [(PRODUCER, RECV_EVENT), (CONSUMER, SEND_EVENT)] {
        if roles & role != 0 {
            if let Some(event) = word(segment, event) {
                event.fetch_add(1, Ordering::SeqCst);
                crate::platform::wake(event, u32::MAX);
            }
        }
    }
}

/// Who produces into and consumes from the channel in `segment`, with their liveness.
pub fn peers(segment: &Segment) -> Peers {
    peers_from(
        |offset| word(segment, offset).map(|w| w.load(Ordering::SeqCst)),
        |slot| segment.attacher_at(slot),
        segment.attach_overflow(),
    )
}

/// [`peers`] over any view of a channel: `data_word(offset)` reads the data area's u32 at a byte
/// offset (`None` past its end), `attacher_at(slot)` the attach table, `overflow` its count of
/// unlisted mappings. `Segment::inspect` uses it without attaching.
pub fn peers_from(
    data_word: impl Fn(usize) -> Option<u32>,
    attacher_at: impl Fn(usize) -> Option<Attacher>,
    overflow: u32,
) -> Peers {
    let mut peers = Vec::new();
    for index in 0..ROLE_WORDS {
        let Some(bits) = data_word(ROLES + index * 4) else {
            break;
        };
        if bits == 0 {
            continue;
        }
        for slot in index * 16..(index * 16 + 16).min(SLOTS) {
            let roles = (bits >> ((slot % 16) * 2)) & 3;
            if roles == 0 {
                continue;
            }
            if let Some(who) = attacher_at(slot) {
                peers.push(Peer {
                    pid: who.pid,
                    roles,
                    alive: who.alive,
                });
            }
        }
    }
    Peers {
        peers,
        seen: data_word(PEERS_SEEN).unwrap_or(0) & 3,
        unlisted: overflow,
    }
}
