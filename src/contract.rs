//! The binary contract, exported once to JavaScript: every layout offset, magic, version, kind,
//! codec id, limit and default that `lib/` needs, read at load from the Rust core where each is
//! defined. `lib/` copies none of them.

use napi_derive::napi;
use shmkit_core::{channel, header, mutex, segment};

/// Where the fields of a mutex cell are, in bytes.
#[napi(object)]
pub struct MutexCellLayout {
    pub size: u32,
    pub align: u32,
    pub state: u32,
    pub owner_tid: u32,
    pub owner_ns: u32,
    pub owner_pid: u32,
    pub owner_start: u32,
    pub acquisitions: u32,
    pub sleepers: u32,
    /// The owner bits of the lock word, and its WAITERS bit.
    pub owner_mask: u32,
    pub waiters: u32,
}

/// A channel's control block (byte offsets into its data area) and its limits.
#[napi(object)]
pub struct ChannelLayout {
    pub ready: u32,
    pub version: u32,
    pub capacity: u32,
    pub codec: u32,
    pub ended: u32,
    pub peers_seen: u32,
    pub tail: u32,
    pub recv_sleepers: u32,
    pub recv_event: u32,
    pub sent: u32,
    pub last_sender: u32,
    pub head: u32,
    pub send_sleepers: u32,
    pub send_event: u32,
    pub received: u32,
    pub last_receiver: u32,
    pub send_lock: u32,
    pub recv_lock: u32,
    pub roles: u32,
    pub ring: u32,
    pub magic: u32,
    pub layout_version: u32,
    pub min_capacity: u32,
    pub max_capacity: u32,
}

/// A map's control block and entry layout (byte offsets; docs/MAP.md).
#[napi(object)]
pub struct MapLayout {
    pub magic: u32,
    pub version: u32,
    pub capacity: u32,
    pub buckets: u32,
    pub heap_size: u32,
    pub codec: u32,
    pub evict: u32,
    pub index_gen: u32,
    pub count: u32,
    pub bytes_used: u32,
    pub tombstones: u32,
    pub evictions: u32,
    pub expirations: u32,
    pub events: u32,
    pub watchers: u32,
    pub change_pos: u32,
    pub lock: u32,
    pub change_ring: u32,
    pub changes: u32,
    pub entry_size: u32,
    pub e_seq: u32,
    pub e_live: u32,
    pub e_ref: u32,
    pub e_slots: u32,
    pub slot_size: u32,
    pub s_hash: u32,
    pub s_block: u32,
    pub s_key_len: u32,
    pub s_value_len: u32,
    pub s_expires_lo: u32,
    pub s_expires_hi: u32,
    pub tomb: u32,
    pub block_header: u32,
    pub map_magic: u32,
    pub layout_version: u32,
    pub max_key_bytes: u32,
    pub max_capacity: u32,
    pub min_memory: u32,
    pub max_memory: f64,
}

/// A topic's data area (docs/TOPIC.md).
#[napi(object)]
pub struct TopicLayout {
    pub ready: u32,
    pub capacity: u32,
    pub codec: u32,
    pub slow: u32,
    pub slots: u32,
    pub ended: u32,
    pub ring_at: u32,
    pub tail: u32,
    pub writing: u32,
    pub head: u32,
    pub published: u32,
    pub sub_sleepers: u32,
    pub sub_event: u32,
    pub pub_sleepers: u32,
    pub pub_event: u32,
    pub reaped: u32,
    pub publish_lock: u32,
    pub table: u32,
    pub slot_size: u32,
    pub s_state: u32,
    pub s_cursor: u32,
    pub s_seq: u32,
    pub s_missed: u32,
    pub record_header: u32,
    pub topic_magic: u32,
    pub layout_version: u32,
    pub min_capacity: u32,
    pub max_capacity: u32,
    pub default_subscribers: u32,
    pub max_subscribers: u32,
}

#[napi(object)]
pub struct Contract {
    pub layout_version: u32,
    /// Segment kinds by id (index 0 unused).
    pub kinds: Vec<String>,
    pub max_name_length: u32,
    pub max_segment_size: f64,
    pub default_mode: u32,
    pub default_ready_timeout_ms: u32,
    pub mutex: MutexCellLayout,
    pub channel: ChannelLayout,
    pub map: MapLayout,
    pub topic: TopicLayout,
    /// Codec names by id.
    pub codecs: Vec<String>,
    /// Every error code, in the order of `docs/errors.md`.
    pub error_codes: Vec<String>,
}

fn u(value: usize) -> u32 {
    u32::try_from(value).expect("layout constants are small")
}

