// Message benchmark: shmkit channels between two processes against what users would pick
// instead, in one run, for message sizes from 64 B to 4 MiB:
//   - a SharedArrayBuffer ring between two worker threads (the in-process speed limit),
//   - a Unix domain socket with length-prefixed frames,
//   - process.send, with JSON (a string payload) and with advanced (structured clone) serialization,
//   - a worker MessagePort (structured clone of a Uint8Array).
// Throughput (messages/s, MB/s) and round trip (p50, p99). Each round measures every contender
// once, in a rotating order, so drift hits them alike; the median over rounds is reported with
// its min-max.
//
//   node bench/channels.mjs [--quick] [--json FILE]
import { fork } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { Worker } from 'node:worker_threads'

import { Channel } from '../index.js'
import { createRingBuffer, SabRing } from './sab-ring.mjs'
import { formatRate, summary, writeResults } from './stats.mjs'

const quick = process.argv.includes('--quick')
const jsonIndex = process.argv.indexOf('--json')
const jsonPath = jsonIndex > 0 ? process.argv[jsonIndex + 1] : undefined
const ROUNDS = quick ? 1 : 5
const SIZES = quick ? [64, 1 << 20] : [64, 1024, 64 << 10, 1 << 20, 4 << 20]
const BYTES_PER_RUN = quick ? 8 << 20 : 96 << 20
const peer = new URL('./channel-peer.mjs', import.meta.url)

const once = (emitter, event) => new Promise((resolve) => emitter.once(event, resolve))
const messagesFor = (size, budget, min, max) => Math.max(min, Math.min(max, Math.floor(budget / size)))
/**
 * Every throughput run times the steady state: the clock starts at this message (the first fifth
 * warms up the sender, a new process or thread whose code is not compiled yet) and the rate
 * counts the messages after it.
 */
const warmupOf = (count) => Math.max(1, Math.floor(count / 5))
let unique = 0
const channelName = () => `bench-ch-${process.pid}-${++unique}`
const ringBytesFor = (size) => 2 ** Math.ceil(Math.log2(Math.max(1 << 20, 4 * (size + 8))))

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]
}

/** Times `trips` round trips of `send()` then `awaitReply()`; returns sorted microseconds. */
async function timeTrips(trips, send, awaitReply) {
  const times = new Float64Array(trips)
  for (let i = 0; i < trips; i++) {
    const started = performance.now()
    send()
    await awaitReply()
    times[i] = (performance.now() - started) * 1000
  }
  return times.sort()
}

// ------------------------------------------------------------------------------- contenders

/**
 * shmkit channels between two processes, as users write the calls: `mode` 'timeout' passes
 * `{ timeout }` on every send and receive (the README's way), 'plain' passes no options (the
 * cost of the options object is the ratio of the two), 'batch' uses sendMany/recvMany with
 * batches of 64 (per-message rate reported).
 */
function shmkitChannel(mode, label, sizes) {
  const TIMEOUT = { timeout: 5000 }
  return {
    label,
    sizes,
    fast: true,
    async throughput(count, size) {
      const name = channelName()
      const channel = Channel.create(name, { capacity: ringBytesFor(size) })
      try {
        const child = fork(peer, ['shm-send', name, count, size, mode])
        await once(child, 'message')
        const warm = warmupOf(count)
        let got = 0
        let started = 0
        let from = 0
        if (mode === 'batch') {
          while (got < warm) got += channel.recvMany(64, TIMEOUT).length
          ;[started, from] = [performance.now(), got]
          while (got < count) got += channel.recvMany(64, TIMEOUT).length
        } else if (mode === 'plain') {
          for (; got < warm; got++) channel.recv()
          ;[started, from] = [performance.now(), got]
          for (; got < count; got++) channel.recv()
        } else {
          for (; got < warm; got++) channel.recv(TIMEOUT)
          ;[started, from] = [performance.now(), got]
          for (; got < count; got++) channel.recv(TIMEOUT)
        }
        const seconds = (performance.now() - started) / 1000
        await once(child, 'exit')
        return (count - from) / seconds
      } finally {
        channel.close()
        Channel.unlink(name)
      }
    },
    async roundTrip(trips, size) {
      const [ping, pong] = [channelName(), channelName()]
      const out = Channel.create(ping, { capacity: ringBytesFor(size) })
      const back = Channel.create(pong, { capacity: ringBytesFor(size) })
      try {
        const child = fork(peer, ['shm-echo', ping, pong, trips, mode])
        await once(child, 'message')
        const message = new Uint8Array(size)
        const options = mode === 'plain' ? undefined : TIMEOUT
        // Synchronous on both sides: the awake peer answers while we spin.
        const times = await timeTrips(
          trips,
          () => out.send(message, options),
          () => back.recv(options),
        )
        await once(child, 'exit')
        return times
      } finally {
        for (const [channel, name] of [
          [out, ping],
          [back, pong],
        ]) {
          channel.close()
          Channel.unlink(name)
        }
      }
    },
  }
}

