package shmkit

import (
	"sync/atomic"
	"time"
)

// The attach table (docs/LAYOUT.md, crates/shmkit-core/src/attach.rs): which processes have a
// segment mapped, so that an auto-unlink segment is removed when the last of them closes it or
// dies. Attaching, detaching and the unlink decision all happen under the attach mutex (a mutex
// cell at offset 128 of the header, never the user's header mutex).

const (
	attachLockTimeout = 2 * time.Second
	// A holder of the attach mutex whose liveness cannot be judged (another PID namespace) and
	// that made no progress this long is presumed dead.
	attachPresumeDeadAfter = time.Second
)

// attached is the outcome of an attach: a slot, or -1 (overflow: counted, no slot).
type attached int

const overflowed attached = -1

func slotPID(hdr []byte, slot int) *uint32 { return u32(hdr, offSlots+slot*slotSize) }

func readSlot(hdr []byte, slot int) processIdentity {
	return processIdentity{
		pid:       atomic.LoadUint32(slotPID(hdr, slot)),
		namespace: load32(hdr, offSlots+slot*slotSize+4),
		start:     load64(hdr, offSlots+slot*slotSize+8),
	}
}

func writeSlot(hdr []byte, slot int, who processIdentity) {
	store32(hdr, offSlots+slot*slotSize+4, who.namespace)
	store64(hdr, offSlots+slot*slotSize+8, who.start)
	atomic.StoreUint32(slotPID(hdr, slot), who.pid) // last: the slot is taken once pid shows
}

// attachLocked runs f under the attach mutex (2 s at most to get it).
func attachLocked(seg *Segment, f func() error) error {
	limits := &lockLimits{
		deadline:         time.Now().Add(attachLockTimeout),
		presumeDeadAfter: attachPresumeDeadAfter,
	}
	err := withLock(seg, offAttachLock, limits, f)
	if isCode(err, ErrTimeout) {
		return newErr(ErrTimeout, "cannot take the attach lock of segment %q within %v", seg.name, attachLockTimeout)
	}
	return err
}

// reap clears the slots of processes that are gone; returns how many live attachers remain.
func reap(hdr []byte) int {
	me := currentProcess()
	live := 0
	for slot := 0; slot < attachSlots; slot++ {
		who := readSlot(hdr, slot)
		if who.pid == 0 {
			continue
		}
		if who != me && processLiveness(who) == dead {
			atomic.StoreUint32(slotPID(hdr, slot), 0)
		} else {
			live++
		}
	}
	return live
}

// attach records this process; ErrNotFound if the segment is being removed (doomed).
func attach(seg *Segment, autoUnlink bool) (attached, error) {
	result := overflowed
	err := attachLocked(seg, func() error {
		hdr := seg.mem
		if load32(hdr, offDoomed) != 0 {
			return newErr(ErrNotFound, "segment %q is being removed", seg.name)
		}
		reap(hdr)
		for slot := 0; slot < attachSlots; slot++ {
			if atomic.LoadUint32(slotPID(hdr, slot)) == 0 {
				writeSlot(hdr, slot, currentProcess())
				result = attached(slot)
				return nil
			}
		}
		if autoUnlink {
			return newErr(ErrTableFull, "segment %q is already mapped %d times: its attach table is full", seg.name, attachSlots)
		}
		atomic.AddUint32(u32(hdr, offOverflow), 1)
		return nil
	})
	return result, err
}

// detach forgets this attachment and, for an auto-unlink segment left with no live attacher,
// unlinks the name and only then marks it doomed. Returns whether it unlinked.
func detach(seg *Segment, a attached, autoUnlink bool) (bool, error) {
	removed := false
	err := attachLocked(seg, func() error {
		hdr := seg.mem
		if a >= 0 && readSlot(hdr, int(a)) == currentProcess() {
			atomic.StoreUint32(slotPID(hdr, int(a)), 0)
		}
		live := reap(hdr)
		overflow := load32(hdr, offOverflow)
		doomed := load32(hdr, offDoomed) != 0
		if !autoUnlink || live > 0 || overflow > 0 || doomed {
			return nil
		}
		if err := unlinkObject(seg.name); err != nil {
			if !isCode(err, ErrNotFound) {
				e := err.(*Error)
				return &Error{code: e.code, errno: e.errno, msg: "segment " + quote(seg.name) + " has no other user and is auto-unlink, but this process may not remove it (" + e.msg + "); it stays, usable, until its owner removes it"}
			}
		} else {
			removed = true
		}
		store32(hdr, offDoomed, 1)
		return nil
	})
	return removed, err
}
