// Segments: named shared memory, mapped as one zero-copy ArrayBuffer over the data area.

import { inspect } from 'node:util'

import { AbortError, coded } from './errors'
import { HEADER_CELL, Handle } from './handle'
import { segmentInspection, type SegmentInspection } from './inspect'
import { CONSTRUCT, HANDLE } from './internal'
import { Mutex, mutexOf } from './mutex'
import { NativeSegment, sharedArrayBuffers } from './native'
import {
  nativeCreateOptions,
  openOptions,
  validateInteger,
  validateName,
  validateOffset,
  validateOptions,
  validateSignal,
  validateTimeout,
  type AsyncOptions,
  type OwnerOption,
  type TimeoutOptions,
} from './validate'
import { nativeWait } from './waiting'

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
   * Reserving costs the allocation up front; with `false`, pages are allocated on first touch,
   * as plain `shm_open` + `mmap` would.
   */
  reserve?: boolean
}

export interface OpenOptions {
  /**
   * Whose segment to accept: by default only one owned by this process's user, because any user
   * can create a name in /dev/shm first and then read or feed what you exchange
   * (`ERR_SHM_FOREIGN_OWNER`). A user id, a list of them, or `'any'` allows others explicitly.
   */
  owner?: OwnerOption
  /**
   * How long to wait, in ms, for a segment that does not exist yet (its creator has not started):
   * `ENOENT` only after that. Default 0: `ENOENT` at once. `Infinity`: no limit.
   */
  wait?: number
  /** How long to wait, in ms, for a creator that is still initialising the segment. Default 2000. */
  readyTimeout?: number
}

/** Result of `wait`, as with `Atomics.wait`. */
export type WaitResult = 'ok' | 'not-equal' | 'timed-out'

/**
 * A named shared-memory segment mapped into this process (or worker thread).
 *
 * A segment lives until someone unlinks it: closing, process exit and garbage collection only
 * unmap it. Where `buffer` is an `ArrayBuffer`, `close()` detaches it, so views over it read as
 * empty instead of touching unmapped memory; a `SharedArrayBuffer` cannot be detached, so the
 * mapping then stays until the last view over it (in any thread) is garbage-collected.
 */
export class Segment {
  /** @internal */
  readonly [HANDLE]: Handle

  /** @internal Use `Segment.create`, `Segment.open` or `Segment.openOrCreate`. */
  constructor(token: symbol, handle: Handle) {
    if (token !== CONSTRUCT)
      throw coded(
        new TypeError('Use Segment.create(), Segment.open() or Segment.openOrCreate()'),
        'ERR_ILLEGAL_CONSTRUCTOR',
      )
    this[HANDLE] = handle
  }

  /** Creates segment `name`. Throws `EEXIST` if it exists, `ENOSPC` if shared memory is too small. */
  static create(name: string, options: CreateOptions): Segment {
    validateName(name)
    return new Segment(CONSTRUCT, Handle.create(name, nativeCreateOptions(options, 'segment', [])))
  }

  /**
   * Opens existing segment `name`. Throws `ENOENT` if it does not exist (after `options.wait` ms),
   * `ERR_SHM_*` if it is not a valid shmkit segment. A segment of another kind (a channel) opens
   * too, as its raw data area: a view for tools, not a way to use it.
   */
  static open(name: string, options?: OpenOptions): Segment {
    validateName(name)
    return new Segment(CONSTRUCT, Handle.open(name, openOptions(options, [])))
  }

  /**
   * Opens `name`, creating it if needed. Safe to race from many processes: exactly one creates
   * it (`seg.created` tells which), the others wait for it to be ready. Throws
   * `ERR_SHM_SIZE_MISMATCH` if it exists with another size.
   */
  static openOrCreate(name: string, options: CreateOptions & Pick<OpenOptions, 'readyTimeout' | 'owner'>): Segment {
    validateName(name)
    const native = nativeCreateOptions(options, 'segment', ['readyTimeout', 'owner'])
    const { readyTimeout, owner } = options as OpenOptions
    return new Segment(CONSTRUCT, Handle.openOrCreate(name, native, openOptions({ readyTimeout, owner }, [])))
  }

  /**
   * Removes segment `name`; processes that have it open keep using it. Throws `ENOENT` if absent,
   * `ERR_SHM_WRONG_KIND` if `name` is a channel (remove it with `Channel.unlink`).
   */
  /**
   * Whether `seg.buffer` is a real `SharedArrayBuffer` in this runtime: Node.js 22 and later,
   * where Node-API can make one over external memory (`Atomics.wait` works on it, and posting it
   * to a worker shares the memory rather than copying it). Elsewhere (Node 20, Bun, Deno) it is an
   * `ArrayBuffer`. The environment variable `SHMKIT_NO_SHAREDARRAYBUFFER=1` forces the latter.
   */
  static readonly sharedArrayBuffers: boolean = sharedArrayBuffers()

  static unlink(name: string): void {
    NativeSegment.unlink(validateName(name), 1)
  }

