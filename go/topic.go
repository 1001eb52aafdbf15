package shmkit

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Topics (docs/TOPIC.md, crates/shmkit-core/src/topic.rs, lib/topic.ts): a segment of kind 4
// whose data area holds a control block, a table of subscriber slots and a ring of numbered
// records. Publishers append under the robust publish lock; every subscriber reads the ring on
// its own cursor, without a lock, and gets every message published after it subscribed, in the
// one publish order.
//
//	data offset  field
//	     0       ready, version, capacity, codec, slow, slots, ended, ring_at
//	    64       tail, writing, head, published, sub_sleepers, sub_event
//	   128       pub_sleepers, pub_event, reaped
//	   192       publish lock (a mutex cell)
//	   256       subscriber table: slots x 64 bytes
//	 ring_at     records: [length u32][number u32][payload][pad to 8] ...

const (
	tpReady       = 0
	tpVersion     = 4
	tpCapacity    = 8
	tpCodec       = 12
	tpSlow        = 16
	tpSlots       = 20
	tpEnded       = 24
	tpRingAt      = 28
	tpTail        = 64
	tpWriting     = 68
	tpHead        = 72
	tpPublished   = 76
	tpSubSleepers = 80
	tpSubEvent    = 84
	tpPubSleepers = 128
	tpPubEvent    = 132
	tpReaped      = 136
	tpPublishLock = 192
	tpTable       = 256
	tpSlotSize    = 64

	// In a subscriber slot.
	tsState   = 0 // generation*2+1 while subscribed, generation*2 while free
	tsCursor  = 4
	tsSeq     = 8
	tsMissed  = 12
	tsTid     = 16
	tsNs      = 20
	tsPid     = 24
	tsStartLo = 28
	tsStartHi = 32

	tpRecordHeader = 8

	topicMagic   = 0x6370_6f74 // "topc"
	topicVersion = 1

	// DefaultSubscribers and MaxSubscribers bound a topic's subscriber table.
	DefaultSubscribers = 64
	MaxSubscribers     = 4096

	// A lapped subscriber re-reads the head this many times while publishers keep lapping it.
	topicCatchUpAttempts = 1000
	// How long Subscribe waits for the publish lock (as the Rust core).
	subscribeLockTimeout = 10 * time.Second
)

// Slow is what a topic's publishers do about a subscriber that has not read the room they need.
type Slow uint32

const (
	// SlowBlock: publishers wait for the slowest live subscriber (dead ones are removed).
	SlowBlock Slow = 0
	// SlowOverwrite: publishers never wait; a lapped subscriber gets a *LaggedError saying how
	// many messages it missed, then continues from the oldest one still there.
	SlowOverwrite Slow = 1
)

func (s Slow) String() string {
	switch s {
	case SlowBlock:
		return "block"
	case SlowOverwrite:
		return "overwrite"
	}
	return "unknown"
}

// TopicOptions are the options of CreateTopic and OpenOrCreateTopic (nil: all defaults).
type TopicOptions struct {
	// Slow: SlowBlock (the default) or SlowOverwrite.
	Slow Slow
	// Subscribers is the most subscribers at once, 1 to 4096; 0 means 64. Each takes 64 bytes.
	Subscribers int
	// Mode and AutoUnlink as for segments (Options).
	Mode       uint32
	AutoUnlink bool
}

// Topic is broadcast in shared memory: every subscriber, in any process (Go, Node.js, Python or
// Rust), receives every message published after it subscribed, exactly once, whole, in the one
// publish order. Any number of publishers. Safe for concurrent use by several goroutines.
type Topic struct {
	seg      *Segment
	data     []byte
	capacity uint32
	mask     uint32
	slots    int
	ringAt   int
	slow     Slow

	// minCursor (block mode): bit 32 set once known; the low 32 bits are a lower bound of every
	// live subscriber's cursor seen by this handle's last scan. Cursors only move forward and a
	// new subscriber starts at the tail, so it stays a lower bound; the table is scanned again
	// only when it shows no room.
	minCursor atomic.Uint64

	mu      sync.Mutex
	closing bool
	subs    map[*Subscription]struct{} // this handle's open subscriptions (closed with it)
}

type topicPlan struct {
	ring, capacity, slots int
	codec                 Codec
	slow                  Slow
	seg                   Options
}

func planTopic(capacity int, codec Codec, opts *TopicOptions) (topicPlan, error) {
	var o TopicOptions
	if opts != nil {
		o = *opts
	}
	ring, err := ringBytes(capacity, codec)
	if err != nil {
		return topicPlan{}, err
	}
	if o.Slow != SlowBlock && o.Slow != SlowOverwrite {
		return topicPlan{}, newErr(ErrInvalidArg, "unknown slow mode %d: use SlowBlock or SlowOverwrite", uint32(o.Slow))
	}
	slots := o.Subscribers
	if slots == 0 {
		slots = DefaultSubscribers
	}
	if slots < 1 || slots > MaxSubscribers {
		return topicPlan{}, newErr(ErrOutOfRange, "subscribers must be from 1 to %d, not %d", MaxSubscribers, o.Subscribers)
	}
	return topicPlan{
		ring:     tpTable + slots*tpSlotSize,
		capacity: ring,
		slots:    slots,
		codec:    codec,
		slow:     o.Slow,
		seg:      Options{Mode: o.Mode, AutoUnlink: o.AutoUnlink},
	}, nil
}

