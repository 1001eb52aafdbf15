// The rules of the 0.2 API, one test each: every member of a closed handle answers, unlink
// checks the kind, open waits for a creator on request, the layout helper, the error codes are
// one list, inspect output is readable.
import test from 'ava'
import fs from 'node:fs'
import { inspect } from 'node:util'

import { Channel, Layout, Mutex, Segment, isShmkitError } from '../index.js'
import { startFixture, throwsCoded, uniqueName } from './helpers.mjs'
import { contract } from '../binding.js'

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Calls every member of `object` (getters read, methods called with `args[name]`): each must
 * return a value or throw an error with a code, never an uncoded TypeError. */
async function everyMemberAnswers(t, object, args) {
  const proto = Object.getPrototypeOf(object)
  const names = Object.getOwnPropertyNames(proto).filter((n) => n !== 'constructor')
  for (const name of names) {
    const descriptor = Object.getOwnPropertyDescriptor(proto, name)
    try {
      if (descriptor.get) descriptor.get.call(object)
      else if (typeof descriptor.value === 'function') await descriptor.value.apply(object, args[name] ?? [])
    } catch (error) {
      t.true(typeof error.code === 'string', `${proto.constructor.name}.${name} threw without a code: ${error}`)
    }
  }
  for (const symbol of [Symbol.dispose, Symbol.asyncIterator]) {
    if (typeof object[symbol] === 'function') {
      const result = object[symbol]()
      if (result?.next) await result.next().catch((error) => t.truthy(error.code, `${String(symbol)}: ${error}`))
    }
  }
  return names
}

test('every property and method of a closed segment, mutex, guard and channel answers with a value or a coded error', async (t) => {
  const segment = Segment.create(uniqueName(t), { size: 256 })
  const mutex = segment.mutex
  const placed = Mutex.at(segment, 64)
  const guard = mutex.lock()
  const channel = Channel.create(uniqueName(t, 'ch'), { capacity: 256, codec: 'json' })
  channel.send({ a: 1 })
  segment.close()
  channel.close()
  t.true(segment.closed && channel.closed)
  t.false(guard.locked)
  throwsCoded(t, () => guard.unlock(), Error, 'ERR_SHM_NOT_LOCKED')
  const segmentNames = await everyMemberAnswers(t, segment, { wait: [0, 0, 1], waitAsync: [0, 0, 1], notify: [0] })
  t.true(segmentNames.includes('waitAsync'))
  for (const m of [mutex, placed]) await everyMemberAnswers(t, m, { withLock: [() => 1] })
  const channelNames = await everyMemberAnswers(t, channel, {
    send: [{}],
    trySend: [{}],
    sendAsync: [{}],
    sendWith: [1, () => {}],
    recvWith: [() => {}],
  })
  t.true(channelNames.includes('ended') && channelNames.includes('bytesInFlight'))
  // An ArrayBuffer is detached (views read as empty); a SharedArrayBuffer cannot be, and stays mapped.
  t.is(segment.buffer.byteLength, Segment.sharedArrayBuffers ? segment.size : 0, 'views read as empty')
  t.is(segment.name, segment.name)
  t.notThrows(() => segment.close(), 'close is idempotent')
})

test('X.unlink(name) refuses an object of another kind with ERR_SHM_WRONG_KIND', (t) => {
  const segmentName = uniqueName(t)
  const channelName = uniqueName(t, 'ch')
  Segment.create(segmentName, { size: 64 }).close()
  Channel.create(channelName, { capacity: 64 }).close()
  throwsCoded(t, () => Channel.unlink(segmentName), Error, 'ERR_SHM_WRONG_KIND')
  throwsCoded(t, () => Segment.unlink(channelName), Error, 'ERR_SHM_WRONG_KIND')
  t.notThrows(() => Segment.inspect(segmentName), 'still there')
  Segment.unlink(segmentName)
  Channel.unlink(channelName)
  throwsCoded(t, () => Channel.unlink(channelName), Error, 'ENOENT')
  throwsCoded(t, () => Channel.open(segmentName), Error, 'ENOENT')
})

test('open({ wait }) waits for a creator that has not started yet; without it, ENOENT at once', async (t) => {
  const name = uniqueName(t)
  throwsCoded(t, () => Segment.open(name), Error, 'ENOENT')
  const started = performance.now()
  throwsCoded(t, () => Segment.open(name, { wait: 100 }), Error, 'ENOENT')
  t.true(performance.now() - started >= 95)
  const creator = startFixture('script.mjs', [
    `await new Promise((r) => setTimeout(r, 300)); const ch = shmkit.Channel.create(args[0], { capacity: 64, codec: 'string' }); ch.send('hi'); await send('created'); await next((m) => m === 'exit'); ch.close()`,
    name,
  ])
  const channel = Channel.open(name, { wait: 10_000 })
  t.is(channel.codec, 'string')
  t.is(channel.recv({ timeout: 5000 }), 'hi')
  channel.close()
  await creator.nextMessage((m) => m === 'created')
  creator.send('exit')
  await creator.done()
  throwsCoded(t, () => Segment.open(name, { wait: -1 }), RangeError, 'ERR_OUT_OF_RANGE')
})

