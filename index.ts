/**
 * shmkit: named shared memory for Node.js.
 *
 * - `Segment`: a named shared-memory segment, seen as one zero-copy `ArrayBuffer`.
 * - `Mutex`: an inter-process lock in the segment header or anywhere in the data area.
 * - `seg.wait` / `seg.notify`: `Atomics.wait`/`notify` that work across processes.
 *
 * Arguments are validated here, Node-style (`TypeError`/`RangeError` with a `code`), before any
 * native call. The uncontended lock and unlock run entirely in JavaScript on the mapped lock word
 * (the protocol is in docs/LOCKING.md); native code is called only to sleep, wake or recover.
 */

import { deserialize, serialize } from 'node:v8'

import type * as Binding from './binding'

const { NativeSegment, WaitToken, currentThreadIdentity } = loadBinding()
type NativeSegment = Binding.NativeSegment
type WaitToken = Binding.WaitToken

/** The platform as the binary packages name it, e.g. `linux-x64-gnu`, `darwin-arm64`. */
function platformName(): string {
  if (process.platform !== 'linux') return `${process.platform}-${process.arch}`
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header
  return `linux-${process.arch}-${header?.glibcVersionRuntime ? 'gnu' : 'musl'}`
}

/** Loads the native addon for this platform, or explains clearly why there is none. */
function loadBinding(): typeof Binding {
  try {
    return require('./binding') as typeof Binding
  } catch (error) {
    const platform = platformName()
    throw coded(
      new Error(
        `shmkit has no native binary for ${platform} (Node ${process.version}). Prebuilt binaries ship as ` +
          `optional dependencies (the package shmkit-${platform}) for linux-x64/arm64 (gnu and musl), ` +
          'darwin-x64/arm64 and win32-x64/arm64: reinstall without --no-optional/--omit=optional, and make ' +
          'sure the lockfile was not created on another platform. On other platforms, build from source ' +
          'with a Rust toolchain (npm run build in a clone).',
        { cause: error },
      ),
      'ERR_SHM_NO_BINARY',
    )
  }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/** Every error shmkit throws has a `code`: Node's argument codes, errno names, or `ERR_SHM_*`. */
export interface ShmkitError extends Error {
  code: string
}

function coded<E extends Error>(error: E, code: string): E & ShmkitError {
  return Object.assign(error, { code })
}

function typeError(name: string, expected: string, actual: unknown): TypeError & ShmkitError {
  return coded(
    new TypeError(`The "${name}" argument must be ${expected}. Received ${describe(actual)}`),
    'ERR_INVALID_ARG_TYPE',
  )
}

function rangeError(name: string, expected: string, actual: unknown): RangeError & ShmkitError {
  return coded(
    new RangeError(`The value of "${name}" is out of range. It must be ${expected}. Received ${describe(actual)}`),
    'ERR_OUT_OF_RANGE',
  )
}

/** Rejection of an aborted `lockAsync`/`waitAsync`, as Node's own APIs do it. */
export class AbortError extends Error {
  readonly code = 'ABORT_ERR'
  constructor(message = 'The operation was aborted', options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'AbortError'
  }
}

function timedOut(what: string, timeout?: number): Error & ShmkitError {
  const after = timeout === undefined ? '' : ` after ${Math.round(timeout)} ms`
  return coded(new Error(`Timed out${after} waiting for ${what}`), 'ETIMEDOUT')
}

function validateSignal(signal: unknown): AbortSignal | undefined {
  if (signal === undefined) return undefined
  if (!(signal instanceof AbortSignal)) throw typeError('options.signal', 'an instance of AbortSignal', signal)
  return signal
}

/** A native wait in flight, tracked by its segment so `close()` can cancel it. */
interface PendingRequest {
  token: WaitToken
  /** The mutex being acquired, for lock requests. */
  mutex?: Mutex
}

/**
 * Runs `start(token)` (a native waiter) and settles with its outcome, or rejects with an
 * `AbortError` as soon as `signal` aborts. If the waiter completed just as the signal fired, its
 * late outcome is handed to `undo` (so an acquired lock is released, never leaked). A request
 * cancelled by `segment.close()` rejects with `ERR_SHM_CLOSED`.
 */
async function nativeWait<T extends string>(
  segment: Segment,
  signal: AbortSignal | undefined,
  start: (token: WaitToken) => Promise<T | 'cancelled'>,
  undo: (outcome: T) => void,
  mutex?: Mutex,
): Promise<T> {
  const request: PendingRequest = mutex === undefined ? { token: new WaitToken() } : { token: new WaitToken(), mutex }
  const pending = start(request.token)
  segment.pendingRequests.add(request)
  let outcome: T | 'cancelled'
  try {
    outcome = signal === undefined ? await pending : await abortable(signal, request.token, pending, undo)
  } finally {
    segment.pendingRequests.delete(request)
  }
  if (outcome === 'cancelled') {
    if (segment.closed) throw stateError('ERR_SHM_CLOSED', `Segment "${segment.name}" was closed while waiting`)
    throw new AbortError()
  }
  return outcome
}

function abortable<T extends string>(
  signal: AbortSignal,
  token: WaitToken,
  pending: Promise<T | 'cancelled'>,
  undo: (outcome: T) => void,
): Promise<T | 'cancelled'> {
  return new Promise((resolve, reject) => {
    let aborted = false
    const onAbort = () => {
      aborted = true
      token.cancel()
      reject(new AbortError(undefined, { cause: signal.reason }))
    }
    signal.addEventListener('abort', onAbort, { once: true })
    pending.then(
      (outcome) => {
        signal.removeEventListener('abort', onAbort)
        if (!aborted) resolve(outcome)
        else if (outcome !== 'cancelled') undo(outcome)
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort)
        if (!aborted) reject(error)
      },
    )
  })
}

function stateError(code: string, message: string): Error & ShmkitError {
  return coded(new Error(message), code)
}

function describe(value: unknown): string {
  if (value === null) return 'null'
  if (typeof value === 'string') return `type string (${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)})`
  if (typeof value === 'number') return `${value}`
  if (typeof value === 'object' || typeof value === 'function') return `an instance of ${value.constructor?.name ?? 'Object'}`
  return `type ${typeof value} (${String(value)})`
}

// ---------------------------------------------------------------------------------------------
// Argument validation
// ---------------------------------------------------------------------------------------------

