// A small layout helper: name the fields a segment holds (numbers, arrays, bytes and placed
// mutexes), get their offsets, the size to create, and typed views, instead of hand-computed
// offsets. Fields are laid out in the order given, each at its natural alignment.

import { coded, rangeError, typeError } from './errors'
import { Mutex } from './mutex'
import { Segment } from './segment'
import { validateInteger } from './validate'

const ARRAYS = {
  int8: Int8Array,
  uint8: Uint8Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int32: Int32Array,
  uint32: Uint32Array,
  float32: Float32Array,
  float64: Float64Array,
  bigint64: BigInt64Array,
  biguint64: BigUint64Array,
} as const

/** A field: a placed mutex, a number type (a one-element array view), or `[type, length]` for an array. */
export type FieldType = 'mutex' | keyof typeof ARRAYS
export type FieldSpec = FieldType | readonly [keyof typeof ARRAYS, number]
export type LayoutFields = Readonly<Record<string, FieldSpec>>

type ArrayOf<T extends keyof typeof ARRAYS> = InstanceType<(typeof ARRAYS)[T]>
type ViewOf<S> = S extends 'mutex'
  ? Mutex
  : S extends keyof typeof ARRAYS
    ? ArrayOf<S>
    : S extends readonly [infer T extends keyof typeof ARRAYS, number]
      ? ArrayOf<T>
      : never

/** The views of a layout over a segment: a `Mutex` per mutex field, a typed array per other field. */
export type LayoutView<F extends LayoutFields> = { -readonly [K in keyof F]: ViewOf<F[K]> }

/**
 * Fields laid out in a segment. Scalars are one-element typed arrays (use `Atomics` on them
 * across processes); `[type, n]` is an array of `n`; `'mutex'` takes `Mutex.byteLength` bytes.
 *
 * ```ts
 * const layout = Layout.of({ lock: 'mutex', count: 'int32', samples: ['float64', 100] })
 * const seg = Segment.openOrCreate('stats', { size: layout.size })
 * const { lock, count, samples } = layout.view(seg)
 * using guard = lock.lock()
 * count[0]++
 * ```
 */
export class Layout<F extends LayoutFields> {
  /** Bytes the fields take, from the layout's start (pass it as `size` to `Segment.create`). */
  readonly size: number
  /** Byte offset of each field from the layout's start. */
  readonly offsets: { readonly [K in keyof F]: number }
  readonly #fields: F

  private constructor(fields: F) {
    if (typeof fields !== 'object' || fields === null || Array.isArray(fields))
      throw typeError('fields', 'of type object', fields)
    const offsets: Record<string, number> = {}
    let end = 0
    for (const [name, spec] of Object.entries(fields)) {
      const { bytes, align } = measure(name, spec)
      const offset = Math.ceil(end / align) * align
      offsets[name] = offset
      end = offset + bytes
    }
    if (end === 0) throw coded(new TypeError('A layout needs at least one field'), 'ERR_INVALID_ARG_VALUE')
    this.#fields = fields
    this.offsets = offsets as { [K in keyof F]: number }
    this.size = Math.ceil(end / 8) * 8
  }

  /** Lays out `fields`, in order. */
  static of<F extends LayoutFields>(fields: F): Layout<F> {
    return new Layout(fields)
  }

  /** Views of every field of a segment laid out this way, from `byteOffset` (a multiple of 8). */
  view(segment: Segment, byteOffset = 0): LayoutView<F> {
    if (!(segment instanceof Segment)) throw typeError('segment', 'an instance of Segment', segment)
    const base = validateInteger(byteOffset, 'byteOffset', 0, Number.MAX_SAFE_INTEGER)
    if (base % 8 !== 0) throw rangeError('byteOffset', 'a multiple of 8', base)
    if (base + this.size > segment.size)
      throw rangeError('segment.size', `>= ${base + this.size} for this layout at offset ${base}`, segment.size)
    const view: Record<string, unknown> = {}
    for (const [name, spec] of Object.entries(this.#fields)) {
      const offset = base + (this.offsets as Record<string, number>)[name]!
      if (spec === 'mutex') view[name] = Mutex.at(segment, offset)
      else {
        const [type, length] = typeof spec === 'string' ? [spec, 1] : spec
        // Every typed array takes a SharedArrayBuffer too; TypeScript's union of the ten
        // constructors accepts only the narrower ArrayBuffer.
        view[name] = new ARRAYS[type](segment.buffer as ArrayBuffer, offset, length)
      }
    }
    return view as LayoutView<F>
  }
}

function measure(name: string, spec: unknown): { bytes: number; align: number } {
  if (spec === 'mutex') return { bytes: Mutex.byteLength, align: Mutex.alignment }
  const [type, length] =
    typeof spec === 'string' ? [spec, 1] : Array.isArray(spec) && spec.length === 2 ? spec : [undefined, 0]
  if (typeof type !== 'string' || !(type in ARRAYS)) {
    throw coded(
      new TypeError(`Field "${name}" must be 'mutex', one of ${Object.keys(ARRAYS).join(', ')}, or [type, length]`),
      'ERR_INVALID_ARG_VALUE',
    )
  }
  const count = validateInteger(length, `fields.${name}[1]`, 1, 2 ** 32)
  const element = ARRAYS[type as keyof typeof ARRAYS].BYTES_PER_ELEMENT
  return { bytes: element * count, align: element }
}
