// The inter-process mutex: the JavaScript side of the lock protocol (docs/LOCKING.md). The
// uncontended lock and unlock are one Atomics.compareExchange each on the mapped lock word;
// native code runs only to sleep, wake, or take over from a dead holder.

import { AbortError, coded, stateError, timedOut, typeError } from './errors'
import { CONSTRUCT } from './internal'
import { currentThreadIdentity } from './native'
import { Segment, type MutexStats } from './segment'
import { timeoutOption, validateOffset, validateOptions, validateSignal, validateTimeout } from './validate'
import { nativeWait } from './waiting'

/** Native cell handle of the header mutex; placed mutexes use their data offset. */
export const HEADER_MUTEX = -1
/** Lock word layout (docs/LOCKING.md), in 32-bit slots of the cell. */
const STATE = 0
const OWNER_MASK = 0x3fffffff
const OWNER_TID = 1
const OWNER_NS = 2
const OWNER_PID = 3
const OWNER_START_LO = 4
const OWNER_START_HI = 5
const ACQUISITIONS = 6


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
    const timeoutMs = timeoutOption(options)
    if (this.#life.closed) this.#segment.assertOpen()
    if (Atomics.compareExchange(this.#words, STATE, 0, THREAD_ID) === 0) {
      this.#recordOwner()
      return this.#guard(false)
    }
    return this.#guard(this.#segment.native.lock(this.#cell, timeoutMs))
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
export class Guard implements LockGuard {
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
