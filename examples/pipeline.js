// The channel example: a producer process sends values through a shared-memory channel to a
// consumer process, which sums them; then closes it, and the consumer's loop ends when drained.
//
//   node examples/pipeline.js [count]
'use strict'

const { fork } = require('node:child_process')
const { Channel } = require('shmkit')

const [role, name, countText] = process.argv.slice(2)

if (role === 'producer') produce(name, Number(countText))
else if (role === 'consumer') consume(name)
else
  main(Number(role ?? 200_000)).catch((error) => {
    console.error(error)
    process.exit(1)
  })

/** Process A: sends `count` JSON values, then closes the channel (end of stream). */
async function produce(name, count) {
  const channel = Channel.open(name)
  const started = process.hrtime.bigint()
  for (let n = 1; n <= count; n++) channel.send({ n, square: n * n })
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  channel.end()
  process.send({ seconds })
  channel.close()
}

/** Process B: receives until the channel is closed and drained. */
async function consume(name) {
  const channel = Channel.open(name)
  let received = 0
  let sum = 0
  for await (const value of channel) {
    received++
    sum += value.n
  }
  process.send({ received, sum })
  channel.close()
}

function run(role, name, count) {
  const child = fork(__filename, [role, name, String(count)])
  return new Promise((resolve, reject) => {
    let report
    child.on('message', (message) => (report = message))
    child.on('error', reject)
    child.on('exit', (code) => (code === 0 ? resolve(report) : reject(new Error(`${role} exited with ${code}`))))
  })
}

async function main(count) {
  const name = `shmkit-demo-pipeline-${process.pid}`
  const channel = Channel.create(name, { capacity: 1 << 16, codec: 'json' })
  try {
    console.log(
      `Channel "${name}" (64 KiB ring, json): process A sends ${count.toLocaleString('en-US')} values to process B.`,
    )
    const [consumer, producer] = await Promise.all([run('consumer', name, 0), run('producer', name, count)])
    const expected = (count * (count + 1)) / 2
    const exact = consumer.received === count && consumer.sum === expected
    console.log(
      `B received ${consumer.received.toLocaleString('en-US')} values, sum ${consumer.sum.toLocaleString('en-US')} (expected ${expected.toLocaleString('en-US')}) ${exact ? 'exact' : 'WRONG'}`,
    )
    console.log(
      `A sent ${(count / producer.seconds / 1e6).toFixed(2)} M values per second, JSON-encoded, with backpressure`,
    )
    if (!exact) process.exitCode = 1
  } finally {
    channel.close()
    channel.unlink()
  }
}
