// Package shmkit shares memory between processes and languages: named shared-memory segments,
// inter-process mutexes and message channels that Go, Node.js (the shmkit npm package), Python
// and Rust processes use together. It speaks shmkit's documented binary layout and protocols
// (docs/LAYOUT.md, docs/LOCKING.md, docs/CHANNELS.md in the repository) in pure Go: no cgo, no
// dependency outside the standard library.
//
//	seg, err := shmkit.Create("jobs", 4096, nil) // /dev/shm/shmkit.jobs
//	data := seg.Data()                            // the data area, mapped: zero copy
//	m := seg.Mutex()
//	if _, err := m.Lock(); err == nil {
//		data[0]++
//		m.Unlock()
//	}
//
// # Threads and locks
//
// The owner of a shmkit lock is a kernel thread: its id is the lock word, and the owner record
// beside it names the thread (id, PID namespace, start time) so that waiters in other processes
// can tell whether it still runs and take the lock over when it died. Goroutines, however, move
// between threads. So Mutex.Lock (and a successful TryLock) calls runtime.LockOSThread, and
// Mutex.Unlock calls runtime.UnlockOSThread: the goroutine holding a lock stays on the thread
// named in the lock until it releases it, and another goroutine can never run on that thread
// and be mistaken for the holder. Consequences: Unlock must be called by the goroutine that
// locked (another gets ErrNotOwner); a goroutine that exits holding a lock ends its thread (the
// Go runtime does that for a locked goroutine), and the next locker is told ownerDied = true,
// exactly as for a crashed process. Channel operations take their side locks the same way, for
// microseconds.
//
// A thread's identity (its start time, from /proc/self/task/<tid>/stat) is cached per thread id
// and re-read from /proc when the cached entry is older than 10 ms, so a thread id reused after
// a Go thread ended is never described with the old thread's start time.
//
// # Platforms
//
// Linux only for now: segments live in /dev/shm, sleeping and waking use the futex system call
// without FUTEX_PRIVATE_FLAG (so a wake reaches other processes), liveness comes from /proc. The
// package builds on every GOOS; elsewhere every operation returns ErrUnsupported.
//
// # Errors
//
// Every error is an *Error whose Code() is the code Node reports (docs/errors.md). Compare with
// errors.Is against the sentinels (ErrNotFound, ErrTimeout, ErrCorrupt, ErrEnded, ...); OS
// errors also wrap their syscall.Errno (errors.Is(err, fs.ErrNotExist) holds for ErrNotFound).
//
// # Memory safety
//
// Shared memory is written by other processes at any time. Every header field, lock word and
// channel index is read with sync/atomic and validated before it is used: damaged memory gives
// ErrCorrupt, never a read outside the mapping. The unsafe package is used in two places only:
// to view a word of the mapping as *uint32/*uint64 for sync/atomic (bounds- and
// alignment-checked), and to pass addresses to the futex system call.
package shmkit
