//! Acknowledged receive from Rust (`Channel::take`, `ack`, `nack`): redelivery after a thread
//! dies, a lease ends or a job is given back, dead letters, the end of the stream, and the same
//! in-flight table shared with JavaScript consumers (a Node process that dies holding a job).

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use shmkit_core::channel::CODEC_BYTES;
use shmkit_core::{Channel, ErrorCode, Segment, SharedMap, TakeOptions};

const SECOND: Option<Duration> = Some(Duration::from_secs(1));

fn unique(label: &str) -> String {
    format!("core-queue-{label}-{}", std::process::id())
}

/// Creates channel `name` and removes it and its in-flight table when dropped.
struct Fixture(String);

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = Segment::unlink(&self.0);
        let _ = SharedMap::unlink(&format!("{}.inflight", self.0));
    }
}

fn fresh(label: &str) -> (Fixture, Channel) {
    let name = unique(label);
    let _ = Segment::unlink(&name);
    let _ = SharedMap::unlink(&format!("{name}.inflight"));
    let channel = Channel::create(&name, 4096, CODEC_BYTES).unwrap();
    (Fixture(name), channel)
}

fn waiting(timeout: Duration) -> TakeOptions<'static> {
    TakeOptions {
        timeout: Some(timeout),
        ..TakeOptions::default()
    }
}

#[test]
fn a_job_taken_by_a_thread_that_ends_is_delivered_again() {
    let (_fixture, channel) = fresh("thread");
    let channel = Arc::new(channel);
    channel.send(b"job", None).unwrap();
    let taker = Arc::clone(&channel);
    let first = std::thread::spawn(move || taker.take(&waiting(Duration::from_secs(5))).unwrap())
        .join()
        .unwrap();
    assert_eq!(
        (first.payload.as_slice(), first.deliveries),
        (&b"job"[..], 1)
    );
    // Its thread has ended without an ack: the next take gets it, counted.
    let again = channel.take(&waiting(Duration::from_secs(5))).unwrap();
    assert_eq!(
        (again.id.as_str(), again.deliveries),
        (first.id.as_str(), 2)
    );
    assert_eq!(again.payload, b"job");
    assert!(channel.ack(&again).unwrap());
    assert!(!channel.ack(&again).unwrap(), "acknowledged already");
    let err = channel
        .take(&waiting(Duration::from_millis(300)))
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::TimedOut);
}

#[test]
fn a_lease_that_ends_redelivers_and_the_late_ack_is_refused() {
    let (_fixture, channel) = fresh("lease");
    channel.send(b"slow", None).unwrap();
    let options = TakeOptions {
        timeout: Some(Duration::from_secs(5)),
        lease: Duration::from_millis(100),
        ..TakeOptions::default()
    };
    let first = channel.take(&options).unwrap();
    let again = channel.take(&options).unwrap();
    assert_eq!(again.deliveries, 2);
    assert!(
        !channel.ack(&first).unwrap(),
        "the first delivery's lease ended"
    );
    assert!(channel.ack(&again).unwrap());
}

#[test]
fn nack_gives_back_and_max_deliveries_goes_to_the_dead_letter_channel() {
    let (_fixture, channel) = fresh("nack");
    let (_dead_fixture, dead) = fresh("nack-dead");
    channel.send(b"poison", None).unwrap();
    let options = TakeOptions {
        timeout: Some(Duration::from_secs(5)),
        max_deliveries: 3,
        dead_letter: Some(&dead),
        ..TakeOptions::default()
    };
    for delivery in 1..=3 {
        let job = channel.take(&options).unwrap();
        assert_eq!(job.deliveries, delivery);
        assert!(channel.nack(&job).unwrap());
    }
    let err = channel
        .take(&TakeOptions {
            timeout: Some(Duration::from_millis(300)),
            ..options
        })
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::TimedOut);
    assert_eq!(dead.recv(SECOND).unwrap(), b"poison");
    // And without a dead letter, the report.
    channel.send(b"again", None).unwrap();
    let dropped = std::cell::RefCell::new(Vec::new());
    let report =
        |bytes: &[u8], deliveries: u32| dropped.borrow_mut().push((bytes.to_vec(), deliveries));
    let options = TakeOptions {
        timeout: Some(Duration::from_millis(300)),
        max_deliveries: 1,
        on_dropped: Some(&report),
        ..TakeOptions::default()
    };
    let job = channel.take(&options).unwrap();
    assert!(channel.nack(&job).unwrap());
    assert_eq!(
        channel.take(&options).unwrap_err().code(),
        ErrorCode::TimedOut
    );
    assert_eq!(*dropped.borrow(), vec![(b"again".to_vec(), 1)]);
}