// CreateTopic creates topic name with a ring of capacity bytes (rounded up to a power of two,
// 64 to 2^30), recording codec for every process that opens it. ErrExists if it exists. A
// message takes 8 bytes plus its length rounded up to 8; the largest is capacity-8 bytes.
func CreateTopic(name string, capacity int, codec Codec, opts *TopicOptions) (*Topic, error) {
	p, err := planTopic(capacity, codec, opts)
	if err != nil {
		return nil, err
	}
	seg, err := create(name, p.ring+p.capacity, KindTopic, &p.seg)
	if err != nil {
		return nil, err
	}
	return initTopic(seg, p), nil
}

func initTopic(seg *Segment, p topicPlan) *Topic {
	d := seg.data
	store32(d, tpVersion, topicVersion)
	store32(d, tpCapacity, uint32(p.capacity))
	store32(d, tpCodec, uint32(p.codec))
	store32(d, tpSlow, uint32(p.slow))
	store32(d, tpSlots, uint32(p.slots))
	store32(d, tpRingAt, uint32(p.ring))
	seg.notePlacedMutex(tpPublishLock) // for `shmkit inspect`, as the Rust core does
	// SYNC POINT (creator): openers that see the magic see the fields above.
	store32(d, tpReady, topicMagic)
	return newTopic(seg, uint32(p.capacity), p.slots, p.ring, p.slow)
}

func newTopic(seg *Segment, capacity uint32, slots, ring int, slow Slow) *Topic {
	return &Topic{seg: seg, data: seg.data, capacity: capacity, mask: capacity - 1, slots: slots, ringAt: ring, slow: slow}
}

// OpenTopic opens topic name, waiting up to 2 s for its creator to finish. ErrWrongKind if it
// is not a topic; ErrCorrupt for an impossible control block.
func OpenTopic(name string) (*Topic, error) { return OpenTopicWith(name, nil) }

// OpenTopicWith is OpenTopic with open options.
func OpenTopicWith(name string, opts *OpenOptions) (*Topic, error) {
	seg, err := OpenWith(name, opts)
	if err != nil {
		return nil, err
	}
	timeout := DefaultReadyTimeout
	if opts != nil && opts.ReadyTimeout > 0 {
		timeout = opts.ReadyTimeout
	}
	t, err := topicOver(seg, timeout)
	if err != nil {
		_ = seg.Close()
		return nil, err
	}
	return t, nil
}

// OpenOrCreateTopic opens topic name or creates it (exactly one racing caller creates it).
// ErrSizeMismatch if it exists with another capacity or subscriber count.
func OpenOrCreateTopic(name string, capacity int, codec Codec, opts *TopicOptions) (t *Topic, created bool, err error) {
	p, err := planTopic(capacity, codec, opts)
	if err != nil {
		return nil, false, err
	}
	seg, created, err := openOrCreate(name, p.ring+p.capacity, KindTopic, &p.seg)
	if err != nil {
		return nil, false, err
	}
	if created {
		return initTopic(seg, p), true, nil
	}
	t, err = topicOver(seg, DefaultReadyTimeout)
	if err == nil && (t.capacity != uint32(p.capacity) || t.slots != p.slots) {
		err = newErr(ErrSizeMismatch, "topic %q exists with a %d-byte ring and %d subscriber slots, not %d and %d", name, t.capacity, t.slots, p.capacity, p.slots)
	}
	if err != nil {
		_ = seg.Close()
		return nil, false, err
	}
	return t, false, nil
}

// topicOver validates an opened segment as a topic, once its creator finished.
func topicOver(seg *Segment, readyTimeout time.Duration) (*Topic, error) {
	if seg.info.Kind != KindTopic {
		return nil, newErr(ErrWrongKind, "%q is a %s, not a topic", seg.name, seg.info.Kind)
	}
	// The kind is only a claim: a data area too small for the control block is damaged.
	if seg.info.DataSize < tpTable+tpSlotSize+MinCapacity {
		return nil, newErr(ErrCorrupt, "damaged topic: a %d-byte data area cannot hold a topic", seg.info.DataSize)
	}
	d := seg.data
	deadline := time.Now().Add(readyTimeout)
	for load32(d, tpReady) != topicMagic {
		if !time.Now().Before(deadline) {
			return nil, newErr(ErrNotReady, "topic %q was never initialised", seg.name)
		}
		time.Sleep(time.Millisecond)
	}
	if v := load32(d, tpVersion); v != topicVersion {
		return nil, newErr(ErrVersion, "topic %q uses topic layout %d; this reads %d", seg.name, v, topicVersion)
	}
	capacity := load32(d, tpCapacity)
	slots := load32(d, tpSlots)
	ring := load32(d, tpRingAt)
	slow := Slow(load32(d, tpSlow))
	if capacity < MinCapacity || capacity > MaxCapacity || capacity&(capacity-1) != 0 ||
		slots < 1 || slots > MaxSubscribers || ring != tpTable+slots*tpSlotSize ||
		int(ring)+int(capacity) > seg.info.DataSize || (slow != SlowBlock && slow != SlowOverwrite) {
		return nil, newErr(ErrCorrupt, "damaged topic: impossible geometry: %d-byte ring at %d, %d subscriber slots, slow mode %d", capacity, ring, slots, uint32(slow))
	}
	seg.notePlacedMutex(tpPublishLock)
	return newTopic(seg, capacity, int(slots), int(ring), slow), nil
}

