//! A process that forks after taking a job: parent and child must make different job ids. They
//! once shared the id prefix and counter, so the parent's next take overwrote the child's record
//! in the in-flight table and the child's job was lost (neither in the ring nor in the table).
//! One test per binary run: forking a multi-threaded test runner is only safe while nothing else
//! runs.

#![cfg(target_os = "linux")]

use std::time::Duration;

use shmkit_core::channel::CODEC_BYTES;
use shmkit_core::{Channel, ErrorCode, Segment, SharedMap, TakeOptions};

#[test]
fn a_forked_child_makes_job_ids_of_its_own() {
    let name = format!("core-queue-fork-{}", std::process::id());
    let _ = Segment::unlink(&name);
    let _ = SharedMap::unlink(&format!("{name}.inflight"));
    let channel = Channel::create(&name, 4096, CODEC_BYTES).unwrap();
    for job in [&b"one"[..], b"two", b"three"] {
        channel.send(job, None).unwrap();
    }
    let options = TakeOptions {
        timeout: Some(Duration::from_secs(5)),
        ..TakeOptions::default()
    };
    let one = channel.take(&options).unwrap();

    // SAFETY: the child only runs shmkit calls and `_exit`s; no lock of this process is held
    // across the fork by another thread (the test harness thread is idle in `join`).
    let child = unsafe { libc::fork() };
    if child == 0 {
        // Takes "two" and dies holding it.
        let code = match channel.take(&options) {
            Ok(job) if job.payload == b"two" => 0,
            _ => 1,
        };
        // SAFETY: ends the child at once, without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid out-pointer.
    assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);

    // The child died holding "two": it comes back first, counted.
    let two = channel.take(&options).unwrap();
    assert_eq!((two.payload.as_slice(), two.deliveries), (&b"two"[..], 2));
    // The parent's next id must not be the one the child gave "two".
    let three = channel.take(&options).unwrap();
    assert_eq!(three.payload, b"three");
    assert_ne!(two.id, three.id);
    for (label, job) in [("one", &one), ("two", &two), ("three", &three)] {
        assert!(channel.ack(job).unwrap(), "ack of {label}");
    }
    channel.end(None).unwrap();
    assert_eq!(
        channel.take(&options).unwrap_err().code(),
        ErrorCode::ChannelEnded
    );
    drop(channel);
    Segment::unlink(&name).unwrap();
    SharedMap::unlink(&format!("{name}.inflight")).unwrap();
}
