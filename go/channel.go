package shmkit

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"time"
)

// Channels (docs/CHANNELS.md, crates/shmkit-core/src/channel.rs, lib/ring.ts): a segment of kind
// 2 whose data area holds a control block and a ring of length-prefixed messages, shared by any
// number of producers and consumers in any processes.

// Codec is the codec id recorded in a channel: how its messages' bytes are to be read. This
// package moves bytes; SendJSON and RecvJSON apply the json codec.
type Codec uint32

const (
	CodecBytes  Codec = 0
	CodecString Codec = 1
	CodecJSON   Codec = 2
	CodecV8     Codec = 3 // V8's serialisation: Node, Deno and Bun only
)

func (c Codec) String() string {
	switch c {
	case CodecBytes:
		return "bytes"
	case CodecString:
		return "string"
	case CodecJSON:
		return "json"
	case CodecV8:
		return "v8"
	}
	return "unknown"
}

// Control-block offsets in the data area.
const (
	chReady        = 0
	chVersion      = 4
	chCapacity     = 8
	chCodec        = 12
	chEnded        = 16
	chTail         = 64
	chRecvSleepers = 68
	chRecvEvent    = 72
	chSent         = 76
	chLastSender   = 80
	chHead         = 128
	chSendSleepers = 132
	chSendEvent    = 136
	chReceived     = 140
	chLastReceiver = 144
	chSendLock     = 192
	chRecvLock     = 256
	chRing         = 512

	channelMagic   = 0x6c6e6863 // "chnl"
	channelVersion = 1
	// MinCapacity and MaxCapacity bound a channel's ring (a power of two).
	MinCapacity = 64
	MaxCapacity = 1 << 30

	channelSpin = 50 * time.Microsecond
	// The longest single sleep of a waiting Send or Recv; they re-check between sleeps.
	sleepSlice = 100 * time.Millisecond
)

// Channel is a cross-process message queue: every message is delivered exactly once and whole,
// in order per producer; a full channel makes Send wait, never drop. Safe for concurrent use.
type Channel struct {
	seg      *Segment
	capacity uint32
	ring     []byte // data[chRing : chRing+capacity]
	data     []byte
	// roles this mapping announced (roleProducer, roleConsumer); see peers.go.
	roles       atomic.Uint32
	ifPeersGone IfPeersGone
}

// CreateChannel creates channel name with a ring of capacity bytes (rounded up to a power of
// two, 64 to 2^30), recording codec for every process that opens it.
func CreateChannel(name string, capacity int, codec Codec) (*Channel, error) {
	return CreateChannelWith(name, capacity, codec, nil)
}

// CreateChannelWith is CreateChannel with segment options (mode, auto-unlink).
func CreateChannelWith(name string, capacity int, codec Codec, opts *Options) (*Channel, error) {
	ring, err := ringBytes(capacity, codec)
	if err != nil {
		return nil, err
	}
	seg, err := create(name, chRing+ring, KindChannel, opts)
	if err != nil {
		return nil, err
	}
	return initChannel(seg, ring, codec), nil
}

func ringBytes(capacity int, codec Codec) (int, error) {
	if capacity < 1 || capacity > MaxCapacity {
		return 0, newErr(ErrOutOfRange, "the capacity must be from 1 to %d bytes, not %d", MaxCapacity, capacity)
	}
	if codec > CodecV8 {
		return 0, newErr(ErrInvalidArg, "unknown codec id %d", uint32(codec))
	}
	ring := MinCapacity
	for ring < capacity {
		ring *= 2
	}
	return ring, nil
}

func initChannel(seg *Segment, ring int, codec Codec) *Channel {
	d := seg.data
	store32(d, chVersion, channelVersion)
	store32(d, chCapacity, uint32(ring))
	store32(d, chCodec, uint32(codec))
	// SYNC POINT (creator): openers that see the magic see the fields above.
	store32(d, chReady, channelMagic)
	ch := newChannel(seg, uint32(ring))
	return ch
}

