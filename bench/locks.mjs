// Lock benchmark: shmkit's mutex against a SharedArrayBuffer futex mutex (worker threads of one
// process), a C pthread mutex shared between processes (compiled here with cc; skipped with a
// note where there is none), Python's multiprocessing.Lock and the proper-lockfile package, in
// one run. The calls are written as users write them: `mutex.lock({ timeout })` and the guard.
//
//   node bench/locks.mjs [--quick] [--json FILE]
//
// Uncontended: lock+unlock in one thread, contenders alternated within each round. Contended:
// lock, increment a plain counter, unlock, in 2, 4 and 8 processes (shmkit, pthread) or worker
// threads (SharedArrayBuffer) for a fixed time; reports the total rate and each contender's
// share of the acquisitions (a lock that starves one side can win throughput, so the shares
// matter as much as the rate).
import { execFile, execFileSync, fork } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { Worker } from 'node:worker_threads'

import lockfile from 'proper-lockfile'

import { Segment } from '../index.js'
import { SabMutex } from './sab-mutex.mjs'
import { formatRate, ratePerSecond, summary, writeResults } from './stats.mjs'

const quick = process.argv.includes('--quick')
const jsonIndex = process.argv.indexOf('--json')
const jsonPath = jsonIndex > 0 ? process.argv[jsonIndex + 1] : undefined
const ROUNDS = quick ? 2 : 5
const ROUND_MS = quick ? 150 : 600
const CONTENDED_MS = quick ? 300 : 1500

const results = {}
const plural = (n, one, many) => `${n} ${String(n) === '1' ? one : many}`

function uncontended() {
  const segment = Segment.create(`bench-lock-${process.pid}`, { size: 4096 })
  Segment.unlink(segment.name)
  const mutex = segment.mutex
  const sab = new SabMutex(new Int32Array(new SharedArrayBuffer(64)), 0)
  const contenders = {
    // As the README writes it: a timeout on every call, and the guard.
    shmkitTimeout: (n) => {
      for (let i = 0; i < n; i++) mutex.lock({ timeout: 1000 }).unlock()
    },
    shmkit: (n) => {
      for (let i = 0; i < n; i++) mutex.lock().unlock()
    },
    sab: (n) => {
      for (let i = 0; i < n; i++) {
        sab.lock()
        sab.unlock()
      }
    },
  }
  const rates = Object.fromEntries(Object.keys(contenders).map((k) => [k, []]))
  const names = Object.keys(contenders)
  for (let round = 0; round < ROUNDS + 1; round++) {
    // A rotating order, so drift within a round hits every contender alike.
    for (let k = 0; k < names.length; k++) {
      const name = names[(round + k) % names.length]
      const rate = ratePerSecond(contenders[name], 10_000, ROUND_MS)
      if (round > 0) rates[name].push(rate) // round 0 is warm-up
    }
  }
  segment.close()
  results.uncontended = Object.fromEntries(names.map((name) => [name, summary(rates[name])]))
}

/** The C pthread anchor, compiled now; undefined (with the reason) where there is no compiler. */
function pthreadBinary() {
  const source = new URL('./contenders/pthread_lock.c', import.meta.url).pathname
  const binary = path.join(os.tmpdir(), `shmkit-bench-pthread-${process.pid}`)
  try {
    execFileSync(process.env.CC ?? 'cc', ['-O2', '-o', binary, source, '-lpthread'], { stdio: 'pipe' })
    return { binary }
  } catch (error) {
    return { skipped: `no C compiler (${process.env.CC ?? 'cc'}): ${String(error.message).split('\n')[0]}` }
  }
}

async function contendedPthread(binary, contenders) {
  const { stdout } = await promisify(execFile)(binary, [String(contenders), String(CONTENDED_MS)], { timeout: 60_000 })
  const { total, seconds, counts } = JSON.parse(stdout)
  return { rate: total / seconds, shares: counts.map((c) => c / total) }
}

async function contendedShmkit(contenders) {
  const name = `bench-contend-${process.pid}-${contenders}`
  const segment = Segment.create(name, { size: 4096 })
  try {
    const children = Array.from({ length: contenders }, () =>
      fork(new URL('./contenders/shmkit-lock.mjs', import.meta.url), [name]),
    )
    const reports = children.map(
      (child) =>
        new Promise((resolve, reject) => {
          child.on('message', (m) => typeof m === 'object' && resolve(m))
          child.on('error', reject)
        }),
    )
    await Promise.all(children.map((child) => new Promise((resolve) => child.once('message', resolve))))
    return await measureContention(
      new Int32Array(segment.buffer, 0, 4),
      new Float64Array(segment.buffer, 16, 1),
      reports,
    )
  } finally {
    segment.close()
    Segment.unlink(name)
  }
}

async function contendedSab(contenders) {
  const buffer = new SharedArrayBuffer(64)
  const workers = Array.from(
    { length: contenders },
    () => new Worker(new URL('./contenders/sab-lock-worker.mjs', import.meta.url), { workerData: { buffer } }),
  )
  const reports = workers.map(
    (worker) => new Promise((resolve) => worker.on('message', (m) => typeof m === 'object' && resolve(m))),
  )
  await Promise.all(workers.map((worker) => new Promise((resolve) => worker.once('message', resolve))))
  const outcome = await measureContention(new Int32Array(buffer, 0, 4), new Float64Array(buffer, 16, 1), reports)
  await Promise.all(workers.map((worker) => worker.terminate()))
  return outcome
}

