// Channels: cross-process message queues in a shared-memory ring. The ring protocol is in
// lib/ring.ts (mirroring crates/shmkit-core/src/channel.rs); this is the public class: codecs,
// blocking, async and iteration.

import { inspect } from 'node:util'

import {
  CODECS,
  decodeMessage,
  encodeMessage,
  validateCodec,
  type Codec,
  type CodecValues,
  type Encoded,
} from './codec'
import { AbortError, coded, describe, stateError, typeError, type ShmkitError } from './errors'
import { Handle } from './handle'
import { channelStats, type ChannelPeers, type ChannelStats } from './inspect'
import { CONSTRUCT, HANDLE } from './internal'
import { CONTRACT, NativeSegment } from './native'
import {
  BUSY,
  EMPTY,
  FULL,
  RECV_EVENT,
  RECV_SLEEPERS,
  Ring,
  SEND_BUSY,
  SEND_EVENT,
  SEND_SLEEPERS,
  SENT_ONE,
  TRY,
  channelEnded,
  corrupt,
  type SideLock,
} from './ring'
import type { OpenOptions } from './segment'
import {
  nativeCreateOptions,
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
import { InFlight, take, type Job, type TakeOptions } from './queue'

const CH = CONTRACT.channel

export interface ChannelCreateOptions<C extends Codec = Codec> {
  /** Ring bytes, rounded up to a power of two, 64 to 2^30. Each message takes 4 + its length rounded up to 4. */
  capacity: number
  /** Codec of every process that opens the channel (unless it overrides it). Default `'bytes'`. */
  codec?: C
  /** Permission bits, as for segments. Default `0o600`. */
  mode?: number
  /** As for segments: remove the channel when the last process that has it open closes it or dies. */
  autoUnlink?: boolean
  /** What this handle's waiting receives and sends do once the other side is gone: see `IfPeersGone`. */
  ifPeersGone?: IfPeersGone
}

export interface ChannelOpenOptions<C extends Codec = Codec> extends OpenOptions {
  /** Overrides the codec recorded at creation, for this handle. */
  codec?: C
  /** What this handle's waiting receives and sends do once the other side is gone: see `IfPeersGone`. */
  ifPeersGone?: IfPeersGone
}

/**
 * What a handle's waiting receive does once the channel is empty, not ended, and every producer
 * it has seen is gone (its process died, or it closed the channel), and what a waiting send does
 * once the channel is full and every consumer is gone:
 * - `'wait'` (the default): wait on (another may come; `timeout` still applies);
 * - `'end'`: receivers take it as the end of the stream (`ERR_SHM_CHANNEL_ENDED`, `for await`
 *   ends); senders throw `ERR_SHM_NO_CONSUMERS`;
 * - `'throw'`: receivers throw `ERR_SHM_NO_PRODUCERS`, senders `ERR_SHM_NO_CONSUMERS`.
 *
 * A peer counts from its first send (producer) or receive (consumer). A side nobody has played
 * yet is not "gone": receivers started before any producer wait as usual.
 */
export type IfPeersGone = 'wait' | 'end' | 'throw'

const PEERS_WAIT = 0
const PEERS_END = 1
const PEERS_THROW = 2
const PRODUCER = 1
const CONSUMER = 2
/** Sleep slice of a handle that watches for its peers: a death is noticed within it. */
const PEERS_SLICE_MS = 250

function validateIfPeersGone(value: unknown): number {
  if (value === undefined || value === 'wait') return PEERS_WAIT
  if (value === 'end') return PEERS_END
  if (value === 'throw') return PEERS_THROW
  throw coded(
    new TypeError(`The "options.ifPeersGone" option must be 'wait', 'end' or 'throw'. Received ${describe(value)}`),
    'ERR_INVALID_ARG_VALUE',
  )
}

/** What a channel of messages `T` accepts: bytes channels also take strings and any byte view. */
export type Sendable<T> = T extends Uint8Array ? ArrayBufferView | string : T

/** What `#read` gets for a message that does not decode with the channel's codec. */
const UNDECODABLE = Symbol('undecodable')

function roundUpToPowerOfTwo(value: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(value, CH.minCapacity)))
}

