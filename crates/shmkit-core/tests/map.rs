//! SharedMap from Rust: map semantics, limits, eviction, TTL, the allocator under churn, readers
//! racing writers across threads with no torn value, and a writer that dies mid-transaction.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shmkit_core::map::{Evict, MapOptions, SharedMap};
use shmkit_core::segment::OpenOptions;
use shmkit_core::ErrorCode;

fn unique(label: &str) -> String {
    format!("core-test-map-{label}-{}", std::process::id())
}

fn fresh(label: &str, options: MapOptions) -> SharedMap {
    let name = unique(label);
    let _ = SharedMap::unlink(&name);
    let map = SharedMap::create(&name, options).unwrap();
    SharedMap::unlink(&name).unwrap();
    map
}

#[test]
fn map_semantics() {
    let map = fresh("semantics", MapOptions::new(100));
    assert!(map.is_empty());
    map.set(b"a", b"1", None).unwrap();
    map.set("ключ 🔑".as_bytes(), b"unicode", None).unwrap();
    map.set(b"", b"empty key", None).unwrap();
    assert_eq!(map.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(
        map.get("ключ 🔑".as_bytes()).unwrap().as_deref(),
        Some(&b"unicode"[..])
    );
    assert_eq!(map.get(b"").unwrap().as_deref(), Some(&b"empty key"[..]));
    assert_eq!(map.get(b"missing").unwrap(), None);
    assert_eq!(map.len(), 3);
    map.set(b"a", b"2 and longer", None).unwrap();
    assert_eq!(
        map.get(b"a").unwrap().as_deref(),
        Some(&b"2 and longer"[..])
    );
    assert_eq!(map.len(), 3);
    assert!(map.delete(b"a").unwrap());
    assert!(!map.delete(b"a").unwrap());
    assert!(!map.contains(b"a").unwrap());
    map.update(b"n", None, |old| {
        assert_eq!(old, None);
        Some(b"1".to_vec())
    })
    .unwrap();
    map.update(b"n", None, |old| {
        let n: u64 = std::str::from_utf8(old.unwrap()).unwrap().parse().unwrap();
        Some((n + 41).to_string().into_bytes())
    })
    .unwrap();
    assert_eq!(map.get(b"n").unwrap().as_deref(), Some(&b"42"[..]));
    map.update(b"n", None, |_| None).unwrap();
    assert!(!map.contains(b"n").unwrap());
    let mut entries = map.entries().unwrap();
    entries.sort();
    assert_eq!(entries.len(), 2);
    map.clear().unwrap();
    assert!(map.is_empty());
    let check = map.verify().unwrap();
    assert_eq!(check.entries, 0);
    assert_eq!(
        check.used_bytes, 16,
        "only the two sentinels: no memory lost"
    );
}

#[test]
fn limits_and_full_maps() {
    let map = fresh(
        "limits",
        MapOptions {
            memory: 1 << 16,
            ..MapOptions::new(4)
        },
    );
    let long_key = vec![b'k'; 1025];
    assert_eq!(
        map.set(&long_key, b"x", None).unwrap_err().code(),
        ErrorCode::OutOfRange
    );
    let huge = vec![0u8; (1 << 16) / 4 + 1];
    assert_eq!(
        map.set(b"k", &huge, None).unwrap_err().code(),
        ErrorCode::OutOfRange
    );
    for key in [b"1", b"2", b"3", b"4"] {
        map.set(key, b"v", None).unwrap();
    }
    assert_eq!(
        map.set(b"5", b"v", None).unwrap_err().code(),
        ErrorCode::MapFull
    );
    map.set(b"4", b"an existing key can still change", None)
        .unwrap();
    assert_eq!(map.len(), 4);
    map.verify().unwrap();
}

#[test]
fn lru_keeps_hot_keys() {
    let map = fresh(
        "lru",
        MapOptions {
            evict: Evict::Lru,
            ..MapOptions::new(64)
        },
    );
    for i in 0..64u32 {
        map.set(format!("cold-{i}").as_bytes(), b"x", None).unwrap();
    }
    for round in 0..200u32 {
        map.get(b"cold-7").unwrap(); // kept hot by reads
        map.set(format!("new-{round}").as_bytes(), b"y", None)
            .unwrap();
    }
    assert!(map.contains(b"cold-7").unwrap(), "the hot key survived");
    assert_eq!(map.len(), 64);
    assert!(map.stats().evictions >= 200);
    map.verify().unwrap();
}

#[test]
fn a_big_value_evicts_as_many_small_entries_as_it_needs() {
    // 64 KiB of heap full of ~3,000 tiny entries; a 16 KiB value needs hundreds of evictions,
    // far more writes than one transaction's undo log holds.
    let map = fresh(
        "lru-big",
        MapOptions {
            evict: Evict::Lru,
            memory: 64 << 10,
            ..MapOptions::new(10_000)
        },
    );
    let mut i = 0u32;
    while map.stats().bytes_used < 60 << 10 {
        map.set(format!("{i:05}").as_bytes(), b"v", None).unwrap();
        i += 1;
    }
    map.set(b"big", &vec![7u8; 16 << 10], None).unwrap();
    assert_eq!(map.get(b"big").unwrap().map(|v| v.len()), Some(16 << 10));
    assert!(map.stats().evictions > 300, "{:?}", map.stats());
    map.verify().unwrap();
}

#[test]
fn ttl_expires_lazily_and_is_swept_for_room() {
    let map = fresh("ttl", MapOptions::new(4));
    map.set(b"short", b"x", Some(Duration::from_millis(30)))
        .unwrap();
    map.set(b"long", b"y", Some(Duration::from_secs(60)))
        .unwrap();
    assert!(map.contains(b"short").unwrap());
    std::thread::sleep(Duration::from_millis(60));
    assert!(!map.contains(b"short").unwrap(), "expired on access");
    assert!(map.contains(b"long").unwrap());
    for key in [b"a", b"b", b"c"] {
        map.set(key, b"z", None).unwrap(); // the third needs the expired entry's room
    }
    assert_eq!(map.stats().expirations, 1);
    map.verify().unwrap();
}

#[test]
fn the_allocator_survives_churn_without_losing_memory() {
    let map = fresh(
        "churn",
        MapOptions {
            memory: 1 << 18,
            ..MapOptions::new(512)
        },
    );
    let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..20_000 {
        let key = format!("key-{}", next() % 700).into_bytes();
        if next().is_multiple_of(3) {
            assert_eq!(map.delete(&key).unwrap(), model.remove(&key).is_some());
        } else {
            let value = vec![(next() % 251) as u8; (next() % 900) as usize];
            match map.set(&key, &value, None) {
                Ok(()) => {
                    model.insert(key, value);
                }
                Err(err) if err.code() == ErrorCode::MapFull => {}
                Err(err) => panic!("{err}"),
            }
        }
    }
    for (key, value) in &model {
        assert_eq!(map.get(key).unwrap().as_ref(), Some(value));
    }
    assert_eq!(map.len(), model.len());
    map.verify().unwrap();
    map.clear().unwrap();
    let check = map.verify().unwrap();
    assert_eq!(check.used_bytes, 16);
    assert_eq!(
        check.free_blocks, 1,
        "everything merged back into one block"
    );
}

#[test]
fn readers_never_see_a_torn_value() {
    // Counted, not timed: the writer makes a fixed number of changes and every reader keeps
    // reading until the writer is done and it has read enough itself (so this holds under
    // valgrind, which runs one thread at a time, as well as on an idle machine).
    const WRITES: u32 = 3000;
    const READS: u64 = 1000;
    let map = Arc::new(fresh("torn", MapOptions::new(64)));
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (map, done) = (map.clone(), done.clone());
        std::thread::spawn(move || {
            for i in 0..WRITES {
                let byte = (i % 256) as u8;
                let value = vec![byte; 16 + (i as usize % 300)];
                map.set(format!("k{}", i % 8).as_bytes(), &value, None)
                    .unwrap();
                if i % 64 == 0 {
                    std::thread::yield_now();
                }
            }
            done.store(true, Ordering::Release);
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (map, done) = (map.clone(), done.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while reads < READS || !done.load(Ordering::Acquire) {
                    for k in 0..8 {
                        if let Some(value) = map.get(format!("k{k}").as_bytes()).unwrap() {
                            assert!(value.iter().all(|&b| b == value[0]), "a torn value");
                            reads += 1;
                        }
                    }
                    std::thread::yield_now();
                }
                reads
            })
        })
        .collect();
    writer.join().unwrap();
    for reader in readers {
        assert!(reader.join().unwrap() >= READS);
    }
    map.verify().unwrap();
}

