package shmkit

import (
	"context"
	"runtime"
	"sync/atomic"
	"time"
)

// The lock protocol of docs/LOCKING.md, as crates/shmkit-core/src/mutex.rs implements it: a
// 64-byte cell, a 32-bit state word "tid | WAITERS", the sleepers counter, the owner record
// written after acquiring (owner_tid last) and cleared before releasing, futex sleeps of at most
// 50 ms after which the holder is judged through its record, and takeover by one CAS from the
// exact dead value.

const (
	// MutexSize is the bytes a placed mutex occupies (lay out your data around it).
	MutexSize = 64
	// MutexAlign is the required alignment of a placed mutex's offset.
	MutexAlign = 8

	ownerMask = 0x3FFF_FFFF
	waitersB  = 1 << 31

	cellState        = 0
	cellOwnerTid     = 4
	cellOwnerNs      = 8
	cellOwnerPid     = 12
	cellOwnerStart   = 16
	cellAcquisitions = 24
	cellContended    = 28
	cellOwnerDeaths  = 32
	cellSleepers     = 36

	// Spin rounds before the first sleep (docs/LOCKING.md, "Spinning, then sleeping"): the
	// first pauseRounds look again after 2, 4 and 8 loads, the others yield the CPU.
	spinRounds           = 10
	pauseRounds          = 3
	livenessSlice        = 50 * time.Millisecond
	unrecordedOwnerGrace = 500 * time.Millisecond
)

// cell is a view of a mutex cell: pointers to its words for sync/atomic.
type cell struct {
	state, ownerTid, ownerNs, ownerPid          *uint32
	ownerStart                                  *uint64
	acquisitions, contended, ownerDeaths, sleep *uint32
}

// cellAt views the cell at off of mem (8-aligned, inside mem: u32/u64 check both).
func cellAt(mem []byte, off int) cell {
	return cell{
		state:        u32(mem, off+cellState),
		ownerTid:     u32(mem, off+cellOwnerTid),
		ownerNs:      u32(mem, off+cellOwnerNs),
		ownerPid:     u32(mem, off+cellOwnerPid),
		ownerStart:   u64(mem, off+cellOwnerStart),
		acquisitions: u32(mem, off+cellAcquisitions),
		contended:    u32(mem, off+cellContended),
		ownerDeaths:  u32(mem, off+cellOwnerDeaths),
		sleep:        u32(mem, off+cellSleepers),
	}
}

// lockLimits says when a contended acquisition gives up, and what it may presume.
type lockLimits struct {
	// stop returns a non-nil error to give up (a context that ended, a closed segment); it is
	// called between sleeps, so at least every 50 ms.
	stop func() error
	// deadline: give up with stop's error (or ErrTimeout) then; zero: none.
	deadline time.Time
	// presumeDeadAfter: for shmkit's own short critical sections only (the attach mutex): a
	// holder whose liveness cannot be judged and that made no progress that long is presumed dead.
	presumeDeadAfter time.Duration
}

func (c cell) casAcquire(from, to uint32) bool { return atomic.CompareAndSwapUint32(c.state, from, to) }

func (c cell) hasSleepers() bool { return atomic.LoadUint32(c.sleep) != 0 }

// recordOwner: called by every new holder. Counts the acquisition and records the owner,
// owner_tid last (a reader that sees the tid sees the fields).
func (c cell) recordOwner(me threadIdentity) {
	atomic.StoreUint32(c.acquisitions, atomic.LoadUint32(c.acquisitions)+1) // we hold it: plain add
	atomic.StoreUint32(c.ownerNs, me.namespace)
	atomic.StoreUint32(c.ownerPid, me.pid)
	atomic.StoreUint64(c.ownerStart, me.start)
	atomic.StoreUint32(c.ownerTid, me.tid)
}

// recordedOwner is the owner record if it describes tid and was not rewritten while read: load
// owner_tid, then the fields, then owner_tid again.
func (c cell) recordedOwner(tid uint32) (threadIdentity, bool) {
	if tid == 0 || atomic.LoadUint32(c.ownerTid) != tid {
		return threadIdentity{}, false
	}
	id := threadIdentity{
		tid:       tid,
		namespace: atomic.LoadUint32(c.ownerNs),
		start:     atomic.LoadUint64(c.ownerStart),
		pid:       atomic.LoadUint32(c.ownerPid),
	}
	if atomic.LoadUint32(c.ownerTid) != tid {
		return threadIdentity{}, false
	}
	return id, true
}

