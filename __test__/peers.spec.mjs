// Channel peers: who produces and consumes (alive or dead), and receivers and senders that stop
// once the other side is gone, with real processes killed for real and worker threads
// terminated.
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'

import test from 'ava'

import { Channel } from '../index.js'
import { startFixture, throwsCoded, uniqueName } from './helpers.mjs'

const cli = fileURLToPath(new URL('../bin/shmkit.js', import.meta.url))

/** A process that opens channel `name`, sends `count` messages (or receives them, as a
 * consumer), reports 'done' and then sleeps until it is killed (at the latest when test `t`
 * ends): it never closes the channel. */
async function peerProcess(t, name, role, count = 1) {
  const body = `
    const ch = shmkit.Channel.open(args[0], { codec: 'json' })
    for (let i = 0; i < Number(args[2]); i++) {
      if (args[1] === 'producer') ch.send({ from: process.pid, i }, { timeout: 10000 })
      else ch.recv({ timeout: 10000 })
    }
    globalThis.held = ch // a handle nobody references may be collected, and then it detaches
    await send('done')
    setInterval(() => {}, 1 << 30)
  `
  const child = startFixture('script.mjs', [body, name, role, count])
  // A failed assertion ends the test at once: the process must not outlive it.
  t.teardown(() => child.kill('SIGKILL'))
  await child.nextMessage((m) => m === 'done')
  return child
}

async function kill(child) {
  child.kill('SIGKILL')
  await child.done()
}

test('peers() lists producers and consumers with their pids; a SIGKILLed producer shows dead', async (t) => {
  const name = uniqueName(t, 'peers')
  const ch = Channel.create(name, { capacity: 1024, codec: 'json' })
  t.teardown(() => ch.close())
  t.deepEqual(ch.peers(), {
    peers: [],
    producers: 0,
    consumers: 0,
    producersGone: false,
    consumersGone: false,
    unlisted: 0,
  })
  const producer = await peerProcess(t, name, 'producer')
  t.deepEqual(ch.recv({ timeout: 5000 }), { from: producer.pid, i: 0 })
  let peers = ch.peers()
  t.is(peers.producers, 1)
  t.is(peers.consumers, 1)
  t.false(peers.producersGone)
  t.deepEqual(
    peers.peers.sort((a, b) => a.pid - b.pid),
    [
      { pid: process.pid, producer: false, consumer: true, state: 'alive' },
      { pid: producer.pid, producer: true, consumer: false, state: 'alive' },
    ].sort((a, b) => a.pid - b.pid),
  )
  await kill(producer)
  peers = ch.peers()
  t.is(peers.producers, 0)
  t.true(peers.producersGone)
  t.false(peers.consumersGone)
  t.deepEqual(
    peers.peers.find((p) => p.pid === producer.pid),
    { pid: producer.pid, producer: true, consumer: false, state: 'dead' },
  )
  // shmkit inspect shows them too.
  const inspected = JSON.parse(execFileSync(process.execPath, [cli, 'inspect', name, '--json'], { encoding: 'utf8' }))
  t.is(inspected.peers.producers, 0)
  t.true(inspected.peers.producersGone)
  t.true(inspected.peers.peers.some((p) => p.pid === producer.pid && p.producer && p.state === 'dead'))
  const text = execFileSync(process.execPath, [cli, 'inspect', name], { encoding: 'utf8' })
  t.regex(text, new RegExp(`pid ${producer.pid}: producer, DEAD`))
})

test("ifPeersGone 'end': for await ends once the last of 3 producers is SIGKILLed, after every message", async (t) => {
  const name = uniqueName(t, 'peers')
  const ch = Channel.create(name, { capacity: 1 << 16, codec: 'json', ifPeersGone: 'end' })
  t.teardown(() => ch.close())
  const producers = await Promise.all([0, 1, 2].map(() => peerProcess(t, name, 'producer', 100)))
  const received = []
  const loop = (async () => {
    for await (const message of ch) received.push(message)
  })()
  for (const producer of producers) await kill(producer)
  await loop
  t.is(received.length, 300)
  for (const producer of producers) t.is(received.filter((m) => m.from === producer.pid).length, 100)
  t.false(ch.ended, 'nobody called end(): the stream is only over for this handle')
})

