// Topic with real processes: fan-out to several processes in order, late subscribers, lag in
// overwrite mode, a SIGKILLed subscriber in block mode, a SIGKILLed publisher, end and drain,
// several publishers seen in one order, worker threads, bad input, a scribbled topic.
import { Worker } from 'node:worker_threads'

import test from 'ava'

import { Segment, Topic } from '../index.js'
import { codedOrFine, startFixture, throwsCoded, uniqueName } from './helpers.mjs'

function freshTopic(t, options = { capacity: 1 << 16 }) {
  const topic = Topic.create(uniqueName(t, 'topic'), options)
  t.teardown(() => topic.close())
  return topic
}

/** A subscriber process: subscribes, says 'ready', then reports every message until the end. */
function subscriberProcess(name, { batch = 1 } = {}) {
  return startFixture('script.mjs', [
    `const topic = shmkit.Topic.open(args[0]); const sub = topic.subscribe(); await send('ready')
     const got = []; let lagged = 0
     for (;;) {
       try { for await (const m of sub) { got.push(m); if (got.length % ${batch} === 0) {} } break }
       catch (e) { if (e.code !== 'ERR_SHM_LAGGED') throw e; lagged += e.missed }
     }
     await send({ got, lagged }); sub.close(); topic.close()`,
    name,
  ])
}

test('every subscriber process gets every message, whole, in the one publish order', async (t) => {
  const topic = freshTopic(t, { capacity: 4096 })
  const subscribers = [0, 1, 2].map(() => subscriberProcess(topic.name))
  for (const s of subscribers) await s.nextMessage((m) => m === 'ready')
  const sent = []
  for (let i = 0; i < 3000; i++) {
    const message = { i, text: 'x'.repeat(i % 97) }
    sent.push(message)
    if (i % 2) topic.publish(message, { timeout: 10_000 })
    else await topic.publishAsync(message, { timeout: 10_000 })
  }
  topic.end()
  for (const s of subscribers) {
    const { got, lagged } = await s.nextMessage((m) => typeof m === 'object')
    t.is(lagged, 0)
    t.deepEqual(got, sent)
    t.is((await s.done()).code, 0)
  }
  t.is(topic.stats().published, 3000)
  t.deepEqual(topic.stats().subscribers, [], 'closed subscriptions leave the table')
})

test('a late subscriber sees what is published after it subscribed; tryRecv never waits', (t) => {
  const topic = freshTopic(t)
  const early = topic.subscribe()
  topic.publish('one')
  const late = Topic.open(topic.name).subscribe()
  t.teardown(() => late.topic.close())
  topic.publish('two')
  t.is(early.tryRecv(), 'one')
  t.is(early.tryRecv(), 'two')
  t.is(early.tryRecv(), undefined)
  t.is(late.recv({ timeout: 0 }), 'two')
  t.is(late.tryRecv(), undefined)
  throwsCoded(t, () => late.recv({ timeout: 20 }), Error, 'ETIMEDOUT')
})

test('overwrite: publishers never wait; a lapped subscriber gets ERR_SHM_LAGGED with the count, then the rest in order', async (t) => {
  const topic = freshTopic(t, { capacity: 256, slow: 'overwrite', codec: 'bytes' })
  const sub = topic.subscribe()
  const publisher = startFixture('script.mjs', [
    `const topic = shmkit.Topic.open(args[0])
     for (let i = 0; i < 25; i++) if (!topic.tryPublish(new Uint8Array(16).fill(i))) throw new Error('refused')
     topic.close()`,
    topic.name,
  ])
  t.is((await publisher.done()).code, 0)
  const error = t.throws(() => sub.recv())
  t.is(error.code, 'ERR_SHM_LAGGED')
  const rest = []
  for (let m; (m = sub.tryRecv()) !== undefined;) rest.push(m[0])
  t.is(error.missed + rest.length, 25, 'missed + received = published')
  t.deepEqual(
    rest,
    Array.from({ length: rest.length }, (_, i) => 25 - rest.length + i),
  )
  t.is(topic.stats().subscribers[0].missed, error.missed)
})

test('block: a SIGKILLed subscriber stops holding publishers back within about a second; a live slow one holds them', async (t) => {
  const topic = freshTopic(t, { capacity: 1024 })
  const victim = startFixture('script.mjs', [
    // Referenced: a subscription that is garbage collected gives its slot back.
    `const topic = shmkit.Topic.open(args[0]); globalThis.held = topic.subscribe(); await send('subscribed'); await new Promise(() => {})`,
    topic.name,
  ])
  t.teardown(() => victim.kill('SIGKILL'))
  await victim.nextMessage((m) => m === 'subscribed')
  let published = 0
  while (published < 10_000 && topic.tryPublish({ n: published })) published++
  t.true(published > 10 && published < 10_000, `${published} published`)
  t.regex(throwsCoded(t, () => topic.publish({ n: -1 }, { timeout: 100 }), Error, 'ETIMEDOUT').message, /room in topic/)
  victim.kill('SIGKILL')
  await victim.done()
  const started = performance.now()
  topic.publish({ n: published }, { timeout: 5000 })
  t.true(performance.now() - started < 1500, `took ${performance.now() - started} ms`)
  t.is(topic.stats().reaped, 1)
  t.deepEqual(topic.stats().subscribers, [])
})