// Name is the topic's name.
func (t *Topic) Name() string { return t.seg.name }

// Capacity is the ring's size in bytes; the largest message is Capacity()-8 bytes.
func (t *Topic) Capacity() int { return int(t.capacity) }

// Slow is what publishers do about slow subscribers (fixed at creation).
func (t *Topic) Slow() Slow { return t.slow }

// SubscriberSlots is the most subscribers the topic takes at once.
func (t *Topic) SubscriberSlots() int { return t.slots }

// Codec is the codec id recorded at creation.
func (t *Topic) Codec() Codec {
	if t.seg.enter() != nil {
		return CodecBytes
	}
	defer t.seg.exit()
	return Codec(load32(t.data, tpCodec))
}

// Segment is the topic's segment (for Info). Close the topic with Topic.Close, which also
// closes its subscriptions.
func (t *Topic) Segment() *Segment { return t.seg }

// Ended reports whether End was called, by any process (subscribers may still have messages to
// read).
func (t *Topic) Ended() bool {
	if t.seg.enter() != nil {
		return false
	}
	defer t.seg.exit()
	return t.ended()
}

// Close unsubscribes this handle's open subscriptions and unmaps the topic; the topic stays for
// everyone else. Idempotent.
func (t *Topic) Close() error {
	t.mu.Lock()
	t.closing = true
	subs := make([]*Subscription, 0, len(t.subs))
	for s := range t.subs {
		subs = append(subs, s)
	}
	t.mu.Unlock()
	for _, s := range subs {
		_ = s.Close()
	}
	return t.seg.Close()
}

func (t *Topic) ended() bool { return load32(t.data, tpEnded) != 0 }

func (t *Topic) corrupt(format string, args ...any) error {
	e := newErr(ErrCorrupt, format, args...)
	e.msg = "damaged topic " + quote(t.seg.name) + ": " + e.msg
	return e
}

func (t *Topic) endedErr() error {
	return newErr(ErrEnded, "topic %q has ended: End was called", t.seg.name)
}

// recordSize is the bytes a record of a length-byte message occupies (computed in 64 bits: a
// length read from memory may be anything).
func recordSize(length uint32) uint64 { return tpRecordHeader + (uint64(length)+7)&^7 }

func (t *Topic) slotOff(slot, field int) int { return tpTable + slot*tpSlotSize + field }

// ringWord loads the ring word at byte counter position (masked into the ring; the &^3 keeps
// even a misaligned position from a damaged topic inside the ring's words).
func (t *Topic) ringWord(position uint32) uint32 {
	return load32(t.data, t.ringAt+int(position&t.mask&^3))
}

func (t *Topic) setRingWord(position, v uint32) {
	store32(t.data, t.ringAt+int(position&t.mask&^3), v)
}

// writeRecord writes a record at tail: length, number, payload (its last word zero-padded).
// The ring is written and read as 32-bit atomic words only: in overwrite mode a subscriber may
// read bytes a publisher is overwriting (and then discards them).
func (t *Topic) writeRecord(tail, number uint32, msg []byte) {
	t.setRingWord(tail, uint32(len(msg)))
	t.setRingWord(tail+4, number)
	at := tail + tpRecordHeader
	for len(msg) >= 4 {
		t.setRingWord(at, binary.NativeEndian.Uint32(msg))
		msg = msg[4:]
		at += 4
	}
	if len(msg) > 0 {
		var last [4]byte
		copy(last[:], msg)
		t.setRingWord(at, binary.NativeEndian.Uint32(last[:]))
	}
}

// readPayload copies the length payload bytes of the record at position (length is at most
// capacity-8: checked by the caller).
func (t *Topic) readPayload(position uint32, length int) []byte {
	out := make([]byte, (length+3)&^3)
	at := position + tpRecordHeader
	for i := 0; i < len(out); i += 4 {
		binary.NativeEndian.PutUint32(out[i:], t.ringWord(at))
		at += 4
	}
	return out[:length:length]
}

// wake wakes one side's sleepers if any announced itself (the waker clears the flag).
func (t *Topic) wake(flag, event int) {
	f := u32(t.data, flag)
	if atomic.LoadUint32(f) != 0 && atomic.SwapUint32(f, 0) != 0 {
		e := u32(t.data, event)
		atomic.AddUint32(e, 1)
		futexWake(e, 1<<31-1)
	}
}

// waitFor is the sleeper protocol of docs/CHANNELS.md (sleepOn); between slices the caller
// re-checks everything, the liveness of laggards included.
func (t *Topic) waitFor(ctx context.Context, flag, event int, what string, stop func() error, ready func() bool) error {
	return sleepOn(ctx, t.data, flag, event, what, stop, ready)
}

// stop: the reason to give up waiting, if any (a finished context, a closed handle).
func (t *Topic) stop(ctx context.Context, what string) error {
	return stopReason(ctx, t.seg, "topic", what)
}

func (t *Topic) limits(ctx context.Context, what string) *lockLimits {
	return limitsFor(ctx, func() error { return t.stop(ctx, what) })
}

