// Argument validation, Node-style: wrong types are TypeErrors (ERR_INVALID_ARG_TYPE), values out
// of range RangeErrors (ERR_OUT_OF_RANGE), unknown options are refused (they are usually typos).
// Everything is checked here, before any native call.

import { coded, rangeError, typeError } from './errors'
import type { Kind } from './handle'
import { CONTRACT, type NativeCreateOptions, type NativeOpenOptions } from './native'

/** Longest segment name, in bytes. */
export const MAX_NAME_LENGTH: number = CONTRACT.maxNameLength
/** Largest data area, in bytes (16 TiB): beyond any machine, below JavaScript's limits. */
export const MAX_SEGMENT_SIZE: number = CONTRACT.maxSegmentSize
const NAME_PATTERN = /^[A-Za-z0-9._-]+$/

/** What every kind's `create` takes (see `CreateOptions` of `Segment`). */
interface CommonCreateOptions {
  size?: number
  mode?: number
  autoUnlink?: boolean
  reserve?: boolean
}

/** Options of every blocking call (`lock`, `send`, `recv`, `wait`, ...). */
export interface TimeoutOptions {
  /** Milliseconds to wait before throwing `ETIMEDOUT`; default (or `Infinity`): no limit. */
  timeout?: number
}

/** Options of every asynchronous call (`lockAsync`, `sendAsync`, `recvAsync`, `waitAsync`, ...). */
export interface AsyncOptions extends TimeoutOptions {
  /** Aborts the wait: the promise rejects with an `AbortError` (`code: 'ABORT_ERR'`). */
  signal?: AbortSignal
}

export function validateName(name: unknown): string {
  if (typeof name !== 'string') throw typeError('name', 'of type string', name)
  if (name.length === 0 || !NAME_PATTERN.test(name)) {
    throw coded(
      new TypeError(
        `The segment name ${JSON.stringify(name)} is invalid: use 1 to ${MAX_NAME_LENGTH} characters from A-Z a-z 0-9 . _ -`,
      ),
      'ERR_INVALID_ARG_VALUE',
    )
  }
  if (name.length > MAX_NAME_LENGTH) {
    throw coded(
      new Error(`The segment name is ${name.length} characters long; the limit is ${MAX_NAME_LENGTH}`),
      'ENAMETOOLONG',
    )
  }
  return name
}

export function validateOptions<T extends object>(
  options: unknown,
  name: string,
  allowed: readonly string[],
  required: boolean,
): Partial<T> {
  if (options === undefined && !required) return {}
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw typeError(name, 'of type object', options)
  }
  // for-in, not Object.keys: no array is allocated (these calls sit on hot paths).
  for (const key in options) {
    if (!allowed.includes(key)) throw unknownOption(key, name, allowed)
  }
  return options as Partial<T>
}

export function validateInteger(value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== 'number') throw typeError(name, 'of type number', value)
  if (!Number.isInteger(value) || value < min || value > max) {
    throw rangeError(name, `an integer >= ${min} and <= ${max}`, value)
  }
  return value
}

/** Milliseconds, `Infinity` or `undefined` (no limit); returns -1 for "no limit", as native expects. */
export function validateTimeout(value: unknown, name = 'timeout'): number {
  if (value === undefined || value === Infinity) return -1
  if (typeof value !== 'number') throw typeError(name, 'of type number', value)
  if (Number.isNaN(value) || value < 0) throw rangeError(name, 'a number of milliseconds >= 0', value)
  return value
}

/**
 * The timeout of an `{ timeout? }` options object (lock, send, recv), in ms or -1 for none.
 * These calls sit on hot paths: `undefined` options and a valid `timeout` return at once, reading
 * properties only. Enumerating the keys there would make V8 allocate the `{ timeout: 1000 }`
 * literal it otherwise optimizes away (15% of an uncontended lock), so the keys are checked only
 * when `timeout` is missing or invalid: a misspelt `timeout` is an error, and so is `signal`
 * (only asynchronous calls take it), but other keys beside a valid `timeout` are not looked at.
 */
