// Property test of the ring protocol against arbitrary shared-memory contents: whatever indices,
// counters, flags and ring bytes a peer leaves behind, every channel operation returns data or
// an error with a code, promptly. (Scribbled lock cells are covered by scribble.spec.mjs.)
import test from 'ava'
import fc from 'fast-check'

import { Channel, Segment } from '../index.js'
import { uniqueName } from './helpers.mjs'

const SEED = Number(process.env.SHMKIT_FUZZ_SEED ?? 424242)
const RUNS = Number(process.env.SHMKIT_FUZZ_RUNS ?? 400)
/** Control-block words a peer may scribble (byte offset / 4): indices, counters, flags, events. */
const WORDS = {
  CLOSED: 4,
  TAIL: 16,
  RECV_SLEEPERS: 17,
  RECV_EVENT: 18,
  SENT: 19,
  HEAD: 32,
  SEND_SLEEPERS: 33,
  SEND_EVENT: 34,
  RECEIVED: 35,
}

function outcome(fn) {
  try {
    fn()
    return 'ok'
  } catch (error) {
    if (typeof error?.code !== 'string') throw error
    return error.code
  }
}

for (const codec of ['bytes', 'json', 'v8']) {
  test(`${codec} channel: arbitrary indices and ring bytes give data or coded errors (seed ${SEED})`, (t) => {
    const name = uniqueName(t, 'fuzz')
    const channel = Channel.create(name, { capacity: 256, codec })
    const raw = Segment.open(name)
    t.teardown(() => {
      channel.close()
      raw.close()
    })
    const words = new Uint32Array(raw.buffer, 0, 128)
    const ring = new Uint8Array(raw.buffer, 512, 256)
    const word = fc.oneof(
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.integer({ min: 0, max: 300 }),
      fc.constantFrom(0, 4, 8, 252, 256, 260, 0xfffffffc),
    )
    const anything = fc.record({
      values: fc.dictionary(fc.constantFrom(...Object.keys(WORDS)), word),
      ring: fc.uint8Array({ minLength: 256, maxLength: 256 }),
    })
    // Plausible indices with a plausible length word at the head, so decoding gets exercised.
    const plausible = fc
      .record({
        head: fc.nat(63),
        used: fc.nat(64),
        length: fc.nat(260),
        ring: fc.uint8Array({ minLength: 256, maxLength: 256 }),
      })
      .map(({ head, used, length, ring: bytes }) => {
        const copy = Uint8Array.from(bytes)
        new DataView(copy.buffer).setUint32(head * 4, length, true)
        return { values: { HEAD: head * 4, TAIL: head * 4 + used * 4 }, ring: copy }
      })
    const state = fc.oneof(anything, plausible)
    const seen = {}
    fc.assert(
      fc.property(state, ({ values, ring: bytes }) => {
        words.fill(0, 4, 128)
        for (const [key, value] of Object.entries(values)) words[WORDS[key]] = value
        ring.set(bytes)
        const started = performance.now()
        const outcomes = [
          outcome(() => channel.stats()),
          outcome(() => channel.tryRecv()),
          outcome(() => channel.recvWith((view) => view.length, { timeout: 1 })),
          outcome(() => channel.recv({ timeout: 1 })),
          outcome(() => channel.trySend(codec === 'bytes' ? new Uint8Array(9) : { fuzz: 1 })),
          outcome(() => channel.send(codec === 'bytes' ? 'x' : { fuzz: 2 }, { timeout: 1 })),
        ]
        for (const o of outcomes) seen[o] = (seen[o] ?? 0) + 1
        return performance.now() - started < 2000
      }),
      { seed: SEED, numRuns: RUNS },
    )
    t.log(seen)
    t.pass()
  })
}
