import test from 'ava'
import fs from 'node:fs'

import { Channel, Segment } from '../index.js'
import { startFixture, throwsCoded, uniqueName } from './helpers.mjs'

function freshChannel(t, options = { capacity: 4096 }) {
  const name = uniqueName(t, 'ch')
  const channel = Channel.create(name, options)
  t.teardown(() => channel.close())
  return channel
}

/** Every producer's messages arrive exactly once and, per consumer, in order. */
function assertExactlyOnceInOrder(t, reports, producers, count) {
  for (const report of reports) t.is(report.damaged, 0, 'every message arrived whole')
  for (let producer = 0; producer < producers; producer++) {
    const all = []
    for (const report of reports) {
      const seqs = report.seen[producer] ?? []
      for (let i = 1; i < seqs.length; i++) if (seqs[i] <= seqs[i - 1]) t.fail(`producer ${producer} out of order`)
      all.push(...seqs)
    }
    all.sort((a, b) => a - b)
    t.is(all.length, count, `producer ${producer}: every message exactly once`)
    t.true(
      all.every((seq, i) => seq === i),
      `producer ${producer}: no duplicates or gaps`,
    )
  }
}

test('several producer and consumer processes: exactly once, whole, in order per producer', async (t) => {
  const channel = freshChannel(t)
  const count = 3000
  const consumers = ['sync', 'async', 'iterate'].map((mode) =>
    startFixture('channel-consumer.mjs', [channel.name, mode]),
  )
  const producers = [0, 1, 2].map((id) =>
    startFixture('channel-producer.mjs', [channel.name, id, count, 300, id === 1 ? 'async' : 'sync']),
  )
  await Promise.all(producers.map((p) => p.nextMessage((m) => typeof m === 'object', 60_000)))
  channel.end()
  const reports = await Promise.all(consumers.map((c) => c.nextMessage((m) => typeof m === 'object', 60_000)))
  for (const child of [...producers, ...consumers]) t.is((await child.done()).code, 0)
  assertExactlyOnceInOrder(t, reports, 3, count)
})

test('sizes around the wrap-around point keep their bytes', (t) => {
  for (const capacity of [64, 128, 256]) {
    const channel = freshChannel(t, { capacity })
    for (let round = 0; round < 3; round++) {
      for (let length = 0; length <= capacity - 4; length++) {
        const message = Uint8Array.from({ length }, (_, i) => (length + i) & 0xff)
        t.true(channel.trySend(message))
        const received = channel.tryRecv()
        if (received.length !== length || !received.every((byte, i) => byte === ((length + i) & 0xff))) {
          t.fail(`capacity ${capacity}, length ${length}`)
        }
      }
    }
    t.is(channel.bytesInFlight, 0)
  }
  t.pass()
})

test('codecs: bytes, string, json and v8 values', (t) => {
  const name = uniqueName(t, 'codec')
  const json = Channel.create(name, { capacity: 1024, codec: 'json' })
  t.teardown(() => json.close())
  json.send({ a: [1, 'two', null] })
  t.deepEqual(Channel.open(name).recv(), { a: [1, 'two', null] }, 'an opener gets the codec recorded at creation')
  const asV8 = Channel.open(name, { codec: 'v8' })
  asV8.send(new Map([[1, new Date(0)]]))
  t.deepEqual(asV8.recv(), new Map([[1, new Date(0)]]))
  const asString = Channel.open(name, { codec: 'string' })
  asString.send('héllo')
  t.is(asString.recv(), 'héllo')
  const asBytes = Channel.open(name, { codec: 'bytes' })
  asBytes.send('abc')
  t.deepEqual([...asBytes.recv()], [97, 98, 99])
  asBytes.send(Buffer.from([1, 2]))
  t.deepEqual([...asBytes.recv()], [1, 2])
  throwsCoded(t, () => asString.send(5), TypeError, 'ERR_INVALID_ARG_TYPE')
  throwsCoded(t, () => json.send(undefined), TypeError, 'ERR_SHM_ENCODE')
  throwsCoded(t, () => json.send(1n), TypeError, 'ERR_SHM_ENCODE')
  throwsCoded(t, () => asBytes.send({}), TypeError, 'ERR_INVALID_ARG_TYPE')
  throwsCoded(t, () => Channel.open(name, { codec: 'xml' }), TypeError, 'ERR_INVALID_ARG_VALUE')
})

