// The JavaScript side of the lock protocol (docs/LOCKING.md) for one lock cell of one mapping:
// the uncontended lock and unlock are one Atomics.compareExchange each on the mapped lock word;
// native code runs only to sleep, wake, or take over from a dead holder. An asynchronous
// acquisition waits on a native waiter thread that never takes the lock: this thread takes it
// when the wait settles, so a lock is only ever held by a thread running the code that releases
// it. `Mutex` (public) and a channel's side locks are built on this.

import { AbortError, stateError, timedOut } from './errors'
import type { CellState, Handle } from './handle'
import { CONTRACT, currentThreadIdentity, type WaitToken } from './native'
import { deadlineOf, nativeWait, remainingMs } from './waiting'

/** Lock word layout, in 32-bit slots of the cell (docs/LOCKING.md). */
const STATE = CONTRACT.mutex.state / 4
const OWNER_TID = CONTRACT.mutex.ownerTid / 4
const OWNER_NS = CONTRACT.mutex.ownerNs / 4
const OWNER_PID = CONTRACT.mutex.ownerPid / 4
const OWNER_START_LO = CONTRACT.mutex.ownerStart / 4
const OWNER_START_HI = OWNER_START_LO + 1
const ACQUISITIONS = CONTRACT.mutex.acquisitions / 4
const SLEEPERS = CONTRACT.mutex.sleepers / 4
const OWNER_MASK = CONTRACT.mutex.ownerMask
const WAITERS = CONTRACT.mutex.waiters | 0
/**
 * Looks at a busy lock word this many times before handing the wait to native code, which spins
 * with a growing pause between looks, then sleeps in the kernel. Only a few looks: a tight loop
 * of loads here keeps pulling the lock's cache line away from the holder, whose every lock and
 * unlock then waits for it (2000 looks measured half the contended throughput of 4: see
 * docs/LOCKING.md).
 */
const SPIN_LOADS = 4

/** This thread's identity as recorded next to a lock it holds (worker threads get their own). */
const [THREAD_ID, THREAD_NS, THREAD_START_LO, THREAD_START_HI, THREAD_PID] = currentThreadIdentity().map(
  (v) => v | 0,
) as [number, number, number, number, number]

/** How a lock is taken after an asynchronous wait for its release (see `acquireAfterWait`). */
export type WaitOutcome = 'free' | 'woken' | 'owner-dead'

export class LockCell {
  readonly handle: Handle
  /** Native cell handle: -1 for the header mutex, else the data offset. */
  readonly cell: number
  readonly #words: Int32Array
  readonly #state: CellState
  /** Describes the lock in messages: `the lock of segment "jobs"`. */
  readonly what: string

  constructor(handle: Handle, cell: number, words: Int32Array, what: string) {
    this.handle = handle
    this.cell = cell
    this.#words = words
    this.#state = handle.cellState(cell)
    this.what = what
  }

  /** Whether this thread holds the lock (through any mapping of this segment). */
  get heldHere(): boolean {
    return this.#state.holder !== null
  }