// withPublishLock runs f holding the publish lock on a locked OS thread: waiting as limits say,
// or (limits nil) only if the lock is free now (ran false when busy). f learns whether the
// previous holder died holding it. The segment must be entered by the caller.
func (t *Topic) withPublishLock(limits *lockLimits, f func(ownerDied bool) error) (ran bool, err error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	me := currentThread()
	c := cellAt(t.seg.mem, t.seg.info.HeaderSize+tpPublishLock)
	var died bool
	if limits == nil {
		ok, d := c.tryLock(me)
		if !ok {
			return false, nil
		}
		died = d
	} else {
		d, err := c.lock(me, limits)
		if err != nil {
			return false, err
		}
		died = d
	}
	err = f(died)
	_ = c.unlock(me)
	return true, err
}

func (t *Topic) checkPublishable(length int) error {
	if length > int(t.capacity)-tpRecordHeader {
		return newErr(ErrOutOfRange, "a %d-byte message can never fit topic %q: the limit is %d bytes", length, t.seg.name, t.capacity-tpRecordHeader)
	}
	if t.ended() {
		return t.endedErr()
	}
	return nil
}

// used is tail-head, validated.
func (t *Topic) used(head, tail uint32) (uint32, error) {
	used := tail - head
	if used > t.capacity || head%8 != 0 {
		return 0, t.corrupt("head %d, tail %d", head, tail)
	}
	return used, nil
}

// publishLocked is the publish step of docs/TOPIC.md, holding the lock: false when a live
// subscriber holds the room (block mode).
func (t *Topic) publishLocked(msg []byte, ownerDied bool) (bool, error) {
	if ownerDied {
		if err := t.repair(); err != nil {
			return false, err
		}
	}
	// Re-checked under the lock: End sets the flag under it.
	if t.ended() {
		return false, t.endedErr()
	}
	capacity := t.capacity
	need := uint32(recordSize(uint32(len(msg))))
	tail := load32(t.data, tpTail)
	if tail%8 != 0 {
		return false, t.corrupt("tail %d", tail)
	}
	if t.slow == SlowBlock {
		room, err := t.roomFor(tail, need)
		if err != nil || !room {
			return false, err
		}
	}
	// Move the head past the records this one will overwrite (each stays whole until then).
	head := load32(t.data, tpHead)
	used, err := t.used(head, tail)
	if err != nil {
		return false, err
	}
	for capacity-used < need {
		length := t.ringWord(head)
		size := recordSize(length)
		if length > capacity-tpRecordHeader || size > uint64(used) {
			return false, t.corrupt("record length %d at %d", length, head)
		}
		head += uint32(size)
		used -= uint32(size)
	}
	number := load32(t.data, tpPublished)
	store32(t.data, tpHead, head)
	// SYNC POINT (overwrite): readers that see `writing` past their record know it may be
	// overwritten, so they check it after copying. It never moves back: a publisher that died
	// writing may have overwritten bytes up to the `writing` it stored.
	if ahead := load32(t.data, tpWriting) - tail; ahead > capacity || ahead < need {
		store32(t.data, tpWriting, tail+need)
	}
	t.writeRecord(tail, number, msg)
	// SYNC POINT (publish): the record is whole before the tail moves past it.
	store32(t.data, tpTail, tail+need)
	store32(t.data, tpPublished, number+1)
	return true, nil
}

// roomFor (block mode): whether every live subscriber has read the need bytes from tail on,
// removing dead subscribers that hold them.
func (t *Topic) roomFor(tail, need uint32) (bool, error) {
	capacity := t.capacity
	if v := t.minCursor.Load(); v&(1<<32) != 0 {
		if behind := tail - uint32(v); behind <= capacity && capacity-behind >= need {
			return true, nil
		}
	}
	// Each pass that does not return frees a slot: at most slots+1 passes.
	for pass := 0; pass <= t.slots; pass++ {
		slot, behind, found, err := t.slowest(tail)
		if err != nil {
			return false, err
		}
		t.minCursor.Store(1<<32 | uint64(tail-behind))
		if !found || capacity-behind >= need {
			return true, nil
		}
		if !t.reapIfDead(slot) {
			return false, nil
		}
	}
	return false, nil
}

// slowest is the subscribed slot furthest behind tail, and how many bytes behind.
func (t *Topic) slowest(tail uint32) (slot int, behind uint32, found bool, err error) {
	for i := 0; i < t.slots; i++ {
		if load32(t.data, t.slotOff(i, tsState))&1 == 0 {
			continue
		}
		cursor := load32(t.data, t.slotOff(i, tsCursor))
		b := tail - cursor
		if b > t.capacity || cursor%8 != 0 {
			return 0, 0, false, t.corrupt("subscriber %d at %d, tail %d", i, cursor, tail)
		}
		if !found || b > behind {
			slot, behind, found = i, b, true
		}
	}
	return slot, behind, found, nil
}

// hasRoom: whether the slowest subscriber leaves need bytes (a hint, without the lock).
func (t *Topic) hasRoom(need uint32) bool {
	_, behind, found, err := t.slowest(load32(t.data, tpTail))
	return err == nil && (!found || t.capacity-behind >= need)
}