/** Longest segment name, in bytes. */
export const MAX_NAME_LENGTH = 200
/** Largest data area, in bytes (16 TiB): beyond any machine, below JavaScript's limits. */
export const MAX_SEGMENT_SIZE = 2 ** 44
const NAME_PATTERN = /^[A-Za-z0-9._-]+$/

function validateName(name: unknown): string {
  if (typeof name !== 'string') throw typeError('name', 'of type string', name)
  if (name.length === 0 || !NAME_PATTERN.test(name)) {
    throw coded(
      new TypeError(`The segment name ${JSON.stringify(name)} is invalid: use 1 to ${MAX_NAME_LENGTH} characters from A-Z a-z 0-9 . _ -`),
      'ERR_INVALID_ARG_VALUE',
    )
  }
  if (name.length > MAX_NAME_LENGTH) {
    throw coded(new Error(`The segment name is ${name.length} characters long; the limit is ${MAX_NAME_LENGTH}`), 'ENAMETOOLONG')
  }
  return name
}

function validateOptions<T extends object>(options: unknown, name: string, allowed: readonly string[], required: boolean): Partial<T> {
  if (options === undefined && !required) return {}
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw typeError(name, 'of type object', options)
  }
  for (const key of Object.keys(options)) {
    if (!allowed.includes(key)) {
      throw coded(
        new TypeError(`Unknown option "${key}" in "${name}"; known options: ${allowed.join(', ')}`),
        'ERR_INVALID_ARG_VALUE',
      )
    }
  }
  return options as Partial<T>
}

function validateInteger(value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== 'number') throw typeError(name, 'of type number', value)
  if (!Number.isInteger(value) || value < min || value > max) {
    throw rangeError(name, `an integer >= ${min} and <= ${max}`, value)
  }
  return value
}

/** Milliseconds, `Infinity` or `undefined` (no limit); returns -1 for "no limit", as native expects. */
function validateTimeout(value: unknown, name = 'timeout'): number {
  if (value === undefined || value === Infinity) return -1
  if (typeof value !== 'number') throw typeError(name, 'of type number', value)
  if (Number.isNaN(value) || value < 0) throw rangeError(name, 'a number of milliseconds >= 0', value)
  return value
}

function validateBoolean(value: unknown, name: string, fallback = false): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') throw typeError(name, 'of type boolean', value)
  return value
}

/** Validates segment creation options (plus `extra` allowed keys) for the native side. */
function nativeCreateOptions(options: unknown, kind: number, extra: readonly string[]): Binding.NativeCreateOptions {
  const { size, mode, autoUnlink, reserve } = validateOptions<CreateOptions>(options, 'options', ['size', 'mode', 'autoUnlink', 'reserve', ...extra], true)
  return {
    size: validateSize(size),
    mode: validateMode(mode),
    kind,
    autoUnlink: validateBoolean(autoUnlink, 'options.autoUnlink'),
    reserve: validateBoolean(reserve, 'options.reserve', true),
  }
}

function validateSize(value: unknown): number {
  return validateInteger(value, 'options.size', 1, MAX_SEGMENT_SIZE)
}

function validateMode(value: unknown): number {
  return value === undefined ? 0o600 : validateInteger(value, 'options.mode', 0, 0o777)
}

function validateOffset(segment: Segment, value: unknown, name: string, byteLength: number, alignment: number): number {
  const offset = validateInteger(value, name, 0, Number.MAX_SAFE_INTEGER)
  if (offset % alignment !== 0) throw rangeError(name, `a multiple of ${alignment}`, offset)
  if (offset + byteLength > segment.size) {
    throw rangeError(name, `<= ${segment.size - byteLength} (the segment has ${segment.size} bytes)`, offset)
  }
  return offset
}

// ---------------------------------------------------------------------------------------------
// Segments
// ---------------------------------------------------------------------------------------------

export interface CreateOptions {
  /** Bytes in the data area (`seg.buffer.byteLength`), from 1 to `MAX_SEGMENT_SIZE`. */
  size: number
  /** Permission bits of the new segment, applied exactly (not masked by the umask). Default `0o600`. */
  mode?: number
  /**
   * Remove the segment automatically when the last process that has it open closes it or dies
   * (dead processes are noticed by the next open, close or `shmkit gc`). Default `false`: the
   * segment lives until someone unlinks it.
   */
  autoUnlink?: boolean
  /**
   * Allocate every page now (Linux), so a /dev/shm too small for the segment fails here with
   * `ENOSPC` instead of killing a process with SIGBUS on its first write later. Default `true`.
   * Reserving costs the allocation up front (about 0.35 ms per MiB on a small VM); with `false`,
   * pages are allocated on first touch, as plain `shm_open` + `mmap` would.
   */
  reserve?: boolean
}

/** What `Segment.inspect` reports; see also `mutex.stats()`. */
export type SegmentInspection = Binding.SegmentInspection
/** A snapshot of a mutex: holder, waiters, counters. */
export type MutexStats = Binding.MutexReport

export interface OpenOptions {
  /** How long to wait, in ms, for a creator that is still initialising the segment. Default 2000. */
  readyTimeout?: number
}

/** Result of `wait`, as with `Atomics.wait`. */
export type WaitResult = 'ok' | 'not-equal' | 'timed-out'

const CONSTRUCT = Symbol('shmkit.construct')
/** Segment kinds recorded in the header (docs/LAYOUT.md). */
const KIND_SEGMENT = 1
const KIND_CHANNEL = 2

/**
 * A named shared-memory segment mapped into this process (or worker thread).
 *
 * A segment lives until someone unlinks it: closing, process exit and garbage collection only
 * unmap it. `close()` detaches `buffer`, so views over it read as empty instead of touching
 * unmapped memory.
 */
export class Segment {
  readonly #native: NativeSegment
  readonly #name: string
  readonly #size: number
  readonly #buffer: ArrayBuffer
  readonly #headerCell: ArrayBuffer
  #mutex: Mutex | undefined
  /** @internal Shared with this mapping's mutexes and guards: one plain read on the hot path. */
  readonly life = { closed: false }
  /** @internal Mutex objects of this mapping, by cell; `close()` releases those held. */
  readonly mutexes = new Map<number, Mutex>()
  /** @internal Native waits in flight; `close()` cancels them. */
  readonly pendingRequests = new Set<PendingRequest>()

