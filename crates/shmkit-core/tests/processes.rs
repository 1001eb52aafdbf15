//! Several real processes increment one counter under the header mutex; one holder is killed.
//!
//! The test binary re-executes itself: with `SHMKIT_CHILD_SEGMENT` set, `child_main` runs as the
//! child's body instead of a test.

use std::process::{Command, Stdio};
use std::time::Duration;

use shmkit_core::{CreateOptions, Segment};

const ROUNDS: u64 = 20_000;

fn unique(name: &str) -> String {
    format!("core-test-{name}-{}", std::process::id())
}

fn spawn_child(segment: &str, role: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_main", "--nocapture", "--test-threads=1"])
        .env("SHMKIT_CHILD_SEGMENT", segment)
        .env("SHMKIT_CHILD_ROLE", role)
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Runs only inside a child process (see the module docs).
#[test]
fn child_main() {
    let Ok(name) = std::env::var("SHMKIT_CHILD_SEGMENT") else {
        return;
    };
    let segment = Segment::open(&name, Duration::from_secs(5)).unwrap();
    let me = shmkit_core::current_thread();
    let counter = segment.data_ptr() as *mut u64;
    match std::env::var("SHMKIT_CHILD_ROLE").as_deref() {
        Ok("increment") => {
            for _ in 0..ROUNDS {
                segment.header_mutex().lock(&me, None).unwrap();
                // SAFETY: the data area holds >= 8 bytes, 8-aligned; the mutex serialises access.
                unsafe { counter.write_volatile(counter.read_volatile() + 1) };
                segment.header_mutex().unlock(&me).unwrap();
            }
        }
        Ok("hold-forever") => {
            segment.header_mutex().lock(&me, None).unwrap();
            println!("locked");
            std::thread::sleep(Duration::from_secs(600));
        }
        other => panic!("unknown role {other:?}"),
    }
}

#[test]
fn four_processes_increment_exactly() {
    let name = unique("count");
    let segment = Segment::create(&name, CreateOptions::new(4096)).unwrap();
    let children: Vec<_> = (0..4).map(|_| spawn_child(&name, "increment")).collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    // SAFETY: 8-aligned, in bounds; every child has exited.
    let total = unsafe { (segment.data_ptr() as *const u64).read_volatile() };
    Segment::unlink(&name).unwrap();
    assert_eq!(total, 4 * ROUNDS);
}

#[cfg(target_os = "linux")]
#[test]
fn a_killed_holder_is_recovered_with_owner_died() {
    let name = unique("killed");
    let segment = Segment::create(&name, CreateOptions::new(4096)).unwrap();
    let mut holder = spawn_child(&name, "hold-forever");
    let me = shmkit_core::current_thread();
    // Wait until the child holds the lock.
    while segment.header_mutex().state() == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    holder.kill().unwrap();
    // Deliberately NOT reaped before locking: a zombie holder must count as dead.
    let acquired = segment
        .header_mutex()
        .lock(&me, Some(Duration::from_secs(5)))
        .unwrap();
    holder.wait().unwrap();
    assert!(acquired.owner_died);
    segment.header_mutex().unlock(&me).unwrap();
    Segment::unlink(&name).unwrap();
}