#[test]
fn opening_checks_the_kind_and_the_geometry() {
    let name = unique("open");
    let _ = SharedMap::unlink(&name);
    let created = SharedMap::create(&name, MapOptions::new(10)).unwrap();
    created.set(b"x", b"1", None).unwrap();
    let opened = SharedMap::open(&name, &OpenOptions::default()).unwrap();
    assert_eq!(opened.get(b"x").unwrap().as_deref(), Some(&b"1"[..]));
    let (again, created_now) =
        SharedMap::open_or_create(&name, MapOptions::new(10), &OpenOptions::default()).unwrap();
    assert!(!created_now);
    assert_eq!(again.len(), 1);
    let other = SharedMap::open_or_create(&name, MapOptions::new(11), &OpenOptions::default());
    assert_eq!(other.err().unwrap().code(), ErrorCode::SizeMismatch);
    SharedMap::unlink(&name).unwrap();
    let plain = unique("plain");
    let _segment =
        shmkit_core::Segment::create(&plain, shmkit_core::CreateOptions::new(64)).unwrap();
    assert_eq!(
        SharedMap::open(&plain, &OpenOptions::default())
            .err()
            .unwrap()
            .code(),
        ErrorCode::WrongKind
    );
    assert_eq!(
        SharedMap::unlink(&plain).unwrap_err().code(),
        ErrorCode::WrongKind
    );
    shmkit_core::Segment::unlink(&plain).unwrap();
}

