// Map benchmark: shmkit's SharedMap against what users pick instead, in one run, with the same
// 10,000 keys and small JSON objects, the calls written as users write them:
//   - lmdb-js (an mmap'd B+tree): get, putSync, and put awaited in batches; also with its cache;
//     with noSync (no fsync per commit: in memory, not durable, like shared memory),
//   - Redis on a local Unix socket through ioredis: awaited get and set, pipelined get (the
//     bench starts redis-server where it is installed, and says so where not),
//   - a plain in-process Map of JSON strings (what decoding alone costs).
// Each round measures every contender once, in a rotating order; the median over rounds is
// reported with its min-max.
//
//   node bench/maps.mjs [--quick] [--json FILE]
import { fork } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { SharedMap } from '../index.js'
import { KEYS, keyOf, order, valueOf } from './map-data.mjs'
import { startRedis } from './redis.mjs'
import { formatRate, summary, writeResults } from './stats.mjs'

const quick = process.argv.includes('--quick')
const jsonIndex = process.argv.indexOf('--json')
const jsonPath = jsonIndex > 0 ? process.argv[jsonIndex + 1] : undefined
const ROUNDS = quick ? 1 : 3
const MS = quick ? 100 : 600 // per measurement
const peer = new URL('./map-peer.mjs', import.meta.url)

const ORDER = order()

/**
 * Calls `op(i)` for about MS milliseconds; returns operations per second. `readAllFirst`: one
 * untimed pass over every key first, as a long-running reader of a read-mostly map has done
 * (the set measurements change every value in between).
 */
function rate(op, readAllFirst = false) {
  if (readAllFirst) for (let i = 0; i < KEYS; i++) op(i)
  let done = 0
  const started = performance.now()
  const deadline = started + MS
  while (performance.now() < deadline) {
    for (let i = 0; i < 1024; i++) op(ORDER[(done + i) & 0xffff])
    done += 1024
  }
  return done / ((performance.now() - started) / 1000)
}

async function rateAsync(op) {
  let done = 0
  const started = performance.now()
  const deadline = started + MS
  while (performance.now() < deadline) {
    for (let i = 0; i < 64; i++) await op(ORDER[(done + i) & 0xffff])
    done += 64
  }
  return done / ((performance.now() - started) / 1000)
}

const once = (emitter, event) => new Promise((resolve) => emitter.once(event, resolve))

/** Two reader processes for MS ms each; the summed reads per second. */
async function twoReaders(args) {
  const children = [0, 1].map(() => fork(peer, [...args, String(MS)]))
  const exited = Promise.all(children.map((child) => once(child, 'exit')))
  await Promise.all(children.map((child) => once(child, 'message'))) // ready
  for (const child of children) child.send('go')
  const rates = await Promise.all(children.map((child) => once(child, 'message')))
  await exited
  return rates.reduce((a, b) => a + b, 0)
}

// ------------------------------------------------------------------------------- contenders

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'shmkit-bench-maps-'))
const mapName = `bench-map-${process.pid}`

function shmkitContender() {
  const map = SharedMap.create(mapName, { capacity: KEYS * 2 })
  for (let i = 0; i < KEYS; i++) map.set(keyOf(i), valueOf(i))
  let version = 0
  return {
    label: 'shmkit SharedMap',
    get: () => rate((i) => map.get(keyOf(i)), true),
    // A fresh handle reads every value once: each read decodes (no per-handle cache yet).
    getCold: () => {
      let done = 0
      const started = performance.now()
      while (performance.now() < started + MS) {
        const fresh = SharedMap.open(mapName)
        for (let i = 0; i < KEYS; i++) fresh.get(keyOf(i))
        fresh.close()
        done += KEYS
      }
      return done / ((performance.now() - started) / 1000)
    },
    set: () => rate((i) => map.set(keyOf(i), valueOf(i, ++version))),
    twoReaders: () => twoReaders(['shmkit', mapName]),
    close: () => {
      map.close()
      SharedMap.unlink(mapName)
    },
  }
}

