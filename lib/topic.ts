// Topics: broadcast in shared memory (docs/TOPIC.md). Publishing runs in the Rust core (the
// publish step, reaping dead subscribers, repair after a dead publisher) under the publish lock,
// which this side takes with its LockCell (fast path in JavaScript, waits off the event loop).
// Each subscriber reads the ring here, in JavaScript, on its own cursor and without a lock: the
// protocol of crates/shmkit-core/src/topic.rs (`Subscription::look`).

import { inspect } from 'node:util'

import {
  CODECS,
  EncodedText,
  decodeMessage,
  encodeMessage,
  utf8Encoder,
  validateCodec,
  type Codec,
  type CodecValues,
} from './codec'
import type { Sendable } from './channel'
import { AbortError, coded, stateError, timedOut, typeError, type ShmkitError } from './errors'
import { Handle } from './handle'
import type { TopicStats } from './inspect'
import { CONSTRUCT, HANDLE } from './internal'
import type { LockCell } from './lock'
import { lockCell } from './mutex'
import { CONTRACT, NativeSegment } from './native'
import { sleepOn, sleepOnAsync, spinUntil, wakeSleepers } from './ring'
import type { OpenOptions } from './segment'
import {
  openOptions,
  timeoutOption,
  validateBoolean,
  validateInteger,
  validateMode,
  validateName,
  validateOptions,
  validateSignal,
  validateTimeout,
  type AsyncOptions,
  type TimeoutOptions,
} from './validate'
import { deadlineOf, remainingMs } from './waiting'

const T = CONTRACT.topic
const ENDED = T.ended / 4
const TAIL = T.tail / 4
const WRITING = T.writing / 4
const HEAD = T.head / 4
const PUBLISHED = T.published / 4
const SUB_SLEEPERS = T.subSleepers / 4
const SUB_EVENT = T.subEvent / 4
const PUB_SLEEPERS = T.pubSleepers / 4
const PUB_EVENT = T.pubEvent / 4
const RECORD_HEADER = T.recordHeader
/** Longest single sleep of a waiting publisher or subscriber: liveness of laggards and the end
 * are re-checked between sleeps (a dead subscriber stops holding publishers back within one). */
const SLEEP_SLICE_MS = 250
/** A lapped subscriber re-reads the head this many times while publishers keep lapping it. */
const CATCH_UP_ATTEMPTS = 1000

const EMPTY = Symbol('empty')
const DONE = Symbol('ended')
const UNDECODABLE = Symbol('undecodable')

export interface TopicCreateOptions<C extends Codec = Codec> {
  /** Ring bytes, rounded up to a power of two, 64 to 2^30. A message takes 8 + its length rounded up to 8. */
  capacity: number
  /** How messages are encoded, as for channels. Default `'json'`. */
  codec?: C
  /** `'block'` (default): publishers wait for the slowest live subscriber. `'overwrite'`: publishers never wait; a subscriber that fell behind gets `ERR_SHM_LAGGED`. */
  slow?: 'block' | 'overwrite'
  /** Most subscribers at once, 1 to 4096. Default 64. */
  subscribers?: number
  /** As for segments. */
  mode?: number
  autoUnlink?: boolean
}

export interface TopicOpenOptions<C extends Codec = Codec> extends OpenOptions {
  /** Overrides the codec recorded at creation, for this handle. */
  codec?: C
}

/** Frees the slot of a subscription dropped without `close()` once it is garbage-collected. */
const dropped = new FinalizationRegistry<{ handle: Handle; slot: number; state: number }>(({ handle, slot, state }) => {
  if (!handle.closed) handle.native.topicUnsubscribe(slot, state)
})

/**
 * Broadcast in shared memory: every subscriber, in any process or worker thread, gets every
 * message published after it subscribed, exactly once, whole, in the one publish order. Any
 * number of publishers. `end()` ends the stream for everyone; `close()` unmaps this handle.
 */
export class Topic<T = unknown> {
  /** @internal */
  readonly [HANDLE]: Handle
  readonly #codec: Codec
  readonly #words: Uint32Array
  readonly #lock: LockCell
  readonly #capacity: number
  readonly #slots: number
  readonly #ring: number
  readonly #overwrite: boolean
  readonly #ringWords: Uint32Array
  readonly #ringBytes: Uint8Array
  /** This handle's live subscriptions (closed with it). */
  readonly #subscriptions = new Set<Subscription<T>>()

