import test from 'ava'
import fs from 'node:fs'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { Worker } from 'node:worker_threads'

import { Segment } from '../index.js'
import { runFixture, throwsCoded, uniqueName } from './helpers.mjs'

const shmPath = (name) => `/dev/shm/shmkit.${name}`
const onLinux = process.platform === 'linux' ? test : test.skip

test('create, open, share bytes zero-copy, unlink', (t) => {
  const name = uniqueName(t)
  const created = Segment.create(name, { size: 1000 })
  t.is(created.name, name)
  t.is(created.size, 1000)
  t.true(created.created)
  // A SharedArrayBuffer where the runtime can make one over external memory (Node 22 and later).
  t.true(created.buffer instanceof (Segment.sharedArrayBuffers ? SharedArrayBuffer : ArrayBuffer))
  t.is(created.buffer.byteLength, 1000)

  const opened = Segment.open(name)
  t.false(opened.created)
  t.is(opened.size, 1000)
  new Uint32Array(created.buffer)[10] = 0xdeadbeef
  t.is(new Uint32Array(opened.buffer)[10], 0xdeadbeef, 'a write through one mapping is seen through the other')
  t.is(created.buffer, created.buffer, 'one ArrayBuffer per mapping')

  opened.unlink()
  throwsCoded(t, () => Segment.open(name), Error, 'ENOENT')
  new Uint8Array(created.buffer)[0] = 5
  t.is(new Uint8Array(opened.buffer)[0], 5, 'existing mappings survive unlink')
  throwsCoded(t, () => Segment.unlink(name), Error, 'ENOENT')
  created.close()
  opened.close()
})

test('create refuses an existing name with EEXIST', (t) => {
  const name = uniqueName(t)
  const first = Segment.create(name, { size: 16 })
  const error = throwsCoded(t, () => Segment.create(name, { size: 16 }), Error, 'EEXIST')
  t.regex(error.message, /already exists/)
  first.close()
})

test('close detaches an ArrayBuffer (old views read as empty) and leaves a SharedArrayBuffer mapped under its views; methods throw ERR_SHM_CLOSED', (t) => {
  const name = uniqueName(t)
  const segment = Segment.create(name, { size: 4096 })
  const bytes = new Uint8Array(segment.buffer)
  const words = new Int32Array(segment.buffer, 64, 4)
  bytes[0] = 1
  segment.close()
  t.true(segment.closed)
  if (Segment.sharedArrayBuffers) {
    // Cannot be detached: the mapping stays until the last view is collected, never unmapped under one.
    t.is(bytes.length, 4096)
    t.is(words.length, 4)
    t.is(bytes[0], 1)
    t.is(segment.buffer.byteLength, 4096)
  } else {
    t.is(bytes.length, 0)
    t.is(words.length, 0)
    t.is(bytes[0], undefined)
    t.is(segment.buffer.byteLength, 0)
  }
  t.notThrows(() => segment.close(), 'close is idempotent')
  throwsCoded(t, () => segment.mutex, Error, 'ERR_SHM_CLOSED')
  throwsCoded(t, () => segment.wait(0, 0, 0), Error, 'ERR_SHM_CLOSED')
  throwsCoded(t, () => segment.notify(0), Error, 'ERR_SHM_CLOSED')
  const reopened = Segment.open(name)
  t.is(new Uint8Array(reopened.buffer)[0], 1, 'close never unlinks')
  reopened.close()
})

test('closing a segment releases the locks held through it', (t) => {
  const name = uniqueName(t)
  const segment = Segment.create(name, { size: 64 })
  const guard = segment.mutex.lock()
  segment.close()
  t.false(guard.locked)
  const other = Segment.open(name)
  const again = other.mutex.tryLock()
  t.truthy(again)
  again.unlock()
  other.close()
})

test('openOrCreate creates once, then opens; a different size is refused', (t) => {
  const name = uniqueName(t)
  const first = Segment.openOrCreate(name, { size: 128 })
  const second = Segment.openOrCreate(name, { size: 128 })
  t.true(first.created)
  t.false(second.created)
  throwsCoded(t, () => Segment.openOrCreate(name, { size: 256 }), Error, 'ERR_SHM_SIZE_MISMATCH')
  first.close()
  second.close()
})

test('concurrent openOrCreate from 4 processes: exactly one creates, all share it', async (t) => {
  const name = uniqueName(t)
  const results = await Promise.all([1, 2, 3, 4].map(() => runFixture('open-or-create.mjs', [name, 64])))
  for (const result of results) t.is(result.code, 0, result.stderr)
  const reports = results.map((r) => r.messages[0])
  t.is(reports.filter((r) => r.created).length, 1)
  t.true(reports.every((r) => r.size === 64))
  const segment = Segment.open(name)
  t.is(new Uint8Array(segment.buffer)[0], 4, 'every process incremented the same byte')
  segment.close()
})

onLinux('the mode option sets the permission bits exactly (default 0600)', (t) => {
  const plain = uniqueName(t)
  const shared = uniqueName(t)
  Segment.create(plain, { size: 8 }).close()
  Segment.create(shared, { size: 8, mode: 0o644 }).close()
  t.is(fs.statSync(shmPath(plain)).mode & 0o777, 0o600)
  t.is(fs.statSync(shmPath(shared)).mode & 0o777, 0o644)
})