// isHeldBy: the owner bits name me AND the record is my whole identity (tids repeat across PID
// namespaces).
func (c cell) isHeldBy(state uint32, me threadIdentity) bool {
	if state&ownerMask != me.tid {
		return false
	}
	r, ok := c.recordedOwner(me.tid)
	return ok && r.namespace == me.namespace && r.start == me.start
}

// tryTakeFree takes a word observed free, with WAITERS exactly when some thread may sleep on it.
func (c cell) tryTakeFree(current uint32, me threadIdentity) bool {
	w := uint32(0)
	if c.hasSleepers() {
		w = waitersB
	}
	if current&ownerMask == 0 && c.casAcquire(current, me.tid|w) {
		c.recordOwner(me)
		return true
	}
	return false
}

// takeOver takes the lock from the exact word judged dead: one CAS, so two waiters cannot both
// take it and a holder that released meanwhile is never robbed.
func (c cell) takeOver(deadState uint32, me threadIdentity) bool {
	w := uint32(0)
	if c.hasSleepers() {
		w = waitersB
	}
	if c.casAcquire(deadState, me.tid|w) {
		atomic.StoreUint32(c.ownerDeaths, atomic.LoadUint32(c.ownerDeaths)+1)
		c.recordOwner(me)
		return true
	}
	return false
}

// ownerIsDead judges the holder in state by its record (the verdict table of docs/LOCKING.md).
// A holder that has not recorded itself is dead only once its tid has been gone for 500 ms;
// unrecordedSince tracks that (zero: not seen gone).
func (c cell) ownerIsDead(state uint32, unrecordedSince *time.Time) bool {
	owner := state & ownerMask
	if r, ok := c.recordedOwner(owner); ok {
		return threadLiveness(r) == dead
	}
	if threadLiveness(threadIdentity{tid: owner}) != dead {
		*unrecordedSince = time.Time{}
		return false
	}
	if unrecordedSince.IsZero() {
		*unrecordedSince = time.Now()
	}
	return time.Since(*unrecordedSince) >= unrecordedOwnerGrace
}

func (c cell) ownerLiveness(state uint32) liveness {
	if r, ok := c.recordedOwner(state & ownerMask); ok {
		return threadLiveness(r)
	}
	return unknown
}

type unchanged struct {
	state, acquisitions uint32
	since               time.Time
	set                 bool
}

// presumedDead: true once a holder of unknown liveness kept the same word and acquisition
// count for limits.presumeDeadAfter.
func (c cell) presumedDead(state uint32, limits *lockLimits, u *unchanged) bool {
	if limits.presumeDeadAfter <= 0 {
		return false
	}
	if c.ownerLiveness(state) != unknown {
		u.set = false
		return false
	}
	acq := atomic.LoadUint32(c.acquisitions)
	if u.set && u.state == state && u.acquisitions == acq {
		return time.Since(u.since) >= limits.presumeDeadAfter
	}
	*u = unchanged{state: state, acquisitions: acq, since: time.Now(), set: true}
	return false
}

// tryLock takes the lock if it is free or its holder died; false if a live thread holds it,
// this one included (POSIX trylock: EBUSY).
func (c cell) tryLock(me threadIdentity) (ok, ownerDied bool) {
	if c.casAcquire(0, me.tid) {
		c.recordOwner(me)
		return true, false
	}
	current := atomic.LoadUint32(c.state)
	if c.tryTakeFree(current, me) {
		return true, false
	}
	var since time.Time
	if !c.isHeldBy(current, me) && current&ownerMask != 0 && c.ownerIsDead(current, &since) && c.takeOver(current, me) {
		return true, true
	}
	return false, false
}

// lock blocks until the lock is ours (ownerDied tells a takeover), or limits say stop.
func (c cell) lock(me threadIdentity, limits *lockLimits) (bool, error) {
	if c.casAcquire(0, me.tid) {
		c.recordOwner(me)
		return false, nil
	}
	if c.isHeldBy(atomic.LoadUint32(c.state), me) {
		return false, newErr(ErrDeadlock, "this thread already holds the lock; shmkit locks are not recursive")
	}
	died, err := c.contend(me, limits)
	if err == nil {
		atomic.StoreUint32(c.contended, atomic.LoadUint32(c.contended)+1) // we hold it
	}
	return died, err
}