/**
 * A cross-process message queue in shared memory, for any number of producer and consumer
 * processes and worker threads.
 *
 * Every message is delivered exactly once and whole, in order per producer; a full channel makes
 * `send` wait (or `trySend` return false), it never drops. `end()` marks the end of the stream
 * for everyone: receivers drain what is left, then `recv` throws `ERR_SHM_CHANNEL_ENDED` and
 * `for await` loops end. `close()` unmaps this handle only.
 */
export class Channel<T = unknown> {
  /** @internal */
  readonly [HANDLE]: Handle
  readonly #ring: Ring
  readonly #codec: Codec
  /** `ifPeersGone`, as PEERS_*. */
  readonly #ifPeersGone: number
  /** Sleep slice: shorter when watching for peers. */
  readonly #sliceMs: number
  /** Roles announced (PRODUCER, CONSUMER bits). */
  #roles = 0

  /** @internal Use `Channel.create`, `Channel.open` or `Channel.openOrCreate`. */
  constructor(token: symbol, handle: Handle, codec: Codec | undefined, ifPeersGone = PEERS_WAIT) {
    if (token !== CONSTRUCT)
      throw coded(
        new TypeError('Use Channel.create(), Channel.open() or Channel.openOrCreate()'),
        'ERR_ILLEGAL_CONSTRUCTOR',
      )
    this[HANDLE] = handle
    this.#ring = new Ring(handle)
    this.#codec = codec ?? CODECS[this.#ring.words[CH.codec / 4]!] ?? 'bytes'
    this.#ifPeersGone = ifPeersGone
    this.#sliceMs = ifPeersGone === PEERS_WAIT ? 1000 : PEERS_SLICE_MS
    // This handle's attach slot may carry the roles of a previous holder: clear them.
    handle.native.channelJoin()
    Object.assign(this.#taker, { name: handle.name, ring: this.#ring, codec: this.#codec })
  }

  /** Creates channel `name` with a ring of `capacity` bytes. Throws `EEXIST` if it exists. */
  static create<C extends Codec = 'bytes'>(name: string, options: ChannelCreateOptions<C>): Channel<CodecValues[C]>
  /** Creates a json or v8 channel of messages `M`. */
  static create<M>(name: string, options: ChannelCreateOptions<'json' | 'v8'>): Channel<M>
  static create(name: string, options: ChannelCreateOptions): Channel<unknown> {
    validateName(name)
    const { ringBytes, codec, native, ifPeersGone } = createOptions(options, [])
    const handle = Handle.create(name, native)
    initialise(handle, ringBytes, codec)
    return new Channel(CONSTRUCT, handle, codec, ifPeersGone)
  }

  /**
   * Opens channel `name`. Throws `ENOENT` if it does not exist (after `options.wait` ms),
   * `ERR_SHM_WRONG_KIND` if it is not a channel.
   */
  static open<M = unknown>(name: string, options?: ChannelOpenOptions): Channel<M> {
    validateName(name)
    const open = openOptions(options, ['codec', 'ifPeersGone'])
    const codec = validateCodec((options as ChannelOpenOptions | undefined)?.codec, 'codec')
    const ifPeersGone = validateIfPeersGone((options as ChannelOpenOptions | undefined)?.ifPeersGone)
    return ready(Handle.open(name, open), open.readyTimeoutMs, codec, ifPeersGone)
  }

  /**
   * Opens `name`, creating it if needed: safe to race from many processes (exactly one creates
   * it, `created` tells which). Throws `ERR_SHM_SIZE_MISMATCH` if it exists with another
   * capacity, `ERR_SHM_WRONG_KIND` if it is not a channel.
   */
  static openOrCreate<C extends Codec = 'bytes'>(
    name: string,
    options: ChannelCreateOptions<C> & Pick<OpenOptions, 'readyTimeout' | 'owner'>,
  ): Channel<CodecValues[C]>
  static openOrCreate<M>(
    name: string,
    options: ChannelCreateOptions<'json' | 'v8'> & Pick<OpenOptions, 'readyTimeout' | 'owner'>,
  ): Channel<M>
  static openOrCreate(
    name: string,
    options: ChannelCreateOptions & Pick<OpenOptions, 'readyTimeout' | 'owner'>,
  ): Channel<unknown> {
    validateName(name)
    const { ringBytes, codec, native, ifPeersGone } = createOptions(options, ['readyTimeout', 'owner'])
    const open = openOptions({ readyTimeout: options.readyTimeout, owner: options.owner }, [])
    // The native side refuses an existing object of another kind, size (ring capacity) or owner.
    const handle = Handle.openOrCreate(name, native, open)
    if (!handle.native.created) return ready(handle, open.readyTimeoutMs, undefined, ifPeersGone)
    initialise(handle, ringBytes, codec)
    return new Channel(CONSTRUCT, handle, codec, ifPeersGone)
  }

  /**
   * Removes channel `name`; processes that have it open keep using it. Throws `ENOENT` if absent,
   * `ERR_SHM_WRONG_KIND` if `name` is not a channel.
   */
  static unlink(name: string): void {
    NativeSegment.unlink(validateName(name), CONTRACT.kinds.indexOf('channel'))
  }

  get name(): string {
    return this[HANDLE].name
  }

  /** Ring bytes. The largest message is `capacity - 4` bytes once encoded. */
  get capacity(): number {
    return this.#ring.capacity
  }

  get codec(): Codec {
    return this.#codec
  }

  /** Whether this handle created the channel (as opposed to opening it). */
  get created(): boolean {
    return this[HANDLE].native.created
  }

  /** Whether this handle is closed (`close()`): the channel itself may go on for others. */
  get closed(): boolean {
    return this[HANDLE].closed
  }

  /**
   * Whether `end()` was called (by any process). Messages may still be waiting to be read.
   * Throws `ERR_SHM_CLOSED` once this handle is closed.
   */
  get ended(): boolean {
    this[HANDLE].assertOpen()
    return this.#ring.ended()
  }

  /** Bytes of messages (with their 4-byte headers) waiting to be read: a snapshot. Throws
   * `ERR_SHM_CLOSED` once this handle is closed. */
  get bytesInFlight(): number {
    this[HANDLE].assertOpen()
    return this.#ring.inFlight()
  }

  /** A snapshot of the traffic: counts sent and received, what is waiting to be read. */
  stats(): ChannelStats {
    this[HANDLE].assertOpen()
    return channelStats(this.#ring.words)
  }

  /**
   * Who produces into and consumes from this channel, in every process, with whether each is
   * alive: a snapshot. A handle counts as a producer from its first send, as a consumer from its
   * first receive or take; it stops counting when it closes, is garbage-collected unclosed, or its
   * process dies.
   */
  peers(): ChannelPeers {
    this[HANDLE].assertOpen()
    return this[HANDLE].native.channelPeers() as ChannelPeers
  }

  /** Records this handle's role (`ch.peers()`); callers test `#roles` first, inline (hot paths). */
  #announce(role: number): void {
    this[HANDLE].native.channelAnnounce(role)
    this.#roles |= role
  }

  /**
   * Before a receive sleeps: with `ifPeersGone`, stops once every producer is gone and the ring
   * is still empty (read after the peers: a producer publishes before it can be seen dead), and
   * `nothingElse()` (the in-flight table of `take`, also empty).
   */
  readonly #checkProducers = (nothingElse?: () => boolean): void => {
    if (this.#ifPeersGone === PEERS_WAIT) return
    if (!this[HANDLE].native.channelPeers().producersGone) return
    if (this.#ring.inFlight() !== 0 || this.#ring.ended() || (nothingElse !== undefined && !nothingElse())) return
    const message = `Channel "${this.name}" is empty and every producer is gone`
    throw stateError(this.#ifPeersGone === PEERS_END ? 'ERR_SHM_CHANNEL_ENDED' : 'ERR_SHM_NO_PRODUCERS', message)
  }

  /** Before a send sleeps: with `ifPeersGone`, stops once every consumer is gone and there is still no room. */
  #checkConsumers(length: number): void {
    if (this.#ifPeersGone === PEERS_WAIT) return
    if (!this[HANDLE].native.channelPeers().consumersGone) return
    if (this.#ring.hasRoomFor(length) || this.#ring.ended()) return
    throw stateError('ERR_SHM_NO_CONSUMERS', `Channel "${this.name}" is full and every consumer is gone`)
  }

  /**
   * Sends `data` if it can be done now; returns false if the channel is full, or if another
   * producer holds the send lock at this instant. Never waits.
   */
  trySend(data: Sendable<T>): boolean {
    const encoded = encodeMessage(this.#codec, data, this.#ring.capacity - 4)
    this.#checkOpenForSend()
    if ((this.#roles & PRODUCER) === 0) this.#announce(PRODUCER)
    return this.#ring.append(encoded.length, encoded, TRY) === SENT_ONE
  }

  /** Sends `data`, waiting while the channel is full; `ETIMEDOUT` after `options.timeout` ms. */
  send(data: Sendable<T>, options?: TimeoutOptions): void {
    const encoded = encodeMessage(this.#codec, data, this.#ring.capacity - 4)
    this.#appendWaiting(encoded.length, encoded, timeoutOption(options))
  }

  /** `send` without blocking the event loop; rejects with `ETIMEDOUT` or `AbortError`. */
  async sendAsync(data: Sendable<T>, options?: AsyncOptions): Promise<void> {
    const encoded = encodeMessage(this.#codec, data, this.#ring.capacity - 4)
    const { timeout, signal } = validateOptions<AsyncOptions>(options, 'options', ['timeout', 'signal'], false)
    const timeoutMs = validateTimeout(timeout, 'options.timeout')
    const deadline = deadlineOf(timeoutMs)
    const abortSignal = validateSignal(signal)
    const ring = this.#ring
    // The send lock is only ever held inside one synchronous step, never across an `await`:
    // concurrent async sends of one thread cannot deadlock each other.
    let lock: SideLock = TRY
    for (;;) {
      if (abortSignal?.aborted) throw new AbortError(undefined, { cause: abortSignal.reason })
      this.#checkOpenForSend()
      if ((this.#roles & PRODUCER) === 0) this.#announce(PRODUCER)
      const outcome = ring.append(encoded.length, encoded, lock)
      if (outcome === SENT_ONE) return
      if (outcome === SEND_BUSY) {
        lock = await ring.awaitSideLock(ring.sendLock, deadline, abortSignal, timeoutMs)
        continue
      }
      lock = TRY
      const ready = () => ring.hasRoomFor(encoded.length) || ring.ended()
      // A short spin first, as in `send`: an awake peer frees room within microseconds, far
      // sooner than a native waiter could be woken.
      if (ring.spinUntil(ready)) continue
      this.#checkConsumers(encoded.length)
      await ring.waitForAsync(
        SEND_SLEEPERS,
        SEND_EVENT,
        ready,
        deadline,
        abortSignal,
        this.#roomWhat,
        timeoutMs,
        this.#sliceMs,
      )
    }
  }

  /**
   * Sends a `byteLength`-byte message that `fill(target)` writes straight into the ring: no
   * intermediate buffer for large messages (when the slot wraps around the ring's end, `target`
   * is a temporary copied in afterwards). `fill` runs under the send lock and must be
   * synchronous; if it throws, nothing is sent. Waits for room like `send`. Codec-independent.
   */
  sendWith(byteLength: number, fill: (target: Uint8Array) => void, options?: TimeoutOptions): void {
    const length = validateInteger(byteLength, 'byteLength', 0, this.#ring.capacity - 4)
    if (typeof fill !== 'function') throw typeError('fill', 'of type function', fill)
    const timeoutMs = timeoutOption(options)
    const ring = this.#ring
    const put = (payload: number) => {
      if (payload + length <= ring.capacity) return fill(ring.bytes.subarray(payload, payload + length))
      const staging = new Uint8Array(length)
      fill(staging)
      ring.copyIn(staging, payload)
    }
    // `fill` is user code run under the send lock: a `close()` inside it waits until the lock
    // is released.
    this[HANDLE].enter()
    try {
      this.#appendWaiting(length, put, timeoutMs)
    } finally {
      this[HANDLE].exit()
    }
  }

  /**
   * Receives the next message and passes its raw bytes to `use(view)`, returning what `use`
   * returns: `view` looks straight into the ring (no copy) and is valid only during the call.
   * `use` runs under the receive lock and must be synchronous; if it throws, the message is NOT
   * consumed and stays for the next receiver. Waits like `recv`.
   */
  recvWith<R>(use: (view: Uint8Array) => R, options?: TimeoutOptions): R {
    if (typeof use !== 'function') throw typeError('use', 'of type function', use)
    const timeoutMs = timeoutOption(options)
    // As in `sendWith`: a `close()` inside `use` waits until the receive lock is released.
    this[HANDLE].enter()
    try {
      return this.#takeWaiting((lockMs) => this.#ring.take((view) => use(view), lockMs) as R | typeof EMPTY, timeoutMs)
    } finally {
      this[HANDLE].exit()
    }
  }

  /**
   * Receives the next message if it can be done now; otherwise `undefined` at once: when the
   * channel is empty, or another consumer holds the receive lock at this instant. Never waits.
   * (With the v8 codec, a message that is itself `undefined` looks the same: use `recv` to tell
   * them apart.)
   */
  tryRecv(): T | undefined {
    this[HANDLE].assertOpen()
    if ((this.#roles & CONSUMER) === 0) this.#announce(CONSUMER)
    const message = this.#read(TRY)
    return message === EMPTY || message === BUSY ? undefined : message
  }

  /**
   * Receives the next message, waiting for one; `ETIMEDOUT` after `options.timeout` ms,
   * `ERR_SHM_CHANNEL_ENDED` once the channel has ended and is drained.
   */
  recv(options?: TimeoutOptions): T {
    return this.#takeWaiting(this.#readAttempt, timeoutOption(options))
  }

  /** `recv` without blocking the event loop; rejects with `ETIMEDOUT`, `AbortError` or `ERR_SHM_CHANNEL_ENDED`. */
  async recvAsync(options?: AsyncOptions): Promise<T> {
    const { timeout, signal } = validateOptions<AsyncOptions>(options, 'options', ['timeout', 'signal'], false)
    const timeoutMs = validateTimeout(timeout, 'options.timeout')
    const deadline = deadlineOf(timeoutMs)
    const abortSignal = validateSignal(signal)
    const ring = this.#ring
    // As in `sendAsync`: the receive lock is never held across an `await`.
    let lock: SideLock = TRY
    for (;;) {
      if (abortSignal?.aborted) throw new AbortError(undefined, { cause: abortSignal.reason })
      this[HANDLE].assertOpen()
      if ((this.#roles & CONSUMER) === 0) this.#announce(CONSUMER)
      const message = this.#read(lock)
      if (message === BUSY) {
        lock = await ring.awaitSideLock(ring.recvLock, deadline, abortSignal, timeoutMs)
        continue
      }
      lock = TRY
      if (message !== EMPTY) return message
      if (ring.drainedAfterEnd()) throw channelEnded(this.name)
      const ready = () => ring.inFlight() !== 0 || ring.ended()
      if (ring.spinUntil(ready)) continue // as in `sendAsync`
      this.#checkProducers()
      await ring.waitForAsync(
        RECV_SLEEPERS,
        RECV_EVENT,
        ready,
        deadline,
        abortSignal,
        this.#messageWhat,
        timeoutMs,
        this.#sliceMs,
      )
    }
  }

  /**
   * Takes the next message for processing, to be acknowledged: resolves with a `Job` whose
   * `ack()` removes it for good. Until then the message stays in the channel's in-flight table:
   * if this consumer dies (its process or worker thread) or does not `ack()` within
   * `options.leaseMs` (default 30 s), or calls `nack()`, the message is delivered again to the
   * next `take()` of any consumer, with `deliveries` counting; after `options.maxDeliveries`
   * (default 5) it goes to `options.deadLetter` instead. At least once (a message can be
   * delivered again after a crash), where `recv` is exactly once without acknowledgement.
   * Rejects with `ERR_SHM_CHANNEL_ENDED` once the channel ended, is drained and nothing is in
   * flight.
   */
  take(options?: TakeOptions): Promise<Job<T>> {
    if ((this.#roles & CONSUMER) === 0 && !this[HANDLE].closed) this.#announce(CONSUMER)
    return take<T>(this.#taker, options)
  }

  #inflight: InFlight | undefined
  readonly #taker = {
    name: '',
    ring: undefined as unknown as Ring,
    codec: 'bytes' as Codec,
    checkProducers: this.#checkProducers,
    inflight: () => (this.#inflight ??= new InFlight(this.name, this.#ring.capacity)),
    assertOpen: () => this[HANDLE].assertOpen(),
    awaitRecvLock: (deadline: number, signal: AbortSignal | undefined, timeoutMs: number) =>
      this.#ring.awaitSideLock(this.#ring.recvLock, deadline, signal, timeoutMs),
  }

  /** Receives until the channel has ended and is drained. */
  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    for (;;) {
      try {
        yield await this.recvAsync()
      } catch (error) {
        if ((error as ShmkitError).code === 'ERR_SHM_CHANNEL_ENDED') return
        throw error
      }
    }
  }

  /**
   * Sends every message of `messages` (an array or any iterable), in order, paying the send lock,
   * the publication and the wake-up once per batch that fits instead of once per message; waits
   * for room like `send` (`options.timeout` bounds the whole call). Returns how many were sent
   * (all of them, unless it throws: then the ones before the failure were sent).
   */
  sendMany(messages: Iterable<Sendable<T>>, options?: TimeoutOptions): number {
    if (typeof (messages as Partial<Iterable<unknown>> | null)?.[Symbol.iterator] !== 'function') {
      throw typeError('messages', 'an iterable (an array, a Set, a generator, ...)', messages)
    }
    const timeoutMs = timeoutOption(options)
    const capacity = this.#ring.capacity - 4
    const encoded: Encoded[] = []
    for (const message of messages) encoded.push(encodeMessage(this.#codec, message, capacity))
    const ring = this.#ring
    this[HANDLE].assertOpen()
    if ((this.#roles & PRODUCER) === 0) this.#announce(PRODUCER)
    let sent = ring.appendMany(encoded, 0, timeoutMs).count
    if (sent === encoded.length) return sent
    const deadline = deadlineOf(timeoutMs)
    for (;;) {
      const length = encoded[sent]!.length
      const ready = () => ring.hasRoomFor(length) || ring.ended()
      if (!ring.spinUntil(ready)) {
        this.#checkConsumers(length)
        ring.waitFor(SEND_SLEEPERS, SEND_EVENT, ready, deadline, this.#roomWhat, timeoutMs, this.#sliceMs)
      }
      this[HANDLE].assertOpen()
      sent += ring.appendMany(encoded, sent, remainingMs(deadline)).count
      if (sent === encoded.length) return sent
    }
  }

  /**
   * Receives up to `max` messages at once: waits like `recv` for the first, then takes whatever
   * else is there (up to `max`) under one holding of the receive lock, with one wake-up. Returns
   * them in order (at least one); `ERR_SHM_CHANNEL_ENDED` once the stream has ended and is
   * drained. A message that does not decode is dropped with `ERR_SHM_CORRUPT` after the ones
   * before it are returned on the next call.
   */
  recvMany(max: number, options?: TimeoutOptions): T[] {
    const limit = validateInteger(max, 'max', 1, 2 ** 32)
    const timeoutMs = timeoutOption(options)
    const out: T[] = []
    this.#takeWaiting((lockMs) => this.#readMany(limit, out, lockMs), timeoutMs)
    return out
  }

  /**
   * Ends the stream, for every process: later sends fail with `ERR_SHM_CHANNEL_ENDED`, receivers
   * drain what is left and then stop. Idempotent. The flag is set under the send lock, so a send
   * in progress either publishes before the end or fails: nothing is stranded after it. Waits for
   * that lock up to `options.timeout` ms (default: no limit).
   */
  end(options?: TimeoutOptions): void {
    const timeoutMs = timeoutOption(options)
    this[HANDLE].assertOpen()
    this.#ring.end(timeoutMs)
  }

  /**
   * Closes this handle (unmaps the channel from this thread); the channel and its messages stay
   * for everyone else. Idempotent. See `end()` to end the stream.
   */
  close(): void {
    this.#inflight?.close()
    this[HANDLE].close()
  }

  /** Removes the channel's name (this handle stays usable until closed). */
  unlink(): void {
    Channel.unlink(this.name)
  }

  [Symbol.dispose](): void {
    this.close()
  }

  /** `util.inspect(ch)`: `Channel { name: 'jobs', codec: 'json', capacity: 65536, closed: false }`. */
  [inspect.custom](): string {
    const { name, closed } = this[HANDLE]
    return `Channel ${inspect({ name, codec: this.#codec, capacity: this.#ring.capacity, closed }, { breakLength: Infinity })}`
  }

  readonly #roomWhat = () => `room in channel "${this.name}"`
  readonly #messageWhat = () => `a message in channel "${this.name}"`

  /** Appends one message, waiting for room up to `timeoutMs`: `send`, `sendWith`. */
  #appendWaiting(length: number, content: Encoded | ((payload: number) => void), timeoutMs: number): void {
    const ring = this.#ring
    this[HANDLE].assertOpen()
    if ((this.#roles & PRODUCER) === 0) this.#announce(PRODUCER)
    // The hot path: room at once. No clock is read, no closure made, until the channel is full.
    if (ring.append(length, content, timeoutMs) !== FULL) return
    const deadline = deadlineOf(timeoutMs)
    const ready = () => ring.hasRoomFor(length) || ring.ended()
    for (;;) {
      if (!ring.spinUntil(ready)) {
        this.#checkConsumers(length)
        ring.waitFor(SEND_SLEEPERS, SEND_EVENT, ready, deadline, this.#roomWhat, timeoutMs, this.#sliceMs)
      }
      this[HANDLE].assertOpen()
      if (ring.append(length, content, remainingMs(deadline)) !== FULL) return
    }
  }

  /**
   * Runs `attempt(lockTimeoutMs)` (one `take`) until it finds a message, waiting for one up to
   * `timeoutMs`; `ERR_SHM_CHANNEL_ENDED` once ended and drained: `recv`, `recvWith`.
   */
  #takeWaiting<R>(attempt: (lockMs: number) => R | typeof EMPTY, timeoutMs: number): R {
    const ring = this.#ring
    this[HANDLE].assertOpen()
    if ((this.#roles & CONSUMER) === 0) this.#announce(CONSUMER)
    // The hot path: a message at once. No clock is read, no closure made, until it is empty.
    const first = attempt(timeoutMs)
    if (first !== EMPTY) return first
    const deadline = deadlineOf(timeoutMs)
    const ready = () => ring.inFlight() !== 0 || ring.ended()
    for (;;) {
      if (ring.drainedAfterEnd()) throw channelEnded(this.name)
      if (!ring.spinUntil(ready)) {
        this.#checkProducers()
        ring.waitFor(RECV_SLEEPERS, RECV_EVENT, ready, deadline, this.#messageWhat, timeoutMs, this.#sliceMs)
      }
      this[HANDLE].assertOpen()
      const result = attempt(remainingMs(deadline))
      if (result !== EMPTY) return result
    }
  }

  /** For the async paths, before they wait: closed handle, or ended stream (`append` checks
   * the latter again under the send lock). */
  #checkOpenForSend(): void {
    this[HANDLE].assertOpen()
    if (this.#ring.ended()) throw channelEnded(this.name)
  }

  /**
   * Takes one decoded message; `EMPTY` if there is none (a message may decode to `undefined`,
   * with the v8 codec, so that cannot mean "none"). A message that does not decode
   * (written by a buggy peer, or scribbled over) is consumed and reported as `ERR_SHM_CORRUPT`,
   * so one bad message cannot wedge every receiver.
   */
  #read(lock: SideLock): T | typeof EMPTY | typeof BUSY {
    const message = this.#ring.take(this.#decodeOrMark, lock)
    if (message === UNDECODABLE) {
      const cause = this.#decodeFailure
      this.#decodeFailure = undefined
      throw Object.assign(corrupt(`a message did not decode as ${this.#codec} and was dropped`), { cause })
    }
    return message
  }

  /** Takes up to `max` decoded messages into `out`; `EMPTY` if none. A message that does not
   * decode is taken only first in a batch (see `takeMany`), dropped and reported as `#read` does. */
  #readMany(max: number, out: T[], lock: SideLock): true | typeof EMPTY {
    const values = out as (T | typeof UNDECODABLE)[]
    const taken = this.#ring.takeMany(this.#decodeOrMark, max, values, lock, UNDECODABLE)
    if (taken === BUSY || taken === 0) return EMPTY
    if (values[0] === UNDECODABLE) {
      values.length = 0
      const cause = this.#decodeFailure
      this.#decodeFailure = undefined
      throw Object.assign(corrupt(`a message did not decode as ${this.#codec} and was dropped`), { cause })
    }
    return true
  }

  /** `#read` as a value made once, for `recv`'s hot path. */
  readonly #readAttempt = (lockMs: number): T | typeof EMPTY => this.#read(lockMs) as T | typeof EMPTY

  /** Why the last message failed to decode (set by `#decodeOrMark`, read by `#read`). */
  #decodeFailure: unknown

  /** Decodes, turning a failure into `UNDECODABLE` so `take` still consumes the message. */
  readonly #decodeOrMark = (view: Uint8Array, inRing: boolean): T | typeof UNDECODABLE => {
    try {
      return decodeMessage<T>(this.#codec, view, inRing)
    } catch (error) {
      this.#decodeFailure = error
      return UNDECODABLE
    }
  }
}

/** Validates creation options: ring bytes, codec, and the segment options for the native side. */
function createOptions(options: unknown, extra: readonly string[]) {
  const { capacity, codec, mode, autoUnlink, ifPeersGone } = validateOptions<ChannelCreateOptions>(
    options,
    'options',
    ['capacity', 'codec', 'mode', 'autoUnlink', 'ifPeersGone', ...extra],
    true,
  )
  const ringBytes = roundUpToPowerOfTwo(validateInteger(capacity, 'options.capacity', 1, CH.maxCapacity))
  const native = nativeCreateOptions(
    {
      size: CH.ring + ringBytes,
      mode: validateMode(mode),
      autoUnlink: validateBoolean(autoUnlink, 'options.autoUnlink'),
      reserve: true,
    },
    'channel',
    [],
  )
  return {
    ringBytes,
    codec: validateCodec(codec, 'codec') ?? 'bytes',
    native,
    ifPeersGone: validateIfPeersGone(ifPeersGone),
  }
}

/** Writes a new channel's control block; the `ready` magic goes last (openers wait for it). */
function initialise(handle: Handle, ringBytes: number, codec: Codec): void {
  const words = new Uint32Array(handle.data, 0, CH.ring / 4)
  words[CH.version / 4] = CH.layoutVersion
  words[CH.capacity / 4] = ringBytes
  words[CH.codec / 4] = CODECS.indexOf(codec)
  Atomics.store(words, CH.ready / 4, CH.magic)
}

/**
 * A channel over an opened handle, once its creator has finished the control block (waiting up
 * to `readyTimeoutMs`, -1: the default 2 s); the handle is closed if it is not a channel.
 */
function ready<M>(handle: Handle, readyTimeoutMs: number, codec: Codec | undefined, ifPeersGone: number): Channel<M> {
  try {
    if (handle.kind !== 'channel')
      throw coded(new Error(`"${handle.name}" is a ${handle.kind}, not a channel`), 'ERR_SHM_WRONG_KIND')
    const words = new Uint32Array(handle.data, 0, CH.ring / 4)
    const deadline = Date.now() + (readyTimeoutMs < 0 ? CONTRACT.defaultReadyTimeoutMs : readyTimeoutMs)
    while (Atomics.load(words, CH.ready / 4) !== CH.magic) {
      if (Date.now() > deadline)
        throw coded(new Error(`Channel "${handle.name}" was never initialised`), 'ERR_SHM_NOT_READY')
      handle.native.wait(CH.ready, Atomics.load(words, CH.ready / 4) | 0, 1)
    }
    const version = words[CH.version / 4]
    if (version !== CH.layoutVersion) {
      throw coded(
        new Error(`Channel "${handle.name}" uses channel layout ${version}; this shmkit reads ${CH.layoutVersion}`),
        'ERR_SHM_VERSION',
      )
    }
    return new Channel<M>(CONSTRUCT, handle, codec, ifPeersGone)
  } catch (error) {
    handle.close()
    throw error
  }
}