test('a message larger than the channel can ever hold fails at once', (t) => {
  const channel = freshChannel(t, { capacity: 64 })
  throwsCoded(t, () => channel.send(new Uint8Array(61)), RangeError, 'ERR_OUT_OF_RANGE')
  t.true(channel.trySend(new Uint8Array(60)))
})

test('close: receivers drain, then recv throws and loops end; sends fail', async (t) => {
  const channel = freshChannel(t)
  for (let i = 0; i < 5; i++) channel.send(`m${i}`)
  channel.end()
  t.true(channel.ended)
  throwsCoded(t, () => channel.send('late'), Error, 'ERR_SHM_CHANNEL_ENDED')
  throwsCoded(t, () => channel.trySend('late'), Error, 'ERR_SHM_CHANNEL_ENDED')
  await t.throwsAsync(channel.sendAsync('late'), { code: 'ERR_SHM_CHANNEL_ENDED' })
  t.is(new TextDecoder().decode(channel.recv()), 'm0')
  const rest = []
  for await (const message of channel) rest.push(new TextDecoder().decode(message))
  t.deepEqual(rest, ['m1', 'm2', 'm3', 'm4'])
  throwsCoded(t, () => channel.recv(), Error, 'ERR_SHM_CHANNEL_ENDED')
  await t.throwsAsync(channel.recvAsync(), { code: 'ERR_SHM_CHANNEL_ENDED' })
  t.is(channel.tryRecv(), undefined)
})

test('close wakes receivers blocked in another process', async (t) => {
  const channel = freshChannel(t)
  const consumer = startFixture('channel-consumer.mjs', [channel.name, 'sync'])
  await consumer.nextMessage((m) => m === 'started')
  await new Promise((resolve) => setTimeout(resolve, 100))
  channel.end()
  const report = await consumer.nextMessage((m) => typeof m === 'object')
  t.deepEqual(report, { seen: {}, damaged: 0 })
})

test('timeouts: recv on empty and send on full give ETIMEDOUT, sync and async', async (t) => {
  const channel = freshChannel(t, { capacity: 64 })
  const started = performance.now()
  throwsCoded(t, () => channel.recv({ timeout: 60 }), Error, 'ETIMEDOUT')
  t.true(performance.now() - started >= 55)
  await t.throwsAsync(channel.recvAsync({ timeout: 30 }), { code: 'ETIMEDOUT' })
  while (channel.trySend(new Uint8Array(20)));
  t.false(channel.trySend(new Uint8Array(20)))
  throwsCoded(t, () => channel.send(new Uint8Array(20), { timeout: 30 }), Error, 'ETIMEDOUT')
  await t.throwsAsync(channel.sendAsync(new Uint8Array(20), { timeout: 30 }), { code: 'ETIMEDOUT' })
})

test('aborts: recvAsync and sendAsync reject with AbortError promptly', async (t) => {
  const channel = freshChannel(t, { capacity: 64 })
  const controller = new AbortController()
  const pending = channel.recvAsync({ signal: controller.signal })
  setTimeout(() => controller.abort(), 20)
  await t.throwsAsync(pending, { name: 'AbortError' })
  while (channel.trySend(new Uint8Array(20)));
  await t.throwsAsync(channel.sendAsync(new Uint8Array(20), { signal: AbortSignal.timeout(20) }), {
    name: 'AbortError',
  })
  // Nothing was lost or added by the aborted calls.
  let count = 0
  while (channel.tryRecv() !== undefined) count++
  t.is(count, 2)
})

test('a blocked send resumes when a consumer in another process frees room', async (t) => {
  const channel = freshChannel(t, { capacity: 256 })
  const consumer = startFixture('channel-consumer.mjs', [channel.name, 'async'])
  await consumer.nextMessage((m) => m === 'started')
  const count = 2000
  for (let seq = 0; seq < count; seq++) {
    const message = new Uint8Array(8 + (seq % 50)).fill(0)
    new DataView(message.buffer).setUint32(4, seq, true)
    for (let i = 8; i < message.length; i++) message[i] = (seq + i - 8) & 0xff
    channel.send(message, { timeout: 10_000 })
  }
  channel.end()
  const report = await consumer.nextMessage((m) => typeof m === 'object', 30_000)
  assertExactlyOnceInOrder(t, [report], 1, count)
})