  /**
   * Describes segment (or channel) `name` without opening it for use: header fields, the
   * processes that have it open and whether each is alive, its mutexes' holders and counters, a
   * channel's traffic. Throws like `open` for a missing, foreign or damaged segment.
   */
  static inspect(name: string): SegmentInspection {
    return segmentInspection(NativeSegment.inspect(validateName(name)))
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

  get name(): string {
    return this[HANDLE].name
  }

  /** Bytes in the data area. */
  get size(): number {
    return this[HANDLE].size
  }

  /**
   * The data area, zero-copy: a `SharedArrayBuffer` where the runtime can make one (see
   * `Segment.sharedArrayBuffers`), else an `ArrayBuffer`, which is empty once closed. Every
   * `byteOffset` in this API is relative to it.
   */
  get buffer(): ArrayBuffer | SharedArrayBuffer {
    return this[HANDLE].data
  }

  /** Whether the segment removes itself when its last user closes it or dies. */
  get autoUnlink(): boolean {
    const handle = this[HANDLE]
    handle.assertOpen()
    return handle.native.autoUnlink
  }

  /** Whether this mapping created the segment (as opposed to opening an existing one). */
  get created(): boolean {
    return this[HANDLE].native.created
  }

  /** Whether this mapping is closed. */
  get closed(): boolean {
    return this[HANDLE].closed
  }

  /** The mutex in the segment header. */
  get mutex(): Mutex {
    const handle = this[HANDLE]
    handle.assertOpen()
    return mutexOf(handle, HEADER_CELL)
  }

  /**
   * Unmaps the segment from this process, releasing the locks held through this mapping first.
   * Never removes the segment (see `unlink`), except that the last user of an `autoUnlink`
   * segment removes it; if it may not (another user's segment), `close()` closes this mapping
   * and then throws that error (`EACCES`/`EPERM`). Idempotent.
   */
  close(): void {
    this[HANDLE].close()
  }

  /** Removes the segment's name (this mapping stays usable until closed). */
  unlink(): void {
    Segment.unlink(this.name)
  }

  /**
   * Sleeps while the 32-bit word at `byteOffset` equals `expected`, like `Atomics.wait`, but woken
   * by `notify` from any process. `options` is `{ timeout }` or, as with `Atomics.wait`, the
   * timeout in ms. Blocks this thread: prefer it in workers, not on the main thread. May wake
   * spuriously: re-check your condition in a loop.
   */
  wait(byteOffset: number, expected: number, options?: number | TimeoutOptions): WaitResult {
    const handle = this[HANDLE]
    handle.assertOpen()
    const offset = validateOffset(handle, byteOffset, 'byteOffset', 4, 4)
    const value = validateInteger(expected, 'expected', -(2 ** 31), 2 ** 32 - 1) | 0
    const timeout =
      typeof options === 'object'
        ? validateOptions<TimeoutOptions>(options, 'options', ['timeout'], false).timeout
        : options
    return handle.native.wait(
      offset,
      value,
      validateTimeout(timeout, typeof options === 'object' ? 'options.timeout' : 'timeout'),
    ) as WaitResult
  }

  /**
   * `wait` without blocking: the promise settles with `'ok'`, `'not-equal'` or `'timed-out'`.
   * `options` is `{ timeout, signal }` or the timeout in ms. The sleep happens on a native
   * waiter thread, not the libuv pool. Rejects with `AbortError` when `options.signal` aborts. A
   * pending wait keeps the process alive, like a timer.
   */
  async waitAsync(byteOffset: number, expected: number, options?: number | AsyncOptions): Promise<WaitResult> {
    const handle = this[HANDLE]
    handle.assertOpen()
    const offset = validateOffset(handle, byteOffset, 'byteOffset', 4, 4)
    const value = validateInteger(expected, 'expected', -(2 ** 31), 2 ** 32 - 1) | 0
    const { timeout, signal } =
      typeof options === 'object'
        ? validateOptions<AsyncOptions>(options, 'options', ['timeout', 'signal'], false)
        : { timeout: options, signal: undefined }
    const timeoutMs = validateTimeout(timeout, typeof options === 'object' ? 'options.timeout' : 'timeout')
    const abortSignal = validateSignal(signal)
    if (abortSignal?.aborted) throw new AbortError(undefined, { cause: abortSignal.reason })
    if (Atomics.load(new Int32Array(handle.data, offset, 1), 0) !== value) return 'not-equal'
    const [outcome] = await nativeWait(handle, abortSignal, (token) =>
      handle.native.waitAsync(offset, value, timeoutMs, token),
    )
    // The word held `expected` when this call began (checked above, as Atomics.waitAsync does).
    // The waiter thread compares again when it starts: a change in between is a wake-up that
    // came before the thread slept, not a word that never held the value.
    return outcome === 'not-equal' ? 'ok' : outcome
  }

  /** Wakes up to `count` (default: all) waiters on the word at `byteOffset`, in any process. Returns how many woke. */
  notify(byteOffset: number, count?: number): number {
    const handle = this[HANDLE]
    handle.assertOpen()
    const offset = validateOffset(handle, byteOffset, 'byteOffset', 4, 4)
    const limit = count === undefined || count === Infinity ? Infinity : validateInteger(count, 'count', 0, 2 ** 32 - 1)
    return handle.native.notify(offset, limit)
  }

  [Symbol.dispose](): void {
    this.close()
  }

  /** `util.inspect(seg)`: `Segment { name: 'jobs', size: 4096, closed: false }`. */
  [inspect.custom](): string {
    const { name, size, closed } = this[HANDLE]
    return `Segment ${inspect({ name, size, closed }, { breakLength: Infinity })}`
  }
}
