//! Segment lifetime: the default never unlinks; auto-unlink removes the segment when its last
//! attacher detaches, including when the others died without detaching.

use std::process::Command;
use std::time::Duration;

use shmkit_core::{CreateOptions, ErrorCode, Segment};

const READY: Duration = Duration::from_millis(500);

fn unique(label: &str) -> String {
    format!("core-life-{label}-{}", std::process::id())
}

fn auto_unlink(size: usize) -> CreateOptions {
    CreateOptions {
        auto_unlink: true,
        ..CreateOptions::new(size)
    }
}

#[test]
fn by_default_nothing_is_unlinked() {
    let name = unique("default");
    drop(Segment::create(&name, CreateOptions::new(64)).unwrap());
    let reopened = Segment::open(&name, READY).unwrap();
    assert!(!reopened.detach().unwrap());
    Segment::unlink(&name).unwrap();
}

#[test]
fn auto_unlink_removes_on_last_detach() {
    let name = unique("auto");
    let first = Segment::create(&name, auto_unlink(64)).unwrap();
    let second = Segment::open(&name, READY).unwrap();
    assert_eq!(Segment::inspect(&name).unwrap().attachers.len(), 2);
    assert!(!first.detach().unwrap(), "another attacher remains");
    assert!(Segment::open(&name, READY).is_ok());
    assert!(second.detach().unwrap(), "the last one removes it");
    assert_eq!(
        Segment::open(&name, READY).err().unwrap().code(),
        ErrorCode::NotFound
    );
}

#[cfg(target_os = "linux")]
#[test]
fn dead_attachers_are_reaped() {
    let name = unique("reap");
    let first = Segment::create(&name, auto_unlink(64)).unwrap();
    // A child process attaches, then dies without detaching (SIGKILL).
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "attach_and_hang", "--nocapture"])
        .env("SHMKIT_ATTACH", &name)
        .spawn()
        .unwrap();
    while Segment::inspect(&name).unwrap().attachers.len() < 2 {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        first.detach().unwrap(),
        "the dead child does not keep it alive"
    );
    assert_eq!(
        Segment::inspect(&name).err().unwrap().code(),
        ErrorCode::NotFound
    );
}

/// Child body for `dead_attachers_are_reaped`.
#[test]
fn attach_and_hang() {
    if let Ok(name) = std::env::var("SHMKIT_ATTACH") {
        let _segment = Segment::open(&name, READY).unwrap();
        std::thread::sleep(Duration::from_secs(600));
    }
}