  /** @internal Use `Topic.create`, `open` or `openOrCreate`. */
  constructor(token: symbol, handle: Handle, codec: Codec | undefined) {
    if (token !== CONSTRUCT)
      throw coded(new TypeError('Use Topic.create(), Topic.open() or Topic.openOrCreate()'), 'ERR_ILLEGAL_CONSTRUCTOR')
    this[HANDLE] = handle
    const regions = handle.native.topicRegions()
    this.#words = new Uint32Array(handle.data)
    this.#capacity = regions.capacity
    this.#slots = regions.slots
    this.#ring = regions.ring
    this.#overwrite = regions.overwrite
    this.#codec = codec ?? CODECS[this.#words[T.codec / 4]!] ?? 'json'
    this.#lock = lockCell(handle, T.publishLock, `the publish lock of topic "${handle.name}"`)
    this.#ringWords = new Uint32Array(handle.data, regions.ring, regions.capacity / 4)
    this.#ringBytes = new Uint8Array(handle.data, regions.ring, regions.capacity)
  }

  /** Creates topic `name`. Throws `EEXIST` if it exists. */
  static create<C extends Codec = 'json'>(
    name: string,
    options: TopicCreateOptions<C>,
  ): Topic<C extends 'json' | 'v8' ? unknown : CodecValues[C]>
  static create<M>(name: string, options: TopicCreateOptions<'json' | 'v8'>): Topic<M>
  static create(name: string, options: TopicCreateOptions): Topic<unknown> {
    validateName(name)
    return new Topic(CONSTRUCT, new Handle(NativeSegment.createTopic(name, topicOptions(options, []))), undefined)
  }

  /** Opens topic `name` (waiting and checking its owner as `Segment.open` does). `ERR_SHM_WRONG_KIND` if it is not a topic. */
  static open<M = unknown>(name: string, options?: TopicOpenOptions): Topic<M> {
    validateName(name)
    const codec = validateCodec((options as TopicOpenOptions | undefined)?.codec, 'codec')
    return new Topic<M>(CONSTRUCT, new Handle(NativeSegment.openTopic(name, openOptions(options, ['codec']))), codec)
  }

  /** Opens `name`, creating it if needed (one creator among racers). `ERR_SHM_SIZE_MISMATCH` for a topic of another capacity or subscriber count. */
  static openOrCreate<C extends Codec = 'json'>(
    name: string,
    options: TopicCreateOptions<C> & Pick<OpenOptions, 'readyTimeout' | 'owner'>,
  ): Topic<C extends 'json' | 'v8' ? unknown : CodecValues[C]>
  static openOrCreate<M>(
    name: string,
    options: TopicCreateOptions<'json' | 'v8'> & Pick<OpenOptions, 'readyTimeout' | 'owner'>,
  ): Topic<M>
  static openOrCreate(
    name: string,
    options: TopicCreateOptions & Pick<OpenOptions, 'readyTimeout' | 'owner'>,
  ): Topic<unknown> {
    validateName(name)
    const native = topicOptions(options, ['readyTimeout', 'owner'])
    const open = openOptions({ readyTimeout: options.readyTimeout, owner: options.owner }, [])
    return new Topic(CONSTRUCT, new Handle(NativeSegment.openOrCreateTopic(name, native, open)), undefined)
  }

  /** Removes topic `name` (`ERR_SHM_WRONG_KIND` if it is not a topic); processes that have it open keep using it. */
  static unlink(name: string): void {
    NativeSegment.unlink(validateName(name), CONTRACT.kinds.indexOf('topic'))
  }

  get name(): string {
    return this[HANDLE].name
  }

  get codec(): Codec {
    return this.#codec
  }

  /** Ring bytes. The largest message is `capacity - 8` bytes once encoded. */
  get capacity(): number {
    return this.#capacity
  }

  get slow(): 'block' | 'overwrite' {
    return this.#overwrite ? 'overwrite' : 'block'
  }

  get created(): boolean {
    return this[HANDLE].native.created
  }

  get closed(): boolean {
    return this[HANDLE].closed
  }

