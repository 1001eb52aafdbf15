// Segment lifetime with real processes: by default nothing is removed behind the user's back;
// autoUnlink removes a segment when its last attacher closes it, or dies and is reaped.
import test from 'ava'

import { Channel, Segment } from '../index.js'
import { runFixture, startFixture, throwsCoded, uniqueName } from './helpers.mjs'

const onLinux = process.platform === 'linux' ? test : test.skip

test('by default a segment outlives every close, in every process', async (t) => {
  const name = uniqueName(t)
  Segment.create(name, { size: 4096 }).close()
  t.is((await runFixture('attach.mjs', [name, 'open-close'])).code, 0)
  const inspection = Segment.inspect(name)
  t.false(inspection.autoUnlink)
  t.deepEqual(inspection.attachers, [])
  t.false(Segment.collect(name), 'gc leaves default segments alone')
  t.notThrows(() => Segment.open(name).close())
})

test('autoUnlink: removed when the last process that has it open closes it', async (t) => {
  const name = uniqueName(t)
  const mine = Segment.create(name, { size: 4096, autoUnlink: true })
  t.true(mine.autoUnlink)
  const other = startFixture('attach.mjs', [name, 'open'])
  await other.nextMessage((m) => m === 'attached')
  t.is(Segment.inspect(name).attachers.length, 2)
  mine.close()
  t.notThrows(() => Segment.inspect(name), 'still there: another process has it open')
  other.send('close')
  await other.nextMessage((m) => m === 'closed')
  await other.done()
  throwsCoded(t, () => Segment.open(name), Error, 'ENOENT')
})

onLinux('autoUnlink: a SIGKILLed last attacher is reaped, by gc or by the next close', async (t) => {
  const name = uniqueName(t)
  const creator = startFixture('attach.mjs', [name, 'create-auto'])
  await creator.nextMessage((m) => m === 'attached')
  creator.kill('SIGKILL')
  await creator.done()
  const inspection = Segment.inspect(name)
  t.deepEqual(
    inspection.attachers.map((a) => a.state),
    ['dead'],
  )
  t.true(Segment.collect(name), 'gc removes it: its only attacher is dead')
  throwsCoded(t, () => Segment.inspect(name), Error, 'ENOENT')

  const second = uniqueName(t)
  const victim = startFixture('attach.mjs', [second, 'create-auto'])
  await victim.nextMessage((m) => m === 'attached')
  const survivor = Segment.open(second)
  victim.kill('SIGKILL')
  await victim.done()
  survivor.close()
  throwsCoded(t, () => Segment.open(second), Error, 'ENOENT', 'the last live closer removed it, ignoring the dead one')
})

test('autoUnlink channels go away with their last user too', (t) => {
  const name = uniqueName(t, 'ch')
  const channel = Channel.create(name, { capacity: 256, autoUnlink: true })
  const peer = Channel.open(name)
  channel.close()
  peer.send('still works')
  peer.close()
  throwsCoded(t, () => Channel.open(name), Error, 'ENOENT')
})

test('a segment reopened by name after an autoUnlink removal is a new one', (t) => {
  const name = uniqueName(t)
  const first = Segment.openOrCreate(name, { size: 64, autoUnlink: true })
  new Uint8Array(first.buffer)[0] = 9
  first.close()
  const second = Segment.openOrCreate(name, { size: 64, autoUnlink: true })
  t.true(second.created)
  t.is(new Uint8Array(second.buffer)[0], 0)
  second.close()
  throwsCoded(t, () => Segment.create(name, { size: 64, autoUnlink: 'yes' }), TypeError, 'ERR_INVALID_ARG_TYPE')
})

test('garbage collection never unlinks, even an autoUnlink segment; collect removes it later', async (t) => {
  const name = uniqueName(t)
  const result = await runFixture('gc-auto.mjs', [name], { execArgv: ['--expose-gc'] })
  t.is(result.code, 0, result.stderr)
  t.deepEqual(result.messages[0], { exists: true }, 'still there after its only handle was collected')
  t.true(Segment.inspect(name).autoUnlink)
  t.true(Segment.collect(name), 'nobody has it open: collect (or shmkit gc) removes it')
})
