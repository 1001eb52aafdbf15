package shmkit

import (
	"sync/atomic"
)

// Channel peers (docs/CHANNELS.md, "Peers"; crates/shmkit-core/src/peers.rs): two role bits per
// attach slot in the control block, set by a mapping on its first send (producer) or receive
// (consumer), cleared by the next holder of the slot when it opens the channel; and a word of
// the roles ever seen. A waiting receiver (sender) set to stop once the other side is gone
// looks at them before each sleep.
const (
	chPeersSeen = 20
	chRoles     = 320
	roleWords   = (attachSlots + 15) / 16

	roleProducer uint32 = 1
	roleConsumer uint32 = 2
)

// IfPeersGone says what a waiting Recv (Send) does once the channel is empty (full), not ended,
// and every producer (consumer) it has seen is gone: dead, or closed.
type IfPeersGone int

const (
	// PeersWait keeps waiting (the default): another may come.
	PeersWait IfPeersGone = iota
	// PeersEnd: Recv returns ErrEnded, as at the end of the stream; Send returns ErrNoConsumers.
	PeersEnd
	// PeersFail: Recv returns ErrNoProducers, Send ErrNoConsumers.
	PeersFail
)

// ChannelPeer is one mapping of a channel that sent into it or received from it.
type ChannelPeer struct {
	PID      uint32
	Producer bool
	Consumer bool
	// Alive is false once its process is gone; a process whose liveness cannot be judged
	// (another PID namespace) counts as alive.
	Alive bool
}

// ChannelPeers is a snapshot of a channel's producers and consumers.
type ChannelPeers struct {
	Peers []ChannelPeer
	// Producers and Consumers count the live ones.
	Producers, Consumers int
	// ProducersGone: a producer was seen once, and none that could still be one is left.
	ProducersGone, ConsumersGone bool
	// Unlisted mappings found the attach table full: their roles are unknown.
	Unlisted uint32
}

// updateRoles applies f to the role word of this mapping's attach slot (a CAS loop: Go 1.22
// has no atomic and/or).
func (ch *Channel) updateRoles(f func(bits, shift uint32) uint32) {
	slot := int(ch.seg.attachment)
	if slot < 0 || slot >= attachSlots {
		return // overflowed: counted as unlisted by everyone
	}
	word := u32(ch.data, chRoles+slot/16*4)
	shift := uint32(slot%16) * 2
	for {
		old := atomic.LoadUint32(word)
		if atomic.CompareAndSwapUint32(word, old, f(old, shift)) {
			return
		}
	}
}

// join clears the role bits a previous holder of this mapping's attach slot left.
func (ch *Channel) join() {
	ch.updateRoles(func(bits, shift uint32) uint32 { return bits &^ (3 << shift) })
}

// announce records this mapping's role the first time it plays it: in shared memory first
// (idempotent), then in the local cache, so that no goroutine skips it while another is between
// the two.
func (ch *Channel) announce(role uint32) {
	if ch.roles.Load()&role != 0 {
		return
	}
	ch.updateRoles(func(bits, shift uint32) uint32 { return bits | role<<shift })
	seen := u32(ch.data, chPeersSeen)
	for {
		old := atomic.LoadUint32(seen)
		if old&role != 0 || atomic.CompareAndSwapUint32(seen, old, old|role) {
			break
		}
	}
	for {
		old := ch.roles.Load()
		if old&role != 0 || ch.roles.CompareAndSwap(old, old|role) {
			return
		}
	}
}

// left runs when the handle closes, its attach slot freed: a producer (consumer) gone wakes
// waiting receivers (senders), so they look at who is left at once.
func (ch *Channel) left() {
	roles := ch.roles.Load()
	for _, side := range []struct {
		role  uint32
		event int
	}{{roleProducer, chRecvEvent}, {roleConsumer, chSendEvent}} {
		if roles&side.role != 0 {
			e := u32(ch.data, side.event)
			atomic.AddUint32(e, 1)
			futexWake(e, 1<<31-1)
		}
	}
}

// Peers reports who produces into and consumes from the channel, with their liveness. A
// mapping counts as a producer from its first send, as a consumer from its first receive.
func (ch *Channel) Peers() (ChannelPeers, error) {
	if err := ch.seg.enter(); err != nil {
		return ChannelPeers{}, err
	}
	defer ch.seg.exit()
	return ch.peers(), nil
}

func (ch *Channel) peers() ChannelPeers {
	var p ChannelPeers
	hdr := ch.seg.mem
	for index := 0; index < roleWords; index++ {
		bits := load32(ch.data, chRoles+index*4)
		if bits == 0 {
			continue
		}
		for slot := index * 16; slot < min(index*16+16, attachSlots); slot++ {
			roles := bits >> (uint32(slot%16) * 2) & 3
			if roles == 0 {
				continue
			}
			who := readSlot(hdr, slot)
			if who.pid == 0 {
				continue
			}
			peer := ChannelPeer{PID: who.pid, Producer: roles&roleProducer != 0, Consumer: roles&roleConsumer != 0, Alive: processLiveness(who) != dead}
			p.Peers = append(p.Peers, peer)
			if peer.Alive && peer.Producer {
				p.Producers++
			}
			if peer.Alive && peer.Consumer {
				p.Consumers++
			}
		}
	}
	seen := load32(ch.data, chPeersSeen)
	p.Unlisted = load32(hdr, offOverflow)
	p.ProducersGone = seen&roleProducer != 0 && p.Unlisted == 0 && p.Producers == 0
	p.ConsumersGone = seen&roleConsumer != 0 && p.Unlisted == 0 && p.Consumers == 0
	return p
}

// SetIfPeersGone sets what this handle's waiting Recv and Send do once the other side is gone
// (noticed before each sleep: within a sleep slice of a death). Not safe to call concurrently
// with Send or Recv on the same handle.
func (ch *Channel) SetIfPeersGone(mode IfPeersGone) { ch.ifPeersGone = mode }

// peersGone: before a sleep, the error that stops a receiver (role producer: its producers are
// gone) or a sender (consumer), if this handle asked for it and stillWaiting() (re-read after
// the peers: a producer publishes before it can be seen dead) says the wait is still needed.
func (ch *Channel) peersGone(role uint32, stillWaiting func() bool) error {
	if ch.ifPeersGone == PeersWait {
		return nil
	}
	p := ch.peers()
	gone := p.ProducersGone
	if role == roleConsumer {
		gone = p.ConsumersGone
	}
	if !gone || !stillWaiting() {
		return nil
	}
	switch {
	case role == roleConsumer:
		return newErr(ErrNoConsumers, "channel %q is full and every consumer is gone", ch.seg.name)
	case ch.ifPeersGone == PeersEnd:
		return newErr(ErrEnded, "channel %q is empty and every producer is gone", ch.seg.name)
	default:
		return newErr(ErrNoProducers, "channel %q is empty and every producer is gone", ch.seg.name)
	}
}