// subscriber is the identity recorded in slot.
func (t *Topic) subscriber(slot int) threadIdentity {
	w := func(field int) uint32 { return load32(t.data, t.slotOff(slot, field)) }
	return threadIdentity{
		tid:       w(tsTid),
		namespace: w(tsNs),
		pid:       w(tsPid),
		start:     uint64(w(tsStartLo)) | uint64(w(tsStartHi))<<32,
	}
}

// reapIfDead frees slot if its thread is dead (the same liveness judgement as for a lock's
// owner); whether it did, or the slot was free meanwhile.
func (t *Topic) reapIfDead(slot int) bool {
	p := u32(t.data, t.slotOff(slot, tsState))
	state := atomic.LoadUint32(p)
	if state&1 == 0 {
		return true
	}
	if threadLiveness(t.subscriber(slot)) != dead {
		return false
	}
	if atomic.CompareAndSwapUint32(p, state, state+1) {
		atomic.AddUint32(u32(t.data, tpReaped), 1)
	}
	return true
}

// repair, after taking the lock over from a dead publisher: `published` must follow the last
// record (the publisher may have died between moving the tail and counting the message).
func (t *Topic) repair() error {
	tail := load32(t.data, tpTail)
	position := load32(t.data, tpHead)
	used, err := t.used(position, tail)
	if err != nil {
		return err
	}
	var last uint32
	found := false
	for used > 0 {
		length := t.ringWord(position)
		size := recordSize(length)
		if length > t.capacity-tpRecordHeader || size > uint64(used) {
			return t.corrupt("record length %d at %d", length, position)
		}
		last, found = t.ringWord(position+4), true
		position += uint32(size)
		used -= uint32(size)
	}
	if found {
		store32(t.data, tpPublished, last+1)
	}
	return nil
}

// Publish publishes msg to every subscriber. In block mode it waits while a live subscriber has
// not read the room it needs (a subscriber whose thread died is removed), until ctx ends
// (ErrTimeout at its deadline, ErrCanceled); in overwrite mode it never waits for room. ErrEnded
// once End was called; ErrOutOfRange for a message longer than Capacity()-8.
func (t *Topic) Publish(ctx context.Context, msg []byte) error {
	if !supported {
		return newErr(ErrUnsupported, "topics need Linux in the Go module")
	}
	if err := t.seg.enter(); err != nil {
		return err
	}
	defer t.seg.exit()
	if err := t.checkPublishable(len(msg)); err != nil {
		return err
	}
	what := "room in topic " + quote(t.seg.name) + " (a subscriber has not read it)"
	lockWhat := "the publish lock of topic " + quote(t.seg.name)
	need := uint32(recordSize(uint32(len(msg))))
	for {
		if err := t.stop(ctx, what); err != nil {
			return err
		}
		published := false
		_, err := t.withPublishLock(t.limits(ctx, lockWhat), func(died bool) error {
			var err error
			published, err = t.publishLocked(msg, died)
			return err
		})
		if err != nil {
			return fixCtx(ctx, err, what)
		}
		if published {
			t.wake(tpSubSleepers, tpSubEvent)
			return nil
		}
		ready := func() bool { return t.ended() || t.hasRoom(need) }
		if err := t.waitFor(ctx, tpPubSleepers, tpPubEvent, what, func() error { return t.stop(ctx, what) }, ready); err != nil {
			return err
		}
	}
}

// TryPublish publishes msg if that can be done now: false when a live subscriber holds the room
// (block mode) or another publisher holds the publish lock at this instant. Never waits.
func (t *Topic) TryPublish(msg []byte) (bool, error) {
	if !supported {
		return false, newErr(ErrUnsupported, "topics need Linux in the Go module")
	}
	if err := t.seg.enter(); err != nil {
		return false, err
	}
	defer t.seg.exit()
	if err := t.checkPublishable(len(msg)); err != nil {
		return false, err
	}
	published := false
	_, err := t.withPublishLock(nil, func(died bool) error {
		var err error
		published, err = t.publishLocked(msg, died)
		return err
	})
	if err != nil {
		return false, err
	}
	if published {
		t.wake(tpSubSleepers, tpSubEvent)
	}
	return published, nil
}

// PublishJSON publishes v encoded as JSON (the json codec: Node subscribers receive the value).
func (t *Topic) PublishJSON(ctx context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return &Error{code: "ERR_SHM_ENCODE", msg: "the json codec cannot encode the value", cause: err}
	}
	return t.Publish(ctx, b)
}

// End ends the stream for every process: publishing fails with ErrEnded from now on,
// subscribers read what is left, then get ErrEnded. Idempotent. The flag is set under the
// publish lock (waited for until ctx ends), so a publish in progress either completes first or
// fails.
func (t *Topic) End(ctx context.Context) error {
	if !supported {
		return newErr(ErrUnsupported, "topics need Linux in the Go module")
	}
	if err := t.seg.enter(); err != nil {
		return err
	}
	defer t.seg.exit()
	what := "the publish lock of topic " + quote(t.seg.name)
	ran, err := t.withPublishLock(t.limits(ctx, what), func(died bool) error {
		var err error
		if died {
			err = t.repair()
		}
		atomic.StoreUint32(u32(t.data, tpEnded), 1)
		return err
	})
	if ran {
		for _, ev := range []int{tpSubEvent, tpPubEvent} {
			e := u32(t.data, ev)
			atomic.AddUint32(e, 1)
			futexWake(e, 1<<31-1)
		}
	}
	return fixCtx(ctx, err, what)
}

