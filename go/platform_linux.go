//go:build linux

package shmkit

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// Linux: objects in /dev/shm (what glibc's shm_open uses), the futex syscall WITHOUT
// FUTEX_PRIVATE_FLAG (a private futex is keyed by address space and would never wake another
// process), thread ids from gettid, liveness from /proc/<tid>/stat confirmed by kill(tid, 0)
// where /proc hides the task (crates/shmkit-core/src/platform/linux.rs).

const supported = true

const shmDir = "/dev/shm/"

func objectPath(name string) string { return shmDir + "shmkit." + name }

// mapped is one mapping of a shared-memory object.
type mapped struct {
	mem   []byte
	owner uint32
	mode  uint32
}

func (m *mapped) unmap() {
	if m.mem != nil {
		_ = syscall.Munmap(m.mem)
		m.mem = nil
	}
}

func pageSize() int { return os.Getpagesize() }

// createObject makes the object exclusively (O_CREAT|O_EXCL: never someone else's), sets the
// exact mode with fchmod (the umask only narrowed the create), sizes it, reserves every page
// (fallocate: a too-small /dev/shm fails here with ENOSPC rather than SIGBUS later) and maps it.
// A failure after the create removes the object again.
func createObject(name string, size int, mode uint32) (*mapped, error) {
	path := objectPath(name)
	fd, err := syscall.Open(path, syscall.O_RDWR|syscall.O_CREAT|syscall.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, mode)
	if err != nil {
		if errors.Is(err, syscall.EEXIST) {
			return nil, newErr(ErrExists, "segment %q already exists: open it, or unlink it first", name)
		}
		return nil, osErr(err, "cannot create segment %q", name)
	}
	defer syscall.Close(fd)
	fail := func(e error) (*mapped, error) {
		_ = syscall.Unlink(path)
		return nil, e
	}
	if err := syscall.Fchmod(fd, mode); err != nil {
		return fail(osErr(err, "cannot set the mode of segment %q", name))
	}
	if err := syscall.Ftruncate(fd, int64(size)); err != nil {
		return fail(osErr(err, "cannot size segment %q", name))
	}
	for {
		err := syscall.Fallocate(fd, 0, 0, int64(size))
		if err == syscall.EINTR {
			continue
		}
		if err == nil || err == syscall.EOPNOTSUPP || err == syscall.EINVAL {
			break // reserved, or a file system that cannot reserve: pages come on first touch
		}
		if err == syscall.ENOSPC {
			return fail(newErr(ErrNoSpace, "not enough shared memory for %d bytes: /dev/shm is too small or full (Docker's default is 64 MB; raise it with --shm-size, or free space)", size))
		}
		return fail(osErr(err, "cannot reserve the memory of segment %q", name))
	}
	mem, err := syscall.Mmap(fd, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return fail(osErr(err, "cannot map segment %q", name))
	}
	return &mapped{mem: mem, owner: uint32(syscall.Geteuid()), mode: mode}, nil
}

// errEmpty: the object exists with size 0 (its creator has not sized it yet).
var errEmpty = errors.New("empty object")