func newChannel(seg *Segment, capacity uint32) *Channel {
	ch := &Channel{seg: seg, capacity: capacity, data: seg.data, ring: seg.data[chRing : chRing+int(capacity) : chRing+int(capacity)]}
	// Note the side locks in the header, as Node's Ring does (for `shmkit inspect`).
	seg.notePlacedMutex(chSendLock)
	seg.notePlacedMutex(chRecvLock)
	ch.join()
	seg.afterDetach = ch.left
	return ch
}

// OpenChannel opens channel name, waiting up to 2 s for its creator to finish. ErrWrongKind if
// it is not a channel; ErrCorrupt for an impossible control block.
func OpenChannel(name string) (*Channel, error) { return OpenChannelWith(name, nil) }

// OpenChannelWith is OpenChannel with open options.
func OpenChannelWith(name string, opts *OpenOptions) (*Channel, error) {
	seg, err := OpenWith(name, opts)
	if err != nil {
		return nil, err
	}
	timeout := DefaultReadyTimeout
	if opts != nil && opts.ReadyTimeout > 0 {
		timeout = opts.ReadyTimeout
	}
	ch, err := channelOver(seg, timeout)
	if err != nil {
		_ = seg.Close()
		return nil, err
	}
	return ch, nil
}

func channelOver(seg *Segment, readyTimeout time.Duration) (*Channel, error) {
	if seg.info.Kind != KindChannel {
		return nil, newErr(ErrWrongKind, "%q is a %s, not a channel", seg.name, seg.info.Kind)
	}
	// The kind is only a claim: a data area too small for the control block is damaged.
	if seg.info.DataSize < chRing+MinCapacity {
		return nil, newErr(ErrCorrupt, "damaged channel: a %d-byte data area cannot hold a channel", seg.info.DataSize)
	}
	d := seg.data
	deadline := time.Now().Add(readyTimeout)
	for load32(d, chReady) != channelMagic {
		if !time.Now().Before(deadline) {
			return nil, newErr(ErrNotReady, "channel %q was never initialised", seg.name)
		}
		time.Sleep(time.Millisecond)
	}
	if v := load32(d, chVersion); v != channelVersion {
		return nil, newErr(ErrVersion, "channel %q uses channel layout %d; this reads %d", seg.name, v, channelVersion)
	}
	capacity := load32(d, chCapacity)
	if capacity < MinCapacity || capacity > MaxCapacity || capacity&(capacity-1) != 0 || chRing+int(capacity) > seg.info.DataSize {
		return nil, newErr(ErrCorrupt, "damaged channel: impossible capacity %d", capacity)
	}
	return newChannel(seg, capacity), nil
}

// OpenOrCreateChannel opens channel name or creates it (exactly one racing caller creates it).
// ErrSizeMismatch if it exists with another capacity.
func OpenOrCreateChannel(name string, capacity int, codec Codec, opts *Options) (ch *Channel, created bool, err error) {
	ring, err := ringBytes(capacity, codec)
	if err != nil {
		return nil, false, err
	}
	seg, created, err := openOrCreate(name, chRing+ring, KindChannel, opts)
	if err != nil {
		return nil, false, err
	}
	if created {
		return initChannel(seg, ring, codec), true, nil
	}
	ch, err = channelOver(seg, DefaultReadyTimeout)
	if err != nil {
		_ = seg.Close()
		return nil, false, err
	}
	return ch, false, nil
}

// Name is the channel's name.
func (ch *Channel) Name() string { return ch.seg.name }

// Capacity is the ring's size in bytes; the largest message is Capacity()-4 bytes.
func (ch *Channel) Capacity() int { return int(ch.capacity) }

// Codec is the codec id recorded at creation.
func (ch *Channel) Codec() Codec {
	if ch.seg.enter() != nil {
		return CodecBytes
	}
	defer ch.seg.exit()
	return Codec(load32(ch.data, chCodec))
}

