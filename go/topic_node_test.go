//go:build linux

package shmkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Topics with a real Node peer (the built package at the repository root). Skipped when node or
// the package is missing, unless SHMKIT_REQUIRE_NODE=1.

// Go publishes 2000 JSON messages through a small block-mode ring; a Node subscriber (which
// reads the ring in JavaScript and wakes the Go publisher through pub_event) gets them all, in
// order, then the end.
func TestTopicGoPublishesNodeSubscribes(t *testing.T) {
	const n = 2000
	name := testName(t)
	tp, err := CreateTopic(name, 512, CodecJSON, &TopicOptions{Subscribers: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	cmd := nodeCommand(ctxFor(t, 60*time.Second), t, `
const [name] = process.argv.slice(1)
const t = shmkit.Topic.open(name)
const s = t.subscribe()
console.log('ready')
let expected = 0, bad = 0
for (;;) {
  let v
  try { v = s.recv({ timeout: 20000 }) } catch (e) { if (e.code === 'ERR_SHM_CHANNEL_ENDED') break; throw e }
  if (v.i !== expected || v.text !== 'from go ' + expected) bad++
  expected++
}
const i = shmkit.Segment.inspect(name)
console.log(JSON.stringify({ received: expected, bad, codec: t.codec, capacity: t.capacity, slow: t.slow,
  kind: i.kind, placed: i.placedMutexes.map((p) => p.offset), published: i.topic && i.topic.published }))
s.close(); t.close()
`, name)
	r := startPeer(t, cmd, "ready")
	st, err := tp.Stats()
	if err != nil || len(st.Subscribers) != 1 || st.Subscribers[0].PID != uint32(cmd.Process.Pid) || !st.Subscribers[0].Alive {
		t.Fatalf("the Node subscriber in Go's stats: %+v %v", st, err)
	}
	ctx := ctxFor(t, 30*time.Second)
	for i := 0; i < n; i++ {
		if err := tp.PublishJSON(ctx, map[string]any{"i": i, "text": "from go " + strconv.Itoa(i)}); err != nil {
			t.Fatal(i, err)
		}
	}
	if err := tp.End(ctx); err != nil {
		t.Fatal(err)
	}
	line, _ := r.ReadString('\n')
	want := fmt.Sprintf(`{"received":%d,"bad":0,"codec":"json","capacity":512,"slow":"block","kind":"topic","placed":[%d],"published":%d}`, n, tpPublishLock, n)
	if strings.TrimSpace(line) != want {
		t.Fatalf("node: %s", line)
	}
}

// Node creates a topic and publishes 2000 messages once a subscriber is there; a Go subscriber
// (on a topic whose header and control block Node wrote) gets them all, in order, then the end.
func TestTopicNodePublishesGoSubscribes(t *testing.T) {
	const n = 2000
	name := testName(t)
	cmd := nodeCommand(ctxFor(t, 60*time.Second), t, `
const [name, n] = process.argv.slice(1)
const t = shmkit.Topic.create(name, { capacity: 256, codec: 'json', subscribers: 8 })
console.log('created')
const nap = new Int32Array(new SharedArrayBuffer(4))
const until = Date.now() + 20000
while (t.stats().subscribers.length === 0) {
  if (Date.now() > until) throw new Error('no subscriber came')
  Atomics.wait(nap, 0, 0, 2)
}
for (let i = 0; i < Number(n); i++) t.publish({ i, text: 'from node ' + i }, { timeout: 20000 })
t.end()
console.log(JSON.stringify({ published: t.stats().published }))
t.close()
`, name, strconv.Itoa(n))
	r := startPeer(t, cmd, "created")
	tp, err := OpenTopic(name)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	if tp.Capacity() != 256 || tp.Codec() != CodecJSON || tp.SubscriberSlots() != 8 || tp.Slow() != SlowBlock {
		t.Fatal(tp.Capacity(), tp.Codec(), tp.SubscriberSlots(), tp.Slow())
	}
	if info := tp.Segment().Info(); info.CreatorPID != uint32(cmd.Process.Pid) || info.Kind != KindTopic {
		t.Fatalf("%+v", info)
	}
	sub, err := tp.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	type msg struct {
		I    int    `json:"i"`
		Text string `json:"text"`
	}
	ctx := ctxFor(t, 30*time.Second)
	for i := 0; ; i++ {
		var m msg
		err := sub.RecvJSON(ctx, &m)
		if errors.Is(err, ErrEnded) {
			if i != n {
				t.Fatalf("ended after %d", i)
			}
			break
		}
		if err != nil {
			t.Fatal(i, err)
		}
		if m.I != i || m.Text != "from node "+strconv.Itoa(i) {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
	line, _ := r.ReadString('\n')
	if strings.TrimSpace(line) != fmt.Sprintf(`{"published":%d}`, n) {
		t.Fatalf("node: %s", line)
	}
	st, _ := tp.Stats()
	if len(st.Subscribers) != 1 || st.Subscribers[0].PID != uint32(os.Getpid()) || st.Subscribers[0].Behind != 0 {
		t.Fatalf("%+v", st)
	}
}

// A Node subscriber killed with SIGKILL holds a Go publisher back (block mode) only until the
// publisher judges its thread dead and removes it.
func TestTopicKilledNodeSubscriberReaped(t *testing.T) {
	name := testName(t)
	tp, err := CreateTopic(name, 128, CodecBytes, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	cmd := nodeCommand(ctxFor(t, 60*time.Second), t, `
const [name] = process.argv.slice(1)
const s = shmkit.Topic.open(name).subscribe()
console.log('ready')
setInterval(() => {}, 1000)
`, name)
	startPeer(t, cmd, "ready")
	for i := uint32(0); i < 8; i++ {
		if ok, err := tp.TryPublish(numbered(0, i)); !ok || err != nil {
			t.Fatal(i, ok, err)
		}
	}
	if ok, err := tp.TryPublish(numbered(0, 8)); ok || err != nil {
		t.Fatal("published past a live Node subscriber:", ok, err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	start := time.Now()
	if err := tp.Publish(ctxFor(t, 5*time.Second), numbered(0, 8)); err != nil {
		t.Fatal(err)
	}
	t.Logf("published past the killed subscriber in %v", time.Since(start))
	if st, _ := tp.Stats(); st.Reaped != 1 || len(st.Subscribers) != 0 || st.Published != 9 {
		t.Fatalf("%+v", st)
	}
	if err := tp.Publish(context.Background(), numbered(0, 9)); err != nil {
		t.Fatal(err)
	}
}
