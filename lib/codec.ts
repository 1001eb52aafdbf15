// Message codecs: how a channel turns values into bytes and back (the ring carries bytes).

import { deserialize, serialize } from 'node:v8'

import { coded, describe, rangeError, typeError } from './errors'

/**
 * How channel messages are encoded: `'bytes'` (send `Uint8Array`/`Buffer`/string, receive a
 * `Uint8Array`), `'string'` (UTF-8 strings), `'json'` (JSON values) or `'v8'` (structured-clone
 * values, via `v8.serialize`).
 */
export type Codec = 'bytes' | 'string' | 'json' | 'v8'
export const CODECS: readonly Codec[] = ['bytes', 'string', 'json', 'v8']

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
    throw coded(new TypeError(`The "${name}" option must be one of ${CODECS.join(', ')}. Received ${describe(value)}`), 'ERR_INVALID_ARG_VALUE')
  }
  return value as Codec
}

/**
 * Encodes `data` with the channel's codec. Text (strings, JSON) stays a string: it is encoded
 * as UTF-8 straight into the ring when sent, with no intermediate buffer.
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
      const text = JSON.stringify(data)
      if (text === undefined) throw typeError('data', 'a JSON-serialisable value', data)
      encoded = new EncodedText(text)
      break
    }
    case 'v8':
      encoded = serialize(data)
      break
  }
  if (encoded.length > maxBytes) {
    throw rangeError('data', `at most ${maxBytes} bytes once encoded (the channel's capacity minus 4)`, encoded.length)
  }
  return encoded
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
