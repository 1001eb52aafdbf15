// What introspection reports (`Segment.inspect`, `mutex.stats()`, `channel.stats()`, the
// `shmkit` command), as public types with literal unions, made from the binding's plain objects.

import type { Kind } from './handle'
import { CONTRACT, type NativeInspection, type NativeMutexReport } from './native'

/** Whether a process or thread still runs: `'unknown'` where the OS cannot tell (treated as alive). */
export type Liveness = 'alive' | 'dead' | 'unknown'

/** A snapshot of a mutex (every value may change right after). */
export interface MutexStats {
  locked: boolean
  /** Thread id of the holder (0 when unlocked). */
  holderTid: number
  /** Process id of the holder, when it recorded itself. */
  holderPid?: number
  /** Whether the holder still runs; absent when unlocked. */
  holderState?: Liveness
  /** Some thread may be asleep waiting (the lock word's WAITERS bit). */
  waiters: boolean
  /** Threads asleep in the kernel on this lock now (approximate). */
  sleepers: number
  /** Acquisitions so far (wraps at 2^32), of which `contended` had to wait. */
  acquisitions: number
  contended: number
  /** Times a waiter took the lock over from a dead holder. */
  ownerDeaths: number
}

/** A channel's traffic, from its control block. */
export interface ChannelStats {
  /** Messages sent so far, and received (both wrap at 2^32). */
  sent: number
  received: number
  /** Messages and bytes (with their 4-byte headers) waiting to be read. */
  messagesInFlight: number
  bytesInFlight: number
  capacity: number
  /** Whether `end()` was called: receivers drain what is left, then stop. */
  ended: boolean
}

/** One handle that sent into or received from a channel (`ch.peers()`). */
export interface ChannelPeer {
  pid: number
  producer: boolean
  consumer: boolean
  /** Whether its process runs: `'unknown'` (another PID namespace, ...) counts as alive. */
  state: Liveness
}

/** Who produces into and consumes from a channel (`ch.peers()`): a snapshot. */
export interface ChannelPeers {
  /** One entry per handle (a process that opened the channel twice shows twice). */
  peers: ChannelPeer[]
  /** Producers (consumers) whose process is alive or cannot be judged. */
  producers: number
  consumers: number
  /** A producer (consumer) was seen once, and none that could still be one is left. */
  producersGone: boolean
  consumersGone: boolean
  /** Handles that found the attach table full (more than 224 at once): roles unknown, no side is ever "gone". */
  unlisted: number
}

/** A map's occupancy and counters, from its control block. */
export interface MapStats {
  entries: number
  capacity: number
  /** Heap bytes in use (keys, values and block headers) and free, of `heapSize`. */
  bytesUsed: number
  bytesFree: number
  heapSize: number
  /** Entries removed to make room (LRU maps), and because they expired. */
  evictions: number
  expirations: number
  /** What a new key does when the map is full. */
  evict: 'none' | 'lru'
}

/** One subscriber, as `topic.stats()` sees it. */
export interface TopicSubscriberStats {
  slot: number
  pid: number
  tid: number
  /** Whether its thread still runs (false: it will be removed when it holds a publisher back). */
  alive: boolean
  /** Messages published that it has not read. */
  behind: number
  behindBytes: number
  /** Messages it missed by being lapped (overwrite mode), in total. */
  missed: number
}

export interface TopicStats {
  /** Messages published (wraps at 2^32). */
  published: number
  capacity: number
  slow: 'block' | 'overwrite'
  ended: boolean
  /** Subscribers removed because their thread died without unsubscribing. */
  reaped: number
  subscriberSlots: number
  subscribers: TopicSubscriberStats[]
}

