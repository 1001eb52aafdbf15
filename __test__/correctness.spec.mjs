// Regression tests for the audited defects of the lock, waiter and channel protocols (each failed
// before its fix), with real processes and worker threads.
import test from 'ava'
import { Worker } from 'node:worker_threads'

import { Channel, Mutex, Segment } from '../index.js'
import { startFixture, throwsCoded, uniqueName } from './helpers.mjs'

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** A peer process that takes the lock at `offset` of `name` (-1: the header mutex) and releases it when told. */
async function lockHolder(name, offset = -1) {
  const holder = startFixture('script.mjs', [
    `const seg = shmkit.Segment.open(args[0]); const offset = Number(args[1])
     const mutex = offset < 0 ? seg.mutex : shmkit.Mutex.at(seg, offset)
     const guard = mutex.lock()
     await send('locked')
     await next((m) => m === 'release')
     guard.unlock()
     await send('released')
     await next((m) => m === 'exit')
     seg.close()`,
    name,
    offset,
  ])
  await holder.nextMessage((m) => m === 'locked')
  return holder
}

async function release(holder) {
  holder.send('release')
  await holder.nextMessage((m) => m === 'released')
}

async function finish(holder) {
  holder.send('exit')
  await holder.done()
}

/**
 * A peer process holding the placed mutex at `offset` of `name`: it releases it when the word at
 * byte `flag` of the data area becomes 1, so the test can release it without yielding to its
 * own event loop.
 */
async function flagReleasedHolder(name, offset, flag) {
  const holder = startFixture('script.mjs', [
    `const seg = shmkit.Segment.open(args[0]); const guard = shmkit.Mutex.at(seg, Number(args[1])).lock()
     await send('locked')
     while (seg.wait(Number(args[2]), 0, 5000) !== 'not-equal') {}
     guard.unlock()
     await next((m) => m === 'exit'); seg.close()`,
    name,
    offset,
    flag,
  ])
  await holder.nextMessage((m) => m === 'locked')
  return holder
}

/** Releases a `flagReleasedHolder`'s lock and spins, without yielding, until the word changes. */
function releaseAndSpin(segment, offset, flag) {
  const words = new Int32Array(segment.buffer)
  const held = Atomics.load(words, offset / 4)
  Atomics.store(words, flag / 4, 1)
  segment.notify(flag)
  const until = performance.now() + 2000
  while (Atomics.load(words, offset / 4) === held && performance.now() < until);
  // Long enough for a waiter thread to act on the release (it took the lock, before the fix).
  for (const start = performance.now(); performance.now() - start < 20;);
}

test('defect 3: a sync lock() while this thread has a lockAsync() pending takes the lock, not a wait for itself', async (t) => {
  const segment = Segment.create(uniqueName(t), { size: 128 })
  t.teardown(() => segment.close())
  const holder = await flagReleasedHolder(segment.name, 0, 64)
  const mutex = Mutex.at(segment, 0)
  const pending = mutex.lockAsync({ timeout: 10_000 })
  await delay(100) // the waiter is asleep on the lock word
  releaseAndSpin(segment, 0, 64)
  const guard = mutex.lock({ timeout: 2000 })
  t.false(guard.ownerDied)
  guard.unlock()
  const later = await pending
  t.true(later.locked, 'the pending acquisition completes once the sync holding ends')
  later.unlock()
  await finish(holder)
})

test('defect 3: a sync recv() while this thread has a recvAsync() pending on a busy receive lock', async (t) => {
  const channel = Channel.create(uniqueName(t), { capacity: 1024, codec: 'json' })
  t.teardown(() => channel.close())
  channel.send(1)
  channel.send(2)
  const segment = Segment.open(channel.name)
  t.teardown(() => segment.close())
  // The receive lock sits at 256; byte 32 is a spare word of the control block.
  const holder = await flagReleasedHolder(channel.name, 256, 32)
  const pending = channel.recvAsync({ timeout: 10_000 })
  await delay(100)
  releaseAndSpin(segment, 256, 32)
  const first = channel.recv({ timeout: 2000 })
  const second = await pending
  t.deepEqual([first, second].sort(), [1, 2])
  await finish(holder)
})

