//go:build linux

package shmkit

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestHeaderRoundTripAndChecksum(t *testing.T) {
	// A header written into plain memory (8-aligned) reads back identically.
	mem := make([]uint64, 8192/8)
	hdr := unsafeBytes(mem)
	if info, err := inspectHeader(hdr[:minHeaderSize], len(hdr)); info != nil || err != nil {
		t.Fatalf("zero header: %v %v, want not ready", info, err)
	}
	want := Info{HeaderSize: 4096, DataSize: 100, Kind: KindSegment, CreatedUnixMs: 1_700_000_000_000, CreatorPID: 42, Name: "jobs", AutoUnlink: true, Instance: 0x123456789abcdef0, Mode: 0o600}
	initHeader(hdr[:minHeaderSize], &want)
	got, err := inspectHeader(hdr[:minHeaderSize], len(hdr))
	if err != nil || *got != want {
		t.Fatalf("got %+v, %v; want %+v", got, err, want)
	}
	// The checksum, computed independently from docs/LAYOUT.md: FNV-1a 64 of bytes 8..48, then
	// 52..64, then the name, folded.
	raw := append(append(append([]byte{}, hdr[8:48]...), hdr[52:64]...), "jobs"...)
	h := fnv1a64(raw)
	if sum := load32(hdr, offChecksum); sum != uint32(h^h>>32) {
		t.Fatalf("checksum %#x, want %#x", sum, uint32(h^h>>32))
	}
	// FNV-1a 64 reference values.
	if fnv1a64(nil) != 0xcbf29ce484222325 || fnv1a64([]byte("a")) != 0xaf63dc4c8601ec8c {
		t.Fatal("fnv1a64 reference values")
	}

	check := func(what string, code *Error, mappingLen int) {
		t.Helper()
		_, err := inspectHeader(hdr[:minHeaderSize], mappingLen)
		if !errors.Is(err, code) {
			t.Fatalf("%s: %v, want %s", what, err, code.Code())
		}
	}
	check("truncated", ErrCorrupt, 4096+99)
	store32(hdr, offCreatorPID, 7)
	check("checksum", ErrCorrupt, len(hdr))
	initHeader(hdr[:minHeaderSize], &want)
	store32(hdr, offFlags, 3)
	check("flags", ErrCorrupt, len(hdr))
	initHeader(hdr[:minHeaderSize], &want)
	store32(hdr, offKind, 9)
	check("kind", ErrCorrupt, len(hdr))
	initHeader(hdr[:minHeaderSize], &want)
	store32(hdr, offHeaderSize, 5000)
	check("header size", ErrCorrupt, len(hdr))
	initHeader(hdr[:minHeaderSize], &want)
	store32(hdr, offNameLen, 201)
	check("name length", ErrCorrupt, len(hdr))
	store32(hdr, offVersion, 99)
	check("version", ErrVersion, len(hdr))
	store64(hdr, offMagic, 0xdeadbeef)
	check("magic", ErrNotShmkit, len(hdr))
}

func TestNames(t *testing.T) {
	for _, name := range []string{"a", "jobs", "my-app.v2_counter", string(make([]byte, 0))} {
		err := validateName(name)
		if (err == nil) != (name != "") {
			t.Fatalf("%q: %v", name, err)
		}
	}
	long := make([]byte, 201)
	for i := range long {
		long[i] = 'x'
	}
	if err := validateName(string(long)); !errors.Is(err, ErrNameTooLong) {
		t.Fatal(err)
	}
	if err := validateName(string(long[:200])); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"a/b", "../etc", "a b", "é", "a\\b", "a\x00b", "a:b"} {
		if err := validateName(bad); !errors.Is(err, ErrInvalidArg) {
			t.Fatalf("%q: %v", bad, err)
		}
	}
}