// Segment is the channel's segment (for Info, Close).
func (ch *Channel) Segment() *Segment { return ch.seg }

// Ended reports whether End was called, by any process (messages may still wait to be read).
func (ch *Channel) Ended() bool {
	if ch.seg.enter() != nil {
		return false
	}
	defer ch.seg.exit()
	return ch.ended()
}

// Close unmaps this handle; the channel and its messages stay for everyone else.
func (ch *Channel) Close() error { return ch.seg.Close() }

func (ch *Channel) ended() bool      { return load32(ch.data, chEnded) != 0 }
func (ch *Channel) inFlight() uint32 { return load32(ch.data, chTail) - load32(ch.data, chHead) }

func (ch *Channel) free() int {
	used := ch.inFlight()
	if used > ch.capacity {
		return 0
	}
	return int(ch.capacity - used)
}

func frameSize(length int) int { return 4 + (length+3)&^3 }

func (ch *Channel) corrupt(format string, args ...any) error {
	e := newErr(ErrCorrupt, format, args...)
	e.msg = "damaged channel " + quote(ch.seg.name) + ": " + e.msg
	return e
}

func (ch *Channel) endedErr() error {
	return newErr(ErrEnded, "channel %q has ended: End was called", ch.seg.name)
}

// used is tail-head, validated: a damaged index is an error, never an out-of-bounds access.
func (ch *Channel) used(head, tail uint32) (int, error) {
	used := tail - head
	if used > ch.capacity || used%4 != 0 || head%4 != 0 {
		return 0, ch.corrupt("indices head=%d tail=%d", head, tail)
	}
	return int(used), nil
}

func (ch *Channel) checkSendable(length int) error {
	if length > int(ch.capacity)-4 {
		return newErr(ErrOutOfRange, "a %d-byte message can never fit channel %q: the limit is %d bytes", length, ch.seg.name, ch.capacity-4)
	}
	if ch.ended() {
		return ch.endedErr()
	}
	return nil
}

type appended int

const (
	appendedYes appended = iota
	appendedNoRoom
	appendedBusy
)

// sideLock runs f holding the side lock at off: waiting as limits say, or (limits nil) only if it
// is free now (ran false when busy).
func (ch *Channel) sideLock(off int, limits *lockLimits, f func() error) (ran bool, err error) {
	abs := ch.seg.info.HeaderSize + off
	if limits == nil {
		return withTryLock(ch.seg, abs, f)
	}
	return true, withLock(ch.seg, abs, limits, f)
}

func (ch *Channel) appendMsg(msg []byte, limits *lockLimits) (appended, error) {
	result := appendedBusy
	ran, err := ch.sideLock(chSendLock, limits, func() error {
		// Re-checked under the send lock: End sets the flag under it, so nothing published after
		// this check can follow the end of the stream.
		if ch.ended() {
			return ch.endedErr()
		}
		tail := atomic.LoadUint32(u32(ch.data, chTail))
		used, err := ch.used(atomic.LoadUint32(u32(ch.data, chHead)), tail)
		if err != nil {
			return err
		}
		need := frameSize(len(msg))
		if int(ch.capacity)-used < need {
			result = appendedNoRoom
			return nil
		}
		start := int(tail & (ch.capacity - 1))
		n := uint32(len(msg))
		ch.copyIn(start, []byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)})
		ch.copyIn((start+4)%int(ch.capacity), msg)
		// SYNC POINT (publish): the message is whole before the tail moves past it.
		atomic.StoreUint32(u32(ch.data, chTail), tail+uint32(need))
		store32(ch.data, chSent, load32(ch.data, chSent)+1)
		store32(ch.data, chLastSender, 0) // not a caching sender (docs/CHANNELS.md)
		result = appendedYes
		return nil
	})
	if err != nil {
		return 0, err
	}
	if !ran {
		return appendedBusy, nil
	}
	if result == appendedYes {
		ch.wakeSleepers(chRecvSleepers, chRecvEvent)
	}
	return result, nil
}