  /** Blocks until taken, `timeoutMs` (-1: no limit) at most. Returns `ownerDied`. */
  acquire(timeoutMs: number): boolean {
    if (this.handle.closed) this.handle.assertOpen()
    if (Atomics.compareExchange(this.#words, STATE, 0, THREAD_ID) === 0) {
      this.#recordOwner()
      this.#state.holder = this.handle
      return false
    }
    return this.#acquireContended(timeoutMs)
  }

  /** The slow half of `acquire`: spin on the word in JavaScript, then wait natively. */
  #acquireContended(timeoutMs: number): boolean {
    if (this.#state.holder !== null) throw notRecursive(this.what)
    const words = this.#words
    for (let i = 0; i < SPIN_LOADS; i++) {
      const seen = Atomics.load(words, STATE)
      if ((seen & OWNER_MASK) !== 0) continue
      // Free: take it, with WAITERS exactly when some thread sleeps on it (docs/LOCKING.md).
      const waiters = Atomics.load(words, SLEEPERS) !== 0 ? WAITERS : 0
      if (Atomics.compareExchange(words, STATE, seen, THREAD_ID | waiters) === seen) {
        this.#recordOwner()
        this.#state.holder = this.handle
        return false
      }
    }
    const ownerDied = this.#nativeLock(timeoutMs)
    this.#state.holder = this.handle
    return ownerDied
  }

  /** Takes the lock if that can be done now: 0 busy (held by anyone, this thread included), 1 taken, 2 taken over from a dead holder. Never waits. */
  tryAcquire(): 0 | 1 | 2 {
    if (this.handle.closed) this.handle.assertOpen()
    let outcome: 0 | 1 | 2 = 1
    if (Atomics.compareExchange(this.#words, STATE, 0, THREAD_ID) === 0) this.#recordOwner()
    else if (this.#state.holder !== null) return 0
    else outcome = this.handle.native.tryLock(this.cell) as 0 | 1 | 2
    if (outcome !== 0) this.#state.holder = this.handle
    return outcome
  }

  /**
   * After an asynchronous wait for the release (`waitForRelease`), takes the lock as the protocol
   * says (keeping WAITERS, or taking over from a holder judged dead): 0 if a live thread got it
   * first (wait again), 1 taken, 2 taken over.
   */
  acquireAfterWait(outcome: WaitOutcome): 0 | 1 | 2 {
    if (this.handle.closed) this.handle.assertOpen()
    if (this.#state.holder !== null) return 0
    const taken = this.handle.native.lockAfterWait(this.cell, outcome === 'owner-dead') as 0 | 1 | 2
    if (taken !== 0) this.#state.holder = this.handle
    return taken
  }

  /**
   * Takes the lock without blocking the event loop: at once if it can, else after native waits
   * for its release (the waiter never holds it). Rejects with `ETIMEDOUT` after `timeoutMs` (-1:
   * no limit) and `AbortError` when `signal` aborts. While this thread holds the lock (another
   * async task of it), waits for that holding to end. Returns `ownerDied`.
   */
  async acquireAsync(timeoutMs: number, signal: AbortSignal | undefined): Promise<boolean> {
    const now = this.tryAcquire()
    if (now !== 0) return now === 2
    const deadline = deadlineOf(timeoutMs)
    for (;;) {
      const [outcome, token] = await nativeWait(this.handle, signal, (t) =>
        this.waitForRelease(remainingMs(deadline), t),
      )
      if (outcome === 'timed-out') throw timedOut(this.what, timeoutMs)
      if (this.handle.closed || signal?.aborted) {
        token.cancel() // passes on a wake-up the waiter consumed
        if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason })
        this.handle.assertOpen()
      }
      const taken = this.acquireAfterWait(outcome)
      if (taken !== 0) return taken === 2
    }
  }

  /** Whether the lock word shows no owner right now (a hint: it may change at once). */
  looksFree(): boolean {
    return (Atomics.load(this.#words, STATE) & OWNER_MASK) === 0
  }

  /** A native waiter for the lock's release; it never takes the lock. */
  waitForRelease(timeoutMs: number, token: WaitToken): Promise<WaitOutcome | 'timed-out' | 'cancelled'> {
    return this.handle.native.waitForRelease(this.cell, timeoutMs, token)
  }

  /** Releases the lock if this thread holds it through this mapping (closing the mapping). */
  releaseAll(): void {
    if (this.#state.holder === this.handle) this.release()
  }

  /** Releases the lock this thread holds (a guard's, or one taken by `acquire`). */
  release(): void {
    this.#state.holder = null
    const words = this.#words
    words[OWNER_TID] = 0 // the record goes before the lock: a record naming a thread is its holding
    if (Atomics.compareExchange(words, STATE, THREAD_ID, 0) !== THREAD_ID) {
      this.handle.native.unlockContended(this.cell)
    }
  }

  /** The contended path of `acquire`, with the lock's name in a timeout's message. */
  #nativeLock(timeoutMs: number): boolean {
    try {
      return this.handle.native.lock(this.cell, timeoutMs)
    } catch (error) {
      if ((error as { code?: unknown }).code === 'ETIMEDOUT') throw timedOut(this.what, timeoutMs)
      throw error
    }
  }

  /**
   * Writes this thread's identity beside the word: the tid always (the last holder cleared it),
   * the rest only when another thread held it last. `owner_tid` goes last, with release ordering
   * when the fields changed (a reader that sees the tid sees them). When they already describe
   * this thread, a plain store suffices: this thread wrote them before its earlier release, and
   * its acquiring CAS since orders the store after that release.
   */
  #recordOwner(): void {
    const words = this.#words
    words[ACQUISITIONS] = (words[ACQUISITIONS]! + 1) | 0 // we hold the lock: a plain increment
    if (
      words[OWNER_START_LO] !== THREAD_START_LO ||
      words[OWNER_START_HI] !== THREAD_START_HI ||
      words[OWNER_NS] !== THREAD_NS
    ) {
      words[OWNER_NS] = THREAD_NS
      words[OWNER_PID] = THREAD_PID
      words[OWNER_START_LO] = THREAD_START_LO
      words[OWNER_START_HI] = THREAD_START_HI
      Atomics.store(words, OWNER_TID, THREAD_ID)
    } else {
      words[OWNER_TID] = THREAD_ID
    }
  }
}

function notRecursive(what: string): Error {
  return stateError(
    'EDEADLK',
    `This thread already holds ${what}; shmkit locks are not recursive (use lockAsync to queue behind it)`,
  )
}
