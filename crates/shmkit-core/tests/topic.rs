//! Topics from Rust: fan-out in order to every subscriber, late subscribers, lag in overwrite
//! mode, back-pressure in block mode, a subscriber whose thread died without unsubscribing,
//! end and drain, several publishers seen in one order by everyone, and publishers racing a
//! lapped subscriber with no torn message; and a Node process on the same topics (when the
//! package is built): a JavaScript subscriber of what Rust publishes, publishing it back.

mod common;

use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use shmkit_core::topic::{Slow, Topic, TopicOptions};
use shmkit_core::ErrorCode;

fn fresh(label: &str, options: TopicOptions) -> Arc<Topic> {
    let name = format!("core-test-topic-{label}-{}", std::process::id());
    let _ = Topic::unlink(&name);
    let topic = Topic::create(&name, options).unwrap();
    Topic::unlink(&name).unwrap();
    Arc::new(topic)
}

fn message(publisher: u32, n: u32) -> Vec<u8> {
    // A message whose every byte says who sent it and which one it is, of a varying length.
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&publisher.to_le_bytes());
    bytes.extend_from_slice(&n.to_le_bytes());
    let fill = (n % 251) as u8;
    bytes.resize(8 + (n as usize * 7) % 200, fill);
    bytes
}

fn parse(bytes: &[u8]) -> (u32, u32) {
    let publisher = u32::from_le_bytes(bytes[..4].try_into().unwrap());
    let n = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
    assert_eq!(
        bytes,
        &message(publisher, n)[..],
        "a torn or foreign message"
    );
    (publisher, n)
}

