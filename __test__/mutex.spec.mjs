import test from 'ava'
import { Worker } from 'node:worker_threads'

import { Mutex, Segment } from '../index.js'
import { runFixture, startFixture, throwsCoded, uniqueName } from './helpers.mjs'

const ROUNDS = 20_000

for (const processes of [2, 4]) {
  test(`${processes} processes incrementing under the header mutex end exact`, async (t) => {
    const name = uniqueName(t)
    const segment = Segment.create(name, { size: 4096 })
    t.teardown(() => segment.close())
    const results = await Promise.all(
      Array.from({ length: processes }, () => runFixture('increment.mjs', [name, ROUNDS, 0, 'header'])),
    )
    for (const result of results) t.is(result.code, 0, result.stderr)
    t.is(new Float64Array(segment.buffer, 0, 1)[0], processes * ROUNDS)
  })
}

test('a mutex placed in the data area excludes processes too', async (t) => {
  const name = uniqueName(t)
  const segment = Segment.create(name, { size: 4096 })
  t.teardown(() => segment.close())
  const results = await Promise.all([1, 2, 3].map(() => runFixture('increment.mjs', [name, ROUNDS, 8, 128])))
  for (const result of results) t.is(result.code, 0, result.stderr)
  t.is(new Float64Array(segment.buffer, 8, 1)[0], 3 * ROUNDS)
  t.is(segment.mutex.tryLock()?.unlock(), undefined, 'the header mutex was never involved')
})

test('worker threads of one process are excluded from each other', async (t) => {
  const name = uniqueName(t)
  const segment = Segment.create(name, { size: 4096 })
  t.teardown(() => segment.close())
  const script = new URL('./fixtures/increment-worker.mjs', import.meta.url)
  const exits = Array.from({ length: 4 }, () => {
    const worker = new Worker(script, { workerData: { name, rounds: ROUNDS } })
    return new Promise((resolve, reject) => {
      worker.on('error', reject)
      worker.on('exit', resolve)
    })
  })
  // The main thread contends too.
  for (let i = 0; i < ROUNDS; i++) {
    const guard = segment.mutex.lock()
    const counter = new Float64Array(segment.buffer, 0, 1)
    counter[0] = counter[0] + 1
    guard.unlock()
  }
  t.deepEqual(await Promise.all(exits), [0, 0, 0, 0])
  t.is(new Float64Array(segment.buffer, 0, 1)[0], 5 * ROUNDS)
})

test('tryLock returns null while another process holds the lock, and a guard after', async (t) => {
  const name = uniqueName(t)
  const segment = Segment.create(name, { size: 64 })
  t.teardown(() => segment.close())
  const holder = startFixture('hold-lock.mjs', [name, 'hold'])
  await holder.nextMessage((m) => m === 'locked')
  t.is(segment.mutex.tryLock(), null)
  throwsCoded(t, () => segment.mutex.lock({ timeout: 100 }), Error, 'ETIMEDOUT')
  holder.kill('SIGKILL')
  await holder.done()
  const guard = segment.mutex.lock({ timeout: 5000 })
  t.true(guard.ownerDied, 'the killed holder is reported')
  guard.unlock()
  const next = segment.mutex.lock()
  t.false(next.ownerDied, 'only the first holder after the death is told')
  next.unlock()
})

test('the same thread through a second mapping is still the owner: EDEADLK, not a hang', (t) => {
  const segment = Segment.create(uniqueName(t), { size: 64 })
  t.teardown(() => segment.close())
  const mutex = Mutex.at(segment, 0)
  const other = Segment.open(segment.name)
  t.teardown(() => other.close())
  const guard = mutex.lock()
  throwsCoded(t, () => Mutex.at(other, 0).lock({ timeout: 50 }), Error, 'EDEADLK')
  guard.unlock()
})

test('misuse: recursive lock and double unlock are coded errors', (t) => {
  const segment = Segment.create(uniqueName(t), { size: 64 })
  t.teardown(() => segment.close())
  const guard = segment.mutex.lock()
  throwsCoded(t, () => segment.mutex.lock(), Error, 'EDEADLK')
  t.is(segment.mutex.tryLock(), null, 'tryLock never throws for busy, even for its own holder')
  t.true(guard.locked)
  guard.unlock()
  t.false(guard.locked)
  throwsCoded(t, () => guard.unlock(), Error, 'ERR_SHM_NOT_LOCKED')
})

test('using-style disposal unlocks', (t) => {
  const segment = Segment.create(uniqueName(t), { size: 64 })
  t.teardown(() => segment.close())
  const guard = segment.mutex.lock()
  guard[Symbol.dispose]()
  t.false(guard.locked)
  guard[Symbol.dispose]()
  t.truthy(segment.mutex.tryLock())
})

test('Mutex.byteLength and alignment describe the placed layout', (t) => {
  t.is(Mutex.byteLength, 64)
  t.is(Mutex.alignment, 8)
})