// Subscribe subscribes: the subscription receives every message published from now on.
// ErrOutOfRange when the topic has its most subscribers already (TopicOptions.Subscribers).
//
// The subscriber's identity in the topic is the calling goroutine's OS thread, which is how
// publishers in every process tell whether it still runs (a subscription whose thread ended is
// removed by the first publisher it holds back). So Subscribe calls runtime.LockOSThread: the
// goroutine stays on its thread until it calls Close on the subscription. A goroutine that
// returns without closing it ends its thread (the Go runtime does that for a locked goroutine),
// and the subscription is then removed as dead, exactly like one of a killed process.
func (t *Topic) Subscribe() (*Subscription, error) {
	if !supported {
		return nil, newErr(ErrUnsupported, "topics need Linux in the Go module")
	}
	if err := t.seg.enter(); err != nil {
		return nil, err
	}
	defer t.seg.exit()
	runtime.LockOSThread()
	me := currentThread()
	what := "the publish lock of topic " + quote(t.seg.name)
	ctx, cancel := context.WithTimeout(context.Background(), subscribeLockTimeout)
	defer cancel()
	var slot int
	var state, cursor, seq uint32
	_, err := t.withPublishLock(t.limits(ctx, what), func(died bool) error {
		if died {
			if err := t.repair(); err != nil {
				return err
			}
		}
		for pass := 0; pass < 2; pass++ {
			for i := 0; i < t.slots; i++ {
				p := u32(t.data, t.slotOff(i, tsState))
				if atomic.LoadUint32(p)&1 == 1 && !(pass == 1 && t.reapIfDead(i)) {
					continue
				}
				st := atomic.LoadUint32(p)
				if st&1 == 1 {
					continue
				}
				tail := load32(t.data, tpTail)
				published := load32(t.data, tpPublished)
				w := func(field int, v uint32) { store32(t.data, t.slotOff(i, field), v) }
				w(tsCursor, tail)
				w(tsSeq, published)
				w(tsMissed, 0)
				w(tsTid, me.tid)
				w(tsNs, me.namespace)
				w(tsPid, me.pid)
				w(tsStartLo, uint32(me.start))
				w(tsStartHi, uint32(me.start>>32))
				// Publishers see the slot (with the cursor above) once this store lands; they
				// scan under the lock we hold, so none can move the tail meanwhile.
				atomic.StoreUint32(p, st+1)
				slot, state, cursor, seq = i, st+1, tail, published
				return nil
			}
		}
		return newErr(ErrOutOfRange, "topic %q has %d subscribers already, its most (TopicOptions.Subscribers)", t.seg.name, t.slots)
	})
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fixCtx(ctx, err, what)
	}
	s := &Subscription{t: t, slot: slot, state: state, tid: me.tid, cursor: cursor, seq: seq}
	s.pinned.Store(true)
	t.mu.Lock()
	if t.closing {
		t.mu.Unlock()
		t.releaseSlot(slot, state)
		runtime.UnlockOSThread()
		return nil, newErr(ErrClosed, "topic %q was closed while subscribing", t.seg.name)
	}
	if t.subs == nil {
		t.subs = map[*Subscription]struct{}{}
	}
	t.subs[s] = struct{}{}
	t.mu.Unlock()
	return s, nil
}

// releaseSlot frees slot if it still holds the subscription state (a stale or repeated release
// frees nothing), and wakes publishers that may wait for it.
func (t *Topic) releaseSlot(slot int, state uint32) {
	if atomic.CompareAndSwapUint32(u32(t.data, t.slotOff(slot, tsState)), state, state+1) {
		t.wake(tpPubSleepers, tpPubEvent)
	}
}

// SubscriberInfo is one subscriber, as Stats sees it.
type SubscriberInfo struct {
	Slot     int
	PID, TID uint32
	// Alive: whether its thread still runs (unknown, e.g. in another PID namespace, counts as
	// alive). A dead one is removed when it holds a publisher back.
	Alive bool
	// Behind: messages published that it has not read; BehindBytes: ring bytes.
	Behind, BehindBytes uint32
	// Missed: messages it missed by being lapped (overwrite mode), in total.
	Missed uint32
}

// TopicStats is a snapshot of a topic (counters wrap at 2^32).
type TopicStats struct {
	Published       uint32
	Capacity        uint32
	Slow            Slow
	Ended           bool
	Reaped          uint32 // subscribers removed because their thread died
	SubscriberSlots int
	Subscribers     []SubscriberInfo
}

