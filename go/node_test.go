//go:build linux

package shmkit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Tests with a real Node peer (the built package at the repository root). Skipped when node or
// the package is missing, unless SHMKIT_REQUIRE_NODE=1.

func TestNodeCreatesGoOpens(t *testing.T) {
	name := testName(t)
	chName := testName(t)
	out := runNode(t, 20*time.Second, `
const [name, chName] = process.argv.slice(1)
const s = shmkit.Segment.create(name, { size: 5000, mode: 0o640 })
new Uint8Array(s.buffer)[4999] = 7
const c = shmkit.Channel.create(chName, { capacity: 100, codec: 'json' })
c.send({ hello: 'go' })
console.log(JSON.stringify({ pid: process.pid }))
s.close(); c.close()
`, name, chName)
	var got struct{ Pid uint32 }
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(out, err)
	}
	seg, err := Open(name) // validates magic, version, sizes, kind, flags, name, checksum
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	info := seg.Info()
	if info.DataSize != 5000 || info.Mode != 0o640 || info.Kind != KindSegment || info.CreatorPID != got.Pid ||
		info.Name != name || info.AutoUnlink || info.Instance == 0 || info.HeaderSize != 4096 {
		t.Fatalf("header from Node: %+v", info)
	}
	if time.Since(time.UnixMilli(int64(info.CreatedUnixMs))) > time.Minute {
		t.Fatalf("created %d", info.CreatedUnixMs)
	}
	if seg.Data()[4999] != 7 {
		t.Fatal("data")
	}
	// Recompute the checksum over the raw header Node wrote, as docs/LAYOUT.md states it.
	hdr := seg.mem[:minHeaderSize]
	raw := append(append(append([]byte{}, hdr[8:48]...), hdr[52:64]...), name...)
	h := fnv1a64(raw)
	if load32(hdr, offChecksum) != uint32(h^h>>32) {
		t.Fatal("checksum")
	}
	ch, err := OpenChannel(chName)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if ch.Codec() != CodecJSON || ch.Capacity() != 128 {
		t.Fatal(ch.Codec(), ch.Capacity())
	}
	var v map[string]string
	if err := ch.RecvJSON(ctxFor(t, time.Second), &v); err != nil || v["hello"] != "go" {
		t.Fatal(v, err)
	}
}