async function lmdbContender(cache) {
  const { open } = await import('lmdb')
  const dir = path.join(tmp, `lmdb-${cache ? 'cache' : 'plain'}`)
  const db = open({ path: dir, cache, noSync: true })
  await db.transaction(() => {
    for (let i = 0; i < KEYS; i++) db.put(keyOf(i), valueOf(i))
  })
  let version = 0
  return {
    label: cache ? 'lmdb-js, cache: true' : 'lmdb-js',
    get: () => rate((i) => db.get(keyOf(i)), true),
    set: cache ? undefined : () => rate((i) => db.putSync(keyOf(i), valueOf(i, ++version))),
    // put() without waiting on each: lmdb-js batches them into one commit; wait for the last.
    setBatched: cache
      ? undefined
      : async () => {
          let done = 0
          const started = performance.now()
          while (performance.now() < started + MS) {
            let last
            for (let i = 0; i < 1000; i++) last = db.put(keyOf(ORDER[(done + i) & 0xffff]), valueOf(i, ++version))
            await last
            done += 1000
          }
          return done / ((performance.now() - started) / 1000)
        },
    twoReaders: cache ? undefined : () => twoReaders(['lmdb', dir]),
    close: () => db.close(),
  }
}

async function redisContender() {
  const started = await startRedis(tmp)
  if (started.skipped) return started
  const { redis } = started
  const pipeline = redis.pipeline()
  for (let i = 0; i < KEYS; i++) pipeline.set(keyOf(i), JSON.stringify(valueOf(i)))
  await pipeline.exec()
  let version = 0
  return {
    label: 'Redis (ioredis, Unix socket)',
    version: started.version,
    get: () => rateAsync(async (i) => JSON.parse(await redis.get(keyOf(i)))),
    getPipelined: async () => {
      let done = 0
      const started = performance.now()
      while (performance.now() < started + MS) {
        const batch = redis.pipeline()
        for (let i = 0; i < 100; i++) batch.get(keyOf(ORDER[(done + i) & 0xffff]))
        for (const [, text] of await batch.exec()) JSON.parse(text)
        done += 100
      }
      return done / ((performance.now() - started) / 1000)
    },
    set: () => rateAsync((i) => redis.set(keyOf(i), JSON.stringify(valueOf(i, ++version)))),
    close: started.stop,
  }
}

function plainMapContender() {
  const map = new Map()
  for (let i = 0; i < KEYS; i++) map.set(keyOf(i), JSON.stringify(valueOf(i)))
  let version = 0
  return {
    label: 'in-process Map of JSON strings',
    get: () => rate((i) => JSON.parse(map.get(keyOf(i))), true),
    set: () => rate((i) => map.set(keyOf(i), JSON.stringify(valueOf(i, ++version)))),
    close: () => {},
  }
}

// ------------------------------------------------------------------------------- the run

const contenders = {
  shmkit: shmkitContender(),
  lmdb: await lmdbContender(false),
  lmdbCache: await lmdbContender(true),
  redis: await redisContender(),
  plainMap: plainMapContender(),
}
const measures = ['get', 'getCold', 'getPipelined', 'set', 'setBatched', 'twoReaders']
const samples = {}
// Round 0 warms every contender up (the JIT, caches, pages) and is not counted.
for (let round = -1; round < ROUNDS; round++) {
  const keys = Object.keys(contenders)
  const turn = Math.max(0, round) % keys.length
  const rotated = [...keys.slice(turn), ...keys.slice(0, turn)]
  for (const key of rotated) {
    const contender = contenders[key]
    if (contender.skipped) continue
    for (const measure of measures) {
      if (!contender[measure]) continue
      const value = await contender[measure]()
      if (round >= 0) ((samples[key] ??= {})[measure] ??= []).push(value)
    }
  }
}
for (const contender of Object.values(contenders)) if (!contender.skipped) await contender.close()
fs.rmSync(tmp, { recursive: true, force: true })

const results = { keys: KEYS, contenders: {}, skipped: {} }
for (const [key, contender] of Object.entries(contenders)) {
  if (contender.skipped) {
    results.skipped[key] = contender.skipped
    continue
  }
  results.contenders[key] = { label: contender.label, ...(contender.version ? { version: contender.version } : {}) }
  for (const [measure, values] of Object.entries(samples[key])) results.contenders[key][measure] = summary(values)
}

console.log(`\nMaps: ${KEYS.toLocaleString('en')} keys, small JSON objects; median of ${ROUNDS} round(s)\n`)
const names = {
  get: 'get',
  getCold: 'get, first read',
  getPipelined: 'get, pipelined x100',
  set: 'set',
  setBatched: 'put, batches of 1000',
  twoReaders: 'get, 2 processes',
}
for (const r of Object.values(results.contenders)) {
  const cells = measures.filter((m) => r[m]).map((m) => `${names[m]} ${formatRate(r[m].median)}`)
  console.log(`${r.label.padEnd(32)} ${cells.join(' | ')}`)
}
for (const [key, why] of Object.entries(results.skipped)) console.log(`${key}: skipped (${why})`)

writeResults(jsonPath, results)