// Stats is a snapshot of the topic's counters and subscribers.
func (t *Topic) Stats() (TopicStats, error) {
	if err := t.seg.enter(); err != nil {
		return TopicStats{}, err
	}
	defer t.seg.exit()
	published := load32(t.data, tpPublished)
	tail := load32(t.data, tpTail)
	st := TopicStats{
		Published:       published,
		Capacity:        t.capacity,
		Slow:            t.slow,
		Ended:           t.ended(),
		Reaped:          load32(t.data, tpReaped),
		SubscriberSlots: t.slots,
		Subscribers:     []SubscriberInfo{},
	}
	for i := 0; i < t.slots; i++ {
		if load32(t.data, t.slotOff(i, tsState))&1 == 0 {
			continue
		}
		id := t.subscriber(i)
		st.Subscribers = append(st.Subscribers, SubscriberInfo{
			Slot:        i,
			PID:         id.pid,
			TID:         id.tid,
			Alive:       threadLiveness(id) != dead,
			Behind:      published - load32(t.data, t.slotOff(i, tsSeq)),
			BehindBytes: tail - load32(t.data, t.slotOff(i, tsCursor)),
			Missed:      load32(t.data, t.slotOff(i, tsMissed)),
		})
	}
	return st, nil
}

// Subscription is one subscriber of a topic: it receives every message published after
// Subscribe, in order. Receives may come from any goroutine (they are served one at a time);
// the subscription's identity is the thread of the goroutine that subscribed (see
// Topic.Subscribe), which Close, called by that goroutine, unpins.
type Subscription struct {
	t      *Topic
	slot   int
	state  uint32
	tid    uint32 // the subscribing thread
	pinned atomic.Bool
	closed atomic.Bool

	mu          sync.Mutex // serialises receives and Close's release of the slot
	cursor, seq uint32
}

// Topic is the topic subscribed to.
func (s *Subscription) Topic() *Topic { return s.t }

// Pending is the number of messages published that this subscriber has not read yet.
func (s *Subscription) Pending() uint32 {
	if s.t.seg.enter() != nil {
		return 0
	}
	defer s.t.seg.exit()
	// The slot's seq word: written only by this subscription (no wait for a receive in progress).
	return load32(s.t.data, tpPublished) - load32(s.t.data, s.t.slotOff(s.slot, tsSeq))
}

// Close unsubscribes (publishers stop waiting for this subscriber) and, called by the goroutine
// that subscribed, unpins it from its thread. Idempotent; a call from another goroutine
// unsubscribes too, and that goroutine's later Close then only unpins it.
func (s *Subscription) Close() error {
	s.unpin()
	if s.closed.Swap(true) {
		return nil
	}
	t := s.t
	if t.seg.enter() == nil {
		// A receive of this subscription asleep wakes now and sees the close.
		futexWake(u32(t.data, tpSubEvent), 1<<31-1)
		t.seg.exit()
	}
	s.mu.Lock() // a receive in progress finishes first: it may still move the cursor
	if t.seg.enter() == nil {
		t.releaseSlot(s.slot, s.state)
		t.seg.exit()
	}
	s.mu.Unlock()
	t.mu.Lock()
	delete(t.subs, s)
	t.mu.Unlock()
	return nil
}

// unpin undoes Subscribe's runtime.LockOSThread, once, and only on the subscribing thread: a
// locked thread runs no other goroutine, so being on it means being the subscribing goroutine.
func (s *Subscription) unpin() {
	if s.pinned.Load() && currentThread().tid == s.tid && s.pinned.CompareAndSwap(true, false) {
		runtime.UnlockOSThread()
	}
}

func (s *Subscription) closedErr() error {
	return newErr(ErrClosed, "this subscription of topic %q is closed", s.t.seg.name)
}

func (s *Subscription) stop(ctx context.Context, what string) error {
	if s.closed.Load() {
		return s.closedErr()
	}
	return s.t.stop(ctx, what)
}

type lookResult int

const (
	lookMessage lookResult = iota
	lookEmpty
	lookEnded
)

// TryRecv returns the next message if one is there now: ok is false when there is none, or
// when another goroutine is receiving on this subscription at this instant. Never waits. Once the topic has ended and this subscriber read everything it returns ErrEnded
// (where Node's tryRecv returns undefined). A subscriber lapped by publishers (overwrite mode)
// gets a *LaggedError (errors.Is(err, ErrLagged)) and continues from the oldest message still
// there with the next call.
func (s *Subscription) TryRecv() (msg []byte, ok bool, err error) {
	if !supported {
		return nil, false, newErr(ErrUnsupported, "topics need Linux in the Go module")
	}
	if err := s.t.seg.enter(); err != nil {
		return nil, false, err
	}
	defer s.t.seg.exit()
	if s.closed.Load() {
		return nil, false, s.closedErr()
	}
	if !s.mu.TryLock() {
		return nil, false, nil
	}
	defer s.mu.Unlock()
	if s.closed.Load() {
		return nil, false, s.closedErr()
	}
	msg, r, err := s.look()
	switch {
	case err != nil:
		return nil, false, err
	case r == lookMessage:
		return msg, true, nil
	case r == lookEnded:
		return nil, false, s.t.endedErr()
	}
	return nil, false, nil
}

