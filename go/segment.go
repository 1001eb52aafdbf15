package shmkit

import (
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultReadyTimeout is how long Open waits for a concurrent creator to finish the header.
const DefaultReadyTimeout = 2 * time.Second

// Options are the options of Create and OpenOrCreate.
type Options struct {
	// Mode is the permission bits, applied exactly (the umask does not narrow them); 0 means the
	// default, 0o600.
	Mode uint32
	// AutoUnlink removes the segment when the last process that has it open closes it or dies.
	AutoUnlink bool
}

// OpenOptions are the options of OpenWith.
type OpenOptions struct {
	// ReadyTimeout bounds the wait for a creator still writing the header (0: 2 s).
	ReadyTimeout time.Duration
	// Wait, if positive, waits that long for a segment that does not exist yet.
	Wait time.Duration
	// Owners lists the user ids whose segments are accepted; empty: only this process's
	// effective uid (a name in /dev/shm can be taken first by any user). AnyOwner accepts all.
	Owners   []uint32
	AnyOwner bool
}

// Segment is a mapped shared-memory segment: a validated header page, then the data area.
// Its methods are safe for concurrent use by several goroutines.
type Segment struct {
	name string
	info Info
	m    *mapped
	mem  []byte // the whole mapping (nil once unmapped)
	data []byte // the data area

	attachment attached
	// afterDetach runs in Close once the attachment is forgotten, before the unmap (a channel
	// wakes the other side there: see peers.go).
	afterDetach func()

	mu       sync.Mutex
	idle     *sync.Cond // signalled when users drops to 0 (made by Close)
	closed   atomic.Bool
	users    int                    // operations in flight (the mapping stays until they end)
	held     map[int]threadIdentity // locks held through this mapping, by cell offset
	released map[int]uint32         // cell offset -> tid of holdings Close released
}

// Create creates segment name with a data area of size bytes; ErrExists if it exists.
func Create(name string, size int, opts *Options) (*Segment, error) {
	return create(name, size, KindSegment, opts)
}

func create(name string, size int, kind Kind, opts *Options) (*Segment, error) {
	if err := validateName(name); err != nil {
		return nil, err
	}
	if size <= 0 || int64(size) > maxDataSize {
		return nil, newErr(ErrOutOfRange, "the size must be from 1 to %d bytes, not %d", int64(maxDataSize), size)
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Mode == 0 {
		o.Mode = defaultMode
	}
	if o.Mode > 0o777 {
		return nil, newErr(ErrOutOfRange, "the mode %#o has bits beyond 0o777", o.Mode)
	}
	headerSize := max(pageSize(), minHeaderSize)
	m, err := createObject(name, headerSize+size, o.Mode)
	if err != nil {
		return nil, err
	}
	info := Info{
		HeaderSize:    headerSize,
		DataSize:      size,
		Kind:          kind,
		CreatedUnixMs: uint64(time.Now().UnixMilli()),
		CreatorPID:    uint32(os.Getpid()),
		Name:          name,
		AutoUnlink:    o.AutoUnlink,
		Instance:      newInstance(),
		Mode:          o.Mode,
	}
	seg := newSegment(name, info, m)
	// Attach before publishing the header: nobody can see an auto-unlink segment without an
	// attacher. A failed attach removes the half-made segment.
	a, err := attach(seg, o.AutoUnlink)
	if err != nil {
		_ = unlinkObject(name)
		m.unmap()
		return nil, err
	}
	seg.attachment = a
	initHeader(seg.mem[:minHeaderSize], &info)
	return seg, nil
}

var instanceCounter atomic.Uint64

// newInstance differs between any two segments created on this machine (time, process and a
// counter, mixed), as header.rs's new_instance; never 0.
func newInstance() uint64 {
	var b [24]byte
	put := func(i int, v uint64) {
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	put(0, uint64(time.Now().UnixNano()))
	put(8, uint64(os.Getpid()))
	put(16, instanceCounter.Add(1)-1)
	return fnv1a64(b[:]) | 1
}

func newSegment(name string, info Info, m *mapped) *Segment {
	return &Segment{
		name:       name,
		info:       info,
		m:          m,
		mem:        m.mem,
		data:       m.mem[info.HeaderSize : info.HeaderSize+info.DataSize : info.HeaderSize+info.DataSize],
		attachment: overflowed,
	}
}

// Open opens existing segment name (owned by this effective uid), waiting up to 2 s for a
// creator that is still writing its header. Errors: ErrNotFound, ErrPermission,
// ErrForeignOwner, ErrNotShmkit, ErrNotReady, ErrVersion, ErrCorrupt.
func Open(name string) (*Segment, error) { return OpenWith(name, nil) }

// OpenWith is Open with options.
func OpenWith(name string, opts *OpenOptions) (*Segment, error) {
	var o OpenOptions
	if opts != nil {
		o = *opts
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	appearBy := time.Now().Add(o.Wait)
	pause := 100 * time.Microsecond
	for {
		seg, err := openAttached(name, &o)
		if err != nil && isCode(err, ErrNotFound) && o.Wait > 0 && time.Now().Before(appearBy) {
			time.Sleep(pause)
			pause = min(pause*2, 10*time.Millisecond)
			continue
		}
		return seg, err
	}
}

func openAttached(name string, o *OpenOptions) (*Segment, error) {
	deadline := time.Now().Add(o.ReadyTimeout)
	for {
		m, info, err := openMapping(name, o)
		if err != nil {
			return nil, err
		}
		seg := newSegment(name, *info, m)
		a, err := attach(seg, info.AutoUnlink)
		if err == nil {
			seg.attachment = a
			return seg, nil
		}
		m.unmap()
		// A closer is removing it: the next open finds the name gone, or a new segment.
		if isCode(err, ErrNotFound) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
			continue
		}
		return nil, err
	}
}

// openMapping maps and validates segment name without attaching, retrying while the creator has
// not finished (size 0 or magic 0) until o.ReadyTimeout.
func openMapping(name string, o *OpenOptions) (*mapped, *Info, error) {
	if err := validateName(name); err != nil {
		return nil, nil, err
	}
	deadline := time.Now().Add(o.ReadyTimeout)
	for {
		m, info, err := tryOpen(name, o)
		if err != nil {
			return nil, nil, err
		}
		if m != nil {
			return m, info, nil
		}
		if !time.Now().Before(deadline) {
			return nil, nil, newErr(ErrNotReady, "segment %q exists but its creator never finished initialising it (it may have died while creating it): unlink it and create it again", name)
		}
		time.Sleep(time.Millisecond)
	}
}

// tryOpen is one attempt: (nil, nil, nil) while the creator is still writing.
func tryOpen(name string, o *OpenOptions) (*mapped, *Info, error) {
	m, err := openObject(name)
	if err == errEmpty {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if o != nil {
		if err := checkOwner(name, m.owner, o); err != nil {
			m.unmap()
			return nil, nil, err
		}
	}
	if len(m.mem) < minHeaderSize {
		m.unmap()
		return nil, nil, newErr(ErrNotShmkit, "%q is too small to be a shmkit segment", name)
	}
	info, err := inspectHeader(m.mem[:minHeaderSize], len(m.mem))
	if err != nil || info == nil {
		m.unmap()
		return nil, nil, err
	}
	if info.Name != name {
		m.unmap()
		return nil, nil, newErr(ErrNotShmkit, "the object behind %q belongs to segment %q", name, info.Name)
	}
	return m, info, nil
}

// checkOwner refuses an object whose owner o does not accept (by default: only this effective
// uid), as segment.rs's check_owner.
func checkOwner(name string, owner uint32, o *OpenOptions) error {
	me, ok := effectiveUID()
	if !ok || o.AnyOwner {
		return nil
	}
	if len(o.Owners) == 0 {
		if owner == me {
			return nil
		}
		return newErr(ErrForeignOwner, "%q is owned by uid %d, not by this user (uid %d): another user may have created it first to read or feed what you exchange; if that user is expected, open it with OpenOptions.Owners or AnyOwner", name, owner, me)
	}
	for _, uid := range o.Owners {
		if uid == owner {
			return nil
		}
	}
	return newErr(ErrForeignOwner, "%q is owned by uid %d, not by uid %v", name, owner, o.Owners)
}

// OpenOrCreate opens segment name, or creates it with a size-byte data area if it does not
// exist. Exactly one of any number of racing callers creates it; created tells which.
// ErrSizeMismatch if it exists with another size, ErrWrongKind if it is not a plain segment.
func OpenOrCreate(name string, size int, opts *Options) (seg *Segment, created bool, err error) {
	return openOrCreate(name, size, KindSegment, opts)
}

func openOrCreate(name string, size int, kind Kind, opts *Options) (*Segment, bool, error) {
	for attempt := 0; attempt < 100; attempt++ {
		seg, err := create(name, size, kind, opts)
		if err == nil {
			return seg, true, nil
		}
		if !isCode(err, ErrExists) {
			return nil, false, err
		}
		seg, err = Open(name)
		if err != nil {
			if isCode(err, ErrNotFound) {
				continue // unlinked between our create and open: try again
			}
			return nil, false, err
		}
		if seg.info.Kind != kind {
			_ = seg.Close()
			return nil, false, newErr(ErrWrongKind, "%q exists as a %s, not a %s", name, seg.info.Kind, kind)
		}
		if seg.info.DataSize != size {
			got := seg.info.DataSize
			_ = seg.Close()
			return nil, false, newErr(ErrSizeMismatch, "the %s %q exists with a %d-byte data area, not the %d asked for", kind, name, got, size)
		}
		return seg, false, nil
	}
	return nil, false, &Error{code: "EAGAIN", msg: "segment " + quote(name) + " kept being created and removed; gave up"}
}

// Unlink removes segment name (of any kind). Processes that have it open keep their mapping.
func Unlink(name string) error {
	if err := validateName(name); err != nil {
		return err
	}
	return unlinkObject(name)
}

// Name is the segment's name.
func (s *Segment) Name() string { return s.name }

// Info is the segment's validated header.
func (s *Segment) Info() Info { return s.info }

// Data is the data area, mapped: zero copy, shared with every process that has the segment
// open. It is valid until Close; do not use it (or slices of it) after Close.
func (s *Segment) Data() []byte { return s.data }

// Size is the number of bytes in the data area.
func (s *Segment) Size() int { return s.info.DataSize }

func (s *Segment) isClosed() bool { return s.closed.Load() }

// enter registers an operation that touches the mapping; ErrClosed once closed. Every enter is
// paired with exit; Close waits until no operation is in flight (blocked waits notice the close
// within a slice), so the mapping is never unmapped under an operation of this handle.
func (s *Segment) enter() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return newErr(ErrClosed, "segment %q is closed", s.name)
	}
	s.users++
	return nil
}

func (s *Segment) exit() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users--
	if s.users == 0 && s.idle != nil {
		s.idle.Broadcast()
	}
}

func (s *Segment) noteHeld(off int, me threadIdentity) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held == nil {
		s.held = map[int]threadIdentity{}
	}
	s.held[off] = me
}