export function timeoutOption(options: unknown): number {
  if (options === undefined) return -1
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw typeError('options', 'of type object', options)
  }
  const timeout = (options as TimeoutOptions).timeout
  if (typeof timeout === 'number' && timeout >= 0 && (options as { signal?: unknown }).signal === undefined) {
    return timeout === Infinity ? -1 : timeout
  }
  for (const key in options) if (key !== 'timeout') throw unknownOption(key, 'options', TIMEOUT_KEYS)
  if (timeout === undefined) return -1
  return validateTimeout(timeout, 'options.timeout') // throws the right error
}

const TIMEOUT_KEYS = ['timeout']

function unknownOption(key: string, name: string, allowed: readonly string[]): TypeError {
  return coded(
    new TypeError(`Unknown option "${key}" in "${name}"; known options: ${allowed.join(', ')}`),
    'ERR_INVALID_ARG_VALUE',
  )
}

export function validateBoolean(value: unknown, name: string, fallback = false): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') throw typeError(name, 'of type boolean', value)
  return value
}

/** Validates segment creation options (plus `extra` allowed keys) for the native side. */
export function nativeCreateOptions(options: unknown, kind: Kind, extra: readonly string[]): NativeCreateOptions {
  const { size, mode, autoUnlink, reserve } = validateOptions<CommonCreateOptions>(
    options,
    'options',
    ['size', 'mode', 'autoUnlink', 'reserve', ...extra],
    true,
  )
  return {
    size: validateSize(size),
    mode: validateMode(mode),
    kind: CONTRACT.kinds.indexOf(kind),
    autoUnlink: validateBoolean(autoUnlink, 'options.autoUnlink'),
    reserve: validateBoolean(reserve, 'options.reserve', true),
  }
}

/**
 * Whose segments an open accepts: a user id, a list of them, or `'any'`; by default only this
 * process's user (a name in /dev/shm can be taken by any user first).
 */
export type OwnerOption = number | readonly number[] | 'any'

/** Validates `{ wait, readyTimeout, owner }` (plus `extra` keys) for the native side. */
export function openOptions(options: unknown, extra: readonly string[]): NativeOpenOptions {
  const { readyTimeout, wait, owner } = validateOptions<{ readyTimeout?: number; wait?: number; owner?: unknown }>(
    options,
    'options',
    ['wait', 'readyTimeout', 'owner', ...extra],
    false,
  )
  const waitMs = wait === undefined ? -1 : validateTimeout(wait, 'options.wait')
  return {
    readyTimeoutMs: validateTimeout(readyTimeout, 'options.readyTimeout'),
    // "no limit" for `wait` is a huge timeout natively (-1 there means: do not wait).
    waitMs: wait === Infinity ? Number.MAX_VALUE : waitMs,
    ...ownerOption(owner),
  }
}

/** Validates the `owner` option: `{ owners, anyOwner }` as the native side takes it. */
export function ownerOption(owner: unknown): { owners: number[]; anyOwner: boolean } {
  if (owner === undefined) return { owners: [], anyOwner: false }
  if (owner === 'any') return { owners: [], anyOwner: true }
  const uids = typeof owner === 'number' ? [owner] : owner
  if (!Array.isArray(uids) || uids.length === 0) {
    throw typeError('options.owner', "a user id, a non-empty array of user ids, or 'any'", owner)
  }
  return { owners: uids.map((uid, i) => validateInteger(uid, `options.owner[${i}]`, 0, 2 ** 32 - 2)), anyOwner: false }
}

export function validateSize(value: unknown): number {
  return validateInteger(value, 'options.size', 1, MAX_SEGMENT_SIZE)
}

export function validateMode(value: unknown): number {
  return value === undefined ? CONTRACT.defaultMode : validateInteger(value, 'options.mode', 0, 0o777)
}

export function validateOffset(
  segment: { readonly size: number },
  value: unknown,
  name: string,
  byteLength: number,
  alignment: number,
): number {
  const offset = validateInteger(value, name, 0, Number.MAX_SAFE_INTEGER)
  if (offset % alignment !== 0) throw rangeError(name, `a multiple of ${alignment}`, offset)
  if (offset + byteLength > segment.size) {
    throw rangeError(name, `<= ${segment.size - byteLength} (the segment has ${segment.size} bytes)`, offset)
  }
  return offset
}

export function validateSignal(signal: unknown): AbortSignal | undefined {
  if (signal === undefined) return undefined
  if (!(signal instanceof AbortSignal)) throw typeError('options.signal', 'an instance of AbortSignal', signal)
  return signal
}
