//! After `fork()`, the child is another thread of another process: it must not act as its
//! parent (a cached identity once made its `lock` say WouldDeadlock and its `unlock` release the
//! parent's lock). And a process whose main thread ended with `pthread_exit` while another thread
//! runs is alive. One test per binary run: forking a multi-threaded test runner is only safe
//! while nothing else runs.

#![cfg(target_os = "linux")]

use std::time::Duration;

use shmkit_core::mutex::OWNER_MASK;
use shmkit_core::platform::{process_liveness, Liveness, ProcessIdentity};
use shmkit_core::{CreateOptions, ErrorCode, Segment};

fn wait_for(child: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid out-pointer.
    assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
    assert!(
        libc::WIFEXITED(status),
        "the child crashed: status {status:#x}"
    );
    libc::WEXITSTATUS(status)
}

#[test]
fn a_forked_child_is_not_its_parent_and_a_pthread_exit_main_thread_is_not_death() {
    let name = format!("core-test-fork-{}", std::process::id());
    let segment = Segment::create(&name, CreateOptions::new(64)).unwrap();
    let parent = shmkit_core::current_thread();
    segment.header_mutex().lock(&parent, None).unwrap();

    // SAFETY: the child only runs shmkit calls and `_exit`s; no lock of this process is held
    // across the fork by another thread (the test harness thread is idle in `join`).
    let child = unsafe { libc::fork() };
    if child == 0 {
        let me = shmkit_core::current_thread();
        let mutex = segment.header_mutex();
        let mut failures = 0;
        if me.tid == parent.tid {
            failures |= 1; // still the parent's identity
        }
        if mutex.try_lock(&me).is_some() {
            failures |= 2;
        }
        if mutex.unlock(&me).map_err(|e| e.code()) != Err(ErrorCode::NotOwner) {
            failures |= 4; // released (or thought it held) the parent's lock
        }
        match mutex.lock(&me, Some(Duration::from_millis(100))) {
            Err(err) if err.code() == ErrorCode::TimedOut => {}
            _ => failures |= 8,
        }
        // SAFETY: ends the child at once, without running the parent's destructors.
        unsafe { libc::_exit(failures) };
    }
    assert_eq!(
        wait_for(child),
        0,
        "bit 1: identity, 2: try_lock, 4: unlock, 8: lock"
    );
    assert_eq!(segment.header_mutex().state() & OWNER_MASK, parent.tid);
    segment.header_mutex().unlock(&parent).unwrap();
    drop(segment);
    Segment::unlink(&name).unwrap();

    // A child whose main thread ends (as with pthread_exit) while a second thread runs for 600 ms.
    // SAFETY: as above; the child spawns a thread and ends its main thread.
    let child = unsafe { libc::fork() };
    if child == 0 {
        std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(600));
            // SAFETY: ends the whole child process.
            unsafe { libc::_exit(0) };
        });
        // What `pthread_exit` does to the kernel task, without unwinding through Rust frames: the
        // raw `exit` syscall ends only the calling (main) thread; the spawned one goes on.
        // SAFETY: the thread never returns to Rust code; the process lives on in its sibling.
        unsafe { libc::syscall(libc::SYS_exit, 0) };
        unreachable!("SYS_exit does not return");
    }
    std::thread::sleep(Duration::from_millis(200));
    let who = ProcessIdentity {
        pid: child as u32,
        namespace: 0,
        start_time: 0,
    };
    assert_eq!(
        process_liveness(&who),
        Liveness::Alive,
        "its second thread runs"
    );
    assert_eq!(wait_for(child), 0);
    assert_eq!(process_liveness(&who), Liveness::Dead);
}