func (s *Segment) forgetHeld(off int, me threadIdentity) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held[off] == me {
		delete(s.held, off)
	}
}

// forgetReleased: whether Close released a holding of cell off by this thread (then the
// goroutine's Unlock owes one runtime.UnlockOSThread).
func (s *Segment) forgetReleased(off int) bool {
	tid := currentThread().tid
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.released[off]; ok && t == tid {
		delete(s.released, off)
		return true
	}
	return false
}

// Close ends this handle: new operations fail with ErrClosed, operations in flight end (a
// blocked wait within 100 ms, with ErrClosed), then it releases the locks still held through
// this handle (as Node's close() does: their Unlock then returns ErrNotLocked), removes this
// process from the attach table and unmaps the segment. For an auto-unlink segment whose last
// live attacher this was, it removes the name; the error of an unlink this user may not do is
// returned. Idempotent. Data() must not be used after Close.
func (s *Segment) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return nil
	}
	s.closed.Store(true)
	if s.idle == nil {
		s.idle = sync.NewCond(&s.mu)
	}
	for s.users > 0 {
		s.idle.Wait()
	}
	for off, who := range s.held {
		c := cellAt(s.mem, off)
		if c.isHeldBy(atomic.LoadUint32(c.state), who) {
			if s.released == nil {
				s.released = map[int]uint32{}
			}
			s.released[off] = who.tid
			c.unlockContended()
		}
	}
	s.held = nil
	var err error
	if s.attachment != overflowed || s.info.AutoUnlink {
		_, err = detach(s, s.attachment, s.info.AutoUnlink)
	}
	if s.afterDetach != nil {
		s.afterDetach()
	}
	if s.m != nil {
		s.m.unmap()
		s.m = nil
	}
	return err
}

