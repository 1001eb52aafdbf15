// The soak test: `npm run soak -- --seconds N [--json]`.
//
// Lockers increment counters under shared mutexes, producers send through a channel to
// consumers, a jobber feeds acknowledged consumers (takers: ch.take() / job.ack()), and every
// ~250 ms a random locker, taker or the victim producer is SIGKILLed and replaced. At the end it
// checks, and prints: every message sent by a surviving producer was received exactly once and
// whole, each killed producer's delivered messages form a gap-free prefix, every job was
// acknowledged exactly once (an ack whose report a kill cut off is counted, at most one per
// killed taker) and none is left in flight, every counter equals the sum of its per-worker
// contributions, each surviving locker's increments are all there, and nothing deadlocked (every
// wait has a deadline). Exits non-zero on any failure.
import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'

import { Channel, Mutex, Segment, SharedMap } from '../index.js'
import { takenMessages } from '../lib/queue.js'
import { COUNTERS, MAX_LOCKERS, SEGMENT_BYTES, STOP, contributionOffset, mutexOffset, valueOffset } from './layout.mjs'

const args = process.argv.slice(2)
const secondsIndex = args.indexOf('--seconds')
const seconds = secondsIndex >= 0 ? Number(args[secondsIndex + 1]) : 20
if (!(seconds > 0 && seconds <= 3600)) throw new Error('--seconds must be between 0 and 3600')
const json = args.includes('--json')
const workerScript = fileURLToPath(new URL('./worker.mjs', import.meta.url))
const name = `soak-${process.pid}`

const segment = Segment.create(`${name}-counters`, { size: SEGMENT_BYTES })
const channel = Channel.create(`${name}-work`, { capacity: 1 << 16 })
const jobs = Channel.create(`${name}-jobs`, { capacity: 1 << 12, codec: 'json' })
const acks = Channel.create(`${name}-acks`, { capacity: 1 << 16, codec: 'json' })
/** Acknowledged jobs as reported: seq -> times acked, and how many came with deliveries > 1. */
const acked = new Map()
let redelivered = 0
function drainAcks() {
  for (let report = acks.tryRecv(); report !== undefined; report = acks.tryRecv()) {
    acked.set(report.seq, (acked.get(report.seq) ?? 0) + 1)
    if (report.deliveries > 1) redelivered++
  }
}
const view = new DataView(segment.buffer)
let nextWorker = 0
let nextLocker = 0
const failures = []
const stats = { kills: 0, restarts: 0, takerKills: 0 }

