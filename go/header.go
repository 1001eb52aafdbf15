package shmkit

import (
	"sync/atomic"
	"unsafe"
)

// The segment header (docs/LAYOUT.md, crates/shmkit-core/src/header.rs): the first page of every
// segment, written once by the creator (magic last) and validated by every opener, read and
// written with atomic loads and stores only.

const (
	magic          = uint64('s') | uint64('h')<<8 | uint64('m')<<16 | uint64('k')<<24 | uint64('i')<<32 | uint64('t')<<40
	layoutVersion  = 2
	minHeaderSize  = 4096
	maxHeaderSize  = 65536
	maxNameLen     = 200
	maxDataSize    = 1 << 44
	defaultMode    = 0o600
	flagAutoUnlink = 1
	knownFlags     = flagAutoUnlink

	offMagic       = 0
	offVersion     = 8
	offHeaderSize  = 12
	offDataSize    = 16
	offKind        = 24
	offFlags       = 28
	offCreatedMs   = 32
	offCreatorPID  = 40
	offNameLen     = 44
	offChecksum    = 48
	offMode        = 52
	offInstance    = 56
	offHeaderMutex = 64
	offAttachLock  = 128
	offDoomed      = 192
	offOverflow    = 196
	offPlaced      = 200
	placedSlots    = 14
	offName        = 256
	offSlots       = 512
	slotSize       = 16
	attachSlots    = (minHeaderSize - offSlots) / slotSize // 224
)

// Kind is what a segment holds (the header's kind field).
type Kind uint32

// The kinds of docs/LAYOUT.md. This package opens segments, channels and topics; maps (kind 3,
// SharedMap) are not implemented in Go: Open maps them as plain segments and Info reports them,
// OpenChannel and OpenTopic refuse them with ErrWrongKind.
const (
	KindSegment Kind = 1
	KindChannel Kind = 2
	KindMap     Kind = 3
	KindTopic   Kind = 4
)

func (k Kind) String() string {
	switch k {
	case KindSegment:
		return "segment"
	case KindChannel:
		return "channel"
	case KindMap:
		return "map"
	case KindTopic:
		return "topic"
	}
	return "unknown"
}

// Info is the validated, immutable content of a segment header.
type Info struct {
	HeaderSize    int
	DataSize      int
	Kind          Kind
	CreatedUnixMs uint64
	CreatorPID    uint32
	Name          string
	AutoUnlink    bool
	// Instance is random per creation: two segments created one after the other under one name
	// have different instances.
	Instance uint64
	// Mode is the permission bits asked for at creation.
	Mode uint32
}

// u32 returns the 32-bit word at offset off of mem as a pointer for sync/atomic, checking that
// the whole word lies inside mem and is 4-aligned (in the mapping: every mapping and every
// offset this package computes is aligned, but the check costs nothing and forbids any access
// outside the mapping whatever the offset).
func u32(mem []byte, off int) *uint32 {
	if off < 0 || off%4 != 0 || off+4 > len(mem) {
		panic("shmkit: internal error: word outside the mapping")
	}
	// SAFETY: &mem[off] points at 4 bytes inside a mapping that stays mapped while the caller
	// uses it (Segment keeps it mapped until no operation is in flight); the address is 4-aligned
	// because mappings are page-aligned and off%4 == 0. The bytes are shared memory: they are only
	// ever accessed through sync/atomic, so other processes' concurrent writes are no data race
	// for this process.
	return (*uint32)(unsafe.Pointer(&mem[off]))
}

// u64 is u32 for 64-bit words (8-aligned, as 64-bit atomics need on every architecture).
func u64(mem []byte, off int) *uint64 {
	if off < 0 || off%8 != 0 || off+8 > len(mem) {
		panic("shmkit: internal error: word outside the mapping")
	}
	// SAFETY: as in u32, with 8 bytes and 8-byte alignment (page-aligned base, off%8 == 0).
	return (*uint64)(unsafe.Pointer(&mem[off]))
}

func load32(mem []byte, off int) uint32     { return atomic.LoadUint32(u32(mem, off)) }
func store32(mem []byte, off int, v uint32) { atomic.StoreUint32(u32(mem, off), v) }
func load64(mem []byte, off int) uint64     { return atomic.LoadUint64(u64(mem, off)) }
func store64(mem []byte, off int, v uint64) { atomic.StoreUint64(u64(mem, off), v) }

// fnv1a64 is FNV-1a, 64 bits (crates/shmkit-core/src/name.rs).
func fnv1a64(b []byte) uint64 {
	h := uint64(0xcbf29ce484222325)
	for _, c := range b {
		h ^= uint64(c)
		h *= 0x100000001b3
	}
	return h
}

// headerNameBytes reads n name bytes at offName through atomic 32-bit loads.
func headerNameBytes(hdr []byte, n int) []byte {
	out := make([]byte, n)
	for i := 0; i < n; i++ {
		w := load32(hdr, offName+i&^3)
		out[i] = byte(w >> (8 * uint(i&3)))
	}
	return out
}