// openObject opens and maps the object whole; owner and mode come from fstat on the very
// descriptor mapped.
func openObject(name string) (*mapped, error) {
	fd, err := syscall.Open(objectPath(name), syscall.O_RDWR|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		switch {
		case errors.Is(err, syscall.ENOENT):
			return nil, newErr(ErrNotFound, "no segment named %q: create it first", name)
		case errors.Is(err, syscall.EACCES):
			return nil, newErr(ErrPermission, "permission denied opening segment %q: its mode does not let this user read and write it (the creator chooses the mode, 0o600 by default)", name)
		}
		return nil, osErr(err, "cannot open segment %q", name)
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, osErr(err, "cannot read the owner of segment %q", name)
	}
	if st.Size == 0 {
		return nil, errEmpty
	}
	if st.Size < 0 || st.Size > maxHeaderSize+maxDataSize || int64(int(st.Size)) != st.Size {
		return nil, newErr(ErrNotShmkit, "%q has an impossible size (%d bytes)", name, st.Size)
	}
	m := &mapped{owner: st.Uid, mode: st.Mode & 0o7777}
	if st.Size < minHeaderSize {
		// Not mapped: the owner check comes first, then this size check (as the Rust core).
		return m, nil
	}
	m.mem, err = syscall.Mmap(fd, 0, int(st.Size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, osErr(err, "cannot map segment %q", name)
	}
	return m, nil
}

func unlinkObject(name string) error {
	if err := syscall.Unlink(objectPath(name)); err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return newErr(ErrNotFound, "no segment named %q", name)
		}
		if errors.Is(err, syscall.EACCES) {
			return &Error{code: "EACCES", msg: "cannot unlink segment " + strconv.Quote(name), errno: syscall.EACCES}
		}
		return osErr(err, "cannot unlink segment %q", name)
	}
	return nil
}

func effectiveUID() (uint32, bool) { return uint32(syscall.Geteuid()), true }

// ----- futex -----

const (
	futexWaitOp = 0 // FUTEX_WAIT, without FUTEX_PRIVATE_FLAG: keyed by the shared page
	futexWakeOp = 1 // FUTEX_WAKE, without FUTEX_PRIVATE_FLAG
)

type waitOutcome int

const (
	woken waitOutcome = iota
	notEqual
	timedOut
)

// futexWait sleeps while *addr == val, at most timeout (negative: no limit). A signal (EINTR,
// frequent under the Go runtime) restarts the sleep for the time left.
func futexWait(addr *uint32, val uint32, timeout time.Duration) waitOutcome {
	var deadline time.Time
	if timeout >= 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		var tsp *syscall.Timespec
		if timeout >= 0 {
			left := time.Until(deadline)
			if left <= 0 {
				return timedOut
			}
			ts := syscall.NsecToTimespec(int64(left))
			tsp = &ts
		}
		// SAFETY: addr points at an aligned word of a live mapping (callers hold the segment
		// open for the call); FUTEX_WAIT only reads it to compare. tsp is nil or points at a
		// timespec that lives across the call; both conversions to uintptr happen in the call
		// expression, as the unsafe rules require.
		_, _, e := syscall.Syscall6(syscall.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWaitOp, uintptr(val), uintptr(unsafe.Pointer(tsp)), 0, 0)
		switch e {
		case 0:
			return woken
		case syscall.EAGAIN:
			return notEqual
		case syscall.ETIMEDOUT:
			return timedOut
		case syscall.EINTR:
			continue
		default:
			return woken // callers re-check their condition: always safe
		}
	}
}

// futexWake wakes up to n sleepers on addr, in any process; returns how many.
func futexWake(addr *uint32, n int) int {
	if n > 1<<31-1 || n < 0 {
		n = 1<<31 - 1
	}
	// SAFETY: FUTEX_WAKE only uses the address as a key; addr is an aligned word of a live
	// mapping.
	r, _, e := syscall.Syscall6(syscall.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWakeOp, uintptr(n), 0, 0, 0)
	if e != 0 {
		return 0
	}
	return int(r)
}

// osYield gives the CPU to another runnable thread (sched_yield), for a spinning lock waiter
// whose holder may have been preempted on this core.
func osYield() {
	syscall.Syscall(syscall.SYS_SCHED_YIELD, 0, 0, 0)
}

// ----- identities and liveness -----

type stat struct {
	state byte
	start uint64
}

// readStat parses /proc/<...>/stat: the command may hold spaces and parentheses, so fields are
// counted after the LAST ')'. State is field 3, starttime field 22 (proc(5)).
func readStat(path string) (stat, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return stat{}, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return stat{}, errors.New("unparsable stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || len(f[0]) == 0 {
		return stat{}, errors.New("unparsable stat")
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return stat{}, err
	}
	return stat{state: f[0][0], start: start}, nil
}