#[napi]
pub fn contract() -> Contract {
    use channel::layout as ch;
    Contract {
        layout_version: header::LAYOUT_VERSION,
        kinds: std::iter::once("")
            .chain(header::Kind::ALL.iter().map(|kind| kind.name()))
            .map(str::to_owned)
            .collect(),
        max_name_length: u(shmkit_core::name::MAX_NAME_LEN),
        max_segment_size: segment::MAX_DATA_SIZE as f64,
        default_mode: segment::DEFAULT_MODE,
        default_ready_timeout_ms: u(segment::DEFAULT_READY_TIMEOUT.as_millis() as usize),
        mutex: MutexCellLayout {
            size: u(mutex::MUTEX_SIZE),
            align: u(mutex::MUTEX_ALIGN),
            state: u(mutex::cell::STATE),
            owner_tid: u(mutex::cell::OWNER_TID),
            owner_ns: u(mutex::cell::OWNER_NS),
            owner_pid: u(mutex::cell::OWNER_PID),
            owner_start: u(mutex::cell::OWNER_START),
            acquisitions: u(mutex::cell::ACQUISITIONS),
            sleepers: u(mutex::cell::SLEEPERS),
            owner_mask: mutex::OWNER_MASK,
            waiters: mutex::WAITERS,
        },
        channel: ChannelLayout {
            ready: u(ch::READY),
            version: u(ch::VERSION),
            capacity: u(ch::CAPACITY),
            codec: u(ch::CODEC),
            ended: u(ch::ENDED),
            peers_seen: u(ch::PEERS_SEEN),
            tail: u(ch::TAIL),
            recv_sleepers: u(ch::RECV_SLEEPERS),
            recv_event: u(ch::RECV_EVENT),
            sent: u(ch::SENT),
            last_sender: u(ch::LAST_SENDER),
            head: u(ch::HEAD),
            send_sleepers: u(ch::SEND_SLEEPERS),
            send_event: u(ch::SEND_EVENT),
            received: u(ch::RECEIVED),
            last_receiver: u(ch::LAST_RECEIVER),
            send_lock: u(ch::SEND_LOCK),
            recv_lock: u(ch::RECV_LOCK),
            roles: u(ch::ROLES),
            ring: u(ch::RING),
            magic: channel::CHANNEL_MAGIC,
            layout_version: channel::CHANNEL_VERSION,
            min_capacity: u(channel::MIN_CAPACITY),
            max_capacity: u(channel::MAX_CAPACITY),
        },
        map: {
            use shmkit_core::map::{self as m, layout as l};
            MapLayout {
                magic: u(l::MAGIC),
                version: u(l::VERSION),
                capacity: u(l::CAPACITY),
                buckets: u(l::BUCKETS),
                heap_size: u(l::HEAP_SIZE),
                codec: u(l::CODEC),
                evict: u(l::EVICT),
                index_gen: u(l::INDEX_GEN),
                count: u(l::COUNT),
                bytes_used: u(l::BYTES_USED),
                tombstones: u(l::TOMBSTONES),
                evictions: u(l::EVICTIONS),
                expirations: u(l::EXPIRATIONS),
                events: u(l::EVENTS),
                watchers: u(l::WATCHERS),
                change_pos: u(l::CHANGE_POS),
                lock: u(l::LOCK),
                change_ring: u(l::CHANGE_RING),
                changes: u(l::CHANGES),
                entry_size: u(l::ENTRY_SIZE),
                e_seq: u(l::E_SEQ),
                e_live: u(l::E_LIVE),
                e_ref: u(l::E_REF),
                e_slots: u(l::E_SLOTS),
                slot_size: u(l::SLOT_SIZE),
                s_hash: u(l::S_HASH),
                s_block: u(l::S_BLOCK),
                s_key_len: u(l::S_KEY_LEN),
                s_value_len: u(l::S_VALUE_LEN),
                s_expires_lo: u(l::S_EXPIRES_LO),
                s_expires_hi: u(l::S_EXPIRES_HI),
                tomb: l::TOMB,
                block_header: u(l::BLOCK_HEADER),
                map_magic: m::MAP_MAGIC,
                layout_version: m::MAP_VERSION,
                max_key_bytes: u(m::MAX_KEY_BYTES),
                max_capacity: u(m::MAX_CAPACITY),
                min_memory: u(m::MIN_HEAP),
                max_memory: m::MAX_HEAP as f64,
            }
        },
        topic: {
            use shmkit_core::topic::{self as t, layout as l};
            TopicLayout {
                ready: u(l::READY),
                capacity: u(l::CAPACITY),
                codec: u(l::CODEC),
                slow: u(l::SLOW),
                slots: u(l::SLOTS),
                ended: u(l::ENDED),
                ring_at: u(l::RING_AT),
                tail: u(l::TAIL),
                writing: u(l::WRITING),
                head: u(l::HEAD),
                published: u(l::PUBLISHED),
                sub_sleepers: u(l::SUB_SLEEPERS),
                sub_event: u(l::SUB_EVENT),
                pub_sleepers: u(l::PUB_SLEEPERS),
                pub_event: u(l::PUB_EVENT),
                reaped: u(l::REAPED),
                publish_lock: u(l::PUBLISH_LOCK),
                table: u(l::TABLE),
                slot_size: u(l::SLOT_SIZE),
                s_state: u(l::S_STATE),
                s_cursor: u(l::S_CURSOR),
                s_seq: u(l::S_SEQ),
                s_missed: u(l::S_MISSED),
                record_header: u(l::RECORD_HEADER),
                topic_magic: t::TOPIC_MAGIC,
                layout_version: t::TOPIC_VERSION,
                min_capacity: u(t::MIN_CAPACITY),
                max_capacity: u(t::MAX_CAPACITY),
                default_subscribers: u(t::DEFAULT_SUBSCRIBERS),
                max_subscribers: u(t::MAX_SUBSCRIBERS),
            }
        },
        codecs: channel::CODECS.iter().map(|c| (*c).to_owned()).collect(),
        error_codes: shmkit_core::error::ERROR_CODES
            .iter()
            .map(|(code, _)| (*code).to_owned())
            .collect(),
    }
}