// headerChecksum is FNV-1a 64 of the words at 8..48, then 52..64, then the name, folded to 32
// bits (h ^ h>>32), exactly as header.rs computes it: every word is read atomically and
// serialised little-endian.
func headerChecksum(hdr []byte, name []byte) uint32 {
	b := make([]byte, 0, 40+12+len(name))
	put := func(w uint32) { b = append(b, byte(w), byte(w>>8), byte(w>>16), byte(w>>24)) }
	for off := offVersion; off < offChecksum; off += 4 {
		put(load32(hdr, off))
	}
	for _, off := range []int{offMode, offInstance, offInstance + 4} {
		put(load32(hdr, off))
	}
	b = append(b, name...)
	h := fnv1a64(b)
	return uint32(h ^ h>>32)
}

// initHeader writes a fresh header into zeroed memory; the magic goes last (an atomic store,
// sequentially consistent and so also a release), publishing everything before it.
func initHeader(hdr []byte, info *Info) {
	store32(hdr, offVersion, layoutVersion)
	store32(hdr, offHeaderSize, uint32(info.HeaderSize))
	store64(hdr, offDataSize, uint64(info.DataSize))
	store32(hdr, offKind, uint32(info.Kind))
	flags := uint32(0)
	if info.AutoUnlink {
		flags = flagAutoUnlink
	}
	store32(hdr, offFlags, flags)
	store64(hdr, offCreatedMs, info.CreatedUnixMs)
	store32(hdr, offCreatorPID, info.CreatorPID)
	store32(hdr, offNameLen, uint32(len(info.Name)))
	for i := 0; i < len(info.Name); i += 4 {
		var w uint32
		for j := 0; j < 4 && i+j < len(info.Name); j++ {
			w |= uint32(info.Name[i+j]) << (8 * uint(j))
		}
		store32(hdr, offName+i, w)
	}
	store64(hdr, offInstance, info.Instance)
	store32(hdr, offMode, info.Mode)
	store32(hdr, offChecksum, headerChecksum(hdr, []byte(info.Name)))
	// SYNC POINT (creator): every store above happens before this one; an opener that loads
	// the magic sees them.
	store64(hdr, offMagic, magic)
}

// inspectHeader validates the header in hdr (the first minHeaderSize bytes of a mapping of
// mappingLen bytes). It returns (nil, nil) while the magic is still 0 (not ready).
func inspectHeader(hdr []byte, mappingLen int) (*Info, error) {
	m := load64(hdr, offMagic)
	if m == 0 {
		return nil, nil
	}
	if m != magic {
		return nil, newErr(ErrNotShmkit, "this shared-memory object was not created by shmkit (wrong magic number)")
	}
	if v := load32(hdr, offVersion); v != layoutVersion {
		return nil, newErr(ErrVersion, "the segment uses shmkit layout version %d; this shmkit reads version %d: use matching shmkit versions in every process", v, layoutVersion)
	}
	headerSize := int(load32(hdr, offHeaderSize))
	if headerSize < minHeaderSize || headerSize > maxHeaderSize || headerSize%minHeaderSize != 0 {
		return nil, newErr(ErrCorrupt, "damaged header: impossible header size %d", headerSize)
	}
	dataSize := load64(hdr, offDataSize)
	if dataSize == 0 || dataSize > uint64(mappingLen) || uint64(headerSize) > uint64(mappingLen)-dataSize {
		return nil, newErr(ErrCorrupt, "damaged header: data size %d does not fit the %d-byte object (truncated?)", dataSize, mappingLen)
	}
	kind := Kind(load32(hdr, offKind))
	if kind < KindSegment || kind > KindTopic {
		return nil, newErr(ErrCorrupt, "damaged header: unknown segment kind %d", uint32(kind))
	}
	flags := load32(hdr, offFlags)
	if flags&^knownFlags != 0 {
		return nil, newErr(ErrCorrupt, "damaged header: unknown flags %#x", flags)
	}
	nameLen := int(load32(hdr, offNameLen))
	if nameLen == 0 || nameLen > maxNameLen {
		return nil, newErr(ErrCorrupt, "damaged header: impossible name length %d", nameLen)
	}
	name := headerNameBytes(hdr, nameLen)
	if load32(hdr, offChecksum) != headerChecksum(hdr, name) {
		return nil, newErr(ErrCorrupt, "damaged header: checksum mismatch")
	}
	return &Info{
		HeaderSize:    headerSize,
		DataSize:      int(dataSize),
		Kind:          kind,
		CreatedUnixMs: load64(hdr, offCreatedMs),
		CreatorPID:    load32(hdr, offCreatorPID),
		Name:          string(name),
		AutoUnlink:    flags&flagAutoUnlink != 0,
		Instance:      load64(hdr, offInstance),
		Mode:          load32(hdr, offMode) & 0o7777,
	}, nil
}

// validateName checks name against the portable rule of name.rs: 1 to 200 bytes of
// A-Z a-z 0-9 . _ -
func validateName(name string) error {
	if name == "" {
		return newErr(ErrInvalidArg, "the segment name is empty: use 1 to 200 characters from A-Z a-z 0-9 . _ -")
	}
	if len(name) > maxNameLen {
		return newErr(ErrNameTooLong, "the segment name is %d bytes long; the limit is %d", len(name), maxNameLen)
	}
	for _, c := range []byte(name) {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return newErr(ErrInvalidArg, "the segment name %q contains %q; use only A-Z a-z 0-9 . _ - (no slashes)", name, c)
		}
	}
	return nil
}