test('Channel.openOrCreate: one creator among racers, the same channel for all, kind and capacity checked', (t) => {
  const name = uniqueName(t, 'ch')
  const first = Channel.openOrCreate(name, { capacity: 256, codec: 'json' })
  const second = Channel.openOrCreate(name, { capacity: 256, codec: 'json' })
  t.true(first.created)
  t.false(second.created)
  first.send({ x: 1 })
  t.deepEqual(second.recv(), { x: 1 })
  throwsCoded(t, () => Channel.openOrCreate(name, { capacity: 1024 }), Error, 'ERR_SHM_SIZE_MISMATCH')
  const plain = uniqueName(t)
  Segment.create(plain, { size: 64 }).close()
  throwsCoded(t, () => Channel.openOrCreate(plain, { capacity: 64 }), Error, 'ERR_SHM_WRONG_KIND')
  first.close()
  second.close()
})

test('Layout: offsets at natural alignment, the size to create, typed views and placed mutexes', (t) => {
  const layout = Layout.of({
    flag: 'uint8',
    lock: 'mutex',
    count: 'int32',
    total: 'bigint64',
    samples: ['float64', 3],
    name: ['uint8', 5],
  })
  t.deepEqual(layout.offsets, { flag: 0, lock: 8, count: 72, total: 80, samples: 88, name: 112 })
  t.is(layout.size, 120)
  const segment = Segment.create(uniqueName(t), { size: layout.size })
  t.teardown(() => segment.close())
  const view = layout.view(segment)
  t.true(view.lock instanceof Mutex)
  t.is(view.lock, Mutex.at(segment, 8))
  t.true(view.count instanceof Int32Array && view.count.length === 1)
  Atomics.add(view.count, 0, 5)
  view.total[0] = 7n
  view.samples.set([1.5, 2.5, 3.5])
  t.is(new Int32Array(segment.buffer, 72, 1)[0], 5)
  t.deepEqual([...layout.view(segment).samples], [1.5, 2.5, 3.5])
  throwsCoded(t, () => Layout.of({ bad: 'int33' }), TypeError, 'ERR_INVALID_ARG_VALUE')
  throwsCoded(t, () => Layout.of({}), TypeError, 'ERR_INVALID_ARG_VALUE')
  throwsCoded(t, () => Layout.of({ a: ['int8', 0] }), RangeError, 'ERR_OUT_OF_RANGE')
  throwsCoded(t, () => layout.view(segment, 8), RangeError, 'ERR_OUT_OF_RANGE')
  throwsCoded(t, () => layout.view({}), TypeError, 'ERR_INVALID_ARG_TYPE')
})

test('one list of error codes: the core, the TypeScript union and docs/errors.md agree', (t) => {
  const fromCore = contract().errorCodes
  const docs = fs.readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8')
  const source = fs.readFileSync(new URL('../lib/errors.ts', import.meta.url), 'utf8')
  const union = [...source.matchAll(/^ {2}\| '([A-Z_]+)'$/gm)].map((m) => m[1])
  t.deepEqual(union, fromCore, 'ShmkitErrorCode lists the core codes, in order')
  for (const code of fromCore) t.regex(docs, new RegExp(`\\| \`${code}\` +\\|`), `docs/errors.md documents ${code}`)
  const error = t.throws(() => Segment.open(uniqueName(t)))
  t.true(isShmkitError(error))
  t.false(isShmkitError(new Error('x')))
  t.false(isShmkitError({ code: 'ENOENT' }), 'an Error, not any object with a code')
})

test('messages name the object and the numbers', async (t) => {
  const channel = Channel.create(uniqueName(t, 'jobs'), { capacity: 64 })
  t.teardown(() => channel.close())
  const error = t.throws(() => channel.recv({ timeout: 20 }), { code: 'ETIMEDOUT' })
  t.is(error.message, `Timed out after 20 ms waiting for a message in channel "${channel.name}"`)
  const segment = Segment.create(uniqueName(t), { size: 128 })
  t.teardown(() => segment.close())
  const holder = startFixture('script.mjs', [
    `const s = shmkit.Segment.open(args[0]); const g = shmkit.Mutex.at(s, 64).lock(); await send('locked'); await next(() => true); g.unlock(); s.close()`,
    segment.name,
  ])
  await holder.nextMessage()
  const timeout = t.throws(() => Mutex.at(segment, 64).lock({ timeout: 30 }), { code: 'ETIMEDOUT' })
  t.is(timeout.message, `Timed out after 30 ms waiting for the mutex at offset 64 of segment "${segment.name}"`)
  await t.throwsAsync(Mutex.at(segment, 64).lockAsync({ timeout: 30 }), { message: timeout.message })
  holder.send('go')
  await holder.done()
  await delay(0)
})

test('util.inspect shows name, size and state, not internals', (t) => {
  const segment = Segment.create(uniqueName(t), { size: 64 })
  t.is(inspect(segment), `Segment { name: '${segment.name}', size: 64, closed: false }`)
  segment.close()
  t.is(inspect(segment), `Segment { name: '${segment.name}', size: 64, closed: true }`)
  const channel = Channel.create(uniqueName(t, 'ch'), { capacity: 100, codec: 'json' })
  t.is(inspect(channel), `Channel { name: '${channel.name}', codec: 'json', capacity: 128, closed: false }`)
  channel.close()
  t.deepEqual(Object.keys(segment), [], 'no enumerable internals')
  t.deepEqual(Object.keys(channel), [])
})
