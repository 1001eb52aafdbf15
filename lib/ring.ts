// The channel ring protocol (docs/CHANNELS.md), function for function as in
// crates/shmkit-core/src/channel.rs: the control block, framing, append/take under the side
// locks, and the sleeper/event wake-up. `Channel` (lib/channel.ts) adds codecs and the public API.

import { EncodedText, utf8Encoder, type Encoded } from './codec'
import { stateError, timedOut, type ShmkitError } from './errors'
import type { Handle } from './handle'
import { lockCell } from './mutex'
import type { LockCell } from './lock'
import { CONTRACT } from './native'
import { nativeWait, remainingMs } from './waiting'

const CH = CONTRACT.channel
/** Control-block words (32-bit slots of the data area). */
const ENDED = CH.ended / 4
const TAIL = CH.tail / 4
const HEAD = CH.head / 4
const SENT = CH.sent / 4
const RECEIVED = CH.received / 4
const LAST_SENDER = CH.lastSender / 4
const LAST_RECEIVER = CH.lastReceiver / 4
export const RECV_SLEEPERS = CH.recvSleepers / 4
export const RECV_EVENT = CH.recvEvent / 4
export const SEND_SLEEPERS = CH.sendSleepers / 4
export const SEND_EVENT = CH.sendEvent / 4

/** A sync send or receive spins this long on the indices before sleeping in the kernel. */
const SPIN_MICROSECONDS = 50
/** Longest single sleep of a waiting send or receive: they re-check between sleeps. */
const SLEEP_SLICE_MS = 1000

/** `take` found nothing to read. */
export const EMPTY = Symbol('empty')
/** A `TRY` attempt found the side's lock held. */
export const BUSY = Symbol('busy')
/** What `append` returns. */
export const SENT_ONE = 1
export const FULL = 0
export const SEND_BUSY = -1

/**
 * How an operation takes its side's lock: a timeout in ms (-1: none) to wait for it here (sync
 * paths), `TRY` (never wait: `trySend`/`tryRecv`, and async paths before they wait), or, after an
 * asynchronous wait for its release, `AFTER_WAIT`/`AFTER_DEATH` (take it keeping the WAITERS bit,
 * or take it over from a holder judged dead).
 */
export type SideLock = number
export const TRY = -2
const AFTER_WAIT = -3
const AFTER_DEATH = -4

export function corrupt(what: string): Error & ShmkitError {
  return stateError('ERR_SHM_CORRUPT', `Damaged channel: ${what}`)
}

export function channelEnded(name: string): Error & ShmkitError {
  return stateError('ERR_SHM_CHANNEL_ENDED', `Channel "${name}" has ended: end() was called`)
}

/** Bytes a message of `length` bytes occupies in the ring: a 4-byte length, then padded to 4. */
export function frameSize(length: number): number {
  return 4 + ((length + 3) & ~3)
}

export class Ring {
  readonly handle: Handle
  readonly capacity: number
  readonly #mask: number
  readonly words: Uint32Array
  readonly bytes: Uint8Array
  readonly #ringWords: Uint32Array
  readonly sendLock: LockCell
  readonly recvLock: LockCell

  /** Over the data area of a channel whose creator finished (`ready` seen); checks the capacity. */
  constructor(handle: Handle) {
    this.handle = handle
    this.words = new Uint32Array(handle.data, 0, CH.ring / 4)
    const capacity = this.words[CH.capacity / 4]!
    if (
      capacity < CH.minCapacity ||
      capacity > CH.maxCapacity ||
      (capacity & (capacity - 1)) !== 0 ||
      CH.ring + capacity > handle.size
    ) {
      throw corrupt(`impossible capacity ${capacity}`)
    }
    this.capacity = capacity
    this.#mask = capacity - 1
    this.bytes = new Uint8Array(handle.data, CH.ring, capacity)
    this.#ringWords = new Uint32Array(handle.data, CH.ring, capacity / 4)
    this.sendLock = lockCell(handle, CH.sendLock, `the send lock of channel "${handle.name}"`)
    this.recvLock = lockCell(handle, CH.recvLock, `the receive lock of channel "${handle.name}"`)
  }

  ended(): boolean {
    return Atomics.load(this.words, ENDED) !== 0
  }

  inFlight(): number {
    return (Atomics.load(this.words, TAIL) - Atomics.load(this.words, HEAD)) >>> 0
  }

