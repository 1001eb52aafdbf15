//! Channels from Rust: exactly-once delivery between threads, wrap-around, close, damage, and
//! interoperability with the JavaScript implementation of the same protocol (when the Node
//! package is built, `node` runs a peer that echoes what Rust sends).

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use shmkit_core::channel::CODEC_BYTES;
use shmkit_core::{Channel, CreateOptions, ErrorCode, Segment};

const READY: Duration = Duration::from_secs(2);

fn unique(label: &str) -> String {
    format!("core-ch-{label}-{}", std::process::id())
}

fn message(producer: u32, seq: u32) -> Vec<u8> {
    let mut bytes = Vec::from(producer.to_le_bytes());
    bytes.extend_from_slice(&seq.to_le_bytes());
    bytes.extend(std::iter::repeat_n(seq as u8, (seq % 97) as usize));
    bytes
}

#[test]
fn threads_get_every_message_once_and_in_order_per_producer() {
    let name = unique("threads");
    let channel = Arc::new(Channel::create(&name, 512, CODEC_BYTES).unwrap());
    Segment::unlink(&name).unwrap();
    const PER_PRODUCER: u32 = 5_000;
    let producers: Vec<_> = (0..3)
        .map(|producer| {
            let channel = channel.clone();
            std::thread::spawn(move || {
                for seq in 0..PER_PRODUCER {
                    channel.send(&message(producer, seq), None).unwrap();
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let channel = channel.clone();
            std::thread::spawn(move || {
                let mut seen: HashMap<u32, Vec<u32>> = HashMap::new();
                loop {
                    match channel.recv(Some(Duration::from_secs(20))) {
                        Ok(bytes) => {
                            let producer = u32::from_le_bytes(bytes[..4].try_into().unwrap());
                            let seq = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
                            assert_eq!(bytes, message(producer, seq), "whole");
                            seen.entry(producer).or_default().push(seq);
                        }
                        Err(err) if err.code() == ErrorCode::ChannelEnded => return seen,
                        Err(err) => panic!("{err}"),
                    }
                }
            })
        })
        .collect();
    producers.into_iter().for_each(|p| p.join().unwrap());
    channel.end(None).unwrap();
    let reports: Vec<_> = consumers.into_iter().map(|c| c.join().unwrap()).collect();
    for producer in 0..3 {
        let mut all = Vec::new();
        for report in &reports {
            let seqs = report.get(&producer).cloned().unwrap_or_default();
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "in order per consumer"
            );
            all.extend(seqs);
        }
        all.sort();
        assert_eq!(all, (0..PER_PRODUCER).collect::<Vec<_>>(), "exactly once");
    }
    assert_eq!(channel.stats().sent, 3 * PER_PRODUCER);
    assert_eq!(channel.stats().received, 3 * PER_PRODUCER);
}

#[test]
fn every_size_around_the_wrap_keeps_its_bytes_and_limits_are_errors() {
    let name = unique("wrap");
    let channel = Channel::create(&name, 64, CODEC_BYTES).unwrap();
    Segment::unlink(&name).unwrap();
    for round in 0..3u8 {
        for length in 0..=60usize {
            let bytes: Vec<u8> = (0..length).map(|i| (i as u8).wrapping_add(round)).collect();
            assert!(channel.try_send(&bytes).unwrap());
            assert_eq!(channel.try_recv().unwrap().unwrap(), bytes);
        }
    }
    assert_eq!(channel.try_recv().unwrap(), None);
    assert_eq!(
        channel.send(&[0; 61], None).unwrap_err().code(),
        ErrorCode::OutOfRange
    );
    assert!(channel.try_send(&[0; 30]).unwrap());
    assert!(
        !channel.try_send(&[0; 30]).unwrap(),
        "full: no room, nothing dropped"
    );
    let full = channel.send(&[0; 30], Some(Duration::from_millis(20)));
    assert_eq!(full.unwrap_err().code(), ErrorCode::TimedOut);
    channel.end(None).unwrap();
    assert_eq!(
        channel.try_send(b"late").unwrap_err().code(),
        ErrorCode::ChannelEnded
    );
    assert_eq!(channel.recv(None).unwrap().len(), 30, "drains after close");
    assert_eq!(
        channel.recv(None).unwrap_err().code(),
        ErrorCode::ChannelEnded
    );
}

#[test]
fn damaged_indices_are_errors() {
    let name = unique("damage");
    let channel = Channel::create(&name, 256, CODEC_BYTES).unwrap();
    let raw = Segment::open(&name, READY).unwrap();
    Segment::unlink(&name).unwrap();
    channel.send(b"hello", None).unwrap();
    raw.word_at(128)
        .unwrap()
        .store(3, std::sync::atomic::Ordering::SeqCst); // head not aligned
    assert_eq!(channel.try_recv().unwrap_err().code(), ErrorCode::Corrupt);
    raw.word_at(128)
        .unwrap()
        .store(0, std::sync::atomic::Ordering::SeqCst);
    raw.word_at(512)
        .unwrap()
        .store(u32::MAX, std::sync::atomic::Ordering::SeqCst); // length
    assert_eq!(channel.try_recv().unwrap_err().code(), ErrorCode::Corrupt);
    raw.word_at(512)
        .unwrap()
        .store(5, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(channel.try_recv().unwrap().unwrap(), b"hello");
}

/// A Node handle may trust its cached copy of the other side's index only while its token is in
/// `last_sender` (`last_receiver`): every Rust send (receive) must overwrite it, with 0.
#[test]
fn sends_and_receives_clear_the_caching_marks() {
    use shmkit_core::channel::layout::{LAST_RECEIVER, LAST_SENDER};
    use std::sync::atomic::Ordering;
    let name = unique("marks");
    let channel = Channel::create(&name, 256, CODEC_BYTES).unwrap();
    let raw = Segment::open(&name, READY).unwrap();
    Segment::unlink(&name).unwrap();
    let word = |offset| raw.word_at(offset).unwrap();
    word(LAST_SENDER).store(0x1234_5678, Ordering::SeqCst);
    word(LAST_RECEIVER).store(0x1234_5678, Ordering::SeqCst);
    channel.send(b"hello", None).unwrap();
    assert_eq!(word(LAST_SENDER).load(Ordering::SeqCst), 0);
    assert_eq!(word(LAST_RECEIVER).load(Ordering::SeqCst), 0x1234_5678);
    assert_eq!(channel.try_recv().unwrap().unwrap(), b"hello");
    assert_eq!(word(LAST_RECEIVER).load(Ordering::SeqCst), 0);
}

#[test]
fn a_javascript_peer_speaks_the_same_protocol() {
    let Some(root) = common::built_package() else {
        eprintln!("skipped: the Node package is not built (npm install) or node is missing");
        return;
    };
    let (ping, pong) = (unique("ping"), unique("pong"));
    let outbox = Channel::create(&ping, 4096, CODEC_BYTES).unwrap();
    let inbox = Channel::create(&pong, 4096, CODEC_BYTES).unwrap();
    // The JS peer echoes every message back until the Rust side closes its outbox.
    let script = format!(
        "const {{ Channel }} = require({root:?});
         const inbox = Channel.open({ping:?}), outbox = Channel.open({pong:?});
         for (;;) {{
           let m;
           try {{ m = inbox.recv({{ timeout: 20000 }}) }} catch (e) {{ if (e.code === 'ERR_SHM_CHANNEL_ENDED') break; throw e }}
           outbox.send(m, {{ timeout: 20000 }});
         }}
         outbox.end();",
        root = root.join("index.js"),
    );
    let mut peer = Command::new("node").args(["-e", &script]).spawn().unwrap();
    let sizes: Vec<usize> = (0..600).map(|i| (i * 37) % 1500).collect();
    let sender = std::thread::spawn(move || {
        for (i, &size) in sizes.iter().enumerate() {
            let bytes: Vec<u8> = (0..size).map(|j| (i + j) as u8).collect();
            outbox.send(&bytes, Some(Duration::from_secs(20))).unwrap();
        }
        outbox.end(None).unwrap();
        sizes
    });
    let mut echoed = Vec::new();
    loop {
        match inbox.recv(Some(Duration::from_secs(20))) {
            Ok(bytes) => echoed.push(bytes),
            Err(err) if err.code() == ErrorCode::ChannelEnded => break,
            Err(err) => panic!("{err}"),
        }
    }
    let sizes = sender.join().unwrap();
    assert!(peer.wait().unwrap().success());
    assert_eq!(echoed.len(), sizes.len());
    for (i, (bytes, size)) in echoed.iter().zip(&sizes).enumerate() {
        assert_eq!(bytes.len(), *size);
        assert!(
            bytes.iter().enumerate().all(|(j, &b)| b == (i + j) as u8),
            "message {i}"
        );
    }
    Segment::unlink(&ping).unwrap();
    Segment::unlink(&pong).unwrap();
}

/// A kind-2 header over a data area too small for the control block is damaged: an error, not a
/// panic.
#[test]
fn a_channel_header_over_a_tiny_data_area_is_refused() {
    let name = unique("tiny");
    let options = CreateOptions {
        kind: shmkit_core::Kind::Channel,
        ..CreateOptions::new(8)
    };
    let segment = Segment::create(&name, options).unwrap();
    let err = Channel::open(&name, Duration::from_secs(1))
        .err()
        .expect("refused");
    assert_eq!(err.code(), ErrorCode::Corrupt);
    drop(segment);
    Segment::unlink(&name).unwrap();
}

/// `end` takes the send lock, so a send in progress publishes before the end or not at all; a
/// send lock held past `end`'s timeout makes `end` time out, and no send follows an end.
#[test]
fn end_is_serialised_with_producers() {
    let name = unique("end");
    let channel = Channel::create(&name, 256, CODEC_BYTES).unwrap();
    let view = Segment::open(&name, Duration::from_secs(1)).unwrap();
    let me = shmkit_core::current_thread();
    let send_lock = view.mutex_at(192).unwrap();
    send_lock.lock(&me, None).unwrap();
    let holder = std::thread::spawn(move || {
        let err = channel.end(Some(Duration::from_millis(80))).unwrap_err();
        assert_eq!(err.code(), ErrorCode::TimedOut, "waits for the producer");
        channel
    });
    let channel = holder.join().unwrap();
    assert!(!channel.is_ended());
    send_lock.unlock(&me).unwrap();
    channel.send(b"last", Some(Duration::MAX)).unwrap();
    channel.end(None).unwrap();
    assert_eq!(
        channel.try_send(b"after").unwrap_err().code(),
        ErrorCode::ChannelEnded
    );
    assert_eq!(channel.recv(Some(Duration::MAX)).unwrap(), b"last");
    assert_eq!(
        channel.recv(None).unwrap_err().code(),
        ErrorCode::ChannelEnded
    );
    drop(view);
    Segment::unlink(&name).unwrap();
}

/// Peers: a producer handle counts from its first send; once it is gone (dropped here, a dead
/// process below), a receiver set to `IfPeersGone::Fail` gets `NoProducers` after the messages
/// it sent, and one set to `Wait` keeps waiting.
#[test]
fn receivers_stop_once_every_producer_is_gone() {
    use shmkit_core::channel::IfPeersGone;
    use shmkit_core::peers::{CONSUMER, PRODUCER};
    let name = unique("peers");
    let receiver = Channel::create(&name, 1024, CODEC_BYTES).unwrap();
    receiver.set_if_peers_gone(IfPeersGone::Fail);
    let producer = Channel::open(&name, READY).unwrap();
    assert!(!receiver.peers().gone(PRODUCER), "never seen: not gone");
    producer.send(b"last words", None).unwrap();
    let peers = receiver.peers();
    assert_eq!(peers.live(PRODUCER), 1);
    assert_eq!(peers.peers[0].pid, std::process::id());
    drop(producer);
    assert!(receiver.peers().gone(PRODUCER));
    assert_eq!(
        receiver.recv(Some(Duration::from_secs(5))).unwrap(),
        b"last words"
    );
    let err = receiver.recv(Some(Duration::from_secs(10))).unwrap_err();
    assert_eq!(err.code(), ErrorCode::NoProducers, "{err}");
    assert_eq!(receiver.peers().live(CONSUMER), 1);
    receiver.set_if_peers_gone(IfPeersGone::Wait);
    let err = receiver.recv(Some(Duration::from_millis(200))).unwrap_err();
    assert_eq!(err.code(), ErrorCode::TimedOut);
    Segment::unlink(&name).unwrap();
}

/// A Node producer that exits without closing (its attach slot stays, held by a dead process)
/// is seen by Rust: the same role bits in both languages.
#[test]
fn a_dead_javascript_producer_ends_a_rust_receiver() {
    use shmkit_core::channel::IfPeersGone;
    let Some(root) = common::built_package() else {
        eprintln!("skipped: the Node package is not built (npm install) or node is missing");
        return;
    };
    let name = unique("peers-js");
    let receiver = Channel::create(&name, 1024, CODEC_BYTES).unwrap();
    receiver.set_if_peers_gone(IfPeersGone::End);
    let script = format!(
        "const {{ Channel }} = require({root:?});
         Channel.open({name:?}).send('from node');
         process.exit(0);",
        root = root.join("index.js"),
    );
    assert!(Command::new("node")
        .args(["-e", &script])
        .status()
        .unwrap()
        .success());
    assert_eq!(
        receiver.recv(Some(Duration::from_secs(5))).unwrap(),
        b"from node"
    );
    let err = receiver.recv(Some(Duration::from_secs(10))).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ChannelEnded, "{err}");
    Segment::unlink(&name).unwrap();
}
