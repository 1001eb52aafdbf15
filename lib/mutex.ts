// The inter-process mutex: the JavaScript side of the lock protocol (docs/LOCKING.md). The
// uncontended lock and unlock are one Atomics.compareExchange each on the mapped lock word;
// native code runs only to sleep, wake, or take over from a dead holder. An asynchronous
// acquisition waits on a native waiter thread that never takes the lock: this thread takes it
// when the wait settles, so a lock is only ever held by a thread running the code that releases it.

import { AbortError, coded, stateError, timedOut, typeError } from './errors'
import { CONSTRUCT } from './internal'
import { currentThreadIdentity, type WaitToken } from './native'
import { Segment, type MutexStats } from './segment'
import { timeoutOption, validateOffset, validateOptions, validateSignal, validateTimeout, type AsyncOptions, type TimeoutOptions } from './validate'
import { deadlineOf, nativeWait, remainingMs } from './waiting'

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

/**
 * What this thread knows of one lock cell, shared by every `Mutex` object of this thread over
 * that cell (one per mapping of the segment): whether this thread holds it. Thread ids alone
 * cannot tell (they repeat across PID namespaces), and a lock taken through one mapping is held
 * through every other.
 */
export interface CellState {
  held: boolean
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
  readonly #state: CellState
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
    this.#state = segment.cellState(cell)
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
  lock(options?: TimeoutOptions): LockGuard {
    const timeoutMs = timeoutOption(options)
    if (this.#life.closed) this.#segment.assertOpen()
    if (Atomics.compareExchange(this.#words, STATE, 0, THREAD_ID) === 0) {
      this.#recordOwner()
      return this.#guard(false)
    }
    if (this.#state.held) throw notRecursive()
    return this.#guard(this.#segment.native.lock(this.#cell, timeoutMs))
  }

  /**
   * @internal Takes the lock for one of shmkit's own short critical sections, without a guard
   * object (channels call this twice per message). Release it with `releaseInFlight()`.
   */
  acquire(timeoutMs: number): void {
    if (this.#life.closed) this.#segment.assertOpen()
    if (Atomics.compareExchange(this.#words, STATE, 0, THREAD_ID) === 0) this.#recordOwner()
    else if (this.#state.held) throw notRecursive()
    else this.#segment.native.lock(this.#cell, timeoutMs)
    this.#state.held = true
  }

  /**
   * @internal `acquire` without waiting: false when the lock is held (by anyone, this thread
   * included), true once taken (release it with `releaseInFlight()`).
   */
  tryAcquire(): boolean {
    if (this.#life.closed) this.#segment.assertOpen()
    if (Atomics.compareExchange(this.#words, STATE, 0, THREAD_ID) === 0) this.#recordOwner()
    else if (this.#state.held || this.#segment.native.tryLock(this.#cell) === 0) return false
    this.#state.held = true
    return true
  }

  /**
   * @internal After an asynchronous wait for the lock's release (`waitForRelease`), takes it as
   * the protocol says (keeping WAITERS, or taking over from a holder judged dead); false if a
   * live thread got it first.
   */
  acquireAfterWait(ownerDead: boolean): boolean {
    if (this.#life.closed) this.#segment.assertOpen()
    if (this.#state.held || this.#segment.native.lockAfterWait(this.#cell, ownerDead) === 0) return false
    this.#state.held = true
    return true
  }

  /** @internal Whether the lock word shows no owner right now (a hint: it may change at once). */
  looksFree(): boolean {
    return (Atomics.load(this.#words, STATE) & OWNER_MASK) === 0
  }

  /** @internal A native waiter for the lock's release; it never takes the lock. */
  waitForRelease(timeoutMs: number, token: WaitToken): Promise<'free' | 'woken' | 'owner-dead' | 'timed-out' | 'cancelled'> {
    return this.#segment.native.waitForRelease(this.#cell, timeoutMs, token)
  }

  #guard(ownerDied: boolean): LockGuard {
    this.#held++
    this.#state.held = true
    return new Guard(this, this.#life, ownerDied)
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
    this.#segment.assertOpen()
    const free = this.tryLock()
    if (free !== null) return free
    const deadline = deadlineOf(timeoutMs)
    for (;;) {
      const [outcome, token] = await nativeWait(this.#segment, abortSignal, (t) => this.waitForRelease(remainingMs(deadline), t))
      if (outcome === 'timed-out') throw timedOut('the lock', timeoutMs)
      if (this.#life.closed || abortSignal?.aborted) {
        token.cancel() // passes on a wake-up the waiter consumed
        if (abortSignal?.aborted) throw new AbortError(undefined, { cause: abortSignal.reason })
        this.#segment.assertOpen()
      }
      // Another async task of this thread may hold it now: then wait again, like anyone else.
      if (this.#state.held) continue
      const taken = this.#segment.native.lockAfterWait(this.#cell, outcome === 'owner-dead')
      if (taken !== 0) return this.#guard(taken === 2)
    }
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
    if (this.#life.closed) this.#segment.assertOpen()
    if (Atomics.compareExchange(this.#words, STATE, 0, THREAD_ID) === 0) {
      this.#recordOwner()
      return this.#guard(false)
    }
    if (this.#state.held) return null
    const outcome = this.#segment.native.tryLock(this.#cell)
    return outcome === 0 ? null : this.#guard(outcome === 2)
  }

  /** A snapshot: who holds it (and whether that thread is alive), waiters, counters. */
  stats(): MutexStats {
    this.#segment.assertOpen()
    return this.#segment.native.mutexStats(this.#cell)
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

  /** @internal Releases a lock this thread holds (a guard's, or one taken by `acquire`). */
  releaseInFlight(): void {
    this.#state.held = false
    const words = this.#words
    words[OWNER_TID] = 0 // the record goes before the lock: a record naming a thread is its holding
    if (Atomics.compareExchange(words, STATE, THREAD_ID, 0) !== THREAD_ID) {
      this.#segment.native.unlockContended(this.#cell)
    }
  }

  /** Writes this thread's identity beside the word: the tid always (the last holder cleared it),
   * the rest only when another thread held it last. */
  #recordOwner(): void {
    const words = this.#words
    words[ACQUISITIONS] = (words[ACQUISITIONS]! + 1) | 0 // we hold the lock: a plain increment
    if (words[OWNER_START_LO] !== THREAD_START_LO || words[OWNER_START_HI] !== THREAD_START_HI || words[OWNER_NS] !== THREAD_NS) {
      words[OWNER_NS] = THREAD_NS
      words[OWNER_PID] = THREAD_PID
      words[OWNER_START_LO] = THREAD_START_LO
      words[OWNER_START_HI] = THREAD_START_HI
    }
    Atomics.store(words, OWNER_TID, THREAD_ID) // last: a reader that sees it sees the rest
  }
}

function notRecursive(): Error {
  return stateError('EDEADLK', 'This thread already holds the lock; shmkit locks are not recursive (use lockAsync to queue behind it)')
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
