// Hostile peers: segments and channels whose header, lock words, attach table, control block
// and ring were overwritten with random bytes at random places. A child process then runs every
// operation on them: each must end with data or an error that has a code, within its timeout,
// and the child must exit normally (no signal, no hang). The seed is fixed and printed;
// SHMKIT_SCRIBBLE_SEED and SHMKIT_SCRIBBLE_TRIALS change it.
import test from 'ava'
import fs from 'node:fs'

import { Channel, Segment } from '../index.js'
import { startFixture, uniqueName } from './helpers.mjs'

const SEED = Number(process.env.SHMKIT_SCRIBBLE_SEED ?? 20261126)
const TRIALS = Number(process.env.SHMKIT_SCRIBBLE_TRIALS ?? 400)
const PARALLEL = 4
const onLinux = process.platform === 'linux' ? test : test.skip

/** mulberry32: a small, seedable PRNG, so a failing trial can be replayed. */
function prng(seed) {
  let state = seed >>> 0
  return (limit) => {
    state = (state + 0x6d2b79f5) >>> 0
    let x = Math.imul(state ^ (state >>> 15), state | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return (((x ^ (x >>> 14)) >>> 0) / 2 ** 32) * limit
  }
}

/** Regions worth hitting, as [start, end) file offsets of a segment with a 4096-byte header. */
const REGIONS = [
  ['header fields', 0, 64],
  ['header mutex', 64, 128],
  ['attach lock and flags', 128, 256],
  ['name', 256, 512],
  ['attach table', 512, 640],
  ['channel control block', 4096, 4096 + 512],
  ['ring', 4096 + 512, 4096 + 512 + 1024],
]

function prepare(t, random, trial) {
  const name = uniqueName(t, `scribble${trial}`)
  if (trial % 2 === 0) {
    const channel = Channel.create(name, { capacity: 1024, codec: trial % 4 === 0 ? 'json' : 'v8' })
    for (let i = 0; i < random(12); i++) channel.trySend({ trial, i, pad: 'x'.repeat(random(80)) })
    for (let i = 0; i < random(4); i++) channel.tryRecv()
    channel.close()
  } else {
    const segment = Segment.create(name, { size: 2048 })
    segment.mutex.lock().unlock()
    new Uint8Array(segment.buffer).fill(trial & 0xff)
    segment.close()
  }
  const file = `/dev/shm/shmkit.${name}`
  const size = fs.statSync(file).size
  const [region, start, end] = REGIONS[Math.floor(random(REGIONS.length))]
  const fd = fs.openSync(file, 'r+')
  try {
    for (let i = 0, writes = 1 + Math.floor(random(6)); i < writes; i++) {
      const offset = Math.min(size - 4, start + Math.floor(random(end - start)))
      const bytes =
        random(2) < 1
          ? Buffer.from([random(256), random(256), random(256), random(256)].map(Math.floor))
          : Buffer.alloc(4, 0xff)
      fs.writeSync(fd, bytes, 0, bytes.length, offset & ~3)
    }
  } finally {
    fs.closeSync(fd)
  }
  return { name, region }
}

onLinux(
  `scribbled segments and channels give data or coded errors, never a crash or a hang (seed ${SEED})`,
  async (t) => {
    t.log(`seed ${SEED}, ${TRIALS} trials`)
    const random = prng(SEED)
    const trials = Array.from({ length: TRIALS }, (_, trial) => prepare(t, random, trial))
    const batches = Array.from({ length: PARALLEL }, (_, i) =>
      trials.filter((_, j) => j % PARALLEL === i).map((trial) => trial.name),
    )
    const children = batches.map((names) => startFixture('scribble-victim.mjs', names))
    const outcomes = []
    for (const child of children) {
      const result = await child.done(120_000)
      t.is(result.signal, null, `the victim was not killed by a signal (stderr: ${result.stderr})`)
      t.is(result.code, 0, result.stderr)
      outcomes.push(...(result.messages[0] ?? []))
    }
    const uncoded = outcomes.filter((o) => o.outcome.startsWith('uncoded'))
    const byRegion = Object.fromEntries(trials.map((trial) => [trial.name, trial.region]))
    t.deepEqual(
      uncoded.map((o) => `${byRegion[o.name]} / ${o.op}: ${o.outcome}`),
      [],
      'every failure carries a code',
    )
    t.true(outcomes.length > TRIALS * 5)
    const codes = {}
    for (const { outcome } of outcomes) codes[outcome] = (codes[outcome] ?? 0) + 1
    t.log(codes)
    const slowest = [...outcomes].sort((a, b) => b.ms - a.ms).slice(0, 5)
    t.log(
      'slowest:',
      slowest.map((o) => `${byRegion[o.name]} / ${o.op} ${o.outcome} ${o.ms} ms`),
    )
  },
)
