//! The conformance vectors (conformance/*.json): byte images of channel and topic rings, valid,
//! wrapped and damaged, with the outcome every implementation must reach. The TypeScript and
//! Python suites run the same files.

use std::sync::Arc;

use serde_json::Value;
use shmkit_core::channel::{layout as ch, CODEC_BYTES};
use shmkit_core::segment::OpenOptions;
use shmkit_core::topic::{layout as tp, Slow, Topic, TopicOptions};
use shmkit_core::{Channel, ErrorCode, Segment};

fn vectors(file: &str) -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../conformance")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: Value = serde_json::from_str(&text).unwrap();
    json["cases"].as_array().unwrap().clone()
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn u32_of(value: &Value) -> u32 {
    value.as_u64().unwrap() as u32
}

/// Writes `bytes` into the data area at `offset` through the segment's 32-bit words.
fn write_words(segment: &Segment, offset: usize, bytes: &[u8]) {
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let mut word = [0u8; 4];
        word[..chunk.len()].copy_from_slice(chunk);
        segment.word_at(offset + i * 4).unwrap().store(
            u32::from_le_bytes(word),
            std::sync::atomic::Ordering::SeqCst,
        );
    }
}

fn set(segment: &Segment, offset: usize, value: u32) {
    segment
        .word_at(offset)
        .unwrap()
        .store(value, std::sync::atomic::Ordering::SeqCst);
}

/// What a receive gave, in the vectors' terms.
fn outcome(result: shmkit_core::Result<Option<Vec<u8>>>, ended: bool) -> Value {
    match result {
        Ok(Some(message)) => {
            serde_json::json!({ "message": message.iter().map(|b| format!("{b:02x}")).collect::<String>() })
        }
        Ok(None) if ended => Value::from("ended"),
        Ok(None) => Value::from("empty"),
        Err(e) => match e.code() {
            ErrorCode::Lagged(missed) => {
                serde_json::json!({ "error": "ERR_SHM_LAGGED", "missed": missed })
            }
            code => Value::from(code.as_str()),
        },
    }
}

fn raw(name: &str) -> Segment {
    Segment::open_with(name, &OpenOptions::default()).unwrap()
}

#[test]
fn channel_vectors() {
    for (n, case) in vectors("channel.json").iter().enumerate() {
        let name = format!("core-conformance-ch-{n}-{}", std::process::id());
        let _ = Segment::unlink(&name);
        let channel = Channel::create(
            &name,
            case["capacity"].as_u64().unwrap() as usize,
            CODEC_BYTES,
        )
        .unwrap();
        let segment = raw(&name);
        write_words(&segment, ch::RING, &hex(case["ring"].as_str().unwrap()));
        set(&segment, ch::HEAD, u32_of(&case["head"]));
        set(&segment, ch::TAIL, u32_of(&case["tail"]));
        set(&segment, ch::ENDED, u32_of(&case["ended"]));
        let expected = case["expect"].as_array().unwrap();
        let mut got = Vec::new();
        while got.len() < expected.len() {
            let result = channel.try_recv();
            let done = !matches!(result, Ok(Some(_)));
            got.push(outcome(result, channel.is_ended()));
            if done {
                break;
            }
        }
        assert_eq!(&got, expected, "channel case {:?}", case["name"]);
        Segment::unlink(&name).unwrap();
    }
}

#[test]
fn topic_vectors() {
    for (n, case) in vectors("topic.json").iter().enumerate() {
        let name = format!("core-conformance-tp-{n}-{}", std::process::id());
        let _ = Segment::unlink(&name);
        let options = TopicOptions {
            slow: if case["slow"] == "overwrite" {
                Slow::Overwrite
            } else {
                Slow::Block
            },
            ..TopicOptions::new(case["capacity"].as_u64().unwrap() as usize)
        };
        let topic = Arc::new(Topic::create(&name, options).unwrap());
        let segment = raw(&name);
        let start = &case["start"];
        for offset in [tp::TAIL, tp::WRITING, tp::HEAD] {
            set(&segment, offset, u32_of(&start["tail"]));
        }
        set(&segment, tp::PUBLISHED, u32_of(&start["published"]));
        let mut subscription = topic.subscribe().unwrap();
        write_words(
            &segment,
            topic.regions().ring,
            &hex(case["ring"].as_str().unwrap()),
        );
        set(&segment, tp::HEAD, u32_of(&case["head"]));
        set(&segment, tp::WRITING, u32_of(&case["writing"]));
        set(&segment, tp::TAIL, u32_of(&case["tail"]));
        if let Some(published) = case.get("published") {
            set(&segment, tp::PUBLISHED, u32_of(published));
        }
        let expected = case["expect"].as_array().unwrap();
        let mut got = Vec::new();
        while got.len() < expected.len() {
            let result = subscription.try_recv();
            // A lag is reported and then receiving goes on; the end, nothing or damage stop.
            let done = match &result {
                Ok(message) => message.is_none(),
                Err(e) => !matches!(e.code(), ErrorCode::Lagged(_)),
            };
            got.push(outcome(result, topic.is_ended()));
            if done {
                break;
            }
        }
        assert_eq!(&got, expected, "topic case {:?}", case["name"]);
        drop(subscription);
        Segment::unlink(&name).unwrap();
    }
}

#[test]
fn peers_vectors() {
    use shmkit_core::peers::{CONSUMER, PRODUCER};
    for (n, case) in vectors("peers.json").iter().enumerate() {
        let name = format!("core-conformance-peers-{n}-{}", std::process::id());
        let _ = Segment::unlink(&name);
        let channel = Channel::create(&name, 64, CODEC_BYTES).unwrap(); // attach slot 0
        let segment = raw(&name); // slot 1
        let slots = case["slots"].as_array().unwrap();
        let mut handles: Vec<Option<Channel>> = slots[2..]
            .iter()
            .map(|_| Some(Channel::open(&name, std::time::Duration::from_secs(2)).unwrap()))
            .collect();
        for (slot, state) in slots.iter().enumerate().skip(2) {
            if state == "free" {
                handles[slot - 2] = None; // dropping detaches
            }
        }
        for (i, word) in case["roles"].as_array().unwrap().iter().enumerate() {
            set(&segment, ch::ROLES + i * 4, u32_of(word));
        }
        set(&segment, ch::PEERS_SEEN, u32_of(&case["seen"]));
        let peers = channel.peers();
        let got = serde_json::json!({
            "peers": peers.peers.len(),
            "producers": peers.live(PRODUCER),
            "consumers": peers.live(CONSUMER),
            "producersGone": peers.gone(PRODUCER),
            "consumersGone": peers.gone(CONSUMER),
        });
        assert_eq!(got, case["expect"], "peers case {:?}", case["name"]);
        assert!(peers.peers.iter().all(|p| p.pid == std::process::id()));
        drop(handles);
        Segment::unlink(&name).unwrap();
    }
}