#[test]
fn take_ends_once_the_stream_ended_is_drained_and_nothing_is_in_flight() {
    let (_fixture, channel) = fresh("end");
    channel.send(b"last", None).unwrap();
    channel.end(None).unwrap();
    let job = channel.take(&waiting(Duration::from_secs(5))).unwrap();
    // In flight: it could come back, so the stream is not over yet.
    let err = channel
        .take(&waiting(Duration::from_millis(400)))
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::TimedOut);
    assert!(channel.ack(&job).unwrap());
    let err = channel.take(&waiting(Duration::from_secs(5))).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ChannelEnded);
    // Also with no time to wait: the end is told before the timeout.
    let err = channel.take(&waiting(Duration::ZERO)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ChannelEnded);
    for lease in [
        Duration::ZERO,
        Duration::from_micros(999),
        Duration::from_secs(1 << 40),
    ] {
        let options = TakeOptions {
            lease,
            ..waiting(Duration::ZERO)
        };
        let err = channel.take(&options).unwrap_err();
        assert_eq!(err.code(), ErrorCode::OutOfRange, "lease {lease:?}");
    }
}

/// Runs a Node process that takes one job from channel `name`, prints `<text> <deliveries>`
/// and then runs `then` (JavaScript with `job` in scope); returns what it printed.
fn node_takes(root: &std::path::Path, name: &str, then: &str) -> String {
    let script = format!(
        "const {{ Channel }} = require({root:?});
         Channel.open({name:?}).take({{ timeout: 5000 }}).then((job) => {{
           process.stdout.write(Buffer.from(job.value).toString() + ' ' + job.deliveries);
           {then}
         }});",
        root = root.join("index.js"),
    );
    let out = Command::new("node").args(["-e", &script]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One in-flight table for every language: a Node consumer takes a job and exits without an
/// ack; Rust gets it with deliveries 2 and gives it back; Node takes it, delivery 3, and acks.
#[test]
fn javascript_and_rust_consumers_share_the_in_flight_table() {
    let Some(root) = common::built_package() else {
        eprintln!("skipped: the Node package is not built (npm install) or node is missing");
        return;
    };
    let (fixture, channel) = fresh("js");
    channel.send(b"from rust", None).unwrap();
    // No ack: the process exits, its holder is gone.
    assert_eq!(
        node_takes(&root, &fixture.0, "process.exit(0)"),
        "from rust 1"
    );
    let job = channel.take(&waiting(Duration::from_secs(5))).unwrap();
    assert_eq!(
        (job.payload.as_slice(), job.deliveries),
        (&b"from rust"[..], 2)
    );
    assert!(channel.nack(&job).unwrap());
    let acked = node_takes(&root, &fixture.0, "process.stdout.write(' ' + job.ack())");
    assert_eq!(acked, "from rust 3 true");
}

/// A channel name too long for its in-flight table's name: a clear error from `take`, which
/// says why, instead of one about a name the caller never gave.
#[test]
fn take_on_a_channel_whose_name_leaves_no_room_for_the_table_says_why() {
    let name = format!("core-queue-long-{}-{}", std::process::id(), "x".repeat(200));
    let name = &name[..195];
    let _ = Segment::unlink(name);
    let channel = Channel::create(name, 64, CODEC_BYTES).unwrap();
    channel.send(b"job", None).unwrap();
    let err = channel.take(&waiting(Duration::from_secs(1))).unwrap_err();
    assert_eq!(err.code(), ErrorCode::NameTooLong);
    assert!(err.message().contains("at most 191 characters"), "{err}");
    assert_eq!(channel.recv(SECOND).unwrap(), b"job", "the message stays");
    Segment::unlink(name).unwrap();
}