  /**
   * Whether the stream has ended and nothing is left to read. `ended` is read BEFORE the
   * indices: once it is set no producer publishes any more, so indices read after it are final.
   */
  drainedAfterEnd(): boolean {
    return this.ended() && this.inFlight() === 0
  }

  hasRoomFor(length: number): boolean {
    const used = this.inFlight()
    return used <= this.capacity && this.capacity - used >= frameSize(length)
  }

  /** `tail - head`, validated: a damaged index is an error, never an out-of-bounds access. */
  used(head: number, tail: number): number {
    const used = (tail - head) >>> 0
    if (used > this.capacity || (used & 3) !== 0 || (head & 3) !== 0) throw corrupt(`indices head=${head} tail=${tail}`)
    return used
  }

  /**
   * The last `head` this handle read (producers) and the last `tail` (consumers): can be stale,
   * and only ever behind, so a stale value makes the ring look fuller (or emptier) than it is,
   * never the reverse. Each side re-reads the other's index only when its cached view says "no
   * room" (or "empty"), so a stream of messages does not pull the other side's cache line over
   * for every message (rtrb does the same).
   *
   * The indices wrap at 2^32, so a cached index is trusted only while no other handle moved this
   * side since this handle did: `last_sender` (`last_receiver`) still holds this handle's token,
   * which every other publisher overwrites (other languages with 0), and `tail` and `sent`
   * (`head` and `received`) are as this handle left them. Otherwise other handles may have moved
   * both indices on by 2^32 bytes, and the stale index would look valid again: room where there
   * is none, a message where there is none (docs/CHANNELS.md).
   */
  #headSeen = 0
  #tailSeen = 0
  /** This handle's mark in `last_sender`/`last_receiver`: never 0, which other languages write. */
  readonly #token = 1 + Math.floor(Math.random() * 0x7fff_fffe)
  /** `tail` and `sent` as this handle's last append left them (-1: none yet). */
  #tailMine = -1
  #sentMine = -1
  /** `head` and `received` as this handle's last take left them (-1: none yet). */
  #headMine = -1
  #receivedMine = -1

