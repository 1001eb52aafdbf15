// Errors: every error shmkit throws has a `code`, as Node's own APIs do.

/** Every error shmkit throws has a `code`: Node's argument codes, errno names, or `ERR_SHM_*`. */
export interface ShmkitError extends Error {
  code: string
}

export function coded<E extends Error>(error: E, code: string): E & ShmkitError {
  return Object.assign(error, { code })
}

export function typeError(name: string, expected: string, actual: unknown): TypeError & ShmkitError {
  return coded(
    new TypeError(`The "${name}" argument must be ${expected}. Received ${describe(actual)}`),
    'ERR_INVALID_ARG_TYPE',
  )
}

export function rangeError(name: string, expected: string, actual: unknown): RangeError & ShmkitError {
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

export function timedOut(what: string, timeout?: number): Error & ShmkitError {
  const after = timeout === undefined ? '' : ` after ${Math.round(timeout)} ms`
  return coded(new Error(`Timed out${after} waiting for ${what}`), 'ETIMEDOUT')
}

export function stateError(code: string, message: string): Error & ShmkitError {
  return coded(new Error(message), code)
}

export function describe(value: unknown): string {
  if (value === null) return 'null'
  if (typeof value === 'string') return `type string (${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)})`
  if (typeof value === 'number') return `${value}`
  if (typeof value === 'object' || typeof value === 'function') return `an instance of ${value.constructor?.name ?? 'Object'}`
  return `type ${typeof value} (${String(value)})`
}
