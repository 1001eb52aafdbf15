//! Introspection results as plain JS objects: who holds a lock and whether that process is alive,
//! who has a segment open, the header fields. Used by `Segment.inspect`, `mutex.stats()` and the
//! `shmkit` command.

use napi_derive::napi;
use shmkit_core::{Liveness, MutexStats, SegmentReport, ThreadIdentity};

fn liveness_name(liveness: Liveness) -> String {
    match liveness {
        Liveness::Alive => "alive",
        Liveness::Dead => "dead",
        Liveness::Unknown => "unknown",
    }
    .to_owned()
}

#[napi(object)]
pub struct MutexReport {
    pub locked: bool,
    /// Thread id of the holder (0 when unlocked).
    pub holder_tid: u32,
    /// Process id of the holder, when it recorded itself.
    pub holder_pid: Option<u32>,
    /// `'alive'`, `'dead'` or `'unknown'`; absent when unlocked.
    pub holder_state: Option<String>,
    /// Some thread may be asleep waiting (the lock word's WAITERS bit).
    pub waiters: bool,
    /// Threads asleep in the kernel on this lock now (approximate).
    pub sleepers: u32,
    /// Acquisitions so far (wraps at 2^32), of which `contended` had to wait.
    pub acquisitions: u32,
    pub contended: u32,
    /// Times a waiter took the lock over from a dead holder.
    pub owner_deaths: u32,
}

impl From<MutexStats> for MutexReport {
    fn from(stats: MutexStats) -> Self {
        let locked = stats.holder_tid != 0;
        let holder = stats.holder.unwrap_or(ThreadIdentity {
            tid: stats.holder_tid,
            namespace: 0,
            start_time: 0,
            pid: 0,
        });
        MutexReport {
            locked,
            holder_tid: stats.holder_tid,
            holder_pid: stats.holder.map(|h| h.pid).filter(|&pid| pid != 0),
            holder_state: locked.then(|| liveness_name(shmkit_core::platform::liveness(&holder))),
            waiters: stats.waiters,
            sleepers: stats.sleepers,
            acquisitions: stats.acquisitions,
            contended: stats.contended,
            owner_deaths: stats.owner_deaths,
        }
    }
}

#[napi(object)]
pub struct AttacherReport {
    pub pid: u32,
    /// `'alive'`, `'dead'` or `'unknown'`.
    pub state: String,
}

#[napi(object)]
pub struct SegmentInspection {
    pub name: String,
    /// `'segment'` or `'channel'`.
    pub kind: String,
    /// Bytes in the data area.
    pub size: f64,
    pub header_size: u32,
    /// Creation time, ms since the Unix epoch.
    pub created_at: f64,
    pub creator_pid: u32,
    pub auto_unlink: bool,
    /// Processes that have the segment open (one entry per mapping).
    pub attachers: Vec<AttacherReport>,
    /// Mappings that found the attach table full (they are not listed).
    pub overflow: u32,
    /// Being removed by its last closer.
    pub doomed: bool,
    pub header_mutex: MutexReport,
    /// Mutexes placed in the data area (a channel's send and receive locks among them).
    pub placed_mutexes: Vec<PlacedMutexReport>,
    /// The first 32-bit words of the data area (a channel's control block).
    pub data_words: Vec<u32>,
    /// For a topic: its counters and subscribers.
    pub topic: Option<crate::topic::NativeTopicStats>,
    /// For a channel: its producers and consumers.
    pub peers: Option<ChannelPeers>,
    /// The OS object's owner (user id, and name when known) and permission bits; absent where
    /// the OS has none (Windows).
    pub owner: Option<u32>,
    pub owner_name: Option<String>,
    pub mode: Option<u32>,
    /// The permission bits asked for at creation.
    pub requested_mode: u32,
    /// Owned by another user than this process's.
    pub foreign: bool,
    /// Its mode grants more than was asked for at creation (someone widened it).
    pub wider_than_asked: bool,
}

#[napi(object)]
pub struct PlacedMutexReport {
    /// Byte offset in the data area.
    pub offset: f64,
    pub mutex: MutexReport,
}

impl From<SegmentReport> for SegmentInspection {
    fn from(report: SegmentReport) -> Self {
        SegmentInspection {
            name: report.info.name,
            kind: report.info.kind.name().to_owned(),
            size: report.info.data_size as f64,
            header_size: report.info.header_size as u32,
            created_at: report.info.created_unix_ms as f64,
            creator_pid: report.info.creator_pid,
            auto_unlink: report.info.auto_unlink,
            attachers: report
                .attachers
                .into_iter()
                .map(|a| AttacherReport {
                    pid: a.pid,
                    state: liveness_name(a.alive),
                })
                .collect(),
            overflow: report.overflow,
            doomed: report.doomed,
            header_mutex: report.header_mutex.into(),
            placed_mutexes: report
                .placed_mutexes
                .into_iter()
                .map(|(offset, stats)| PlacedMutexReport {
                    offset: offset as f64,
                    mutex: stats.into(),
                })
                .collect(),
            data_words: report.data_words,
            topic: report.topic.map(Into::into),
            peers: report.channel_peers.map(Into::into),
            owner_name: report.owner.and_then(shmkit_core::platform::user_name),
            foreign: report
                .owner
                .zip(shmkit_core::platform::effective_uid())
                .is_some_and(|(owner, me)| owner != me),
            wider_than_asked: report
                .mode
                .is_some_and(|mode| mode & !report.info.mode != 0),
            requested_mode: report.info.mode,
            owner: report.owner,
            mode: report.mode,
        }
    }
}

/// One mapping of a channel that sent or received (`Channel.peers()`).
#[napi(object)]
pub struct ChannelPeer {
    pub pid: u32,
    pub producer: bool,
    pub consumer: bool,
    /// `'alive'`, `'dead'` or `'unknown'`.
    pub state: String,
}

/// A channel's peers and whether each side is gone (`Channel.peers()`, `shmkit inspect`).
#[napi(object)]
pub struct ChannelPeers {
    pub peers: Vec<ChannelPeer>,
    /// Producers (consumers) whose process is alive or cannot be judged.
    pub producers: u32,
    pub consumers: u32,
    /// A producer (consumer) announced itself once, and none that could still be one is left.
    pub producers_gone: bool,
    pub consumers_gone: bool,
    /// Mappings that found the attach table full: their roles are unknown.
    pub unlisted: u32,
}

impl From<shmkit_core::Peers> for ChannelPeers {
    fn from(report: shmkit_core::Peers) -> Self {
        use shmkit_core::peers::{CONSUMER, PRODUCER};
        ChannelPeers {
            producers: report.live(PRODUCER) as u32,
            consumers: report.live(CONSUMER) as u32,
            producers_gone: report.gone(PRODUCER),
            consumers_gone: report.gone(CONSUMER),
            unlisted: report.unlisted,
            peers: report
                .peers
                .into_iter()
                .map(|p| ChannelPeer {
                    pid: p.pid,
                    producer: p.roles & PRODUCER != 0,
                    consumer: p.roles & CONSUMER != 0,
                    state: liveness_name(p.alive),
                })
                .collect(),
        }
    }
}
