//! The writing side of `SharedMap` for JavaScript: every mutation runs in the Rust core (one
//! implementation of the transaction and allocator code); reads stay in JavaScript over the
//! mapped buffer (`lib/map.ts`), following the same protocol (docs/MAP.md).

use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use shmkit_core::map::{Evict, MapOptions, SharedMap};

use crate::errors::{coded, to_js, Code};
use crate::segment::{open_options, NativeOpenOptions, NativeSegment};
use crate::timeouts;

/// What `SharedMap.create`/`openOrCreate` pass down, already validated.
#[napi(object)]
pub struct NativeMapOptions {
    pub capacity: f64,
    pub memory: f64,
    pub codec: u32,
    /// `'none'` or `'lru'`.
    pub evict: String,
    pub mode: u32,
    pub auto_unlink: bool,
}

fn map_options(options: &NativeMapOptions) -> Result<MapOptions, Code> {
    let whole = |value: f64, what: &str| {
        if value.is_finite() && value >= 0.0 && value.fract() == 0.0 {
            Ok(value as usize)
        } else {
            Err(coded("ERR_OUT_OF_RANGE", format!("Invalid {what} {value}")))
        }
    };
    let capacity = whole(options.capacity, "capacity")?;
    Ok(MapOptions {
        capacity,
        // Negative: the default for the capacity (the core decides it).
        memory: if options.memory < 0.0 {
            shmkit_core::map::default_memory(capacity)
        } else {
            whole(options.memory, "memory")?
        },
        codec: options.codec,
        evict: if options.evict == "lru" {
            Evict::Lru
        } else {
            Evict::None
        },
        mode: options.mode,
        auto_unlink: options.auto_unlink,
    })
}

/// Where a map's regions lie in its data area, for the JavaScript reader.
#[napi(object)]
pub struct MapRegions {
    pub index_a: u32,
    pub index_b: u32,
    pub entries: u32,
    pub heap: u32,
    pub capacity: u32,
    pub buckets: u32,
    pub heap_size: u32,
}

/// What `verify` found.
#[napi(object)]
pub struct MapCheck {
    pub entries: u32,
    pub used_bytes: f64,
    pub free_bytes: f64,
    pub free_blocks: u32,
}

fn ttl(ms: f64) -> Option<Duration> {
    timeouts::from_millis(ms)
}

#[napi]
impl NativeSegment {
    #[napi(factory)]
    pub fn create_map(name: String, options: NativeMapOptions) -> Result<Self, Code> {
        let map = SharedMap::create(&name, map_options(&options)?).map_err(to_js)?;
        Ok(Self::from_map(map, true))
    }

    #[napi(factory)]
    pub fn open_map(name: String, options: NativeOpenOptions) -> Result<Self, Code> {
        let map = SharedMap::open(&name, &open_options(&options)).map_err(to_js)?;
        Ok(Self::from_map(map, false))
    }

    #[napi(factory)]
    pub fn open_or_create_map(
        name: String,
        options: NativeMapOptions,
        open: NativeOpenOptions,
    ) -> Result<Self, Code> {
        let (map, created) =
            SharedMap::open_or_create(&name, map_options(&options)?, &open_options(&open))
                .map_err(to_js)?;
        Ok(Self::from_map(map, created))
    }

    fn from_map(map: SharedMap, created: bool) -> Self {
        let segment = map.segment().clone();
        Self::wrap_arc(segment, Some(Arc::new(map)), created)
    }

    fn map(&self) -> Result<&Arc<SharedMap>, Code> {
        self.map
            .as_ref()
            .ok_or_else(|| coded("ERR_SHM_CLOSED", "The map is closed"))
    }

    /// Sets `key` to the UTF-8 bytes of `text` (string and json codecs), expiring after `ttl_ms`
    /// (negative: never). `locked`: the caller holds the map's lock (`update`).
    #[napi]
    pub fn map_set_text(
        &self,
        key: String,
        text: String,
        ttl_ms: f64,
        locked: bool,
    ) -> Result<(), Code> {
        self.map_set_bytes_inner(&key, text.as_bytes(), ttl_ms, locked)
    }

    /// Sets `key` to `bytes` (bytes and v8 codecs).
    #[napi]
    pub fn map_set_bytes(
        &self,
        key: String,
        bytes: &[u8],
        ttl_ms: f64,
        locked: bool,
    ) -> Result<(), Code> {
        self.map_set_bytes_inner(&key, bytes, ttl_ms, locked)
    }

    fn map_set_bytes_inner(
        &self,
        key: &str,
        bytes: &[u8],
        ttl_ms: f64,
        locked: bool,
    ) -> Result<(), Code> {
        let map = self.map()?;
        let result = if locked {
            map.set_locked(key.as_bytes(), bytes, ttl(ttl_ms))
        } else {
            map.set(key.as_bytes(), bytes, ttl(ttl_ms))
        };
        result.map_err(to_js)
    }

    #[napi]
    pub fn map_delete(&self, key: String, locked: bool) -> Result<bool, Code> {
        let map = self.map()?;
        let result = if locked {
            map.delete_locked(key.as_bytes())
        } else {
            map.delete(key.as_bytes())
        };
        result.map_err(to_js)
    }

    #[napi]
    pub fn map_clear(&self) -> Result<(), Code> {
        self.map()?.clear().map_err(to_js)
    }

    /// Repairs the map after its lock was taken over from a dead writer (the caller holds it).
    #[napi]
    pub fn map_recover(&self) -> Result<(), Code> {
        self.map()?.recover();
        Ok(())
    }

    #[napi]
    pub fn map_verify(&self) -> Result<MapCheck, Code> {
        let check = self.map()?.verify().map_err(to_js)?;
        Ok(MapCheck {
            entries: check.entries as u32,
            used_bytes: check.used_bytes as f64,
            free_bytes: check.free_bytes as f64,
            free_blocks: check.free_blocks as u32,
        })
    }

    #[napi]
    pub fn map_regions(&self) -> Result<MapRegions, Code> {
        let r = self.map()?.regions();
        Ok(MapRegions {
            index_a: r.index_a as u32,
            index_b: r.index_b as u32,
            entries: r.entries as u32,
            heap: r.heap as u32,
            capacity: r.capacity as u32,
            buckets: r.buckets as u32,
            heap_size: r.heap_size as u32,
        })
    }
}
