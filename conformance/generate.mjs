// Writes the conformance vectors (conformance/*.json) from the cases below: byte images of a
// channel's and a topic's control words and ring, valid, wrapped and damaged, and of a channel's
// peer role bits over attach slots, each with the
// outcome every implementation must reach (docs/CHANNELS.md, docs/TOPIC.md). The expected
// outcomes are written here by hand from the protocol, never computed by an implementation.
// The Rust, TypeScript and Python suites run them (conformance/README.md).
//
//   node conformance/generate.mjs          rewrites the JSON files
//   node conformance/generate.mjs --check  fails if they differ from what this would write
import fs from 'node:fs'
import { fileURLToPath } from 'node:url'

const here = (file) => fileURLToPath(new URL(file, import.meta.url))
const utf8 = (text) => [...Buffer.from(text, 'utf8')]
const hex = (bytes) => Buffer.from(bytes).toString('hex')

/** A ring image: writes [u32 length][payload][pad] frames (channel: 4-byte header, pad to 4) or
 * [u32 length][u32 number][payload][pad to 8] records (topic) at free-running positions. */
function ring(capacity) {
  const bytes = new Uint8Array(capacity)
  const put32 = (position, value) => {
    for (let i = 0; i < 4; i++) bytes[(position + i) % capacity] = (value >>> (8 * i)) & 0xff
  }
  const put = (position, payload) => payload.forEach((b, i) => (bytes[(position + i) % capacity] = b))
  return { bytes, put32, put }
}

// ------------------------------------------------------------------------------- channels
// Each case: the ring capacity, the control words (head, tail, ended), the ring bytes, and what
// successive non-waiting receives give: messages (hex), then "empty", "ended" or an error code.
function channelCase(name, { capacity = 64, head, tail, ended = 0, frames = [], raw = [], expect }) {
  const r = ring(capacity)
  let position = head
  for (const payload of frames) {
    r.put32(position % capacity, payload.length)
    r.put((position + 4) % capacity, payload)
    position += 4 + Math.ceil(payload.length / 4) * 4
  }
  for (const [at, value] of raw) r.put32(at % capacity, value)
  return { name, capacity, head: head >>> 0, tail: tail >>> 0, ended, ring: hex(r.bytes), expect }
}

const M = (text) => ({ message: hex(utf8(text)) })
const frameSize = (length) => 4 + Math.ceil(length / 4) * 4
const channels = [
  channelCase('two messages, no wrap', {
    head: 0,
    tail: frameSize(5) + frameSize(3),
    frames: [utf8('hello'), utf8('abc')],
    expect: [M('hello'), M('abc'), 'empty'],
  }),
  channelCase('an empty message', { head: 8, tail: 12, frames: [[]], expect: [{ message: '' }, 'empty'] }),
  channelCase('a payload that wraps around the end of the ring', {
    head: 52,
    tail: 52 + frameSize(20),
    frames: [utf8('0123456789abcdefghij')],
    expect: [M('0123456789abcdefghij'), 'empty'],
  }),
  channelCase('indices that wrapped around 2^32', {
    head: 2 ** 32 - 8,
    tail: (2 ** 32 - 8 + frameSize(2) + frameSize(4)) % 2 ** 32,
    frames: [utf8('hi'), utf8('wrap')],
    expect: [M('hi'), M('wrap'), 'empty'],
  }),
  channelCase('a full ring', {
    capacity: 64,
    head: 0,
    tail: 64,
    frames: [Array.from({ length: 60 }, (_, i) => i)],
    expect: [{ message: hex(Array.from({ length: 60 }, (_, i) => i)) }, 'empty'],
  }),
  channelCase('ended with one message left: it is delivered, then the end', {
    head: 0,
    tail: frameSize(3),
    ended: 1,
    frames: [utf8('end')],
    expect: [M('end'), 'ended'],
  }),
  channelCase('ended and empty', { head: 16, tail: 16, ended: 1, expect: ['ended'] }),
  channelCase('damaged: a length beyond the ring', {
    head: 0,
    tail: 8,
    raw: [[0, 1000]],
    expect: ['ERR_SHM_CORRUPT'],
  }),
  channelCase('damaged: a length beyond what was published', {
    head: 0,
    tail: 8,
    raw: [[0, 20]],
    expect: ['ERR_SHM_CORRUPT'],
  }),
  channelCase('damaged: more in flight than the ring holds', { head: 0, tail: 68, expect: ['ERR_SHM_CORRUPT'] }),
  channelCase('damaged: a head that is not a multiple of 4', { head: 2, tail: 10, expect: ['ERR_SHM_CORRUPT'] }),
  channelCase('damaged: the tail behind the head', { head: 16, tail: 8, expect: ['ERR_SHM_CORRUPT'] }),
]

