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
    /// `ERR_SHM_NO_PRODUCERS`: a receiver that asked to stop once every producer is gone found
    /// the channel empty, not ended, and no live producer left.
    NoProducers,
    /// `ERR_SHM_NO_CONSUMERS`: a sender that asked to stop once every consumer is gone found
    /// the channel full and no live consumer left.
    NoConsumers,
    /// `ERR_SHM_WRONG_KIND`: a channel opened as a segment's peer expects, or the reverse.
    WrongKind,
    /// `ERR_SHM_FOREIGN_OWNER`: the segment is owned by a user the opener does not accept.
    ForeignOwner,
    /// `ERR_SHM_MAP_FULL`: a new key does not fit a map that does not evict.
    MapFull,
    /// `ERR_SHM_LAGGED`: a topic subscriber was lapped (overwrite mode) and missed this many
    /// messages; it continues from the oldest one still there.
    Lagged(u64),
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
            ErrorCode::ForeignOwner => "ERR_SHM_FOREIGN_OWNER",
            ErrorCode::MapFull => "ERR_SHM_MAP_FULL",
            ErrorCode::Lagged(_) => "ERR_SHM_LAGGED",
            ErrorCode::Cancelled => "ABORT_ERR",
            ErrorCode::ChannelEnded => "ERR_SHM_CHANNEL_ENDED",
            ErrorCode::NoProducers => "ERR_SHM_NO_PRODUCERS",
            ErrorCode::NoConsumers => "ERR_SHM_NO_CONSUMERS",
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

/// Every `code` a shmkit error can carry, in any language, with what it means: the one list that
/// `docs/errors.md`, the Node binding and the TypeScript `ShmkitErrorCode` type follow (a test
/// checks each against it). Codes of OS errors not named here are reported as `EIO`.
pub const ERROR_CODES: &[(&str, &str)] = &[
    ("EEXIST", "create: an object with that name already exists"),
    ("ENOENT", "open, unlink: no object with that name"),
    (
        "EACCES",
        "its mode refuses this user (or a closer may not remove an auto-unlink segment)",
    ),
    (
        "EPERM",
        "unlock of a lock this thread does not hold; or the OS refused an operation",
    ),
    (
        "ENOSPC",
        "the shared-memory file system cannot hold the segment (e.g. a small /dev/shm)",
    ),
    ("ENAMETOOLONG", "a name longer than 200 bytes"),
    (
        "ETIMEDOUT",
        "a wait (lock, send, recv, end, open) ran out of time",
    ),
    (
        "EDEADLK",
        "a blocking lock() of a lock this thread already holds",
    ),
    (
        "EMFILE",
        "an auto-unlink segment already mapped by 224 attachers",
    ),
    ("EINVAL", "the OS refused an argument"),
    ("ENOMEM", "the OS could not map the segment"),
    ("ENFILE", "the OS is out of file descriptors"),
    ("EFBIG", "the OS refused the segment's size"),
    (
        "ENOSYS",
        "not available on this OS (listing segments outside Linux)",
    ),
    ("EBUSY", "the OS reported the object busy"),
    (
        "EAGAIN",
        "retry: a resource was briefly unavailable (e.g. a waiter thread could not start)",
    ),
    ("EINTR", "a system call was interrupted"),
    ("EIO", "any other OS error"),
    (
        "ABORT_ERR",
        "an AbortSignal aborted the wait (the error is an AbortError)",
    ),
    (
        "ERR_INVALID_ARG_TYPE",
        "an argument of the wrong type (TypeError)",
    ),
    (
        "ERR_INVALID_ARG_VALUE",
        "an invalid name, codec or unknown option (TypeError)",
    ),
    (
        "ERR_OUT_OF_RANGE",
        "a number outside its allowed range (RangeError)",
    ),
    (
        "ERR_ILLEGAL_CONSTRUCTOR",
        "a class constructed directly instead of with create/open",
    ),
    (
        "ERR_SHM_NOT_SHMKIT",
        "the object exists but was not made by shmkit",
    ),
    (
        "ERR_SHM_VERSION",
        "made by a shmkit with another binary layout",
    ),
    (
        "ERR_SHM_CORRUPT",
        "a header, lock or ring holds impossible values (damaged or scribbled)",
    ),
    (
        "ERR_SHM_NOT_READY",
        "the creator never finished initialising the object",
    ),
    ("ERR_SHM_CLOSED", "this handle was closed"),
    (
        "ERR_SHM_SIZE_MISMATCH",
        "openOrCreate found the object with another size or capacity",
    ),
    (
        "ERR_SHM_WRONG_KIND",
        "the object is of another kind (a channel opened as a map, ...)",
    ),
    (
        "ERR_SHM_CHANNEL_ENDED",
        "the channel's stream was ended (and, for receivers, drained)",
    ),
    (
        "ERR_SHM_NO_PRODUCERS",
        "a receiver that stops when producers are gone: empty, and every producer it saw is dead or closed",
    ),
    (
        "ERR_SHM_NO_CONSUMERS",
        "a sender that stops when consumers are gone: full, and every consumer it saw is dead or closed",
    ),
    (
        "ERR_SHM_FOREIGN_OWNER",
        "owned by a user the opener does not accept (a squatted name?)",
    ),
    (
        "ERR_SHM_MAP_FULL",
        "a new key does not fit a map that does not evict",
    ),
    (
        "ERR_SHM_LAGGED",
        "a topic subscriber fell behind an overwrite-mode topic (missed says how many)",
    ),
    (
        "ERR_SHM_NOT_LOCKED",
        "a guard unlocked twice, or after its segment was closed",
    ),
    (
        "ERR_SHM_ENCODE",
        "a message or value the codec cannot encode (a BigInt for json, ...)",
    ),
    (
        "ERR_SHM_NO_BINARY",
        "no native binary for this platform, or the runtime may not load it",
    ),
    (
        "ERR_SHM_BUFFER_TAKEN",
        "internal: the buffers of a mapping were requested twice",
    ),
    (
        "ERR_SHM_EXTERNAL_BUFFERS_FORBIDDEN",
        "the runtime forbids external ArrayBuffers (Electron)",
    ),
    ("ERR_SHM_NAPI", "internal: a Node-API call failed"),
    (
        "ERR_SHM_NO_NATS",
        "the bridge needs the NATS client, which is not installed",
    ),
    (
        "ERR_SHM_NO_STREAM",
        "the bridge's JetStream stream does not exist (and may not be created)",
    ),
    (
        "ERR_SHM_CODEC_MISMATCH",
        "a bridge route's messages carry another codec than the local object's",
    ),
];

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
