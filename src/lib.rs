//! The Node.js binding: thin `#[napi]` wrappers over `shmkit-core`.
//!
//! Arguments arrive already validated by `index.ts` (which owns the Node-style argument errors);
//! this layer still re-checks what it relies on, converts core errors into JS errors with a
//! `code`, and exposes the mapping as external ArrayBuffers without ever copying it.

// napi-derive registers exports only outside `cfg(test)`, which leaves them "unused" there.
#![cfg_attr(test, allow(dead_code))]

mod buffers;
mod cleanup;
mod contract;
mod errors;
mod introspection;
mod segment;
mod timeouts;
mod waiter_pool;
mod waiting;

// Last: napi-derive needs `NativeSegment` (in `segment`) parsed before this second impl block.
mod map;
mod topic;