// ------------------------------------------------------------------------------- topics
// Each case: the ring capacity and mode; where a subscriber starts (tail and published when it
// subscribes); then the control words (tail, writing, head) and the ring; and what successive
// non-waiting receives give: messages, "empty", or an error code (ERR_SHM_LAGGED with missed).
function topicCase(
  name,
  { capacity = 128, slow = 'block', start, tail, writing = tail, head, published, records = [], raw = [], expect },
) {
  const r = ring(capacity)
  let position = records.length ? records[0].at : 0
  for (const { number, payload, at = position } of records) {
    r.put32(at % capacity, payload.length)
    r.put32((at + 4) % capacity, number)
    r.put((at + 8) % capacity, payload)
    position = at + 8 + Math.ceil(payload.length / 8) * 8
  }
  for (const [at, value] of raw) r.put32(at % capacity, value)
  return {
    name,
    capacity,
    slow,
    start: { tail: start.tail >>> 0, published: start.published >>> 0 },
    tail: tail >>> 0,
    writing: writing >>> 0,
    head: head >>> 0,
    ...(published === undefined ? {} : { published: published >>> 0 }),
    ring: hex(r.bytes),
    expect,
  }
}

const rec = (at, number, text) => ({ at, number, payload: utf8(text) })
const topics = [
  topicCase('two records from where the subscriber started', {
    start: { tail: 0, published: 0 },
    head: 0,
    tail: 16 + 16,
    records: [rec(0, 0, 'one'), rec(16, 1, 'two!')],
    expect: [M('one'), M('two!'), 'empty'],
  }),
  topicCase('a record that wraps around the end of the ring', {
    start: { tail: 112, published: 7 },
    head: 112,
    tail: 112 + 8 + 24,
    records: [rec(112, 7, 'abcdefghijklmnopqrstu')],
    expect: [M('abcdefghijklmnopqrstu'), 'empty'],
  }),
  topicCase('positions and numbers that wrapped around 2^32', {
    start: { tail: 2 ** 32 - 16, published: 2 ** 32 - 1 },
    head: 2 ** 32 - 16,
    tail: 16,
    records: [rec(2 ** 32 - 16, 2 ** 32 - 1, 'last'), rec(0, 0, 'first')],
    expect: [M('last'), M('first'), 'empty'],
  }),
  topicCase('overwrite: a lapped subscriber is told how many it missed, then goes on from the head', {
    slow: 'overwrite',
    start: { tail: 0, published: 0 },
    // 20 records of 16 bytes were published; the ring keeps the last 8 (numbers 12 to 19).
    head: 192,
    tail: 320,
    records: Array.from({ length: 8 }, (_, k) => rec(192 + 16 * k, 12 + k, `m${12 + k}`)),
    expect: [{ error: 'ERR_SHM_LAGGED', missed: 12 }, ...Array.from({ length: 8 }, (_, k) => M(`m${12 + k}`)), 'empty'],
  }),
  topicCase('overwrite: a record being overwritten (writing past it) is not delivered', {
    slow: 'overwrite',
    start: { tail: 0, published: 0 },
    head: 16,
    tail: 128,
    writing: 144,
    records: Array.from({ length: 7 }, (_, k) => rec(16 + 16 * k, 1 + k, `r${1 + k}`)).concat([rec(0, 99, 'torn')]),
    // The subscriber expected number 0 at 0, where a publisher is writing: the oldest whole record
    // is number 1 at the head.
    expect: [{ error: 'ERR_SHM_LAGGED', missed: 1 }, ...Array.from({ length: 7 }, (_, k) => M(`r${1 + k}`)), 'empty'],
  }),
  topicCase('overwrite: lapped while a publish that drops every record has moved the head to the tail', {
    slow: 'overwrite',
    capacity: 64,
    start: { tail: 0, published: 0 },
    // Record #0 (40 bytes) was published; #1 (40 bytes) must drop it: the publisher moved the head
    // to the tail and raised `writing`, and has not written #1 yet. The number at the head is
    // stale (0 here): the next record to expect is `published`, #1.
    head: 40,
    tail: 40,
    writing: 80,
    published: 1,
    records: [rec(0, 0, '0123456789abcdef0123456789abcdef')],
    expect: [{ error: 'ERR_SHM_LAGGED', missed: 1 }, 'empty'],
  }),
  topicCase('damaged: a record with another number where nothing overwrote it', {
    start: { tail: 0, published: 0 },
    head: 0,
    tail: 16,
    records: [rec(0, 5, 'bad')],
    expect: ['ERR_SHM_CORRUPT'],
  }),
  topicCase('damaged: a length beyond what was published', {
    start: { tail: 0, published: 0 },
    head: 0,
    tail: 16,
    records: [rec(0, 0, 'x')],
    raw: [[0, 64]],
    expect: ['ERR_SHM_CORRUPT'],
  }),
]

