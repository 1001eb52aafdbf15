//! shmkit-core: named shared-memory segments with a versioned header, an inter-process mutex
//! that survives its holder's death, cross-process wait/notify, and channels.
//!
//! Plain Rust with no Node.js in it: the napi binding at the repository root is a thin layer over
//! this crate, and Rust programs can use it directly.
//!
//! ```no_run
//! use shmkit_core::{CreateOptions, Segment};
//! let segment = Segment::create("jobs", CreateOptions::new(1 << 20))?;
//! let me = shmkit_core::current_thread();
//! let acquired = segment.header_mutex().lock(&me, None)?;
//! assert!(!acquired.owner_died);
//! segment.header_mutex().unlock(&me)?;
//! Segment::unlink("jobs")?;
//! # Ok::<(), shmkit_core::Error>(())
//! ```
//!
//! # Safety of shared memory
//! Every byte of a segment can be changed at any time by another process, including a buggy or
//! hostile one. This crate therefore reads shared state only through atomics and validates every
//! value it reads (sizes, offsets, lock owners) before using it. What it cannot prevent: another
//! process truncating the object with `ftruncate`, after which touching the lost pages raises
//! SIGBUS. Only give write access to processes you trust not to do that.

pub mod attach;
pub mod channel;
pub mod error;
pub mod header;
pub mod map;
pub mod mutex;
pub mod name;
pub mod peers;
pub mod platform;
pub mod queue;
pub mod segment;
mod shm;
pub mod topic;

pub use attach::Attacher;
pub use channel::{Channel, ChannelStats};
pub use error::{Error, ErrorCode, Result};
pub use header::Kind;
pub use map::{MapOptions, MapStats, SharedMap};
pub use mutex::MutexStats;
pub use mutex::{Acquired, MutexCell, MUTEX_ALIGN, MUTEX_SIZE};
pub use peers::{Peer, Peers};
pub use platform::{current_thread, Liveness, ThreadIdentity, WaitOutcome};
pub use queue::{Job, TakeOptions};
pub use segment::{CreateOptions, Segment, SegmentReport, DEFAULT_MODE, MAX_DATA_SIZE};
pub use topic::{Slow, Subscription, Topic, TopicOptions, TopicStats};

// The README's example is compiled and run as a doc test.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