test("ifPeersGone 'throw': recv, recvAsync and take throw ERR_SHM_NO_PRODUCERS; the default waits", async (t) => {
  const name = uniqueName(t, 'peers')
  const ch = Channel.create(name, { capacity: 1024, codec: 'json', ifPeersGone: 'throw' })
  const waiting = Channel.open(name) // default: 'wait'
  t.teardown(() => {
    ch.close()
    waiting.close()
  })
  // No producer yet: not "gone", the receiver waits (and times out) as before.
  throwsCoded(t, () => ch.recv({ timeout: 200 }), Error, 'ETIMEDOUT')
  const producer = await peerProcess(t, name, 'producer', 2)
  await kill(producer)
  // Its messages are still delivered: the ring is read before the peers are judged.
  t.is(ch.recv({ timeout: 5000 }).i, 0)
  t.is((await ch.recvAsync({ timeout: 5000 })).i, 1)
  throwsCoded(t, () => ch.recv({ timeout: 10_000 }), Error, 'ERR_SHM_NO_PRODUCERS')
  throwsCoded(t, () => ch.recvMany(10, { timeout: 10_000 }), Error, 'ERR_SHM_NO_PRODUCERS')
  throwsCoded(t, () => ch.recvWith(() => 0, { timeout: 10_000 }), Error, 'ERR_SHM_NO_PRODUCERS')
  await t.throwsAsync(ch.recvAsync({ timeout: 10_000 }), { code: 'ERR_SHM_NO_PRODUCERS' })
  await t.throwsAsync(ch.take({ timeout: 10_000 }), { code: 'ERR_SHM_NO_PRODUCERS' })
  t.is(ch.tryRecv(), undefined)
  throwsCoded(t, () => waiting.recv({ timeout: 200 }), Error, 'ETIMEDOUT')
  // A new producer: the side is back.
  const again = Channel.open(name)
  again.send({ i: 2 })
  t.false(ch.peers().producersGone)
  t.is(ch.recv({ timeout: 1000 }).i, 2)
  again.close()
  // Closed (not dead): gone as well.
  t.true(ch.peers().producersGone)
  throwsCoded(t, () => ch.recv({ timeout: 10_000 }), Error, 'ERR_SHM_NO_PRODUCERS')
})

test('a producer that closes its handle counts as gone: a receiver asleep on the channel ends', async (t) => {
  const name = uniqueName(t, 'peers')
  const ch = Channel.create(name, { capacity: 1024, codec: 'json', ifPeersGone: 'end' })
  t.teardown(() => ch.close())
  const producer = Channel.open(name)
  producer.send({ i: 0 })
  const pending = (async () => {
    const out = []
    for await (const message of ch) out.push(message)
    return out
  })()
  await new Promise((resolve) => setTimeout(resolve, 100)) // asleep on the empty channel by now
  producer.close()
  t.deepEqual(await pending, [{ i: 0 }])
})

test("take with ifPeersGone 'end' waits while a job is in flight, ends once it is acknowledged", async (t) => {
  const name = uniqueName(t, 'peers')
  const ch = Channel.create(name, { capacity: 1024, codec: 'json', ifPeersGone: 'end' })
  t.teardown(() => ch.close())
  const producer = await peerProcess(t, name, 'producer', 1)
  await kill(producer)
  const job = await ch.take({ timeout: 5000 })
  // The job could still come back (nack, death of its holder): not over yet.
  await t.throwsAsync(ch.take({ timeout: 600 }), { code: 'ETIMEDOUT' })
  t.true(job.ack())
  await t.throwsAsync(ch.take({ timeout: 10_000 }), { code: 'ERR_SHM_CHANNEL_ENDED' })
})

