// Acknowledged receive (ch.take / job.ack) with real processes and worker threads: a consumer
// SIGKILLed (or a worker terminated) between take and ack, its job delivered again; leases;
// maxDeliveries and the dead-letter channel; 3 producers x 3 consumers with random kills, every
// job processed at least once and acknowledged exactly once.
import { Worker } from 'node:worker_threads'

import test from 'ava'

import { Channel, SharedMap } from '../index.js'
import { takenMessages } from '../lib/queue.js'
import { startFixture, uniqueName } from './helpers.mjs'

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function freshQueue(t, options = { capacity: 1 << 14, codec: 'json' }) {
  const channel = Channel.create(uniqueName(t, 'q'), options)
  t.teardown(() => {
    channel.close()
    try {
      SharedMap.unlink(`${channel.name}.inflight`)
    } catch {}
  })
  return channel
}

/** A consumer process that takes one job, reports it, and then hangs without acknowledging. */
function stuckConsumer(name) {
  return startFixture('script.mjs', [
    `const ch = shmkit.Channel.open(args[0]); const job = await ch.take({ timeout: 20000 })
     await send({ value: job.value, deliveries: job.deliveries }); setInterval(() => {}, 1000)`,
    name,
  ])
}

test('a consumer SIGKILLed between take and ack: its job goes to another consumer, delivery 2', async (t) => {
  const ch = freshQueue(t)
  ch.send({ job: 'resize image 7' })
  const victim = stuckConsumer(ch.name)
  t.deepEqual(await victim.nextMessage(), { value: { job: 'resize image 7' }, deliveries: 1 })
  t.is(ch.tryRecv(), undefined, 'taken: no longer in the ring')
  await t.throwsAsync(ch.take({ timeout: 100 }), { code: 'ETIMEDOUT' }, 'a live holder keeps it')
  victim.kill('SIGKILL')
  await victim.done()
  const job = await ch.take({ timeout: 5000 })
  t.deepEqual(job.value, { job: 'resize image 7' })
  t.is(job.deliveries, 2)
  t.true(job.ack())
  await t.throwsAsync(ch.take({ timeout: 300 }), { code: 'ETIMEDOUT' }, 'acknowledged: gone for good')
})