func TestGoCreatesNodeOpens(t *testing.T) {
	name := testName(t)
	seg, err := Create(name, 3000, &Options{Mode: 0o640})
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	seg.Data()[2999] = 9
	placed, _ := seg.MutexAt(128)
	if _, err := placed.Lock(); err != nil {
		t.Fatal(err)
	}
	chName := testName(t)
	ch, err := CreateChannel(chName, 200, CodecString)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if err := ch.Send(ctxFor(t, time.Second), []byte("héllo from go")); err != nil {
		t.Fatal(err)
	}
	out := runNode(t, 20*time.Second, `
const [name, chName] = process.argv.slice(1)
const s = shmkit.Segment.open(name)
const i = shmkit.Segment.inspect(name)
const c = shmkit.Channel.open(chName)
const ci = shmkit.Segment.inspect(chName)
console.log(JSON.stringify({
  size: s.size, last: new Uint8Array(s.buffer)[2999], kind: i.kind, mode: i.requestedMode,
  creatorPid: i.creatorPid, attachers: i.attachers.length,
  placed: i.placedMutexes.map((p) => [p.offset, p.mutex.holderPid ?? 0, p.mutex.holderState ?? '']),
  codec: c.codec, capacity: c.capacity, msg: c.tryRecv(),
  roles: ci.placedMutexes.map((p) => p.role).sort(),
}))
s.close(); c.close()
`, name, chName)
	want := fmt.Sprintf(`{"size":3000,"last":9,"kind":"segment","mode":416,"creatorPid":%d,"attachers":2,"placed":[[128,%d,"alive"]],"codec":"string","capacity":256,"msg":"héllo from go","roles":["receive lock","send lock"]}`, os.Getpid(), os.Getpid())
	if out != want {
		t.Fatalf("Node saw\n%s\nwant\n%s", out, want)
	}
	if err := placed.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// A Go process (this test) and a Node process increment one counter under the same header
// mutex; the count is exact.
func TestCounterGoAndNode(t *testing.T) {
	const perSide = 50000
	name := testName(t)
	seg, err := Create(name, 64, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	cmd := nodeCommand(ctxFor(t, 60*time.Second), t, `
const [name, n] = process.argv.slice(1)
const s = shmkit.Segment.open(name)
const counter = new Uint32Array(s.buffer, 0, 1)
const flags = new Int32Array(s.buffer)
console.log('ready')
while (Atomics.load(flags, 2) === 0) s.wait(8, 0, 100) // the start signal
for (let i = 0; i < Number(n); i++) {
  const g = s.mutex.lock()
  counter[0] = counter[0] + 1 // plain read-modify-write: only the lock makes it exact
  g.unlock()
}
console.log('done')
s.close()
`, name, strconv.Itoa(perSide))
	r := startPeer(t, cmd, "ready")
	m := seg.Mutex()
	data := seg.Data()
	store32(data, 8, 1) // both sides start now
	seg.Notify(8, -1)
	var wg sync.WaitGroup
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perSide/2; i++ {
				if _, err := m.Lock(); err != nil {
					t.Error(err)
					return
				}
				v := uint32(data[0]) | uint32(data[1])<<8 | uint32(data[2])<<16 | uint32(data[3])<<24
				v++
				data[0], data[1], data[2], data[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
				if err := m.Unlock(); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	line, _ := r.ReadString('\n')
	if strings.TrimSpace(line) != "done" {
		t.Fatalf("node: %q", line)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Lock(); err != nil {
		t.Fatal(err)
	}
	got := load32(data, 0)
	m.Unlock()
	if got != 2*perSide {
		t.Fatalf("counter %d, want %d", got, 2*perSide)
	}
	st, _ := m.Stats()
	t.Logf("acquisitions %d, contended %d, sleepers now %d", st.Acquisitions, st.Contended, st.Sleepers)
	if st.Acquisitions != 2*perSide+1 {
		t.Fatalf("acquisitions %d", st.Acquisitions)
	}
}

// A Go holder (a helper process: this test binary) is SIGKILLed; Node takes the lock over and is
// told ownerDied.
func TestGoHolderKilledNodeTakesOver(t *testing.T) {
	name := testName(t)
	seg, err := Create(name, 64, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	nodeModule(t) // skip early without Node
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	holder := exec.Command(exe)
	holder.Env = append(os.Environ(), helperEnv+"=hold "+name)
	startPeer(t, holder, "locked")
	st, _ := seg.Mutex().Stats()
	if st.HolderPID != uint32(holder.Process.Pid) {
		t.Fatalf("holder record %+v, helper pid %d", st, holder.Process.Pid)
	}
	if err := holder.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = holder.Wait()
	out := runNode(t, 20*time.Second, `
const s = shmkit.Segment.open(process.argv[1])
const g = s.mutex.lock({ timeout: 5000 })
console.log(JSON.stringify({ ownerDied: g.ownerDied }))
g.unlock()
const again = s.mutex.lock({ timeout: 5000 })
console.log(JSON.stringify({ ownerDied: again.ownerDied }))
again.unlock()
s.close()
`, name)
	if out != "{\"ownerDied\":true}\n{\"ownerDied\":false}" {
		t.Fatalf("node: %s", out)
	}
	if st, _ := seg.Mutex().Stats(); st.OwnerDeaths != 1 || st.HolderTID != 0 {
		t.Fatalf("%+v", st)
	}
}

// A Node holder is SIGKILLed; Go takes the lock over with ownerDied = true (header mutex and a
// placed one).
func TestNodeHolderKilledGoTakesOver(t *testing.T) {
	name := testName(t)
	seg, err := Create(name, 4096, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	placed, _ := seg.MutexAt(256)
	cmd := nodeCommand(context.Background(), t, `
const s = shmkit.Segment.open(process.argv[1])
s.mutex.lock()
shmkit.Mutex.at(s, 256).lock()
console.log('locked')
setInterval(() => {}, 1000)
`, name)
	startPeer(t, cmd, "locked")
	// While it lives, Go waits and times out.
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if _, err := seg.Mutex().LockContext(ctx); !errors.Is(err, ErrTimeout) {
		t.Fatalf("live Node holder: %v", err)
	}
	if ok, _ := placed.TryLock(); ok {
		t.Fatal("trylock of a live holder's lock")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Not reaped yet on purpose at first: a zombie counts as dead.
	for _, m := range []*Mutex{seg.Mutex(), placed} {
		died, err := m.LockContext(ctxFor(t, 5*time.Second))
		if err != nil || !died {
			t.Fatalf("takeover: died=%v err=%v", died, err)
		}
		if err := m.Unlock(); err != nil {
			t.Fatal(err)
		}
		if died, err := m.Lock(); err != nil || died {
			t.Fatalf("second lock: %v %v", died, err)
		}
		m.Unlock()
	}
	_ = cmd.Wait()
}

// JSON values both ways through channels (a small ring, so it wraps and fills): exactly once
// and in order; then end() on each side.
func TestChannelJSONWithNode(t *testing.T) {
	const n = 3000
	toGo := testName(t)
	toNode := testName(t)
	in, err := CreateChannel(toGo, 256, CodecJSON)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := CreateChannel(toNode, 256, CodecJSON)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := nodeCommand(ctxFor(t, 60*time.Second), t, `
const [toGo, toNode, n] = process.argv.slice(1)
const send = shmkit.Channel.open(toGo)
const recv = shmkit.Channel.open(toNode)
console.log('ready')
;(async () => {
  for (let i = 0; i < Number(n); i++) await send.sendAsync({ i, text: 'from node ' + i, nested: [i, { ok: true }] })
  send.end()
  let expected = 0, bad = 0
  for await (const v of recv) {
    if (v.i !== expected || v.text !== 'from go ' + expected) bad++
    expected++
  }
  console.log(JSON.stringify({ received: expected, bad }))
  send.close(); recv.close()
})().catch((e) => { console.log('error ' + e.stack); process.exit(1) })
`, toGo, toNode, strconv.Itoa(n))
	r := startPeer(t, cmd, "ready")

	type msg struct {
		I      int    `json:"i"`
		Text   string `json:"text"`
		Nested []any  `json:"nested"`
	}
	errs := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			if err := out.SendJSON(ctxFor(t, 10*time.Second), msg{I: i, Text: "from go " + strconv.Itoa(i)}); err != nil {
				errs <- err
				return
			}
		}
		errs <- out.End(ctxFor(t, 5*time.Second))
	}()
	for i := 0; ; i++ {
		var m msg
		err := in.RecvJSON(ctxFor(t, 10*time.Second), &m)
		if errors.Is(err, ErrEnded) {
			if i != n {
				t.Fatalf("ended after %d", i)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.I != i || m.Text != "from node "+strconv.Itoa(i) || len(m.Nested) != 2 {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	line, _ := r.ReadString('\n')
	if strings.TrimSpace(line) != fmt.Sprintf(`{"received":%d,"bad":0}`, n) {
		t.Fatalf("node: %s", line)
	}
	if err := out.Send(context.Background(), []byte("1")); !errors.Is(err, ErrEnded) {
		t.Fatalf("send after end: %v", err)
	}
	if _, _, err := in.TryRecv(); !errors.Is(err, ErrEnded) {
		t.Fatalf("tryRecv after end: %v", err)
	}
	st, _ := in.Stats()
	if st.Sent != n || st.Received != n || !st.Ended || st.BytesInFlight != 0 {
		t.Fatalf("%+v", st)
	}
}
