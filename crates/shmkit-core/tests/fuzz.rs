//! Property tests over arbitrary shared-memory contents: whatever bytes a peer leaves in a header
//! or a mutex cell, validation and the lock protocol return (data or an error) without
//! panicking, reading out of bounds or hanging. `PROPTEST_CASES=100000 cargo test -p shmkit-core
//! --test fuzz --release` is the long run; CI runs the default number of cases.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use shmkit_core::header::{HeaderInfo, Inspection, Kind, RawHeader, MIN_HEADER_SIZE};
use shmkit_core::{ErrorCode, MutexCell};

const MAPPING: usize = 2 * MIN_HEADER_SIZE;

/// 8-aligned memory filled with `bytes` (zero-padded), as a mapping would be.
fn memory(bytes: &[u8], words: usize) -> Vec<AtomicU64> {
    (0..words)
        .map(|i| {
            let mut word = [0u8; 8];
            for (j, byte) in word.iter_mut().enumerate() {
                *byte = bytes.get(i * 8 + j).copied().unwrap_or(0);
            }
            AtomicU64::new(u64::from_le_bytes(word))
        })
        .collect()
}

trait Ready {
    fn ready(self) -> Option<HeaderInfo>;
}

impl Ready for Inspection {
    fn ready(self) -> Option<HeaderInfo> {
        match self {
            Inspection::Ready(info) => Some(info),
            Inspection::NotReady => None,
        }
    }
}

fn header_view(memory: &[AtomicU64]) -> RawHeader {
    // SAFETY: `memory` is 8-aligned, MAPPING bytes long, and outlives the view in every test.
    unsafe { RawHeader::new(memory.as_ptr() as *mut u8, MIN_HEADER_SIZE) }
}

fn valid_header() -> Vec<AtomicU64> {
    let memory = memory(&[], MAPPING / 8);
    header_view(&memory).initialize(&HeaderInfo {
        header_size: MIN_HEADER_SIZE,
        data_size: 1000,
        kind: Kind::Channel,
        created_unix_ms: 1,
        creator_pid: 2,
        name: "fuzzed".into(),
        auto_unlink: false,
        instance: 3,
        mode: 0o600,
    });
    memory
}

proptest! {
    /// Arbitrary bytes: never a panic, and a "ready" header always describes what fits.
    #[test]
    fn arbitrary_headers_are_refused_or_consistent(bytes in proptest::collection::vec(any::<u8>(), 0..600), len in 0usize..=MAPPING) {
        let memory = memory(&bytes, MAPPING / 8);
        let len = len.max(MIN_HEADER_SIZE);
        if let Ok(Inspection::Ready(info)) = header_view(&memory).inspect(len) {
            prop_assert!(info.header_size + info.data_size <= len);
            prop_assert!(!info.name.is_empty() && info.name.len() <= 200);
        }
    }

    /// One changed byte in a valid header is refused (the checksum and field checks catch it) or
    /// leaves the same, consistent header (a byte outside the checked fields).
    #[test]
    fn mutated_headers_are_refused(offset in 0usize..512, value in any::<u8>()) {
        let memory = valid_header();
        let before = header_view(&memory).inspect(MAPPING).unwrap();
        // SAFETY: offset < 512 lies inside the 8192-byte allocation.
        let byte = unsafe { &*(memory.as_ptr().cast::<std::sync::atomic::AtomicU8>().add(offset)) };
        byte.store(value, Ordering::Relaxed);
        match header_view(&memory).inspect(MAPPING) {
            // Bytes outside the checked fields (mutex cell, reserved, unused name bytes) may change.
            Ok(Inspection::Ready(info)) => prop_assert_eq!(Inspection::Ready(info).ready(), before.ready()),
            Ok(Inspection::NotReady) => prop_assert!(false, "one byte cannot zero the magic"),
            Err(err) => prop_assert!(matches!(err.code(), ErrorCode::Corrupt | ErrorCode::NotShmkit | ErrorCode::VersionMismatch)),
        }
    }

    /// Arbitrary mutex cells: try_lock, lock with a timeout and unlock always return.
    #[test]
    fn arbitrary_mutex_cells_never_hang_or_panic(bytes in proptest::collection::vec(any::<u8>(), 64)) {
        let memory = memory(&bytes, 8);
        // SAFETY: 64 bytes of 8-aligned memory that outlive the view.
        let cell = unsafe { MutexCell::at(memory.as_ptr() as *mut u8) };
        let me = shmkit_core::current_thread();
        let _ = cell.stats();
        if cell.try_lock(&me).is_some() {
            prop_assert!(cell.unlock(&me).is_ok());
        }
        match cell.lock(&me, Some(Duration::from_millis(2))) {
            Ok(_) => prop_assert!(cell.unlock(&me).is_ok()),
            Err(err) => prop_assert!(matches!(err.code(), ErrorCode::TimedOut | ErrorCode::WouldDeadlock)),
        }
    }
}

/// One channel reused by every case of the ring property below.
fn fuzz_channel() -> &'static (shmkit_core::Channel, shmkit_core::Segment) {
    static CHANNEL: std::sync::OnceLock<(shmkit_core::Channel, shmkit_core::Segment)> =
        std::sync::OnceLock::new();
    CHANNEL.get_or_init(|| {
        let name = format!("core-fuzz-ring-{}", std::process::id());
        let channel = shmkit_core::Channel::create(&name, 256, 0).unwrap();
        let raw = shmkit_core::Segment::open(&name, Duration::from_secs(1)).unwrap();
        shmkit_core::Segment::unlink(&name).unwrap();
        (channel, raw)
    })
}

proptest! {
    /// Arbitrary indices, counters, flags and ring bytes: receiving and sending return data or
    /// an error (never a panic, an out-of-bounds access or a hang).
    #[test]
    fn arbitrary_ring_state_gives_data_or_errors(
        words in proptest::collection::vec((prop_oneof![Just(16usize), Just(17), Just(18), Just(19), Just(32), Just(33), Just(34), Just(35)], any::<u32>()), 0..8),
        plausible in proptest::option::of((0u32..64, 0u32..65, 0u32..300)),
        ring in proptest::collection::vec(any::<u32>(), 64),
    ) {
        let (channel, raw) = fuzz_channel();
        for index in 4..128 {
            raw.word_at(index * 4).unwrap().store(0, Ordering::SeqCst);
        }
        for (i, value) in ring.iter().enumerate() {
            raw.word_at(512 + i * 4).unwrap().store(*value, Ordering::SeqCst);
        }
        for (index, value) in &words {
            raw.word_at(index * 4).unwrap().store(*value, Ordering::SeqCst);
        }
        if let Some((head, used, length)) = plausible {
            raw.word_at(128).unwrap().store(head * 4, Ordering::SeqCst);
            raw.word_at(64).unwrap().store(head * 4 + used * 4, Ordering::SeqCst);
            raw.word_at(512 + (head as usize % 64) * 4).unwrap().store(length, Ordering::SeqCst);
        }
        let allowed = |code: ErrorCode| matches!(code, ErrorCode::Corrupt | ErrorCode::ChannelEnded | ErrorCode::TimedOut);
        for outcome in [channel.try_recv().map(|_| ()), channel.try_send(b"fuzz").map(|_| ()), channel.recv(Some(Duration::from_millis(1))).map(|_| ()), channel.send(b"x", Some(Duration::from_millis(1)))] {
            if let Err(err) = outcome {
                prop_assert!(allowed(err.code()), "{err}");
            }
        }
        let _ = channel.stats();
    }
}
