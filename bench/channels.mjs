// Message benchmark: shmkit channels between two processes against the alternatives, in one run:
// a SharedArrayBuffer ring between two worker threads, a Unix domain socket with length-prefixed
// frames, and process.send. Throughput for 64 B and 1 MiB messages, round trip p50/p99 for 64 B.
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
import { formatRate, median } from './stats.mjs'

const quick = process.argv.includes('--quick')
const jsonIndex = process.argv.indexOf('--json')
const jsonPath = jsonIndex > 0 ? process.argv[jsonIndex + 1] : undefined
const ROUNDS = quick ? 1 : 3
const SMALL = quick ? 50_000 : 500_000
const LARGE = quick ? 20 : 200
const TRIPS = quick ? 2_000 : 20_000
const peer = new URL('./channel-peer.mjs', import.meta.url)

const once = (emitter, event) => new Promise((resolve) => emitter.once(event, resolve))
let unique = 0
const channelName = () => `bench-ch-${process.pid}-${++unique}`

async function shmkitThroughput(count, size) {
  const name = channelName()
  const channel = Channel.create(name, { capacity: Math.max(1 << 20, 4 * (size + 8)) })
  try {
    const child = fork(peer, ['shm-send', name, count, size])
    await once(child, 'message')
    const started = performance.now()
    for (let i = 0; i < count; i++) channel.recv()
    const seconds = (performance.now() - started) / 1000
    await once(child, 'exit')
    return count / seconds
  } finally {
    channel.disconnect()
    Channel.unlink(name)
  }
}

async function sabThroughput(count, size) {
  const buffer = createRingBuffer(Math.max(1 << 20, 2 ** Math.ceil(Math.log2(4 * (size + 8)))))
  const ring = new SabRing(buffer)
  const worker = new Worker(peer, { workerData: { args: ['sab-send'], buffer, count, size } })
  await once(worker, 'message')
  const started = performance.now()
  for (let i = 0; i < count; i++) ring.recv()
  const seconds = (performance.now() - started) / 1000
  await worker.terminate()
  return count / seconds
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

/** Calls `onFrame(payloadLength)` per length-prefixed frame of the stream. */
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

function socketThroughput(count, size) {
  return withSocketServer(async (server, socketPath) => {
    const connection = once(server, 'connection')
    fork(peer, ['sock-send', socketPath, count, size])
    const socket = await connection
    return new Promise((resolve) => {
      let received = 0
      let started
      socket.on('data', frameReader((payload) => {
        started ??= performance.now()
        payload.length // a real consumer would use the frame here
        if (++received === count) resolve(count / ((performance.now() - started) / 1000))
      }))
    })
  })
}

async function ipcThroughput(count, size) {
  const child = fork(peer, ['ipc-send', count, size], { serialization: 'json' })
  let received = 0
  let started
  await new Promise((resolve) => child.on('message', (message) => {
    started ??= performance.now()
    if (message === 'done') resolve()
    else received++
  }))
  return received / ((performance.now() - started) / 1000)
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]
}

async function shmkitRoundTrip(trips) {
  const ping = channelName()
  const pong = channelName()
  const out = Channel.create(ping, { capacity: 4096 })
  const back = Channel.create(pong, { capacity: 4096 })
  try {
    const child = fork(peer, ['shm-echo', ping, pong, trips])
    await once(child, 'message')
    const message = new Uint8Array(64)
    const times = new Float64Array(trips)
    for (let i = 0; i < trips; i++) {
      const started = performance.now()
      out.send(message)
      back.recv()
      times[i] = (performance.now() - started) * 1000
    }
    await once(child, 'exit')
    return times.sort()
  } finally {
    for (const [channel, name] of [[out, ping], [back, pong]]) {
      channel.disconnect()
      Channel.unlink(name)
    }
  }
}

async function sabRoundTrip(trips) {
  const ping = createRingBuffer(4096)
  const pong = createRingBuffer(4096)
  const out = new SabRing(ping)
  const back = new SabRing(pong)
  const worker = new Worker(peer, { workerData: { args: ['sab-echo'], ping, pong, count: trips } })
  await once(worker, 'message')
  const message = new Uint8Array(64)
  const times = new Float64Array(trips)
  for (let i = 0; i < trips; i++) {
    const started = performance.now()
    out.send(message)
    back.recv()
    times[i] = (performance.now() - started) * 1000
  }
  await worker.terminate()
  return times.sort()
}

