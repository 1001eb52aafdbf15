//! One error type for every operation, carrying a stable code that the Node binding exposes as
//! `err.code` (the errno names Node users already know, plus a few `ERR_SHM_*` codes of our own).

use std::fmt;

/// What went wrong, as a stable machine-readable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// `EEXIST`: a segment with that name already exists.
    AlreadyExists,
    /// `ENOENT`: no segment with that name.
    NotFound,
    /// `EACCES`: the segment's permissions refuse this user.
    PermissionDenied,
    /// `ENOSPC`: the shared-memory file system cannot hold the segment.
    NoSpace,
    /// `ENAMETOOLONG`: the name is longer than shmkit allows.
    NameTooLong,
    /// `ERR_INVALID_ARG_VALUE`: a name with characters outside the portable set, or empty.
    InvalidName,
    /// `ERR_OUT_OF_RANGE`: a size, offset or length outside what is allowed.
    OutOfRange,
    /// `ETIMEDOUT`: a wait ran out of time.
    TimedOut,
    /// `EPERM`: unlocking a lock this thread does not hold.
    NotOwner,
    /// `EDEADLK`: locking a lock this thread already holds (locks are not recursive).
    WouldDeadlock,
    /// `ERR_SHM_NOT_SHMKIT`: the object exists but was not made by shmkit.
    NotShmkit,
    /// `ERR_SHM_VERSION`: made by a shmkit with another binary layout.
    VersionMismatch,
    /// `ERR_SHM_CORRUPT`: the header or a shared structure holds impossible values.
    Corrupt,
    /// `ERR_SHM_NOT_READY`: the creator never finished initialising the segment.
    NotReady,
    /// `ERR_SHM_CLOSED`: the segment was closed in this process.
    Closed,
    /// `ERR_SHM_SIZE_MISMATCH`: `open_or_create` found a segment of another size.
    SizeMismatch,
    /// `ABORT_ERR`: the caller cancelled the wait.
    Cancelled,
    /// `ERR_SHM_CHANNEL_ENDED`: the stream was ended (and, for receivers, drained).
    ChannelEnded,
    /// `ERR_SHM_WRONG_KIND`: a channel opened as a segment's peer expects, or the reverse.
    WrongKind,
    /// Any other OS error, by errno.
    Os(i32),
}

impl ErrorCode {
    /// The code string seen from JavaScript.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorCode::AlreadyExists => "EEXIST",
            ErrorCode::NotFound => "ENOENT",
            ErrorCode::PermissionDenied => "EACCES",
            ErrorCode::NoSpace => "ENOSPC",
            ErrorCode::NameTooLong => "ENAMETOOLONG",
            ErrorCode::InvalidName => "ERR_INVALID_ARG_VALUE",
            ErrorCode::OutOfRange => "ERR_OUT_OF_RANGE",
            ErrorCode::TimedOut => "ETIMEDOUT",
            ErrorCode::NotOwner => "EPERM",
            ErrorCode::WouldDeadlock => "EDEADLK",
            ErrorCode::NotShmkit => "ERR_SHM_NOT_SHMKIT",
            ErrorCode::VersionMismatch => "ERR_SHM_VERSION",
            ErrorCode::Corrupt => "ERR_SHM_CORRUPT",
            ErrorCode::NotReady => "ERR_SHM_NOT_READY",
            ErrorCode::Closed => "ERR_SHM_CLOSED",
            ErrorCode::SizeMismatch => "ERR_SHM_SIZE_MISMATCH",
            ErrorCode::WrongKind => "ERR_SHM_WRONG_KIND",
            ErrorCode::Cancelled => "ABORT_ERR",
            ErrorCode::ChannelEnded => "ERR_SHM_CHANNEL_ENDED",
            ErrorCode::Os(errno) => errno_name(*errno),
        }
    }

    /// Maps an errno to the matching code, keeping the named ones named.
    pub fn from_errno(errno: i32) -> ErrorCode {
        match errno {
            libc::EEXIST => ErrorCode::AlreadyExists,
            libc::ENOENT => ErrorCode::NotFound,
            libc::EACCES => ErrorCode::PermissionDenied,
            libc::ENOSPC => ErrorCode::NoSpace,
            libc::ENAMETOOLONG => ErrorCode::NameTooLong,
            libc::ETIMEDOUT => ErrorCode::TimedOut,
            other => ErrorCode::Os(other),
        }
    }
}

fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "EPERM",
        libc::EINVAL => "EINVAL",
        libc::ENOMEM => "ENOMEM",
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::EFBIG => "EFBIG",
        libc::ENOSYS => "ENOSYS",
        libc::EBUSY => "EBUSY",
        libc::EAGAIN => "EAGAIN",
        libc::EINTR => "EINTR",
        _ => "EIO",
    }
}

/// An error from shmkit: a code and a message that says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    code: ErrorCode,
    message: String,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }

    /// An OS error from `errno`, with `what` naming the operation that failed.
    pub fn os(errno: i32, what: impl fmt::Display) -> Self {
        let description = std::io::Error::from_raw_os_error(errno);
        let code = ErrorCode::from_errno(errno);
        Error::new(code, format!("{what}: {description}"))
    }

    /// The last OS error of this thread.
    pub fn last_os(what: impl fmt::Display) -> Self {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        Error::os(errno, what)
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code.as_str())
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