  /** @internal Use `Segment.create`, `Segment.open` or `Segment.openOrCreate`. */
  constructor(token: symbol, native: NativeSegment) {
    if (token !== CONSTRUCT) {
      throw coded(new TypeError('Use Segment.create(), Segment.open() or Segment.openOrCreate()'), 'ERR_ILLEGAL_CONSTRUCTOR')
    }
    this.#native = native
    this.#name = native.name
    this.#size = native.size
    const [data, headerCell] = native.buffers()
    this.#buffer = data
    this.#headerCell = headerCell
  }

  /** Creates segment `name`. Throws `EEXIST` if it exists, `ENOSPC` if shared memory is too small. */
  static create(name: string, options: CreateOptions): Segment {
    validateName(name)
    return new Segment(CONSTRUCT, NativeSegment.create(name, nativeCreateOptions(options, KIND_SEGMENT, [])))
  }

  /** Opens existing segment `name`. Throws `ENOENT` if it does not exist, `ERR_SHM_*` if it is not a valid shmkit segment. */
  static open(name: string, options?: OpenOptions): Segment {
    validateName(name)
    const { readyTimeout } = validateOptions<OpenOptions>(options, 'options', ['readyTimeout'], false)
    return new Segment(CONSTRUCT, NativeSegment.open(name, validateTimeout(readyTimeout, 'options.readyTimeout')))
  }

  /**
   * Opens `name`, creating it if needed. Safe to race from many processes: exactly one creates
   * it (`seg.created` tells which), the others wait for it to be ready. Throws
   * `ERR_SHM_SIZE_MISMATCH` if it exists with another size.
   */
  static openOrCreate(name: string, options: CreateOptions & OpenOptions): Segment {
    validateName(name)
    const native = NativeSegment.openOrCreate(
      name,
      nativeCreateOptions(options, KIND_SEGMENT, ['readyTimeout']),
      validateTimeout((options as OpenOptions).readyTimeout, 'options.readyTimeout'),
    )
    return new Segment(CONSTRUCT, native)
  }

  /** Removes segment `name`; processes that have it open keep using it. Throws `ENOENT` if absent. */
  static unlink(name: string): void {
    NativeSegment.unlink(validateName(name))
  }

  get name(): string {
    return this.#name
  }

  /** Bytes in the data area. */
  get size(): number {
    return this.#size
  }

  /** The data area, zero-copy. Every `byteOffset` in this API is relative to it. Empty once closed. */
  get buffer(): ArrayBuffer {
    return this.#buffer
  }

  /** @internal 1 for a plain segment, 2 for a channel. */
  get kind(): number {
    return this.#native.kind
  }

  /** @internal Creates a segment of another kind (channels), with validated options. */
  static createKind(name: string, options: Binding.NativeCreateOptions): Segment {
    return new Segment(CONSTRUCT, NativeSegment.create(name, options))
  }

  /**
   * Describes segment (or channel) `name` without opening it for use: header fields, the
   * processes that have it open and whether each is alive, the header mutex's holder and
   * counters. Throws like `open` for a missing, foreign or damaged segment.
   */
  static inspect(name: string): SegmentInspection {
    return NativeSegment.inspect(validateName(name))
  }

  /** Names of the shmkit segments and channels on this machine (Linux only: `ENOSYS` elsewhere). */
  static list(): string[] {
    return NativeSegment.list()
  }

  /**
   * Forgets the dead processes recorded as having `name` open and, if it was created with
   * `autoUnlink` and no live process has it open, removes it. Returns whether it was removed.
   */
  static collect(name: string): boolean {
    return NativeSegment.collect(validateName(name))
  }

  /** Whether the segment removes itself when its last user closes it or dies. */
  get autoUnlink(): boolean {
    return this.#native.autoUnlink
  }

  /** Whether this mapping created the segment (as opposed to opening an existing one). */
  get created(): boolean {
    return this.#native.created
  }

  get closed(): boolean {
    return this.life.closed
  }