func (c cell) contend(me threadIdentity, limits *lockLimits) (bool, error) {
	for round := 0; round < spinRounds; round++ {
		current := atomic.LoadUint32(c.state)
		if current&ownerMask == 0 && c.tryTakeFree(current, me) {
			return false, nil
		}
		if round >= pauseRounds {
			if !limits.deadline.IsZero() && !time.Now().Before(limits.deadline) {
				break // a yield can last a time slice: the loop below times out at once
			}
			osYield()
			continue
		}
		for i := 0; i < 2<<round; i++ {
			_ = atomic.LoadUint32(c.state) // a short pause between looks
		}
	}
	var unrecordedSince time.Time
	var still unchanged
	for {
		current := atomic.LoadUint32(c.state)
		if current&ownerMask == 0 {
			// Free: take it with WAITERS if other sleepers remain (they must not be lost).
			if c.tryTakeFree(current, me) {
				return false, nil
			}
			continue
		}
		sleepingOn := current | waitersB
		if current&waitersB == 0 && !atomic.CompareAndSwapUint32(c.state, current, sleepingOn) {
			continue
		}
		if limits.stop != nil {
			if err := limits.stop(); err != nil {
				return false, err
			}
		}
		slice := livenessSlice
		if !limits.deadline.IsZero() {
			left := time.Until(limits.deadline)
			if left <= 0 {
				return false, newErr(ErrTimeout, "timed out waiting for the lock")
			}
			slice = min(slice, left)
		}
		// Count this sleeper BEFORE the kernel compares the word (both sequentially consistent):
		// an unlock that swapped the word and then reads sleepers as 0 knows nobody sleeps on
		// the old value.
		atomic.AddUint32(c.sleep, 1)
		outcome := futexWait(c.state, sleepingOn, slice)
		atomic.AddUint32(c.sleep, ^uint32(0))
		if outcome != timedOut || atomic.LoadUint32(c.state) != sleepingOn {
			still.set = false
			continue
		}
		isDead := c.ownerIsDead(sleepingOn, &unrecordedSince) || c.presumedDead(sleepingOn, limits, &still)
		if isDead && c.takeOver(sleepingOn, me) {
			return true, nil
		}
	}
}

// unlock releases the lock held by me; ErrNotOwner if me does not hold it.
func (c cell) unlock(me threadIdentity) error {
	if !c.isHeldBy(atomic.LoadUint32(c.state), me) {
		return newErr(ErrNotOwner, "cannot unlock: this thread does not hold the lock")
	}
	atomic.StoreUint32(c.ownerTid, 0) // the record goes before the lock
	if !atomic.CompareAndSwapUint32(c.state, me.tid, 0) {
		c.unlockContended()
	}
	return nil
}

// unlockContended: the CAS failed because WAITERS is set. Swap the word to 0, then wake one if
// the old value had WAITERS and a sleeper is counted (swap and count read both sequentially
// consistent: no lost wake-up, see docs/LOCKING.md).
func (c cell) unlockContended() {
	atomic.StoreUint32(c.ownerTid, 0)
	previous := atomic.SwapUint32(c.state, 0)
	if previous&waitersB != 0 && c.hasSleepers() {
		futexWake(c.state, 1)
	}
}

// MutexStats is a snapshot of a mutex (values may change right after).
type MutexStats struct {
	// HolderTID is the holder's thread id (0: unlocked); HolderPID its process when recorded.
	HolderTID    uint32
	HolderPID    uint32
	Waiters      bool
	Sleepers     uint32
	Acquisitions uint32
	Contended    uint32
	OwnerDeaths  uint32
}

// Mutex is an inter-process mutex in a segment: the header mutex (Segment.Mutex) or a cell
// placed in the data area (Segment.MutexAt). It excludes threads of every process using the
// same cell, Go, Node, Python or Rust. Not recursive. If a holder dies, the next locker takes
// the lock over and is told ownerDied = true.
//
// The owner is the kernel thread: Lock and a successful TryLock call runtime.LockOSThread, and
// Unlock calls runtime.UnlockOSThread, so the goroutine stays on its thread while it holds the
// lock. Unlock must be called by the goroutine that locked.
type Mutex struct {
	seg  *Segment
	off  int // of the cell, from the start of the mapping
	what string
}

// Lock blocks until the lock is taken. ownerDied reports that the previous holder died holding
// it: the data it protects may be half-updated. Errors: ErrDeadlock (this goroutine holds it),
// ErrClosed.
func (m *Mutex) Lock() (ownerDied bool, err error) {
	return m.LockContext(context.Background())
}

