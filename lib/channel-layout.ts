// The channel's control block and its counters (docs/CHANNELS.md), shared by the Channel class
// and by tools that read a channel without opening it (`shmkit inspect`).

/**
 * Data-area layout of a channel (byte offsets; docs/CHANNELS.md). Producers and consumers each
 * own a cache line of indices, so the two sides do not bounce one line between them.
 */
export const CH = {
  READY: 0, // u32: CHANNEL_MAGIC once the creator wrote this block
  VERSION: 4, // u32: CHANNEL_VERSION
  CAPACITY: 8, // u32: ring bytes, a power of two
  CODEC: 12, // u32: index into CODECS
  CLOSED: 16, // u32: 1 once end() was called (the stream has ended)
  TAIL: 64, // u32: end of the published messages (free-running, wraps at 2^32)
  RECV_WAITERS: 68, // u32: 1 when a consumer may be asleep; cleared by the producer that wakes it
  RECV_EVENT: 72, // u32: bumped to wake consumers (new message, close)
  SENT: 76, // u32: messages published (wraps), bumped under the send lock
  HEAD: 128, // u32: start of the unread messages (free-running)
  SEND_WAITERS: 132, // u32: 1 when a producer may be asleep waiting for room; cleared on wake
  SEND_EVENT: 136, // u32: bumped to wake producers (room freed, close)
  RECEIVED: 140, // u32: messages consumed (wraps), bumped under the receive lock
  SEND_LOCK: 192, // Mutex: serialises producers
  RECV_LOCK: 256, // Mutex: serialises consumers
  RING: 512, // the ring itself
} as const
export const CHANNEL_MAGIC = 0x6c6e6863 // "chnl"
export const CHANNEL_VERSION = 1
export const MIN_CAPACITY = 64
export const MAX_CAPACITY = 2 ** 30
/** A snapshot of a channel's traffic. */
export interface ChannelStats {
  /** Messages sent so far, and received (both wrap at 2^32). */
  sent: number
  received: number
  /** Messages and bytes (with their 4-byte headers) waiting to be read. */
  messagesInFlight: number
  bytesInFlight: number
  capacity: number
  ended: boolean
}

/**
 * Channel statistics from its control block's words (a channel's first data words, as
 * `Segment.inspect(name).dataWords` also reports them).
 */
export function channelStats(words: ArrayLike<number>): ChannelStats {
  const word = (offset: number) => (words[offset / 4] ?? 0) >>> 0
  const sent = word(CH.SENT)
  const received = word(CH.RECEIVED)
  return {
    sent,
    received,
    messagesInFlight: (sent - received) >>> 0,
    bytesInFlight: (word(CH.TAIL) - word(CH.HEAD)) >>> 0,
    capacity: word(CH.CAPACITY),
    ended: word(CH.CLOSED) !== 0,
  }
}
