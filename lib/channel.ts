// Channels: cross-process message queues in a shared-memory ring (docs/CHANNELS.md).

import { CH, CHANNEL_MAGIC, CHANNEL_VERSION, MAX_CAPACITY, MIN_CAPACITY, channelStats, type ChannelStats } from './channel-layout'
import { CODECS, EncodedText, decodeMessage, encodeMessage, utf8Encoder, validateCodec, type Codec, type Encoded } from './codec'
import { AbortError, coded, stateError, timedOut, typeError, type ShmkitError } from './errors'
import { CONSTRUCT, KIND_CHANNEL } from './internal'
import { Mutex } from './mutex'
import { Segment, type OpenOptions } from './segment'
import { timeoutOption, validateBoolean, validateInteger, validateMode, validateName, validateOptions, validateSignal, validateTimeout, type AsyncOptions, type TimeoutOptions } from './validate'
import { deadlineOf, nativeWait, remainingMs } from './waiting'

export interface ChannelCreateOptions {
  /** Ring bytes, rounded up to a power of two, 64 to 2^30. Each message takes 4 + its length rounded up to 4. */
  capacity: number
  /** Default codec for every process that opens the channel. Default `'bytes'`. */
  codec?: Codec
  mode?: number
  /** As for segments: remove the channel when the last process that has it open closes it or dies. */
  autoUnlink?: boolean
}

export interface ChannelOpenOptions extends OpenOptions {
  /** Overrides the codec recorded at creation, for this process. */
  codec?: Codec
}


/** A sync `recv`/`send` spins this long on the indices before sleeping in the kernel. */
const SPIN_MICROSECONDS = 50
/** Longest single sleep of a waiting `send`/`recv`: they re-check between sleeps. */
const SLEEP_SLICE_MS = 1000

/** What `#take` returns for an empty channel (distinct from any decoded message). */
const EMPTY = Symbol('empty')
/** What `#take` returns when another consumer held the receive lock (`TRY` attempts only). */
const BUSY = Symbol('busy')
/** What `#append` returns. */
const SENT = 1
const FULL = 0
const SEND_BUSY = -1
/** What `#read` gets for a message that does not decode with the channel's codec. */
const UNDECODABLE = Symbol('undecodable')
function corrupt(what: string): Error & ShmkitError {
  return stateError('ERR_SHM_CORRUPT', `Damaged channel: ${what}`)
}

function channelEnded(name: string): Error & ShmkitError {
  return stateError('ERR_SHM_CHANNEL_ENDED', `Channel "${name}" has ended: end() was called`)
}

