// The private side of one mapping of a segment (of any kind): the native handle, the two
// zero-copy buffers, whether this mapping is closed, and the bookkeeping closing needs. The public
// classes (`Segment`, `Mutex`, `Channel`) hold only a `Handle`, behind the `HANDLE` symbol.

import { stateError } from './errors'
import { CONTRACT, NativeSegment, type NativeCreateOptions, type NativeOpenOptions, type WaitToken } from './native'

/** What a segment holds: its `kind` in the header. */
export type Kind = 'segment' | 'channel' | 'map' | 'topic'

/** A native wait in flight, tracked by its mapping so `close()` can cancel it. */
export interface PendingRequest {
  token: WaitToken
}

/**
 * What this thread knows of one lock cell: whether this thread holds it. Shared by every mapping
 * of the same segment instance in this thread (a lock taken through one mapping is held through
 * every other), because thread ids alone cannot tell (they repeat across PID namespaces).
 */
export interface CellState {
  /** The mapping through which this thread holds the lock, or null. */
  holder: Handle | null
}

/** Something `close()` must release first: the locks this mapping holds (see `LockCell`). */
export interface Releasable {
  releaseAll(): void
}

/** Per segment instance mapped by this thread: its cells' states, and how many mappings. */
const instances = new Map<string, { mappings: number; cells: Map<number, CellState> }>()

const KIND_LABELS: Record<Kind, string> = { segment: 'Segment', channel: 'Channel', map: 'Map', topic: 'Topic' }

/** Cell handle of the header mutex; placed mutexes use their data offset. */
export const HEADER_CELL = -1

export class Handle {
  readonly native: NativeSegment
  readonly name: string
  readonly size: number
  readonly kind: Kind
  /** The data area, zero-copy (a SharedArrayBuffer where the runtime can make one). */
  readonly data: ArrayBuffer | SharedArrayBuffer
  /** The header mutex cell, zero-copy. */
  readonly headerCell: ArrayBuffer
  readonly instance: string
  /** Shared with everything made from this mapping: one plain read on the hot paths. */
  closed = false
  /** Lock cells of this mapping (header mutex, placed mutexes, a channel's side locks). */
  readonly cells = new Map<number, Releasable>()
  /** Native waits in flight. */
  readonly pending = new Set<PendingRequest>()
  /** Critical sections running user code (a channel's `sendWith`/`recvWith` callback). */
  #busy = 0
  #closeDeferred = false

  constructor(native: NativeSegment) {
    this.native = native
    this.name = native.name
    this.size = native.size
    this.kind = CONTRACT.kinds[native.kind] as Kind
    const [data, headerCell] = native.buffers()
    this.data = data
    this.headerCell = headerCell
    this.instance = native.instance
    const known = instances.get(this.instance)
    if (known === undefined) instances.set(this.instance, { mappings: 1, cells: new Map() })
    else known.mappings++
  }

  static create(name: string, options: NativeCreateOptions): Handle {
    return new Handle(NativeSegment.create(name, options))
  }

  static open(name: string, options: NativeOpenOptions): Handle {
    return new Handle(NativeSegment.open(name, options))
  }

  static openOrCreate(name: string, options: NativeCreateOptions, open: NativeOpenOptions): Handle {
    return new Handle(NativeSegment.openOrCreate(name, options, open))
  }

  /** This thread's state of lock cell `cell`, shared by its mappings of this segment instance. */
  cellState(cell: number): CellState {
    const cells = instances.get(this.instance)!.cells
    let state = cells.get(cell)
    if (state === undefined) {
      state = { holder: null }
      cells.set(cell, state)
    }
    return state
  }

  /** Throws `ERR_SHM_CLOSED` once this mapping is closed. */
  assertOpen(): void {
    if (this.closed) throw stateError('ERR_SHM_CLOSED', `${KIND_LABELS[this.kind]} "${this.name}" is closed`)
  }

  /** Marks a critical section that runs user code: a `close()` inside it waits for its end. */
  enter(): void {
    this.#busy++
  }

  /** Ends what `enter` began (and performs a `close()` called inside it). */
  exit(): void {
    if (--this.#busy === 0 && this.#closeDeferred) this.close()
  }

  /**
   * Unmaps: releases the locks held through this mapping, cancels its native waits (a wake-up a
   * waiter consumed is passed on), detaches the buffers. Idempotent. Throws, once closed, if an
   * auto-unlink segment could not be removed by this last user (it stays, usable).
   */
  close(): void {
    if (this.closed) return
    if (this.#busy > 0) {
      this.#closeDeferred = true
      return
    }
    for (const cell of this.cells.values()) cell.releaseAll()
    for (const { token } of this.pending) token.cancel()
    this.closed = true
    const known = instances.get(this.instance)
    if (known !== undefined && --known.mappings === 0) instances.delete(this.instance)
    this.native.close([this.data, this.headerCell])
  }
}
