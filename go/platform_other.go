//go:build !linux

package shmkit

import (
	"runtime"
	"time"
)

// Other systems: this package speaks the protocol through /dev/shm, futexes and /proc, which
// only Linux has. Everything that needs them reports ErrUnsupported; the package still builds,
// so programs that merely link it compile everywhere.

const supported = false

type mapped struct {
	mem   []byte
	owner uint32
	mode  uint32
}

func (m *mapped) unmap() { m.mem = nil }

func pageSize() int { return 4096 }

func createObject(name string, size int, mode uint32) (*mapped, error) {
	return nil, newErr(ErrUnsupported, "shared-memory segments need Linux in the Go module (segment %q)", name)
}

func openObject(name string) (*mapped, error) {
	return nil, newErr(ErrUnsupported, "shared-memory segments need Linux in the Go module (segment %q)", name)
}

func unlinkObject(name string) error {
	return newErr(ErrUnsupported, "shared-memory segments need Linux in the Go module (segment %q)", name)
}

var errEmpty = ErrUnsupported

func effectiveUID() (uint32, bool) { return 0, false }

type waitOutcome int

const (
	woken waitOutcome = iota
	notEqual
	timedOut
)

func futexWait(addr *uint32, val uint32, timeout time.Duration) waitOutcome { return timedOut }

func futexWake(addr *uint32, n int) int { return 0 }

func osYield() { runtime.Gosched() }

func currentThread() threadIdentity { return threadIdentity{} }

func currentProcess() processIdentity { return processIdentity{} }

func threadLiveness(owner threadIdentity) liveness { return unknown }

func processLiveness(who processIdentity) liveness { return unknown }