/** Starts a participant; resolves its report, or null if it was killed. */
function start(role) {
  const worker = nextWorker++
  const locker = role === 'locker' ? nextLocker++ : -1
  const child = fork(workerScript, [role, name, String(worker), String(locker)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  let report = null
  const done = new Promise((resolve) => {
    child.on('message', (message) => (report = message))
    child.on('exit', (code, signal) => {
      if (signal === null && code !== 0) failures.push(`${role} ${worker} exited with ${code}`)
      resolve(report)
    })
  })
  return { role, worker, locker, child, done, killed: false }
}

const lockers = [start('locker'), start('locker'), start('locker')]
const survivors = [start('producer'), start('producer')]
const victims = [start('producer')]
const consumers = [start('consumer'), start('consumer')]
const jobber = start('jobber')
const takers = [start('taker'), start('taker'), start('taker')]

const started = Date.now()
while (Date.now() - started < seconds * 1000) {
  await new Promise((resolve) => setTimeout(resolve, 150 + Math.random() * 200))
  drainAcks()
  // Lockers are replaced while columns for new ones remain; takers and the victim producer always.
  const pool = [
    ...(nextLocker < MAX_LOCKERS ? lockers.filter((l) => !l.killed) : []),
    ...takers.filter((t) => !t.killed),
    victims.at(-1),
  ]
  const target = pool[Math.floor(Math.random() * pool.length)]
  target.killed = true
  target.child.kill('SIGKILL')
  stats.kills++
  await target.done
  if (target.role === 'taker') stats.takerKills++
  const replacement = start(target.role)
  ;({ locker: lockers, taker: takers, producer: victims })[target.role].push(replacement)
  stats.restarts++
}

Atomics.store(new Int32Array(segment.buffer, STOP, 1), 0, 1)
const lockerReports = await Promise.all(lockers.map(async (l) => ({ ...l, report: await l.done })))
const producerReports = await Promise.all([...survivors, ...victims].map(async (p) => ({ ...p, report: await p.done })))
channel.end()
const consumerReports = await Promise.all(consumers.map((c) => c.done))
const jobberReport = await jobber.done
jobs.end()
const takerReports = await Promise.all(takers.filter((t) => !t.killed).map((t) => t.done))
drainAcks()

// Messages: exactly once for survivors, a gap-free prefix for killed producers.
const received = {}
let damaged = 0
for (const report of consumerReports) {
  if (!report) {
    failures.push('a consumer did not report')
    continue
  }
  damaged += report.damaged
  for (const [producer, seqs] of Object.entries(report.seen)) {
    for (let i = 1; i < seqs.length; i++)
      if (seqs[i] <= seqs[i - 1]) failures.push(`producer ${producer}: out of order at a consumer`)
    const all = (received[producer] ??= [])
    for (const seq of seqs) all.push(seq)
  }
}
if (damaged) failures.push(`${damaged} damaged bytes`)
let messages = 0
for (const p of producerReports) {
  const seqs = (received[p.worker] ?? []).sort((a, b) => a - b)
  messages += seqs.length
  if (!seqs.every((seq, i) => seq === i)) failures.push(`producer ${p.worker}: duplicates or gaps`)
  if (!p.killed && p.report && seqs.length !== p.report.sent)
    failures.push(`producer ${p.worker}: sent ${p.report.sent}, received ${seqs.length}`)
}

// Jobs: each acknowledged exactly once; missing reports at most one per killed taker; none left.
let jobsAcked = 0
if (!jobberReport) failures.push('the jobber did not report')
else {
  let missing = 0
  for (let seq = 0; seq < jobberReport.sent; seq++) {
    const times = acked.get(seq) ?? 0
    if (times > 1) failures.push(`job ${seq} acknowledged ${times} times`)
    if (times === 0) missing++
  }
  jobsAcked = jobberReport.sent - missing
  if (missing > stats.takerKills)
    failures.push(`${missing} jobs never reported acknowledged, more than the ${stats.takerKills} killed takers`)
}
if (takerReports.some((r) => !r)) failures.push('a surviving taker did not report')
const leftInFlight = takenMessages(`${name}-jobs`) ?? []
if (leftInFlight.length || jobs.stats().messagesInFlight)
  failures.push(`jobs left: ${leftInFlight.length} in flight, ${jobs.stats().messagesInFlight} in the ring`)

// Counters: consistent, and every surviving locker's increments are all there.
let lockOperations = 0
let recoveries = 0
let takeovers = 0
for (let slot = 0; slot < COUNTERS; slot++) {
  const mutex = Mutex.at(segment, mutexOffset(slot))
  const guard = mutex.lock({ timeout: 5000 })
  takeovers += mutex.stats().ownerDeaths
  let sum = 0
  for (let l = 0; l < nextLocker; l++) sum += view.getFloat64(contributionOffset(slot, l), true)
  const value = view.getFloat64(valueOffset(slot), true)
  if (guard.ownerDied) recoveries++
  else if (value !== sum) failures.push(`counter ${slot}: value ${value} != sum of contributions ${sum}`)
  lockOperations += sum
  guard.unlock()
}
for (const l of lockerReports.filter((l) => !l.killed)) {
  if (!l.report) {
    failures.push(`locker ${l.worker} did not report`)
    continue
  }
  recoveries += l.report.recoveries
  let mine = 0
  for (let slot = 0; slot < COUNTERS; slot++) mine += view.getFloat64(contributionOffset(slot, l.locker), true)
  if (mine !== l.report.increments)
    failures.push(`locker ${l.worker}: did ${l.report.increments} increments, ${mine} recorded`)
}

const elapsed = (Date.now() - started) / 1000
const summary = {
  seconds: Number(elapsed.toFixed(1)),
  processes: nextWorker,
  kills: stats.kills,
  lockOperations,
  ownerDeathTakeovers: takeovers,
  repairsReported: recoveries,
  messagesDelivered: messages,
  jobsAcked,
  jobsRedelivered: redelivered,
  takerKills: stats.takerKills,
  failures,
}
segment.close()
channel.close()
jobs.close()
acks.close()
Segment.unlink(`${name}-counters`)
Channel.unlink(`${name}-work`)
Channel.unlink(`${name}-jobs`)
Channel.unlink(`${name}-acks`)
SharedMap.unlink(`${name}-jobs.inflight`)
if (json) console.log(JSON.stringify(summary, null, 2))
else {
  console.log(`soak: ${summary.seconds} s, ${summary.processes} processes, ${summary.kills} SIGKILLs survived`)
  console.log(
    `  ${summary.lockOperations.toLocaleString('en-US')} lock-protected increments, every counter exact; ${takeovers} locks taken over from a killed holder (and repaired)`,
  )
  console.log(`  ${summary.messagesDelivered.toLocaleString('en-US')} messages delivered, each exactly once and whole`)
  console.log(
    `  ${summary.jobsAcked.toLocaleString('en-US')} jobs acknowledged, each exactly once; ${redelivered} redelivered after ${stats.takerKills} taker kills`,
  )
  for (const failure of failures) console.log(`  FAILURE: ${failure}`)
  console.log(failures.length ? 'soak FAILED' : 'soak passed')
}
process.exitCode = failures.length ? 1 : 0