  /** The mutex in the segment header. */
  get mutex(): Mutex {
    if (this.#mutex === undefined) {
      this.assertOpen()
      this.#mutex = new Mutex(CONSTRUCT, this, HEADER_MUTEX, new Int32Array(this.#headerCell))
      this.mutexes.set(HEADER_MUTEX, this.#mutex)
    }
    if (this.life.closed) this.assertOpen()
    return this.#mutex
  }

  /**
   * Unmaps the segment from this process, releasing the locks held through this mapping first.
   * Never removes the segment (see `unlink`). Idempotent.
   */
  close(): void {
    if (this.life.closed) return
    for (const mutex of this.mutexes.values()) mutex.releaseAll()
    for (const { token, mutex } of this.pendingRequests) {
      // A lock request that completed but whose promise has not settled yet holds the lock for
      // this thread: release it now, while the mapping is still ours.
      if (!token.cancel() && mutex !== undefined && mutex.heldByThisThread()) mutex.releaseInFlight()
    }
    this.life.closed = true
    this.#native.close([this.#buffer, this.#headerCell])
  }

  /** Removes the segment's name (this mapping stays usable until closed). */
  unlink(): void {
    Segment.unlink(this.#name)
  }

  /**
   * Sleeps while the 32-bit word at `byteOffset` equals `expected`, like `Atomics.wait`, but woken
   * by `notify` from any process. Blocks this thread: prefer it in workers, not on the main thread.
   */
  wait(byteOffset: number, expected: number, timeout?: number): WaitResult {
    this.assertOpen()
    const offset = validateOffset(this, byteOffset, 'byteOffset', 4, 4)
    const value = validateInteger(expected, 'expected', -(2 ** 31), 2 ** 32 - 1) | 0
    return this.#native.wait(offset, value, validateTimeout(timeout)) as WaitResult
  }

  /**
   * `wait` without blocking: the promise settles with `'ok'`, `'not-equal'` or `'timed-out'`.
   * The sleep happens on a native waiter thread, not the libuv pool. Rejects with `AbortError`
   * when `options.signal` aborts. A pending wait keeps the process alive, like a timer.
   */
  async waitAsync(byteOffset: number, expected: number, timeout?: number, options?: { signal?: AbortSignal }): Promise<WaitResult> {
    this.assertOpen()
    const offset = validateOffset(this, byteOffset, 'byteOffset', 4, 4)
    const value = validateInteger(expected, 'expected', -(2 ** 31), 2 ** 32 - 1) | 0
    const timeoutMs = validateTimeout(timeout)
    const { signal } = validateOptions<{ signal?: AbortSignal }>(options, 'options', ['signal'], false)
    const abortSignal = validateSignal(signal)
    if (abortSignal?.aborted) throw new AbortError(undefined, { cause: abortSignal.reason })
    const words = new Int32Array(this.#buffer, offset, 1)
    if (Atomics.load(words, 0) !== value) return 'not-equal'
    return nativeWait(this, abortSignal, (token) => this.#native.waitAsync(offset, value, timeoutMs, token), () => {})
  }

  /** Wakes up to `count` (default: all) waiters on the word at `byteOffset`, in any process. Returns how many woke. */
  notify(byteOffset: number, count?: number): number {
    this.assertOpen()
    const offset = validateOffset(this, byteOffset, 'byteOffset', 4, 4)
    const limit = count === undefined || count === Infinity ? Infinity : validateInteger(count, 'count', 0, 2 ** 32 - 1)
    return this.#native.notify(offset, limit)
  }

  [Symbol.dispose](): void {
    this.close()
  }

  /** @internal */
  assertOpen(): void {
    if (this.life.closed) throw stateError('ERR_SHM_CLOSED', `Segment "${this.#name}" is closed`)
  }

  /** @internal */
  get native(): NativeSegment {
    return this.#native
  }
}

// ---------------------------------------------------------------------------------------------
// Mutex
// ---------------------------------------------------------------------------------------------

/** Native cell handle of the header mutex; placed mutexes use their data offset. */
const HEADER_MUTEX = -1
/** Lock word layout (docs/LOCKING.md), in 32-bit slots of the cell. */
const STATE = 0
const OWNER_MASK = 0x3fffffff
const OWNER_TID = 1
const OWNER_NS = 2
const OWNER_PID = 3
const OWNER_START_LO = 4
const OWNER_START_HI = 5
const ACQUISITIONS = 6

function lockTimeout(options: unknown): number {
  const { timeout } = validateOptions<LockOptions>(options, 'options', ['timeout'], false)
  return validateTimeout(timeout, 'options.timeout')
}

/** This thread's identity as recorded next to a lock it holds (worker threads get their own). */
const [THREAD_ID, THREAD_NS, THREAD_START_LO, THREAD_START_HI, THREAD_PID] = currentThreadIdentity().map((v) => v | 0) as [
  number,
  number,
  number,
  number,
  number,
]

export interface LockOptions {
  /** Milliseconds to wait before throwing `ETIMEDOUT`; default: wait forever. */
  timeout?: number
}

/**
 * An inter-process mutex: exclusive between processes and between worker threads. Not recursive:
 * locking it again from the thread that holds it throws `EDEADLK`. If the holding process (or
 * thread) dies, the next locker takes it over and its guard says `ownerDied: true`.
 */
export class Mutex {
  /** Bytes a placed mutex occupies; lay out your data around it. */
  static readonly byteLength = 64
  /** Required alignment of a placed mutex's byte offset. */
  static readonly alignment = 8

  readonly #segment: Segment
  readonly #life: { closed: boolean }
  readonly #cell: number
  readonly #words: Int32Array
  /** Guards of this thread currently holding the lock through this object (0 or 1). */
  #held = 0

  /** @internal Use `seg.mutex` or `Mutex.at()`. */
  constructor(token: symbol, segment: Segment, cell: number, words: Int32Array) {
    if (token !== CONSTRUCT) {
      throw coded(new TypeError('Use seg.mutex or Mutex.at(seg, byteOffset)'), 'ERR_ILLEGAL_CONSTRUCTOR')
    }
    this.#segment = segment
    this.#life = segment.life
    this.#cell = cell
    this.#words = words
  }

  /**
   * The mutex occupying `Mutex.byteLength` bytes at `byteOffset` of the data area (a multiple of
   * `Mutex.alignment`). Zeroed memory is an unlocked mutex, so a fresh segment needs no set-up.
   */
  static at(segment: Segment, byteOffset: number): Mutex {
    if (!(segment instanceof Segment)) throw typeError('segment', 'an instance of Segment', segment)
    segment.assertOpen()
    const offset = validateOffset(segment, byteOffset, 'byteOffset', Mutex.byteLength, Mutex.alignment)
    let mutex = segment.mutexes.get(offset)
    if (mutex === undefined) {
      mutex = new Mutex(CONSTRUCT, segment, offset, new Int32Array(segment.buffer, offset, Mutex.byteLength / 4))
      segment.mutexes.set(offset, mutex)
    }
    return mutex
  }

  get segment(): Segment {
    return this.#segment
  }

  /** Blocks this thread until the lock is taken; throws `ETIMEDOUT` after `options.timeout` ms. */
  lock(options?: LockOptions): LockGuard {
    return this.lockFor(options === undefined ? -1 : lockTimeout(options))
  }

  /**
   * @internal Takes the lock for one of shmkit's own short critical sections, without a guard
   * object (channels call this twice per message). Release it with `releaseInFlight()`.
   */
  acquire(timeoutMs: number): void {
    if (this.#life.closed) this.#segment.assertOpen()
    if (Atomics.compareExchange(this.#words, STATE, 0, THREAD_ID) === 0) this.#recordOwner()
    else this.#segment.native.lock(this.#cell, timeoutMs)
  }

  /** @internal `lock` with a validated timeout in ms (-1: none), for shmkit's own hot paths. */
  lockFor(timeoutMs: number): LockGuard {
    if (this.#life.closed) this.#segment.assertOpen()
    if (Atomics.compareExchange(this.#words, STATE, 0, THREAD_ID) === 0) {
      this.#recordOwner()
      return this.#guard(false)
    }
    return this.#guard(this.#segment.native.lock(this.#cell, timeoutMs))
  }

  #guard(ownerDied: boolean): LockGuard {
    this.#held++
    return new Guard(this, this.#life, ownerDied)
  }

  /**
   * Resolves with a `LockGuard` once the lock is taken, without blocking the event loop: the
   * uncontended case completes at once in JavaScript, a contended one waits on a native waiter
   * thread (never the libuv pool). Rejects with `ETIMEDOUT` after `options.timeout` ms and with
   * `AbortError` when `options.signal` aborts; a lock acquired just as the caller gave up is
   * released. Unlike `lock()`, it never throws `EDEADLK`: if this thread already holds the lock
   * (another async task of the same thread), it waits for that guard to be released, so
   * concurrent `withLock` calls of one thread run one after the other.
   */
  async lockAsync(options?: LockOptions & { signal?: AbortSignal }): Promise<LockGuard> {
    const { timeout, signal } = validateOptions<LockOptions & { signal?: AbortSignal }>(options, 'options', ['timeout', 'signal'], false)
    const timeoutMs = validateTimeout(timeout, 'options.timeout')
    const abortSignal = validateSignal(signal)
    if (abortSignal?.aborted) throw new AbortError(undefined, { cause: abortSignal.reason })
    this.#segment.assertOpen()
    if (Atomics.compareExchange(this.#words, STATE, 0, THREAD_ID) === 0) {
      this.#recordOwner()
      return this.#guard(false)
    }
    const outcome = await nativeWait(
      this.#segment,
      abortSignal,
      (token) => this.#segment.native.lockAsync(this.#cell, timeoutMs, token),
      (late) => {
        if (late === 'acquired' || late === 'owner-died') this.releaseInFlight()
      },
      this,
    )
    if (outcome === 'timed-out') throw timedOut('the lock', timeout as number)
    if (this.#segment.closed) {
      // Acquired as the segment closed; close() already released it on our behalf.
      throw stateError('ERR_SHM_CLOSED', `Segment "${this.#segment.name}" was closed while waiting for its lock`)
    }
    return this.#guard(outcome === 'owner-died')
  }

  /**
   * Runs `fn` holding the lock and returns its result; `fn` may be async. The lock is released
   * when `fn` returns, throws or rejects. Takes the same options as `lockAsync`.
   */
  async withLock<T>(fn: (guard: LockGuard) => T | Promise<T>, options?: LockOptions & { signal?: AbortSignal }): Promise<T> {
    if (typeof fn !== 'function') throw typeError('fn', 'of type function', fn)
    const guard = await this.lockAsync(options)
    try {
      return await fn(guard)
    } finally {
      if (guard.locked) guard.unlock()
    }
  }

  /** Takes the lock if it is free (or its holder died); otherwise returns `null` at once. */
  tryLock(): LockGuard | null {
    if (this.#life.closed) this.#segment.assertOpen()
    if (Atomics.compareExchange(this.#words, STATE, 0, THREAD_ID) === 0) {
      this.#recordOwner()
      return this.#guard(false)
    }
    const outcome = this.#segment.native.tryLock(this.#cell)
    return outcome === 0 ? null : this.#guard(outcome === 2)
  }

  /** A snapshot: who holds it (and whether that thread is alive), waiters, counters. */
  stats(): MutexStats {
    this.#segment.assertOpen()
    return this.#segment.native.mutexStats(this.#cell)
  }

  /** @internal */
  heldByThisThread(): boolean {
    return (Atomics.load(this.#words, STATE) & OWNER_MASK) === THREAD_ID
  }

  /** @internal Releases every holding of this object (segment closing). */
  releaseAll(): void {
    for (; this.#held > 0; this.#held--) this.releaseInFlight()
  }

  /** @internal Releases a lock this thread holds through a guard (the guard checked that the
   * segment is open and the guard still held). */
  release(): void {
    this.#held--
    this.releaseInFlight()
  }

  /** @internal Releases a lock acquired for this thread that no guard was made for. */
  releaseInFlight(): void {
    if (Atomics.compareExchange(this.#words, STATE, THREAD_ID, 0) !== THREAD_ID) {
      this.#segment.native.unlock(this.#cell)
    }
  }

  /** Writes this thread's identity beside the word (skipped when it is already there). */
  #recordOwner(): void {
    const words = this.#words
    words[ACQUISITIONS] = (words[ACQUISITIONS]! + 1) | 0 // we hold the lock: a plain increment
    // Two loads tell "already mine": the tid, and the start time's low half (a reused tid of
    // another thread almost surely started at another tick).
    if (words[OWNER_TID] !== THREAD_ID || words[OWNER_START_LO] !== THREAD_START_LO) {
      words[OWNER_NS] = THREAD_NS
      words[OWNER_PID] = THREAD_PID
      words[OWNER_START_LO] = THREAD_START_LO
      words[OWNER_START_HI] = THREAD_START_HI
      Atomics.store(words, OWNER_TID, THREAD_ID) // last: a reader that sees it sees the rest
    }
  }
}

/** Proof of holding a `Mutex`. Release it with `unlock()` or a `using` declaration. */
export interface LockGuard {
  /**
   * True when the previous holder died while holding the lock: the data it protected may be
   * half-updated, so check or repair it. Only the first holder after the death is told.
   */
  readonly ownerDied: boolean
  /** Whether this guard still holds the lock (closing its segment releases it). */
  readonly locked: boolean
  /**
   * Releases the lock. Throws `ERR_SHM_NOT_LOCKED` if it was already released (by this guard or
   * by closing the segment).
   */
  unlock(): void
  /** Releases the lock if still held (for `using`). */
  [Symbol.dispose](): void
}

/** The one implementation of `LockGuard`; not exported, so guards only come from a `Mutex`. */
class Guard implements LockGuard {
  readonly #mutex: Mutex
  readonly #life: { closed: boolean }
  #held = true
  readonly ownerDied: boolean

  constructor(mutex: Mutex, life: { closed: boolean }, ownerDied: boolean) {
    this.#mutex = mutex
    this.#life = life
    this.ownerDied = ownerDied
  }

  get locked(): boolean {
    return this.#held && !this.#life.closed
  }

  unlock(): void {
    if (!this.#held || this.#life.closed) {
      throw stateError('ERR_SHM_NOT_LOCKED', 'This guard no longer holds its lock (already unlocked, or its segment was closed)')
    }
    this.#held = false
    this.#mutex.release()
  }

  [Symbol.dispose](): void {
    if (this.locked) this.unlock()
  }
}


// ---------------------------------------------------------------------------------------------
// Channels
// ---------------------------------------------------------------------------------------------

/**
 * How channel messages are encoded: `'bytes'` (send `Uint8Array`/`Buffer`/string, receive a
 * `Uint8Array`), `'string'` (UTF-8 strings), `'json'` (JSON values) or `'v8'` (structured-clone
 * values, via `v8.serialize`).
 */
export type Codec = 'bytes' | 'string' | 'json' | 'v8'
const CODECS: readonly Codec[] = ['bytes', 'string', 'json', 'v8']

export interface ChannelCreateOptions {
  /** Ring bytes, rounded up to a power of two, 64 to 2^30. Each message takes 4 + its length rounded up to 4. */
  capacity: number
  /** Default codec for every process that opens the channel. Default `'bytes'`. */
  codec?: Codec
  mode?: number
  /** As for segments: remove the channel when the last process that has it open closes it or dies. */
  autoUnlink?: boolean
}

/** A snapshot of a channel's traffic. */
export interface ChannelStats {
  /** Messages sent so far, and received (both wrap at 2^32). */
  sent: number
  received: number
  /** Messages and bytes (with their 4-byte headers) waiting to be read. */
  messagesInFlight: number
  bytesInFlight: number
  capacity: number
  closed: boolean
}

export interface ChannelOpenOptions extends OpenOptions {
  /** Overrides the codec recorded at creation, for this process. */
  codec?: Codec
}

export interface SendOptions {
  /** Milliseconds to wait for room before `ETIMEDOUT`; default: wait forever. */
  timeout?: number
}

export interface AsyncOptions extends SendOptions {
  signal?: AbortSignal
}

/**
 * Data-area layout of a channel (byte offsets; docs/CHANNELS.md). Producers and consumers each
 * own a cache line of indices, so the two sides do not bounce one line between them.
 */
const CH = {
  READY: 0, // u32: CHANNEL_MAGIC once the creator wrote this block
  VERSION: 4, // u32: CHANNEL_VERSION
  CAPACITY: 8, // u32: ring bytes, a power of two
  CODEC: 12, // u32: index into CODECS
  CLOSED: 16, // u32: 1 once closed
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
const CHANNEL_MAGIC = 0x6c6e6863 // "chnl"
const CHANNEL_VERSION = 1
const MIN_CAPACITY = 64
const MAX_CAPACITY = 2 ** 30
/**
 * How long `trySend`/`tryRecv` wait for the side's lock: peers hold it for microseconds, so only
 * a stalled (e.g. stopped) holder makes them give up, with `ETIMEDOUT`.
 */
const TRY_LOCK_MS = 1000
/** A sync `recv`/`send` spins this long on the indices before sleeping in the kernel. */
const SPIN_MICROSECONDS = 50
/** Longest single sleep of a waiting `send`/`recv`: they re-check between sleeps. */
const SLEEP_SLICE_MS = 1000

/** What `#take` returns for an empty channel (distinct from any decoded message). */
const EMPTY = Symbol('empty')
/** What `#read` gets for a message that does not decode with the channel's codec. */
const UNDECODABLE = Symbol('undecodable')
const utf8Encoder = new TextEncoder()
const utf8Decoder = new TextDecoder()

function corrupt(what: string): Error & ShmkitError {
  return stateError('ERR_SHM_CORRUPT', `Damaged channel: ${what}`)
}

function channelClosed(name: string): Error & ShmkitError {
  return stateError('ERR_SHM_CHANNEL_CLOSED', `Channel "${name}" is closed`)
}

function validateCodec(value: unknown, name: string): Codec | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string' || !CODECS.includes(value as Codec)) {
    throw coded(new TypeError(`The "${name}" option must be one of ${CODECS.join(', ')}. Received ${describe(value)}`), 'ERR_INVALID_ARG_VALUE')
  }
  return value as Codec
}

function roundUpToPowerOfTwo(value: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(value, MIN_CAPACITY)))
}

/**
 * A cross-process message queue in shared memory, for any number of producer and consumer
 * processes and worker threads.
 *
 * Every message is delivered exactly once and whole, in order per producer; a full channel makes
 * `send` wait (or `trySend` return false), it never drops. `close()` marks the end of the stream
 * for everyone: receivers drain what is left, then `recv` throws `ERR_SHM_CHANNEL_CLOSED` and
 * `for await` loops end. `disconnect()` unmaps this process's view.
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

  /** Whether `close()` was called (by any process). Messages may still be waiting to be read. */
  get closed(): boolean {
    return Atomics.load(this.#words, CH.CLOSED / 4) !== 0
  }

  /** Bytes of messages (with their 4-byte headers) waiting to be read: a snapshot. */
  get bytesInFlight(): number {
    return (Atomics.load(this.#words, CH.TAIL / 4) - Atomics.load(this.#words, CH.HEAD / 4)) >>> 0
  }

  /** A snapshot of the traffic: counts sent and received, what is waiting to be read. */
  stats(): ChannelStats {
    this.#segment.assertOpen()
    return channelStats(this.#words)
  }

  /** Sends `data` if there is room now; returns false if the channel is full. */
  trySend(data: T | Uint8Array | string): boolean {
    const bytes = this.#encode(data)
    this.#checkOpenForSend()
    return this.#write(bytes, TRY_LOCK_MS)
  }

  /** Sends `data`, waiting while the channel is full; `ETIMEDOUT` after `options.timeout` ms. */
  send(data: T | Uint8Array | string, options?: SendOptions): void {
    const bytes = this.#encode(data)
    const deadline = deadlineOf(options === undefined ? -1 : lockTimeout(options))
    for (;;) {
      this.#checkOpenForSend()
      if (this.#write(bytes, remainingMs(deadline))) return
      if (this.#spinUntil(() => this.#hasRoomFor(bytes.length))) continue
      this.#sleep(CH.SEND_WAITERS, CH.SEND_EVENT, () => this.#hasRoomFor(bytes.length) || this.closed, deadline, 'room in the channel')
    }
  }

  /** `send` without blocking the event loop; rejects with `ETIMEDOUT` or `AbortError`. */
  async sendAsync(data: T | Uint8Array | string, options?: AsyncOptions): Promise<void> {
    const bytes = this.#encode(data)
    const { timeout, signal } = validateOptions<AsyncOptions>(options, 'options', ['timeout', 'signal'], false)
    const deadline = deadlineOf(validateTimeout(timeout, 'options.timeout'))
    const abortSignal = validateSignal(signal)
    for (;;) {
      if (abortSignal?.aborted) throw new AbortError(undefined, { cause: abortSignal.reason })
      this.#checkOpenForSend()
      if (this.#write(bytes, await lockAsyncUntil(this.#sendLock, deadline, abortSignal))) return
      await this.#sleepAsync(CH.SEND_WAITERS, CH.SEND_EVENT, () => this.#hasRoomFor(bytes.length) || this.closed, deadline, abortSignal, 'room in the channel')
    }
  }

  /**
   * Sends a `byteLength`-byte message that `fill(target)` writes straight into the ring: no
   * intermediate buffer for large messages (when the slot wraps around the ring's end, `target`
   * is a temporary copied in afterwards). `fill` runs under the send lock and must be
   * synchronous; if it throws, nothing is sent. Waits for room like `send`. Codec-independent.
   */
  sendWith(byteLength: number, fill: (target: Uint8Array) => void, options?: SendOptions): void {
    const length = validateInteger(byteLength, 'byteLength', 0, this.#capacity - 4)
    if (typeof fill !== 'function') throw typeError('fill', 'of type function', fill)
    const deadline = deadlineOf(options === undefined ? -1 : lockTimeout(options))
    const put = (payload: number) => {
      if (payload + length <= this.#capacity) return fill(this.#ring.subarray(payload, payload + length))
      const staging = new Uint8Array(length)
      fill(staging)
      this.#copyIn(staging, payload)
    }
    for (;;) {
      this.#checkOpenForSend()
      if (this.#append(length, put, remainingMs(deadline))) return
      if (this.#spinUntil(() => this.#hasRoomFor(length))) continue
      this.#sleep(CH.SEND_WAITERS, CH.SEND_EVENT, () => this.#hasRoomFor(length) || this.closed, deadline, 'room in the channel')
    }
  }

  /**
   * Receives the next message and passes its raw bytes to `use(view)`, returning what `use`
   * returns: `view` looks straight into the ring (no copy) and is valid only during the call.
   * `use` runs under the receive lock and must be synchronous; if it throws, the message is NOT
   * consumed and stays for the next receiver. Waits like `recv`.
   */
  recvWith<R>(use: (view: Uint8Array) => R, options?: SendOptions): R {
    if (typeof use !== 'function') throw typeError('use', 'of type function', use)
    const deadline = deadlineOf(options === undefined ? -1 : lockTimeout(options))
    for (;;) {
      this.#segment.assertOpen()
      const result = this.#take((view) => use(view), remainingMs(deadline))
      if (result !== EMPTY) return result
      if (this.closed && this.bytesInFlight === 0) throw channelClosed(this.name)
      if (this.#spinUntil(() => this.bytesInFlight !== 0 || this.closed)) continue
      this.#sleep(CH.RECV_WAITERS, CH.RECV_EVENT, () => this.bytesInFlight !== 0 || this.closed, deadline, 'a message')
    }
  }

  /** Receives the next message if one is there; otherwise `undefined` at once. */
  tryRecv(): T | undefined {
    this.#segment.assertOpen()
    return this.#read(TRY_LOCK_MS)
  }

  /**
   * Receives the next message, waiting for one; `ETIMEDOUT` after `options.timeout` ms,
   * `ERR_SHM_CHANNEL_CLOSED` once the channel is closed and drained.
   */
  recv(options?: SendOptions): T {
    const deadline = deadlineOf(options === undefined ? -1 : lockTimeout(options))
    for (;;) {
      this.#segment.assertOpen()
      const message = this.#read(remainingMs(deadline))
      if (message !== undefined) return message
      if (this.closed && this.bytesInFlight === 0) throw channelClosed(this.name)
      if (this.#spinUntil(() => this.bytesInFlight !== 0 || this.closed)) continue
      this.#sleep(CH.RECV_WAITERS, CH.RECV_EVENT, () => this.bytesInFlight !== 0 || this.closed, deadline, 'a message')
    }
  }

  /** `recv` without blocking the event loop; rejects with `ETIMEDOUT`, `AbortError` or `ERR_SHM_CHANNEL_CLOSED`. */
  async recvAsync(options?: AsyncOptions): Promise<T> {
    const { timeout, signal } = validateOptions<AsyncOptions>(options, 'options', ['timeout', 'signal'], false)
    const deadline = deadlineOf(validateTimeout(timeout, 'options.timeout'))
    const abortSignal = validateSignal(signal)
    for (;;) {
      if (abortSignal?.aborted) throw new AbortError(undefined, { cause: abortSignal.reason })
      this.#segment.assertOpen()
      const message = this.#read(await lockAsyncUntil(this.#recvLock, deadline, abortSignal))
      if (message !== undefined) return message
      if (this.closed && this.bytesInFlight === 0) throw channelClosed(this.name)
      await this.#sleepAsync(CH.RECV_WAITERS, CH.RECV_EVENT, () => this.bytesInFlight !== 0 || this.closed, deadline, abortSignal, 'a message')
    }
  }

  /** Receives until the channel is closed and drained. */
  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    for (;;) {
      try {
        yield await this.recvAsync()
      } catch (error) {
        if ((error as ShmkitError).code === 'ERR_SHM_CHANNEL_CLOSED') return
        throw error
      }
    }
  }

  /**
   * Marks the end of the stream, for every process: later sends fail with
   * `ERR_SHM_CHANNEL_CLOSED`, receivers drain what is left and then stop. Idempotent.
   */
  close(): void {
    this.#segment.assertOpen()
    Atomics.store(this.#words, CH.CLOSED / 4, 1)
    for (const event of [CH.RECV_EVENT, CH.SEND_EVENT]) {
      Atomics.add(this.#words, event / 4, 1)
      this.#segment.notify(event)
    }
  }

  /** Unmaps the channel from this process (the channel and its messages stay). Idempotent. */
  disconnect(): void {
    this.#segment.close()
  }

  /** Removes the channel's name. */
  unlink(): void {
    Segment.unlink(this.name)
  }

  [Symbol.dispose](): void {
    this.disconnect()
  }

  #checkOpenForSend(): void {
    this.#segment.assertOpen()
    if (this.closed) throw channelClosed(this.name)
  }

  #encode(data: unknown): Uint8Array {
    let bytes: Uint8Array
    switch (this.#codec) {
      case 'bytes':
        if (typeof data === 'string') bytes = utf8Encoder.encode(data)
        else if (data instanceof Uint8Array) bytes = data
        else if (ArrayBuffer.isView(data)) bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
        else throw typeError('data', 'a Uint8Array, a Buffer or a string', data)
        break
      case 'string':
        if (typeof data !== 'string') throw typeError('data', 'of type string', data)
        bytes = utf8Encoder.encode(data)
        break
      case 'json': {
        const text = JSON.stringify(data)
        if (text === undefined) throw typeError('data', 'a JSON-serialisable value', data)
        bytes = utf8Encoder.encode(text)
        break
      }
      case 'v8':
        bytes = serialize(data)
        break
    }
    if (bytes.length > this.#capacity - 4) {
      throw rangeError('data', `at most ${this.#capacity - 4} bytes once encoded (the channel's capacity minus 4)`, bytes.length)
    }
    return bytes
  }

  /** Decodes a message; `inRing` views must be copied (the ring slot is about to be reused). */
  #decode(view: Uint8Array, inRing: boolean): T {
    switch (this.#codec) {
      case 'bytes':
        return (inRing ? view.slice() : view) as T
      case 'string':
        return utf8Decoder.decode(view) as T
      case 'json':
        return JSON.parse(utf8Decoder.decode(view)) as T
      case 'v8':
        return deserialize(view) as T
    }
  }

  #usedBytes(head: number, tail: number): number {
    const used = (tail - head) >>> 0
    if (used > this.#capacity || (used & 3) !== 0 || (head & 3) !== 0) throw corrupt(`indices head=${head} tail=${tail}`)
    return used
  }

  #hasRoomFor(length: number): boolean {
    const words = this.#words
    const used = (Atomics.load(words, CH.TAIL / 4) - Atomics.load(words, CH.HEAD / 4)) >>> 0
    return used <= this.#capacity && this.#capacity - used >= 4 + ((length + 3) & ~3)
  }

  /** Appends one message under the send lock; false if there is no room. */
  #write(bytes: Uint8Array, lock: SideLock): boolean {
    return this.#append(bytes.length, bytes, lock)
  }

  /**
   * Reserves room for a `length`-byte message under the send lock (see `SideLock`; released
   * here), copies `content` in (or has `content(payloadPosition)` write it), then publishes it.
   * If writing throws, nothing is published.
   */
  #append(length: number, content: Uint8Array | ((payload: number) => void), lock: SideLock): boolean {
    const words = this.#words
    const raw = typeof lock === 'number'
    if (raw) this.#sendLock.acquire(lock)
    try {
      const tail = Atomics.load(words, CH.TAIL / 4)
      const used = this.#usedBytes(Atomics.load(words, CH.HEAD / 4), tail)
      const need = 4 + ((length + 3) & ~3)
      if (this.#capacity - used < need) return false
      const start = tail & this.#mask
      this.#ringWords[start >>> 2] = length
      if (typeof content === 'function') content((start + 4) & this.#mask)
      else this.#copyIn(content, (start + 4) & this.#mask)
      // SYNC POINT (publish): the message is whole before the tail moves past it.
      this.#advance(CH.TAIL, CH.SENT, tail + need)
    } finally {
      if (raw) this.#sendLock.releaseInFlight()
      else lock.unlock()
    }
    this.#wakeSleepers(CH.RECV_WAITERS, CH.RECV_EVENT)
    return true
  }

  /** Moves one side's index (seq-cst: the SYNC POINT) and bumps its message counter; the caller holds that side's lock. */
  #advance(indexOffset: number, counterOffset: number, index: number): void {
    const words = this.#words
    Atomics.store(words, indexOffset / 4, index >>> 0)
    words[counterOffset / 4] = (words[counterOffset / 4]! + 1) >>> 0
  }

  /** Copies `bytes` into the ring at `payload`, wrapping at the end. */
  #copyIn(bytes: Uint8Array, payload: number): void {
    const first = Math.min(bytes.length, this.#capacity - payload)
    this.#ring.set(first === bytes.length ? bytes : bytes.subarray(0, first), payload)
    if (first < bytes.length) this.#ring.set(bytes.subarray(first), 0)
  }

  /**
   * Takes one message under the receive lock (see `SideLock`; released here) and passes its
   * bytes to `use`; `EMPTY` if none.
   */
  #take<R>(use: (view: Uint8Array, ring: boolean) => R, lock: SideLock): R | typeof EMPTY {
    const words = this.#words
    const raw = typeof lock === 'number'
    if (raw) this.#recvLock.acquire(lock)
    let result: R
    try {
      const head = Atomics.load(words, CH.HEAD / 4)
      const used = this.#usedBytes(head, Atomics.load(words, CH.TAIL / 4))
      if (used === 0) return EMPTY
      const start = head & this.#mask
      const length = this.#ringWords[start >>> 2]!
      const size = 4 + ((length + 3) & ~3)
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
      if (raw) this.#recvLock.releaseInFlight()
      else lock.unlock()
    }
    this.#wakeSleepers(CH.SEND_WAITERS, CH.SEND_EVENT)
    return result
  }

  /**
   * Takes one decoded message; `undefined` if there is none. A message that does not decode
   * (written by a buggy peer, or scribbled over) is consumed and reported as `ERR_SHM_CORRUPT`,
   * so one bad message cannot wedge every receiver.
   */
  #read(lock: SideLock): T | undefined {
    const message = this.#take(this.#decodeOrMark, lock)
    if (message === EMPTY) return undefined
    if (message === UNDECODABLE) {
      const cause = this.#decodeFailure
      this.#decodeFailure = undefined
      throw Object.assign(corrupt(`a message did not decode as ${this.#codec} and was dropped`), { cause })
    }
    return message
  }

  /** Why the last message failed to decode (set by `#decodeOrMark`, read by `#read`). */
  #decodeFailure: unknown

  /** `#decode`, turning a failure into `UNDECODABLE` so `#take` still consumes the message. */
  readonly #decodeOrMark = (view: Uint8Array, inRing: boolean): T | typeof UNDECODABLE => {
    try {
      return this.#decode(view, inRing)
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
    closed: word(CH.CLOSED) !== 0,
  }
}

/**
 * How a channel operation holds its side's lock: a guard it already took without blocking
 * (async paths), or a timeout in ms (-1: none) for taking it here, guard-free (sync paths: two
 * fewer allocations per message).
 */
type SideLock = LockGuard | number

/** Takes `mutex` without blocking the event loop, by `deadline` (see `deadlineOf`). */
async function lockAsyncUntil(mutex: Mutex, deadline: number, signal: AbortSignal | undefined): Promise<LockGuard> {
  const free = mutex.tryLock()
  if (free !== null) return free
  const left = remainingMs(deadline)
  return mutex.lockAsync(signal === undefined ? (left < 0 ? {} : { timeout: left }) : left < 0 ? { signal } : { timeout: left, signal })
}

/** Absolute deadline (performance.now() ms) for a timeout, or -1 for none. */
function deadlineOf(timeoutMs: number): number {
  return timeoutMs < 0 ? -1 : performance.now() + timeoutMs
}

/** Milliseconds left before `deadline`: -1 for no deadline, 0 once it has passed. */
function remainingMs(deadline: number): number {
  return deadline < 0 ? -1 : Math.max(0, deadline - performance.now())
}