test('a producer SIGKILLed mid-stream leaves no partial message and does not wedge the channel', async (t) => {
  const channel = freshChannel(t, { capacity: 1 << 16 })
  const consumer = startFixture('channel-consumer.mjs', [channel.name, 'sync'])
  // Large messages: the killed producer is likely to die holding the send lock mid-copy.
  const victim = startFixture('channel-producer.mjs', [channel.name, 0, 1_000_000, 30_000, 'sync'])
  await victim.nextMessage((m) => m === 'started')
  await new Promise((resolve) => setTimeout(resolve, 150))
  victim.kill('SIGKILL')
  await victim.done()
  const survivor = startFixture('channel-producer.mjs', [channel.name, 1, 500, 1000, 'sync'])
  t.like(await survivor.nextMessage((m) => typeof m === 'object', 30_000), { sent: 500 })
  channel.end()
  const report = await consumer.nextMessage((m) => typeof m === 'object', 30_000)
  t.is(report.damaged, 0, 'no partial message was ever visible')
  const victimSeqs = report.seen[0] ?? []
  t.true(
    victimSeqs.every((seq, i) => seq === i),
    "the victim's delivered messages are a gap-free prefix",
  )
  t.deepEqual(
    report.seen[1],
    Array.from({ length: 500 }, (_, i) => i),
    'the survivor got through, in order',
  )
})

test('a consumer SIGKILLed mid-receive does not wedge the channel', async (t) => {
  const channel = freshChannel(t, { capacity: 1 << 16 })
  const producer = startFixture('channel-producer.mjs', [channel.name, 0, 400_000, 500, 'sync'])
  const victim = startFixture('channel-consumer.mjs', [channel.name, 'sync'])
  await victim.nextMessage((m) => m === 'started')
  await new Promise((resolve) => setTimeout(resolve, 100))
  victim.kill('SIGKILL')
  await victim.done()
  const survivor = startFixture('channel-consumer.mjs', [channel.name, 'async'])
  await producer.nextMessage((m) => typeof m === 'object', 30_000)
  channel.end()
  const report = await survivor.nextMessage((m) => typeof m === 'object', 30_000)
  t.is(report.damaged, 0)
  const seqs = report.seen[0] ?? []
  t.true(seqs.length > 0 && seqs.at(-1) === 399_999, 'the survivor drained to the last message')
  t.true(
    seqs.every((seq, i) => i === 0 || seq === seqs[i - 1] + 1),
    'in order and without gaps after it took over',
  )
})

test('a damaged ring gives ERR_SHM_CORRUPT, never a hang or an out-of-bounds read', (t) => {
  const channel = freshChannel(t, { capacity: 256 })
  const words = new Uint32Array(Segment.open(channel.name).buffer)
  channel.send('hello')
  words[128 / 4] = 3 // head not 4-aligned
  throwsCoded(t, () => channel.recv({ timeout: 100 }), Error, 'ERR_SHM_CORRUPT')
  words[128 / 4] = 0
  words[64 / 4] = 1 << 20 // tail far beyond capacity
  // A handle re-reads the other side's index when its cached copy (validated when read) runs
  // out, so a fresh handle sees the damage at once.
  const fresh = Channel.open(channel.name)
  t.teardown(() => fresh.close())
  throwsCoded(t, () => fresh.tryRecv(), Error, 'ERR_SHM_CORRUPT')
  throwsCoded(t, () => channel.trySend('x'), Error, 'ERR_SHM_CORRUPT')
  words[64 / 4] = 12
  words[512 / 4] = 0xfffffff0 // message length beyond the ring
  throwsCoded(t, () => channel.tryRecv(), Error, 'ERR_SHM_CORRUPT')
  words[512 / 4] = 5
  t.is(new TextDecoder().decode(channel.tryRecv()), 'hello', 'repaired indices work again')
  words[8 / 4] = 1000 // capacity not a power of two
  throwsCoded(t, () => Channel.open(channel.name), Error, 'ERR_SHM_CORRUPT')
})