const shmkit = shmkitChannel('timeout', 'shmkit channel, { timeout } (2 processes)')
const shmkitPlain = shmkitChannel('plain', 'shmkit channel, no options', [64, 1024])
const shmkitBatch = shmkitChannel('batch', 'shmkit sendMany/recvMany x64', [64, 1024])

const sabRing = {
  label: 'SAB ring (2 threads)',
  fast: true,
  async throughput(count, size) {
    const buffer = createRingBuffer(ringBytesFor(size))
    const ring = new SabRing(buffer)
    const worker = new Worker(peer, { workerData: { args: ['sab-send'], buffer, count, size } })
    await once(worker, 'message')
    const warm = warmupOf(count)
    for (let i = 0; i < warm; i++) ring.recv()
    const started = performance.now()
    for (let i = warm; i < count; i++) ring.recv()
    const seconds = (performance.now() - started) / 1000
    await worker.terminate()
    return (count - warm) / seconds
  },
  async roundTrip(trips, size) {
    const ping = createRingBuffer(ringBytesFor(size))
    const pong = createRingBuffer(ringBytesFor(size))
    const [out, back] = [new SabRing(ping), new SabRing(pong)]
    const worker = new Worker(peer, { workerData: { args: ['sab-echo'], ping, pong, count: trips } })
    await once(worker, 'message')
    const message = new Uint8Array(size)
    const times = await timeTrips(
      trips,
      () => out.send(message),
      () => back.recv(),
    )
    await worker.terminate()
    return times
  },
}

async function withSocketServer(fn) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shmkit-bench-'))
  const socketPath = path.join(dir, 'sock')
  const server = net.createServer()
  await new Promise((resolve) => server.listen(socketPath, resolve))
  try {
    return await fn(server, socketPath)
  } finally {
    server.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/** Calls `onFrame(payload)` for each length-prefixed frame of a byte stream. */
function frameReader(onFrame) {
  let pending = Buffer.alloc(0)
  return (chunk) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk
    let offset = 0
    while (pending.length - offset >= 4) {
      const length = pending.readUInt32LE(offset)
      if (pending.length - offset < 4 + length) break
      onFrame(pending.subarray(offset + 4, offset + 4 + length))
      offset += 4 + length
    }
    pending = pending.subarray(offset)
  }
}

const unixSocket = {
  label: 'Unix socket, framed',
  throughput(count, size) {
    return withSocketServer(async (server, socketPath) => {
      const connection = once(server, 'connection')
      const child = fork(peer, ['sock-send', socketPath, count, size])
      const socket = await connection
      const rate = await new Promise((resolve) => {
        const warm = warmupOf(count)
        let received = 0
        let started
        socket.on(
          'data',
          frameReader(() => {
            if (++received === warm) started = performance.now()
            if (received === count) resolve((count - warm) / ((performance.now() - started) / 1000))
          }),
        )
      })
      await once(child, 'exit')
      return rate
    })
  },
  roundTrip(trips, size) {
    return withSocketServer(async (server, socketPath) => {
      const connection = once(server, 'connection')
      const child = fork(peer, ['sock-echo', socketPath])
      const socket = await connection
      const frame = Buffer.alloc(4 + size)
      frame.writeUInt32LE(size, 0)
      let reply
      socket.on(
        'data',
        frameReader(() => reply()),
      )
      const times = await timeTrips(
        trips,
        () => socket.write(frame),
        () => new Promise((resolve) => (reply = resolve)),
      )
      socket.end()
      await once(child, 'exit')
      return times
    })
  },
}

function processSend(serialization) {
  return {
    label: `process.send (${serialization})`,
    async throughput(count, size) {
      const child = fork(peer, ['ipc-send', count, size, serialization], { serialization })
      const warm = warmupOf(count)
      let received = 0
      let started
      await new Promise((resolve) =>
        child.on('message', (message) => {
          if (message === 'done') resolve()
          else if (++received === warm) started = performance.now()
        }),
      )
      const rate = (received - warm) / ((performance.now() - started) / 1000)
      if (child.exitCode === null) await once(child, 'exit')
      return rate
    },
    async roundTrip(trips, size) {
      const child = fork(peer, ['ipc-echo', trips], { serialization })
      const message = serialization === 'json' ? 'x'.repeat(size) : new Uint8Array(size)
      let reply
      child.on('message', () => reply())
      const times = await timeTrips(
        trips,
        () => child.send(message),
        () => new Promise((resolve) => (reply = resolve)),
      )
      if (child.exitCode === null) await once(child, 'exit')
      return times
    },
  }
}