/** What `Segment.inspect(name)` reports, without opening the segment for use. */
export interface SegmentInspection {
  name: string
  kind: Kind
  /** Bytes in the data area. */
  size: number
  headerSize: number
  /** Creation time, ms since the Unix epoch. */
  createdAt: number
  creatorPid: number
  autoUnlink: boolean
  /** Processes that have it open (one entry per mapping), and whether each still runs. */
  attachers: { pid: number; state: Liveness }[]
  /** Mappings that found the attach table full (not listed). */
  overflow: number
  /** Being removed by its last closer. */
  doomed: boolean
  /** The mutex in the header (`seg.mutex`). */
  headerMutex: MutexStats
  /** Mutexes placed in the data area, by byte offset: `Mutex.at` ones, and a channel's locks. */
  placedMutexes: { offset: number; role?: 'send lock' | 'receive lock'; mutex: MutexStats }[]
  /** For a channel: its traffic. */
  channel?: ChannelStats
  /** For a channel: its producers and consumers, alive or dead. */
  peers?: ChannelPeers
  /** For a map: its occupancy. */
  map?: MapStats
  /** For a topic: its counters and subscribers (alive or dead, how far behind). */
  topic?: TopicStats
  /** The OS object's owner (user id, and name when known); absent where the OS has none (Windows). */
  owner?: number
  ownerName?: string
  /** Its permission bits now, and those asked for at creation. */
  mode?: number
  requestedMode: number
  /** Owned by another user than this process's: opened only with the `owner` option. */
  foreign: boolean
  /** Its mode grants more than was asked for at creation: someone widened it. */
  widerThanAsked: boolean
}

export function mutexStats(report: NativeMutexReport): MutexStats {
  const stats: MutexStats = {
    locked: report.locked,
    holderTid: report.holderTid,
    waiters: report.waiters,
    sleepers: report.sleepers,
    acquisitions: report.acquisitions,
    contended: report.contended,
    ownerDeaths: report.ownerDeaths,
  }
  if (report.holderPid != null) stats.holderPid = report.holderPid
  if (report.holderState != null) stats.holderState = report.holderState as Liveness
  return stats
}

const ch = CONTRACT.channel

/** Channel statistics from a channel's control-block words (as 32-bit words of its data area). */
export function channelStats(words: ArrayLike<number>): ChannelStats {
  const word = (offset: number) => (words[offset / 4] ?? 0) >>> 0
  const sent = word(ch.sent)
  const received = word(ch.received)
  return {
    sent,
    received,
    messagesInFlight: (sent - received) >>> 0,
    bytesInFlight: (word(ch.tail) - word(ch.head)) >>> 0,
    capacity: word(ch.capacity),
    ended: word(ch.ended) !== 0,
  }
}

const mp = CONTRACT.map

/** Map statistics from a map's control block, given a reader of its 32-bit words by byte offset. */
export function mapStats(word: (offset: number) => number): MapStats {
  const heapSize = word(mp.heapSize) >>> 0
  const bytesUsed = word(mp.bytesUsed) >>> 0
  return {
    entries: word(mp.count) >>> 0,
    capacity: word(mp.capacity) >>> 0,
    bytesUsed,
    bytesFree: Math.max(0, heapSize - bytesUsed),
    heapSize,
    evictions: word(mp.evictions) >>> 0,
    expirations: word(mp.expirations) >>> 0,
    evict: word(mp.evict) === 0 ? 'none' : 'lru',
  }
}

export function segmentInspection(report: NativeInspection): SegmentInspection {
  const kind = report.kind as Kind
  const inspection: SegmentInspection = {
    name: report.name,
    kind,
    size: report.size,
    headerSize: report.headerSize,
    createdAt: report.createdAt,
    creatorPid: report.creatorPid,
    autoUnlink: report.autoUnlink,
    attachers: report.attachers.map((a) => ({ pid: a.pid, state: a.state as Liveness })),
    overflow: report.overflow,
    doomed: report.doomed,
    headerMutex: mutexStats(report.headerMutex),
    requestedMode: report.requestedMode,
    foreign: report.foreign,
    widerThanAsked: report.widerThanAsked,
    placedMutexes: report.placedMutexes.map(({ offset, mutex }) => {
      const role =
        kind !== 'channel'
          ? undefined
          : offset === ch.sendLock
            ? 'send lock'
            : offset === ch.recvLock
              ? 'receive lock'
              : undefined
      return role === undefined ? { offset, mutex: mutexStats(mutex) } : { offset, role, mutex: mutexStats(mutex) }
    }),
  }
  if (kind === 'channel') inspection.channel = channelStats(report.dataWords)
  if (report.peers != null) inspection.peers = report.peers as ChannelPeers
  if (kind === 'map') inspection.map = mapStats((offset) => report.dataWords[offset / 4] ?? 0)
  if (report.topic != null) inspection.topic = report.topic as TopicStats
  if (report.owner != null) inspection.owner = report.owner
  if (report.ownerName != null) inspection.ownerName = report.ownerName
  if (report.mode != null) inspection.mode = report.mode
  return inspection
}