#[test]
fn every_subscriber_gets_every_message_in_order() {
    const MESSAGES: u32 = 5000;
    let topic = fresh("fanout", TopicOptions::new(4096));
    let ready = Arc::new(Barrier::new(4));
    let subscribers: Vec<_> = (0..3)
        .map(|_| {
            let (topic, ready) = (topic.clone(), ready.clone());
            std::thread::spawn(move || {
                let mut sub = topic.subscribe().unwrap();
                ready.wait();
                (0..MESSAGES)
                    .map(|_| parse(&sub.recv(Some(Duration::from_secs(10))).unwrap()).1)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    ready.wait();
    for n in 0..MESSAGES {
        topic
            .publish(&message(0, n), Some(Duration::from_secs(10)))
            .unwrap();
    }
    for subscriber in subscribers {
        assert_eq!(
            subscriber.join().unwrap(),
            (0..MESSAGES).collect::<Vec<_>>()
        );
    }
    assert_eq!(topic.stats().published, MESSAGES);
}

#[test]
fn a_late_subscriber_sees_what_is_published_after_it_subscribed() {
    let topic = fresh("late", TopicOptions::new(1024));
    let mut early = topic.subscribe().unwrap();
    topic.publish(&message(0, 1), None).unwrap();
    let mut late = topic.subscribe().unwrap();
    topic.publish(&message(0, 2), None).unwrap();
    assert_eq!(parse(&early.try_recv().unwrap().unwrap()).1, 1);
    assert_eq!(parse(&early.try_recv().unwrap().unwrap()).1, 2);
    assert_eq!(parse(&late.try_recv().unwrap().unwrap()).1, 2);
    assert!(late.try_recv().unwrap().is_none());
    assert!(early.try_recv().unwrap().is_none());
}

#[test]
fn overwrite_mode_tells_a_lapped_subscriber_how_many_it_missed() {
    let options = TopicOptions {
        slow: Slow::Overwrite,
        ..TopicOptions::new(256)
    };
    let topic = fresh("lag", options);
    let mut sub = topic.subscribe().unwrap();
    // 24-byte records: 10 of them fit a 256-byte ring; publish 25, never waiting.
    for n in 0..25 {
        assert!(topic.try_publish(&[n as u8; 16]).unwrap());
    }
    let error = sub.try_recv().unwrap_err();
    let ErrorCode::Lagged(missed) = error.code() else {
        panic!("expected Lagged, got {error}");
    };
    let rest: Vec<u8> = std::iter::from_fn(|| sub.try_recv().unwrap())
        .map(|m| m[0])
        .collect();
    assert_eq!(
        missed as usize + rest.len(),
        25,
        "missed + received = published"
    );
    let first = 25 - rest.len() as u8;
    assert_eq!(
        rest,
        (first..25).collect::<Vec<_>>(),
        "in order from the oldest kept"
    );
    assert_eq!(topic.stats().subscribers[0].missed as u64, missed);
}

#[test]
fn block_mode_waits_for_the_slowest_subscriber() {
    let topic = fresh("block", TopicOptions::new(256));
    let mut sub = topic.subscribe().unwrap();
    let mut published = 0;
    while topic.try_publish(&[7u8; 16]).unwrap() {
        published += 1;
    }
    assert_eq!(published, 10, "a full ring refuses at once");
    let started = Instant::now();
    let error = topic
        .publish(&[7u8; 16], Some(Duration::from_millis(100)))
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::TimedOut);
    assert!(started.elapsed() >= Duration::from_millis(90));
    // A reader frees room for a waiting publisher.
    let publisher = {
        let topic = topic.clone();
        std::thread::spawn(move || topic.publish(&[8u8; 16], Some(Duration::from_secs(10))))
    };
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(sub.recv(None).unwrap(), vec![7u8; 16]);
    publisher.join().unwrap().unwrap();
    let received: Vec<_> = std::iter::from_fn(|| sub.try_recv().unwrap()).collect();
    assert_eq!(received.len(), 10);
    assert_eq!(received.last().unwrap(), &vec![8u8; 16]);
}

#[test]
fn a_subscriber_whose_thread_died_stops_holding_publishers_back() {
    let topic = fresh("reap", TopicOptions::new(256));
    {
        let topic = topic.clone();
        // A thread that subscribes and ends without unsubscribing (as a killed process would:
        // the slot stays taken, with its identity).
        std::thread::spawn(move || {
            topic
                .claim_slot(&shmkit_core::platform::current_thread())
                .unwrap();
        })
        .join()
        .unwrap();
    }
    assert_eq!(topic.stats().subscribers.len(), 1);
    let started = Instant::now();
    for n in 0..100 {
        topic
            .publish(&message(0, n), Some(Duration::from_secs(5)))
            .unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    let stats = topic.stats();
    assert!(stats.subscribers.is_empty());
    assert_eq!(stats.reaped, 1);
}

#[test]
fn end_lets_subscribers_drain_then_says_ended() {
    let topic = fresh("end", TopicOptions::new(1024));
    let mut sub = topic.subscribe().unwrap();
    topic.publish(b"one", None).unwrap();
    topic.publish(b"two", None).unwrap();
    topic.end(None).unwrap();
    assert_eq!(
        topic.publish(b"three", None).unwrap_err().code(),
        ErrorCode::ChannelEnded
    );
    assert_eq!(sub.recv(None).unwrap(), b"one");
    assert_eq!(sub.recv(None).unwrap(), b"two");
    assert_eq!(sub.recv(None).unwrap_err().code(), ErrorCode::ChannelEnded);
    // A subscriber sleeping when the end comes wakes up.
    let topic = fresh("end-wakes", TopicOptions::new(1024));
    let mut sub = topic.subscribe().unwrap();
    let sleeper = std::thread::spawn(move || sub.recv(Some(Duration::from_secs(10))));
    std::thread::sleep(Duration::from_millis(50));
    topic.end(None).unwrap();
    assert_eq!(
        sleeper.join().unwrap().unwrap_err().code(),
        ErrorCode::ChannelEnded
    );
}

#[test]
fn several_publishers_are_seen_in_one_order_by_everyone() {
    const EACH: u32 = 2000;
    let topic = fresh("publishers", TopicOptions::new(2048));
    let subs: Vec<_> = (0..2).map(|_| topic.subscribe().unwrap()).collect();
    let readers: Vec<_> = subs
        .into_iter()
        .map(|mut sub| {
            std::thread::spawn(move || {
                (0..EACH * 3)
                    .map(|_| parse(&sub.recv(Some(Duration::from_secs(10))).unwrap()))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let publishers: Vec<_> = (0..3)
        .map(|p| {
            let topic = topic.clone();
            std::thread::spawn(move || {
                for n in 0..EACH {
                    topic
                        .publish(&message(p, n), Some(Duration::from_secs(10)))
                        .unwrap();
                }
            })
        })
        .collect();
    publishers.into_iter().for_each(|p| p.join().unwrap());
    let seen: Vec<_> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    assert_eq!(
        seen[0], seen[1],
        "every subscriber sees the one publish order"
    );
    for p in 0..3 {
        let mine: Vec<u32> = seen[0].iter().filter(|m| m.0 == p).map(|m| m.1).collect();
        assert_eq!(
            mine,
            (0..EACH).collect::<Vec<_>>(),
            "each publisher's messages in order"
        );
    }
}

#[test]
fn a_lapped_reader_racing_publishers_never_takes_a_torn_message() {
    const MESSAGES: u32 = 20_000;
    let options = TopicOptions {
        slow: Slow::Overwrite,
        ..TopicOptions::new(512)
    };
    let topic = fresh("race", options);
    let mut sub = topic.subscribe().unwrap();
    let publisher = {
        let topic = topic.clone();
        std::thread::spawn(move || {
            for n in 0..MESSAGES {
                topic.publish(&message(0, n), None).unwrap();
            }
            topic.end(None).unwrap();
        })
    };
    let (mut received, mut missed, mut last) = (0u64, 0u64, None);
    loop {
        match sub.recv(Some(Duration::from_secs(10))) {
            Ok(bytes) => {
                let (_, n) = parse(&bytes);
                assert!(last.is_none_or(|l| n > l), "in order");
                last = Some(n);
                received += 1;
            }
            Err(e) if e.code() == ErrorCode::ChannelEnded => break,
            Err(e) => match e.code() {
                ErrorCode::Lagged(count) => missed += count,
                _ => panic!("{e}"),
            },
        }
    }
    publisher.join().unwrap();
    assert_eq!(received + missed, u64::from(MESSAGES));
}

#[test]
fn a_javascript_subscriber_and_publisher_speak_the_same_protocol() {
    let Some(root) = common::built_package() else {
        eprintln!("skipped: the Node package is not built (npm install) or node is missing");
        return;
    };
    let there = format!("core-test-topic-there-{}", std::process::id());
    let back = format!("core-test-topic-back-{}", std::process::id());
    for name in [&there, &back] {
        let _ = Topic::unlink(name);
    }
    let outbound = Arc::new(Topic::create(&there, TopicOptions::new(4096)).unwrap());
    let inbound = Arc::new(Topic::create(&back, TopicOptions::new(4096)).unwrap());
    let mut replies = inbound.subscribe().unwrap();
    // The JS peer subscribes, says so by publishing "ready", then publishes back every message
    // (wrapping the ring many times) until the Rust side ends the topic.
    let script = format!(
        "const {{ Topic }} = require({index:?});
         const there = Topic.open({there:?}, {{ codec: 'bytes' }}), back = Topic.open({back:?}, {{ codec: 'bytes' }});
         const sub = there.subscribe();
         back.publish('ready', {{ timeout: 20000 }});
         for (;;) {{
           let m;
           try {{ m = sub.recv({{ timeout: 20000 }}) }} catch (e) {{ if (e.code === 'ERR_SHM_CHANNEL_ENDED') break; throw e }}
           back.publish(m, {{ timeout: 20000 }});
         }}
         back.end();",
        index = root.join("index.js"),
    );
    let mut peer = Command::new("node").args(["-e", &script]).spawn().unwrap();
    assert_eq!(
        replies.recv(Some(Duration::from_secs(20))).unwrap(),
        b"ready"
    );
    let publisher = {
        let outbound = outbound.clone();
        std::thread::spawn(move || {
            for n in 0..2000 {
                outbound
                    .publish(&message(7, n), Some(Duration::from_secs(20)))
                    .unwrap();
            }
            outbound.end(None).unwrap();
        })
    };
    let mut n = 0;
    loop {
        match replies.recv(Some(Duration::from_secs(20))) {
            Ok(bytes) => {
                assert_eq!(parse(&bytes), (7, n));
                n += 1;
            }
            Err(e) if e.code() == ErrorCode::ChannelEnded => break,
            Err(e) => panic!("{e}"),
        }
    }
    publisher.join().unwrap();
    assert!(peer.wait().unwrap().success());
    assert_eq!(n, 2000);
    for name in [&there, &back] {
        Topic::unlink(name).unwrap();
    }
}

/// Damaged indices give errors, never a panic: a misaligned head met while catching up, a
/// misaligned tail at subscribe (both panicked in an unchecked word read before).
#[test]
fn misaligned_indices_are_errors_not_panics() {
    use shmkit_core::segment::OpenOptions;
    use shmkit_core::topic::layout;
    use shmkit_core::Segment;
    use std::sync::atomic::Ordering::SeqCst;
    let options = TopicOptions {
        slow: Slow::Overwrite,
        ..TopicOptions::new(256)
    };
    let name = format!("core-test-topic-misaligned-{}", std::process::id());
    let _ = Topic::unlink(&name);
    let topic = Arc::new(Topic::create(&name, options).unwrap());
    let raw = Segment::open_with(&name, &OpenOptions::default()).unwrap();
    Topic::unlink(&name).unwrap();
    let mut sub = topic.subscribe().unwrap();
    for n in 0..25 {
        topic.try_publish(&[n as u8; 16]).unwrap();
    }
    raw.word_at(layout::HEAD).unwrap().store(194, SeqCst); // lapped, and the head is damaged
    assert_eq!(sub.try_recv().unwrap_err().code(), ErrorCode::Corrupt);
    let tail = raw.word_at(layout::TAIL).unwrap().load(SeqCst);
    raw.word_at(layout::TAIL).unwrap().store(tail + 2, SeqCst);
    let mut late = topic.subscribe().unwrap();
    assert!(matches!(late.try_recv(), Ok(None) | Err(_)));
    // Moving the damaged tail on makes the late subscriber read at a misaligned cursor.
    raw.word_at(layout::TAIL).unwrap().store(tail + 26, SeqCst);
    assert!(late.try_recv().is_err());
    assert_eq!(
        topic.try_publish(b"x").unwrap_err().code(),
        ErrorCode::Corrupt
    );
}

/// A subscription whose thread ended is freed by a publisher (and may go to another subscriber):
/// the old handle, used from another thread, is refused instead of writing into that slot.
#[test]
fn a_subscription_used_after_its_thread_ended_is_refused() {
    let topic = fresh("orphan", TopicOptions::new(256));
    let orphan = {
        let topic = topic.clone();
        std::thread::spawn(move || topic.subscribe().unwrap())
            .join()
            .unwrap()
    };
    for n in 0..50 {
        topic
            .publish(&message(0, n), Some(Duration::from_secs(5)))
            .unwrap();
    }
    let mut orphan = orphan;
    assert_eq!(orphan.try_recv().unwrap_err().code(), ErrorCode::Closed);
}
