// A job queue that loses nothing when a worker dies: the primary queues jobs on a channel, worker
// processes `take()` them and `ack()` each when it is done. Job 10 is a slow one, and the worker
// that takes it is killed with SIGKILL in the middle of it; the job it held is delivered again to
// another worker (its `deliveries` says so) and every job is acknowledged exactly once. The
// primary checks.
//
//   node examples/job-queue.js [workers] [jobs]
//
// Everything below uses only the public API, as an application would.
'use strict'

const { fork } = require('node:child_process')
const { Channel, SharedMap } = require('shmkit')

const [role, name] = process.argv.slice(2)
if (role === 'worker') worker(name)
else
  primary(Number(process.argv[2] ?? 3), Number(process.argv[3] ?? 300)).catch((error) => {
    console.error(error)
    process.exit(1)
  })

async function primary(workers, jobs) {
  const name = `job-queue-demo-${process.pid}`
  const queue = Channel.create(name, { capacity: 1 << 16, codec: 'json' })
  const done = SharedMap.create(`${name}-done`, { capacity: jobs + 16 }) // job -> times acknowledged
  for (let id = 0; id < jobs; id++) await queue.sendAsync({ id, work: `thumbnail ${id}`, slow: id === 10 })

  const children = Array.from({ length: workers }, () => fork(__filename, ['worker', name]))
  const redelivered = new Set()
  for (const child of children)
    child.on('message', (m) => m.redelivered !== undefined && redelivered.add(m.redelivered))
  // Kill the worker that holds the slow job, in the middle of it.
  const victim = await new Promise((resolve) => {
    for (const child of children) child.on('message', (m) => m.slow && resolve(child))
  })
  victim.kill('SIGKILL')
  console.log(`killed worker ${victim.pid} (kill -9) while it held a job`)

  while (done.size < jobs) await new Promise((resolve) => setTimeout(resolve, 20))
  queue.end() // the workers' take() loops end once nothing is left
  // 'close' comes after the last message a worker sent.
  const survivors = children.filter((child) => child !== victim)
  await Promise.all(survivors.map((child) => new Promise((resolve) => child.on('close', resolve))))
  const counts = [...done.values()]
  if (counts.length !== jobs || counts.some((n) => n !== 1)) throw new Error(`acknowledged: ${counts}`)
  console.log(`${jobs} jobs, each acknowledged exactly once; ${redelivered.size} delivered again after the kill`)
  queue.close()
  done.close()
  Channel.unlink(name)
  SharedMap.unlink(`${name}-done`)
  SharedMap.unlink(`${name}.inflight`)
}

async function worker(name) {
  const queue = Channel.open(name)
  const done = SharedMap.open(`${name}-done`)
  for (;;) {
    let job
    try {
      job = await queue.take({ leaseMs: 10_000 })
    } catch (error) {
      if (error.code === 'ERR_SHM_CHANNEL_ENDED') break
      throw error
    }
    if (job.deliveries > 1) process.send({ redelivered: job.value.id })
    // The work: the slow job, the first time, takes longer than the primary lets it live.
    const slow = job.value.slow && job.deliveries === 1
    if (slow) process.send({ slow: job.value.id })
    await new Promise((resolve) => setTimeout(resolve, slow ? 60_000 : 2))
    if (job.ack()) done.increment(String(job.value.id))
  }
  queue.close()
  done.close()
  process.disconnect()
}
