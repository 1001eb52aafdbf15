// The public inter-process mutex and its guards, over a `LockCell` (lib/lock.ts), which speaks
// the lock protocol.

import { coded, stateError, typeError } from './errors'
import { HEADER_CELL, Handle } from './handle'
import { CONSTRUCT, HANDLE } from './internal'
import { LockCell } from './lock'
import type { MutexStats } from './inspect'
import { mutexStats } from './inspect'
import { CONTRACT } from './native'
import type { Segment } from './segment'
import {
  timeoutOption,
  validateOffset,
  validateOptions,
  validateSignal,
  validateTimeout,
  type AsyncOptions,
  type TimeoutOptions,
} from './validate'
import { AbortError } from './errors'

/** The `Mutex` of each lock cell of each mapping, made once. */
const mutexes = new WeakMap<LockCell, Mutex>()

/** The lock cell `cell` of the mapping `handle` (made once per mapping). */
export function lockCell(handle: Handle, cell: number, what: string): LockCell {
  let lock = handle.cells.get(cell) as LockCell | undefined
  if (lock === undefined) {
    const words =
      cell === HEADER_CELL
        ? new Int32Array(handle.headerCell)
        : new Int32Array(handle.data, cell, CONTRACT.mutex.size / 4)
    lock = new LockCell(handle, cell, words, what)
    handle.cells.set(cell, lock)
    if (cell !== HEADER_CELL) handle.native.notePlacedMutex(cell)
  }
  return lock
}

/** The `Mutex` over the lock cell `cell` of `handle`. */
export function mutexOf(handle: Handle, cell: number): Mutex {
  const what =
    cell === HEADER_CELL
      ? `the lock of segment "${handle.name}"`
      : `the mutex at offset ${cell} of segment "${handle.name}"`
  const lock = lockCell(handle, cell, what)
  let mutex = mutexes.get(lock)
  if (mutex === undefined) {
    mutex = new Mutex(CONSTRUCT, lock)
    mutexes.set(lock, mutex)
  }
  return mutex
}

/**
 * An inter-process mutex: exclusive between processes and between worker threads. Not recursive:
 * locking it again from the thread that holds it throws `EDEADLK`. If the holding process (or
 * thread) dies, the next locker takes it over and its guard says `ownerDied: true`.
 */
export class Mutex {
  /** Bytes a placed mutex occupies; lay out your data around it. */
  static readonly byteLength: number = CONTRACT.mutex.size
  /** Required alignment of a placed mutex's byte offset. */
  static readonly alignment: number = CONTRACT.mutex.align

  readonly #lock: LockCell

  /** @internal Use `seg.mutex` or `Mutex.at()`. */
  constructor(token: symbol, lock: LockCell) {
    if (token !== CONSTRUCT)
      throw coded(new TypeError('Use seg.mutex or Mutex.at(seg, byteOffset)'), 'ERR_ILLEGAL_CONSTRUCTOR')
    this.#lock = lock
  }

  /**
   * The mutex occupying `Mutex.byteLength` bytes at `byteOffset` of the data area (a multiple of
   * `Mutex.alignment`). Zeroed memory is an unlocked mutex, so a fresh segment needs no set-up.
   */
  static at(segment: Segment, byteOffset: number): Mutex {
    const handle = (segment as unknown as { [HANDLE]?: unknown } | null)?.[HANDLE]
    if (!(handle instanceof Handle)) throw typeError('segment', 'an instance of Segment', segment)
    handle.assertOpen()
    return mutexOf(handle, validateOffset(handle, byteOffset, 'byteOffset', Mutex.byteLength, Mutex.alignment))
  }

  /** Blocks this thread until the lock is taken; throws `ETIMEDOUT` after `options.timeout` ms. */
  lock(options?: TimeoutOptions): LockGuard {
    const ownerDied = this.#lock.acquire(timeoutOption(options))
    return new Guard(this.#lock, ownerDied)
  }

  /**
   * Resolves with a `LockGuard` once the lock is taken, without blocking the event loop: the
   * uncontended case completes at once in JavaScript, a contended one waits on a native waiter
   * thread (never the libuv pool) and takes the lock here when the wait ends. Rejects with
   * `ETIMEDOUT` after `options.timeout` ms and with `AbortError` when `options.signal` aborts.
   * Unlike `lock()`, it never throws `EDEADLK`: if this thread already holds the lock (another
   * async task of the same thread), it waits for that guard to be released, so concurrent
   * `withLock` calls of one thread run one after the other.
   */
  async lockAsync(options?: AsyncOptions): Promise<LockGuard> {
    const { timeout, signal } = validateOptions<AsyncOptions>(options, 'options', ['timeout', 'signal'], false)
    const timeoutMs = validateTimeout(timeout, 'options.timeout')
    const abortSignal = validateSignal(signal)
    if (abortSignal?.aborted) throw new AbortError(undefined, { cause: abortSignal.reason })
    this.#lock.handle.assertOpen()
    const ownerDied = await this.#lock.acquireAsync(timeoutMs, abortSignal)
    return new Guard(this.#lock, ownerDied)
  }

  /**
   * Runs `fn` holding the lock and returns its result; `fn` may be async. The lock is released
   * when `fn` returns, throws or rejects. Takes the same options as `lockAsync`.
   */
  async withLock<T>(fn: (guard: LockGuard) => T | Promise<T>, options?: AsyncOptions): Promise<T> {
    if (typeof fn !== 'function') throw typeError('fn', 'of type function', fn)
    const guard = await this.lockAsync(options)
    try {
      return await fn(guard)
    } finally {
      if (guard.locked) guard.unlock()
    }
  }

  /**
   * Takes the lock if it is free (or its holder died); otherwise returns `null` at once, also
   * when this thread holds it (as POSIX `trylock` says EBUSY). Never waits, never throws "busy".
   */
  tryLock(): LockGuard | null {
    const outcome = this.#lock.tryAcquire()
    return outcome === 0 ? null : new Guard(this.#lock, outcome === 2)
  }

  /** A snapshot: who holds it (and whether that thread is alive), waiters, counters. */
  stats(): MutexStats {
    this.#lock.handle.assertOpen()
    return mutexStats(this.#lock.handle.native.mutexStats(this.#lock.cell))
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
  readonly #lock: LockCell
  /** Bit 1: this guard holds the lock; bit 2: the previous holder died. */
  #bits: number

  constructor(lock: LockCell, ownerDied: boolean) {
    this.#lock = lock
    this.#bits = ownerDied ? 3 : 1
  }

  get ownerDied(): boolean {
    return (this.#bits & 2) !== 0
  }

  get locked(): boolean {
    return (this.#bits & 1) !== 0 && !this.#lock.handle.closed
  }

  unlock(): void {
    if ((this.#bits & 1) === 0 || this.#lock.handle.closed) {
      throw stateError(
        'ERR_SHM_NOT_LOCKED',
        'This guard no longer holds its lock (already unlocked, or its segment was closed)',
      )
    }
    this.#bits &= 2
    this.#lock.release()
  }

  [Symbol.dispose](): void {
    if (this.locked) this.unlock()
  }
}
