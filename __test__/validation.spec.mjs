// The bad-input matrix: every entry point refuses wrong types and values with a Node-style coded
// error, and none of them crashes the process.
import test from 'ava'

import { Mutex, Segment } from '../index.js'
import { throwsCoded, uniqueName } from './helpers.mjs'

const notStrings = [undefined, null, 42, {}, [], Symbol('x'), () => {}, 1n]
const notNumbers = [undefined, null, '1', {}, [], true, 1n]

test('names: wrong type, empty, bad characters, too long', (t) => {
  for (const open of [(n) => Segment.open(n), (n) => Segment.create(n, { size: 1 }), (n) => Segment.unlink(n)]) {
    for (const bad of notStrings) throwsCoded(t, () => open(bad), TypeError, 'ERR_INVALID_ARG_TYPE')
    for (const bad of ['', 'a/b', '../x', 'a b', 'é', 'a\0b', '/abs', 'a\\b']) {
      throwsCoded(t, () => open(bad), TypeError, 'ERR_INVALID_ARG_VALUE', JSON.stringify(bad))
    }
    throwsCoded(t, () => open('x'.repeat(201)), Error, 'ENAMETOOLONG')
  }
})

test('sizes: wrong type, zero, negative, fractional, non-finite, absurd', (t) => {
  const name = uniqueName(t)
  for (const bad of notNumbers.filter((v) => v !== undefined)) {
    throwsCoded(t, () => Segment.create(name, { size: bad }), TypeError, 'ERR_INVALID_ARG_TYPE')
  }
  throwsCoded(t, () => Segment.create(name, { size: undefined }), TypeError, 'ERR_INVALID_ARG_TYPE')
  for (const bad of [0, -1, 1.5, NaN, Infinity, -Infinity, 2 ** 53, 2 ** 44 + 1]) {
    throwsCoded(t, () => Segment.create(name, { size: bad }), RangeError, 'ERR_OUT_OF_RANGE', String(bad))
    throwsCoded(t, () => Segment.openOrCreate(name, { size: bad }), RangeError, 'ERR_OUT_OF_RANGE', String(bad))
  }
})

test('options: missing, wrong type, misspelled, bad mode or timeout', (t) => {
  const name = uniqueName(t)
  for (const bad of [undefined, null, 5, 'size', []]) {
    throwsCoded(t, () => Segment.create(name, bad), TypeError, 'ERR_INVALID_ARG_TYPE')
  }
  throwsCoded(t, () => Segment.create(name, { size: 8, sise: 8 }), TypeError, 'ERR_INVALID_ARG_VALUE')
  throwsCoded(t, () => Segment.open(name, { timeout: 5 }), TypeError, 'ERR_INVALID_ARG_VALUE')
  throwsCoded(t, () => Segment.open(name, 5), TypeError, 'ERR_INVALID_ARG_TYPE')
  for (const bad of [-1, 0o1000, 1.5, NaN]) {
    throwsCoded(t, () => Segment.create(name, { size: 8, mode: bad }), RangeError, 'ERR_OUT_OF_RANGE')
  }
  throwsCoded(t, () => Segment.create(name, { size: 8, mode: '644' }), TypeError, 'ERR_INVALID_ARG_TYPE')
  throwsCoded(t, () => Segment.open(name, { readyTimeout: -5 }), RangeError, 'ERR_OUT_OF_RANGE')
  throwsCoded(t, () => Segment.open(name, { readyTimeout: '5' }), TypeError, 'ERR_INVALID_ARG_TYPE')
})

test('offsets: out of range, misaligned, wrong type (mutex, wait, notify)', (t) => {
  const segment = Segment.create(uniqueName(t), { size: 256 })
  t.teardown(() => segment.close())
  const misuse = [
    [() => Mutex.at(segment, 4), RangeError, 'ERR_OUT_OF_RANGE'],
    [() => Mutex.at(segment, 200), RangeError, 'ERR_OUT_OF_RANGE'],
    [() => Mutex.at(segment, -8), RangeError, 'ERR_OUT_OF_RANGE'],
    [() => Mutex.at(segment, 8.5), RangeError, 'ERR_OUT_OF_RANGE'],
    [() => Mutex.at(segment, '8'), TypeError, 'ERR_INVALID_ARG_TYPE'],
    [() => Mutex.at({}, 8), TypeError, 'ERR_INVALID_ARG_TYPE'],
    [() => segment.wait(2, 0, 0), RangeError, 'ERR_OUT_OF_RANGE'],
    [() => segment.wait(256, 0, 0), RangeError, 'ERR_OUT_OF_RANGE'],
    [() => segment.wait(2 ** 60, 0, 0), RangeError, 'ERR_OUT_OF_RANGE'],
    [() => segment.wait(0, '0', 0), TypeError, 'ERR_INVALID_ARG_TYPE'],
    [() => segment.wait(0, 2 ** 33, 0), RangeError, 'ERR_OUT_OF_RANGE'],
    [() => segment.wait(0, 0, -1), RangeError, 'ERR_OUT_OF_RANGE'],
    [() => segment.notify(253), RangeError, 'ERR_OUT_OF_RANGE'],
    [() => segment.notify(0, -1), RangeError, 'ERR_OUT_OF_RANGE'],
    [() => segment.notify(null), TypeError, 'ERR_INVALID_ARG_TYPE'],
    [() => segment.mutex.lock({ timeout: -1 }), RangeError, 'ERR_OUT_OF_RANGE'],
    [() => segment.mutex.lock({ timeout: '1' }), TypeError, 'ERR_INVALID_ARG_TYPE'],
    [() => segment.mutex.lock({ timout: 1 }), TypeError, 'ERR_INVALID_ARG_VALUE'],
    // `signal` belongs to the asynchronous calls: an error even beside a valid timeout.
    [() => segment.mutex.lock({ timeout: 1, signal: AbortSignal.timeout(1) }), TypeError, 'ERR_INVALID_ARG_VALUE'],
    [() => segment.mutex.lock({ timeout: NaN }), RangeError, 'ERR_OUT_OF_RANGE'],
    [() => segment.mutex.lock(7), TypeError, 'ERR_INVALID_ARG_TYPE'],
  ]
  for (const [fn, type, code] of misuse) throwsCoded(t, fn, type, code, fn.toString())
  t.truthy(Mutex.at(segment, 192), 'the last slot that fits is accepted')
})

test('constructors cannot be called directly', (t) => {
  throwsCoded(t, () => new Segment(Symbol('x')), TypeError, 'ERR_ILLEGAL_CONSTRUCTOR')
  throwsCoded(t, () => new Mutex(Symbol('x')), TypeError, 'ERR_ILLEGAL_CONSTRUCTOR')
})
