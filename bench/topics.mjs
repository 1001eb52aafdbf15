// Broadcast benchmark: one publisher, subscriber processes, every message to every subscriber.
// shmkit's Topic against what users do instead, in one run:
//   - a publisher writing length-prefixed frames to one Unix socket per subscriber,
//   - a `cluster`-style parent re-sending each message to each child with process.send,
//   - Redis pub/sub on a local Unix socket (ioredis; where redis-server is installed).
// Deliveries per second (messages x subscribers) for 64 B and 64 KiB messages with 4
// subscribers; and the publisher's own rate with 1, 4 and 16 subscribers that do not read
// (overwrite mode: the publish cost, which should not grow with the subscribers). Each round
// runs every contender once, in a rotating order; medians are reported.
//
//   node bench/topics.mjs [--quick] [--json FILE]
import { fork } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

import { Topic } from '../index.js'
import { startRedis } from './redis.mjs'
import { formatRate, summary, writeResults } from './stats.mjs'

const quick = process.argv.includes('--quick')
const jsonIndex = process.argv.indexOf('--json')
const jsonPath = jsonIndex > 0 ? process.argv[jsonIndex + 1] : undefined
const ROUNDS = quick ? 1 : 3
const SUBSCRIBERS = 4
const SIZES = [64, 64 << 10]
const countFor = (size) => (size <= 1024 ? (quick ? 5_000 : 100_000) : quick ? 200 : 3_000)
const peer = new URL('./topic-peer.mjs', import.meta.url)
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'shmkit-bench-topic-'))
let unique = 0
const topicName = () => `bench-topic-${process.pid}-${++unique}`

const once = (emitter, event) => new Promise((resolve) => emitter.once(event, resolve))
const messageFrom = (child, wanted) =>
  new Promise((resolve, reject) => {
    const onMessage = (m) => m === wanted && (child.off('message', onMessage), resolve())
    child.on('message', onMessage)
    child.once('exit', (code) => code !== 0 && reject(new Error(`a subscriber exited with ${code}`)))
  })

/** Starts `n` subscriber processes, waits until each is ready; resolves with them and a promise of all done. */
async function subscribers(n, args, options) {
  const children = Array.from({ length: n }, () => fork(peer, args, options))
  const finished = Promise.all(children.map((child) => messageFrom(child, 'done')))
  await Promise.all(children.map((child) => messageFrom(child, 'ready')))
  return { children, finished }
}

const contenders = {
  shmkit: {
    label: 'shmkit Topic, { timeout } on every call',
    async fanOut(count, size) {
      const name = topicName()
      const topic = Topic.create(name, { capacity: Math.max(1 << 20, 16 * (size + 8)), codec: 'bytes' })
      try {
        const { finished } = await subscribers(SUBSCRIBERS, ['shm', name, count])
        const message = new Uint8Array(size)
        const options = { timeout: 30_000 }
        const started = performance.now()
        for (let i = 0; i < count; i++) topic.publish(message, options)
        await finished
        return (count * SUBSCRIBERS) / ((performance.now() - started) / 1000)
      } finally {
        topic.close()
        Topic.unlink(name)
      }
    },
  },
  socket: {
    label: 'Unix socket per subscriber, length-prefixed frames',
    async fanOut(count, size) {
      const file = path.join(tmp, `fanout-${++unique}.sock`)
      const server = net.createServer()
      const sockets = []
      server.on('connection', (socket) => sockets.push(socket))
      await new Promise((resolve) => server.listen(file, resolve))
      try {
        const { finished } = await subscribers(SUBSCRIBERS, ['socket', file, count])
        while (sockets.length < SUBSCRIBERS) await new Promise((resolve) => setImmediate(resolve))
        const frame = Buffer.alloc(4 + size)
        frame.writeUInt32LE(size, 0)
        const started = performance.now()
        for (let i = 0; i < count; i++) {
          let full = false
          for (const socket of sockets) if (!socket.write(frame)) full = true
          if (full) await Promise.all(sockets.filter((s) => s.writableNeedDrain).map((s) => once(s, 'drain')))
        }
        await finished
        return (count * SUBSCRIBERS) / ((performance.now() - started) / 1000)
      } finally {
        for (const socket of sockets) socket.destroy()
        server.close()
      }
    },
  },
  ipc: {
    label: 'process.send to each child (cluster-style)',
    async fanOut(count, size) {
      const { children, finished } = await subscribers(SUBSCRIBERS, ['ipc', count], { serialization: 'advanced' })
      const message = new Uint8Array(size)
      const started = performance.now()
      for (let i = 0; i < count; i++) {
        // Bounded backlog: wait for the last send of each batch to be written out.
        if (i % 256 === 255) await Promise.all(children.map((child) => new Promise((r) => child.send(message, r))))
        else for (const child of children) child.send(message)
      }
      await finished
      return (count * SUBSCRIBERS) / ((performance.now() - started) / 1000)
    },
  },
  redis: await redisContender(),
}

