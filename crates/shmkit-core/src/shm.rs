//! The OS shared-memory object, on the `shared_memory` crate, plus what it lacks: permission
//! modes, page reservation, a standalone unlink, and errno-preserving errors.
//!
//! This is the only module that knows about the crate, so it can be swapped without touching the
//! rest. The crate unlinks objects it created when its handle drops; shmkit turns that off once a
//! segment is fully built ([`Mapping::keep`]), so only an explicit unlink ever removes a segment.
//! Until then the crate's behaviour is our rollback: a failed create leaves nothing behind.

use shared_memory::{Shmem, ShmemConf, ShmemError};

use crate::error::{Error, ErrorCode, Result};
use crate::platform;

/// One mapping of a shared-memory object into this process.
pub struct Mapping {
    shmem: Shmem,
}

// SAFETY: `Shmem` holds a raw pointer to a MAP_SHARED region, its length and a file descriptor
// (a handle on Windows). None of these are tied to the creating thread: the mapping stays valid
// until dropped, from any thread, and the region is only accessed through atomics or through
// JavaScript views whose synchronisation is the user's (as with any shared memory).
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only exposes the pointer and length, never a `&mut` to the bytes.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Creates a new object of `size` bytes (fails with `EEXIST` if it exists) and maps it.
    pub fn create(os_id: &str, size: usize, mode: u32, reserve: bool) -> Result<Mapping> {
        let shmem = ShmemConf::new()
            .os_id(os_id)
            .size(size)
            .create()
            .map_err(|e| map_error(e, "create"))?;
        let mapping = Mapping { shmem };
        // If this fails, dropping `mapping` (still the crate's "owner") unlinks the object.
        platform::finish_create(os_id, size, mode, reserve)?;
        Ok(mapping)
    }

    /// Maps an existing object whole.
    pub fn open(os_id: &str) -> Result<Mapping> {
        let shmem = ShmemConf::new()
            .os_id(os_id)
            .open()
            .map_err(|e| map_error(e, "open"))?;
        Ok(Mapping { shmem })
    }

    /// From now on, dropping this mapping never unlinks the object.
    pub fn keep(&mut self) {
        self.shmem.set_owner(false);
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.shmem.as_ptr()
    }

    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.shmem.len()
    }
}

/// Removes the object's name; existing mappings stay valid until closed.
pub fn unlink(os_id: &str) -> Result<()> {
    platform::unlink_shm(os_id)
}

fn map_error(error: ShmemError, what: &str) -> Error {
    match error {
        ShmemError::MappingIdExists => {
            Error::new(ErrorCode::AlreadyExists, "The segment already exists")
        }
        ShmemError::MapCreateFailed(errno)
        | ShmemError::MapOpenFailed(errno)
        | ShmemError::UnknownOsError(errno) => {
            Error::os(errno as i32, format!("Cannot {what} the segment"))
        }
        other => Error::new(
            ErrorCode::Os(libc::EIO),
            format!("Cannot {what} the segment: {other}"),
        ),
    }
}