  /** Whether this handle's cached `head` may be used (above), for a producer holding the send lock. */
  #headCacheValid(tail: number): boolean {
    const words = this.words
    return tail === this.#tailMine && words[LAST_SENDER] === this.#token && words[SENT] === this.#sentMine
  }

  /** Whether this handle's cached `tail` may be used, for a consumer holding the receive lock. */
  #tailCacheValid(head: number): boolean {
    const words = this.words
    return head === this.#headMine && words[LAST_RECEIVER] === this.#token && words[RECEIVED] === this.#receivedMine
  }

  /**
   * Bytes in use seen by a producer holding the send lock, re-reading `head` unless the cached
   * one is `valid` and shows `need` bytes free. Validated before it is cached.
   */
  #usedForSend(tail: number, need: number, valid: boolean): number {
    if (valid) {
      const cached = (tail - this.#headSeen) >>> 0
      if (cached <= this.capacity && this.capacity - cached >= need) return cached
    }
    const head = Atomics.load(this.words, HEAD)
    const used = this.used(head, tail)
    this.#headSeen = head
    return used
  }

  /** Bytes in use seen by a consumer holding the receive lock, re-reading `tail` unless the
   * cached one is `valid` and shows a message. Validated before it is cached. */
  #usedForTake(head: number, valid: boolean): number {
    if (valid) {
      const cached = (this.#tailSeen - head) >>> 0
      if (cached !== 0 && cached <= this.capacity) return cached
    }
    const tail = Atomics.load(this.words, TAIL)
    const used = this.used(head, tail)
    this.#tailSeen = tail
    return used
  }

  /** Publishes an append: `tail` moves to `tail`, `sent` on by `count`. */
  #publish(tail: number, count: number): void {
    const words = this.words
    // SYNC POINT (publish): the messages are whole before the tail moves past them.
    Atomics.store(words, TAIL, tail)
    const sent = (words[SENT]! + count) >>> 0
    words[SENT] = sent
    words[LAST_SENDER] = this.#token
    this.#tailMine = tail
    this.#sentMine = sent
  }

  /** Hands back the bytes of taken messages: `head` moves to `head`, `received` on by `count`. */
  #consume(head: number, count: number): void {
    const words = this.words
    // SYNC POINT (consume): the messages were used before their bytes are handed back.
    Atomics.store(words, HEAD, head)
    const received = (words[RECEIVED]! + count) >>> 0
    words[RECEIVED] = received
    words[LAST_RECEIVER] = this.#token
    this.#headMine = head
    this.#receivedMine = received
  }

  /**
   * Appends a `length`-byte message under the send lock (taken as `lock` says; released here):
   * copies `content` in (bytes, or text encoded straight into the ring), or has
   * `content(payload)` write it at ring position `payload`; then publishes it. Returns
   * `SENT_ONE`, `FULL`, or `SEND_BUSY` (a `TRY` found the lock held). If writing throws, nothing
   * is published. Throws `ERR_SHM_CHANNEL_ENDED` if the stream ended: checked under the lock,
   * which `end` takes to set the flag, so nothing is published after the end.
   */
  append(length: number, content: Encoded | ((payload: number) => void), lock: SideLock): number {
    const words = this.words
    if (!holdSide(this.sendLock, lock)) return SEND_BUSY
    try {
      if (this.ended()) throw channelEnded(this.handle.name)
      const tail = Atomics.load(words, TAIL)
      const need = frameSize(length)
      if (this.capacity - this.#usedForSend(tail, need, this.#headCacheValid(tail)) < need) return FULL
      this.#write(tail, length, content)
      this.#publish((tail + need) >>> 0, 1)
    } finally {
      this.sendLock.release()
    }
    this.wakeSleepers(RECV_SLEEPERS, RECV_EVENT)
    return SENT_ONE
  }

  /**
   * Appends as many of `messages` (from `from` on) as fit now, under one holding of the send
   * lock, and publishes them with one store of `tail` and one wake-up: returns how many (0: the
   * channel is full, or a `TRY` found the lock busy: `busy` tells).
   */
  appendMany(messages: readonly Encoded[], from: number, lock: SideLock): { count: number; busy: boolean } {
    const words = this.words
    if (!holdSide(this.sendLock, lock)) return { count: 0, busy: true }
    let count = 0
    try {
      if (this.ended()) throw channelEnded(this.handle.name)
      const start = Atomics.load(words, TAIL)
      let tail = start
      // After the first look the cached head stays valid for the batch: we hold the send lock.
      let valid = this.#headCacheValid(start)
      for (let i = from; i < messages.length; i++) {
        const message = messages[i]!
        const need = frameSize(message.length)
        const used = this.#usedForSend(tail, need, valid)
        valid = true
        if (this.capacity - used < need) break
        this.#write(tail, message.length, message)
        tail = (tail + need) >>> 0
        count++
      }
      if (count === 0) return { count, busy: false }
      this.#publish(tail, count)
    } finally {
      this.sendLock.release()
    }
    this.wakeSleepers(RECV_SLEEPERS, RECV_EVENT)
    return { count, busy: false }
  }

  /** Writes a frame (length, then payload) at `tail`; the caller publishes it. */
  #write(tail: number, length: number, content: Encoded | ((payload: number) => void)): void {
    const start = tail & this.#mask
    this.#ringWords[start >>> 2] = length
    const payload = (start + 4) & this.#mask
    if (typeof content === 'function') content(payload)
    else if (content instanceof EncodedText) this.textIn(content, payload)
    else this.copyIn(content, payload)
  }

  /**
   * Takes one message under the receive lock (taken as `lock` says; released here) and passes
   * its bytes to `use(view, inRing)`: a view into the ring, or a joined copy when the message
   * wraps. `EMPTY` if none, `BUSY` if a `TRY` found the lock held. If `use` throws, the message
   * is NOT consumed.
   */
  take<R>(use: (view: Uint8Array, inRing: boolean) => R, lock: SideLock): R | typeof EMPTY | typeof BUSY {
    const words = this.words
    if (!holdSide(this.recvLock, lock)) return BUSY
    let result: R
    try {
      const head = Atomics.load(words, HEAD)
      const used = this.#usedForTake(head, this.#tailCacheValid(head))
      if (used === 0) return EMPTY
      const length = this.#lengthAt(head, used)
      const payload = ((head & this.#mask) + 4) & this.#mask
      result = use(this.copyOut(payload, length), payload + length <= this.capacity)
      this.#consume((head + frameSize(length)) >>> 0, 1)
    } finally {
      this.recvLock.release()
    }
    this.wakeSleepers(SEND_SLEEPERS, SEND_EVENT)
    return result
  }

  /**
   * Takes up to `max` messages under one holding of the receive lock, passing each to `use` (which
   * must not throw) into `out`, and hands their bytes back with one store of `head` and one
   * wake-up. Returns how many (0: empty, or `BUSY` for a `TRY` that found the lock held). When
   * `use` returns `poison` (an undecodable message), taking stops there: as the first message
   * it is consumed (and returned, for the caller to report), after others it is left for the
   * next call, so it is reported on its own and nothing after it is lost.
   */
  takeMany<R>(
    use: (view: Uint8Array, inRing: boolean) => R,
    max: number,
    out: R[],
    lock: SideLock,
    poison: unknown,
  ): number | typeof BUSY {
    const words = this.words
    if (!holdSide(this.recvLock, lock)) return BUSY
    let count = 0
    try {
      const start = Atomics.load(words, HEAD)
      let head = start
      // As in `appendMany`: after the first look the cached tail stays valid for the batch.
      let valid = this.#tailCacheValid(start)
      while (count < max) {
        const used = this.#usedForTake(head, valid)
        valid = true
        if (used === 0) break
        const length = this.#lengthAt(head, used)
        const payload = ((head & this.#mask) + 4) & this.#mask
        const value = use(this.copyOut(payload, length), payload + length <= this.capacity)
        if (value === poison && count > 0) break
        out.push(value)
        head = (head + frameSize(length)) >>> 0
        count++
        if (value === poison) break
      }
      if (count === 0) return 0
      this.#consume(head, count)
    } finally {
      this.recvLock.release()
    }
    this.wakeSleepers(SEND_SLEEPERS, SEND_EVENT)
    return count
  }

  /** The payload length of the frame at `head` with `used` bytes in flight, validated. */
  #lengthAt(head: number, used: number): number {
    const length = this.#ringWords[(head & this.#mask) >>> 2]!
    if (length > this.capacity - 4 || frameSize(length) > used) {
      throw corrupt(`message length ${length} with ${used} bytes in flight`)
    }
    return length
  }

  /** Encodes `text` into the ring at `position` (through a temporary only if the slot wraps). */
  textIn(text: EncodedText, position: number): void {
    if (position + text.length <= this.capacity)
      utf8Encoder.encodeInto(text.text, this.bytes.subarray(position, position + text.length))
    else this.copyIn(utf8Encoder.encode(text.text), position)
  }

  /** Copies `bytes` into the ring at `position`, wrapping at the end. */
  copyIn(bytes: Uint8Array, position: number): void {
    const first = Math.min(bytes.length, this.capacity - position)
    this.bytes.set(first === bytes.length ? bytes : bytes.subarray(0, first), position)
    if (first < bytes.length) this.bytes.set(bytes.subarray(first), 0)
  }

  /** The `length` bytes at `position`: a view into the ring, or a joined copy if they wrap. */
  copyOut(position: number, length: number): Uint8Array {
    if (position + length <= this.capacity) return this.bytes.subarray(position, position + length)
    const joined = new Uint8Array(length)
    joined.set(this.bytes.subarray(position, this.capacity))
    joined.set(this.bytes.subarray(0, length - (this.capacity - position)), this.capacity - position)
    return joined
  }

  /**
   * Ends the stream: sets the flag under the send lock (waiting `timeoutMs` for it; -1: no
   * limit), then wakes every sleeper of both sides.
   */
  end(timeoutMs: number): void {
    this.sendLock.acquire(timeoutMs)
    try {
      Atomics.store(this.words, ENDED, 1)
    } finally {
      this.sendLock.release()
    }
    for (const event of [RECV_EVENT, SEND_EVENT]) {
      Atomics.add(this.words, event, 1)
      this.handle.native.notify(event * 4, Infinity)
    }
  }

  wakeSleepers(flag: number, event: number): void {
    wakeSleepers(this.handle, this.words, flag, event)
  }

  spinUntil(ready: () => boolean): boolean {
    return spinUntil(ready)
  }

  waitFor(
    flag: number,
    event: number,
    ready: () => boolean,
    deadline: number,
    what: () => string,
    timeoutMs: number,
    sliceMs = SLEEP_SLICE_MS,
  ): void {
    sleepOn(this.handle, this.words, flag, event, ready, deadline, what, timeoutMs, sliceMs)
  }

  waitForAsync(
    flag: number,
    event: number,
    ready: () => boolean,
    deadline: number,
    signal: AbortSignal | undefined,
    what: () => string,
    timeoutMs: number,
    sliceMs = SLEEP_SLICE_MS,
  ): Promise<void> {
    return sleepOnAsync(this.handle, this.words, flag, event, ready, deadline, signal, what, timeoutMs, sliceMs)
  }

  /**
   * Waits, holding nothing, until the side lock `lock` (busy at the last attempt) may be free: a
   * short spin (peers hold it for microseconds), then a native waiter. Returns how the next
   * attempt takes it.
   */
  async awaitSideLock(
    lock: LockCell,
    deadline: number,
    signal: AbortSignal | undefined,
    timeoutMs: number,
  ): Promise<SideLock> {
    if (this.spinUntil(() => lock.looksFree())) return TRY
    const [outcome] = await nativeWait(this.handle, signal, (token) =>
      lock.waitForRelease(remainingMs(deadline), token),
    )
    if (outcome === 'timed-out') throw timedOut(lock.what, timeoutMs)
    return outcome === 'owner-dead' ? AFTER_DEATH : AFTER_WAIT
  }
}

/** Takes a side's lock as `lock` says; false if it was busy (never for a timeout: that waits). */
function holdSide(cell: LockCell, lock: SideLock): boolean {
  if (lock >= -1) {
    cell.acquire(lock)
    return true
  }
  if (lock === TRY) return cell.tryAcquire() !== 0
  return cell.acquireAfterWait(lock === AFTER_DEATH ? 'owner-dead' : 'woken') !== 0
}

/**
 * Wakes every sleeper of one side, if any announced itself: the flag is cleared by the waker (so
 * a burst of messages costs one wake-up, not one per message) and the event bumped before the
 * kernel wake, so a sleeper that read the old event value cannot miss it. `flag` and `event` are
 * word indices into `words` (the data area's first words).
 */
export function wakeSleepers(handle: Handle, words: Uint32Array, flag: number, event: number): void {
  if (Atomics.load(words, flag) !== 0 && Atomics.exchange(words, flag, 0) !== 0) {
    Atomics.add(words, event, 1)
    handle.native.notify(event * 4, Infinity)
  }
}

/** Spins briefly (an awake peer answers within microseconds); true if `ready()` came true. */
export function spinUntil(ready: () => boolean): boolean {
  const until = performance.now() + SPIN_MICROSECONDS / 1000
  do {
    if (ready()) return true
  } while (performance.now() < until)
  return false
}

/**
 * Sleeps (one slice at most) until the event word changes, without losing a wake-up (see
 * docs/CHANNELS.md): read the event, raise the sleeper flag, re-check, then sleep on the value.
 */
export function sleepOn(
  handle: Handle,
  words: Uint32Array,
  flag: number,
  event: number,
  ready: () => boolean,
  deadline: number,
  what: () => string,
  timeoutMs: number,
  sliceMs: number,
): void {
  const seen = Atomics.load(words, event)
  Atomics.store(words, flag, 1)
  if (ready()) return
  const left = remainingMs(deadline)
  if (left === 0) throw timedOut(what(), timeoutMs)
  handle.native.wait(event * 4, seen | 0, left < 0 ? sliceMs : Math.min(left, sliceMs))
}

/** `sleepOn` on a native waiter thread, without blocking the event loop. */
export async function sleepOnAsync(
  handle: Handle,
  words: Uint32Array,
  flag: number,
  event: number,
  ready: () => boolean,
  deadline: number,
  signal: AbortSignal | undefined,
  what: () => string,
  timeoutMs: number,
  sliceMs: number,
): Promise<void> {
  const seen = Atomics.load(words, event)
  Atomics.store(words, flag, 1)
  if (ready()) return
  const left = remainingMs(deadline)
  if (left === 0) throw timedOut(what(), timeoutMs)
  const slice = left < 0 ? sliceMs : Math.min(left, sliceMs)
  await nativeWait(handle, signal, (token) => handle.native.waitAsync(event * 4, seen | 0, slice, token))
}