// Wait sleeps while the 32-bit word at offset (4-aligned, in the data area) equals expected, as
// Atomics.wait does but woken by Notify (or Node's seg.notify) from any process. A negative
// timeout waits without limit. It may wake spuriously: re-check your condition in a loop.
func (s *Segment) Wait(offset int, expected uint32, timeout time.Duration) (WaitResult, error) {
	if err := s.checkWord(offset); err != nil {
		return "", err
	}
	if err := s.enter(); err != nil {
		return "", err
	}
	defer s.exit()
	word := u32(s.data, offset)
	if atomic.LoadUint32(word) != expected {
		return WaitNotEqual, nil
	}
	if !supported {
		return "", newErr(ErrUnsupported, "waiting needs Linux in the Go module")
	}
	// Sleep in slices, so Close ends the wait (the mapping is kept until then).
	var deadline time.Time
	if timeout >= 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		slice := 100 * time.Millisecond
		if timeout >= 0 {
			left := time.Until(deadline)
			if left <= 0 {
				return WaitTimedOut, nil
			}
			slice = min(slice, left)
		}
		switch futexWait(word, expected, slice) {
		case woken:
			return WaitOK, nil
		case notEqual:
			return WaitNotEqual, nil // the kernel saw another value (EAGAIN), as Rust reports it
		}
		if s.isClosed() {
			return "", newErr(ErrClosed, "segment %q was closed during a wait", s.name)
		}
	}
}