// LockContext is Lock giving up when ctx ends: ErrTimeout at its deadline (checked at least
// every 50 ms), ErrCanceled when it is canceled.
func (m *Mutex) LockContext(ctx context.Context) (ownerDied bool, err error) {
	if !supported {
		return false, newErr(ErrUnsupported, "locks need Linux in the Go module")
	}
	if err := ctx.Err(); err != nil {
		return false, ctxErr(ctx, m.what)
	}
	if err := m.seg.enter(); err != nil {
		return false, err
	}
	defer m.seg.exit()
	runtime.LockOSThread()
	me := currentThread()
	c := cellAt(m.seg.mem, m.off)
	limits := &lockLimits{stop: func() error {
		if ctx.Err() != nil {
			return ctxErr(ctx, m.what)
		}
		if m.seg.isClosed() {
			return newErr(ErrClosed, "segment %q was closed while waiting for %s", m.seg.name, m.what)
		}
		return nil
	}}
	if d, ok := ctx.Deadline(); ok {
		limits.deadline = d
	}
	died, err := c.lock(me, limits)
	if err != nil {
		runtime.UnlockOSThread()
		return false, fixCtx(ctx, err, m.what)
	}
	m.seg.noteHeld(m.off, me)
	return died, nil
}

// TryLock takes the lock if it is free, or if its holder died (ownerDied); ok is false at once
// when a live thread holds it, this one included. It never waits.
func (m *Mutex) TryLock() (ok, ownerDied bool) {
	if !supported || m.seg.enter() != nil {
		return false, false
	}
	defer m.seg.exit()
	runtime.LockOSThread()
	me := currentThread()
	ok, ownerDied = cellAt(m.seg.mem, m.off).tryLock(me)
	if !ok {
		runtime.UnlockOSThread()
		return false, false
	}
	m.seg.noteHeld(m.off, me)
	return true, ownerDied
}

// Unlock releases the lock held by this goroutine. ErrNotOwner if it does not hold it;
// ErrNotLocked if the segment was closed since (Close released it).
func (m *Mutex) Unlock() error {
	if !supported {
		return newErr(ErrUnsupported, "locks need Linux in the Go module")
	}
	if err := m.seg.enter(); err != nil {
		if m.seg.forgetReleased(m.off) {
			runtime.UnlockOSThread()
			return newErr(ErrNotLocked, "%s was released when segment %q was closed", m.what, m.seg.name)
		}
		return err
	}
	defer m.seg.exit()
	me := currentThread()
	if err := cellAt(m.seg.mem, m.off).unlock(me); err != nil {
		return err
	}
	m.seg.forgetHeld(m.off, me)
	runtime.UnlockOSThread()
	return nil
}

// Stats is a snapshot of the lock: holder, waiters, counters.
func (m *Mutex) Stats() (MutexStats, error) {
	if err := m.seg.enter(); err != nil {
		return MutexStats{}, err
	}
	defer m.seg.exit()
	c := cellAt(m.seg.mem, m.off)
	state := atomic.LoadUint32(c.state)
	s := MutexStats{
		HolderTID:    state & ownerMask,
		Waiters:      state&waitersB != 0,
		Sleepers:     atomic.LoadUint32(c.sleep),
		Acquisitions: atomic.LoadUint32(c.acquisitions),
		Contended:    atomic.LoadUint32(c.contended),
		OwnerDeaths:  atomic.LoadUint32(c.ownerDeaths),
	}
	if r, ok := c.recordedOwner(s.HolderTID); ok {
		s.HolderPID = r.pid
	}
	return s, nil
}

func isCode(err error, s *Error) bool {
	e, ok := err.(*Error)
	return ok && e.code == s.code
}

// withLock runs f holding the cell at off of seg (a channel side lock, the attach mutex) on a
// locked OS thread; the segment must be entered by the caller.
func withLock(seg *Segment, off int, limits *lockLimits, f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	me := currentThread()
	c := cellAt(seg.mem, off)
	if _, err := c.lock(me, limits); err != nil {
		return err
	}
	err := f()
	_ = c.unlock(me)
	return err
}

// withTryLock is withLock that never waits: ran is false if the lock was busy.
func withTryLock(seg *Segment, off int, f func() error) (ran bool, err error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	me := currentThread()
	c := cellAt(seg.mem, off)
	if ok, _ := c.tryLock(me); !ok {
		return false, nil
	}
	err = f()
	_ = c.unlock(me)
	return true, err
}