test('opening: a plain segment is not a channel; missing names give ENOENT; bad options are refused', (t) => {
  const name = uniqueName(t)
  Segment.create(name, { size: 1024 }).close()
  throwsCoded(t, () => Channel.open(name), Error, 'ERR_SHM_WRONG_KIND')
  throwsCoded(t, () => Channel.open(uniqueName(t)), Error, 'ENOENT')
  throwsCoded(t, () => Channel.create(uniqueName(t), {}), TypeError, 'ERR_INVALID_ARG_TYPE')
  throwsCoded(t, () => Channel.create(uniqueName(t), { capacity: 0 }), RangeError, 'ERR_OUT_OF_RANGE')
  throwsCoded(t, () => Channel.create(uniqueName(t), { capacity: 2 ** 31 }), RangeError, 'ERR_OUT_OF_RANGE')
  throwsCoded(t, () => Channel.create(uniqueName(t), { capacity: 64, size: 1 }), TypeError, 'ERR_INVALID_ARG_VALUE')
  const channel = freshChannel(t, { capacity: 100 })
  t.is(channel.capacity, 128, 'rounded up to a power of two')
  channel.close()
  throwsCoded(t, () => channel.send('x'), Error, 'ERR_SHM_CLOSED')
  t.true(fs.existsSync(`/dev/shm/shmkit.${channel.name}`) || process.platform !== 'linux', 'close never unlinks')
})

test('sendWith writes into the ring and recvWith reads from it, wrapped or not', (t) => {
  const channel = freshChannel(t, { capacity: 256 })
  for (let round = 0; round < 20; round++) {
    const length = 37 + round * 5
    channel.sendWith(length, (target) => {
      t.is(target.length, length)
      for (let i = 0; i < length; i++) target[i] = (round + i) & 0xff
    })
    const ok = channel.recvWith(
      (view) => view.every((byte, i) => byte === ((round + i) & 0xff)) && view.length === length,
    )
    t.true(ok, `round ${round}`)
  }
  t.is(channel.bytesInFlight, 0)
})

test('a throwing fill sends nothing; a throwing use leaves the message for the next receiver', (t) => {
  const channel = freshChannel(t, { capacity: 256 })
  t.throws(
    () =>
      channel.sendWith(10, () => {
        throw new Error('fill failed')
      }),
    { message: 'fill failed' },
  )
  t.is(channel.bytesInFlight, 0)
  channel.send('keep')
  t.throws(
    () =>
      channel.recvWith(() => {
        throw new Error('use failed')
      }),
    { message: 'use failed' },
  )
  t.is(new TextDecoder().decode(channel.recv()), 'keep')
  throwsCoded(t, () => channel.sendWith(253, () => {}), RangeError, 'ERR_OUT_OF_RANGE')
  throwsCoded(t, () => channel.sendWith(1, 'no'), TypeError, 'ERR_INVALID_ARG_TYPE')
  throwsCoded(t, () => channel.recvWith(null), TypeError, 'ERR_INVALID_ARG_TYPE')
})

test('a message that does not decode is dropped with ERR_SHM_CORRUPT; the next one arrives', (t) => {
  const channel = freshChannel(t, { capacity: 256, codec: 'json' })
  channel.send({ first: true })
  channel.send({ second: true })
  const ring = new Uint8Array(Segment.open(channel.name).buffer, 512, 256)
  ring[4] = 0x7b + 1 // '{' -> '|': the first message is no longer JSON
  const error = throwsCoded(t, () => channel.recv(), Error, 'ERR_SHM_CORRUPT')
  t.truthy(error.cause)
  t.deepEqual(channel.recv(), { second: true })
})

test('a side lock held by a live process that never lets go costs a timeout, never a hang', (t) => {
  // Regression: channel operations once took their side's lock without a deadline.
  const channel = freshChannel(t, { capacity: 256 })
  const words = new Int32Array(Segment.open(channel.name).buffer)
  const sendLockState = 192 / 4
  // Thread id 1 (init) is alive and will never unlock: the worst a stalled or hostile peer can do.
  words[sendLockState] = 1
  throwsCoded(t, () => channel.send('x', { timeout: 50 }), Error, 'ETIMEDOUT')
  const started = performance.now()
  t.false(channel.trySend('x'), 'trySend never waits for a busy lock: it says "not now"')
  t.true(performance.now() - started < 50)
  words[sendLockState] = 0
  t.true(channel.trySend('x'), 'works again once the lock word is sane')
})