// WaitResult is how a Wait ended, with the strings of Atomics.wait and Node's seg.wait.
type WaitResult string

const (
	WaitOK       WaitResult = "ok"
	WaitNotEqual WaitResult = "not-equal"
	WaitTimedOut WaitResult = "timed-out"
)

// Notify wakes up to n waiters (n < 0: all) on the word at offset, in any process; returns how
// many woke (0 for an invalid offset or a closed segment).
func (s *Segment) Notify(offset int, n int) int {
	if s.checkWord(offset) != nil || s.enter() != nil {
		return 0
	}
	defer s.exit()
	if n < 0 {
		n = 1<<31 - 1
	}
	return futexWake(u32(s.data, offset), n)
}

func (s *Segment) checkWord(offset int) error {
	return s.checkRange(offset, 4, 4, "32-bit word")
}

func (s *Segment) checkRange(offset, length, align int, what string) error {
	if offset < 0 || offset%align != 0 {
		return newErr(ErrOutOfRange, "a %s needs an offset that is a multiple of %d, not %d", what, align, offset)
	}
	if offset > s.info.DataSize-length {
		return newErr(ErrOutOfRange, "a %s at offset %d (%d bytes) does not fit the %d-byte segment", what, offset, length, s.info.DataSize)
	}
	return nil
}

// Mutex is the segment's header mutex (offset 64 of the header).
func (s *Segment) Mutex() *Mutex {
	return &Mutex{seg: s, off: offHeaderMutex, what: "the lock of segment " + quote(s.name)}
}

// MutexAt is the mutex occupying MutexSize bytes at offset of the data area (a multiple of
// MutexAlign). Zeroed memory is an unlocked mutex. The offset is noted in the header (for
// `shmkit inspect`), as Node's Mutex.at does.
func (s *Segment) MutexAt(offset int) (*Mutex, error) {
	if err := s.checkRange(offset, MutexSize, MutexAlign, "mutex"); err != nil {
		return nil, err
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.exit()
	s.notePlacedMutex(offset)
	return &Mutex{seg: s, off: s.info.HeaderSize + offset, what: "the mutex at offset " + strconv.Itoa(offset) + " of segment " + quote(s.name)}, nil
}

// notePlacedMutex notes offset+1 in a free placed-mutex slot of the header (by CAS; idempotent;
// nothing when the 14 slots are taken or the offset is beyond 4 GiB).
func (s *Segment) notePlacedMutex(offset int) {
	if int64(offset)+1 > 1<<32-1 {
		return
	}
	value := uint32(offset + 1)
	for slot := 0; slot < placedSlots; slot++ {
		p := u32(s.mem, offPlaced+4*slot)
		if atomic.CompareAndSwapUint32(p, 0, value) || atomic.LoadUint32(p) == value {
			return
		}
	}
}

func quote(s string) string { return strconv.Quote(s) }
