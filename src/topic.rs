//! The publishing side of `Topic` for JavaScript, and subscribing: publishes run in the Rust
//! core (one implementation of the publish protocol, the reaping of dead subscribers and the
//! repair after a dead publisher); subscribers read the ring in JavaScript (`lib/topic.ts`),
//! following the same protocol (docs/TOPIC.md).

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use shmkit_core::topic::{Slow, Topic, TopicOptions};

use crate::errors::{coded, to_js, Code};
use crate::segment::{open_options, NativeOpenOptions, NativeSegment};
use crate::timeouts;

/// What `Topic.create`/`openOrCreate` pass down, already validated.
#[napi(object)]
pub struct NativeTopicOptions {
    pub capacity: f64,
    pub codec: u32,
    /// `'block'` or `'overwrite'`.
    pub slow: String,
    pub subscribers: u32,
    pub mode: u32,
    pub auto_unlink: bool,
}

fn topic_options(options: &NativeTopicOptions) -> Result<TopicOptions, Code> {
    let capacity = options.capacity;
    if !(capacity.is_finite() && capacity >= 1.0 && capacity.fract() == 0.0) {
        return Err(coded(
            "ERR_OUT_OF_RANGE",
            format!("Invalid capacity {capacity}"),
        ));
    }
    Ok(TopicOptions {
        capacity: capacity as usize,
        codec: options.codec,
        slow: if options.slow == "overwrite" {
            Slow::Overwrite
        } else {
            Slow::Block
        },
        subscribers: options.subscribers as usize,
        mode: options.mode,
        auto_unlink: options.auto_unlink,
    })
}

/// Where a topic's ring lies, for the JavaScript subscriber.
#[napi(object)]
pub struct TopicRegions {
    pub ring: u32,
    pub capacity: u32,
    pub slots: u32,
    pub overwrite: bool,
}

/// A subscription just taken: its slot, the slot's state value, and where it starts reading.
#[napi(object)]
pub struct TopicSubscription {
    pub slot: u32,
    pub state: u32,
    pub cursor: u32,
    pub seq: u32,
}

#[napi(object)]
pub struct TopicSubscriberInfo {
    pub slot: u32,
    pub pid: u32,
    pub tid: u32,
    pub alive: bool,
    pub behind: u32,
    pub behind_bytes: u32,
    pub missed: u32,
}

#[napi(object)]
pub struct NativeTopicStats {
    pub published: u32,
    pub capacity: u32,
    pub slow: String,
    pub ended: bool,
    pub reaped: u32,
    pub subscriber_slots: u32,
    pub subscribers: Vec<TopicSubscriberInfo>,
}

#[napi]
impl NativeSegment {
    #[napi(factory)]
    pub fn create_topic(name: String, options: NativeTopicOptions) -> Result<Self, Code> {
        let topic = Topic::create(&name, topic_options(&options)?).map_err(to_js)?;
        Ok(Self::from_topic(topic, true))
    }

    #[napi(factory)]
    pub fn open_topic(name: String, options: NativeOpenOptions) -> Result<Self, Code> {
        let topic = Topic::open(&name, &open_options(&options)).map_err(to_js)?;
        Ok(Self::from_topic(topic, false))
    }

    #[napi(factory)]
    pub fn open_or_create_topic(
        name: String,
        options: NativeTopicOptions,
        open: NativeOpenOptions,
    ) -> Result<Self, Code> {
        let (topic, created) =
            Topic::open_or_create(&name, topic_options(&options)?, &open_options(&open))
                .map_err(to_js)?;
        Ok(Self::from_topic(topic, created))
    }

    fn from_topic(topic: Topic, created: bool) -> Self {
        let segment = topic.segment().clone();
        let mut native = Self::wrap_arc(segment, None, created);
        native.topic = Some(Arc::new(topic));
        native
    }

    fn topic(&self) -> Result<&Arc<Topic>, Code> {
        self.topic
            .as_ref()
            .ok_or_else(|| coded("ERR_SHM_CLOSED", "The topic is closed"))
    }

    /// Publishes the UTF-8 bytes of `text` (string and json codecs) while the calling thread
    /// holds the publish lock (`lib/topic.ts` takes it with its `LockCell`): false when a live
    /// subscriber holds the room (block mode). The caller wakes subscribers after releasing.
    #[napi]
    pub fn topic_publish_held_text(&self, text: String, owner_died: bool) -> Result<bool, Code> {
        self.topic()?
            .publish_held(text.as_bytes(), owner_died)
            .map_err(to_js)
    }

    #[napi]
    pub fn topic_publish_held_bytes(&self, bytes: &[u8], owner_died: bool) -> Result<bool, Code> {
        self.topic()?.publish_held(bytes, owner_died).map_err(to_js)
    }

    #[napi]
    pub fn topic_end(&self, timeout_ms: f64) -> Result<(), Code> {
        self.topic()?
            .end(timeouts::from_millis(timeout_ms))
            .map_err(to_js)
    }

    /// Subscribes the calling thread.
    #[napi]
    pub fn topic_subscribe(&self) -> Result<TopicSubscription, Code> {
        let me = shmkit_core::current_thread();
        let (slot, state, cursor, seq) = self.topic()?.claim_slot(&me).map_err(to_js)?;
        Ok(TopicSubscription {
            slot: slot as u32,
            state,
            cursor,
            seq,
        })
    }

    /// Frees a subscription's slot (does nothing if it no longer holds that subscription).
    #[napi]
    pub fn topic_unsubscribe(&self, slot: u32, state: u32) -> Result<(), Code> {
        self.topic()?.release_slot(slot as usize, state);
        Ok(())
    }

    #[napi]
    pub fn topic_regions(&self) -> Result<TopicRegions, Code> {
        let topic = self.topic()?;
        let r = topic.regions();
        Ok(TopicRegions {
            ring: r.ring as u32,
            capacity: r.capacity as u32,
            slots: r.slots as u32,
            overwrite: topic.slow() == Slow::Overwrite,
        })
    }

    #[napi]
    pub fn topic_stats(&self) -> Result<NativeTopicStats, Code> {
        Ok(self.topic()?.stats().into())
    }
}

impl From<shmkit_core::TopicStats> for NativeTopicStats {
    fn from(stats: shmkit_core::TopicStats) -> Self {
        NativeTopicStats {
            published: stats.published,
            capacity: stats.capacity,
            slow: match stats.slow {
                Slow::Block => "block",
                Slow::Overwrite => "overwrite",
            }
            .to_owned(),
            ended: stats.ended,
            reaped: stats.reaped,
            subscriber_slots: stats.subscriber_slots as u32,
            subscribers: stats
                .subscribers
                .iter()
                .map(|s| TopicSubscriberInfo {
                    slot: s.slot as u32,
                    pid: s.pid,
                    tid: s.tid,
                    alive: s.alive,
                    behind: s.behind,
                    behind_bytes: s.behind_bytes,
                    missed: s.missed,
                })
                .collect(),
        }
    }
}
