//! Segment life cycle against the real OS: names, existence, validation, space.

use std::time::Duration;

use shmkit_core::{CreateOptions, ErrorCode, Segment};

fn unique(name: &str) -> String {
    format!("core-seg-{name}-{}", std::process::id())
}

const READY: Duration = Duration::from_millis(200);

#[test]
fn create_open_unlink() {
    let name = unique("life");
    let created = Segment::create(&name, CreateOptions::new(100)).unwrap();
    assert_eq!(created.data_len(), 100);
    assert_eq!(
        created.data_ptr() as usize % 4096,
        0,
        "data area is page-aligned"
    );
    let err = Segment::create(&name, CreateOptions::new(100))
        .err()
        .unwrap();
    assert_eq!(err.code(), ErrorCode::AlreadyExists);

    // SAFETY: in bounds of the 100-byte data area of a live mapping.
    unsafe { created.data_ptr().write_volatile(42) };
    let opened = Segment::open(&name, READY).unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { opened.data_ptr().read_volatile() }, 42);
    assert_ne!(opened.data_ptr(), created.data_ptr());

    Segment::unlink(&name).unwrap();
    assert_eq!(
        Segment::open(&name, READY).err().unwrap().code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        Segment::unlink(&name).unwrap_err().code(),
        ErrorCode::NotFound
    );
    // Existing mappings survive the unlink.
    // SAFETY: as above.
    assert_eq!(unsafe { opened.data_ptr().read_volatile() }, 42);
}

#[test]
fn open_or_create_reports_who_created_and_checks_size() {
    let name = unique("ooc");
    let (_first, created) = Segment::open_or_create(&name, CreateOptions::new(64), READY).unwrap();
    assert!(created);
    let (_second, created) = Segment::open_or_create(&name, CreateOptions::new(64), READY).unwrap();
    assert!(!created);
    let err = Segment::open_or_create(&name, CreateOptions::new(65), READY)
        .err()
        .unwrap();
    assert_eq!(err.code(), ErrorCode::SizeMismatch);
    Segment::unlink(&name).unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn refuses_foreign_and_unfinished_objects() {
    let path = |n: &str| format!("/dev/shm/shmkit.{n}");
    let foreign = unique("foreign");
    std::fs::write(path(&foreign), vec![7u8; 8192]).unwrap();
    assert_eq!(
        Segment::open(&foreign, READY).err().unwrap().code(),
        ErrorCode::NotShmkit
    );

    let unfinished = unique("unfinished");
    std::fs::write(path(&unfinished), vec![0u8; 8192]).unwrap();
    assert_eq!(
        Segment::open(&unfinished, READY).err().unwrap().code(),
        ErrorCode::NotReady
    );

    let empty = unique("empty");
    std::fs::write(path(&empty), b"").unwrap();
    assert_eq!(
        Segment::open(&empty, READY).err().unwrap().code(),
        ErrorCode::NotReady
    );

    for name in [foreign, unfinished, empty] {
        Segment::unlink(&name).unwrap();
    }
}

#[cfg(target_os = "linux")]
#[test]
fn more_than_the_whole_tmpfs_is_enospc_not_sigbus() {
    // SAFETY: statvfs writes into the zeroed struct we pass; the path is a valid C string.
    let total = unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(c"/dev/shm".as_ptr(), &mut stat), 0);
        stat.f_blocks as u64 * stat.f_frsize as u64
    };
    let name = unique("huge");
    let size = (total + (1 << 30)) as usize;
    let err = Segment::create(&name, CreateOptions::new(size))
        .err()
        .unwrap();
    assert_eq!(err.code(), ErrorCode::NoSpace);
    assert!(err.message().contains("shm-size"), "{}", err.message());
    assert_eq!(
        Segment::open(&name, READY).err().unwrap().code(),
        ErrorCode::NotFound,
        "rolled back"
    );
}

#[cfg(unix)]
#[test]
fn mode_is_applied_exactly() {
    use std::os::unix::fs::PermissionsExt;
    let name = unique("mode");
    let _segment = Segment::create(
        &name,
        CreateOptions {
            mode: 0o640,
            ..CreateOptions::new(8)
        },
    )
    .unwrap();
    let mode = std::fs::metadata(format!("/dev/shm/shmkit.{name}"))
        .unwrap()
        .permissions()
        .mode();
    Segment::unlink(&name).unwrap();
    assert_eq!(mode & 0o777, 0o640);
}

#[test]
fn offsets_are_checked() {
    let name = unique("offsets");
    let segment = Segment::create(&name, CreateOptions::new(128)).unwrap();
    Segment::unlink(&name).unwrap();
    assert!(segment.mutex_at(64).is_ok());
    assert_eq!(
        segment.mutex_at(72).err().unwrap().code(),
        ErrorCode::OutOfRange
    );
    assert_eq!(
        segment.mutex_at(4).err().unwrap().code(),
        ErrorCode::OutOfRange
    );
    assert_eq!(
        segment.word_at(126).err().unwrap().code(),
        ErrorCode::OutOfRange
    );
    assert_eq!(
        segment.word_at(usize::MAX - 1).err().unwrap().code(),
        ErrorCode::OutOfRange
    );
    assert!(segment.word_at(124).is_ok());
}
