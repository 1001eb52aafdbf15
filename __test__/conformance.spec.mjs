// The conformance vectors (conformance/*.json), run by the TypeScript implementations of the
// channel ring and the topic subscriber, and by the binding's channel peers: the same files the
// Rust, Go and Python suites run.
import fs from 'node:fs'

import test from 'ava'

import { Channel, Segment, Topic } from '../index.js'
import { CONTRACT } from '../lib/native.js'
import { uniqueName } from './helpers.mjs'

const load = (file) => JSON.parse(fs.readFileSync(new URL(`../conformance/${file}`, import.meta.url), 'utf8')).cases
const hex = (bytes) => Buffer.from(bytes).toString('hex')

/** What a receive gave, in the vectors' terms. */
function outcome(receive, ended) {
  try {
    const message = receive()
    if (message !== undefined) return { message: hex(message) }
    return ended() ? 'ended' : 'empty'
  } catch (error) {
    if (error.code === 'ERR_SHM_LAGGED') return { error: error.code, missed: error.missed }
    return error.code ?? String(error)
  }
}

for (const [n, vector] of load('channel.json').entries()) {
  test(`channel: ${vector.name}`, (t) => {
    const name = uniqueName(t, `conf-ch-${n}`)
    const channel = Channel.create(name, { capacity: vector.capacity, codec: 'bytes' })
    t.teardown(() => channel.close())
    const raw = Segment.open(name)
    t.teardown(() => raw.close())
    const words = new Uint32Array(raw.buffer)
    new Uint8Array(raw.buffer, CONTRACT.channel.ring, vector.capacity).set(Buffer.from(vector.ring, 'hex'))
    words[CONTRACT.channel.head / 4] = vector.head
    words[CONTRACT.channel.tail / 4] = vector.tail
    words[CONTRACT.channel.ended / 4] = vector.ended
    const got = []
    while (got.length < vector.expect.length) {
      const result = outcome(
        () => channel.tryRecv(),
        () => channel.ended,
      )
      got.push(result)
      if (result.message === undefined) break
    }
    t.deepEqual(got, vector.expect)
  })
}

for (const [n, vector] of load('topic.json').entries()) {
  test(`topic: ${vector.name}`, (t) => {
    const name = uniqueName(t, `conf-tp-${n}`)
    const topic = Topic.create(name, { capacity: vector.capacity, codec: 'bytes', slow: vector.slow })
    t.teardown(() => topic.close())
    const raw = Segment.open(name)
    t.teardown(() => raw.close())
    const words = new Uint32Array(raw.buffer)
    const T = CONTRACT.topic
    for (const offset of [T.tail, T.writing, T.head]) words[offset / 4] = vector.start.tail
    words[T.published / 4] = vector.start.published
    const subscription = topic.subscribe()
    const ringAt = words[T.ringAt / 4]
    new Uint8Array(raw.buffer, ringAt, vector.capacity).set(Buffer.from(vector.ring, 'hex'))
    words[T.head / 4] = vector.head
    words[T.writing / 4] = vector.writing
    words[T.tail / 4] = vector.tail
    if (vector.published !== undefined) words[T.published / 4] = vector.published
    const got = []
    while (got.length < vector.expect.length) {
      const result = outcome(
        () => subscription.tryRecv(),
        () => topic.ended,
      )
      got.push(result)
      // A lag is reported and then receiving goes on; the end, nothing or damage stop.
      if (result.message === undefined && result.error !== 'ERR_SHM_LAGGED') break
    }
    t.deepEqual(got, vector.expect)
  })
}

for (const [n, vector] of load('peers.json').entries()) {
  test(`peers: ${vector.name}`, (t) => {
    const name = uniqueName(t, `conf-peers-${n}`)
    const channel = Channel.create(name, { capacity: 64 }) // attach slot 0
    const raw = Segment.open(name) // slot 1
    const handles = vector.slots.slice(2).map(() => Channel.open(name)) // slots 2, 3, ...
    t.teardown(() => [channel, raw, ...handles].forEach((h) => h.close()))
    vector.slots.forEach((state, slot) => state === 'free' && handles[slot - 2].close())
    const words = new Uint32Array(raw.buffer)
    vector.roles.forEach((word, i) => (words[CONTRACT.channel.roles / 4 + i] = word))
    words[CONTRACT.channel.peersSeen / 4] = vector.seen
    const { peers, producers, consumers, producersGone, consumersGone } = channel.peers()
    t.true(peers.every((p) => p.pid === process.pid && p.state === 'alive'))
    t.deepEqual({ peers: peers.length, producers, consumers, producersGone, consumersGone }, vector.expect)
  })
}