test('a worker thread terminated between take and ack: its job is delivered again', async (t) => {
  const ch = freshQueue(t)
  ch.send('job for a worker')
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads')
     const { Channel } = require(workerData.index)
     Channel.open(workerData.name).take().then((job) => parentPort.postMessage(job.value))
     setInterval(() => {}, 1000)`,
    { eval: true, workerData: { index: new URL('../index.js', import.meta.url).pathname, name: ch.name } },
  )
  t.is(await new Promise((resolve) => worker.once('message', resolve)), 'job for a worker')
  await worker.terminate()
  const job = await ch.take({ timeout: 5000 })
  t.is(job.value, 'job for a worker')
  t.is(job.deliveries, 2)
  t.true(job.ack())
})

test('a lease that expires: the job is delivered again, and the late ack is refused', async (t) => {
  const ch = freshQueue(t)
  ch.send({ n: 1 })
  const first = await ch.take({ leaseMs: 80 })
  await delay(120)
  const second = await ch.take({ timeout: 2000 })
  t.is(second.deliveries, 2)
  t.false(first.ack(), 'the first lease is over: another consumer has it')
  t.true(second.ack())
  t.throws(() => second.ack(), { code: 'ERR_SHM_NOT_LOCKED' })
})

test('nack gives a job back at once; after maxDeliveries it goes to the dead-letter channel', async (t) => {
  const ch = freshQueue(t)
  const dead = freshQueue(t, { capacity: 1024, codec: 'json' })
  ch.send({ poison: true })
  for (let delivery = 1; delivery <= 3; delivery++) {
    const job = await ch.take({ maxDeliveries: 3, deadLetter: dead, timeout: 2000 })
    t.is(job.deliveries, delivery)
    t.true(job.nack())
  }
  await t.throwsAsync(ch.take({ maxDeliveries: 3, deadLetter: dead, timeout: 300 }), { code: 'ETIMEDOUT' })
  t.deepEqual(dead.recv({ timeout: 1000 }), { poison: true })
  // Without a dead-letter channel, onDropped is told.
  ch.send('doomed')
  const dropped = []
  const job = await ch.take({ maxDeliveries: 1 })
  job.nack()
  await t.throwsAsync(
    ch.take({
      maxDeliveries: 1,
      timeout: 200,
      onDropped: (bytes, n) => dropped.push([Buffer.from(bytes).toString(), n]),
    }),
    { code: 'ETIMEDOUT' },
  )
  t.deepEqual(dropped, [['"doomed"', 1]])
})

test('using: a job dropped without ack is given back', async (t) => {
  const ch = freshQueue(t)
  ch.send(1)
  {
    const job = await ch.take()
    job[Symbol.dispose]()
  }
  const again = await ch.take({ timeout: 1000 })
  t.is(again.deliveries, 2)
  again.ack()
})

test('end: take drains the ring and the in-flight table, then ends', async (t) => {
  const ch = freshQueue(t)
  ch.send('a')
  const held = await ch.take()
  ch.end()
  const pending = ch.take({ timeout: 3000 })
  held.nack() // in flight again: the pending take gets it
  const again = await pending
  t.is(again.value, 'a')
  await t.throwsAsync(ch.take({ timeout: 300 }), { code: 'ETIMEDOUT' }, 'still in flight: it may come back')
  again.ack()
  await t.throwsAsync(ch.take({ timeout: 1000 }), { code: 'ERR_SHM_CHANNEL_ENDED' })
})

test("take() on a channel whose name leaves no room for its in-flight table's name says why", async (t) => {
  const name = uniqueName(t, 'q').padEnd(195, 'x')
  const ch = Channel.create(name, { capacity: 64 })
  t.teardown(() => {
    ch.close()
    Channel.unlink(name)
  })
  ch.send('job')
  const error = await t.throwsAsync(ch.take({ timeout: 1000 }), { code: 'ENAMETOOLONG' })
  t.regex(error.message, /at most 191 characters for take\(\), not 195/)
  t.is(new TextDecoder().decode(ch.recv({ timeout: 1000 })), 'job', 'the message stays')
})

test('bad input gets coded errors', async (t) => {
  const ch = freshQueue(t)
  await t.throwsAsync(ch.take({ leaseMs: 0 }), { code: 'ERR_OUT_OF_RANGE' })
  await t.throwsAsync(ch.take({ maxDeliveries: -1 }), { code: 'ERR_OUT_OF_RANGE' })
  await t.throwsAsync(ch.take({ deadLetter: {} }), { code: 'ERR_INVALID_ARG_TYPE' })
  await t.throwsAsync(ch.take({ lease: 5 }), { code: 'ERR_INVALID_ARG_VALUE' })
  const aborted = new AbortController()
  aborted.abort()
  await t.throwsAsync(ch.take({ signal: aborted.signal }), { name: 'AbortError' })
  ch.close()
  await t.throwsAsync(ch.take(), { code: 'ERR_SHM_CLOSED' })
})

test('3 producers x 3 consumers with consumers SIGKILLed: every job processed at least once, acknowledged once', async (t) => {
  const ch = freshQueue(t, { capacity: 1 << 12, codec: 'json' })
  const JOBS = 600
  const producers = [0, 1, 2].map((p) =>
    startFixture('script.mjs', [
      `const ch = shmkit.Channel.open(args[0]); for (let i = 0; i < ${JOBS / 3}; i++) await ch.sendAsync({ p: ${p}, i }); ch.close()`,
      ch.name,
    ]),
  )
  // Consumers report into a channel of their own: a report sent before a SIGKILL is never lost
  // (on Deno, IPC messages a process had sent shortly before it was killed often never arrived).
  const reports = freshQueue(t, { capacity: 1 << 18, codec: 'json' })
  const consumerBody = `const ch = shmkit.Channel.open(args[0])
    const reports = shmkit.Channel.open(args[1])
    for (;;) {
      let job
      // A long lease: only deaths redeliver here, never a consumer slowed down by a loaded machine.
      try { job = await ch.take({ timeout: 3000, leaseMs: 30000 }) } catch (e) { if (e.code === 'ETIMEDOUT') break; throw e }
      reports.send({ processed: job.value, deliveries: job.deliveries })
      await new Promise((r) => setTimeout(r, 1))
      if (job.ack()) reports.send({ acked: job.value })
    }`
  const seen = new Map()
  const acked = new Map()
  const count = (map, { p, i }) => map.set(`${p}:${i}`, (map.get(`${p}:${i}`) ?? 0) + 1)
  const readReports = () => {
    for (let m; (m = reports.tryRecv()) !== undefined;) {
      if (m.processed) count(seen, m.processed)
      if (m.acked) count(acked, m.acked)
    }
  }
  let kills = 0
  const running = new Set()
  const start = () => {
    const consumer = startFixture('script.mjs', [consumerBody, ch.name, reports.name])
    running.add(consumer)
    consumer.done().finally(() => running.delete(consumer))
    return consumer
  }
  for (let i = 0; i < 3; i++) start()
  for (let round = 0; round < 4; round++) {
    await delay(150)
    const [victim] = running
    if (victim) {
      victim.kill('SIGKILL')
      kills++
      start()
    }
  }
  for (const producer of producers) t.is((await producer.done()).code, 0)
  while (running.size) await Promise.all([...running].map((c) => c.done()))
  readReports()
  // Whatever the killed consumers held is delivered again: drain what is left here.
  for (;;) {
    let job
    try {
      job = await ch.take({ timeout: 2500, leaseMs: 5000 })
    } catch (error) {
      if (error.code === 'ETIMEDOUT') break
      throw error
    }
    count(seen, job.value)
    if (job.ack()) count(acked, job.value)
  }
  const missing = []
  for (let p = 0; p < 3; p++) for (let i = 0; i < JOBS / 3; i++) if (!seen.has(`${p}:${i}`)) missing.push(`${p}:${i}`)
  t.is(seen.size, JOBS, `every job processed at least once (missing: ${missing.join(', ')})`)
  // The channel's own record: nothing is left taken and not acknowledged, nothing in the ring.
  t.deepEqual(takenMessages(ch.name), [], 'every job acknowledged')
  t.is(ch.tryRecv(), undefined)
  // A consumer SIGKILLed between its ack and its report takes the report with it: at most one
  // unreported ack per kill.
  const unreported = [...seen.keys()].filter((key) => !acked.has(key))
  t.true(unreported.length <= kills, `acks not reported: ${unreported.join(', ')}`)
  t.true(
    [...acked.values()].every((n) => n === 1),
    'acknowledged exactly once',
  )
  const duplicates = [...seen.values()].reduce((sum, n) => sum + n - 1, 0)
  t.true(duplicates <= kills, `${duplicates} duplicate deliveries, ${kills} kills`)
  t.log(`${kills} consumers killed, ${duplicates} jobs delivered twice, ${unreported.length} acks not reported`)
})
