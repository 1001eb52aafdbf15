//go:build linux

package shmkit

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// The conformance vectors of conformance/channel.json (see conformance/README.md and
// crates/shmkit-core/tests/conformance.rs): create a channel of the case's capacity, write head,
// tail, ended and the ring bytes, then receive without waiting until as many outcomes as
// expected, or one that ends the sequence.
func TestChannelConformanceVectors(t *testing.T) {
	text, err := os.ReadFile(filepath.Join(repoRoot(), "conformance", "channel.json"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		LayoutVersion int `json:"layoutVersion"`
		Cases         []struct {
			Name     string            `json:"name"`
			Capacity int               `json:"capacity"`
			Head     uint32            `json:"head"`
			Tail     uint32            `json:"tail"`
			Ended    uint32            `json:"ended"`
			Ring     string            `json:"ring"`
			Expect   []json.RawMessage `json:"expect"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(text, &file); err != nil {
		t.Fatal(err)
	}
	if file.LayoutVersion != channelVersion || len(file.Cases) == 0 {
		t.Fatalf("layout version %d, %d cases", file.LayoutVersion, len(file.Cases))
	}
	for _, c := range file.Cases {
		t.Run(c.Name, func(t *testing.T) {
			name := testName(t)
			ch, err := CreateChannel(name, c.Capacity, CodecBytes)
			if err != nil {
				t.Fatal(err)
			}
			defer ch.Close()
			ring, err := hex.DecodeString(c.Ring)
			if err != nil {
				t.Fatal(err)
			}
			d := ch.seg.Data()
			for i := 0; i < len(ring); i += 4 { // through the 32-bit words, as the Rust runner
				var w [4]byte
				copy(w[:], ring[i:])
				store32(d, chRing+i, uint32(w[0])|uint32(w[1])<<8|uint32(w[2])<<16|uint32(w[3])<<24)
			}
			store32(d, chHead, c.Head)
			store32(d, chTail, c.Tail)
			store32(d, chEnded, c.Ended)
			var got []any
			for len(got) < len(c.Expect) {
				msg, ok, err := ch.TryRecv()
				switch {
				case ok:
					got = append(got, map[string]any{"message": hex.EncodeToString(msg)})
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

// Random words scribbled over a channel's control block (lock cells included) and ring give
// errors or nothing, never a panic, an access outside the mapping, or a hang.
func TestChannelScribbledMemory(t *testing.T) {
	name := testName(t)
	ch, err := CreateChannel(name, 256, CodecBytes)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	d := ch.seg.Data()
	pristine := append([]byte{}, d...)
	rng := rand.New(rand.NewSource(1))
	outcomes := map[string]int{}
	count := func(err error) {
		if err == nil {
			outcomes["ok"]++
		} else {
			outcomes[err.(*Error).Code()]++
		}
	}
	start := time.Now()
	for round := 0; round < 400; round++ {
		copy(d, pristine)
		// A few valid messages first, then damage.
		for i := 0; i < rng.Intn(6); i++ {
			_, _ = ch.TrySend(make([]byte, rng.Intn(40)))
		}
		for i := 0; i < 1+rng.Intn(8); i++ {
			var off int
			if rng.Intn(2) == 0 {
				off = 16 + 4*rng.Intn((chRing-16)/4) // the control block past the immutable words
			} else {
				off = chRing + 4*rng.Intn(256/4)
			}
			w := rng.Uint32()
			switch rng.Intn(4) {
			case 0:
				w &= 0xff // small values: plausible lengths and indices
			case 1:
				w &^= 3
			}
			store32(d, off, w)
		}
		for i := 0; i < 4; i++ {
			_, _, err := ch.TryRecv()
			count(err)
			_, err = ch.TrySend(make([]byte, rng.Intn(300)))
			count(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		_, err := ch.Recv(ctx)
		count(err)
		err = ch.Send(ctx, []byte("x"))
		count(err)
		cancel()
		for _, e := range []error{err} {
			if e != nil {
				if _, ok := e.(*Error); !ok {
					t.Fatalf("not an *Error: %v", e)
				}
			}
		}
	}
	// Scribbled immutable words: an opener refuses them.
	for _, off := range []int{chReady, chVersion, chCapacity} {
		copy(d, pristine)
		store32(d, off, 0x12345)
		_, err := OpenChannelWith(name, &OpenOptions{ReadyTimeout: 20 * time.Millisecond})
		if !errors.Is(err, ErrNotReady) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("scribbled word %d: %v", off, err)
		}
	}
	copy(d, pristine)
	t.Logf("outcomes in %v: %v", time.Since(start), outcomes)
	if outcomes["ERR_SHM_CORRUPT"] == 0 {
		t.Fatal("no damage was detected")
	}
}

// The peers vectors (conformance/peers.json): role bits over attach slots, read by Peers.
func TestPeersConformanceVectors(t *testing.T) {
	text, err := os.ReadFile(filepath.Join(repoRoot(), "conformance", "peers.json"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Cases []struct {
			Name   string   `json:"name"`
			Slots  []string `json:"slots"`
			Roles  []uint32 `json:"roles"`
			Seen   uint32   `json:"seen"`
			Expect struct {
				Peers         int  `json:"peers"`
				Producers     int  `json:"producers"`
				Consumers     int  `json:"consumers"`
				ProducersGone bool `json:"producersGone"`
				ConsumersGone bool `json:"consumersGone"`
			} `json:"expect"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(text, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Cases) == 0 {
		t.Fatal("no cases")
	}
	for _, c := range file.Cases {
		t.Run(c.Name, func(t *testing.T) {
			name := testName(t)
			ch, err := CreateChannel(name, 64, CodecBytes) // attach slot 0
			if err != nil {
				t.Fatal(err)
			}
			defer ch.Close()
			raw, err := Open(name) // slot 1
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			// Every handle first, then the closes: a handle closed at once would leave its slot
			// to the next one.
			handles := make([]*Channel, len(c.Slots)-2)
			for i := range handles {
				if handles[i], err = OpenChannel(name); err != nil {
					t.Fatal(err)
				}
				defer handles[i].Close()
			}
			for i, h := range handles {
				if c.Slots[i+2] == "free" {
					_ = h.Close()
				}
			}
			d := raw.Data()
			for i, word := range c.Roles {
				store32(d, chRoles+i*4, word)
			}
			store32(d, chPeersSeen, c.Seen)
			p, err := ch.Peers()
			if err != nil {
				t.Fatal(err)
			}
			got := c.Expect
			got.Peers, got.Producers, got.Consumers = len(p.Peers), p.Producers, p.Consumers
			got.ProducersGone, got.ConsumersGone = p.ProducersGone, p.ConsumersGone
			if got != c.Expect {
				t.Fatalf("got %+v, want %+v (%+v)", got, c.Expect, p)
			}
		})
	}
}

// A Node handle may trust its cached copy of the other side's index only while its token is in
// last_sender (last_receiver): every Go send (receive) must overwrite it, with 0.
func TestChannelClearsTheCachingMarks(t *testing.T) {
	ch, err := CreateChannel(testName(t), 256, CodecBytes)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	d := ch.seg.Data()
	store32(d, chLastSender, 0x12345678)
	store32(d, chLastReceiver, 0x12345678)
	if ok, err := ch.TrySend([]byte("hello")); !ok || err != nil {
		t.Fatalf("send: %v %v", ok, err)
	}
	if got := load32(d, chLastSender); got != 0 {
		t.Fatalf("last_sender after a Go send: %#x", got)
	}
	if got := load32(d, chLastReceiver); got != 0x12345678 {
		t.Fatalf("last_receiver after a send: %#x", got)
	}
	if msg, ok, err := ch.TryRecv(); !ok || err != nil || string(msg) != "hello" {
		t.Fatalf("recv: %q %v %v", msg, ok, err)
	}
	if got := load32(d, chLastReceiver); got != 0 {
		t.Fatalf("last_receiver after a Go receive: %#x", got)
	}
}