test('a publisher SIGKILLed while publishing leaves the topic usable and the order whole', async (t) => {
  const topic = freshTopic(t, { capacity: 1 << 14 })
  const sub = topic.subscribe()
  for (let round = 0; round < 8; round++) {
    const publisher = startFixture('script.mjs', [
      `const topic = shmkit.Topic.open(args[0]); await send('publishing')
       for (let i = 0; ; i++) topic.publish({ round: ${round}, i, pad: 'p'.repeat(i % 300) }, { timeout: 60000 })`,
      topic.name,
    ])
    await publisher.nextMessage((m) => m === 'publishing')
    // Drain while it publishes, then kill it mid-stream.
    const until = performance.now() + 20 + ((round * 13) % 30)
    let last = -1
    while (performance.now() < until) {
      const m = sub.tryRecv()
      if (m === undefined) continue
      if (m.round === round) {
        t.is(m.i, last + 1)
        last = m.i
      }
    }
    publisher.kill('SIGKILL')
    await publisher.done()
    for (let m; (m = sub.tryRecv()) !== undefined;) {
      t.is(m.i, last + 1)
      last = m.i
    }
  }
  topic.publish('after', { timeout: 2000 })
  t.is(sub.recv({ timeout: 2000 }), 'after')
})

test('end: subscribers drain what is left, then their loops end; publishing after it fails', async (t) => {
  const topic = freshTopic(t)
  const sub = topic.subscribe()
  const sleeping = topic.subscribe()
  const woken = sleeping.recvAsync({ timeout: 10_000 })
  topic.publish(1)
  topic.publish(2)
  t.is(await woken, 1)
  topic.end()
  t.true(topic.ended)
  throwsCoded(t, () => topic.publish(3), Error, 'ERR_SHM_CHANNEL_ENDED')
  const seen = []
  for await (const m of sub) seen.push(m)
  t.deepEqual(seen, [1, 2])
  t.is(sleeping.recv(), 2)
  throwsCoded(t, () => sleeping.recv(), Error, 'ERR_SHM_CHANNEL_ENDED')
  t.is(sleeping.tryRecv(), undefined, 'tryRecv only says "nothing now"')
})

test('several publishing processes: every subscriber sees one order, each publisher in its own order', async (t) => {
  const topic = freshTopic(t, { capacity: 2048, codec: 'json' })
  const subs = [topic.subscribe(), Topic.open(topic.name).subscribe()]
  t.teardown(() => subs[1].topic.close())
  const EACH = 1500
  const publishers = [0, 1, 2].map((p) =>
    startFixture('script.mjs', [
      `const topic = shmkit.Topic.open(args[0]); for (let i = 0; i < ${EACH}; i++) await topic.publishAsync([${p}, i], { timeout: 20000 }); topic.close()`,
      topic.name,
    ]),
  )
  const seen = [[], []]
  while (seen[0].length < EACH * 3 || seen[1].length < EACH * 3) {
    for (const [k, sub] of subs.entries())
      if (seen[k].length < EACH * 3) seen[k].push(await sub.recvAsync({ timeout: 20_000 }))
  }
  for (const p of publishers) t.is((await p.done()).code, 0)
  t.deepEqual(seen[0], seen[1])
  for (const p of [0, 1, 2]) {
    t.deepEqual(
      seen[0].filter((m) => m[0] === p).map((m) => m[1]),
      Array.from({ length: EACH }, (_, i) => i),
    )
  }
})

test('worker threads subscribe too; a terminated worker stops holding publishers back', async (t) => {
  const topic = freshTopic(t, { capacity: 512 })
  const source = `
    const { parentPort, workerData } = require('node:worker_threads')
    const { Topic } = require(workerData.index)
    const topic = Topic.open(workerData.name); const sub = (globalThis.held = topic.subscribe())
    parentPort.postMessage('ready')
    if (workerData.read) parentPort.postMessage(sub.recv({ timeout: 10000 }))`
  const index = new URL('../index.js', import.meta.url).pathname
  const reader = new Worker(source, { eval: true, workerData: { index, name: topic.name, read: true } })
  const idle = new Worker(source + '\nsetInterval(() => {}, 1000)', {
    eval: true,
    workerData: { index, name: topic.name, read: false },
  })
  t.teardown(() => Promise.all([reader.terminate(), idle.terminate()]))
  const first = (w) => new Promise((resolve) => w.once('message', resolve))
  await Promise.all([first(reader), first(idle)])
  const answer = first(reader)
  topic.publish({ hello: 'workers' })
  t.deepEqual(await answer, { hello: 'workers' })
  await reader.terminate()
  while (topic.tryPublish('fill')) {}
  throwsCoded(t, () => topic.publish('more', { timeout: 50 }), Error, 'ETIMEDOUT')
  await idle.terminate()
  topic.publish('more', { timeout: 5000 })
  // The idle worker's subscription was removed; the reader's (it had read ahead) is only
  // removed when it holds a publisher back, and is seen as dead meanwhile.
  t.true(topic.stats().subscribers.every((s) => !s.alive))
})

