// One soak participant, run as a child process. argv: role name worker [lockerIndex]
//   locker    increments random counters under their mutexes, repairing after an owner death
//   producer  sends [producer u32][seq u32][payload] messages until told to stop
//   consumer  receives until the channel is closed and drained, checking every message
//   jobber    sends numbered jobs into the jobs channel until told to stop
//   taker     takes jobs with ch.take(), works a little, acks, and reports each ack that
//             succeeded through the acks channel (a channel survives its sender's SIGKILL)
import { Channel, Mutex, Segment } from '../index.js'
import { COUNTERS, MAX_LOCKERS, STOP, contributionOffset, mutexOffset, valueOffset } from './layout.mjs'

const [role, name, workerText, lockerText] = process.argv.slice(2)
const worker = Number(workerText)
const lockerIndex = Number(lockerText)
const segment = Segment.open(`${name}-counters`)
const stop = new Int32Array(segment.buffer, STOP, 1)
const view = new DataView(segment.buffer)
const stopped = () => Atomics.load(stop, 0) !== 0
const random = (limit) => Math.floor(Math.random() * limit)

function sumOfContributions(slot) {
  let sum = 0
  for (let l = 0; l < MAX_LOCKERS; l++) sum += view.getFloat64(contributionOffset(slot, l), true)
  return sum
}

async function locker() {
  const mutexes = Array.from({ length: COUNTERS }, (_, slot) => Mutex.at(segment, mutexOffset(slot)))
  let increments = 0
  let recoveries = 0
  while (!stopped()) {
    for (let i = 0; i < 200; i++) {
      const slot = random(COUNTERS)
      const guard = mutexes[slot].lock({ timeout: 10_000 })
      if (guard.ownerDied) {
        // The holder died mid-update: make the data consistent again, as the protocol says.
        recoveries++
        view.setFloat64(valueOffset(slot), sumOfContributions(slot), true)
      }
      view.setFloat64(valueOffset(slot), view.getFloat64(valueOffset(slot), true) + 1, true)
      if (i === 0) {
        // Now and then, linger inside the critical section, so kills land there too.
        const until = performance.now() + 0.2
        while (performance.now() < until);
      }
      view.setFloat64(
        contributionOffset(slot, lockerIndex),
        view.getFloat64(contributionOffset(slot, lockerIndex), true) + 1,
        true,
      )
      increments++
      guard.unlock()
    }
    await new Promise((resolve) => setImmediate(resolve))
  }
  return { increments, recoveries }
}

async function producer() {
  const channel = Channel.open(`${name}-work`)
  let seq = 0
  while (!stopped()) {
    for (let i = 0; i < 50; i++) {
      const length = random(200)
      const message = new Uint8Array(8 + length)
      const header = new DataView(message.buffer)
      header.setUint32(0, worker, true)
      header.setUint32(4, seq, true)
      message.fill(seq & 0xff, 8)
      channel.send(message, { timeout: 10_000 })
      seq++
    }
    await new Promise((resolve) => setImmediate(resolve))
  }
  channel.close()
  return { sent: seq }
}

async function consumer() {
  const channel = Channel.open(`${name}-work`)
  const seen = {}
  let damaged = 0
  for await (const message of channel) {
    const header = new DataView(message.buffer, message.byteOffset, message.byteLength)
    const producerId = header.getUint32(0, true)
    const seq = header.getUint32(4, true)
    for (let i = 8; i < message.length; i++) if (message[i] !== (seq & 0xff)) damaged++
    ;(seen[producerId] ??= []).push(seq)
  }
  channel.close()
  return { seen, damaged }
}

async function jobber() {
  const jobs = Channel.open(`${name}-jobs`, { codec: 'json' })
  let seq = 0
  while (!stopped()) {
    for (let i = 0; i < 20; i++) await jobs.sendAsync({ seq: seq++ }, { timeout: 10_000 })
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
  jobs.close()
  return { sent: seq }
}

async function taker() {
  const jobs = Channel.open(`${name}-jobs`, { codec: 'json' })
  const acks = Channel.open(`${name}-acks`, { codec: 'json' })
  let acked = 0
  for (;;) {
    let job
    try {
      job = await jobs.take({ leaseMs: 5_000, timeout: 30_000 })
    } catch (error) {
      if (error.code === 'ERR_SHM_CHANNEL_ENDED') break
      throw error
    }
    // The work: usually a tick, now and then longer, so that kills land between take and ack.
    await new Promise((resolve) => (random(10) === 0 ? setTimeout(resolve, 1) : setImmediate(resolve)))
    if (job.ack()) {
      acks.send({ seq: job.value.seq, deliveries: job.deliveries }, { timeout: 10_000 })
      acked++
    }
  }
  jobs.close()
  acks.close()
  return { acked }
}

const run = { locker, producer, consumer, jobber, taker }[role]
const report = await run()
segment.close()
process.send(report, () => process.exit(0))
