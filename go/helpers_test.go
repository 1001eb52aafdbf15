//go:build linux

package shmkit

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// The helper role: the test binary re-executed with SHMKIT_GO_TEST_HELPER set acts as a peer
// process (a lock holder that is then SIGKILLed).
const helperEnv = "SHMKIT_GO_TEST_HELPER"

func TestMain(m *testing.M) {
	if role := os.Getenv(helperEnv); role != "" {
		os.Exit(runHelper(role))
	}
	os.Exit(m.Run())
}

// runHelper: "hold <name>" opens the segment, locks its header mutex, prints "locked" and sleeps
// until killed.
func runHelper(role string) int {
	f := strings.Fields(role)
	switch f[0] {
	case "hold":
		seg, err := Open(f[1])
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		if _, err := seg.Mutex().Lock(); err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Println("locked")
		time.Sleep(time.Minute)
		return 0
	case "produce", "consume":
		// Opens channel f[1], sends (or receives) one message, prints "done" and sleeps until
		// killed: a producer (consumer) that dies without closing.
		ch, err := OpenChannel(f[1])
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if f[0] == "produce" {
			err = ch.Send(ctx, []byte("from the helper"))
		} else {
			_, err = ch.Recv(ctx)
		}
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Println("done")
		time.Sleep(time.Minute)
		return 0
	}
	fmt.Println("unknown helper role", role)
	return 2
}

var nameCounter atomic.Uint32

// testName is a segment name unique to this process and call; removed at the end of the test.
func testName(t *testing.T) string {
	name := fmt.Sprintf("go-test-%d-%d", os.Getpid(), nameCounter.Add(1))
	_ = Unlink(name)
	t.Cleanup(func() { _ = Unlink(name) })
	return name
}

// repoRoot is the repository root: the parent of this file's directory.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// nodeModule is the path of the built Node package, or "" with the test skipped when node or
// the package is missing (a failure instead with SHMKIT_REQUIRE_NODE=1).
func nodeModule(t *testing.T) string {
	t.Helper()
	index := filepath.Join(repoRoot(), "index.js")
	_, nodeErr := exec.LookPath("node")
	_, indexErr := os.Stat(index)
	if nodeErr != nil || indexErr != nil {
		msg := fmt.Sprintf("skipping: this test needs a Node peer: `node` on PATH (%v) and the built package at %s (%v); set SHMKIT_REQUIRE_NODE=1 to make this a failure", nodeErr, index, indexErr)
		if os.Getenv("SHMKIT_REQUIRE_NODE") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return index
}

// nodeScript prefixes script with `const shmkit = require(<index.js>)` and its arguments.
func nodeCommand(ctx context.Context, t *testing.T, script string, args ...string) *exec.Cmd {
	index := nodeModule(t)
	full := fmt.Sprintf("const shmkit = require(%q);\n%s", index, script)
	cmd := exec.CommandContext(ctx, "node", append([]string{"-e", full, "--"}, args...)...)
	cmd.Stderr = os.Stderr
	return cmd
}

// runNode runs a Node script to completion and returns its standard output.
func runNode(t *testing.T, timeout time.Duration, script string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := nodeCommand(ctx, t, script, args...).Output()
	if err != nil {
		t.Fatalf("node failed: %v\noutput: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// startPeer starts cmd and returns a reader of its standard output, waiting until a line equal
// to ready arrives.
func startPeer(t *testing.T, cmd *exec.Cmd, ready string) *bufio.Reader {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	r := bufio.NewReader(stdout)
	lines := make(chan string, 1)
	go func() {
		line, err := r.ReadString('\n')
		if err != nil && err != io.EOF {
			line = "read error: " + err.Error()
		}
		lines <- strings.TrimSpace(line)
	}()
	select {
	case line := <-lines:
		if line != ready {
			t.Fatalf("peer said %q, not %q", line, ready)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("peer never said %q", ready)
	}
	return r
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// unsafeBytes views 8-aligned Go memory as bytes, for header tests outside a mapping.
func unsafeBytes(words []uint64) []byte {
	// SAFETY: the slice covers exactly the backing array of words (8 bytes each), which stays
	// alive as long as the returned slice references it; uint64 memory is 8-aligned.
	return unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)
}

// onDyingThread runs f in a goroutine locked to an OS thread that ends when f returns. Not the
// main thread: a locked goroutine that exits on it does not end it (the Go runtime parks the
// main thread for good instead), so a goroutine that finds itself there keeps it and starts f
// on another.
func onDyingThread(f func()) {
	var try func()
	try = func() {
		runtime.LockOSThread()
		if syscall.Gettid() == syscall.Getpid() {
			done := make(chan struct{})
			go func() {
				runtime.LockOSThread()
				defer close(done)
				f()
			}()
			<-done
			runtime.UnlockOSThread()
			return
		}
		f() // returns locked: the runtime ends the thread
	}
	go try()
}
