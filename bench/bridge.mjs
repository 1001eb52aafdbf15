// Bridge benchmark: messages per second from a producer to a consumer through NATS JetStream,
// in one run, against a real nats-server (skipped, saying so, where it is not installed):
//   - shmkit: the producer sends into a local channel, `shmkit bridge --export` (a process)
//     publishes to JetStream, `shmkit bridge --import` (another process) fills a second local
//     channel, the consumer receives from it: the whole path a two-host pipeline takes;
//   - plain JetStream: the producer publishes each message (pipelined, awaited every 256 as the
//     bridge does) and a durable pull consumer receives and acknowledges it;
//   - plain NATS publish/subscribe (no persistence, no acknowledgement).
// 64-byte messages. Each round runs every contender once, in a rotating order; medians reported.
//
//   node bench/bridge.mjs [--quick] [--json FILE]
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { Channel, SharedMap } from '../index.js'
import { formatRate, summary, writeResults } from './stats.mjs'

const quick = process.argv.includes('--quick')
const jsonIndex = process.argv.indexOf('--json')
const jsonPath = jsonIndex > 0 ? process.argv[jsonIndex + 1] : undefined
const ROUNDS = quick ? 1 : 3
const COUNT = quick ? 2_000 : 50_000
const SIZE = 64
const cli = fileURLToPath(new URL('../bin/shmkit.js', import.meta.url))
const require = createRequire(import.meta.url)

function which(command) {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/usr/local/sbin'])) {
    const file = path.join(dir, command)
    if (fs.existsSync(file)) return file
  }
  return undefined
}

const writeJson = (results) => writeResults(jsonPath, results)

const server = which('nats-server')
if (!server) {
  console.log('\nBridge: skipped (nats-server is not installed)')
  writeJson({ skipped: 'nats-server is not installed' })
  process.exit(0)
}

const port = await new Promise((resolve) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => {
    const { port } = s.address()
    s.close(() => resolve(port))
  })
})
const store = fs.mkdtempSync(path.join(os.tmpdir(), 'shmkit-bench-nats-'))
const broker = spawn(server, ['-js', '-sd', store, '-a', '127.0.0.1', '-p', String(port)], {
  stdio: ['ignore', 'pipe', 'pipe'],
})
await new Promise((resolve, reject) => {
  let log = ''
  const look = (chunk) => (log += chunk).includes('Server is ready') && resolve()
  broker.stdout.on('data', look)
  broker.stderr.on('data', look)
  broker.once('exit', () => reject(new Error(`nats-server exited: ${log}`)))
})
const url = `nats://127.0.0.1:${port}`
const { connect } = require('@nats-io/transport-node')
const { jetstream, jetstreamManager } = require('@nats-io/jetstream')
const nc = await connect({ servers: url })
const jsm = await jetstreamManager(nc)
const js = jetstream(nc)
await jsm.streams.add({ name: 'BENCH', subjects: ['bench.>'], storage: 'file' })
let unique = 0
const payload = new Uint8Array(SIZE)

/** Starts `shmkit bridge` with `args`; resolves once its route runs. */
async function startBridge(args) {
  const child = spawn(process.execPath, [cli, 'bridge', '--nats', url, '--stream', 'BENCH', '--json', ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  let out = ''
  await new Promise((resolve, reject) => {
    child.stdout.on('data', (chunk) => (out += chunk).includes('"route-') && resolve())
    child.once('exit', (code) => reject(new Error(`shmkit bridge exited with ${code}: ${out}`)))
  })
  return child
}

const contenders = {
  shmkit: {
    label: 'shmkit channel -> bridge -> JetStream -> bridge -> channel',
    async run(count) {
      const id = `${process.pid}-${++unique}`
      const [from, to] = [`bench-bridge-out-${id}`, `bench-bridge-in-${id}`]
      const subject = `bench.bridge.${id}`
      const out = Channel.create(from, { capacity: 1 << 20, codec: 'bytes' })
      const into = Channel.create(to, { capacity: 1 << 20, codec: 'bytes' })
      const bridges = await Promise.all([
        startBridge(['--export', `${from}=${subject}`]),
        startBridge(['--import', `${to}=${subject}`]),
      ])
      try {
        const started = performance.now()
        const sending = (async () => {
          for (let i = 0; i < count; i++) await out.sendAsync(payload)
        })()
        for (let i = 0; i < count; i++) await into.recvAsync({ timeout: 60_000 })
        await sending
        return count / ((performance.now() - started) / 1000)
      } finally {
        for (const child of bridges) child.kill('SIGTERM')
        await Promise.all(bridges.map((child) => new Promise((resolve) => child.once('exit', resolve))))
        for (const ch of [out, into]) ch.close()
        for (const name of [from, to]) Channel.unlink(name)
        for (const name of [`${from}.inflight`, `${to}.bridge`]) {
          try {
            SharedMap.unlink(name)
          } catch {}
        }
      }
    },
  },
  jetstream: {
    label: 'JetStream publish (pipelined) + durable pull consumer with acks',
    async run(count) {
      const subject = `bench.plain.${process.pid}.${++unique}`
      const durable = `plain_${process.pid}_${unique}`
      await jsm.consumers.add('BENCH', { durable_name: durable, filter_subject: subject, ack_policy: 'explicit' })
      const consumer = await js.consumers.get('BENCH', durable)
      const messages = await consumer.consume({ max_messages: 256 })
      const started = performance.now()
      const receiving = (async () => {
        let n = 0
        for await (const m of messages) {
          m.ack()
          if (++n === count) break
        }
      })()
      let inFlight = []
      for (let i = 0; i < count; i++) {
        inFlight.push(js.publish(subject, payload))
        if (inFlight.length === 256) {
          await Promise.all(inFlight)
          inFlight = []
        }
      }
      await Promise.all(inFlight)
      await receiving
      const rate = count / ((performance.now() - started) / 1000)
      await jsm.consumers.delete('BENCH', durable)
      return rate
    },
  },
  core: {
    label: 'NATS publish/subscribe (no persistence)',
    async run(count) {
      const subject = `core.${process.pid}.${++unique}`
      const sub = nc.subscribe(subject)
      await nc.flush()
      const started = performance.now()
      const receiving = (async () => {
        let n = 0
        for await (const _ of sub) if (++n === count) break
      })()
      for (let i = 0; i < count; i++) {
        nc.publish(subject, payload)
        if (i % 1024 === 1023) await nc.flush()
      }
      await receiving
      return count / ((performance.now() - started) / 1000)
    },
  },
}

const samples = {}
for (let round = -1; round < ROUNDS; round++) {
  const keys = Object.keys(contenders)
  const turn = Math.max(0, round) % keys.length
  for (const key of [...keys.slice(turn), ...keys.slice(0, turn)]) {
    const value = await contenders[key].run(round < 0 ? Math.ceil(COUNT / 10) : COUNT)
    if (round >= 0) (samples[key] ??= []).push(value)
  }
}
await nc.close()
broker.kill('SIGTERM')
await new Promise((resolve) => broker.once('exit', resolve))
fs.rmSync(store, { recursive: true, force: true })

const results = { size: SIZE, count: COUNT, contenders: {} }
for (const [key, contender] of Object.entries(contenders)) {
  results.contenders[key] = { label: contender.label, ...summary(samples[key]) }
}
console.log(
  `\nBridge: ${COUNT.toLocaleString('en')} messages of ${SIZE} B, producer to consumer; median of ${ROUNDS} round(s)\n`,
)
for (const r of Object.values(results.contenders)) console.log(`${r.label.padEnd(64)} ${formatRate(r.median)}`)
writeJson(results)