test('a worker-thread producer that is terminated counts as gone', async (t) => {
  const name = uniqueName(t, 'peers')
  const ch = Channel.create(name, { capacity: 1024, codec: 'json', ifPeersGone: 'throw' })
  t.teardown(() => ch.close())
  const worker = new Worker(
    `const { Channel } = require(${JSON.stringify(fileURLToPath(new URL('../index.js', import.meta.url)))})
     const { parentPort, workerData } = require('node:worker_threads')
     const ch = Channel.open(workerData, { codec: 'json' })
     globalThis.held = ch // referenced until the worker is terminated
     ch.send({ from: 'worker' })
     parentPort.postMessage('sent')
     setInterval(() => {}, 1 << 30)`,
    { eval: true, workerData: name },
  )
  await new Promise((resolve) => worker.once('message', resolve))
  t.is(ch.peers().producers, 1)
  await worker.terminate()
  t.deepEqual(ch.recv({ timeout: 5000 }), { from: 'worker' })
  await t.throwsAsync(ch.recvAsync({ timeout: 10_000 }), { code: 'ERR_SHM_NO_PRODUCERS' })
})

test('a sender on a full channel throws ERR_SHM_NO_CONSUMERS once its consumer is SIGKILLed', async (t) => {
  const name = uniqueName(t, 'peers')
  const ch = Channel.create(name, { capacity: 64, codec: 'json', ifPeersGone: 'throw' })
  t.teardown(() => ch.close())
  ch.send({ i: 0 })
  const consumer = await peerProcess(t, name, 'consumer', 1)
  t.is(ch.peers().consumers, 1)
  while (ch.trySend({ i: 9 })); // full: not even room for one more message of this size
  await kill(consumer)
  throwsCoded(t, () => ch.send({ i: 1 }, { timeout: 10_000 }), Error, 'ERR_SHM_NO_CONSUMERS')
  await t.throwsAsync(ch.sendAsync({ i: 1 }, { timeout: 10_000 }), { code: 'ERR_SHM_NO_CONSUMERS' })
  throwsCoded(t, () => ch.sendMany([{ i: 1 }], { timeout: 10_000 }), Error, 'ERR_SHM_NO_CONSUMERS')
})

test("a dead producer's attach slot, taken by a consumer, does not make it a producer", async (t) => {
  const name = uniqueName(t, 'peers')
  const ch = Channel.create(name, { capacity: 1024, codec: 'json' })
  t.teardown(() => ch.close())
  const producer = await peerProcess(t, name, 'producer', 1)
  await kill(producer)
  // The next open reaps the dead producer's slot and takes it.
  const consumer = Channel.open(name, { ifPeersGone: 'throw' })
  t.teardown(() => consumer.close())
  t.is(consumer.recv({ timeout: 1000 }).i, 0)
  const peers = ch.peers()
  t.deepEqual(peers.peers, [{ pid: process.pid, producer: false, consumer: true, state: 'alive' }])
  t.true(peers.producersGone)
  throwsCoded(t, () => consumer.recv({ timeout: 10_000 }), Error, 'ERR_SHM_NO_PRODUCERS')
})

test('ifPeersGone is validated', (t) => {
  const name = uniqueName(t, 'peers')
  for (const bad of ['never', 1, null, true]) {
    throwsCoded(t, () => Channel.create(name, { capacity: 64, ifPeersGone: bad }), TypeError, 'ERR_INVALID_ARG_VALUE')
  }
  Channel.create(name, { capacity: 64 }).close()
  throwsCoded(t, () => Channel.open(name, { ifPeersGone: 'sometimes' }), TypeError, 'ERR_INVALID_ARG_VALUE')
  for (const mode of ['wait', 'end', 'throw', undefined]) Channel.open(name, { ifPeersGone: mode }).close()
})
