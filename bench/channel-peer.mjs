// The far side of each message benchmark, run as a child process (or, for the thread-only
// baselines, a worker thread). `send` roles send COUNT messages of SIZE bytes; `echo` roles send
// every message they receive straight back, COUNT times.
//   shm-send NAME COUNT SIZE | shm-echo PING PONG COUNT        shmkit channels
//   sock-send PATH COUNT SIZE | sock-echo PATH                  Unix socket, length-prefixed frames
//   ipc-send COUNT SIZE | ipc-echo COUNT                        process.send (json or advanced)
//   sab-send / sab-echo, port-send / port-echo                  worker threads (workerData)
import net from 'node:net'
import { isMainThread, parentPort, workerData } from 'node:worker_threads'

import { Channel } from '../index.js'
import { SabRing } from './sab-ring.mjs'

const args = isMainThread ? process.argv.slice(2) : workerData.args
const [role] = args
const report = (message) => (isMainThread ? process.send(message) : parentPort.postMessage(message))

/** The payload each contender sends: bytes, except for JSON process.send (a string). */
function payload(size, asString) {
  return asString ? 'x'.repeat(size) : new Uint8Array(size).fill(7)
}

switch (role) {
  case 'shm-send': {
    // mode: 'timeout' ({ timeout } on every call, as users write it), 'plain', 'batch' (sendMany x64)
    const [, name, count, size, mode] = args
    const channel = Channel.open(name)
    const message = payload(Number(size))
    const options = { timeout: 5000 }
    report('ready')
    if (mode === 'batch') {
      const batch = Array.from({ length: 64 }, () => message)
      for (let sent = 0; sent < Number(count); sent += 64)
        channel.sendMany(batch.slice(0, Math.min(64, Number(count) - sent)), options)
    } else if (mode === 'plain') for (let i = 0; i < Number(count); i++) channel.send(message)
    else for (let i = 0; i < Number(count); i++) channel.send(message, options)
    channel.close()
    break
  }
  case 'shm-echo': {
    const [, ping, pong, count, mode] = args
    const inbox = Channel.open(ping)
    const outbox = Channel.open(pong)
    const options = mode === 'plain' ? undefined : { timeout: 5000 }
    report('ready')
    for (let i = 0; i < Number(count); i++) outbox.send(inbox.recv(options), options)
    inbox.close()
    outbox.close()
    break
  }
  case 'sab-send': {
    const ring = new SabRing(workerData.buffer)
    const message = payload(workerData.size)
    report('ready')
    for (let i = 0; i < workerData.count; i++) ring.send(message)
    break
  }
  case 'sab-echo': {
    const inbox = new SabRing(workerData.ping)
    const outbox = new SabRing(workerData.pong)
    report('ready')
    for (let i = 0; i < workerData.count; i++) outbox.send(inbox.recv())
    break
  }
  case 'port-send': {
    const message = payload(workerData.size)
    for (let i = 0; i < workerData.count; i++) parentPort.postMessage(message)
    break
  }
  case 'port-echo':
    parentPort.on('message', (message) => parentPort.postMessage(message))
    break
  case 'sock-send': {
    const [, path, count, size] = args
    const socket = net.connect(path, async () => {
      const frame = Buffer.alloc(4 + Number(size), 7)
      frame.writeUInt32LE(Number(size), 0)
      for (let i = 0; i < Number(count); i++) {
        if (!socket.write(frame)) await new Promise((resolve) => socket.once('drain', resolve))
      }
      socket.end()
    })
    break
  }
  case 'sock-echo': {
    const [, path] = args
    const socket = net.connect(path)
    socket.on('data', (chunk) => socket.write(chunk)) // bytes go back as they came: frames stay whole
    socket.on('end', () => socket.end())
    break
  }
  case 'ipc-send': {
    const [, count, size, mode] = args
    const message = payload(Number(size), mode === 'json')
    let sent = 0
    const pump = () => {
      while (sent < Number(count)) {
        sent++
        if (!process.send(message)) return setImmediate(pump)
      }
      process.send('done', () => process.disconnect())
    }
    pump()
    break
  }
  case 'ipc-echo': {
    const [, count] = args
    let left = Number(count)
    process.on('message', (message) => {
      const last = --left === 0
      // Disconnect only once the last reply is written, or it may be dropped.
      process.send(message, () => last && process.disconnect())
    })
    break
  }
  default:
    throw new Error(`unknown role ${role}`)
}
