// Errors: every error shmkit throws has a `code`, as Node's own APIs do. The list of codes is the
// Rust core's (`ERROR_CODES` in crates/shmkit-core/src/error.rs, documented in docs/errors.md); a
// test checks that the union below matches it.

/** Every `code` a shmkit error can carry (docs/errors.md). */
export type ShmkitErrorCode =
  | 'EEXIST'
  | 'ENOENT'
  | 'EACCES'
  | 'EPERM'
  | 'ENOSPC'
  | 'ENAMETOOLONG'
  | 'ETIMEDOUT'
  | 'EDEADLK'
  | 'EMFILE'
  | 'EINVAL'
  | 'ENOMEM'
  | 'ENFILE'
  | 'EFBIG'
  | 'ENOSYS'
  | 'EBUSY'
  | 'EAGAIN'
  | 'EINTR'
  | 'EIO'
  | 'ABORT_ERR'
  | 'ERR_INVALID_ARG_TYPE'
  | 'ERR_INVALID_ARG_VALUE'
  | 'ERR_OUT_OF_RANGE'
  | 'ERR_ILLEGAL_CONSTRUCTOR'
  | 'ERR_SHM_NOT_SHMKIT'
  | 'ERR_SHM_VERSION'
  | 'ERR_SHM_CORRUPT'
  | 'ERR_SHM_NOT_READY'
  | 'ERR_SHM_CLOSED'
  | 'ERR_SHM_SIZE_MISMATCH'
  | 'ERR_SHM_WRONG_KIND'
  | 'ERR_SHM_CHANNEL_ENDED'
  | 'ERR_SHM_NO_PRODUCERS'
  | 'ERR_SHM_NO_CONSUMERS'
  | 'ERR_SHM_FOREIGN_OWNER'
  | 'ERR_SHM_MAP_FULL'
  | 'ERR_SHM_LAGGED'
  | 'ERR_SHM_NOT_LOCKED'
  | 'ERR_SHM_ENCODE'
  | 'ERR_SHM_NO_BINARY'
  | 'ERR_SHM_BUFFER_TAKEN'
  | 'ERR_SHM_EXTERNAL_BUFFERS_FORBIDDEN'
  | 'ERR_SHM_NAPI'
  | 'ERR_SHM_NO_NATS'
  | 'ERR_SHM_NO_STREAM'
  | 'ERR_SHM_CODEC_MISMATCH'

/** The codes of `ShmkitErrorCode`, in the order of docs/errors.md. */
export const ERROR_CODES: readonly ShmkitErrorCode[] = [
  'EEXIST',
  'ENOENT',
  'EACCES',
  'EPERM',
  'ENOSPC',
  'ENAMETOOLONG',
  'ETIMEDOUT',
  'EDEADLK',
  'EMFILE',
  'EINVAL',
  'ENOMEM',
  'ENFILE',
  'EFBIG',
  'ENOSYS',
  'EBUSY',
  'EAGAIN',
  'EINTR',
  'EIO',
  'ABORT_ERR',
  'ERR_INVALID_ARG_TYPE',
  'ERR_INVALID_ARG_VALUE',
  'ERR_OUT_OF_RANGE',
  'ERR_ILLEGAL_CONSTRUCTOR',
  'ERR_SHM_NOT_SHMKIT',
  'ERR_SHM_VERSION',
  'ERR_SHM_CORRUPT',
  'ERR_SHM_NOT_READY',
  'ERR_SHM_CLOSED',
  'ERR_SHM_SIZE_MISMATCH',
  'ERR_SHM_WRONG_KIND',
  'ERR_SHM_CHANNEL_ENDED',
  'ERR_SHM_NO_PRODUCERS',
  'ERR_SHM_NO_CONSUMERS',
  'ERR_SHM_FOREIGN_OWNER',
  'ERR_SHM_MAP_FULL',
  'ERR_SHM_LAGGED',
  'ERR_SHM_NOT_LOCKED',
  'ERR_SHM_ENCODE',
  'ERR_SHM_NO_BINARY',
  'ERR_SHM_BUFFER_TAKEN',
  'ERR_SHM_EXTERNAL_BUFFERS_FORBIDDEN',
  'ERR_SHM_NAPI',
  'ERR_SHM_NO_NATS',
  'ERR_SHM_NO_STREAM',
  'ERR_SHM_CODEC_MISMATCH',
]
const KNOWN = new Set<string>(ERROR_CODES)

/** An error thrown by shmkit: an `Error` (or `TypeError`/`RangeError`) with a `code`. */
export interface ShmkitError extends Error {
  code: ShmkitErrorCode
}

/**
 * Whether `error` is an error carrying one of shmkit's codes: narrows it to `ShmkitError`, so
 * `error.code` is typed. (Errno codes such as `ENOENT` are shared with Node's own APIs.)
 */
export function isShmkitError(error: unknown): error is ShmkitError {
  return error instanceof Error && KNOWN.has((error as { code?: unknown }).code as string)
}

export function coded<E extends Error>(error: E, code: ShmkitErrorCode): E & ShmkitError {
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

/** Rejection of an aborted asynchronous call, as Node's own APIs do it. */
export class AbortError extends Error {
  readonly code = 'ABORT_ERR'
  constructor(message = 'The operation was aborted', options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'AbortError'
  }
}

/** `Timed out after 1000 ms waiting for room in channel "jobs"`. */
export function timedOut(what: string, timeout?: number): Error & ShmkitError {
  const after = timeout === undefined || timeout < 0 ? '' : ` after ${Math.round(timeout)} ms`
  return coded(new Error(`Timed out${after} waiting for ${what}`), 'ETIMEDOUT')
}

export function stateError(code: ShmkitErrorCode, message: string): Error & ShmkitError {
  return coded(new Error(message), code)
}

export function describe(value: unknown): string {
  if (value === null) return 'null'
  if (typeof value === 'string')
    return `type string (${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)})`
  if (typeof value === 'number') return `${value}`
  if (typeof value === 'bigint') return `type bigint (${value}n)`
  if (typeof value === 'object' || typeof value === 'function')
    return `an instance of ${value.constructor?.name ?? 'Object'}`
  return `type ${typeof value} (${String(value)})`
}