function socketRoundTrip(trips) {
  return withSocketServer(async (server, socketPath) => {
    const connection = once(server, 'connection')
    const child = fork(peer, ['sock-echo', socketPath])
    const socket = await connection
    const frame = Buffer.alloc(68)
    frame.writeUInt32LE(64, 0)
    const times = new Float64Array(trips)
    let i = 0
    let started = performance.now()
    await new Promise((resolve) => {
      socket.on('data', frameReader(() => {
        times[i++] = (performance.now() - started) * 1000
        if (i === trips) return resolve()
        started = performance.now()
        socket.write(frame)
      }))
      socket.write(frame)
    })
    socket.end()
    await once(child, 'exit')
    return times.sort()
  })
}

async function rounds(fn) {
  const values = []
  for (let round = 0; round < ROUNDS; round++) values.push(await fn())
  return median(values)
}

const results = { small: {}, large: {}, roundTrip: {} }
// Alternate the contenders inside each round so drift hits them alike.
results.small.shmkit = await rounds(() => shmkitThroughput(SMALL, 64))
results.small.sabRing = await rounds(() => sabThroughput(SMALL, 64))
results.small.unixSocket = await rounds(() => socketThroughput(SMALL, 64))
results.small.processSend = await rounds(() => ipcThroughput(SMALL / 5, 64))
results.large.shmkit = await rounds(() => shmkitThroughput(LARGE, 1 << 20))
results.large.unixSocket = await rounds(() => socketThroughput(LARGE, 1 << 20))
for (const [key, fn] of [['shmkit', shmkitRoundTrip], ['sabRing', sabRoundTrip], ['unixSocket', socketRoundTrip]]) {
  const times = await fn(TRIPS)
  results.roundTrip[key] = { p50: percentile(times, 0.5), p99: percentile(times, 0.99) }
}

const s = results.small
const l = results.large
const r = results.roundTrip
const gbps = (messagesPerSecond) => `${((messagesPerSecond * (1 << 20)) / 1e9).toFixed(2)} GB/s`
const rows = [
  ['64 B messages/s', 'shmkit channel (2 processes)', formatRate(s.shmkit), `${(s.shmkit / s.sabRing).toFixed(2)}x SAB ring, ${(s.shmkit / s.unixSocket).toFixed(1)}x Unix socket`],
  ['', 'SAB ring (2 threads)', formatRate(s.sabRing), ''],
  ['', 'Unix socket, framed', formatRate(s.unixSocket), ''],
  ['', 'process.send', formatRate(s.processSend), `shmkit is ${(s.shmkit / s.processSend).toFixed(0)}x`],
  ['1 MiB messages', 'shmkit channel', gbps(l.shmkit), `${(l.shmkit / l.unixSocket).toFixed(2)}x Unix socket`],
  ['', 'Unix socket, framed', gbps(l.unixSocket), ''],
  ['64 B round trip p50 (p99)', 'shmkit channel', `${r.shmkit.p50.toFixed(1)} µs (${r.shmkit.p99.toFixed(1)})`, ''],
  ['', 'SAB ring (2 threads)', `${r.sabRing.p50.toFixed(1)} µs (${r.sabRing.p99.toFixed(1)})`, ''],
  ['', 'Unix socket', `${r.unixSocket.p50.toFixed(1)} µs (${r.unixSocket.p99.toFixed(1)})`, `shmkit is ${(r.unixSocket.p50 / r.shmkit.p50).toFixed(0)}x faster`],
]
const widths = [0, 1, 2, 3].map((c) => Math.max(...rows.map((row) => row[c].length)))
console.log(`\nChannels (${os.cpus().length} cores, ${os.cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}; medians of ${ROUNDS} rounds)\n`)
for (const row of rows) console.log(row.map((cell, c) => cell.padEnd(widths[c])).join('  '))
if (jsonPath) fs.writeFileSync(jsonPath, JSON.stringify({ date: new Date().toISOString(), node: process.version, cpus: os.cpus().length, results }, null, 2))