  /** Whether `end()` was called (by any process). */
  get ended(): boolean {
    this[HANDLE].assertOpen()
    return Atomics.load(this.#words, ENDED) !== 0
  }

  /**
   * Publishes `data` to every subscriber. In block mode, waits while a live subscriber has not
   * read the room it needs; `ETIMEDOUT` after `options.timeout` ms. `ERR_SHM_CHANNEL_ENDED`
   * after `end()`.
   */
  publish(data: Sendable<T>, options?: TimeoutOptions): void {
    const encoded = encodeMessage(this.#codec, data, this.#capacity - RECORD_HEADER)
    const timeoutMs = timeoutOption(options)
    const handle = this[HANDLE]
    handle.assertOpen()
    // The hot path: the lock at once, room at once. No clock is read until one of them is not there.
    if (this.#publishHeld(encoded, this.#lock.acquire(timeoutMs))) return
    const deadline = deadlineOf(timeoutMs)
    const ready = this.#roomFor(encoded.length)
    for (;;) {
      if (remainingMs(deadline) === 0) throw timedOut(this.#roomWhat(), timeoutMs)
      if (!spinUntil(ready)) {
        sleepOn(
          handle,
          this.#words,
          PUB_SLEEPERS,
          PUB_EVENT,
          ready,
          deadline,
          this.#roomWhat,
          timeoutMs,
          SLEEP_SLICE_MS,
        )
      }
      handle.assertOpen()
      if (this.#publishHeld(encoded, this.#lock.acquire(remainingMs(deadline)))) return
    }
  }

  /** Publishes `data` if it can be done now; false if a live subscriber holds the room (block mode) or another publisher holds the lock at this instant. Never waits. */
  tryPublish(data: Sendable<T>): boolean {
    const encoded = encodeMessage(this.#codec, data, this.#capacity - RECORD_HEADER)
    this[HANDLE].assertOpen()
    const taken = this.#lock.tryAcquire()
    if (taken === 0) return false
    return this.#publishHeld(encoded, taken === 2)
  }

  /** `publish` without blocking the event loop; rejects with `ETIMEDOUT`, `AbortError` or `ERR_SHM_CHANNEL_ENDED`. */
  async publishAsync(data: Sendable<T>, options?: AsyncOptions): Promise<void> {
    const encoded = encodeMessage(this.#codec, data, this.#capacity - RECORD_HEADER)
    const { timeout, signal } = validateOptions<AsyncOptions>(options, 'options', ['timeout', 'signal'], false)
    const timeoutMs = validateTimeout(timeout, 'options.timeout')
    const deadline = deadlineOf(timeoutMs)
    const abortSignal = validateSignal(signal)
    const handle = this[HANDLE]
    const ready = this.#roomFor(encoded.length)
    for (;;) {
      if (abortSignal?.aborted) throw new AbortError(undefined, { cause: abortSignal.reason })
      if (remainingMs(deadline) === 0) throw timedOut(this.#roomWhat(), timeoutMs)
      handle.assertOpen()
      // The lock is held only inside one synchronous step, never across an `await`.
      const ownerDied = await this.#lock.acquireAsync(remainingMs(deadline), abortSignal)
      if (this.#publishHeld(encoded, ownerDied)) return
      if (spinUntil(ready)) continue
      await sleepOnAsync(
        handle,
        this.#words,
        PUB_SLEEPERS,
        PUB_EVENT,
        ready,
        deadline,
        abortSignal,
        this.#roomWhat,
        timeoutMs,
        SLEEP_SLICE_MS,
      )
    }
  }

  /**
   * Subscribes: the subscription receives what is published from now on. Throws
   * `ERR_OUT_OF_RANGE` when the topic already has its most subscribers (the `subscribers`
   * option). Close it when done (a subscription garbage-collected without `close()`, or whose
   * thread ends, is removed too, later).
   */
  subscribe(): Subscription<T> {
    this[HANDLE].assertOpen()
    let taken
    try {
      taken = this[HANDLE].native.topicSubscribe()
    } catch (error) {
      if ((error as ShmkitError).code === 'ERR_OUT_OF_RANGE') {
        throw coded(new RangeError((error as Error).message), 'ERR_OUT_OF_RANGE')
      }
      throw error
    }
    const subscription = new Subscription<T>(CONSTRUCT, this, this.#internals, taken)
    this.#subscriptions.add(subscription)
    return subscription
  }

  /**
   * Ends the stream for everyone: publishing fails with `ERR_SHM_CHANNEL_ENDED` from now on;
   * subscribers read what is left, then their `recv` throws it and their loops end. Idempotent.
   */
  end(options?: TimeoutOptions): void {
    const timeoutMs = timeoutOption(options)
    this[HANDLE].assertOpen()
    this[HANDLE].native.topicEnd(timeoutMs)
  }

  /** Counts, and every subscriber: alive or dead, how far behind. */
  stats(): TopicStats {
    this[HANDLE].assertOpen()
    return this[HANDLE].native.topicStats() as TopicStats
  }

  /** Closes this handle (unmaps the topic in this thread) and its subscriptions. The topic stays. */
  close(): void {
    for (const subscription of this.#subscriptions) subscription.close() // each removes itself
    this[HANDLE].close()
  }

  [Symbol.dispose](): void {
    this.close()
  }

  [inspect.custom](): string {
    const { name, closed } = this[HANDLE]
    const shown = { name, codec: this.#codec, capacity: this.#capacity, slow: this.slow, closed }
    return `Topic ${inspect(shown, { breakLength: Infinity })}`
  }

  readonly #roomWhat = () => `room in topic "${this.name}" (a subscriber has not read it)`

  /** Publishes with the lock held (taken by the caller), then releases it and wakes subscribers. */
  #publishHeld(encoded: Uint8Array | EncodedText, ownerDied: boolean): boolean {
    let published: boolean
    try {
      // After a dead publisher, the core repairs first (rare); otherwise the step runs here.
      published = ownerDied ? this.#publishNative(encoded, true) : this.#publishHere(encoded)
    } finally {
      this.#lock.release()
    }
    if (published) wakeSleepers(this[HANDLE], this.#words, SUB_SLEEPERS, SUB_EVENT)
    return published
  }

  /** The publish step in the Rust core (which also removes dead subscribers that hold the room). */
  #publishNative(encoded: Uint8Array | EncodedText, ownerDied: boolean): boolean {
    const native = this[HANDLE].native
    return encoded instanceof EncodedText
      ? native.topicPublishHeldText(encoded.text, ownerDied)
      : native.topicPublishHeldBytes(encoded, ownerDied)
  }

  /**
   * The publish step of docs/TOPIC.md, here in JavaScript (as `Topic::publish_locked` in the
   * core): the caller holds the lock. When the room is not known to be free (block mode), the
   * core does the step, reaping dead subscribers that hold it.
   */
  #publishHere(encoded: Uint8Array | EncodedText): boolean {
    const words = this.#words
    if (Atomics.load(words, ENDED) !== 0) throw ended(this.name)
    const capacity = this.#capacity
    const mask = capacity - 1
    const length = encoded.length
    const need = RECORD_HEADER + ((length + 7) & ~7)
    const tail = Atomics.load(words, TAIL)
    if ((tail & 7) !== 0) throw corrupt(`tail ${tail}`)
    if (!this.#overwrite && !this.#roomKnown(tail, need)) return this.#publishNative(encoded, false)
    // Move the head past the records this one will overwrite (each stays whole until then).
    const ringWords = this.#ringWords
    let head = Atomics.load(words, HEAD)
    let used = (tail - head) >>> 0
    if (used > capacity || (head & 7) !== 0) throw corrupt(`head ${head}, tail ${tail}`)
    while (capacity - used < need) {
      const old = ringWords[(head & mask) >>> 2]!
      const size = RECORD_HEADER + ((old + 7) & ~7)
      if (old > capacity - RECORD_HEADER || size > used) throw corrupt(`record length ${old} at ${head}`)
      head = (head + size) >>> 0
      used -= size
    }
    const seq = Atomics.load(words, PUBLISHED)
    Atomics.store(words, HEAD, head)
    // `writing` never moves back (a publisher that died writing may have reached it).
    const ahead = (Atomics.load(words, WRITING) - tail) >>> 0
    if (ahead > capacity || ahead < need) Atomics.store(words, WRITING, (tail + need) >>> 0)
    const at = tail & mask
    ringWords[at >>> 2] = length
    ringWords[((at + 4) & mask) >>> 2] = seq
    const payload = (at + RECORD_HEADER) & mask
    const bytes = this.#ringBytes
    if (encoded instanceof EncodedText) {
      if (payload + length <= capacity) utf8Encoder.encodeInto(encoded.text, bytes.subarray(payload, payload + length))
      else copyIn(bytes, utf8Encoder.encode(encoded.text), payload)
    } else copyIn(bytes, encoded, payload)
    // SYNC POINT (publish): the record is whole before the tail moves past it.
    Atomics.store(words, TAIL, (tail + need) >>> 0)
    Atomics.store(words, PUBLISHED, (seq + 1) >>> 0)
    return true
  }

  /** The lowest subscriber cursor this handle saw (block mode): a lower bound, since cursors only
   * move forward and a new subscriber starts at the tail. -1: not known. */
  #minCursor = -1

  /** Block mode: whether every subscriber has read the `need` bytes from `tail` on, as far as
   * this handle can tell without the core (false: let the core decide, and reap). */
  #roomKnown(tail: number, need: number): boolean {
    const capacity = this.#capacity
    if (this.#minCursor >= 0) {
      const behind = (tail - this.#minCursor) >>> 0
      if (behind <= capacity && capacity - behind >= need) return true
    }
    const words = this.#words
    let most = 0
    for (let slot = 0; slot < this.#slots; slot++) {
      const base = (T.table + slot * T.slotSize) / 4
      if ((Atomics.load(words, base + T.sState / 4) & 1) === 0) continue
      const cursor = Atomics.load(words, base + T.sCursor / 4)
      const behind = (tail - cursor) >>> 0
      if (behind > capacity || (cursor & 7) !== 0) return false // damaged: the core reports it
      if (behind > most) most = behind
    }
    this.#minCursor = (tail - most) >>> 0
    return capacity - most >= need
  }

  /** Whether every live subscriber leaves room for a `length`-byte message, or the stream ended (a hint). */
  #roomFor(length: number): () => boolean {
    const words = this.#words
    const need = RECORD_HEADER + ((length + 7) & ~7)
    return () => {
      if (this.#overwrite || Atomics.load(words, ENDED) !== 0) return true
      const tail = Atomics.load(words, TAIL)
      let most = 0
      for (let slot = 0; slot < this.#slots; slot++) {
        const base = (T.table + slot * T.slotSize) / 4
        if ((Atomics.load(words, base + T.sState / 4) & 1) === 0) continue
        const behind = (tail - Atomics.load(words, base + T.sCursor / 4)) >>> 0
        if (behind > most) most = behind
      }
      return most > this.#capacity || this.#capacity - most >= need
    }
  }

  /** What a subscription needs of its topic (kept private to the module). */
  readonly #internals: TopicInternals = {
    words: () => this.#words,
    ring: () => this.#ring,
    capacity: () => this.#capacity,
    overwrite: () => this.#overwrite,
    codec: () => this.#codec,
    forget: (subscription) => this.#subscriptions.delete(subscription as Subscription<T>),
  }
}

interface TopicInternals {
  words(): Uint32Array
  ring(): number
  capacity(): number
  overwrite(): boolean
  codec(): Codec
  forget(subscription: object): void
}

/**
 * One subscriber of a topic: receives every message published after `subscribe()`, in order.
 * Belongs to the thread that subscribed. `close()` unsubscribes.
 */
export class Subscription<T = unknown> {
  readonly #topic: Topic<T>
  readonly #internals: TopicInternals
  readonly #handle: Handle
  readonly #words: Uint32Array
  readonly #ringWords: Uint32Array
  readonly #bytes: Uint8Array
  readonly #capacity: number
  readonly #mask: number
  readonly #overwrite: boolean
  readonly #codec: Codec
  readonly #slot: number
  readonly #state: number
  readonly #slotBase: number
  #cursor: number
  #seq: number
  #closed = false
  readonly #token = {}

  /** @internal Use `topic.subscribe()`. */
  constructor(
    token: symbol,
    topic: Topic<T>,
    internals: TopicInternals,
    taken: { slot: number; state: number; cursor: number; seq: number },
  ) {
    if (token !== CONSTRUCT) throw coded(new TypeError('Use topic.subscribe()'), 'ERR_ILLEGAL_CONSTRUCTOR')
    this.#topic = topic
    this.#internals = internals
    this.#handle = topic[HANDLE]
    this.#words = internals.words()
    this.#capacity = internals.capacity()
    this.#mask = this.#capacity - 1
    this.#ringWords = new Uint32Array(this.#handle.data, internals.ring(), this.#capacity / 4)
    this.#bytes = new Uint8Array(this.#handle.data, internals.ring(), this.#capacity)
    this.#overwrite = internals.overwrite()
    this.#codec = internals.codec()
    this.#slot = taken.slot
    this.#state = taken.state
    this.#slotBase = (T.table + taken.slot * T.slotSize) / 4
    this.#cursor = taken.cursor
    this.#seq = taken.seq
    dropped.register(this, { handle: this.#handle, slot: taken.slot, state: taken.state }, this.#token)
  }

  get topic(): Topic<T> {
    return this.#topic
  }

  get closed(): boolean {
    return this.#closed || this.#handle.closed
  }

  /** Messages published that this subscriber has not read yet. */
  get pending(): number {
    this.#assertOpen()
    return (Atomics.load(this.#words, PUBLISHED) - this.#seq) >>> 0
  }

  /** The next message if one is there, else `undefined` at once (also once the topic ended: see `topic.ended`). `ERR_SHM_LAGGED` when lapped (overwrite mode). */
  tryRecv(): T | undefined {
    this.#assertOpen()
    const message = this.#look(this.#decodeOrMark)
    if (message === EMPTY || message === DONE) return undefined
    return this.#delivered(message)
  }

  /** The next message, waiting for one; `ETIMEDOUT` after `options.timeout` ms. */
  recv(options?: TimeoutOptions): T {
    return this.#delivered(this.#lookWaiting(this.#decodeOrMark, timeoutOption(options)))
  }

  /**
   * Passes the next message's raw bytes to `use(view)` and returns what it returns: `view` looks
   * straight into the ring (no copy; a copy only when the message wraps around the ring's end)
   * and is valid only during the call. In overwrite mode a publisher may overwrite the bytes
   * while `use` runs: then `use`'s result is discarded and `ERR_SHM_LAGGED` thrown. Waits like
   * `recv`. If `use` throws, the message is not consumed.
   */
  recvWith<R>(use: (view: Uint8Array) => R, options?: TimeoutOptions): R {
    if (typeof use !== 'function') throw typeError('use', 'of type function', use)
    const result = this.#lookWaiting((view) => use(view), timeoutOption(options))
    if (result === DONE) throw ended(this.#handle.name)
    return result
  }

  /** `recv` without blocking the event loop; rejects with `ETIMEDOUT`, `AbortError`, `ERR_SHM_LAGGED` or `ERR_SHM_CHANNEL_ENDED`. */
  async recvAsync(options?: AsyncOptions): Promise<T> {
    const { timeout, signal } = validateOptions<AsyncOptions>(options, 'options', ['timeout', 'signal'], false)
    const timeoutMs = validateTimeout(timeout, 'options.timeout')
    const deadline = deadlineOf(timeoutMs)
    const abortSignal = validateSignal(signal)
    for (;;) {
      if (abortSignal?.aborted) throw new AbortError(undefined, { cause: abortSignal.reason })
      this.#assertOpen()
      const message = this.#look(this.#decodeOrMark)
      if (message !== EMPTY) return this.#delivered(message)
      if (spinUntil(this.#ready)) continue
      await sleepOnAsync(
        this.#handle,
        this.#words,
        SUB_SLEEPERS,
        SUB_EVENT,
        this.#ready,
        deadline,
        abortSignal,
        this.#messageWhat,
        timeoutMs,
        SLEEP_SLICE_MS,
      )
    }
  }

  /** Receives until the topic has ended and this subscriber read everything (or is closed). `ERR_SHM_LAGGED` is thrown out of the loop: catch it to continue. */
  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    for (;;) {
      try {
        yield await this.recvAsync()
      } catch (error) {
        const code = (error as ShmkitError).code
        if (code === 'ERR_SHM_CHANNEL_ENDED' || (code === 'ERR_SHM_CLOSED' && this.closed)) return
        throw error
      }
    }
  }

  /** Unsubscribes (publishers stop waiting for this subscriber). Idempotent. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    dropped.unregister(this.#token)
    this.#internals.forget(this)
    if (!this.#handle.closed) this.#handle.native.topicUnsubscribe(this.#slot, this.#state)
  }

  [Symbol.dispose](): void {
    this.close()
  }

  [inspect.custom](): string {
    const shown = { topic: this.#handle.name, slot: this.#slot, closed: this.closed }
    return `Subscription ${inspect(shown, { breakLength: Infinity })}`
  }

  readonly #messageWhat = () => `a message in topic "${this.#handle.name}"`
  readonly #ready = () => Atomics.load(this.#words, TAIL) !== this.#cursor || Atomics.load(this.#words, ENDED) !== 0

  #assertOpen(): void {
    if (this.#closed) throw stateError('ERR_SHM_CLOSED', `This subscription of topic "${this.#handle.name}" is closed`)
    this.#handle.assertOpen()
  }

  /** `#look`, waiting up to `timeoutMs` for a message. */
  #lookWaiting<R>(use: (view: Uint8Array, inRing: boolean) => R, timeoutMs: number): R | typeof DONE {
    this.#assertOpen()
    const first = this.#look(use)
    if (first !== EMPTY) return first
    const deadline = deadlineOf(timeoutMs)
    for (;;) {
      if (!spinUntil(this.#ready)) {
        sleepOn(
          this.#handle,
          this.#words,
          SUB_SLEEPERS,
          SUB_EVENT,
          this.#ready,
          deadline,
          this.#messageWhat,
          timeoutMs,
          SLEEP_SLICE_MS,
        )
      }
      this.#assertOpen()
      const message = this.#look(use)
      if (message !== EMPTY) return message
    }
  }

  /** What a receive returns for what `#look` found: the value, or the end, or a bad message. */
  #delivered(message: unknown): T {
    if (message === DONE) throw ended(this.#handle.name)
    if (message === UNDECODABLE) {
      const cause = this.#decodeFailure
      this.#decodeFailure = undefined
      throw Object.assign(corrupt(`a message did not decode as ${this.#codec} and was skipped`), { cause })
    }
    return message as T
  }

  /**
   * One look at the ring (docs/TOPIC.md, "Receiving"): the next record through `use`, or
   * `EMPTY`, or `DONE` once ended and read. Throws `ERR_SHM_LAGGED` (after moving on to the
   * oldest record still there) when publishers lapped this subscriber.
   */
  #look<R>(use: (view: Uint8Array, inRing: boolean) => R): R | typeof EMPTY | typeof DONE {
    const words = this.#words
    const capacity = this.#capacity
    const cursor = this.#cursor
    // `ended` before `tail`: once it is set nothing more is published.
    const isEnded = Atomics.load(words, ENDED) !== 0
    const tail = Atomics.load(words, TAIL)
    if (tail === cursor) return isEnded ? DONE : EMPTY
    const behind = (tail - cursor) >>> 0
    if (behind <= capacity) {
      const at = cursor & this.#mask
      const length = this.#ringWords[at >>> 2]!
      const seq = this.#ringWords[((at + 4) & this.#mask) >>> 2]!
      const size = RECORD_HEADER + ((length + 7) & ~7)
      const plausible = length <= capacity - RECORD_HEADER && size <= behind && seq === this.#seq
      let value: R | undefined
      if (plausible) {
        const payload = (at + RECORD_HEADER) & this.#mask
        const inRing = payload + length <= capacity
        value = use(this.#view(payload, length), inRing)
      }
      // The bytes were whole if no publisher had begun to overwrite them by now (`writing`
      // only grows). In block mode nothing overwrites what a subscriber has not read.
      const intact = (Atomics.load(words, WRITING) - cursor) >>> 0 <= capacity
      if (intact) {
        if (!plausible) {
          throw corrupt(`record at ${cursor} has length ${length} and number ${seq}, expected number ${this.#seq}`)
        }
        this.#advance((cursor + size) >>> 0, (this.#seq + 1) >>> 0)
        return value as R
      }
    }
    return this.#catchUp()
  }

  /** Lapped: continue from the oldest record still whole, and say how many were missed. */
  #catchUp(): never {
    const words = this.#words
    for (let attempt = 0; attempt < CATCH_UP_ATTEMPTS; attempt++) {
      // `tail` before `head`. A publish that must drop every record first moves the head to the
      // tail, where its own record is not written yet: the number there is stale. Then the
      // record to expect next is number `published`, if the tail did not move meanwhile.
      const tail = Atomics.load(words, TAIL)
      const head = Atomics.load(words, HEAD)
      let seq: number
      if (head === tail) {
        seq = Atomics.load(words, PUBLISHED)
        if (Atomics.load(words, TAIL) !== tail) continue
      } else {
        if ((head & 7) !== 0 || (tail - head) >>> 0 > this.#capacity) continue
        seq = this.#ringWords[((head + 4) & this.#mask) >>> 2]!
        if ((Atomics.load(words, WRITING) - head) >>> 0 > this.#capacity) continue
      }
      const missed = (seq - this.#seq) >>> 0
      const missedWord = this.#slotBase + T.sMissed / 4
      Atomics.store(words, missedWord, (Atomics.load(words, missedWord) + missed) >>> 0)
      this.#advance(head, seq)
      const error = stateError(
        'ERR_SHM_LAGGED',
        `This subscriber of topic "${this.#handle.name}" fell behind and missed ${missed} messages; it continues from the oldest one still there`,
      )
      throw Object.assign(error, { missed })
    }
    throw corrupt('publishers keep lapping a subscriber that tries to catch up')
  }

  #advance(cursor: number, seq: number): void {
    this.#cursor = cursor
    this.#seq = seq
    const words = this.#words
    // SYNC POINT (consume): the record was used before publishers may reuse its bytes.
    Atomics.store(words, this.#slotBase + T.sCursor / 4, cursor)
    words[this.#slotBase + T.sSeq / 4] = seq
    if (!this.#overwrite) wakeSleepers(this.#handle, words, PUB_SLEEPERS, PUB_EVENT)
  }

  /** The `length` bytes at ring offset `position`: a view, or a joined copy if they wrap. */
  #view(position: number, length: number): Uint8Array {
    if (position + length <= this.#capacity) return this.#bytes.subarray(position, position + length)
    const joined = new Uint8Array(length)
    joined.set(this.#bytes.subarray(position, this.#capacity))
    joined.set(this.#bytes.subarray(0, length - (this.#capacity - position)), this.#capacity - position)
    return joined
  }

  #decodeFailure: unknown

  /** Decodes (from a copy in overwrite mode, where the bytes may change under the decoder). */
  readonly #decodeOrMark = (view: Uint8Array, inRing: boolean): T | typeof UNDECODABLE => {
    try {
      if (this.#overwrite && inRing) return decodeMessage<T>(this.#codec, view.slice(), false)
      return decodeMessage<T>(this.#codec, view, inRing)
    } catch (error) {
      this.#decodeFailure = error
      return UNDECODABLE
    }
  }
}

function corrupt(what: string): Error & ShmkitError {
  return stateError('ERR_SHM_CORRUPT', `Damaged topic: ${what}`)
}

function ended(name: string): Error & ShmkitError {
  return stateError('ERR_SHM_CHANNEL_ENDED', `Topic "${name}" has ended: end() was called`)
}

/** Validates creation options into what the native side takes. */
function topicOptions(options: unknown, extra: readonly string[]) {
  const { capacity, codec, slow, subscribers, mode, autoUnlink } = validateOptions<TopicCreateOptions>(
    options,
    'options',
    ['capacity', 'codec', 'slow', 'subscribers', 'mode', 'autoUnlink', ...extra],
    true,
  )
  if (slow !== undefined && slow !== 'block' && slow !== 'overwrite') {
    throw coded(
      new TypeError(`The "options.slow" option must be 'block' or 'overwrite'. Received ${inspect(slow)}`),
      'ERR_INVALID_ARG_VALUE',
    )
  }
  return {
    capacity: validateInteger(capacity, 'options.capacity', 1, T.maxCapacity),
    codec: CODECS.indexOf(validateCodec(codec, 'codec') ?? 'json'),
    slow: slow ?? 'block',
    subscribers:
      subscribers === undefined
        ? T.defaultSubscribers
        : validateInteger(subscribers, 'options.subscribers', 1, T.maxSubscribers),
    mode: validateMode(mode),
    autoUnlink: validateBoolean(autoUnlink, 'options.autoUnlink'),
  }
}

/** Copies `source` into the ring `bytes` at `position`, wrapping at its end. */
function copyIn(bytes: Uint8Array, source: Uint8Array, position: number): void {
  const first = Math.min(source.length, bytes.length - position)
  bytes.set(first === source.length ? source : source.subarray(0, first), position)
  if (first < source.length) bytes.set(source.subarray(first), 0)
}
