//! A channel whose control block and ring hold arbitrary bytes: receiving, sending and the
//! statistics return data or a coded error; never a panic, an out-of-bounds access or a hang.
#![no_main]

use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shmkit_core::{Channel, ErrorCode, Segment};

/// Ring bytes of the fuzzed channel, and where its ring starts in the data area.
const CAPACITY: usize = 256;
const RING: usize = 512;

fn channel() -> &'static (Channel, Segment) {
    static CHANNEL: OnceLock<(Channel, Segment)> = OnceLock::new();
    CHANNEL.get_or_init(|| {
        let name = format!("core-fuzz-ring-{}", std::process::id());
        let channel = Channel::create(&name, CAPACITY, 0).expect("create the fuzzed channel");
        let raw = Segment::open(&name, Duration::from_secs(1)).expect("open it raw");
        Segment::unlink(&name).expect("unlink it at once");
        (channel, raw)
    })
}

fuzz_target!(|input: &[u8]| {
    let (channel, raw) = channel();
    // Words 4.. of the control block (the creator's fields before them stay valid: they are
    // validated once, at open) and the ring, from the input; the lock words stay free.
    let words = (RING + CAPACITY) / 4;
    for index in 4..words {
        let at = (index - 4) * 4;
        let value = input
            .get(at..at + 4)
            .map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap()));
        let free_lock = (48..52).contains(&index) || (64..68).contains(&index);
        let stored = if free_lock { 0 } else { value };
        raw.word_at(index * 4).unwrap().store(stored, Ordering::SeqCst);
    }
    let allowed = |code: ErrorCode| {
        matches!(
            code,
            ErrorCode::Corrupt | ErrorCode::ChannelEnded | ErrorCode::TimedOut
        )
    };
    for outcome in [
        channel.try_recv().map(|_| ()),
        channel.try_send(b"fuzz").map(|_| ()),
        channel.recv(Some(Duration::ZERO)).map(|_| ()),
    ] {
        if let Err(err) = outcome {
            assert!(allowed(err.code()), "{err}");
        }
    }
    let _ = channel.stats();
});
