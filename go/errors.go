package shmkit

import (
	"context"
	"errors"
	"fmt"
	"syscall"
)

// Error is every error this package returns. Code is the same string the Node binding puts in
// `err.code` (docs/errors.md): "ENOENT", "ETIMEDOUT", "ERR_SHM_CORRUPT", ...
//
// Compare with errors.Is against the sentinels below (errors.Is(err, shmkit.ErrTimeout)): an
// *Error matches every sentinel of the same code. Errors of OS calls also wrap their
// syscall.Errno, so errors.Is(err, syscall.ENOENT) and errors.Is(err, fs.ErrNotExist) hold for a
// missing segment; context errors are wrapped too (errors.Is(err, context.Canceled)).
type Error struct {
	code  string
	msg   string
	errno syscall.Errno // 0: none
	cause error         // nil: none
}

// Code is the error's code, as Node reports it.
func (e *Error) Code() string { return e.code }

func (e *Error) Error() string {
	if e.cause != nil {
		return "shmkit: " + e.msg + ": " + e.cause.Error()
	}
	return "shmkit: " + e.msg
}

// Is reports whether target is an *Error with the same code (every sentinel is one).
func (e *Error) Is(target error) bool {
	var t *Error
	if !errors.As(target, &t) {
		return false
	}
	return t.code == e.code
}

// Unwrap gives the wrapped syscall.Errno and cause, for errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	var out []error
	if e.errno != 0 {
		out = append(out, e.errno)
	}
	if e.cause != nil {
		out = append(out, e.cause)
	}
	return out
}

func sentinel(code, msg string, errno syscall.Errno) *Error {
	return &Error{code: code, msg: msg, errno: errno}
}

// The sentinels, one per code a Go caller can meet. Every error returned is an *Error that
// errors.Is matches against the sentinel of its code.
var (
	// ErrExists (EEXIST): an object with that name already exists.
	ErrExists = sentinel("EEXIST", "already exists", syscall.EEXIST)
	// ErrNotFound (ENOENT): no object with that name. Wraps syscall.ENOENT, so
	// errors.Is(err, fs.ErrNotExist) holds too.
	ErrNotFound = sentinel("ENOENT", "not found", syscall.ENOENT)
	// ErrPermission (EACCES): the object's mode refuses this user, or the last closer of an
	// auto-unlink segment may not remove it.
	ErrPermission = sentinel("EACCES", "permission denied", syscall.EACCES)
	// ErrNotOwner (EPERM): unlocking a lock this thread does not hold; or the OS refused.
	ErrNotOwner = sentinel("EPERM", "not the holder", syscall.EPERM)
	// ErrNoSpace (ENOSPC): /dev/shm cannot hold the segment.
	ErrNoSpace = sentinel("ENOSPC", "no space in /dev/shm", syscall.ENOSPC)
	// ErrNameTooLong (ENAMETOOLONG): a name longer than 200 bytes.
	ErrNameTooLong = sentinel("ENAMETOOLONG", "name too long", syscall.ENAMETOOLONG)
	// ErrTimeout (ETIMEDOUT): a wait ran out of time (also a context deadline).
	ErrTimeout = sentinel("ETIMEDOUT", "timed out", syscall.ETIMEDOUT)
	// ErrDeadlock (EDEADLK): a blocking Lock of a lock this thread already holds.
	ErrDeadlock = sentinel("EDEADLK", "already held by this thread", syscall.EDEADLK)
	// ErrTableFull (EMFILE): an auto-unlink segment already mapped by 224 attachers.
	ErrTableFull = sentinel("EMFILE", "attach table full", syscall.EMFILE)
	// ErrUnsupported (ENOSYS): not available on this operating system. Also matches
	// errors.ErrUnsupported.
	ErrUnsupported = &Error{code: "ENOSYS", msg: "not supported on this OS", errno: syscall.ENOSYS, cause: errors.ErrUnsupported}
	// ErrCanceled (ABORT_ERR): the context was canceled. Wraps context.Canceled.
	ErrCanceled = &Error{code: "ABORT_ERR", msg: "canceled", cause: context.Canceled}
	// ErrInvalidArg (ERR_INVALID_ARG_VALUE): an invalid name or codec.
	ErrInvalidArg = sentinel("ERR_INVALID_ARG_VALUE", "invalid argument", 0)
	// ErrOutOfRange (ERR_OUT_OF_RANGE): a size, offset, capacity or length outside its range.
	ErrOutOfRange = sentinel("ERR_OUT_OF_RANGE", "out of range", 0)
	// ErrNotShmkit (ERR_SHM_NOT_SHMKIT): the object exists but was not made by shmkit.
	ErrNotShmkit = sentinel("ERR_SHM_NOT_SHMKIT", "not a shmkit object", 0)
	// ErrVersion (ERR_SHM_VERSION): made by a shmkit with another binary layout.
	ErrVersion = sentinel("ERR_SHM_VERSION", "layout version mismatch", 0)
	// ErrCorrupt (ERR_SHM_CORRUPT): a header, lock or ring holds impossible values.
	ErrCorrupt = sentinel("ERR_SHM_CORRUPT", "damaged", 0)
	// ErrNotReady (ERR_SHM_NOT_READY): the creator never finished initialising the object.
	ErrNotReady = sentinel("ERR_SHM_NOT_READY", "never initialised", 0)
	// ErrClosed (ERR_SHM_CLOSED): this handle was closed.
	ErrClosed = sentinel("ERR_SHM_CLOSED", "closed", 0)
	// ErrSizeMismatch (ERR_SHM_SIZE_MISMATCH): OpenOrCreate found another size or capacity.
	ErrSizeMismatch = sentinel("ERR_SHM_SIZE_MISMATCH", "size mismatch", 0)
	// ErrWrongKind (ERR_SHM_WRONG_KIND): the object is of another kind.
	ErrWrongKind = sentinel("ERR_SHM_WRONG_KIND", "wrong kind", 0)
	// ErrEnded (ERR_SHM_CHANNEL_ENDED): the channel's stream ended (for receivers: and drained).
	ErrEnded = sentinel("ERR_SHM_CHANNEL_ENDED", "channel ended", 0)
	// ErrNoProducers (ERR_SHM_NO_PRODUCERS): a receiver set to stop once every producer is gone
	// (SetIfPeersGone) found the channel empty and no live producer.
	ErrNoProducers = sentinel("ERR_SHM_NO_PRODUCERS", "no producers left", 0)
	// ErrNoConsumers (ERR_SHM_NO_CONSUMERS): a sender set to stop once every consumer is gone
	// found the channel full and no live consumer.
	ErrNoConsumers = sentinel("ERR_SHM_NO_CONSUMERS", "no consumers left", 0)
	// ErrForeignOwner (ERR_SHM_FOREIGN_OWNER): the object is owned by a user the opener does
	// not accept (by default only this effective uid is).
	ErrForeignOwner = sentinel("ERR_SHM_FOREIGN_OWNER", "owned by another user", 0)
	// ErrNotLocked (ERR_SHM_NOT_LOCKED): unlock of a lock its segment's Close already released.
	ErrNotLocked = sentinel("ERR_SHM_NOT_LOCKED", "not locked", 0)
	// ErrLagged (ERR_SHM_LAGGED): a topic subscriber was lapped by publishers (overwrite mode).
	// The error returned is a *LaggedError, which says how many messages were missed.
	ErrLagged = sentinel("ERR_SHM_LAGGED", "lagged", 0)
)