test('worker threads of one process produce into a channel: exactly once, in order per producer', async (t) => {
  const channel = freshChannel(t, { capacity: 1024, codec: 'json' })
  const count = 3000
  const script = new URL('./fixtures/channel-worker-producer.mjs', import.meta.url)
  const { Worker } = await import('node:worker_threads')
  const workers = [0, 1, 2].map(
    (producer) => new Worker(script, { workerData: { name: channel.name, producer, count } }),
  )
  const done = Promise.all(
    workers.map((w) => new Promise((resolve, reject) => w.on('exit', resolve).on('error', reject))),
  )
  const seen = [[], [], []]
  for (let i = 0; i < 3 * count; i++) {
    const { producer, seq } = await channel.recvAsync({ timeout: 20_000 })
    seen[producer].push(seq)
  }
  t.deepEqual(await done, [0, 0, 0])
  for (const seqs of seen)
    t.deepEqual(
      seqs,
      Array.from({ length: count }, (_, i) => i),
    )
  t.is(channel.tryRecv(), undefined)
})

test('a v8 message that is undefined is received as such, not taken for "no message"', async (t) => {
  // Regression: recv consumed such a message, then waited as if the channel were empty.
  const channel = freshChannel(t, { capacity: 256, codec: 'v8' })
  channel.send(undefined)
  channel.send('after')
  t.is(channel.recv({ timeout: 1000 }), undefined)
  t.is(channel.recv({ timeout: 1000 }), 'after')
  channel.send(undefined)
  t.is(await channel.recvAsync({ timeout: 1000 }), undefined)
  t.is(channel.bytesInFlight, 0)
})

test('sendMany and recvMany: batches in order, exactly once, across the wrap, waiting for room and messages', async (t) => {
  const channel = freshChannel(t, { capacity: 256, codec: 'json' })
  const values = Array.from({ length: 500 }, (_, i) => ({ i, pad: 'x'.repeat(i % 17) }))
  const consumer = startFixture('script.mjs', [
    `const ch = shmkit.Channel.open(args[0]); const seen = []
     while (seen.length < 500) for (const m of ch.recvMany(64, { timeout: 10000 })) seen.push(m.i)
     await send(seen); ch.close()`,
    channel.name,
  ])
  t.is(channel.sendMany(values, { timeout: 10_000 }), 500, 'waits for room batch after batch')
  const seen = await consumer.nextMessage()
  t.deepEqual(
    seen,
    values.map((v) => v.i),
  )
  await consumer.done()
  t.is(channel.sendMany([]), 0)
  channel.sendMany(new Set([{ i: 'a' }, { i: 'b' }]))
  t.deepEqual(channel.recvMany(10), [{ i: 'a' }, { i: 'b' }])
  throwsCoded(t, () => channel.recvMany(0), RangeError, 'ERR_OUT_OF_RANGE')
  throwsCoded(t, () => channel.recvMany(5, { timeout: 10 }), Error, 'ETIMEDOUT')
  throwsCoded(t, () => channel.sendMany([1, 2n]), TypeError, 'ERR_SHM_ENCODE', 'encoded before anything is sent')
  t.is(channel.tryRecv(), undefined)
})

test('recvMany stops at a message that does not decode: reported on its own, nothing after it lost', (t) => {
  const channel = freshChannel(t, { capacity: 1024, codec: 'json' })
  const raw = Channel.open(channel.name, { codec: 'bytes' })
  t.teardown(() => raw.close())
  raw.send('1')
  raw.send('2')
  raw.send('{not json')
  raw.send('4')
  t.deepEqual(channel.recvMany(10), [1, 2])
  throwsCoded(t, () => channel.recvMany(10), Error, 'ERR_SHM_CORRUPT')
  t.deepEqual(channel.recvMany(10), [4])
  channel.end()
  throwsCoded(t, () => channel.recvMany(10), Error, 'ERR_SHM_CHANNEL_ENDED')
})

/**
 * Writes a channel's control words straight into its file, as other producers and consumers
 * would have left them: `head` and `tail` (with `frames` 64-byte messages between them, byte `k`
 * in message `k`), `sent` and `received`.
 */
function forgeIndices(name, head, frames, { sent = 1000 + frames, received = 1000 } = {}) {
  const fd = fs.openSync(`/dev/shm/shmkit.${name}`, 'r+')
  try {
    const word = Buffer.alloc(4)
    fs.readSync(fd, word, 0, 4, 12)
    const data = word.readUInt32LE(0) // header_size: where the data area starts
    const put = (offset, value) => {
      word.writeUInt32LE(value >>> 0)
      fs.writeSync(fd, word, 0, 4, data + offset)
    }
    for (let k = 0; k < frames; k++) {
      const at = (head + 68 * k) & 1023
      put(512 + at, 64)
      fs.writeSync(fd, Buffer.alloc(64, k), 0, 64, data + 512 + ((at + 4) & 1023))
    }
    put(128, head) // head
    put(64, head + 68 * frames) // tail
    put(76, sent)
    put(140, received)
  } finally {
    fs.closeSync(fd)
  }
}