// take takes the next message: (nil, false) when empty or (limits nil) the lock is busy.
func (ch *Channel) take(limits *lockLimits) ([]byte, bool, error) {
	var msg []byte
	got := false
	_, err := ch.sideLock(chRecvLock, limits, func() error {
		head := atomic.LoadUint32(u32(ch.data, chHead))
		used, err := ch.used(head, atomic.LoadUint32(u32(ch.data, chTail)))
		if err != nil || used == 0 {
			return err
		}
		start := int(head & (ch.capacity - 1))
		var lb [4]byte
		ch.copyOut(start, lb[:])
		length := uint32(lb[0]) | uint32(lb[1])<<8 | uint32(lb[2])<<16 | uint32(lb[3])<<24
		if length > ch.capacity-4 || frameSize(int(length)) > used {
			return ch.corrupt("message length %d with %d bytes in flight", length, used)
		}
		msg = make([]byte, length)
		ch.copyOut((start+4)%int(ch.capacity), msg)
		// SYNC POINT (consume): the bytes are copied out before they are handed back.
		atomic.StoreUint32(u32(ch.data, chHead), head+uint32(frameSize(int(length))))
		store32(ch.data, chReceived, load32(ch.data, chReceived)+1)
		store32(ch.data, chLastReceiver, 0) // not a caching receiver
		got = true
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	if got {
		ch.wakeSleepers(chSendSleepers, chSendEvent)
	}
	return msg, got, nil
}

// copyIn copies b into the ring at position (< capacity), wrapping at the end. len(b) is at most
// capacity-4 (checked by the caller), so both pieces lie inside the ring.
func (ch *Channel) copyIn(position int, b []byte) {
	n := copy(ch.ring[position:], b)
	copy(ch.ring, b[n:])
}

// copyOut copies from the ring at position into b, wrapping at the end.
func (ch *Channel) copyOut(position int, b []byte) {
	n := copy(b, ch.ring[position:])
	copy(b[n:], ch.ring)
}

// wakeSleepers wakes one side's sleepers if any announced itself (the waker clears the flag, so
// a burst of messages costs one wake-up).
func (ch *Channel) wakeSleepers(flag, event int) {
	f := u32(ch.data, flag)
	if atomic.LoadUint32(f) != 0 && atomic.SwapUint32(f, 0) != 0 {
		e := u32(ch.data, event)
		atomic.AddUint32(e, 1)
		futexWake(e, 1<<31-1)
	}
}

// waitFor is the sleeper protocol of docs/CHANNELS.md (sleepOn); gone() may stop the wait
// before it sleeps (the other side is gone).
func (ch *Channel) waitFor(ctx context.Context, flag, event int, what string, ready func() bool, gone func() error) error {
	stop := func() error {
		if err := ch.stop(ctx, what); err != nil {
			return err
		}
		return gone()
	}
	return sleepOn(ctx, ch.data, flag, event, what, stop, ready)
}

// stop: the reason to give up waiting, if any (a finished context, a closed handle).
func (ch *Channel) stop(ctx context.Context, what string) error {
	return stopReason(ctx, ch.seg, "channel", what)
}

func (ch *Channel) limits(ctx context.Context, what string) *lockLimits {
	return limitsFor(ctx, func() error { return ch.stop(ctx, what) })
}

// sleepOn is the sleeper protocol of docs/CHANNELS.md, for channels and topics alike: spin
// briefly, then read the event, raise the flag, re-check, and sleep on the event value for one
// slice at most (docs/CHANNELS.md: at most 1 s), so that a canceled context, a Close or a dead
// peer is noticed soon: the caller re-checks everything between slices.
func sleepOn(ctx context.Context, data []byte, flag, event int, what string, stop func() error, ready func() bool) error {
	spinUntil := time.Now().Add(channelSpin)
	for time.Now().Before(spinUntil) {
		if ready() {
			return nil
		}
	}
	e := u32(data, event)
	seen := atomic.LoadUint32(e)
	atomic.StoreUint32(u32(data, flag), 1)
	if ready() {
		return nil
	}
	if err := stop(); err != nil {
		return err
	}
	slice := sleepSlice
	if d, ok := ctx.Deadline(); ok {
		left := time.Until(d)
		if left <= 0 {
			return ctxErr(ctx, what)
		}
		slice = min(slice, left)
	}
	futexWait(e, seen, slice)
	return nil
}

// stopReason: why a wait on seg (a "channel" or "topic") must end, if it must: a finished
// context, a closed handle.
func stopReason(ctx context.Context, seg *Segment, kind, what string) error {
	if ctx.Err() != nil {
		return ctxErr(ctx, what)
	}
	if seg.isClosed() {
		return newErr(ErrClosed, "%s %q was closed while waiting for %s", kind, seg.name, what)
	}
	return nil
}

// limitsFor: how long a lock wait may last (ctx's deadline) and when it must stop.
func limitsFor(ctx context.Context, stop func() error) *lockLimits {
	l := &lockLimits{stop: stop}
	if d, ok := ctx.Deadline(); ok {
		l.deadline = d
	}
	return l
}

// Send appends msg, waiting while the channel is full, until ctx ends (ErrTimeout at its
// deadline, ErrCanceled). ErrEnded once End was called; ErrOutOfRange for a message longer
// than Capacity()-4.
func (ch *Channel) Send(ctx context.Context, msg []byte) error {
	if !supported {
		return newErr(ErrUnsupported, "channels need Linux in the Go module")
	}
	if err := ch.seg.enter(); err != nil {
		return err
	}
	defer ch.seg.exit()
	if err := ch.checkSendable(len(msg)); err != nil {
		return err
	}
	ch.announce(roleProducer)
	what := "room in channel " + quote(ch.seg.name)
	need := frameSize(len(msg))
	for {
		if err := ch.stop(ctx, what); err != nil {
			return err
		}
		a, err := ch.appendMsg(msg, ch.limits(ctx, "the send lock of channel "+quote(ch.seg.name)))
		if err != nil {
			return fixCtx(ctx, err, what)
		}
		if a == appendedYes {
			return nil
		}
		ready := func() bool { return ch.free() >= need || ch.ended() }
		gone := func() error { return ch.peersGone(roleConsumer, func() bool { return !ready() }) }
		if err := ch.waitFor(ctx, chSendSleepers, chSendEvent, what, ready, gone); err != nil {
			return err
		}
		if ch.ended() {
			return ch.endedErr()
		}
	}
}

// TrySend appends msg if that can be done now: false when the channel is full or another
// producer holds the send lock at this instant. Never waits.
func (ch *Channel) TrySend(msg []byte) (bool, error) {
	if !supported {
		return false, newErr(ErrUnsupported, "channels need Linux in the Go module")
	}
	if err := ch.seg.enter(); err != nil {
		return false, err
	}
	defer ch.seg.exit()
	if err := ch.checkSendable(len(msg)); err != nil {
		return false, err
	}
	ch.announce(roleProducer)
	a, err := ch.appendMsg(msg, nil)
	return a == appendedYes, err
}

// Recv takes the next message, waiting for one until ctx ends. Once the stream has ended and
// every message is drained: ErrEnded.
func (ch *Channel) Recv(ctx context.Context) ([]byte, error) {
	if !supported {
		return nil, newErr(ErrUnsupported, "channels need Linux in the Go module")
	}
	if err := ch.seg.enter(); err != nil {
		return nil, err
	}
	defer ch.seg.exit()
	ch.announce(roleConsumer)
	what := "a message in channel " + quote(ch.seg.name)
	for {
		if err := ch.stop(ctx, what); err != nil {
			return nil, err
		}
		msg, ok, err := ch.take(ch.limits(ctx, "the receive lock of channel "+quote(ch.seg.name)))
		if err != nil {
			return nil, fixCtx(ctx, err, what)
		}
		if ok {
			return msg, nil
		}
		// `ended` first, then the indices: once ended no producer publishes, so they are final.
		if ch.ended() && ch.inFlight() == 0 {
			return nil, ch.endedErr()
		}
		ready := func() bool { return ch.inFlight() != 0 || ch.ended() }
		gone := func() error { return ch.peersGone(roleProducer, func() bool { return !ready() }) }
		if err := ch.waitFor(ctx, chRecvSleepers, chRecvEvent, what, ready, gone); err != nil {
			return nil, err
		}
	}
}

// TryRecv takes the next message if there is one now: ok is false when the channel is empty or
// another consumer holds the receive lock at this instant. Never waits. Once the stream has ended
// and is drained it returns ErrEnded (where Node's tryRecv returns undefined), so a polling
// consumer knows when to stop.
func (ch *Channel) TryRecv() (msg []byte, ok bool, err error) {
	if !supported {
		return nil, false, newErr(ErrUnsupported, "channels need Linux in the Go module")
	}
	if err := ch.seg.enter(); err != nil {
		return nil, false, err
	}
	defer ch.seg.exit()
	ch.announce(roleConsumer)
	endedBefore := ch.ended() // read before the indices: then "empty" is final
	msg, ok, err = ch.take(nil)
	if err != nil || ok {
		return msg, ok, err
	}
	if endedBefore && ch.inFlight() == 0 {
		return nil, false, ch.endedErr()
	}
	return nil, false, nil
}

// End ends the stream for every process: later sends fail with ErrEnded, receivers drain what
// is left, then get ErrEnded. Idempotent. The flag is set under the send lock (waited for until
// ctx ends), so a send in progress either publishes first or fails.
func (ch *Channel) End(ctx context.Context) error {
	if !supported {
		return newErr(ErrUnsupported, "channels need Linux in the Go module")
	}
	if err := ch.seg.enter(); err != nil {
		return err
	}
	defer ch.seg.exit()
	what := "the send lock of channel " + quote(ch.seg.name)
	_, err := ch.sideLock(chSendLock, ch.limits(ctx, what), func() error {
		atomic.StoreUint32(u32(ch.data, chEnded), 1)
		return nil
	})
	if err != nil {
		return fixCtx(ctx, err, what)
	}
	for _, ev := range []int{chRecvEvent, chSendEvent} {
		e := u32(ch.data, ev)
		atomic.AddUint32(e, 1)
		futexWake(e, 1<<31-1)
	}
	return nil
}

// SendJSON sends v encoded as JSON (the json codec: Node receives the value).
func (ch *Channel) SendJSON(ctx context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return &Error{code: "ERR_SHM_ENCODE", msg: "the json codec cannot encode the value", cause: err}
	}
	return ch.Send(ctx, b)
}

// RecvJSON receives the next message and decodes it as JSON into v. A message that does not
// decode is consumed and reported as ErrCorrupt (as Node does), so it cannot wedge receivers.
func (ch *Channel) RecvJSON(ctx context.Context, v any) error {
	b, err := ch.Recv(ctx)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		e := ch.corrupt("a message did not decode as json and was dropped")
		e.(*Error).cause = err
		return e
	}
	return nil
}

// ChannelStats is a snapshot of a channel's traffic (counters wrap at 2^32).
type ChannelStats struct {
	Sent, Received, BytesInFlight, Capacity uint32
	Ended                                   bool
}

// Stats is a snapshot of the channel's counters.
func (ch *Channel) Stats() (ChannelStats, error) {
	if err := ch.seg.enter(); err != nil {
		return ChannelStats{}, err
	}
	defer ch.seg.exit()
	return ChannelStats{
		Sent:          load32(ch.data, chSent),
		Received:      load32(ch.data, chReceived),
		BytesInFlight: ch.inFlight(),
		Capacity:      ch.capacity,
		Ended:         ch.ended(),
	}, nil
}
