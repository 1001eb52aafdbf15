import test from 'ava'

import { Segment } from '../index.js'
import { startFixture, uniqueName } from './helpers.mjs'

test('notify in one process wakes wait in others', async (t) => {
  const name = uniqueName(t)
  const segment = Segment.create(name, { size: 64 })
  t.teardown(() => segment.close())
  const waiters = [
    startFixture('wait-notify.mjs', [name, 'waiter', 8]),
    startFixture('wait-notify.mjs', [name, 'waiter', 8]),
  ]
  await Promise.all(waiters.map((w) => w.nextMessage((m) => m === 'waiting')))
  // "waiting" is sent just before the wait begins: give both time to fall asleep.
  await new Promise((resolve) => setTimeout(resolve, 200))
  const notifier = startFixture('wait-notify.mjs', [name, 'notifier', 8])
  const { woken } = await notifier.nextMessage((m) => typeof m === 'object')
  t.is(woken, 2)
  for (const waiter of waiters) {
    const report = await waiter.nextMessage((m) => typeof m === 'object')
    t.deepEqual(report, { result: 'ok', value: 1 })
    t.is((await waiter.done()).code, 0)
  }
})

test('wait returns not-equal and timed-out like Atomics.wait', (t) => {
  const segment = Segment.create(uniqueName(t), { size: 64 })
  t.teardown(() => segment.close())
  new Int32Array(segment.buffer)[1] = 7
  t.is(segment.wait(4, 6, 1000), 'not-equal')
  const started = Date.now()
  t.is(segment.wait(4, 7, 50), 'timed-out')
  t.true(Date.now() - started >= 45)
  t.is(segment.notify(4), 0)
  t.is(segment.wait(0, -1 >>> 0, 0), 'not-equal', 'expected accepts unsigned 32-bit values')
})