/** `count` handles of a new 1 KiB channel (the first creates it), closed when the test ends. */
function handles(t, label, count) {
  const name = uniqueName(t, label)
  const all = [Channel.create(name, { capacity: 1024 })]
  for (let i = 1; i < count; i++) all.push(Channel.open(name))
  t.teardown(() => {
    for (const channel of all) channel.close()
    Channel.unlink(name)
  })
  return [name, ...all]
}

// Each handle caches the other side's index; other handles moving the indices 2^32 bytes on
// (4 GiB of traffic) must not make that cache look valid again.
test('a producer whose cached head went 2^32 bytes stale does not overwrite unread messages', (t) => {
  if (process.platform !== 'linux') return t.pass('forges the file under /dev/shm')
  const [name, producer, consumer] = handles(t, 'stalehead', 2)
  const message = new Uint8Array(64).fill(0xee)
  t.true(producer.trySend(message))
  t.deepEqual(consumer.tryRecv(), message)
  // Others moved head and tail on by 2^32 - 952 bytes and left 15 messages (1020 bytes: full).
  forgeIndices(name, 2 ** 32 - 952 + 68, 15)
  t.false(producer.trySend(message), 'the ring is full')
  for (let k = 0; k < 15; k++) t.deepEqual(consumer.tryRecv(), new Uint8Array(64).fill(k), `message ${k}`)
  t.true(producer.trySend(message))
  t.deepEqual(consumer.tryRecv(), message)
})

test('a consumer whose cached tail went 2^32 bytes stale does not read a message twice', (t) => {
  if (process.platform !== 'linux') return t.pass('forges the file under /dev/shm')
  const [name, producer, consumer] = handles(t, 'staletail', 2)
  const message = new Uint8Array(64).fill(0xee)
  t.true(producer.trySend(message))
  t.deepEqual(consumer.tryRecv(), message)
  // Others moved both indices on by exactly 2^32 bytes: empty, with the old message's bytes
  // still in the ring where the consumer's stale tail says a message is.
  forgeIndices(name, 0, 0)
  t.is(consumer.tryRecv(), undefined, 'the ring is empty')
  t.true(producer.trySend(message))
  t.deepEqual(consumer.tryRecv(), message)
})

// The same after exactly 2^32 messages of one size: `tail` and `sent` (`head` and `received`)
// are then back where this handle left them, and only `last_sender` (`last_receiver`) tells.
test('a producer whose cached head went stale over exactly 2^32 messages does not overwrite unread ones', (t) => {
  if (process.platform !== 'linux') return t.pass('forges the file under /dev/shm')
  const [name, producer, other, consumer] = handles(t, 'stalemsgs', 3)
  const message = new Uint8Array(64).fill(0xee)
  t.true(producer.trySend(message)) // tail 68, sent 1
  t.true(other.trySend(message))
  // 2^32 messages of 64 bytes later, tail and sent are 68 and 1 again; the ring is full.
  forgeIndices(name, 68 - 1020, 15, { sent: 1, received: 1 - 15 })
  t.false(producer.trySend(message), 'the ring is full')
  for (let k = 0; k < 15; k++) t.deepEqual(consumer.tryRecv(), new Uint8Array(64).fill(k), `message ${k}`)
})

test('a consumer whose cached tail went stale over exactly 2^32 messages does not read one twice', (t) => {
  if (process.platform !== 'linux') return t.pass('forges the file under /dev/shm')
  const [name, producer, consumer, other] = handles(t, 'stalemsgt', 3)
  const message = new Uint8Array(64).fill(0xee)
  t.true(producer.trySend(message))
  t.true(producer.trySend(message))
  t.deepEqual(consumer.tryRecv(), message) // head 68, received 1; its cached tail is 136
  t.deepEqual(other.tryRecv(), message)
  // 2^32 messages later, head and received are 68 and 1 again, and the ring is empty.
  forgeIndices(name, 68, 0, { sent: 1, received: 1 })
  t.is(consumer.tryRecv(), undefined, 'the ring is empty')
})