func TestSegmentLifecycle(t *testing.T) {
	name := testName(t)
	seg, err := Create(name, 1000, &Options{Mode: 0o640})
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	if _, err := Create(name, 1000, nil); !errors.Is(err, ErrExists) || !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("second create: %v", err)
	}
	st, err := os.Stat(objectPath(name))
	if err != nil || st.Mode().Perm() != 0o640 {
		t.Fatalf("mode: %v %v", st.Mode(), err)
	}
	if len(seg.Data()) != 1000 || seg.Name() != name || seg.Info().Kind != KindSegment || seg.Info().Instance == 0 {
		t.Fatalf("info %+v", seg.Info())
	}
	seg.Data()[999] = 42
	other, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	if other.Data()[999] != 42 || other.Info() != seg.Info() {
		t.Fatalf("open sees %+v", other.Info())
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	if err := other.Close(); err != nil {
		t.Fatal("second close:", err)
	}
	if _, err := other.Mutex().Lock(); !errors.Is(err, ErrClosed) {
		t.Fatalf("lock after close: %v", err)
	}
	// OpenOrCreate: existing, another size, another kind.
	again, created, err := OpenOrCreate(name, 1000, nil)
	if err != nil || created {
		t.Fatalf("openOrCreate: %v %v", created, err)
	}
	again.Close()
	if _, _, err := OpenOrCreate(name, 999, nil); !errors.Is(err, ErrSizeMismatch) {
		t.Fatalf("size mismatch: %v", err)
	}
	if _, err := OpenChannel(name); !errors.Is(err, ErrWrongKind) {
		t.Fatalf("segment opened as channel: %v", err)
	}
	if err := Unlink(name); err != nil {
		t.Fatal(err)
	}
	_, err = Open(name)
	if !errors.Is(err, ErrNotFound) || !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("open after unlink: %v", err)
	}
	if e := (*Error)(nil); !errors.As(err, &e) || e.Code() != "ENOENT" {
		t.Fatalf("code: %v", err)
	}
	if err := Unlink(name); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unlink twice: %v", err)
	}
	if _, err := Create("bad/name", 10, nil); !errors.Is(err, ErrInvalidArg) {
		t.Fatal(err)
	}
	if _, err := Create(name, 0, nil); !errors.Is(err, ErrOutOfRange) {
		t.Fatal(err)
	}
}