// Recv returns the next message, waiting for one until ctx ends (ErrTimeout, ErrCanceled).
// ErrEnded once the topic has ended and this subscriber read everything; a *LaggedError when
// it was lapped (overwrite mode): receiving goes on from the oldest message still there.
// ErrClosed if the subscription or the topic handle is closed meanwhile.
func (s *Subscription) Recv(ctx context.Context) ([]byte, error) {
	if !supported {
		return nil, newErr(ErrUnsupported, "topics need Linux in the Go module")
	}
	t := s.t
	if err := t.seg.enter(); err != nil {
		return nil, err
	}
	defer t.seg.exit()
	s.mu.Lock()
	defer s.mu.Unlock()
	what := "a message in topic " + quote(t.seg.name)
	stop := func() error { return s.stop(ctx, what) }
	for {
		if err := stop(); err != nil {
			return nil, err
		}
		msg, r, err := s.look()
		if err != nil {
			return nil, err
		}
		switch r {
		case lookMessage:
			return msg, nil
		case lookEnded:
			return nil, t.endedErr()
		}
		cursor := s.cursor
		ready := func() bool { return t.ended() || load32(t.data, tpTail) != cursor || s.closed.Load() }
		if err := t.waitFor(ctx, tpSubSleepers, tpSubEvent, what, stop, ready); err != nil {
			return nil, err
		}
	}
}

// RecvJSON receives the next message and decodes it as JSON into v. A message that does not
// decode is consumed and reported as ErrCorrupt (as Node does).
func (s *Subscription) RecvJSON(ctx context.Context, v any) error {
	b, err := s.Recv(ctx)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		e := s.t.corrupt("a message did not decode as json and was skipped")
		e.(*Error).cause = err
		return e
	}
	return nil
}

// look is one look at the ring (docs/TOPIC.md, "Receiving"), with s.mu held and the segment
// entered: the next record, or empty, or the end; a *LaggedError (after moving on to the
// oldest record still there) when publishers lapped this subscriber.
func (s *Subscription) look() ([]byte, lookResult, error) {
	t := s.t
	capacity := t.capacity
	if load32(t.data, t.slotOff(s.slot, tsState)) != s.state {
		// Reaped: the subscribing goroutine's thread ended (it returned without Close) while
		// another goroutine still receives. The slot may be someone else's now: never write it.
		return nil, 0, newErr(ErrClosed, "this subscription of topic %q was removed: the goroutine that subscribed ended (or its thread did) without closing it", t.seg.name)
	}
	// `ended` before `tail`: once it is set nothing more is published, so this tail is final.
	ended := t.ended()
	tail := load32(t.data, tpTail)
	if tail == s.cursor {
		if ended {
			return nil, lookEnded, nil
		}
		return nil, lookEmpty, nil
	}
	if s.cursor%8 != 0 {
		// Only a tail that was damaged when this subscriber started can give that.
		return nil, 0, t.corrupt("subscriber cursor %d is not a record position", s.cursor)
	}
	if behind := tail - s.cursor; behind <= capacity {
		length := t.ringWord(s.cursor)
		number := t.ringWord(s.cursor + 4)
		size := recordSize(length)
		plausible := length <= capacity-tpRecordHeader && size <= uint64(behind) && number == s.seq
		var msg []byte
		if plausible {
			msg = t.readPayload(s.cursor, int(length))
		}
		// SYNC POINT (overwrite check): what was read is whole if no publisher had begun to
		// overwrite it by then (`writing` never moves back). Every load here is sequentially
		// consistent, so this one follows the copy above.
		if load32(t.data, tpWriting)-s.cursor <= capacity {
			if !plausible {
				// Nothing overwrote it, yet it is not the record expected.
				return nil, 0, t.corrupt("record at %d has length %d and number %d, expected number %d", s.cursor, length, number, s.seq)
			}
			s.advance(s.cursor+uint32(size), s.seq+1)
			return msg, lookMessage, nil
		}
	}
	return nil, 0, s.catchUp()
}

// catchUp: lapped; continue from the oldest record still whole and say how many were missed.
func (s *Subscription) catchUp() error {
	t := s.t
	for attempt := 0; attempt < topicCatchUpAttempts; attempt++ {
		// tail before head. A publish that must drop every record first moves the head to the
		// tail, where its own record is not written yet: the number there is stale. Then the
		// record to expect next is number `published`, if the tail did not move meanwhile.
		tail := load32(t.data, tpTail)
		head := load32(t.data, tpHead)
		var number uint32
		if head == tail {
			number = load32(t.data, tpPublished)
			if load32(t.data, tpTail) != tail {
				continue
			}
		} else {
			if head%8 != 0 || tail-head > t.capacity {
				continue
			}
			number = t.ringWord(head + 4)
			if load32(t.data, tpWriting)-head > t.capacity {
				continue // overwritten while read: read both again
			}
		}
		missed := number - s.seq
		p := u32(t.data, t.slotOff(s.slot, tsMissed))
		atomic.StoreUint32(p, atomic.LoadUint32(p)+missed) // only this subscriber writes it
		s.advance(head, number)
		return &LaggedError{Missed: uint64(missed), err: newErr(ErrLagged,
			"this subscriber of topic %q fell behind and missed %d messages; it continues from the oldest one still there", t.seg.name, missed)}
	}
	return t.corrupt("publishers keep lapping a subscriber that tries to catch up")
}

func (s *Subscription) advance(cursor, seq uint32) {
	s.cursor, s.seq = cursor, seq
	t := s.t
	// SYNC POINT (consume): the record was copied before publishers may reuse its bytes.
	store32(t.data, t.slotOff(s.slot, tsCursor), cursor)
	store32(t.data, t.slotOff(s.slot, tsSeq), seq)
	if t.slow == SlowBlock {
		t.wake(tpPubSleepers, tpPubEvent)
	}
}
