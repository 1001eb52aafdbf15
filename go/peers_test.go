//go:build linux

package shmkit

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// startHelper re-executes the test binary as a helper process of role (see runHelper), waits
// for its "done" and returns it.
func startHelper(t *testing.T, role, name string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), helperEnv+"="+role+" "+name)
	startPeer(t, cmd, "done")
	return cmd
}

func kill(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
}

// A producer process announces itself with its first send and is listed; once it is SIGKILLed,
// a receiver set to PeersFail stops with ErrNoProducers instead of waiting forever, and one set
// to PeersEnd with ErrEnded. A receiver set to PeersWait times out as before.
func TestReceiversStopWhenProducersAreGone(t *testing.T) {
	name := testName(t)
	ch, err := CreateChannel(name, 1024, CodecBytes)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if p, _ := ch.Peers(); p.ProducersGone || len(p.Peers) != 0 {
		t.Fatalf("a new channel has peers: %+v", p)
	}
	producer := startHelper(t, "produce", name)
	p, err := ch.Peers()
	if err != nil {
		t.Fatal(err)
	}
	if p.Producers != 1 || p.ProducersGone || len(p.Peers) != 1 || p.Peers[0].PID != uint32(producer.Process.Pid) || !p.Peers[0].Producer || p.Peers[0].Consumer {
		t.Fatalf("peers with a live producer: %+v", p)
	}
	ch.SetIfPeersGone(PeersFail)
	if msg, err := ch.Recv(ctxFor(t, 5*time.Second)); err != nil || string(msg) != "from the helper" {
		t.Fatalf("recv: %q %v", msg, err)
	}
	kill(t, producer)
	_, err = ch.Recv(ctxFor(t, 10*time.Second))
	if !errors.Is(err, ErrNoProducers) {
		t.Fatalf("recv after the producer died: %v", err)
	}
	p, _ = ch.Peers()
	if !p.ProducersGone || p.Producers != 0 || p.Consumers != 1 {
		t.Fatalf("peers after the death: %+v", p)
	}
	ch.SetIfPeersGone(PeersEnd)
	if _, err := ch.Recv(ctxFor(t, 10*time.Second)); !errors.Is(err, ErrEnded) {
		t.Fatalf("PeersEnd: %v", err)
	}
	ch.SetIfPeersGone(PeersWait)
	if _, err := ch.Recv(ctxFor(t, 300*time.Millisecond)); !errors.Is(err, ErrTimeout) {
		t.Fatalf("PeersWait: %v", err)
	}
}

// A consumer process is SIGKILLed; a sender set to PeersFail, blocked on a full channel, stops
// with ErrNoConsumers.
func TestSendersStopWhenConsumersAreGone(t *testing.T) {
	name := testName(t)
	ch, err := CreateChannel(name, 64, CodecBytes)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if err := ch.Send(ctxFor(t, time.Second), []byte("for the helper")); err != nil {
		t.Fatal(err)
	}
	consumer := startHelper(t, "consume", name)
	ch.SetIfPeersGone(PeersFail)
	for {
		ok, err := ch.TrySend(make([]byte, 12))
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
	}
	kill(t, consumer)
	if err := ch.Send(ctxFor(t, 10*time.Second), []byte("nobody reads")); !errors.Is(err, ErrNoConsumers) {
		t.Fatalf("send with every consumer dead: %v", err)
	}
}

// A Node producer sends one message and exits without closing the channel: Go sees it as a producer (the role
// bits are one layout in every language) and its receiver, set to PeersEnd, ends.
func TestNodeProducerKilledEndsGoReceiver(t *testing.T) {
	name := testName(t)
	ch, err := CreateChannel(name, 1024, CodecString)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	ch.SetIfPeersGone(PeersEnd)
	runNode(t, 20*time.Second, `
const ch = shmkit.Channel.open(process.argv[1])
ch.send('from node')
process.exit(0) // no close(): its attach slot stays, held by a dead process
`, name)
	if msg, err := ch.Recv(ctxFor(t, 5*time.Second)); err != nil || string(msg) != "from node" {
		t.Fatalf("recv: %q %v", msg, err)
	}
	if _, err := ch.Recv(ctxFor(t, 10*time.Second)); !errors.Is(err, ErrEnded) {
		t.Fatalf("recv after the Node producer died: %v", err)
	}
}
