// A contending worker thread for the SharedArrayBuffer mutex baseline (same loop as shmkit's).
import { parentPort, workerData } from 'node:worker_threads'

import { SabMutex } from '../sab-mutex.mjs'

const words = new Int32Array(workerData.buffer)
const counter = new Float64Array(workerData.buffer, 16, 1)
const mutex = new SabMutex(words, 2)
parentPort.postMessage('ready')
while (Atomics.load(words, 0) === 0);
let mine = 0
while (Atomics.load(words, 1) === 0) {
  for (let i = 0; i < 64; i++) {
    mutex.lock()
    counter[0] += 1
    mutex.unlock()
  }
  mine += 64
}
parentPort.postMessage({ mine })