async function measureContention(flags, counter, reports) {
  Atomics.store(flags, 0, 1)
  const started = performance.now()
  await new Promise((resolve) => setTimeout(resolve, CONTENDED_MS))
  Atomics.store(flags, 1, 1)
  const counts = (await Promise.all(reports)).map((r) => r.mine)
  const seconds = (performance.now() - started) / 1000
  const total = counts.reduce((a, b) => a + b, 0)
  if (counter[0] !== total) throw new Error(`lost updates: counter ${counter[0]} != acquisitions ${total}`)
  return { rate: total / seconds, shares: counts.map((c) => c / total) }
}

async function contended() {
  // 1: the loop alone, no contention: the bound of every contended rate (docs/benchmarks.md)
  const levels = quick ? [2] : [1, 2, 4, 8]
  const pthread = pthreadBinary()
  results.pthread = pthread.skipped ? { skipped: pthread.skipped } : {}
  results.contended = {}
  for (const contenders of levels) {
    const runs = { shmkit: [], sab: [], pthread: [] }
    for (let round = 0; round < (quick ? 1 : 3); round++) {
      runs.shmkit.push(await contendedShmkit(contenders))
      runs.sab.push(await contendedSab(contenders))
      if (pthread.binary) runs.pthread.push(await contendedPthread(pthread.binary, contenders))
    }
    results.contended[contenders] = Object.fromEntries(
      Object.entries(runs)
        .filter(([, r]) => r.length > 0)
        .map(([name, r]) => [
          name,
          { ...summary(r.map((x) => x.rate)), minShare: Math.min(...r.flatMap((x) => x.shares)) },
        ]),
    )
  }
  if (pthread.binary) fs.rmSync(pthread.binary, { force: true })
}

async function python() {
  try {
    const { stdout } = await promisify(execFile)(
      'python3',
      [new URL('./contenders/python_lock.py', import.meta.url).pathname, String(CONTENDED_MS / 1000), '2'],
      { timeout: 60_000 },
    )
    results.python = JSON.parse(stdout)
  } catch (error) {
    results.python = { skipped: `python3 unavailable: ${error.message.split('\n')[0]}` }
  }
}

async function properLockfile() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shmkit-bench-'))
  const file = path.join(dir, 'lock-target')
  fs.writeFileSync(file, '')
  const deadline = performance.now() + CONTENDED_MS
  const started = performance.now()
  let done = 0
  while (performance.now() < deadline) {
    const release = await lockfile.lock(file, { realpath: false })
    await release()
    done++
  }
  results.properLockfile = { uncontended: done / ((performance.now() - started) / 1000) }
  fs.rmSync(dir, { recursive: true })
}

uncontended()
await contended()
await python()
await properLockfile()

const u = results.uncontended
const rows = [
  [
    'lock+unlock, uncontended',
    'shmkit lock({ timeout })',
    formatRate(u.shmkitTimeout.median),
    `${(u.shmkitTimeout.median / u.sab.median).toFixed(2)}x SAB mutex; ${(u.shmkitTimeout.median / u.shmkit.median).toFixed(2)}x lock()`,
  ],
  ['', 'shmkit lock()', formatRate(u.shmkit.median), `${(u.shmkit.median / u.sab.median).toFixed(2)}x SAB mutex`],
  ['', 'SAB futex mutex (1 thread)', formatRate(u.sab.median), ''],
]
if (results.python.uncontended)
  rows.push([
    '',
    'Python multiprocessing.Lock',
    formatRate(results.python.uncontended),
    `shmkit is ${(u.shmkitTimeout.median / results.python.uncontended).toFixed(0)}x`,
  ])
rows.push([
  '',
  'proper-lockfile (async)',
  formatRate(results.properLockfile.uncontended),
  `shmkit is ${(u.shmkitTimeout.median / results.properLockfile.uncontended).toFixed(0)}x`,
])
for (const [n, r] of Object.entries(results.contended)) {
  const pthreadRatio = r.pthread ? `, ${(r.shmkit.median / r.pthread.median).toFixed(2)}x pthread` : ''
  rows.push([
    `lock+inc+unlock, ${n} contender${n === '1' ? '' : 's'}`,
    `shmkit (${plural(n, 'process', 'processes')})`,
    formatRate(r.shmkit.median),
    `${(r.shmkit.median / r.sab.median).toFixed(2)}x SAB${pthreadRatio}; smallest share ${(r.shmkit.minShare * 100).toFixed(0)}%`,
  ])
  rows.push([
    '',
    `SAB futex mutex (${plural(n, 'thread', 'threads')})`,
    formatRate(r.sab.median),
    `smallest share ${(r.sab.minShare * 100).toFixed(0)}%`,
  ])
  if (r.pthread)
    rows.push([
      '',
      `C pthread mutex (${plural(n, 'process', 'processes')})`,
      formatRate(r.pthread.median),
      `smallest share ${(r.pthread.minShare * 100).toFixed(0)}%`,
    ])
}
if (results.pthread.skipped) rows.push(['', 'C pthread mutex', 'skipped', results.pthread.skipped])
if (results.python.contended)
  rows.push([
    'lock+inc+unlock, 2 contenders',
    'Python (2 processes)',
    formatRate(results.python.contended),
    `smallest share ${(Math.min(...results.python.shares) * 100).toFixed(0)}%`,
  ])

const widths = [0, 1, 2, 3].map((c) => Math.max(...rows.map((r) => r[c].length)))
console.log(
  `\nLocks (${os.cpus().length} cores, ${os.cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}; medians of ${ROUNDS} rounds)\n`,
)
for (const row of rows) console.log(row.map((cell, c) => cell.padEnd(widths[c])).join('  '))
writeResults(jsonPath, results)
