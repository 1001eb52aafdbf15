//! What a JavaScript environment leaves behind when it shuts down (a worker thread terminated,
//! the process exiting): per-environment lists of weakly held objects, each list handed to a
//! release function by the environment's cleanup hook (one hook per environment and list).
//!
//! Two users: waiters in flight are cancelled (`waiting.rs`), and channel handles never closed
//! are released. Node and Bun finalize a terminated worker's objects (dropping a handle detaches
//! it); Deno does not, so a terminated worker's channel handle stayed attached and counted as a
//! live producer or consumer (docs/platforms.md). Its cleanup hook now detaches it and wakes its
//! peers, as `close()` does.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use napi::bindgen_prelude::*;
use shmkit_core::Segment;

use crate::errors::{coded, Code};

/// Objects per environment (by its `napi_env` address), released together when it shuts down.
pub struct EnvRegistry<T: Send + 'static> {
    lists: Mutex<BTreeMap<usize, Vec<Weak<T>>>>,
    release: fn(Arc<T>),
}

impl<T: Send + Sync + 'static> EnvRegistry<T> {
    pub const fn new(release: fn(Arc<T>)) -> Self {
        EnvRegistry {
            lists: Mutex::new(BTreeMap::new()),
            release,
        }
    }

    /// Records `item` under `env`, installing the environment's cleanup hook on first use.
    /// Items dropped since are forgotten, so a list stays as long as its live items.
    pub fn track(&'static self, env: &Env, item: &Arc<T>) -> Result<(), Code> {
        let key = env.raw() as usize;
        let mut lists = self.lists.lock().unwrap_or_else(|e| e.into_inner());
        let first = !lists.contains_key(&key);
        let list = lists.entry(key).or_default();
        list.retain(|weak| weak.strong_count() > 0);
        list.push(Arc::downgrade(item));
        if first {
            env.add_env_cleanup_hook(key, move |key| {
                let gone = self
                    .lists
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&key);
                for item in gone.into_iter().flatten().filter_map(|weak| weak.upgrade()) {
                    (self.release)(item);
                }
            })
            .map_err(|e| coded("ERR_SHM_NAPI", e.reason.clone()))?;
        }
        Ok(())
    }
}

/// A channel handle as its environment's cleanup hook needs it: the mapping, and the roles it
/// announced (shared with the `NativeSegment`, whose `close()` takes them).
pub struct ChannelHandle {
    pub segment: Weak<Segment>,
    pub roles: Arc<AtomicU32>,
}

static CHANNELS: EnvRegistry<ChannelHandle> = EnvRegistry::new(|handle| {
    if let Some(segment) = handle.segment.upgrade() {
        segment.release_attachment();
        shmkit_core::peers::left(&segment, handle.roles.swap(0, Ordering::Relaxed));
    }
});

/// Records a channel handle of `env`: released when `env` shuts down with it still open. Returns
/// the record, which the handle keeps (the registry holds it weakly).
pub fn track_channel(
    env: &Env,
    segment: &Arc<Segment>,
    roles: &Arc<AtomicU32>,
) -> Result<Arc<ChannelHandle>, Code> {
    let handle = Arc::new(ChannelHandle {
        segment: Arc::downgrade(segment),
        roles: Arc::clone(roles),
    });
    CHANNELS.track(env, &handle)?;
    Ok(handle)
}