test('defect 4: an abort racing the release, then close(), leaks no lock and throws nothing uncaught', async (t) => {
  const name = uniqueName(t)
  const creator = Segment.create(name, { size: 64 })
  t.teardown(() => creator.close())
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads')
     const { Segment } = require(workerData.index)
     const seg = Segment.open(workerData.name)
     parentPort.on('message', (m) => {
       if (m === 'lock') { globalThis.guard = seg.mutex.lock(); parentPort.postMessage('locked') }
       else if (m === 'release') { globalThis.guard.unlock() }
       else if (m === 'exit') { seg.close(); parentPort.close() }
     })`,
    { eval: true, workerData: { name, index: new URL('../index.js', import.meta.url).pathname } },
  )
  const locked = () => new Promise((resolve) => worker.once('message', resolve))
  for (let round = 0; round < 150; round++) {
    worker.postMessage('lock')
    await locked()
    const mine = Segment.open(name)
    const controller = new AbortController()
    const attempt = mine.mutex.lockAsync({ signal: controller.signal }).then(
      (guard) => guard,
      (error) => error,
    )
    await delay(round % 3) // the waiter asleep, or not yet
    worker.postMessage('release')
    if (round % 2) await delay(0)
    controller.abort()
    mine.close()
    const outcome = await attempt
    if (outcome instanceof Error)
      t.true(['ABORT_ERR', 'ERR_SHM_CLOSED'].includes(outcome.code), `${round}: ${outcome.code}`)
    else t.false(outcome.locked, 'a guard that won the race was released by close()')
    const guard = creator.mutex.lock({ timeout: 2000 }) // nothing leaked: the lock is free
    guard.unlock()
  }
  worker.postMessage('exit')
})

test('defect 5: closing one mapping never releases a lock this thread holds through another', async (t) => {
  const name = uniqueName(t)
  const first = Segment.create(name, { size: 64 })
  const second = Segment.open(name)
  t.teardown(() => second.close())
  const guard = second.mutex.lock()
  const timedOut = first.mutex.lockAsync({ timeout: 50 }).catch((error) => error.code)
  // The waiter times out while this thread is busy: close() runs before the promise settles.
  for (const start = performance.now(); performance.now() - start < 200;);
  first.close()
  t.true(['ETIMEDOUT', 'ERR_SHM_CLOSED'].includes(await timedOut))
  t.true(guard.locked)
  const peer = startFixture('script.mjs', [
    `const seg = shmkit.Segment.open(args[0])
     try { seg.mutex.lock({ timeout: 200 }); await send('got it') } catch (e) { await send(e.code) }
     seg.close()`,
    name,
  ])
  t.is(await peer.nextMessage(), 'ETIMEDOUT', 'still held: the other process cannot take it')
  await peer.done()
  guard.unlock()
})

test('defect 6: concurrent async channel operations of one thread never throw EDEADLK', async (t) => {
  const channel = Channel.create(uniqueName(t), { capacity: 4096, codec: 'json' })
  t.teardown(() => channel.close())
  await Promise.all([channel.sendAsync('a'), channel.sendAsync('b'), channel.sendAsync('c')])
  const received = await Promise.all([channel.recvAsync(), channel.recvAsync()])
  t.deepEqual(received, ['a', 'b'])
  const async = channel.sendAsync('d')
  channel.send('e') // a sync send right behind an async one
  await async
  t.deepEqual([channel.recv(), channel.recv(), channel.recv()].sort(), ['c', 'd', 'e'])
  // With the send lock busy in another process, the async sends queue and all complete.
  const holder = await lockHolder(channel.name, 192)
  const queued = Promise.all([channel.sendAsync('f'), channel.sendAsync('g')])
  await delay(50)
  await release(holder)
  await queued
  t.deepEqual([channel.recv(), channel.recv()].sort(), ['f', 'g'])
  await finish(holder)
})

test('defect 7: a send in progress when end() is called is delivered, never stranded', async (t) => {
  const channel = Channel.create(uniqueName(t), { capacity: 1024, codec: 'string' })
  t.teardown(() => channel.close())
  const flag = new Int32Array(new SharedArrayBuffer(4))
  // The producer is inside its send (holding the send lock) for 300 ms when end() comes.
  const producer = new Worker(
    `const { workerData } = require('node:worker_threads')
     const { Channel } = require(workerData.index)
     const channel = Channel.open(workerData.name)
     channel.sendWith(4, (target) => {
       Atomics.store(workerData.flag, 0, 1)
       Atomics.wait(workerData.flag, 0, 1, 300)
       target.set([108, 97, 116, 101]) // "late"
     })
     channel.close()`,
    { eval: true, workerData: { name: channel.name, flag, index: new URL('../index.js', import.meta.url).pathname } },
  )
  while (Atomics.load(flag, 0) === 0) await delay(1)
  channel.end() // waits for the send in progress
  const received = []
  for await (const message of channel) received.push(message)
  t.deepEqual(received, ['late'])
  throwsCoded(t, () => channel.send('after'), Error, 'ERR_SHM_CHANNEL_ENDED')
  await new Promise((resolve) => producer.on('exit', resolve))
})

test('defect 8: huge timeouts mean no deadline: no crash, no promise that never settles', async (t) => {
  const segment = Segment.create(uniqueName(t), { size: 64 })
  t.teardown(() => segment.close())
  t.is(segment.wait(0, 1, 1e300), 'not-equal')
  const guard = segment.mutex.lock({ timeout: 1e300 })
  guard.unlock()
  const pending = segment.waitAsync(0, 0, 1e22)
  await delay(50)
  segment.notify(0)
  t.is(await Promise.race([pending, delay(3000).then(() => 'never settled')]), 'ok')
  const channel = Channel.create(uniqueName(t, 'ch'), { capacity: 64 })
  t.teardown(() => channel.close())
  const message = channel.recvAsync({ timeout: 1e22 })
  channel.send('x')
  t.is(new TextDecoder().decode(await message), 'x')
})

test('defect 12: a worker thread that exits with lockAsync pending leaves no false ownerDied', async (t) => {
  const segment = Segment.create(uniqueName(t), { size: 64 })
  t.teardown(() => segment.close())
  const guard = segment.mutex.lock()
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads')
     const { Segment } = require(workerData.index)
     const seg = Segment.open(workerData.name)
     seg.mutex.lockAsync().then((g) => parentPort.postMessage('acquired'))
     parentPort.postMessage('pending')`,
    { eval: true, workerData: { name: segment.name, index: new URL('../index.js', import.meta.url).pathname } },
  )
  await new Promise((resolve) => worker.once('message', resolve))
  await delay(50)
  await worker.terminate()
  guard.unlock()
  await delay(120) // long enough for a waiter that outlived its thread to act
  const next = segment.mutex.lock({ timeout: 2000 })
  t.false(next.ownerDied)
  next.unlock()
})