async function redisContender() {
  const started = await startRedis(tmp)
  if (started.skipped) return started
  const { redis, socket } = started
  return {
    label: 'Redis pub/sub (ioredis, Unix socket)',
    version: started.version,
    async fanOut(count, size) {
      const { finished } = await subscribers(SUBSCRIBERS, ['redis', socket, count])
      const message = Buffer.alloc(size)
      const started = performance.now()
      for (let i = 0; i < count; i++) {
        // Pipelined: awaited once per 256 publishes (awaiting each would measure round trips).
        if (i % 256 === 255) await redis.publish('bench', message)
        else redis.publish('bench', message)
      }
      await finished
      return (count * SUBSCRIBERS) / ((performance.now() - started) / 1000)
    },
    close: started.stop,
  }
}

/** The publisher alone: publishes per second with `n` subscribers that never read (overwrite mode). */
async function publisherCost(n) {
  const name = topicName()
  const topic = Topic.create(name, { capacity: 1 << 20, codec: 'bytes', slow: 'overwrite', subscribers: 16 })
  try {
    const { children } = await subscribers(n, ['idle', name])
    const message = new Uint8Array(64)
    const options = { timeout: 30_000 }
    const count = quick ? 20_000 : 500_000
    const started = performance.now()
    for (let i = 0; i < count; i++) topic.publish(message, options)
    const perSecond = count / ((performance.now() - started) / 1000)
    for (const child of children) child.send('exit')
    await Promise.all(children.map((child) => once(child, 'exit')))
    return perSecond
  } finally {
    topic.close()
    Topic.unlink(name)
  }
}

const samples = {}
const costs = { 1: [], 4: [], 16: [] }
for (let round = -1; round < ROUNDS; round++) {
  const keys = Object.keys(contenders).filter((key) => !contenders[key].skipped)
  const turn = Math.max(0, round) % keys.length
  for (const key of [...keys.slice(turn), ...keys.slice(0, turn)]) {
    for (const size of SIZES) {
      const value = await contenders[key].fanOut(round < 0 ? Math.ceil(countFor(size) / 10) : countFor(size), size)
      if (round >= 0) ((samples[key] ??= {})[size] ??= []).push(value)
    }
  }
  for (const n of [1, 4, 16]) {
    const value = await publisherCost(n)
    if (round >= 0) costs[n].push(value)
  }
}
for (const contender of Object.values(contenders)) await contender.close?.()
fs.rmSync(tmp, { recursive: true, force: true })

const results = { subscribers: SUBSCRIBERS, sizes: SIZES, contenders: {}, skipped: {}, publisherCost: {} }
for (const [key, contender] of Object.entries(contenders)) {
  if (contender.skipped) {
    results.skipped[key] = contender.skipped
    continue
  }
  results.contenders[key] = { label: contender.label, ...(contender.version ? { version: contender.version } : {}) }
  for (const size of SIZES) results.contenders[key][size] = summary(samples[key][size])
}
for (const n of [1, 4, 16]) results.publisherCost[n] = summary(costs[n])

console.log(`\nTopics: 1 publisher, ${SUBSCRIBERS} subscriber processes, deliveries/s; median of ${ROUNDS} round(s)\n`)
for (const r of Object.values(results.contenders)) {
  console.log(`${r.label.padEnd(52)} ${SIZES.map((s) => `${s} B ${formatRate(r[s].median)}`).join(' | ')}`)
}
for (const [key, why] of Object.entries(results.skipped)) console.log(`${key}: skipped (${why})`)
console.log(
  `publisher alone (64 B, overwrite): ${[1, 4, 16].map((n) => `${n} subscribers ${formatRate(results.publisherCost[n].median)}`).join(' | ')}`,
)
writeResults(jsonPath, results)
