// A configuration broadcast to `cluster` workers through one Topic: the primary publishes each
// new configuration once, and every worker receives every one, in order, without the primary
// sending anything to each worker. A worker that starts late sees what is published after it
// subscribed (it reads the current configuration from a SharedMap first). The primary checks what
// each worker reports.
//
//   node examples/broadcast.js [workers] [changes]
//
// Everything below uses only the public API, as an application would.
'use strict'

const cluster = require('node:cluster')
const { SharedMap, Topic } = require('shmkit')

if (cluster.isPrimary) {
  primary(Number(process.argv[2] ?? 3), Number(process.argv[3] ?? 1000)).catch((error) => {
    console.error(error)
    process.exit(1)
  })
} else worker(process.env.TOPIC, process.env.CURRENT)

async function primary(workers, changes) {
  const name = `broadcast-demo-${process.pid}`
  // autoUnlink: both go away when the last process holding them exits, even after a crash.
  const topic = Topic.create(name, { capacity: 1 << 16, autoUnlink: true })
  const current = SharedMap.create(`${name}-current`, { capacity: 16, autoUnlink: true })
  current.set('config', { version: 0, level: 'info' })

  const ready = []
  const reports = []
  for (let i = 0; i < workers; i++) {
    const child = cluster.fork({ TOPIC: name, CURRENT: `${name}-current` })
    ready.push(new Promise((resolve) => child.once('message', resolve)))
    reports.push(new Promise((resolve) => child.on('message', (m) => m.done && resolve(m))))
  }
  await Promise.all(ready) // every worker has subscribed

  const started = performance.now()
  for (let version = 1; version <= changes; version++) {
    const config = { version, level: version % 2 ? 'debug' : 'info', flags: { canary: version % 10 === 0 } }
    current.set('config', config) // for workers that start later
    await topic.publishAsync(config) // one publish, every worker receives it
  }
  topic.end() // the workers' loops end once they have read everything
  const elapsed = performance.now() - started

  for (const report of await Promise.all(reports)) {
    if (report.received !== changes || !report.inOrder || report.last !== changes) {
      throw new Error(`worker ${report.pid} got ${report.received} of ${changes} (in order: ${report.inOrder})`)
    }
  }
  console.log(
    `${workers} workers each received all ${changes.toLocaleString('en-US')} configurations in order ` +
      `(${Math.round(elapsed)} ms, a shared-map write and an awaited publish for each)`,
  )
  topic.close()
  current.close()
  for (const child of Object.values(cluster.workers)) child.disconnect()
}

async function worker(topicName, currentName) {
  const config = SharedMap.open(currentName)
  const updates = Topic.open(topicName).subscribe()
  let active = config.get('config') // the configuration as it is now; updates follow
  process.send({ ready: true })
  let received = 0
  let inOrder = true
  for await (const next of updates) {
    if (next.version !== active.version + 1) inOrder = false
    active = next
    received++
  }
  process.send({ done: true, pid: process.pid, received, inOrder, last: active.version })
  updates.close()
}
