//! Windows: thread ids from `GetCurrentThreadId` (unique among live threads system-wide), and
//! liveness from `OpenThread` + `GetExitCodeThread`, with the thread's creation time guarding
//! against id reuse. Waiting polls (see `portable.rs`): `WaitOnAddress` only wakes threads of the
//! calling process, so it cannot serve a cross-process wait.

use windows_sys::Win32::Foundation::{
    CloseHandle, GetLastError, ERROR_INVALID_PARAMETER, FILETIME, STILL_ACTIVE,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentThread, GetCurrentThreadId, GetExitCodeThread, GetThreadTimes, OpenThread,
    THREAD_QUERY_LIMITED_INFORMATION,
};

use super::{Liveness, ThreadIdentity};

pub use super::portable::{
    current_process, list_shm_names, page_size, process_liveness, wait, wake,
};

use shared_memory::{Shmem, ShmemConf, ShmemError};

use crate::error::{Error, ErrorCode};

/// A named file mapping (through the `shared_memory` crate), mapped whole. Windows objects have
/// no Unix owner or mode: access is the creating session's.
pub struct MappedObject {
    shmem: Shmem,
    pub owner: Option<u32>,
    pub mode: Option<u32>,
}

// SAFETY: `Shmem` holds a pointer to a shared view, its length and a mapping handle; none is tied
// to the creating thread, and the view stays valid until dropped. Accesses go through atomics or
// through views whose synchronisation is the caller's.
unsafe impl Send for MappedObject {}
// SAFETY: as above; `&MappedObject` only exposes the pointer and length.
unsafe impl Sync for MappedObject {}

impl MappedObject {
    pub fn as_ptr(&self) -> *mut u8 {
        self.shmem.as_ptr()
    }

    #[allow(clippy::len_without_is_empty)] // a mapping is never empty
    pub fn len(&self) -> usize {
        self.shmem.len()
    }
}

/// Creates a named mapping backed by the paging file (committed at creation: nothing to
/// reserve); it lives while any handle is open.
pub fn create_object(
    os_id: &str,
    size: usize,
    _mode: u32,
    _reserve: bool,
) -> crate::Result<MappedObject> {
    let mut shmem = ShmemConf::new()
        .os_id(os_id)
        .size(size)
        .create()
        .map_err(|e| map_error(e, "create"))?;
    shmem.set_owner(false);
    Ok(MappedObject {
        shmem,
        owner: None,
        mode: None,
    })
}

pub fn open_object(os_id: &str) -> crate::Result<MappedObject> {
    let shmem = ShmemConf::new()
        .os_id(os_id)
        .open()
        .map_err(|e| map_error(e, "open"))?;
    Ok(MappedObject {
        shmem,
        owner: None,
        mode: None,
    })
}

/// Windows has no Unix user ids: owner checks do not apply.
pub fn effective_uid() -> Option<u32> {
    None
}

pub fn user_name(_uid: u32) -> Option<String> {
    None
}

fn map_error(error: ShmemError, what: &str) -> Error {
    match error {
        ShmemError::MappingIdExists => {
            Error::new(ErrorCode::AlreadyExists, "The segment already exists")
        }
        ShmemError::MapCreateFailed(code)
        | ShmemError::MapOpenFailed(code)
        | ShmemError::UnknownOsError(code) => {
            Error::os(code as i32, format!("Cannot {what} the segment"))
        }
        other => Error::new(
            ErrorCode::Os(libc::EIO),
            format!("Cannot {what} the segment: {other}"),
        ),
    }
}

/// Session-local kernel-object namespace.
pub fn shm_object_name(name: &str) -> String {
    format!("Local\\{}{name}", crate::name::OS_PREFIX)
}

/// A named file mapping lives while any handle is open; it has no name to remove.
pub fn unlink_shm(_os_id: &str) -> crate::Result<()> {
    Ok(())
}

pub fn current_thread() -> ThreadIdentity {
    // SAFETY: no preconditions; the pseudo-handle of the current thread needs no closing.
    let (tid, handle) = unsafe { (GetCurrentThreadId(), GetCurrentThread()) };
    ThreadIdentity {
        tid: tid & 0x3FFF_FFFF,
        namespace: 0,
        start_time: creation_time(handle).unwrap_or(0),
        pid: std::process::id(),
    }
}

pub fn liveness(owner: &ThreadIdentity) -> Liveness {
    // SAFETY: OpenThread has no preconditions; a null result is checked below.
    let handle = unsafe { OpenThread(THREAD_QUERY_LIMITED_INFORMATION, 0, owner.tid) };
    if handle.is_null() {
        // SAFETY: no preconditions.
        return if unsafe { GetLastError() } == ERROR_INVALID_PARAMETER {
            Liveness::Dead // no thread with that id
        } else {
            Liveness::Unknown // e.g. access denied: never rob what we cannot see
        };
    }
    let mut exit_code = 0u32;
    // SAFETY: `handle` is a valid thread handle opened above, closed once below.
    let queried = unsafe { GetExitCodeThread(handle, &mut exit_code) } != 0;
    let started = creation_time(handle);
    // SAFETY: as above.
    unsafe { CloseHandle(handle) };
    match (queried, started) {
        (true, _) if exit_code != STILL_ACTIVE as u32 => Liveness::Dead,
        (true, Some(started)) if owner.start_time != 0 && started != owner.start_time => {
            Liveness::Dead
        }
        (true, _) => Liveness::Alive,
        (false, _) => Liveness::Unknown,
    }
}

fn creation_time(handle: windows_sys::Win32::Foundation::HANDLE) -> Option<u64> {
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: `handle` is a valid thread handle; the four out-pointers are valid FILETIMEs.
    let ok =
        unsafe { GetThreadTimes(handle, &mut created, &mut exited, &mut kernel, &mut user) } != 0;
    ok.then(|| (u64::from(created.dwHighDateTime) << 32) | u64::from(created.dwLowDateTime))
}