function roundUpToPowerOfTwo(value: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(value, MIN_CAPACITY)))
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
  readonly #segment: Segment
  readonly #codec: Codec
  readonly #capacity: number
  readonly #mask: number
  readonly #words: Uint32Array
  readonly #ring: Uint8Array
  readonly #ringWords: Uint32Array
  readonly #sendLock: Mutex
  readonly #recvLock: Mutex

  /** @internal Use `Channel.create` or `Channel.open`. */
  constructor(token: symbol, segment: Segment, codec: Codec | undefined) {
    if (token !== CONSTRUCT) throw coded(new TypeError('Use Channel.create() or Channel.open()'), 'ERR_ILLEGAL_CONSTRUCTOR')
    this.#segment = segment
    this.#words = new Uint32Array(segment.buffer, 0, CH.RING / 4)
    const capacity = this.#words[CH.CAPACITY / 4]!
    if (capacity < MIN_CAPACITY || capacity > MAX_CAPACITY || (capacity & (capacity - 1)) !== 0 || CH.RING + capacity > segment.size) {
      throw corrupt(`impossible capacity ${capacity}`)
    }
    this.#capacity = capacity
    this.#mask = capacity - 1
    this.#codec = codec ?? CODECS[this.#words[CH.CODEC / 4]!] ?? 'bytes'
    this.#ring = new Uint8Array(segment.buffer, CH.RING, capacity)
    this.#ringWords = new Uint32Array(segment.buffer, CH.RING, capacity / 4)
    this.#sendLock = Mutex.at(segment, CH.SEND_LOCK)
    this.#recvLock = Mutex.at(segment, CH.RECV_LOCK)
  }

  /** Creates channel `name` with a ring of `capacity` bytes. Throws `EEXIST` if it exists. */
  static create<T = unknown>(name: string, options: ChannelCreateOptions): Channel<T> {
    validateName(name)
    const { capacity, codec, mode, autoUnlink } = validateOptions<ChannelCreateOptions>(options, 'options', ['capacity', 'codec', 'mode', 'autoUnlink'], true)
    const modeBits = validateMode(mode)
    const remove = validateBoolean(autoUnlink, 'options.autoUnlink')
    const ringBytes = roundUpToPowerOfTwo(validateInteger(capacity, 'options.capacity', 1, MAX_CAPACITY))
    const chosenCodec = validateCodec(codec, 'codec') ?? 'bytes'
    const segment = Segment.createKind(name, { size: CH.RING + ringBytes, mode: modeBits, kind: KIND_CHANNEL, autoUnlink: remove, reserve: true })
    const words = new Uint32Array(segment.buffer, 0, CH.RING / 4)
    words[CH.VERSION / 4] = CHANNEL_VERSION
    words[CH.CAPACITY / 4] = ringBytes
    words[CH.CODEC / 4] = CODECS.indexOf(chosenCodec)
    Atomics.store(words, CH.READY / 4, CHANNEL_MAGIC) // last: openers wait for it
    return new Channel<T>(CONSTRUCT, segment, chosenCodec)
  }

  /** Opens channel `name`. Throws `ENOENT` if absent, `ERR_SHM_WRONG_KIND` for a plain segment. */
  static open<T = unknown>(name: string, options?: ChannelOpenOptions): Channel<T> {
    validateName(name)
    const { codec, readyTimeout } = validateOptions<ChannelOpenOptions>(options, 'options', ['codec', 'readyTimeout'], false)
    const chosenCodec = validateCodec(codec, 'codec')
    const timeoutMs = validateTimeout(readyTimeout, 'options.readyTimeout')
    const segment = Segment.open(name, timeoutMs < 0 ? {} : { readyTimeout: timeoutMs })
    try {
      if (segment.kind !== KIND_CHANNEL) throw stateError('ERR_SHM_WRONG_KIND', `"${name}" is a plain segment, not a channel`)
      const words = new Uint32Array(segment.buffer, 0, CH.RING / 4)
      const deadline = Date.now() + (timeoutMs < 0 ? 2000 : timeoutMs)
      while (Atomics.load(words, CH.READY / 4) !== CHANNEL_MAGIC) {
        if (Date.now() > deadline) throw stateError('ERR_SHM_NOT_READY', `Channel "${name}" was never initialised`)
        segment.wait(CH.READY, Atomics.load(words, CH.READY / 4), 1)
      }
      const version = words[CH.VERSION / 4]
      if (version !== CHANNEL_VERSION) throw stateError('ERR_SHM_VERSION', `Channel "${name}" uses channel layout ${version}; this shmkit reads ${CHANNEL_VERSION}`)
      return new Channel<T>(CONSTRUCT, segment, chosenCodec)
    } catch (error) {
      segment.close()
      throw error
    }
  }

  /** Removes channel `name`; processes that have it open keep using it. */
  static unlink(name: string): void {
    Segment.unlink(name)
  }

  get name(): string {
    return this.#segment.name
  }

  /** Ring bytes. The largest message is `capacity - 4` bytes once encoded. */
  get capacity(): number {
    return this.#capacity
  }

  get codec(): Codec {
    return this.#codec
  }

  /** Whether this handle is closed (`close()`): the channel itself may go on for others. */
  get closed(): boolean {
    return this.#segment.closed
  }

  /**
   * Whether `end()` was called (by any process). Messages may still be waiting to be read.
   * Throws `ERR_SHM_CLOSED` once this handle is closed.
   */
  get ended(): boolean {
    this.#segment.assertOpen()
    return this.#ended()
  }

  /** Bytes of messages (with their 4-byte headers) waiting to be read: a snapshot. Throws
   * `ERR_SHM_CLOSED` once this handle is closed. */
  get bytesInFlight(): number {
    this.#segment.assertOpen()
    return this.#inFlight()
  }

  #ended(): boolean {
    return Atomics.load(this.#words, CH.CLOSED / 4) !== 0
  }

  #inFlight(): number {
    return (Atomics.load(this.#words, CH.TAIL / 4) - Atomics.load(this.#words, CH.HEAD / 4)) >>> 0
  }

  /** A snapshot of the traffic: counts sent and received, what is waiting to be read. */
  stats(): ChannelStats {
    this.#segment.assertOpen()
    return channelStats(this.#words)
  }

  /**
   * Sends `data` if it can be done now; returns false if the channel is full, or if another
   * producer holds the send lock at this instant. Never waits.
   */
  trySend(data: T | Uint8Array | string): boolean {
    const bytes = encodeMessage(this.#codec, data, this.#capacity - 4)
    this.#checkOpenForSend()
    return this.#append(bytes.length, bytes, TRY) === SENT
  }

  /** Sends `data`, waiting while the channel is full; `ETIMEDOUT` after `options.timeout` ms. */
  send(data: T | Uint8Array | string, options?: TimeoutOptions): void {
    const encoded = encodeMessage(this.#codec, data, this.#capacity - 4)
    this.#appendWaiting(encoded.length, encoded, deadlineOf(timeoutOption(options)))
  }

  /** `send` without blocking the event loop; rejects with `ETIMEDOUT` or `AbortError`. */
  async sendAsync(data: T | Uint8Array | string, options?: AsyncOptions): Promise<void> {
    const bytes = encodeMessage(this.#codec, data, this.#capacity - 4)
    const { timeout, signal } = validateOptions<AsyncOptions>(options, 'options', ['timeout', 'signal'], false)
    const deadline = deadlineOf(validateTimeout(timeout, 'options.timeout'))
    const abortSignal = validateSignal(signal)
    // The send lock is only ever held inside one synchronous step, never across an `await`:
    // concurrent async sends of one thread cannot deadlock each other.
    let lock: SideLock = TRY
    for (;;) {
      if (abortSignal?.aborted) throw new AbortError(undefined, { cause: abortSignal.reason })
      this.#checkOpenForSend()
      const outcome = this.#append(bytes.length, bytes, lock)
      if (outcome === SENT) return
      if (outcome === SEND_BUSY) {
        lock = await this.#awaitSideLock(this.#sendLock, deadline, abortSignal)
        continue
      }
      lock = TRY
      const ready = () => this.#hasRoomFor(bytes.length) || this.#ended()
      // A short spin first, as in `send`: an awake peer frees room within microseconds, far
      // sooner than a native waiter could be woken.
      if (this.#spinUntil(ready)) continue
      await this.#sleepAsync(CH.SEND_WAITERS, CH.SEND_EVENT, ready, deadline, abortSignal, 'room in the channel')
    }
  }

  /**
   * Sends a `byteLength`-byte message that `fill(target)` writes straight into the ring: no
   * intermediate buffer for large messages (when the slot wraps around the ring's end, `target`
   * is a temporary copied in afterwards). `fill` runs under the send lock and must be
   * synchronous; if it throws, nothing is sent. Waits for room like `send`. Codec-independent.
   */
  sendWith(byteLength: number, fill: (target: Uint8Array) => void, options?: TimeoutOptions): void {
    const length = validateInteger(byteLength, 'byteLength', 0, this.#capacity - 4)
    if (typeof fill !== 'function') throw typeError('fill', 'of type function', fill)
    const deadline = deadlineOf(timeoutOption(options))
    const put = (payload: number) => {
      if (payload + length <= this.#capacity) return fill(this.#ring.subarray(payload, payload + length))
      const staging = new Uint8Array(length)
      fill(staging)
      this.#copyIn(staging, payload)
    }
    // `fill` is user code run under the send lock: a `close()` inside it waits until the lock
    // is released.
    this.#segment.enter()
    try {
      this.#appendWaiting(length, put, deadline)
    } finally {
      this.#segment.exit()
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
    const deadline = deadlineOf(timeoutOption(options))
    // As in `sendWith`: a `close()` inside `use` waits until the receive lock is released.
    this.#segment.enter()
    try {
      return this.#takeWaiting((lockMs) => this.#take((view) => use(view), lockMs) as R | typeof EMPTY, deadline)
    } finally {
      this.#segment.exit()
    }
  }

  /**
   * Receives the next message if it can be done now; otherwise `undefined` at once: when the
   * channel is empty, or another consumer holds the receive lock at this instant. Never waits.
   * (With the v8 codec, a message that is itself `undefined` looks the same: use `recv` to tell
   * them apart.)
   */
  tryRecv(): T | undefined {
    this.#segment.assertOpen()
    const message = this.#read(TRY)
    return message === EMPTY || message === BUSY ? undefined : message
  }

  /**
   * Receives the next message, waiting for one; `ETIMEDOUT` after `options.timeout` ms,
   * `ERR_SHM_CHANNEL_ENDED` once the channel has ended and is drained.
   */
  recv(options?: TimeoutOptions): T {
    return this.#takeWaiting(this.#readAttempt, deadlineOf(timeoutOption(options)))
  }

  /** `recv` without blocking the event loop; rejects with `ETIMEDOUT`, `AbortError` or `ERR_SHM_CHANNEL_ENDED`. */
  async recvAsync(options?: AsyncOptions): Promise<T> {
    const { timeout, signal } = validateOptions<AsyncOptions>(options, 'options', ['timeout', 'signal'], false)
    const deadline = deadlineOf(validateTimeout(timeout, 'options.timeout'))
    const abortSignal = validateSignal(signal)
    // As in `sendAsync`: the receive lock is never held across an `await`.
    let lock: SideLock = TRY
    for (;;) {
      if (abortSignal?.aborted) throw new AbortError(undefined, { cause: abortSignal.reason })
      this.#segment.assertOpen()
      const message = this.#read(lock)
      if (message === BUSY) {
        lock = await this.#awaitSideLock(this.#recvLock, deadline, abortSignal)
        continue
      }
      lock = TRY
      if (message !== EMPTY) return message
      if (this.#drainedAfterEnd()) throw channelEnded(this.name)
      const ready = () => this.#inFlight() !== 0 || this.#ended()
      if (this.#spinUntil(ready)) continue // as in `sendAsync`
      await this.#sleepAsync(CH.RECV_WAITERS, CH.RECV_EVENT, ready, deadline, abortSignal, 'a message')
    }
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
   * Ends the stream, for every process: later sends fail with `ERR_SHM_CHANNEL_ENDED`, receivers
   * drain what is left and then stop. Idempotent. The flag is set under the send lock, so a send
   * in progress either publishes before the end or fails: nothing is stranded after it. Waits for
   * that lock up to `options.timeout` ms (default: no limit).
   */
  end(options?: TimeoutOptions): void {
    const timeoutMs = timeoutOption(options)
    this.#segment.assertOpen()
    this.#sendLock.acquire(timeoutMs)
    try {
      Atomics.store(this.#words, CH.CLOSED / 4, 1)
    } finally {
      this.#sendLock.releaseInFlight()
    }
    for (const event of [CH.RECV_EVENT, CH.SEND_EVENT]) {
      Atomics.add(this.#words, event / 4, 1)
      this.#segment.native.notify(event, Infinity)
    }
  }

  /**
   * Closes this handle (unmaps the channel from this thread); the channel and its messages stay
   * for everyone else. Idempotent. See `end()` to end the stream.
   */
  close(): void {
    this.#segment.close()
  }

  /** Removes the channel's name. */
  unlink(): void {
    Segment.unlink(this.name)
  }

  [Symbol.dispose](): void {
    this.close()
  }

  /**
   * Whether the stream has ended and nothing is left to read. `ended` is read BEFORE the
   * indices: once it is set no producer publishes any more, so indices read after it are final.
   */
  #drainedAfterEnd(): boolean {
    return this.#ended() && this.#inFlight() === 0
  }

  /**
   * Waits, without holding anything, until the side lock `mutex` (busy at the last attempt) may
   * be free: a short spin (peers hold it for microseconds), then a native waiter. Returns how the
   * next attempt takes it.
   */
  async #awaitSideLock(mutex: Mutex, deadline: number, signal: AbortSignal | undefined): Promise<SideLock> {
    if (this.#spinUntil(() => mutex.looksFree())) return TRY
    const [outcome] = await nativeWait(this.#segment, signal, (token) => mutex.waitForRelease(remainingMs(deadline), token))
    if (outcome === 'timed-out') throw timedOut(`the ${mutex === this.#sendLock ? 'send' : 'receive'} lock of channel "${this.name}"`)
    return outcome === 'owner-dead' ? AFTER_DEATH : AFTER_WAIT
  }

  /** Appends one message (see `#append`), waiting for room until `deadline`: `send`, `sendWith`. */
  #appendWaiting(length: number, content: Encoded | ((payload: number) => void), deadline: number): void {
    let ready // made only once the channel turns out to be full: this is the hot path
    for (;;) {
      this.#checkOpenForSend()
      if (this.#append(length, content, remainingMs(deadline)) === SENT) return
      ready ??= () => this.#hasRoomFor(length) || this.#ended()
      if (this.#spinUntil(ready)) continue
      this.#sleep(CH.SEND_WAITERS, CH.SEND_EVENT, ready, deadline, 'room in the channel')
    }
  }

  /**
   * Runs `attempt(lockTimeoutMs)` (one `#take`) until it finds a message, waiting for one until
   * `deadline`; `ERR_SHM_CHANNEL_ENDED` once ended and drained: `recv`, `recvWith`.
   */
  #takeWaiting<R>(attempt: (lockMs: number) => R | typeof EMPTY, deadline: number): R {
    let ready // made only once the channel turns out to be empty: this is the hot path
    for (;;) {
      this.#segment.assertOpen()
      const result = attempt(remainingMs(deadline))
      if (result !== EMPTY) return result
      if (this.#drainedAfterEnd()) throw channelEnded(this.name)
      ready ??= () => this.#inFlight() !== 0 || this.#ended()
      if (this.#spinUntil(ready)) continue
      this.#sleep(CH.RECV_WAITERS, CH.RECV_EVENT, ready, deadline, 'a message')
    }
  }

  #checkOpenForSend(): void {
    this.#segment.assertOpen()
    if (this.#ended()) throw channelEnded(this.name)
  }

  #usedBytes(head: number, tail: number): number {
    const used = (tail - head) >>> 0
    if (used > this.#capacity || (used & 3) !== 0 || (head & 3) !== 0) throw corrupt(`indices head=${head} tail=${tail}`)
    return used
  }

  #hasRoomFor(length: number): boolean {
    const used = this.#inFlight()
    return used <= this.#capacity && this.#capacity - used >= frameSize(length)
  }

  /**
   * Reserves room for a `length`-byte message under the send lock (taken as `lock` says;
   * released here), copies `content` in (or has `content(payloadPosition)` write it), then
   * publishes it: `SENT`, `FULL`, or `SEND_BUSY` (a `TRY` found the lock held). If writing
   * throws, nothing is published. Throws `ERR_SHM_CHANNEL_ENDED` if the stream ended: checked
   * under the lock, which `end()` takes to set the flag.
   */
  #append(length: number, content: Encoded | ((payload: number) => void), lock: SideLock): number {
    const words = this.#words
    if (!holdSide(this.#sendLock, lock)) return SEND_BUSY
    try {
      if (this.#ended()) throw channelEnded(this.name)
      const tail = Atomics.load(words, CH.TAIL / 4)
      const used = this.#usedBytes(Atomics.load(words, CH.HEAD / 4), tail)
      const need = frameSize(length)
      if (this.#capacity - used < need) return FULL
      const start = tail & this.#mask
      this.#ringWords[start >>> 2] = length
      const payload = (start + 4) & this.#mask
      if (typeof content === 'function') content(payload)
      else if (content instanceof EncodedText) this.#textIn(content, payload)
      else this.#copyIn(content, payload)
      // SYNC POINT (publish): the message is whole before the tail moves past it.
      this.#advance(CH.TAIL, CH.SENT, tail + need)
    } finally {
      this.#sendLock.releaseInFlight()
    }
    this.#wakeSleepers(CH.RECV_WAITERS, CH.RECV_EVENT)
    return SENT
  }

  /** Moves one side's index (seq-cst: the SYNC POINT) and bumps its message counter; the caller holds that side's lock. */
  #advance(indexOffset: number, counterOffset: number, index: number): void {
    const words = this.#words
    Atomics.store(words, indexOffset / 4, index >>> 0)
    words[counterOffset / 4] = (words[counterOffset / 4]! + 1) >>> 0
  }

  /** Encodes `text` into the ring at `payload` (through a temporary only if the slot wraps). */
  #textIn(text: EncodedText, payload: number): void {
    if (payload + text.length <= this.#capacity) utf8Encoder.encodeInto(text.text, this.#ring.subarray(payload, payload + text.length))
    else this.#copyIn(utf8Encoder.encode(text.text), payload)
  }

  /** Copies `bytes` into the ring at `payload`, wrapping at the end. */
  #copyIn(bytes: Uint8Array, payload: number): void {
    const first = Math.min(bytes.length, this.#capacity - payload)
    this.#ring.set(first === bytes.length ? bytes : bytes.subarray(0, first), payload)
    if (first < bytes.length) this.#ring.set(bytes.subarray(first), 0)
  }

  /**
   * Takes one message under the receive lock (taken as `lock` says; released here) and passes
   * its bytes to `use`; `EMPTY` if none, `BUSY` if a `TRY` found the lock held.
   */
  #take<R>(use: (view: Uint8Array, ring: boolean) => R, lock: SideLock): R | typeof EMPTY | typeof BUSY {
    const words = this.#words
    if (!holdSide(this.#recvLock, lock)) return BUSY
    let result: R
    try {
      const head = Atomics.load(words, CH.HEAD / 4)
      const used = this.#usedBytes(head, Atomics.load(words, CH.TAIL / 4))
      if (used === 0) return EMPTY
      const start = head & this.#mask
      const length = this.#ringWords[start >>> 2]!
      const size = frameSize(length)
      if (length > this.#capacity - 4 || size > used) throw corrupt(`message length ${length} with ${used} bytes in flight`)
      const payload = (start + 4) & this.#mask
      if (payload + length <= this.#capacity) result = use(this.#ring.subarray(payload, payload + length), true)
      else {
        const joined = new Uint8Array(length)
        joined.set(this.#ring.subarray(payload, this.#capacity))
        joined.set(this.#ring.subarray(0, length - (this.#capacity - payload)), this.#capacity - payload)
        result = use(joined, false)
      }
      // SYNC POINT (consume): the message is used before its bytes are handed back.
      this.#advance(CH.HEAD, CH.RECEIVED, head + size)
    } finally {
      this.#recvLock.releaseInFlight()
    }
    this.#wakeSleepers(CH.SEND_WAITERS, CH.SEND_EVENT)
    return result
  }

  /**
   * Takes one decoded message; `EMPTY` if there is none (a message may decode to `undefined`,
   * with the v8 codec, so that cannot mean "none"). A message that does not decode
   * (written by a buggy peer, or scribbled over) is consumed and reported as `ERR_SHM_CORRUPT`,
   * so one bad message cannot wedge every receiver.
   */
  #read(lock: SideLock): T | typeof EMPTY | typeof BUSY {
    const message = this.#take(this.#decodeOrMark, lock)
    if (message === UNDECODABLE) {
      const cause = this.#decodeFailure
      this.#decodeFailure = undefined
      throw Object.assign(corrupt(`a message did not decode as ${this.#codec} and was dropped`), { cause })
    }
    return message
  }

  /** `#read` as a value made once, for `recv`'s hot path. */
  readonly #readAttempt = (lockMs: number): T | typeof EMPTY => this.#read(lockMs) as T | typeof EMPTY

  /** Why the last message failed to decode (set by `#decodeOrMark`, read by `#read`). */
  #decodeFailure: unknown

  /** `#decode`, turning a failure into `UNDECODABLE` so `#take` still consumes the message. */
  readonly #decodeOrMark = (view: Uint8Array, inRing: boolean): T | typeof UNDECODABLE => {
    try {
      return decodeMessage<T>(this.#codec, view, inRing)
    } catch (error) {
      this.#decodeFailure = error
      return UNDECODABLE
    }
  }

  /**
   * Wakes every sleeper of one side, if any announced itself: the flag is cleared by the waker
   * (so a burst of messages costs one wake-up, not one per message) and the event bumped before
   * the kernel wake, so a sleeper that read the old event value cannot miss it.
   */
  #wakeSleepers(flagOffset: number, eventOffset: number): void {
    const words = this.#words
    if (Atomics.load(words, flagOffset / 4) !== 0 && Atomics.exchange(words, flagOffset / 4, 0) !== 0) {
      Atomics.add(words, eventOffset / 4, 1)
      this.#segment.native.notify(eventOffset, Infinity)
    }
  }

  /** Spins briefly (an awake peer answers within microseconds); true if `ready()` came true. */
  #spinUntil(ready: () => boolean): boolean {
    const until = performance.now() + SPIN_MICROSECONDS / 1000
    do {
      if (ready()) return true
    } while (performance.now() < until)
    return false
  }

  /**
   * Sleeps until the event word changes (see docs/CHANNELS.md for why no wake-up is lost):
   * read the event, raise the sleeper flag, re-check, then sleep on the event value.
   */
  #sleep(flagOffset: number, eventOffset: number, ready: () => boolean, deadline: number, what: string): void {
    const words = this.#words
    const event = Atomics.load(words, eventOffset / 4)
    Atomics.store(words, flagOffset / 4, 1)
    if (ready()) return
    const left = remainingMs(deadline)
    if (left === 0) throw timedOut(what)
    this.#segment.native.wait(eventOffset, event | 0, Math.min(left < 0 ? SLEEP_SLICE_MS : left, SLEEP_SLICE_MS))
  }

  async #sleepAsync(
    flagOffset: number,
    eventOffset: number,
    ready: () => boolean,
    deadline: number,
    signal: AbortSignal | undefined,
    what: string,
  ): Promise<void> {
    const words = this.#words
    const event = Atomics.load(words, eventOffset / 4)
    Atomics.store(words, flagOffset / 4, 1)
    if (ready()) return
    const left = remainingMs(deadline)
    if (left === 0) throw timedOut(what)
    await this.#segment.waitAsync(eventOffset, event, left < 0 ? SLEEP_SLICE_MS : Math.min(left, SLEEP_SLICE_MS), signal === undefined ? undefined : { signal })
  }
}

/**
 * How a channel operation takes its side's lock: a timeout in ms (-1: none) to wait for it here
 * (sync paths), `TRY` (never wait: `trySend`/`tryRecv`, and async paths before they wait), or,
 * after an asynchronous wait for its release, `AFTER_WAIT`/`AFTER_DEATH` (take it keeping the
 * WAITERS bit, or take it over from a holder judged dead).
 */
type SideLock = number
const TRY = -2
const AFTER_WAIT = -3
const AFTER_DEATH = -4

/** Takes a side's lock as `lock` says; false if it was busy (never for a timeout: that waits). */
function holdSide(mutex: Mutex, lock: SideLock): boolean {
  if (lock >= -1) {
    mutex.acquire(lock)
    return true
  }
  if (lock === TRY) return mutex.tryAcquire()
  return mutex.acquireAfterWait(lock === AFTER_DEATH)
}

/** Bytes a message of `length` bytes occupies in the ring: a 4-byte length, then padded to 4. */
function frameSize(length: number): number {
  return 4 + ((length + 3) & ~3)
}