// LaggedError is what a topic subscriber's receive returns when publishers lapped it (a topic
// created with SlowOverwrite): Missed messages were lost, and the subscription continues in
// order from the oldest message still there with its next receive. errors.Is(err, ErrLagged)
// holds; errors.As(err, &lagged) gives the count; it wraps an *Error of code ERR_SHM_LAGGED
// (errors.As(err, &shmErr) finds that one, as Node's error carries `missed`).
type LaggedError struct {
	Missed uint64
	err    *Error
}

func (e *LaggedError) Error() string { return e.err.Error() }

// Code is "ERR_SHM_LAGGED".
func (e *LaggedError) Code() string { return e.err.code }

// Is reports whether target is an *Error of code ERR_SHM_LAGGED (ErrLagged).
func (e *LaggedError) Is(target error) bool { return e.err.Is(target) }

// Unwrap gives the *Error of code ERR_SHM_LAGGED.
func (e *LaggedError) Unwrap() error { return e.err }

// newErr makes an error of sentinel s's code with its own message.
func newErr(s *Error, format string, args ...any) *Error {
	return &Error{code: s.code, msg: fmt.Sprintf(format, args...), errno: s.errno, cause: s.cause}
}

// errnoErr maps an errno to the coded error Node reports for it (named codes keep their name,
// the few other known errnos theirs, anything else "EIO"), wrapping the errno.
func errnoErr(errno syscall.Errno, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...) + ": " + errno.Error()
	code := "EIO"
	switch errno {
	case syscall.EEXIST:
		code = "EEXIST"
	case syscall.ENOENT:
		code = "ENOENT"
	case syscall.EACCES:
		code = "EACCES"
	case syscall.ENOSPC:
		code = "ENOSPC"
	case syscall.ENAMETOOLONG:
		code = "ENAMETOOLONG"
	case syscall.ETIMEDOUT:
		code = "ETIMEDOUT"
	case syscall.EPERM:
		code = "EPERM"
	case syscall.EINVAL:
		code = "EINVAL"
	case syscall.ENOMEM:
		code = "ENOMEM"
	case syscall.EMFILE:
		code = "EMFILE"
	case syscall.ENFILE:
		code = "ENFILE"
	case syscall.EFBIG:
		code = "EFBIG"
	case syscall.ENOSYS:
		code = "ENOSYS"
	case syscall.EBUSY:
		code = "EBUSY"
	case syscall.EAGAIN:
		code = "EAGAIN"
	case syscall.EINTR:
		code = "EINTR"
	}
	return &Error{code: code, msg: msg, errno: errno}
}

// osErr wraps an error from the syscall or os packages.
func osErr(err error, format string, args ...any) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errnoErr(errno, format, args...)
	}
	return &Error{code: "EIO", msg: fmt.Sprintf(format, args...), cause: err}
}

// ctxErr turns a finished context into ErrTimeout (deadline) or ErrCanceled, naming what was
// waited for.
func ctxErr(ctx context.Context, what string) error {
	err := ctx.Err()
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		return &Error{code: ErrTimeout.code, msg: "timed out waiting for " + what, errno: syscall.ETIMEDOUT, cause: context.DeadlineExceeded}
	}
	return &Error{code: ErrCanceled.code, msg: "canceled waiting for " + what, cause: err}
}

// fixCtx reports an error of a wait bounded by ctx in ctx's terms: a timeout at ctx's deadline
// (our clock may pass it a moment before ctx notices) wraps context.DeadlineExceeded, and a
// canceled ctx gives ErrCanceled.
func fixCtx(ctx context.Context, err error, what string) error {
	if err == nil {
		return nil
	}
	if _, hasDeadline := ctx.Deadline(); (hasDeadline && isCode(err, ErrTimeout)) || (ctx.Err() != nil && isCode(err, ErrCanceled)) {
		return ctxErr(ctx, what)
	}
	return err
}
