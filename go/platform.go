package shmkit

// threadIdentity is who holds a lock (docs/LOCKING.md, "Owner records and death"): the kernel
// thread id, the PID namespace it belongs to, the thread's start time (against tid reuse) and its
// process.
type threadIdentity struct {
	tid       uint32
	namespace uint32
	start     uint64
	pid       uint32
}

// processIdentity is an attacher, as recorded in the attach table.
type processIdentity struct {
	pid       uint32
	namespace uint32
	start     uint64
}

type liveness int

const (
	alive liveness = iota
	dead
	// unknown: cannot tell (another PID namespace): treated as alive, never robbed.
	unknown
)
