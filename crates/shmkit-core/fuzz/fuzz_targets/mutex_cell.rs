//! A mutex cell made of arbitrary bytes: every non-blocking operation returns (a lock taken is
//! released again), and a bounded lock times out or succeeds; never a panic or a hang.
#![no_main]

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shmkit_core::{MutexCell, MUTEX_SIZE};

fuzz_target!(|input: &[u8]| {
    let memory: Vec<AtomicU64> = (0..MUTEX_SIZE / 8).map(|_| AtomicU64::new(0)).collect();
    let base = memory.as_ptr() as *mut u8;
    // SAFETY: MUTEX_SIZE bytes of 8-aligned atomics, written before any view exists.
    unsafe { std::ptr::copy_nonoverlapping(input.as_ptr(), base, input.len().min(MUTEX_SIZE)) };
    // SAFETY: aligned, MUTEX_SIZE bytes, outlives the view.
    let cell = unsafe { MutexCell::at(base) };
    let me = shmkit_core::current_thread();
    let _ = (cell.stats(), cell.holder(), cell.is_held_by(cell.state(), &me));
    if cell.try_lock(&me).is_some() {
        assert!(cell.is_held_by(cell.state(), &me));
        cell.unlock(&me).expect("a lock just taken can be released");
    }
    if cell.lock_after_wait(&me, input.len() % 2 == 0).is_some() {
        cell.unlock(&me).expect("a lock just taken can be released");
    }
    if cell.lock(&me, Some(Duration::ZERO)).is_ok() {
        cell.unlock(&me).expect("a lock just taken can be released");
    }
    let _ = cell.unlock(&me);
    cell.pass_on_wake();
});
