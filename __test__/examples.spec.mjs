// The examples double as end-to-end tests: they run as users run them and must report exact counts.
import test from 'ava'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'

const run = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))

test('the counter example ends exact, with and without the lock', async (t) => {
  const { stdout } = await run(process.execPath, ['examples/counter.js', '50000'], { cwd: root, timeout: 60_000 })
  t.regex(stdout, /Final count: 50,000 \(expected 50,000\) exact/)
  t.regex(stdout, /Final: 100,000 \(expected 100,000\) exact/)
  t.regex(stdout, /B reads 50,000/)
})

test('the pipeline example delivers every value exactly once across processes', async (t) => {
  const { stdout } = await run(process.execPath, ['examples/pipeline.js', '20000'], { cwd: root, timeout: 60_000 })
  t.regex(stdout, /B received 20,000 values, sum 200,010,000 \(expected 200,010,000\) exact/)
})

test('the web cluster example shares sessions, an exact rate limit and live config across workers', async (t) => {
  const { stdout } = await run(process.execPath, ['examples/web-cluster.js', '2'], { cwd: root, timeout: 60_000 })
  t.regex(stdout, /session made by worker \d+, read by workers \d+, \d+/)
  t.regex(stdout, /rate limiter: 10 of 25 requests passed/)
  t.regex(stdout, /config reloaded by 2 workers: they now say "bonjour"/)
})

test('the broadcast example delivers every configuration to every cluster worker, in order', async (t) => {
  const { stdout } = await run(process.execPath, ['examples/broadcast.js', '3', '2000'], { cwd: root, timeout: 60_000 })
  t.regex(stdout, /3 workers each received all 2,000 configurations in order/)
})

test('the job queue example loses nothing when a worker is killed with SIGKILL', async (t) => {
  const { stdout } = await run(process.execPath, ['examples/job-queue.js', '3', '300'], { cwd: root, timeout: 60_000 })
  t.regex(stdout, /killed worker \d+ \(kill -9\) while it held a job/)
  t.regex(stdout, /300 jobs, each acknowledged exactly once; [1-9]\d* delivered again after the kill/)
})
