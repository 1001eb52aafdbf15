//go:build linux

package shmkit

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"
)

// numbered is an 8-byte message: publisher p's i-th.
func numbered(p, i uint32) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint32(b, p)
	binary.LittleEndian.PutUint32(b[4:], i)
	return b
}

func unnumber(b []byte) (p, i uint32, ok bool) {
	if len(b) != 8 {
		return 0, 0, false
	}
	return binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:]), true
}

// Several publishers, several subscribers (on this handle and on other handles): every
// subscriber gets every message, each publisher's in order, and all in the same order.
func TestTopicFanOut(t *testing.T) {
	const publishers, perPublisher, subscribers = 2, 2500, 4
	name := testName(t)
	tp, err := CreateTopic(name, 1024, CodecBytes, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	if tp.Capacity() != 1024 || tp.Slow() != SlowBlock || tp.SubscriberSlots() != DefaultSubscribers || tp.Codec() != CodecBytes {
		t.Fatal(tp.Capacity(), tp.Slow(), tp.SubscriberSlots(), tp.Codec())
	}
	var ready, done sync.WaitGroup
	orders := make([][]uint64, subscribers)
	errs := make(chan error, subscribers+publishers)
	for s := 0; s < subscribers; s++ {
		ready.Add(1)
		done.Add(1)
		go func(s int) {
			defer done.Done()
			h := tp
			if s%2 == 1 { // half on a handle of their own
				var err error
				if h, err = OpenTopic(name); err != nil {
					ready.Done()
					errs <- err
					return
				}
				defer h.Close()
			}
			sub, err := h.Subscribe()
			ready.Done()
			if err != nil {
				errs <- err
				return
			}
			defer sub.Close()
			next := make([]uint32, publishers)
			ctx := ctxFor(t, 60*time.Second)
			for {
				msg, err := sub.Recv(ctx)
				if errors.Is(err, ErrEnded) {
					break
				}
				if err != nil {
					errs <- err
					return
				}
				p, i, ok := unnumber(msg)
				if !ok || p >= publishers || i != next[p] {
					errs <- fmt.Errorf("subscriber %d: message %x after %v", s, msg, next)
					return
				}
				next[p]++
				orders[s] = append(orders[s], uint64(p)<<32|uint64(i))
			}
			for p, n := range next {
				if n != perPublisher {
					errs <- fmt.Errorf("subscriber %d got %d messages of publisher %d", s, n, p)
					return
				}
			}
		}(s)
	}
	ready.Wait()
	var pubs sync.WaitGroup
	for p := 0; p < publishers; p++ {
		pubs.Add(1)
		go func(p uint32) {
			defer pubs.Done()
			ctx := ctxFor(t, 60*time.Second)
			for i := uint32(0); i < perPublisher; i++ {
				if err := tp.Publish(ctx, numbered(p, i)); err != nil {
					errs <- err
					return
				}
			}
		}(uint32(p))
	}
	pubs.Wait()
	if err := tp.End(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	done.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for s := 1; s < subscribers; s++ {
		if !reflect.DeepEqual(orders[s], orders[0]) {
			t.Fatalf("subscriber %d saw another order than subscriber 0", s)
		}
	}
	st, err := tp.Stats()
	if err != nil || st.Published != publishers*perPublisher || !st.Ended || len(st.Subscribers) != 0 {
		t.Fatalf("%+v %v", st, err)
	}
	if err := tp.Publish(context.Background(), []byte("late")); !errors.Is(err, ErrEnded) {
		t.Fatal(err)
	}
}

// A subscriber gets what is published after it subscribed, nothing before.
func TestTopicLateSubscriber(t *testing.T) {
	tp, err := CreateTopic(testName(t), 256, CodecString, &TopicOptions{Subscribers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	early, err := tp.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	for i := 0; i < 5; i++ {
		if err := tp.Publish(ctxFor(t, time.Second), []byte(fmt.Sprint("before ", i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 5; i++ { // the early one reads, so block mode has room
		if m, err := early.Recv(ctxFor(t, time.Second)); err != nil || string(m) != fmt.Sprint("before ", i) {
			t.Fatal(string(m), err)
		}
	}
	late, err := tp.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	if _, err := tp.Subscribe(); !errors.Is(err, ErrOutOfRange) { // two slots, both taken
		t.Fatalf("third subscriber: %v", err)
	}
	if m, ok, err := late.TryRecv(); ok || err != nil {
		t.Fatal(string(m), err)
	}
	for i := 0; i < 3; i++ {
		if err := tp.Publish(ctxFor(t, time.Second), []byte(fmt.Sprint("after ", i))); err != nil {
			t.Fatal(err)
		}
	}
	if late.Pending() != 3 || early.Pending() != 3 {
		t.Fatal(late.Pending(), early.Pending())
	}
	for _, sub := range []*Subscription{late, early} {
		for i := 0; i < 3; i++ {
			if m, err := sub.Recv(ctxFor(t, time.Second)); err != nil || string(m) != fmt.Sprint("after ", i) {
				t.Fatal(string(m), err)
			}
		}
		if _, err := sub.Recv(ctxFor(t, 20*time.Millisecond)); !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("empty: %v", err)
		}
	}
	// Closing frees the slot (idempotently); a closed subscription refuses receives.
	if err := late.Close(); err != nil {
		t.Fatal(err)
	}
	if err := late.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := late.TryRecv(); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	again, err := tp.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	again.Close()
}

// Block mode: a live subscriber that does not read holds publishers back; reading lets them on.
func TestTopicBlockBackpressure(t *testing.T) {
	tp, err := CreateTopic(testName(t), 128, CodecBytes, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	sub, err := tp.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for i := uint32(0); i < 8; i++ { // 8 records of 16 bytes fill the 128-byte ring
		if ok, err := tp.TryPublish(numbered(0, i)); !ok || err != nil {
			t.Fatal(i, ok, err)
		}
	}
	if ok, err := tp.TryPublish(numbered(0, 8)); ok || err != nil {
		t.Fatal("published past a live subscriber:", ok, err)
	}
	if err := tp.Publish(ctxFor(t, 30*time.Millisecond), numbered(0, 8)); !errors.Is(err, ErrTimeout) {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tp.Publish(ctx, numbered(0, 8)); !errors.Is(err, ErrCanceled) || !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if _, err := tp.TryPublish(make([]byte, 121)); !errors.Is(err, ErrOutOfRange) {
		t.Fatal(err)
	}
	// A publisher asleep for room is woken by the subscriber's read.
	published := make(chan error, 1)
	go func() { published <- tp.Publish(ctxFor(t, 5*time.Second), numbered(0, 8)) }()
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	if m, err := sub.Recv(ctxFor(t, time.Second)); err != nil || !reflect.DeepEqual(m, numbered(0, 0)) {
		t.Fatal(m, err)
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	// Woken by the read, not by the end of a sleep slice (a loose bound: the machine may be busy).
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the publisher took %v to notice the room", d)
	}
	t.Logf("the publisher noticed the room in %v", time.Since(start))
	for i := uint32(1); i <= 8; i++ {
		if m, err := sub.Recv(ctxFor(t, time.Second)); err != nil || !reflect.DeepEqual(m, numbered(0, i)) {
			t.Fatal(i, m, err)
		}
	}
	st, _ := tp.Stats()
	if len(st.Subscribers) != 1 || !st.Subscribers[0].Alive || st.Subscribers[0].Behind != 0 || st.Subscribers[0].PID != uint32(os.Getpid()) {
		t.Fatalf("%+v", st)
	}
}

// A subscriber whose OS thread ended (a locked goroutine that returned) is removed by the first
// publisher it holds back, which then proceeds.
func TestTopicDeadSubscriberReaped(t *testing.T) {
	tp, err := CreateTopic(testName(t), 128, CodecBytes, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	live, err := tp.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	subscribed := make(chan *Subscription)
	onDyingThread(func() {
		sub, err := tp.Subscribe()
		if err != nil {
			t.Error(err)
		}
		subscribed <- sub
		// Returns without Close (so still locked to its thread): the runtime ends the thread.
	})
	stale := <-subscribed
	if stale == nil {
		t.FailNow()
	}
	for i := uint32(0); i < 8; i++ {
		if ok, err := tp.TryPublish(numbered(0, i)); !ok || err != nil {
			t.Fatal(i, ok, err)
		}
		if _, err := live.Recv(ctxFor(t, time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, _ := tp.Stats()
		if len(st.Subscribers) == 2 && (!st.Subscribers[0].Alive || !st.Subscribers[1].Alive) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dead subscriber's thread still runs: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	for i := uint32(8); i < 40; i++ {
		if err := tp.Publish(ctxFor(t, 5*time.Second), numbered(0, i)); err != nil {
			t.Fatal(i, err)
		}
		if m, err := live.Recv(ctxFor(t, time.Second)); err != nil || !reflect.DeepEqual(m, numbered(0, i)) {
			t.Fatal(m, err)
		}
	}
	t.Logf("published past the dead subscriber in %v", time.Since(start))
	st, _ := tp.Stats()
	if st.Reaped != 1 || len(st.Subscribers) != 1 || !st.Subscribers[0].Alive || st.Published != 40 {
		t.Fatalf("%+v", st)
	}
	// The reaped subscription, still in another goroutine's hands, never touches its old slot.
	if _, _, err := stale.TryRecv(); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	if err := stale.Close(); err != nil {
		t.Fatal(err)
	}
}

// A subscriber's wait ends when another goroutine closes the subscription or the topic.
func TestTopicCloseWakesReceiver(t *testing.T) {
	tp, err := CreateTopic(testName(t), 128, CodecBytes, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 2)
	subs := make(chan *Subscription, 2)
	for i := 0; i < 2; i++ {
		go func() {
			sub, err := tp.Subscribe()
			if err != nil {
				got <- err
				return
			}
			subs <- sub
			_, err = sub.Recv(context.Background())
			got <- err
			sub.Close() // unpins this goroutine
		}()
	}
	first := <-subs
	<-subs
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	first.Close() // from another goroutine: unsubscribes; its own Close then unpins
	if err := <-got; !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-got; !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v", d)
	}
	if _, err := tp.Subscribe(); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
}

// Overwrite mode: publishers never wait; a lapped subscriber is told exactly how many it missed
// and goes on from the oldest message still there.
func TestTopicOverwriteLag(t *testing.T) {
	tp, err := CreateTopic(testName(t), 128, CodecBytes, &TopicOptions{Slow: SlowOverwrite})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	sub, err := tp.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for i := uint32(0); i < 20; i++ {
		if ok, err := tp.TryPublish(numbered(0, i)); !ok || err != nil {
			t.Fatal(i, ok, err)
		}
	}
	_, _, err = sub.TryRecv()
	var lagged *LaggedError
	if !errors.As(err, &lagged) || lagged.Missed != 12 || !errors.Is(err, ErrLagged) || errors.Is(err, ErrCorrupt) || lagged.Code() != "ERR_SHM_LAGGED" {
		t.Fatalf("%v", err)
	}
	var shmErr *Error
	if !errors.As(err, &shmErr) || shmErr.Code() != "ERR_SHM_LAGGED" {
		t.Fatal(err)
	}
	for i := uint32(12); i < 20; i++ { // the 8 records still in the ring
		if m, err := sub.Recv(ctxFor(t, time.Second)); err != nil || !reflect.DeepEqual(m, numbered(0, i)) {
			t.Fatal(i, m, err)
		}
	}
	if _, ok, err := sub.TryRecv(); ok || err != nil {
		t.Fatal(ok, err)
	}
	// Lapped again while waiting in Recv: the lag comes out of Recv.
	for i := uint32(20); i < 40; i++ {
		if err := tp.Publish(context.Background(), numbered(0, i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sub.Recv(ctxFor(t, time.Second)); !errors.As(err, &lagged) || lagged.Missed != 12 {
		t.Fatal(err)
	}
	if m, err := sub.Recv(ctxFor(t, time.Second)); err != nil || !reflect.DeepEqual(m, numbered(0, 32)) {
		t.Fatal(m, err)
	}
	st, _ := tp.Stats()
	if st.Slow != SlowOverwrite || len(st.Subscribers) != 1 || st.Subscribers[0].Missed != 24 || st.Subscribers[0].Behind != 7 {
		t.Fatalf("%+v", st)
	}
}

// End: publishing fails, subscribers drain what is left, then get ErrEnded (waiting ones wake).
func TestTopicEndAndDrain(t *testing.T) {
	name := testName(t)
	tp, err := CreateTopic(name, 256, CodecJSON, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	sub, err := tp.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	waiting := make(chan error, 1)
	go func() {
		other, err := OpenTopic(name)
		if err != nil {
			waiting <- err
			return
		}
		defer other.Close()
		s, err := other.Subscribe()
		if err != nil {
			waiting <- err
			return
		}
		defer s.Close()
		var v map[string]int
		for {
			if err := s.RecvJSON(context.Background(), &v); err != nil {
				waiting <- err
				return
			}
		}
	}()
	time.Sleep(20 * time.Millisecond)
	for i := 0; i < 3; i++ {
		if err := tp.PublishJSON(ctxFor(t, time.Second), map[string]int{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tp.End(ctxFor(t, time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := tp.End(ctxFor(t, time.Second)); err != nil { // idempotent
		t.Fatal(err)
	}
	if !tp.Ended() {
		t.Fatal("not ended")
	}
	if err := tp.Publish(context.Background(), []byte("1")); !errors.Is(err, ErrEnded) {
		t.Fatal(err)
	}
	if _, err := tp.TryPublish([]byte("1")); !errors.Is(err, ErrEnded) {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		var v map[string]int
		if err := sub.RecvJSON(ctxFor(t, time.Second), &v); err != nil || v["i"] != i {
			t.Fatal(v, err)
		}
	}
	if _, _, err := sub.TryRecv(); !errors.Is(err, ErrEnded) {
		t.Fatal(err)
	}
	if _, err := sub.Recv(context.Background()); !errors.Is(err, ErrEnded) {
		t.Fatal(err)
	}
	select {
	case err := <-waiting:
		if !errors.Is(err, ErrEnded) {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a waiting subscriber never saw the end")
	}
}

func TestTopicOptionsAndOpen(t *testing.T) {
	name := testName(t)
	for _, c := range []struct {
		capacity int
		codec    Codec
		opts     *TopicOptions
		want     *Error
	}{
		{0, CodecBytes, nil, ErrOutOfRange},
		{MaxCapacity + 1, CodecBytes, nil, ErrOutOfRange},
		{64, 9, nil, ErrInvalidArg},
		{64, CodecBytes, &TopicOptions{Slow: 2}, ErrInvalidArg},
		{64, CodecBytes, &TopicOptions{Subscribers: MaxSubscribers + 1}, ErrOutOfRange},
		{64, CodecBytes, &TopicOptions{Subscribers: -1}, ErrOutOfRange},
	} {
		if _, err := CreateTopic(name, c.capacity, c.codec, c.opts); !errors.Is(err, c.want) {
			t.Fatalf("%+v: %v", c, err)
		}
	}
	tp, err := CreateTopic(name, 100, CodecString, &TopicOptions{Subscribers: 3, Slow: SlowOverwrite, Mode: 0o640})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	if tp.Capacity() != 128 || tp.Segment().Info().Kind != KindTopic || tp.Segment().Info().Mode != 0o640 ||
		tp.Segment().Size() != tpTable+3*tpSlotSize+128 || load32(tp.data, tpRingAt) != tpTable+3*tpSlotSize {
		t.Fatal(tp.Capacity(), tp.Segment().Info())
	}
	placed := false
	for slot := 0; slot < placedSlots; slot++ {
		placed = placed || load32(tp.seg.mem, offPlaced+4*slot) == tpPublishLock+1
	}
	if !placed {
		t.Fatal("the publish lock is not noted in the header")
	}
	other, created, err := OpenOrCreateTopic(name, 128, CodecString, &TopicOptions{Subscribers: 3, Slow: SlowOverwrite})
	if err != nil || created || other.Slow() != SlowOverwrite || other.Codec() != CodecString || other.SubscriberSlots() != 3 {
		t.Fatal(created, err)
	}
	other.Close()
	if _, _, err := OpenOrCreateTopic(name, 128, CodecString, nil); !errors.Is(err, ErrSizeMismatch) {
		t.Fatal(err)
	}
	chName := testName(t)
	ch, err := CreateChannel(chName, 64, CodecBytes)
	if err != nil {
		t.Fatal(err)
	}
	ch.Close()
	if _, err := OpenTopic(chName); !errors.Is(err, ErrWrongKind) {
		t.Fatal(err)
	}
	if _, err := OpenChannel(name); !errors.Is(err, ErrWrongKind) {
		t.Fatal(err)
	}
	// Damaged immutable words: an opener refuses them.
	d := tp.data
	for _, off := range []int{tpReady, tpVersion, tpCapacity, tpSlow, tpSlots, tpRingAt} {
		saved := load32(d, off)
		store32(d, off, 0x12345)
		_, err := OpenTopicWith(name, &OpenOptions{ReadyTimeout: 20 * time.Millisecond})
		if !errors.Is(err, ErrNotReady) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("scribbled word %d: %v", off, err)
		}
		store32(d, off, saved)
	}
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tp.Publish(context.Background(), nil); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
}

// A publisher that died holding the publish lock after moving the tail but before counting its
// message: the next publisher takes the lock over and repairs `published` first.
func TestTopicRepairAfterDeadPublisher(t *testing.T) {
	tp, err := CreateTopic(testName(t), 256, CodecBytes, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	sub, err := tp.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for i := uint32(0); i < 3; i++ {
		if err := tp.Publish(ctxFor(t, time.Second), numbered(0, i)); err != nil {
			t.Fatal(err)
		}
	}
	died := make(chan struct{})
	onDyingThread(func() {
		me := currentThread()
		c := cellAt(tp.seg.mem, tp.seg.info.HeaderSize+tpPublishLock)
		if _, err := c.lock(me, &lockLimits{}); err != nil {
			panic(err)
		}
		// The publish step up to the tail, then death: `published` was not counted.
		tail := load32(tp.data, tpTail)
		store32(tp.data, tpWriting, tail+16)
		tp.writeRecord(tail, load32(tp.data, tpPublished), numbered(0, 3))
		store32(tp.data, tpTail, tail+16)
		close(died)
	})
	<-died
	if got := load32(tp.data, tpPublished); got != 3 {
		t.Fatal(got)
	}
	if err := tp.Publish(ctxFor(t, 5*time.Second), numbered(0, 4)); err != nil {
		t.Fatal(err)
	}
	if got := load32(tp.data, tpPublished); got != 5 {
		t.Fatalf("published %d after the repair", got)
	}
	for i := uint32(0); i < 5; i++ {
		if m, err := sub.Recv(ctxFor(t, time.Second)); err != nil || !reflect.DeepEqual(m, numbered(0, i)) {
			t.Fatal(i, m, err)
		}
	}
}

// The conformance vectors of conformance/topic.json (see conformance/README.md and
// crates/shmkit-core/tests/conformance.rs).
func TestTopicConformanceVectors(t *testing.T) {
	text, err := os.ReadFile(filepath.Join(repoRoot(), "conformance", "topic.json"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		LayoutVersion int `json:"layoutVersion"`
		Cases         []struct {
			Name     string `json:"name"`
			Capacity int    `json:"capacity"`
			Slow     string `json:"slow"`
			Start    struct {
				Tail      uint32 `json:"tail"`
				Published uint32 `json:"published"`
			} `json:"start"`
			Tail      uint32            `json:"tail"`
			Writing   uint32            `json:"writing"`
			Head      uint32            `json:"head"`
			Published *uint32           `json:"published"`
			Ring      string            `json:"ring"`
			Expect    []json.RawMessage `json:"expect"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(text, &file); err != nil {
		t.Fatal(err)
	}
	if file.LayoutVersion != topicVersion || len(file.Cases) == 0 {
		t.Fatalf("layout version %d, %d cases", file.LayoutVersion, len(file.Cases))
	}
	for _, c := range file.Cases {
		t.Run(c.Name, func(t *testing.T) {
			slow := SlowBlock
			if c.Slow == "overwrite" {
				slow = SlowOverwrite
			}
			tp, err := CreateTopic(testName(t), c.Capacity, CodecBytes, &TopicOptions{Slow: slow})
			if err != nil {
				t.Fatal(err)
			}
			defer tp.Close()
			d := tp.Segment().Data()
			for _, off := range []int{tpTail, tpWriting, tpHead} {
				store32(d, off, c.Start.Tail)
			}
			store32(d, tpPublished, c.Start.Published)
			sub, err := tp.Subscribe()
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			ring, err := hex.DecodeString(c.Ring)
			if err != nil {
				t.Fatal(err)
			}
			at := int(load32(d, tpRingAt))
			for i := 0; i < len(ring); i += 4 { // through the 32-bit words, as the Rust runner
				var w [4]byte
				copy(w[:], ring[i:])
				store32(d, at+i, binary.LittleEndian.Uint32(w[:]))
			}
			store32(d, tpHead, c.Head)
			store32(d, tpWriting, c.Writing)
			store32(d, tpTail, c.Tail)
			if c.Published != nil {
				store32(d, tpPublished, *c.Published)
			}
			var got []any
			for len(got) < len(c.Expect) {
				msg, ok, err := sub.TryRecv()
				var lagged *LaggedError
				switch {
				case ok:
					got = append(got, map[string]any{"message": hex.EncodeToString(msg)})
				case errors.As(err, &lagged):
					got = append(got, map[string]any{"error": lagged.Code(), "missed": float64(lagged.Missed)})
					continue // a lag is reported, then receiving goes on
				case errors.Is(err, ErrEnded):
					got = append(got, "ended")
				case err != nil:
					got = append(got, err.(*Error).Code())
				default:
					got = append(got, "empty")
				}
				if !ok {
					break
				}
			}
			var want []any
			for _, e := range c.Expect {
				var v any
				if err := json.Unmarshal(e, &v); err != nil {
					t.Fatal(err)
				}
				want = append(want, v)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}
}

// Random words scribbled over a topic's control block (publish lock included), subscriber table
// and ring give errors or nothing, never a panic, an access outside the mapping, or a hang.
func TestTopicScribbledMemory(t *testing.T) {
	for _, slow := range []Slow{SlowBlock, SlowOverwrite} {
		t.Run(slow.String(), func(t *testing.T) {
			tp, err := CreateTopic(testName(t), 256, CodecBytes, &TopicOptions{Slow: slow, Subscribers: 4})
			if err != nil {
				t.Fatal(err)
			}
			defer tp.Close()
			d := tp.data
			pristine := append([]byte{}, d...)
			ringAt := int(load32(d, tpRingAt))
			rng := rand.New(rand.NewSource(int64(slow) + 1))
			outcomes := map[string]int{}
			count := func(err error) {
				var e interface{ Code() string }
				switch {
				case err == nil:
					outcomes["ok"]++
				case errors.As(err, &e):
					outcomes[e.Code()]++
				default:
					t.Fatalf("not a shmkit error: %v", err)
				}
			}
			start := time.Now()
			for round := 0; round < 300; round++ {
				for i := 0; i < len(d); i += 4 {
					store32(d, i, binary.NativeEndian.Uint32(pristine[i:]))
				}
				var subs []*Subscription
				for i := 0; i < 2; i++ {
					sub, err := tp.Subscribe()
					if err != nil {
						t.Fatal(err)
					}
					subs = append(subs, sub)
				}
				for i := 0; i < rng.Intn(12); i++ {
					_, _ = tp.TryPublish(make([]byte, rng.Intn(40)))
				}
				for i := 0; i < 1+rng.Intn(8); i++ {
					var off int
					switch rng.Intn(3) {
					case 0:
						off = tpEnded + 4*rng.Intn((tpTable-tpEnded)/4) // past the immutable words
					case 1:
						off = tpTable + 4*rng.Intn(4*tpSlotSize/4)
					default:
						off = ringAt + 4*rng.Intn(256/4)
					}
					w := rng.Uint32()
					switch rng.Intn(4) {
					case 0:
						w &= 0x1ff // small values: plausible lengths and positions
					case 1:
						w &^= 7
					}
					store32(d, off, w)
				}
				for i := 0; i < 4; i++ {
					for _, sub := range subs {
						_, _, err := sub.TryRecv()
						count(err)
					}
					_, err := tp.TryPublish(make([]byte, rng.Intn(300)))
					count(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Millisecond)
				_, err := subs[0].Recv(ctx)
				count(err)
				count(tp.Publish(ctx, []byte("x")))
				cancel()
				_, err = tp.Stats()
				count(err)
				for _, sub := range subs {
					count(sub.Close())
				}
			}
			for i := 0; i < len(d); i += 4 {
				store32(d, i, binary.NativeEndian.Uint32(pristine[i:]))
			}
			t.Logf("outcomes in %v: %v", time.Since(start), outcomes)
			if outcomes["ERR_SHM_CORRUPT"] == 0 {
				t.Fatal("no damage was detected")
			}
		})
	}
}
