//! An attach table made of arbitrary bytes (its mutex left free, so attaching never waits):
//! listing, reaping, attaching and detaching return, and leave a table they can read again.
#![no_main]

use std::sync::atomic::AtomicU64;

use libfuzzer_sys::fuzz_target;
use shmkit_core::attach::{AttachTable, OFF_ATTACH_LOCK};
use shmkit_core::header::MIN_HEADER_SIZE;

fuzz_target!(|input: &[u8]| {
    let memory: Vec<AtomicU64> = (0..MIN_HEADER_SIZE / 8).map(|_| AtomicU64::new(0)).collect();
    let base = memory.as_ptr() as *mut u8;
    // SAFETY: `memory` is a header page of 8-aligned atomics that outlives the table view; the
    // bytes are written before the view exists.
    unsafe { std::ptr::copy_nonoverlapping(input.as_ptr(), base, input.len().min(MIN_HEADER_SIZE)) };
    // The attach mutex's lock word: free, so attach() runs at once (its waiting is tested
    // elsewhere).
    // SAFETY: 4 bytes at a fixed, aligned offset inside the page.
    unsafe { std::ptr::write_bytes(base.add(OFF_ATTACH_LOCK), 0, 4) };
    // SAFETY: a page-sized, 8-aligned header that outlives `table`.
    let table = unsafe { AttachTable::new(base) };
    let _ = table.attachers();
    let _ = (table.doomed(), table.overflow());
    let auto_unlink = input.first().is_some_and(|b| b & 1 == 1);
    if let Ok(attached) = table.attach(auto_unlink) {
        let _ = table.detach(&attached, auto_unlink, || Ok(()));
    }
    let _ = table.collect(auto_unlink, || Ok(()));
    let _ = table.attachers();
});