test('recvWith: a view into the ring during the call; a throwing callback leaves the message', (t) => {
  const topic = freshTopic(t, { capacity: 4096, codec: 'bytes' })
  const sub = topic.subscribe()
  topic.publish(new Uint8Array(1000).fill(7))
  t.throws(
    () =>
      sub.recvWith(() => {
        throw new Error('not now')
      }),
    { message: 'not now' },
  )
  const sum = sub.recvWith((view) => {
    t.is(view.length, 1000)
    t.true(view.byteOffset > 0, 'a view into the mapping, not a copy')
    return view.reduce((a, b) => a + b, 0)
  })
  t.is(sum, 7000)
  t.is(sub.tryRecv(), undefined)
})

test('bad input gets coded errors; opening checks the kind; subscriber slots are bounded', (t) => {
  const name = uniqueName(t, 'topic')
  throwsCoded(t, () => Topic.create(name), TypeError, 'ERR_INVALID_ARG_TYPE')
  throwsCoded(t, () => Topic.create(name, { capacity: 0 }), RangeError, 'ERR_OUT_OF_RANGE')
  throwsCoded(t, () => Topic.create(name, { capacity: 1024, slow: 'drop' }), TypeError, 'ERR_INVALID_ARG_VALUE')
  throwsCoded(t, () => Topic.create(name, { capacity: 1024, subscribers: 0 }), RangeError, 'ERR_OUT_OF_RANGE')
  throwsCoded(t, () => Topic.create(name, { capacity: 1024, codec: 'xml' }), TypeError, 'ERR_INVALID_ARG_VALUE')
  throwsCoded(t, () => Topic.create(name, { capacity: 1024, colour: 'red' }), TypeError, 'ERR_INVALID_ARG_VALUE')
  const topic = Topic.create(name, { capacity: 128, subscribers: 2 })
  t.teardown(() => topic.close())
  throwsCoded(t, () => topic.publish('x'.repeat(200)), RangeError, 'ERR_OUT_OF_RANGE')
  throwsCoded(t, () => topic.publish(1n), TypeError, 'ERR_SHM_ENCODE')
  throwsCoded(t, () => topic.publish(1, { timeout: -1 }), RangeError, 'ERR_OUT_OF_RANGE')
  throwsCoded(t, () => topic.publish(1, { tiemout: 5 }), TypeError, 'ERR_INVALID_ARG_VALUE')
  const a = topic.subscribe()
  const b = topic.subscribe() // referenced: a collected subscription gives its slot back
  t.regex(throwsCoded(t, () => topic.subscribe(), RangeError, 'ERR_OUT_OF_RANGE').message, /most/)
  t.false(b.closed)
  a.close()
  a.close()
  throwsCoded(t, () => a.recv(), Error, 'ERR_SHM_CLOSED')
  t.truthy(topic.subscribe(), 'a closed subscription frees its slot')
  throwsCoded(t, () => Segment.open(name).close() ?? Topic.open(uniqueName(t, 'missing')), Error, 'ENOENT')
  const plain = Segment.create(uniqueName(t, 'plain'), { size: 4096 })
  t.teardown(() => plain.close())
  throwsCoded(t, () => Topic.open(plain.name), Error, 'ERR_SHM_WRONG_KIND')
  throwsCoded(t, () => Topic.unlink(plain.name), Error, 'ERR_SHM_WRONG_KIND')
  topic.close()
  throwsCoded(t, () => topic.publish(1), Error, 'ERR_SHM_CLOSED')
  throwsCoded(t, () => topic.subscribe(), Error, 'ERR_SHM_CLOSED')
})

test('a scribbled topic gives coded errors or messages, never a crash or a hang', (t) => {
  const topic = freshTopic(t, { capacity: 1024, subscribers: 4 })
  const raw = new Uint32Array(Segment.open(topic.name).buffer)
  let seed = 20261202
  const random = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0)
  for (let trial = 0; trial < 300; trial++) {
    const victim = Topic.open(topic.name)
    let sub
    codedOrFine(t, `trial ${trial}`, [
      () => (sub = victim.subscribe()),
      () => victim.tryPublish({ trial }),
      () => victim.tryPublish({ trial }),
    ])
    const index = 8 + (random() % (raw.length - 8)) // the magic and geometry are checked at open
    const saved = raw[index]
    raw[index] = random()
    codedOrFine(t, `trial ${trial}`, [
      () => sub?.tryRecv(),
      () => victim.tryPublish('x'),
      () => sub?.tryRecv(),
      () => victim.stats(),
    ])
    raw[index] = saved
    victim.close()
  }
  t.pass()
})