var pidNamespaceOnce = sync.OnceValue(func() uint32 {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/pid", &st); err != nil {
		return 0
	}
	return uint32(st.Ino)
})

func pidNamespace() uint32 { return pidNamespaceOnce() }

// threadCache remembers the start time of each thread id of this process. A cached entry is
// re-verified from /proc once it is older than threadCacheTTL: a Go thread can end (a goroutine
// that exits while locked to its thread ends it) and a later thread of this process could get the
// same id, but only after the kernel's cyclic id allocation wrapped around pid_max, which cannot
// happen within a few milliseconds.
var threadCache sync.Map // tid -> *threadEntry

type threadEntry struct {
	id       threadIdentity
	verified atomic.Int64 // unix nanoseconds of the last /proc read
}

const threadCacheTTL = 10 * time.Millisecond

// currentThread is the identity of the calling OS thread. The caller must have locked its
// goroutine to the thread (runtime.LockOSThread) so that the identity stays its own.
func currentThread() threadIdentity {
	tid := uint32(syscall.Gettid())
	now := time.Now().UnixNano()
	if v, ok := threadCache.Load(tid); ok {
		e := v.(*threadEntry)
		if now-e.verified.Load() < int64(threadCacheTTL) {
			return e.id
		}
	}
	id := threadIdentity{tid: tid, namespace: pidNamespace(), pid: uint32(syscall.Getpid())}
	if st, err := readStat("/proc/self/task/" + strconv.FormatUint(uint64(tid), 10) + "/stat"); err == nil {
		id.start = st.start
	}
	e := &threadEntry{id: id}
	e.verified.Store(now)
	threadCache.Store(tid, e)
	return id
}

var currentProcessOnce = sync.OnceValue(func() processIdentity {
	p := processIdentity{pid: uint32(syscall.Getpid()), namespace: pidNamespace()}
	if st, err := readStat("/proc/self/stat"); err == nil {
		p.start = st.start
	}
	return p
})

func currentProcess() processIdentity { return currentProcessOnce() }

// taskExists asks the kernel with kill(tid, 0): ESRCH gone, EPERM alive (another user's).
func taskExists(tid uint32) liveness {
	if tid == 0 || tid > 1<<31-1 {
		return unknown
	}
	err := syscall.Kill(int(tid), 0)
	switch err {
	case nil, syscall.EPERM:
		return alive
	case syscall.ESRCH:
		return dead
	}
	return unknown
}

func threadLiveness(owner threadIdentity) liveness {
	mine := pidNamespace()
	if owner.namespace != 0 && mine != 0 && owner.namespace != mine {
		return unknown
	}
	st, err := readStat("/proc/" + strconv.FormatUint(uint64(owner.tid), 10) + "/stat")
	if err != nil {
		// No proof of death: /proc mounted with hidepid hides other users' tasks.
		return taskExists(owner.tid)
	}
	if st.state == 'Z' || st.state == 'X' || st.state == 'x' {
		return dead // a zombie has stopped running (its parent may be the one waiting)
	}
	if owner.start != 0 && st.start != owner.start {
		return dead // the tid was reused
	}
	return alive
}

func processLiveness(who processIdentity) liveness {
	mine := pidNamespace()
	if who.namespace != 0 && mine != 0 && who.namespace != mine {
		return unknown
	}
	st, err := readStat("/proc/" + strconv.FormatUint(uint64(who.pid), 10) + "/stat")
	if err != nil {
		return taskExists(who.pid)
	}
	if who.start != 0 && st.start != who.start {
		return dead
	}
	if st.state == 'Z' || st.state == 'X' || st.state == 'x' {
		// A zombie leader whose other threads still run (it called pthread_exit) is alive.
		if n, ok := threadCount(who.pid); ok && n > 1 {
			return alive
		}
		return dead
	}
	return alive
}

func threadCount(pid uint32) (int, bool) {
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(rest))
			return n, err == nil
		}
	}
	return 0, false
}