const messagePort = {
  label: 'worker MessagePort',
  async throughput(count, size) {
    const worker = new Worker(peer, { workerData: { args: ['port-send'], count, size } })
    const warm = warmupOf(count)
    let received = 0
    let started
    const rate = await new Promise((resolve) =>
      worker.on('message', () => {
        if (++received === warm) started = performance.now()
        if (received === count) resolve((count - warm) / ((performance.now() - started) / 1000))
      }),
    )
    await worker.terminate()
    return rate
  },
  async roundTrip(trips, size) {
    const worker = new Worker(peer, { workerData: { args: ['port-echo'] } })
    const message = new Uint8Array(size)
    let reply
    worker.on('message', () => reply())
    const times = await timeTrips(
      trips,
      () => worker.postMessage(message),
      () => new Promise((resolve) => (reply = resolve)),
    )
    await worker.terminate()
    return times
  },
}

const CONTENDERS = {
  shmkit,
  shmkitPlain,
  shmkitBatch,
  sabRing,
  unixSocket,
  processSendJson: processSend('json'),
  processSendAdvanced: processSend('advanced'),
  messagePort,
}

// ------------------------------------------------------------------------------- the run

const results = {
  sizes: SIZES,
  contenders: Object.fromEntries(Object.entries(CONTENDERS).map(([key, c]) => [key, c.label])),
  throughput: {},
  roundTrip: {},
}
const keys = Object.keys(CONTENDERS)
for (const size of SIZES) {
  const count = messagesFor(size, BYTES_PER_RUN, 30, quick ? 50_000 : 500_000)
  const trips = messagesFor(size, BYTES_PER_RUN / 8, 20, quick ? 1000 : 10_000)
  const rates = Object.fromEntries(keys.map((key) => [key, []]))
  const latencies = Object.fromEntries(keys.map((key) => [key, []]))
  for (let round = 0; round < ROUNDS; round++) {
    const order = keys.map((_, i) => keys[(i + round) % keys.length])
    for (const key of order) {
      if (CONTENDERS[key].sizes && !CONTENDERS[key].sizes.includes(size)) continue
      await CONTENDERS[key].throughput(Math.min(count, 10), size) // warm-up
      // The contenders moving millions of small messages a second get 4x the messages, so that a
      // run lasts long enough to measure (the others already run for a second or more).
      const messages = CONTENDERS[key].fast && size <= 1024 ? count * 4 : count
      rates[key].push(await CONTENDERS[key].throughput(messages, size))
      const times = await CONTENDERS[key].roundTrip(trips, size)
      latencies[key].push({ p50: percentile(times, 0.5), p99: percentile(times, 0.99) })
    }
  }
  const measured = keys.filter((key) => rates[key].length > 0)
  results.throughput[size] = Object.fromEntries(measured.map((key) => [key, summary(rates[key])]))
  results.roundTrip[size] = Object.fromEntries(
    measured.map((key) => [
      key,
      { p50: summary(latencies[key].map((l) => l.p50)), p99: summary(latencies[key].map((l) => l.p99)) },
    ]),
  )
  process.stderr.write(`  ${size} B done\n`)
}

const sizeLabel = (size) =>
  size >= 1 << 20 ? `${size / (1 << 20)} MiB` : size >= 1024 ? `${size / 1024} KiB` : `${size} B`
const mbps = (rate, size) => `${((rate * size) / 1e6).toFixed(size >= 1 << 16 ? 0 : 1)} MB/s`
console.log(
  `\nMessages (${os.cpus().length} cores, ${os.cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}; medians of ${ROUNDS} round(s))\n`,
)
const rows = [['size', 'contender', 'messages/s', 'throughput', 'round trip p50 (p99)', 'shmkit vs this']]
for (const size of SIZES) {
  const mine = results.throughput[size].shmkit.median
  for (const key of keys) {
    if (!results.throughput[size][key]) continue
    const rate = results.throughput[size][key].median
    const rtt = results.roundTrip[size][key]
    rows.push([
      key === 'shmkit' ? sizeLabel(size) : '',
      CONTENDERS[key].label,
      formatRate(rate),
      mbps(rate, size),
      `${rtt.p50.median.toFixed(1)} µs (${rtt.p99.median.toFixed(0)})`,
      key === 'shmkit' ? '' : `${(mine / rate).toFixed(2)}x`,
    ])
  }
}
const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)))
for (const row of rows)
  console.log(
    row
      .map((cell, c) => cell.padEnd(widths[c]))
      .join('  ')
      .trimEnd(),
  )
writeResults(jsonPath, results)
