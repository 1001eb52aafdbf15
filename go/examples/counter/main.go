// The classic example, as examples/counter.js in Node: process A increments a shared counter
// under the segment's mutex, process B reads it under the same mutex until A is done; the final
// count is exact. With -node, a Node.js process increments the same counter at the same time
// under the same lock.
//
//	go run ./examples/counter                 # A and B are Go processes
//	go run ./examples/counter -n 200000 -node # plus a Node incrementer (needs node and shmkit)
//
// The layout is examples/counter.js's: a Float64 counter at byte 0 of the data area, guarded by
// the header mutex, and an Int32 at byte 8 counting the incrementers that finished.
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	shmkit "github.com/shmkit/shmkit/go"
	"github.com/shmkit/shmkit/go/examples/internal/nodepeer"
)

const (
	counterOff = 0 // Float64, under the mutex
	doneOff    = 8 // Int32: incrementers finished
)

func main() {
	n := flag.Int("n", 100000, "increments per incrementer")
	withNode := flag.Bool("node", false, "also run a Node.js incrementer")
	module := flag.String("shmkit", "", "what the Node peer requires (default: the repository's index.js, else 'shmkit')")
	flag.Parse()
	var err error
	switch flag.Arg(0) {
	case "incrementer":
		err = incrementer(flag.Arg(1), *n)
	case "reader":
		var incrementers int
		incrementers, err = strconv.Atoi(flag.Arg(2))
		if err == nil {
			err = reader(flag.Arg(1), int32(incrementers))
		}
	default:
		err = run(*n, *withNode, nodepeer.Module(*module))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// run creates the segment and starts the processes.
func run(n int, withNode bool, module string) error {
	name := fmt.Sprintf("go-counter-%d", os.Getpid())
	seg, err := shmkit.Create(name, 64, &shmkit.Options{AutoUnlink: true})
	if err != nil {
		return err
	}
	defer seg.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	incrementers := 1
	if withNode {
		incrementers = 2
	}
	nArg := "-n=" + strconv.Itoa(n)
	procs := []*exec.Cmd{
		exec.Command(self, nArg, "reader", name, strconv.Itoa(incrementers)),
		exec.Command(self, nArg, "incrementer", name),
	}
	if withNode {
		procs = append(procs, nodepeer.Command(module, nodeIncrementer, name, strconv.Itoa(n)))
	}
	started := time.Now()
	for _, p := range procs {
		if p.Stdout == nil {
			p.Stdout, p.Stderr = os.Stdout, os.Stderr
		}
		if err := p.Start(); err != nil {
			return err
		}
	}
	for _, p := range procs {
		if err := p.Wait(); err != nil {
			return fmt.Errorf("%s: %w", p.Args[0], err)
		}
	}
	m := seg.Mutex()
	if _, err := m.Lock(); err != nil {
		return err
	}
	final := math.Float64frombits(binary.LittleEndian.Uint64(seg.Data()[counterOff:]))
	if err := m.Unlock(); err != nil {
		return err
	}
	want := float64(n * incrementers)
	fmt.Printf("final count %.0f (expected %.0f) in %v\n", final, want, time.Since(started).Round(time.Millisecond))
	if final != want {
		return fmt.Errorf("count mismatch: %.0f != %.0f", final, want)
	}
	return nil
}

// nodeIncrementer is the Node peer: the same loop as examples/counter.js's incrementer.
const nodeIncrementer = `
const [name, n] = process.argv.slice(1)
const seg = shmkit.Segment.open(name)
const counter = new Float64Array(seg.buffer, 0, 1)
const started = process.hrtime.bigint()
for (let i = 0; i < Number(n); i++) {
  const guard = seg.mutex.lock()
  counter[0] += 1
  guard.unlock()
}
Atomics.add(new Int32Array(seg.buffer), 2, 1)
seg.notify(8)
console.log('node incrementer: ' + n + ' increments in ' + Number(process.hrtime.bigint() - started) / 1e6 + ' ms')
seg.close()
`

// doneWord is the Int32 at doneOff, for atomic access.
func doneWord(seg *shmkit.Segment) *int32 {
	// SAFETY: doneOff+4 <= 64 bytes of the data area, which is page-aligned; the word is only
	// accessed atomically, here and by the other processes.
	return (*int32)(unsafe.Pointer(&seg.Data()[doneOff]))
}

// incrementer is process A: counter += 1 under the lock, n times.
func incrementer(name string, n int) error {
	seg, err := shmkit.Open(name)
	if err != nil {
		return err
	}
	defer seg.Close()
	m := seg.Mutex()
	data := seg.Data()
	started := time.Now()
	for i := 0; i < n; i++ {
		if _, err := m.Lock(); err != nil {
			return err
		}
		v := math.Float64frombits(binary.LittleEndian.Uint64(data[counterOff:]))
		binary.LittleEndian.PutUint64(data[counterOff:], math.Float64bits(v+1))
		if err := m.Unlock(); err != nil {
			return err
		}
	}
	atomic.AddInt32(doneWord(seg), 1)
	seg.Notify(doneOff, -1)
	fmt.Printf("go incrementer: %d increments in %v\n", n, time.Since(started).Round(time.Millisecond))
	return nil
}

// reader is process B: reads the counter under the same lock until every incrementer is done;
// the values it sees never go down.
func reader(name string, incrementers int32) error {
	seg, err := shmkit.Open(name)
	if err != nil {
		return err
	}
	defer seg.Close()
	m := seg.Mutex()
	reads, last := 0, -1.0
	for {
		done := atomic.LoadInt32(doneWord(seg))
		if done < incrementers {
			// Sleep up to 20 ms, or until an incrementer notifies that it is done.
			if _, err := seg.Wait(doneOff, uint32(done), 20*time.Millisecond); err != nil {
				return err
			}
		}
		if _, err := m.Lock(); err != nil {
			return err
		}
		seen := math.Float64frombits(binary.LittleEndian.Uint64(seg.Data()[counterOff:]))
		if err := m.Unlock(); err != nil {
			return err
		}
		reads++
		if seen < last {
			return fmt.Errorf("the counter went down: %v after %v", seen, last)
		}
		last = seen
		if done >= incrementers {
			fmt.Printf("reader: %d reads, last saw %.0f\n", reads, seen)
			return nil
		}
	}
}
