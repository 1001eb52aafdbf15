//! The OS shared-memory object behind a segment: created exclusively with its final mode, mapped
//! whole, with its owner and mode read from the descriptor mapped (`platform::MappedObject`).
//! On Unix this is `shm_open` + `fstat` + `mmap` directly; on Windows, the `shared_memory` crate.
//! Nothing here unlinks on drop: only an explicit unlink ever removes a segment.

use crate::error::Result;
use crate::platform::{self, MappedObject};

/// One mapping of a shared-memory object into this process.
pub struct Mapping {
    object: MappedObject,
}

impl Mapping {
    /// Creates a new object of `size` bytes (fails with `EEXIST` if it exists) and maps it.
    pub fn create(os_id: &str, size: usize, mode: u32, reserve: bool) -> Result<Mapping> {
        let object = platform::create_object(os_id, size, mode, reserve)?;
        Ok(Mapping { object })
    }

    /// Maps an existing object whole.
    pub fn open(os_id: &str) -> Result<Mapping> {
        Ok(Mapping {
            object: platform::open_object(os_id)?,
        })
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.object.as_ptr()
    }

    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.object.len()
    }

    /// The object's owner (user id) and permission bits, where the OS has them.
    pub fn owner(&self) -> Option<u32> {
        self.object.owner
    }

    pub fn mode(&self) -> Option<u32> {
        self.object.mode
    }
}

/// Removes the object's name; existing mappings stay valid until closed.
pub fn unlink(os_id: &str) -> Result<()> {
    platform::unlink_shm(os_id)
}
