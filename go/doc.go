// Package shmkit shares memory between processes and languages: named shared-memory segments,
// inter-process mutexes, message channels and broadcast topics that Go, Node.js (the shmkit npm
// package), Python and Rust processes use together. It speaks shmkit's documented binary layout
// and protocols (docs/LAYOUT.md, docs/LOCKING.md, docs/CHANNELS.md, docs/TOPIC.md in the
// repository) in pure Go: no cgo, no dependency outside the standard library. SharedMap (kind 3)
// is not implemented in Go.
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
// microseconds, and topic publishers the publish lock.
//
// One exception: a locked goroutine that exits while on the process's main thread does not end
// that thread (the Go runtime parks the main thread for good instead), so what it held is never
// judged dead while the process runs. Release locks and close subscriptions explicitly.
//
// # Topics and threads
//
// A topic subscriber's identity in the shared subscriber table is a thread, too: publishers in
// every process judge by it whether the subscriber still runs, and remove (reap) one whose
// thread ended when it holds them back. So Topic.Subscribe calls runtime.LockOSThread and
// Subscription.Close, called by the same goroutine, calls runtime.UnlockOSThread: the
// subscribing goroutine stays on its thread for the life of the subscription. Receives may come
// from any goroutine meanwhile. A goroutine that returns without closing its subscription ends
// its thread, and publishers then remove the subscription as they would one of a killed
// process; a receive on it afterwards returns ErrClosed (it never writes to the freed slot).
// Close from another goroutine unsubscribes, but only the subscribing goroutine's own Close
// unpins it.
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
// Shared memory is written by other processes at any time. Every header field, lock word,
// channel index and topic position, length and record number is read with sync/atomic and
// validated before it is used (a topic's ring, which a lapped subscriber may read while a
// publisher overwrites it, is read and written only as atomic 32-bit words): damaged memory
// gives ErrCorrupt, never a read outside the mapping or an endless loop. The unsafe package is used in two places only:
// to view a word of the mapping as *uint32/*uint64 for sync/atomic (bounds- and
// alignment-checked), and to pass addresses to the futex system call.
package shmkit