test('defect 14: dead attachers of an ordinary segment are reaped by the next open and close', async (t) => {
  const name = uniqueName(t)
  Segment.create(name, { size: 64 }).close()
  const doomed = startFixture('attach.mjs', [name, 'open'])
  await doomed.nextMessage((m) => m === 'attached')
  doomed.kill('SIGKILL')
  await doomed.done()
  t.is(Segment.inspect(name).attachers.length, 1, 'the SIGKILLed attacher is still recorded')
  Segment.open(name).close()
  t.deepEqual(Segment.inspect(name).attachers, [], 'reaped')
})

test('closing a channel inside a sendWith/recvWith callback takes effect after the side lock is released', (t) => {
  const name = uniqueName(t)
  const channel = Channel.create(name, { capacity: 256 })
  channel.sendWith(3, (target) => {
    channel.close()
    target.set([1, 2, 3])
  })
  t.true(channel.closed)
  const other = Channel.open(name)
  t.teardown(() => other.close())
  t.true(other.trySend(new Uint8Array([4])), 'the send lock was released')
  t.deepEqual([...other.recvWith((view) => view.slice())], [1, 2, 3])
  const third = Channel.open(name)
  third.recvWith(() => third.close())
  t.true(third.closed)
  t.true(other.tryRecv() === undefined && other.trySend('y'), 'the receive lock was released')
  t.is(new TextDecoder().decode(other.tryRecv()), 'y')
})

test('tryLock and trySend/tryRecv never wait and never throw for busy, whoever holds the lock', async (t) => {
  const channel = Channel.create(uniqueName(t), { capacity: 256 })
  t.teardown(() => channel.close())
  channel.send('m')
  const segment = Segment.open(channel.name)
  t.teardown(() => segment.close())
  const sendLock = await lockHolder(channel.name, 192)
  const recvLock = await lockHolder(channel.name, 256)
  const started = performance.now()
  t.false(channel.trySend('x'))
  t.is(channel.tryRecv(), undefined)
  t.is(Mutex.at(segment, 192).tryLock(), null)
  t.true(performance.now() - started < 100)
  await release(sendLock)
  await release(recvLock)
  t.true(channel.trySend('x'))
  t.is(new TextDecoder().decode(channel.tryRecv()), 'm')
  await finish(sendLock)
  await finish(recvLock)
})
