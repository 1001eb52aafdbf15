// Owner-death recovery with real processes: killed holders, holders that exit without unlocking.
import test from 'ava'

import { Segment } from '../index.js'
import { startFixture, uniqueName } from './helpers.mjs'

const onLinux = process.platform === 'linux' ? test : test.skip

onLinux('a holder SIGKILLed while sync and async waiters wait: both get the lock, exactly one is told', async (t) => {
  const name = uniqueName(t)
  const segment = Segment.create(name, { size: 64 })
  t.teardown(() => segment.close())
  const holder = startFixture('hold-lock.mjs', [name, 'hold'])
  await holder.nextMessage((m) => m === 'locked')
  const waiters = [startFixture('lock-waiter.mjs', [name, 'sync']), startFixture('lock-waiter.mjs', [name, 'async'])]
  await Promise.all(waiters.map((w) => w.nextMessage((m) => m === 'waiting')))
  await new Promise((resolve) => setTimeout(resolve, 150)) // let both fall asleep on the lock
  holder.kill('SIGKILL')
  const reports = await Promise.all(waiters.map((w) => w.nextMessage((m) => typeof m === 'object', 10_000)))
  for (const waiter of waiters) t.is((await waiter.done()).code, 0)
  t.is(reports.filter((r) => r.ownerDied).length, 1, JSON.stringify(reports))
  t.true(reports[1].ticks > 0, 'the async waiter kept its event loop running')
  await holder.done()
})

onLinux('a holder that exits without unlocking is recovered, and the next holder is told once', async (t) => {
  const name = uniqueName(t)
  const segment = Segment.create(name, { size: 64 })
  t.teardown(() => segment.close())
  const holder = startFixture('hold-lock.mjs', [name, 'exit'])
  await holder.nextMessage((m) => m === 'locked')
  t.is((await holder.done()).code, 0)
  const guard = await segment.mutex.lockAsync({ timeout: 5000 })
  t.true(guard.ownerDied)
  guard.unlock()
  const next = segment.mutex.tryLock()
  t.false(next.ownerDied)
  next.unlock()
})

onLinux('a dead holder is recovered by tryLock too', async (t) => {
  const name = uniqueName(t)
  const segment = Segment.create(name, { size: 64 })
  t.teardown(() => segment.close())
  const holder = startFixture('hold-lock.mjs', [name, 'exit'])
  await holder.nextMessage((m) => m === 'locked')
  await holder.done()
  const guard = segment.mutex.tryLock()
  t.truthy(guard)
  t.true(guard.ownerDied)
  guard.unlock()
})

test('a live holder is never robbed, however long it holds', async (t) => {
  const name = uniqueName(t)
  const segment = Segment.create(name, { size: 64 })
  t.teardown(() => segment.close())
  const holder = startFixture('hold-lock.mjs', [name, 'hold'])
  t.teardown(() => holder.kill('SIGKILL'))
  await holder.nextMessage((m) => m === 'locked')
  // Many liveness checks happen during this wait (one per 50 ms slice); none may take the lock.
  await t.throwsAsync(segment.mutex.lockAsync({ timeout: 600 }), { code: 'ETIMEDOUT' })
  t.is(segment.mutex.tryLock(), null)
})
