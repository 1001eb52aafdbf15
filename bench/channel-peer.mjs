// The far side of each channel benchmark, run as a child process or a worker thread:
//   shm-send NAME COUNT SIZE      send COUNT messages of SIZE bytes on a shmkit channel
//   shm-echo PING PONG COUNT      receive on PING, send back on PONG, COUNT times
//   sock-send PATH COUNT SIZE     write COUNT length-prefixed frames on a Unix socket
//   sock-echo PATH COUNT          echo COUNT frames back
//   ipc-send COUNT SIZE           process.send COUNT strings of SIZE characters
import net from 'node:net'
import { isMainThread, parentPort, workerData } from 'node:worker_threads'

import { Channel } from '../index.js'
import { SabRing } from './sab-ring.mjs'

const args = isMainThread ? process.argv.slice(2) : workerData.args
const [role] = args
const report = (message) => (isMainThread ? process.send(message) : parentPort.postMessage(message))

if (role === 'shm-send') {
  const [, name, count, size] = args
  const channel = Channel.open(name)
  const message = new Uint8Array(Number(size)).fill(7)
  report('ready')
  for (let i = 0; i < Number(count); i++) channel.send(message)
  channel.disconnect()
} else if (role === 'shm-echo') {
  const [, ping, pong, count] = args
  const inbox = Channel.open(ping)
  const outbox = Channel.open(pong)
  report('ready')
  for (let i = 0; i < Number(count); i++) outbox.send(inbox.recv())
  inbox.disconnect()
  outbox.disconnect()
} else if (role === 'sab-send') {
  const ring = new SabRing(workerData.buffer)
  const message = new Uint8Array(workerData.size).fill(7)
  report('ready')
  for (let i = 0; i < workerData.count; i++) ring.send(message)
} else if (role === 'sab-echo') {
  const inbox = new SabRing(workerData.ping)
  const outbox = new SabRing(workerData.pong)
  report('ready')
  for (let i = 0; i < workerData.count; i++) outbox.send(inbox.recv())
} else if (role === 'sock-send') {
  const [, path, count, size] = args
  const socket = net.connect(path, async () => {
    const frame = Buffer.alloc(4 + Number(size), 7)
    frame.writeUInt32LE(Number(size), 0)
    for (let i = 0; i < Number(count); i++) {
      if (!socket.write(frame)) await new Promise((resolve) => socket.once('drain', resolve))
    }
    socket.end()
  })
} else if (role === 'sock-echo') {
  const [, path] = args
  const socket = net.connect(path)
  socket.on('data', (chunk) => socket.write(chunk)) // frames come back as they came
  socket.on('end', () => socket.end())
} else if (role === 'ipc-send') {
  const [, count, size] = args
  const payload = 'x'.repeat(Number(size))
  let sent = 0
  const pump = () => {
    while (sent < Number(count)) {
      sent++
      if (!process.send(payload)) return setImmediate(pump)
    }
    process.send('done')
  }
  pump()
}
