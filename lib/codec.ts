// Message codecs: how a channel turns values into bytes and back (the ring carries bytes). The
// codec ids are the Rust core's (`CODECS` in crates/shmkit-core/src/channel.rs).

import { deserialize, serialize } from 'node:v8'

import { coded, describe, rangeError, typeError } from './errors'
import { CONTRACT } from './native'

/**
 * How channel messages are encoded: `'bytes'` (send `Uint8Array`/`Buffer`/string, receive a
 * `Uint8Array`), `'string'` (UTF-8 strings), `'json'` (JSON values) or `'v8'` (structured-clone
 * values, via `v8.serialize`).
 */
export type Codec = 'bytes' | 'string' | 'json' | 'v8'
/** Codec names by id, as recorded in a channel. */
export const CODECS = CONTRACT.codecs as readonly Codec[]

/** What `recv` returns with each codec (json and v8 carry any value: `unknown` unless you say). */
export interface CodecValues {
  bytes: Uint8Array
  string: string
  json: unknown
  v8: unknown
}

/** Text to send, with its UTF-8 length (known before it is written into the ring). */
export class EncodedText {
  readonly length: number
  constructor(readonly text: string) {
    this.length = Buffer.byteLength(text, 'utf8')
  }
}

/** A message ready to send: bytes, or text encoded on the way into the ring. */
export type Encoded = Uint8Array | EncodedText

export const utf8Encoder = new TextEncoder()
const utf8Decoder = new TextDecoder()

export function validateCodec(value: unknown, name: string): Codec | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string' || !CODECS.includes(value as Codec)) {
    throw coded(
      new TypeError(`The "${name}" option must be one of ${CODECS.join(', ')}. Received ${describe(value)}`),
      'ERR_INVALID_ARG_VALUE',
    )
  }
  return value as Codec
}

/**
 * Encodes `data` with the channel's codec. Text (strings, JSON) stays a string: it is encoded
 * as UTF-8 straight into the ring when sent, with no intermediate buffer. A value the codec
 * cannot encode (a BigInt for json, a function for v8) is `ERR_SHM_ENCODE`.
 */
export function encodeMessage(codec: Codec, data: unknown, maxBytes: number): Encoded {
  let encoded: Encoded
  switch (codec) {
    case 'bytes':
      if (typeof data === 'string') encoded = new EncodedText(data)
      else if (data instanceof Uint8Array) encoded = data
      else if (ArrayBuffer.isView(data)) encoded = new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
      else throw typeError('data', 'a Uint8Array, a Buffer or a string', data)
      break
    case 'string':
      if (typeof data !== 'string') throw typeError('data', 'of type string', data)
      encoded = new EncodedText(data)
      break
    case 'json': {
      let text: string | undefined
      try {
        text = JSON.stringify(data)
      } catch (error) {
        throw cannotEncode(codec, data, error)
      }
      if (text === undefined) throw cannotEncode(codec, data, undefined)
      encoded = new EncodedText(text)
      break
    }
    case 'v8':
      try {
        encoded = serialize(data)
      } catch (error) {
        throw cannotEncode(codec, data, error)
      }
      break
  }
  if (encoded.length > maxBytes) {
    throw rangeError('data', `at most ${maxBytes} bytes once encoded (the channel's capacity minus 4)`, encoded.length)
  }
  return encoded
}

function cannotEncode(codec: Codec, data: unknown, cause: unknown): TypeError {
  const why = cause instanceof Error ? `: ${cause.message}` : ''
  return coded(new TypeError(`The ${codec} codec cannot encode ${describe(data)}${why}`, { cause }), 'ERR_SHM_ENCODE')
}

/** Decodes a message; `inRing` views must be copied (the ring slot is about to be reused). */
export function decodeMessage<T>(codec: Codec, view: Uint8Array, inRing: boolean): T {
  switch (codec) {
    case 'bytes':
      return (inRing ? view.slice() : view) as T
    case 'string':
      return utf8Decoder.decode(view) as T
    case 'json':
      return JSON.parse(utf8Decoder.decode(view)) as T
    case 'v8':
      return deserialize(view) as T
  }
}
