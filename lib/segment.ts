// Segments: named shared memory, mapped as one zero-copy ArrayBuffer over the data area.

import { AbortError, coded, stateError } from './errors'
import { CONSTRUCT, KIND_SEGMENT } from './internal'
import { HEADER_MUTEX, Mutex, type CellState } from './mutex'
import { NativeSegment, type MutexReport, type NativeCreateOptions, type SegmentInspection as NativeSegmentInspection } from './native'
import { nativeCreateOptions, validateInteger, validateName, validateOffset, validateOptions, validateSignal, validateTimeout } from './validate'
import { nativeWait, type PendingRequest } from './waiting'

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
export type SegmentInspection = NativeSegmentInspection
/** A snapshot of a mutex: holder, waiters, counters. */
export type MutexStats = MutexReport

export interface OpenOptions {
  /** How long to wait, in ms, for a creator that is still initialising the segment. Default 2000. */
  readyTimeout?: number
}

/** Result of `wait`, as with `Atomics.wait`. */
export type WaitResult = 'ok' | 'not-equal' | 'timed-out'

/**
 * What this thread knows of the lock cells of each segment instance it has mapped (see
 * `CellState`), shared by all its mappings of that instance; dropped when the last one closes.
 */
const cellStates = new Map<string, { mappings: number; cells: Map<number, CellState> }>()


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
  readonly #instance: string
  /** Critical sections of shmkit in progress on this mapping (a `close()` inside one waits). */
  #busy = 0
  #closeDeferred = false

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
    this.#instance = native.instance
    const known = cellStates.get(this.#instance)
    if (known === undefined) cellStates.set(this.#instance, { mappings: 1, cells: new Map() })
    else known.mappings++
  }

  /** @internal This thread's state of the lock cell `cell`, shared by its mappings of this segment. */
  cellState(cell: number): CellState {
    const cells = cellStates.get(this.#instance)!.cells
    let state = cells.get(cell)
    if (state === undefined) {
      state = { held: false }
      cells.set(cell, state)
    }
    return state
  }

  /**
   * @internal Marks a critical section that runs user code (a channel's `sendWith`/`recvWith`
   * callback): a `close()` called inside it takes effect when it ends, after its lock is released.
   */
  enter(): void {
    this.#busy++
  }

  /** @internal Ends what `enter` began. */
  exit(): void {
    if (--this.#busy === 0 && this.#closeDeferred) this.close()
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
  static createKind(name: string, options: NativeCreateOptions): Segment {
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
    if (this.#busy > 0) {
      this.#closeDeferred = true
      return
    }
    for (const mutex of this.mutexes.values()) mutex.releaseAll()
    // Waiters only wait, never hold: cancelling them is all (a wake-up one consumed is passed on).
    for (const { token } of this.pendingRequests) token.cancel()
    this.life.closed = true
    const known = cellStates.get(this.#instance)
    if (known !== undefined && --known.mappings === 0) cellStates.delete(this.#instance)
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
    const [outcome] = await nativeWait(this, abortSignal, (token) => this.#native.waitAsync(offset, value, timeoutMs, token))
    return outcome
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