/// Runs only inside a child process: writes (sets, deletes, big values that force evictions)
/// as fast as it can until killed.
#[test]
fn map_writer_child() {
    let Ok(name) = std::env::var("SHMKIT_MAP_CHILD") else {
        return;
    };
    let map = SharedMap::open(&name, &OpenOptions::default()).unwrap();
    let mut i = 0u64;
    loop {
        let key = format!("k{}", i % 300);
        if i.is_multiple_of(5) {
            map.delete(key.as_bytes()).unwrap();
        } else {
            let value = vec![(i % 251) as u8; 8 + (i as usize * 37) % 2000];
            map.set(key.as_bytes(), &value, None).unwrap();
        }
        i += 1;
    }
}

/// A writer SIGKILLed again and again, at random points of its transactions: every time, the
/// next writer repairs the map, every value is whole, and no heap memory is lost.
#[test]
fn a_writer_killed_mid_transaction_leaves_the_map_consistent() {
    let name = unique("killed");
    let _ = SharedMap::unlink(&name);
    let options = MapOptions {
        memory: 1 << 18,
        evict: Evict::Lru,
        ..MapOptions::new(200)
    };
    let map = SharedMap::create(&name, options).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..25 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "map_writer_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SHMKIT_MAP_CHILD", &name)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(30 + seed % 40));
        child.kill().unwrap();
        child.wait().unwrap();
        // The next writer takes the lock over (the child may have died holding it) and repairs.
        map.set(b"after", format!("round {round}").as_bytes(), None)
            .unwrap();
        let check = map
            .verify()
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(check.entries, map.len());
        for (key, value) in map.entries().unwrap() {
            if key != b"after" {
                assert!(
                    value.iter().all(|&b| b == value[0]),
                    "round {round}: torn value"
                );
            }
        }
    }
    assert!(
        map.lock_cell().stats().owner_deaths > 0,
        "some kill landed inside a transaction (holding the lock)"
    );
    map.clear().unwrap();
    assert_eq!(map.verify().unwrap().used_bytes, 16, "no heap memory lost");
    SharedMap::unlink(&name).unwrap();
}