func TestOpenRefusesForeignAndDamagedObjects(t *testing.T) {
	name := testName(t)
	// Not shmkit's: too small, or a foreign magic.
	if err := os.WriteFile(objectPath(name), []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(name); !errors.Is(err, ErrNotShmkit) {
		t.Fatalf("small object: %v", err)
	}
	junk := make([]byte, 8192)
	copy(junk, "notshmkt")
	if err := os.WriteFile(objectPath(name), junk, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(name); !errors.Is(err, ErrNotShmkit) {
		t.Fatalf("foreign magic: %v", err)
	}
	// A magic that never comes: not ready after the ready timeout.
	if err := os.WriteFile(objectPath(name), make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := OpenWith(name, &OpenOptions{ReadyTimeout: 100 * time.Millisecond}); !errors.Is(err, ErrNotReady) || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("not ready: %v", err)
	}
	// Another owner: refused by default, accepted when asked.
	_ = Unlink(name)
	seg, err := Create(name, 64, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	if err := os.Chown(objectPath(name), 12345, -1); err != nil {
		t.Skip("cannot chown (not root):", err)
	}
	if _, err := Open(name); !errors.Is(err, ErrForeignOwner) {
		t.Fatalf("foreign owner: %v", err)
	}
	for _, o := range []*OpenOptions{{AnyOwner: true}, {Owners: []uint32{12345}}} {
		s, err := OpenWith(name, o)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	// A damaged header: checksum mismatch.
	store32(seg.mem, offCreatorPID, 1)
	if _, err := OpenWith(name, &OpenOptions{AnyOwner: true}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("damaged: %v", err)
	}
}

func TestAutoUnlinkOnLastClose(t *testing.T) {
	name := testName(t)
	a, err := Create(name, 64, &Options{AutoUnlink: true})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	// Both handles are this process: one slot each.
	if n := countAttachers(a.mem); n != 2 {
		t.Fatalf("%d attachers", n)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(objectPath(name)); err != nil {
		t.Fatal("removed while still open:", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(objectPath(name)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("not removed by the last close:", err)
	}
	// A dead attacher's slot is reaped: fake one with a pid that cannot exist.
	name2 := testName(t)
	c, err := Create(name2, 64, &Options{AutoUnlink: true})
	if err != nil {
		t.Fatal(err)
	}
	writeSlot(c.mem, attachSlots-1, processIdentity{pid: 1 << 30, namespace: pidNamespace(), start: 5})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(objectPath(name2)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("a dead attacher kept it:", err)
	}
}

func countAttachers(hdr []byte) int {
	n := 0
	for slot := 0; slot < attachSlots; slot++ {
		if readSlot(hdr, slot).pid != 0 {
			n++
		}
	}
	return n
}

func TestMutexExcludesGoroutines(t *testing.T) {
	name := testName(t)
	seg, err := Create(name, 4096, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	placed, err := seg.MutexAt(64)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*Mutex{seg.Mutex(), placed} {
		counter := 0 // plain: protected by m only
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for i := 0; i < 3000; i++ {
					if i%3 == 0 {
						for {
							if ok, _ := m.TryLock(); ok {
								break
							}
							runtime.Gosched()
						}
					} else if _, err := m.Lock(); err != nil {
						t.Error(err)
						return
					}
					counter++
					if err := m.Unlock(); err != nil {
						t.Error(err)
						return
					}
				}
			}(g)
		}
		wg.Wait()
		if counter != 12000 {
			t.Fatalf("counter %d", counter)
		}
		st, _ := m.Stats()
		if st.HolderTID != 0 || st.Acquisitions != 12000 {
			t.Fatalf("stats %+v", st)
		}
	}
	// The placed mutex is noted in the header.
	if load32(seg.mem, offPlaced) != 65 {
		t.Fatalf("placed note %d", load32(seg.mem, offPlaced))
	}
	if _, err := seg.MutexAt(4); !errors.Is(err, ErrOutOfRange) {
		t.Fatal("misaligned:", err)
	}
	if _, err := seg.MutexAt(4096 - 56); !errors.Is(err, ErrOutOfRange) {
		t.Fatal("beyond the end:", err)
	}
}

func TestMutexMisuse(t *testing.T) {
	name := testName(t)
	seg, err := Create(name, 64, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	m := seg.Mutex()
	if err := m.Unlock(); !errors.Is(err, ErrNotOwner) || !errors.Is(err, syscall.EPERM) {
		t.Fatalf("unlock unheld: %v", err)
	}
	if died, err := m.Lock(); died || err != nil {
		t.Fatal(died, err)
	}
	if _, err := m.Lock(); !errors.Is(err, ErrDeadlock) {
		t.Fatalf("relock: %v", err)
	}
	if ok, _ := m.TryLock(); ok {
		t.Fatal("trylock of a lock this goroutine holds succeeded")
	}
	// Another goroutine: times out, cannot unlock.
	done := make(chan error)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := m.LockContext(ctx)
		if time.Since(start) < 100*time.Millisecond {
			err = errors.New("returned too early")
		}
		if uerr := m.Unlock(); !errors.Is(uerr, ErrNotOwner) {
			err = errors.Join(err, uerr)
		}
		done <- err
	}()
	if err := <-done; !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("contended lock: %v", err)
	}
	go func() {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(60*time.Millisecond, cancel)
		_, err := m.LockContext(ctx)
		done <- err
	}()
	if err := <-done; !errors.Is(err, ErrCanceled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled lock: %v", err)
	}
	if err := m.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := m.Unlock(); !errors.Is(err, ErrNotOwner) {
		t.Fatal(err)
	}
	st, _ := m.Stats()
	if st.HolderTID != 0 || st.Sleepers != 0 {
		t.Fatalf("%+v", st)
	}
}

// A goroutine that exits holding a lock ends its thread (it is locked to it): the next locker
// takes the lock over and is told.
func TestMutexOwnerDeathInProcess(t *testing.T) {
	name := testName(t)
	seg, err := Create(name, 64, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	m := seg.Mutex()
	done := make(chan struct{})
	onDyingThread(func() { // not the main thread, which the runtime never ends
		defer close(done)
		if _, err := m.Lock(); err != nil {
			t.Error(err)
		}
		// exits holding it: the Go runtime terminates the locked thread
	})
	<-done
	died, err := m.LockContext(ctxFor(t, 5*time.Second))
	if err != nil || !died {
		t.Fatalf("takeover: died=%v err=%v", died, err)
	}
	if err := m.Unlock(); err != nil {
		t.Fatal(err)
	}
	if died, err := m.Lock(); died || err != nil {
		t.Fatal("told twice", died, err)
	}
	m.Unlock()
	if st, _ := m.Stats(); st.OwnerDeaths != 1 {
		t.Fatalf("%+v", st)
	}
}

func TestCloseReleasesHeldLocks(t *testing.T) {
	name := testName(t)
	seg, err := Create(name, 64, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	m := seg.Mutex()
	if _, err := m.Lock(); err != nil {
		t.Fatal(err)
	}
	if err := seg.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Unlock(); !errors.Is(err, ErrNotLocked) {
		t.Fatalf("unlock after close: %v", err)
	}
	if ok, died := other.Mutex().TryLock(); !ok || died {
		t.Fatal("not released by close", ok, died)
	}
	other.Mutex().Unlock()
}

func TestWaitNotify(t *testing.T) {
	name := testName(t)
	seg, err := Create(name, 64, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	if r, err := seg.Wait(8, 1, time.Second); r != WaitNotEqual || err != nil {
		t.Fatal(r, err)
	}
	if r, err := seg.Wait(8, 0, 30*time.Millisecond); r != WaitTimedOut || err != nil {
		t.Fatal(r, err)
	}
	if _, err := seg.Wait(6, 0, 0); !errors.Is(err, ErrOutOfRange) {
		t.Fatal(err)
	}
	if _, err := seg.Wait(64, 0, 0); !errors.Is(err, ErrOutOfRange) {
		t.Fatal(err)
	}
	result := make(chan WaitResult)
	go func() {
		r, _ := seg.Wait(8, 0, 5*time.Second)
		result <- r
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		atomic.StoreUint32(u32(seg.Data(), 8), 1)
		if seg.Notify(8, -1) > 0 || time.Now().After(deadline) {
			break
		}
		atomic.StoreUint32(u32(seg.Data(), 8), 0)
		time.Sleep(time.Millisecond)
	}
	if r := <-result; r != WaitOK {
		t.Fatal(r)
	}
}

func TestErrorCodes(t *testing.T) {
	for s, code := range map[*Error]string{ErrTimeout: "ETIMEDOUT", ErrCorrupt: "ERR_SHM_CORRUPT", ErrEnded: "ERR_SHM_CHANNEL_ENDED", ErrNotFound: "ENOENT", ErrForeignOwner: "ERR_SHM_FOREIGN_OWNER", ErrUnsupported: "ENOSYS", ErrCanceled: "ABORT_ERR"} {
		if s.Code() != code {
			t.Fatalf("%v: %s", s, s.Code())
		}
	}
	e := newErr(ErrTimeout, "x")
	if !errors.Is(e, ErrTimeout) || errors.Is(e, ErrCorrupt) || !errors.Is(e, syscall.ETIMEDOUT) {
		t.Fatal("errors.Is")
	}
	if !errors.Is(ErrNotFound, fs.ErrNotExist) || !errors.Is(ErrUnsupported, errors.ErrUnsupported) {
		t.Fatal("wrapping")
	}
	if c := errnoErr(syscall.EXDEV, "x").Code(); c != "EIO" {
		t.Fatal(c)
	}
}