// ------------------------------------------------------------------------------- peers
// Each case: the state of the first attach slots as a runner makes them (slot 0: the handle that
// creates the channel; slot 1: the raw handle it writes the words with; then channel handles
// opened, and closed where the case says 'free'), the role bits it then writes (by slot: 'p'
// producer, 'c' consumer, 'pc' both) and the `peers_seen` word, and what the creator's peers
// report gives. Every slot's process is the runner's own, alive.
const ROLE_WORDS = 14
function peersCase(name, { slots, roles = {}, seen, expect }) {
  if (slots[0] !== 'open' || slots[1] !== 'open') throw new Error(`${name}: slots 0 and 1 are the runner's handles`)
  const words = new Array(ROLE_WORDS).fill(0)
  for (const [slot, role] of Object.entries(roles)) {
    const bits = (role.includes('p') ? 1 : 0) | (role.includes('c') ? 2 : 0)
    words[Math.floor(slot / 16)] = (words[Math.floor(slot / 16)] | (bits << ((slot % 16) * 2))) >>> 0
  }
  return { name, slots, roles: words, seen, expect }
}

const open = (n) => new Array(n).fill('open')
const peers = [
  peersCase('nobody announced a role', {
    slots: open(2),
    seen: 0,
    expect: { peers: 0, producers: 0, consumers: 0, producersGone: false, consumersGone: false },
  }),
  peersCase('a producer and a consumer, both alive', {
    slots: open(3),
    roles: { 0: 'c', 2: 'p' },
    seen: 3,
    expect: { peers: 2, producers: 1, consumers: 1, producersGone: false, consumersGone: false },
  }),
  peersCase('the only producer closed: its bits on a free slot mean nothing, producers are gone', {
    slots: ['open', 'open', 'free'],
    roles: { 0: 'c', 2: 'p' },
    seen: 3,
    expect: { peers: 1, producers: 0, consumers: 1, producersGone: true, consumersGone: false },
  }),
  peersCase('a role never seen is not gone, even with bits on a free slot', {
    slots: ['open', 'open', 'free'],
    roles: { 2: 'p' },
    seen: 0,
    expect: { peers: 0, producers: 0, consumers: 0, producersGone: false, consumersGone: false },
  }),
  peersCase('seen, and no slot with the bit: gone', {
    slots: open(2),
    roles: { 1: 'c' },
    seen: 1,
    expect: { peers: 1, producers: 0, consumers: 1, producersGone: true, consumersGone: false },
  }),
  peersCase('both roles in the top bits of word 0 (slot 15)', {
    slots: open(16),
    roles: { 15: 'pc' },
    seen: 3,
    expect: { peers: 1, producers: 1, consumers: 1, producersGone: false, consumersGone: false },
  }),
  peersCase('slot 17 is in word 1; slot 16, free, counts for nothing', {
    slots: [...open(16), 'free', 'open'],
    roles: { 16: 'p', 17: 'c' },
    seen: 3,
    expect: { peers: 1, producers: 0, consumers: 1, producersGone: true, consumersGone: false },
  }),
  peersCase('consumers gone, producers alive', {
    slots: [...open(4), 'free'],
    roles: { 3: 'p', 4: 'c' },
    seen: 3,
    expect: { peers: 1, producers: 1, consumers: 0, producersGone: false, consumersGone: true },
  }),
]

const files = {
  'channel.json': { protocol: 'docs/CHANNELS.md', layoutVersion: 1, cases: channels },
  'peers.json': { protocol: 'docs/CHANNELS.md#peers', layoutVersion: 1, cases: peers },
  'topic.json': { protocol: 'docs/TOPIC.md', layoutVersion: 1, cases: topics },
}
let stale = 0
for (const [file, content] of Object.entries(files)) {
  const text = `${JSON.stringify(content, null, 1)}\n`
  if (process.argv.includes('--check')) {
    if (fs.readFileSync(here(file), 'utf8') !== text) {
      console.error(`conformance/${file} is not what conformance/generate.mjs writes: run it`)
      stale++
    }
  } else fs.writeFileSync(here(file), text)
}
process.exit(stale ? 1 : 0)
