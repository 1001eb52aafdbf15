//! A segment header made of arbitrary bytes, in a mapping of arbitrary length: inspecting it
//! gives a header that fits the mapping, or an error; never a panic or an out-of-bounds read.
#![no_main]

use std::sync::atomic::AtomicU64;

use libfuzzer_sys::fuzz_target;
use shmkit_core::header::{Inspection, RawHeader, MIN_HEADER_SIZE};

const MAPPING: usize = 2 * MIN_HEADER_SIZE;

fuzz_target!(|input: &[u8]| {
    let (len, bytes) = match input.split_first_chunk::<2>() {
        Some((len, rest)) => (u16::from_le_bytes(*len) as usize, rest),
        None => (0, input),
    };
    let memory: Vec<AtomicU64> = (0..MAPPING / 8).map(|_| AtomicU64::new(0)).collect();
    let base = memory.as_ptr() as *mut u8;
    // SAFETY: `memory` is MAPPING bytes of 8-aligned atomics that outlive every view below; the
    // bytes are written before any view exists.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), base, bytes.len().min(MAPPING)) };
    // SAFETY: as above; the view covers the first MIN_HEADER_SIZE bytes.
    let header = unsafe { RawHeader::new(base, MIN_HEADER_SIZE) };
    let mapping_len = len.clamp(MIN_HEADER_SIZE, MAPPING);
    if let Ok(Inspection::Ready(info)) = header.inspect(mapping_len) {
        assert!(info.header_size + info.data_size <= mapping_len);
        assert!(!info.name.is_empty() && info.name.len() <= 200);
    }
});
