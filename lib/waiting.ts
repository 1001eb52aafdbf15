// Asynchronous waits on native waiter threads: settling, aborting and cancelling them, and the
// deadlines the blocking loops share. A waiter only waits; whatever it waited for (a lock, room in
// a channel) is taken by the JavaScript thread itself once the wait settles.

import { AbortError, stateError } from './errors'
import type { Handle, PendingRequest } from './handle'
import { WaitToken } from './native'

/**
 * Runs `start(token)` (a native waiter) and settles with its outcome and its token, or rejects
 * with an `AbortError` as soon as `signal` aborts (the token is then cancelled: a wake-up the
 * waiter had already consumed is passed on to another sleeper). A request cancelled by
 * `close()` rejects with `ERR_SHM_CLOSED`. A caller that does not use a settled outcome
 * (it gives up) calls `token.cancel()` so that what the waiter consumed is passed on.
 */
export async function nativeWait<T extends string>(
  handle: Handle,
  signal: AbortSignal | undefined,
  start: (token: WaitToken) => Promise<T | 'cancelled'>,
): Promise<[T, WaitToken]> {
  const request: PendingRequest = { token: new WaitToken() }
  const pending = start(request.token)
  handle.pending.add(request)
  let outcome: T | 'cancelled'
  try {
    outcome = signal === undefined ? await pending : await abortable(signal, request.token, pending)
  } finally {
    handle.pending.delete(request)
  }
  if (outcome === 'cancelled') {
    if (handle.closed) throw stateError('ERR_SHM_CLOSED', `"${handle.name}" was closed while waiting`)
    throw new AbortError()
  }
  return [outcome, request.token]
}

function abortable<T extends string>(
  signal: AbortSignal,
  token: WaitToken,
  pending: Promise<T | 'cancelled'>,
): Promise<T | 'cancelled'> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      token.cancel()
      reject(new AbortError(undefined, { cause: signal.reason }))
    }
    signal.addEventListener('abort', onAbort, { once: true })
    pending.then(
      (outcome) => {
        signal.removeEventListener('abort', onAbort)
        resolve(outcome)
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(error)
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