onLinux('a segment larger than all of /dev/shm fails with ENOSPC at create, leaving nothing behind', (t) => {
  const { blocks, bsize } = fs.statfsSync('/dev/shm')
  const size = Math.min(blocks * bsize + 2 ** 30, 2 ** 44)
  const name = uniqueName(t)
  const error = throwsCoded(t, () => Segment.create(name, { size }), Error, 'ENOSPC')
  t.regex(error.message, /shm-size/)
  t.false(fs.existsSync(shmPath(name)))
})

onLinux('a damaged, foreign, truncated or other-version header is refused with a code', (t) => {
  const name = uniqueName(t)
  Segment.create(name, { size: 4096 }).close()
  const pristine = fs.readFileSync(shmPath(name))
  const damage = (offset, bytes) => {
    const copy = Buffer.from(pristine)
    Buffer.from(bytes).copy(copy, offset)
    fs.writeFileSync(shmPath(name), copy)
  }
  damage(0, [1, 2, 3, 4, 5, 6, 7, 8])
  throwsCoded(t, () => Segment.open(name), Error, 'ERR_SHM_NOT_SHMKIT')
  damage(8, [99, 0, 0, 0])
  throwsCoded(t, () => Segment.open(name), Error, 'ERR_SHM_VERSION')
  damage(16, [0, 0, 0, 0, 0, 0, 1, 0])
  throwsCoded(t, () => Segment.open(name), Error, 'ERR_SHM_CORRUPT')
  damage(40, [1, 2, 3, 4])
  throwsCoded(t, () => Segment.open(name), Error, 'ERR_SHM_CORRUPT', 'checksum catches a changed field')
  fs.writeFileSync(shmPath(name), pristine.subarray(0, 4096 + 100))
  throwsCoded(t, () => Segment.open(name), Error, 'ERR_SHM_CORRUPT', 'truncated')
  fs.writeFileSync(shmPath(name), Buffer.alloc(100, 1))
  throwsCoded(t, () => Segment.open(name), Error, 'ERR_SHM_NOT_SHMKIT', 'too small')
  fs.writeFileSync(shmPath(name), Buffer.alloc(8192))
  throwsCoded(t, () => Segment.open(name, { readyTimeout: 50 }), Error, 'ERR_SHM_NOT_READY')
  fs.writeFileSync(shmPath(name), pristine)
  t.notThrows(() => Segment.open(name).close(), 'the pristine bytes open again')
})

test('garbage collection never unlinks and never unmaps a live view', async (t) => {
  const name = uniqueName(t)
  const result = await runFixture('gc-keeps.mjs', [name], { execArgv: ['--expose-gc'] })
  t.is(result.code, 0, result.stderr)
  const segment = Segment.open(name)
  t.is(new Uint8Array(segment.buffer)[0], 42)
  segment.close()
})

const withSharedArrayBuffers = Segment.sharedArrayBuffers && process.platform === 'linux' ? test : test.skip

withSharedArrayBuffers(
  'a SharedArrayBuffer: Atomics.wait works on it, a worker shares it, and it is unmapped once every thread collected it',
  async (t) => {
    const name = uniqueName(t)
    t.teardown(() => Segment.unlink(name))
    const mapped = () => fs.readFileSync('/proc/self/maps', 'utf8').includes(`/dev/shm/shmkit.${name}`)
    // Everything that refers to the buffer lives in this function, and is gone once it returns.
    async function shareWithAWorker() {
      const segment = Segment.create(name, { size: 4096 })
      const words = new Int32Array(segment.buffer)
      t.is(Atomics.wait(words, 0, 1, 0), 'not-equal', 'Atomics.wait accepts it (it throws on an ArrayBuffer)')
      const worker = new Worker(
        `const { parentPort, workerData } = require('node:worker_threads')
       const words = new Int32Array(workerData)
       parentPort.postMessage('ready')
       Atomics.wait(words, 0, 0)              // woken by the main thread's notify
       Atomics.store(words, 1, 42)             // seen by the main thread: the same memory, not a copy
       parentPort.once('message', () => { words[2] = 7; parentPort.postMessage(words[2] + words[1]) })`,
        { eval: true, workerData: segment.buffer },
      )
      await new Promise((resolve) => worker.once('message', resolve))
      Atomics.store(words, 0, 1)
      Atomics.notify(words, 0)
      while (Atomics.load(words, 1) !== 42) await new Promise((resolve) => setImmediate(resolve))
      // Closed here while the worker still uses it: its memory stays mapped for the worker.
      segment.close()
      const answer = new Promise((resolve) => worker.once('message', resolve))
      worker.postMessage('go')
      t.is(await answer, 49)
      await worker.terminate()
      t.true(mapped(), 'still mapped while this thread has views')
    }
    await shareWithAWorker()
    // Bun has its own collector call; V8 runtimes expose gc() on request.
    const gc = globalThis.Bun
      ? () => globalThis.Bun.gc(true)
      : (setFlagsFromString('--expose-gc'), runInNewContext('gc'))
    const deadline = Date.now() + 10_000
    while (mapped() && Date.now() < deadline) {
      gc()
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    t.false(mapped(), 'unmapped once no thread holds a view')
  },
)
