// The classic example: process A increments a shared counter under the mutex while process B
// reads it under the same mutex; then the lock-free variant with Atomics.add on the segment.
//
//   node examples/counter.js [increments]
//
// Everything below uses only the public API, as an application would.
'use strict'

const { fork } = require('node:child_process')
const { Segment } = require('shmkit')

const COUNTER = 0 // Float64 at byte 0, guarded by seg.mutex
const DONE = 8 // Int32 flag at byte 8: A sets it when finished
const ATOMIC = 16 // Int32 at byte 16, updated lock-free with Atomics.add

const [role, name, increments] = process.argv.slice(2)

if (role === 'incrementer') incrementer(name, Number(increments))
else if (role === 'reader') reader(name)
else if (role === 'atomic-adder') atomicAdder(name, Number(increments))
else
  main(Number(role ?? 1_000_000)).catch((error) => {
    console.error(error)
    process.exit(1)
  })

/** Process A: counter += 1 under the lock, `increments` times. */
function incrementer(name, increments) {
  const seg = Segment.open(name)
  const counter = new Float64Array(seg.buffer, COUNTER, 1)
  const started = process.hrtime.bigint()
  for (let i = 0; i < increments; i++) {
    const guard = seg.mutex.lock()
    counter[0] += 1
    guard.unlock()
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  Atomics.store(new Int32Array(seg.buffer), DONE / 4, 1)
  seg.notify(DONE)
  process.send({ seconds })
  seg.close()
}

/** Process B: reads the counter under the same lock until A is done. */
async function reader(name) {
  const seg = Segment.open(name)
  const counter = new Float64Array(seg.buffer, COUNTER, 1)
  const flags = new Int32Array(seg.buffer)
  let reads = 0
  let last = -1
  // Wait until the message is out before blocking this thread: some runtimes (Deno) send IPC
  // messages from the event loop, which the loop below does not give a turn.
  await new Promise((resolve) => process.send({ ready: true }, resolve))
  for (;;) {
    // Sleep up to 20 ms, or until A notifies that it is done.
    const finished = seg.wait(DONE, 0, 20) !== 'timed-out' || Atomics.load(flags, DONE / 4) === 1
    const guard = seg.mutex.lock()
    const seen = counter[0]
    guard.unlock()
    reads++
    if (seen < last) throw new Error(`counter went backwards: ${last} -> ${seen}`)
    if (seen !== last) console.log(`  B reads ${seen.toLocaleString('en-US')}`)
    last = seen
    if (finished) break
  }
  process.send({ final: last, reads })
  seg.close()
}

/** Lock-free variant: Atomics.add on the mapped memory is a real atomic instruction across processes. */
function atomicAdder(name, increments) {
  const seg = Segment.open(name)
  const words = new Int32Array(seg.buffer)
  const started = process.hrtime.bigint()
  for (let i = 0; i < increments; i++) Atomics.add(words, ATOMIC / 4, 1)
  process.send({ seconds: Number(process.hrtime.bigint() - started) / 1e9 })
  seg.close()
}

/** Forks this file in `role`; resolves with its last report. `onReady` fires on a `{ ready }` message. */
function run(role, name, increments, onReady = () => {}) {
  const child = fork(__filename, [role, name, String(increments)])
  return new Promise((resolve, reject) => {
    let report
    child.on('message', (message) => (message.ready ? onReady() : (report = message)))
    child.on('error', reject)
    child.on('exit', (code) => (code === 0 ? resolve(report) : reject(new Error(`${role} exited with ${code}`))))
  })
}

async function main(increments) {
  const name = `shmkit-demo-counter-${process.pid}`
  const seg = Segment.create(name, { size: 4096 })
  try {
    console.log(
      `Segment "${name}": A increments a counter ${increments.toLocaleString('en-US')} times under seg.mutex; B reads it under the same mutex.`,
    )
    // B starts first, so it watches the whole run.
    let readerReady
    const ready = new Promise((resolve) => (readerReady = resolve))
    const reading = run('reader', name, 0, readerReady)
    await ready
    const [a, b] = await Promise.all([run('incrementer', name, increments), reading])
    const final = new Float64Array(seg.buffer, COUNTER, 1)[0]
    const exact = final === increments && b.final === increments
    console.log(
      `Final count: ${final.toLocaleString('en-US')} (expected ${increments.toLocaleString('en-US')}) ${exact ? 'exact' : 'WRONG'}`,
    )
    console.log(
      `A: ${rate(increments, a.seconds)} lock+increment+unlock per second while B took the lock ${b.reads} times`,
    )

    console.log(`\nLock-free: two processes each do ${increments.toLocaleString('en-US')} Atomics.add on the segment.`)
    const adders = await Promise.all([run('atomic-adder', name, increments), run('atomic-adder', name, increments)])
    const total = Atomics.load(new Int32Array(seg.buffer), ATOMIC / 4)
    const atomicExact = total === 2 * increments
    console.log(
      `Final: ${total.toLocaleString('en-US')} (expected ${(2 * increments).toLocaleString('en-US')}) ${atomicExact ? 'exact' : 'WRONG'}`,
    )
    console.log(`Each process: ${adders.map((r) => rate(increments, r.seconds)).join(' and ')} Atomics.add per second`)
    if (!exact || !atomicExact) process.exitCode = 1
  } finally {
    seg.close()
    seg.unlink()
  }
}

function rate(count, seconds) {
  return `${(count / seconds / 1e6).toFixed(2)} M`
}
