//! The OS shared-memory object, on the `shared_memory` crate, plus what it lacks: permission
//! modes, page reservation, a standalone unlink, and errno-preserving errors.
//!
//! This is the only module that knows about the crate, so it can be swapped without touching the
//! rest. The crate unlinks objects it created when its handle drops; shmkit turns that off once a
//! segment is fully built ([`Mapping::keep`]), so only an explicit unlink ever removes a segment.
//! Until then the crate's behaviour is our rollback: a failed create leaves nothing behind.

use shared_memory::{Shmem, ShmemConf, ShmemError};

use crate::error::{Error, ErrorCode, Result};

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
        os::finish_create(os_id, size, mode, reserve)?;
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
    os::unlink(os_id)
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

#[cfg(unix)]
mod os {
    use std::ffi::CString;

    use crate::error::{Error, ErrorCode, Result};

    /// Applies `mode` exactly (not masked by the umask) and, with `reserve_pages`, reserves every
    /// page now, so a full /dev/shm is an `ENOSPC` here rather than a SIGBUS on first write.
    pub fn finish_create(os_id: &str, size: usize, mode: u32, reserve_pages: bool) -> Result<()> {
        let name = CString::new(os_id).expect("validated names hold no NUL");
        // SAFETY: `name` is a valid C string; the returned descriptor is closed below.
        let fd = unsafe { libc::shm_open(name.as_ptr(), libc::O_RDWR, 0) };
        if fd < 0 {
            return Err(Error::last_os("Cannot reopen the new segment"));
        }
        let result = set_mode(fd, mode).and_then(|()| {
            if reserve_pages {
                reserve(fd, size)
            } else {
                Ok(())
            }
        });
        // SAFETY: fd is a descriptor we own and close once.
        unsafe { libc::close(fd) };
        result
    }

    fn set_mode(fd: libc::c_int, mode: u32) -> Result<()> {
        // SAFETY: fchmod on a descriptor we own.
        if unsafe { libc::fchmod(fd, mode as libc::mode_t) } != 0 {
            return Err(Error::last_os("Cannot set the segment's mode"));
        }
        Ok(())
    }

    #[cfg(target_os = "linux")]
    fn reserve(fd: libc::c_int, size: usize) -> Result<()> {
        // SAFETY: posix_fallocate on a descriptor we own; it returns the errno instead of setting it.
        let errno = unsafe { libc::posix_fallocate(fd, 0, size as libc::off_t) };
        match errno {
            0 => Ok(()),
            // A file system that cannot reserve (not tmpfs): keep the lazy behaviour.
            libc::EOPNOTSUPP | libc::EINVAL => Ok(()),
            libc::ENOSPC => Err(Error::new(
                ErrorCode::NoSpace,
                format!(
                    "Not enough shared memory for {size} bytes: /dev/shm is too small or full \
                     (Docker's default is 64 MB; raise it with --shm-size, or free space)"
                ),
            )),
            other => Err(Error::os(other, "Cannot reserve the segment's memory")),
        }
    }

    /// Other Unixes back POSIX shm with anonymous memory, not a size-limited tmpfs.
    #[cfg(not(target_os = "linux"))]
    fn reserve(_fd: libc::c_int, _size: usize) -> Result<()> {
        Ok(())
    }

    pub fn unlink(os_id: &str) -> Result<()> {
        let name = CString::new(os_id).expect("validated names hold no NUL");
        // SAFETY: `name` is a valid C string.
        if unsafe { libc::shm_unlink(name.as_ptr()) } != 0 {
            return Err(Error::last_os("Cannot unlink the segment"));
        }
        Ok(())
    }
}

/// Windows: a named file mapping backed by the paging file is committed when created and lives
/// while any handle is open, so there is nothing to reserve and nothing to unlink by name.
#[cfg(windows)]
mod os {
    use crate::error::Result;

    pub fn finish_create(_os_id: &str, _size: usize, _mode: u32, _reserve: bool) -> Result<()> {
        Ok(())
    }

    pub fn unlink(_os_id: &str) -> Result<()> {
        Ok(())
    }
}
