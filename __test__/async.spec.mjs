// Asynchronous acquisition and waiting: timeouts, aborts, no leaked locks, and no use of the
// libuv thread pool (fs and crypto keep working while many waiters are pending).
import test from 'ava'
import crypto from 'node:crypto'
import fs from 'node:fs/promises'
import { promisify } from 'node:util'

import { AbortError, Segment } from '../index.js'
import { startFixture, uniqueName } from './helpers.mjs'

/** A fresh segment. Contention in these tests comes from guards this same thread holds:
 * lockAsync waits for them like for any other holder. */
function freshSegment(t) {
  const segment = Segment.create(uniqueName(t), { size: 4096 })
  t.teardown(() => segment.close())
  return segment
}

test('lockAsync resolves at once when free and waits for the holder otherwise', async (t) => {
  const segment = freshSegment(t)
  const first = await segment.mutex.lockAsync()
  let second
  const pending = segment.mutex.lockAsync().then((guard) => (second = guard))
  await new Promise((resolve) => setTimeout(resolve, 30))
  t.is(second, undefined, 'still waiting while the first guard is held')
  first.unlock()
  await pending
  t.true(second.locked)
  second.unlock()
})

test('lockAsync times out with ETIMEDOUT close to the asked time', async (t) => {
  const segment = freshSegment(t)
  const guard = segment.mutex.lock()
  const started = performance.now()
  const error = await t.throwsAsync(segment.mutex.lockAsync({ timeout: 120 }))
  const elapsed = performance.now() - started
  t.is(error.code, 'ETIMEDOUT')
  t.true(elapsed >= 115 && elapsed < 1000, `${elapsed} ms`)
  guard.unlock()
})

test('an aborted signal rejects with AbortError promptly, before or during the wait', async (t) => {
  const segment = freshSegment(t)
  const guard = segment.mutex.lock()
  await t.throwsAsync(segment.mutex.lockAsync({ signal: AbortSignal.abort() }), {
    instanceOf: AbortError,
    code: 'ABORT_ERR',
  })
  const controller = new AbortController()
  const pending = segment.mutex.lockAsync({ signal: controller.signal })
  await new Promise((resolve) => setTimeout(resolve, 30))
  const started = performance.now()
  controller.abort(new Error('shutting down'))
  const error = await t.throwsAsync(pending, { instanceOf: AbortError })
  t.true(performance.now() - started < 50)
  t.is(error.cause.message, 'shutting down')
  guard.unlock()
  t.truthy(segment.mutex.tryLock()?.unlock() === undefined, 'the cancelled request left the lock free')
})

test('a lock acquired just as the caller gave up is released, never leaked', async (t) => {
  const segment = freshSegment(t)
  for (let round = 0; round < 200; round++) {
    const guard = segment.mutex.lock()
    const controller = new AbortController()
    const pending = segment.mutex.lockAsync({ signal: controller.signal }).then(
      (late) => late.unlock(),
      (error) => t.is(error.name, 'AbortError'),
    )
    // Release and abort in the same tick, after a varying delay, to hit the race both ways.
    await new Promise((resolve) => setTimeout(resolve, round % 3))
    guard.unlock()
    controller.abort()
    await pending
    // The native waiter may still be finishing: the lock must come free within its slice.
    const free = await segment.mutex.lockAsync({ timeout: 2000 })
    free.unlock()
  }
  t.pass()
})

test('withLock returns the result, unlocks on throw and on rejection, and serialises one thread', async (t) => {
  const segment = freshSegment(t)
  t.is(await segment.mutex.withLock(() => 7), 7)
  t.is(await segment.mutex.withLock(async () => 8), 8)
  await t.throwsAsync(
    segment.mutex.withLock(() => {
      throw new Error('sync boom')
    }),
    { message: 'sync boom' },
  )
  await t.throwsAsync(
    segment.mutex.withLock(async () => {
      throw new Error('async boom')
    }),
    { message: 'async boom' },
  )
  const guard = segment.mutex.tryLock()
  t.truthy(guard, 'released after each throw')
  guard.unlock()

  let inside = 0
  let overlap = false
  await Promise.all(
    Array.from({ length: 5 }, () =>
      segment.mutex.withLock(async () => {
        overlap ||= ++inside > 1
        await new Promise((resolve) => setTimeout(resolve, 5))
        inside--
      }),
    ),
  )
  t.false(overlap, 'concurrent withLock calls of one thread never overlap')
  await t.throwsAsync(segment.mutex.withLock('nope'), { code: 'ERR_INVALID_ARG_TYPE' })
})

test('64 pending waiters leave the libuv pool free: fs, crypto and timers keep working', async (t) => {
  const segment = freshSegment(t)
  const guard = segment.mutex.lock()
  const waiters = Array.from({ length: 64 }, () => segment.mutex.withLock(() => {}))
  // With the 4-thread pool occupied by waiters, none of these could ever finish.
  const pbkdf2 = promisify(crypto.pbkdf2)
  const work = await Promise.all([
    ...Array.from({ length: 8 }, () => pbkdf2('secret', 'salt', 1000, 32, 'sha256')),
    ...Array.from({ length: 8 }, () => fs.readFile(new URL(import.meta.url))),
    new Promise((resolve) => setTimeout(() => resolve('timer'), 10)),
  ])
  t.is(work.length, 17)
  guard.unlock()
  await Promise.all(waiters)
  t.truthy(segment.mutex.tryLock()?.unlock() === undefined)
})

test('closing a segment rejects its pending waits with ERR_SHM_CLOSED and leaks no lock', async (t) => {
  const name = uniqueName(t)
  const segment = Segment.create(name, { size: 64 })
  const guard = segment.mutex.lock()
  const lockWait = segment.mutex.lockAsync()
  const wordWait = segment.waitAsync(0, 0)
  segment.close()
  t.false(guard.locked)
  await t.throwsAsync(lockWait, { code: 'ERR_SHM_CLOSED' })
  await t.throwsAsync(wordWait, { code: 'ERR_SHM_CLOSED' })
  const other = Segment.open(name)
  const free = await other.mutex.lockAsync({ timeout: 2000 })
  free.unlock()
  other.close()
})

test('waitAsync: not-equal at once, timed-out, woken by notify from another process, abortable', async (t) => {
  const name = uniqueName(t)
  const segment = Segment.create(name, { size: 64 })
  t.teardown(() => segment.close())
  new Int32Array(segment.buffer)[0] = 3
  t.is(await segment.waitAsync(0, 2), 'not-equal')
  t.is(await segment.waitAsync(0, 3, 30), 'timed-out')

  let ticks = 0
  const ticker = setInterval(() => ticks++, 5)
  const woken = segment.waitAsync(8, 0, 10_000)
  await new Promise((resolve) => setTimeout(resolve, 50))
  const notifier = startFixture('wait-notify.mjs', [name, 'notifier', 8])
  t.is(await woken, 'ok')
  clearInterval(ticker)
  t.true(ticks > 3, 'the event loop ran while waiting')
  t.is((await notifier.done()).code, 0)

  // A notify right after the call, before the waiter thread sleeps, still counts as a wake-up.
  const words = new Int32Array(segment.buffer)
  const early = segment.waitAsync(12, 0, 5000)
  Atomics.store(words, 3, 1)
  segment.notify(12)
  t.is(await early, 'ok')

  await t.throwsAsync(segment.waitAsync(0, 3, { signal: AbortSignal.timeout(20) }), { name: 'AbortError' })
  await t.throwsAsync(segment.waitAsync(0, 3, { signal: 'x' }), { code: 'ERR_INVALID_ARG_TYPE' })
})
