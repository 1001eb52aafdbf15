// Asynchronous waits on native waiter threads: settling, aborting and cancelling them, and the
// deadlines the blocking loops share.

import { AbortError, stateError } from './errors'
import { WaitToken } from './native'
import type { Mutex } from './mutex'
import type { Segment } from './segment'

/** A native wait in flight, tracked by its segment so `close()` can cancel it. */
export interface PendingRequest {
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
export async function nativeWait<T extends string>(
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

export function abortable<T extends string>(
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

/** Absolute deadline (performance.now() ms) for a timeout, or -1 for none. */
export function deadlineOf(timeoutMs: number): number {
  return timeoutMs < 0 ? -1 : performance.now() + timeoutMs
}

/** Milliseconds left before `deadline`: -1 for no deadline, 0 once it has passed. */
export function remainingMs(deadline: number): number {
  return deadline < 0 ? -1 : Math.max(0, deadline - performance.now())
}
