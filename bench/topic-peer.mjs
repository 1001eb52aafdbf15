// A subscriber process for bench/topics.mjs: receives `count` messages the way its contender
// delivers them, then reports. Modes:
//   shm NAME COUNT        a Topic subscription, recv({ timeout }) in a loop
//   idle NAME             a Topic subscription that never reads (publisher-cost runs)
//   socket PATH COUNT     a Unix socket with length-prefixed frames
//   ipc COUNT             process.send from the parent (cluster-style re-sending)
//   redis SOCKET COUNT    Redis pub/sub (ioredis), channel "bench"
import net from 'node:net'

import { Topic } from '../index.js'

const [mode, ...args] = process.argv.slice(2)
const ready = () => process.send('ready')
const done = () => process.send('done', () => process.exit(0))

if (mode === 'shm') {
  const [name, count] = [args[0], Number(args[1])]
  const topic = Topic.open(name, { codec: 'bytes' })
  const sub = topic.subscribe()
  ready()
  const options = { timeout: 30_000 }
  for (let i = 0; i < count; i++) sub.recv(options)
  sub.close()
  done()
} else if (mode === 'idle') {
  const topic = Topic.open(args[0])
  globalThis.held = topic.subscribe() // referenced: a collected subscription gives its slot back
  ready()
  process.on('message', () => process.exit(0))
} else if (mode === 'socket') {
  const [file, count] = [args[0], Number(args[1])]
  const socket = net.connect(file, ready)
  let received = 0
  let pending = Buffer.alloc(0)
  socket.on('data', (chunk) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk
    let at = 0
    while (pending.length - at >= 4) {
      const length = pending.readUInt32LE(at)
      if (pending.length - at - 4 < length) break
      at += 4 + length
      received++
    }
    pending = pending.subarray(at)
    if (received === count) {
      socket.destroy()
      done()
    }
  })
} else if (mode === 'ipc') {
  const count = Number(args[0])
  let received = 0
  process.on('message', () => {
    if (++received === count) done()
  })
  ready()
} else if (mode === 'redis') {
  const [file, count] = [args[0], Number(args[1])]
  const { default: Redis } = await import('ioredis')
  const redis = new Redis({ path: file })
  let received = 0
  redis.on('messageBuffer', () => {
    if (++received === count) {
      redis.disconnect()
      done()
    }
  })
  await redis.subscribe('bench')
  ready()
} else {
  throw new Error(`topic-peer: unknown mode ${mode}`)
}
