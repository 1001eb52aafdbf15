// The NATS JetStream bridge (docs/BRIDGE.md) against a real nats-server, started here with
// JetStream on 127.0.0.1 and a free port. Two hosts are two mount namespaces, each with its own
// /dev/shm: what crosses between them crosses through the broker. Bridges and the broker are
// SIGKILLed and restarted for real. Skipped, saying why, where nats-server is not installed.
import test from 'ava'
import { execFileSync, spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { Channel, SharedMap, Topic } from '../index.js'
import { bridge } from '../lib/bridge.js'
import { startFixture, uniqueName } from './helpers.mjs'

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)))
const cli = path.join(root, 'bin', 'shmkit.js')

function which(command) {
  try {
    return execFileSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' }).trim() || undefined
  } catch {
    return undefined
  }
}
const natsServer = which('nats-server')
const canUnshare = (() => {
  if (process.platform !== 'linux' || process.getuid?.() !== 0 || !which('nsenter')) return false
  try {
    execFileSync('unshare', ['-m', 'true'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
})()
if (!natsServer) console.log('bridge tests skipped: nats-server is not installed (apt-get install nats-server)')
const withNats = natsServer ? test.serial : test.skip
const withHosts = natsServer && canUnshare ? test.serial : test.skip

async function freePort() {
  const server = net.createServer()
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** A nats-server with JetStream, its store in a temporary folder; `restart()` kills it (SIGKILL) and starts it again. */
async function startBroker(t) {
  const port = await freePort()
  const store = fs.mkdtempSync(path.join(os.tmpdir(), 'shmkit-nats-'))
  let child
  const start = async () => {
    child = spawn(natsServer, ['-js', '-sd', store, '-a', '127.0.0.1', '-p', String(port)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let log = ''
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`nats-server did not start: ${log}`)), 15_000)
      const look = (chunk) => {
        log += chunk
        if (log.includes('Server is ready')) {
          clearTimeout(timer)
          resolve()
        }
      }
      child.stdout.on('data', look)
      child.stderr.on('data', look)
      child.on('exit', () => reject(new Error(`nats-server exited: ${log}`)))
    })
  }
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGKILL')
    await exited
  }
  await start()
  t.teardown(async () => {
    await stop()
    fs.rmSync(store, { recursive: true, force: true })
  })
  return {
    url: `nats://127.0.0.1:${port}`,
    stop,
    start,
    async restart() {
      await stop()
      await start()
    },
  }
}

/** A simulated host: a mount namespace with a /dev/shm of its own, held open by a sleeping process. */
async function startHost(t) {
  const holder = spawn(
    'unshare',
    [
      '-m',
      '--propagation',
      'private',
      'sh',
      '-c',
      'mount -t tmpfs -o size=256m tmpfs /dev/shm && echo up && exec sleep 100000',
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  await new Promise((resolve, reject) => {
    holder.stdout.once('data', resolve)
    holder.once('exit', (code) => reject(new Error(`unshare exited with ${code}`)))
  })
  t.teardown(() => holder.kill('SIGKILL'))
  const enter = ['nsenter', '-t', String(holder.pid), '-m', '--']
  return {
    enter,
    /** A fixture (script.mjs body) run on this host. */
    fixture(body, ...args) {
      const child = startFixture('script.mjs', [body, ...args], { prefix: enter })
      t.teardown(() => child.kill('SIGKILL'))
      return child
    },
    /** `shmkit bridge ...` on this host; resolves once it logged that it connected. */
    async bridge(args) {
      const child = spawn(enter[0], [...enter.slice(1), process.execPath, cli, 'bridge', '--json', ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
        cwd: root,
      })
      t.teardown(() => child.kill('SIGKILL'))
      child.events = []
      let buffered = ''
      const onData = (chunk) => {
        buffered += chunk
        const lines = buffered.split('\n')
        buffered = lines.pop()
        for (const line of lines) {
          try {
            child.events.push(JSON.parse(line))
          } catch {
            child.events.push({ event: 'text', message: line })
          }
        }
      }
      child.stdout.on('data', onData)
      child.stderr.on('data', onData)
      await until(
        () => child.events.some((e) => e.event === 'connected'),
        15_000,
        () => JSON.stringify(child.events),
      )
      return child
    },
  }
}

async function until(condition, timeout = 30_000, describe = () => '') {
  const deadline = Date.now() + timeout
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${describe()}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

function killed(child) {
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGKILL')
  return exited
}

test('bridge() checks its options before it connects: coded errors', async (t) => {
  const rejects = (options, type, code) =>
    t.throwsAsync(() => bridge(options), { instanceOf: type, code }, JSON.stringify(options))
  await rejects(undefined, TypeError, 'ERR_INVALID_ARG_TYPE')
  await rejects({ exports: ['a'] }, TypeError, 'ERR_INVALID_ARG_TYPE')
  await rejects({ servers: [], exports: ['a'] }, TypeError, 'ERR_INVALID_ARG_TYPE')
  await rejects({ servers: 'nats://127.0.0.1:1' }, TypeError, 'ERR_INVALID_ARG_VALUE')
  await rejects({ servers: 'nats://127.0.0.1:1', exports: ['a/b'] }, TypeError, 'ERR_INVALID_ARG_VALUE')
  await rejects(
    { servers: 'nats://127.0.0.1:1', exports: [{ name: 'a', subject: 'x.*' }] },
    TypeError,
    'ERR_INVALID_ARG_VALUE',
  )
  await rejects({ servers: 'nats://127.0.0.1:1', exports: ['a..b'] }, TypeError, 'ERR_INVALID_ARG_VALUE')
  await rejects({ servers: 'nats://127.0.0.1:1', exports: ['a'], imports: ['a'] }, TypeError, 'ERR_INVALID_ARG_VALUE')
  await rejects({ servers: 'nats://127.0.0.1:1', exports: ['a', 'a'] }, TypeError, 'ERR_INVALID_ARG_VALUE')
  await rejects(
    { servers: 'nats://127.0.0.1:1', exports: ['a'], stream: 'no spaces' },
    TypeError,
    'ERR_INVALID_ARG_TYPE',
  )
  await rejects({ servers: 'nats://127.0.0.1:1', exports: ['a'], window: 0 }, RangeError, 'ERR_OUT_OF_RANGE')
  await rejects({ servers: 'nats://127.0.0.1:1', exports: ['a'], ackWait: 10 }, RangeError, 'ERR_OUT_OF_RANGE')
  await rejects({ servers: 'nats://127.0.0.1:1', exports: ['a'], colour: 'red' }, TypeError, 'ERR_INVALID_ARG_VALUE')
})

withNats('a missing stream is a clear error unless the bridge may create it', async (t) => {
  const broker = await startBroker(t)
  const error = await t.throwsAsync(() => bridge({ servers: broker.url, exports: ['x'], stream: 'ABSENT' }))
  t.is(error.code, 'ERR_SHM_NO_STREAM')
  t.regex(error.message, /ABSENT does not exist.*--create-stream/)
  const b = await bridge({ servers: broker.url, exports: ['x'], stream: 'ABSENT', createStream: true })
  t.true(b.status().connected)
  await b.close()
  t.is(b.status().routes[0].state, 'closed')
})

withNats('a channel crosses the bridge whole and in order, codec and end included; a topic too', async (t) => {
  const broker = await startBroker(t)
  const out = uniqueName(t, 'out')
  const into = uniqueName(t, 'in')
  const events = []
  const ch = Channel.create(out, { capacity: 4096, codec: 'json' })
  const topicOut = Topic.create(`${out}-t`, { capacity: 4096, codec: 'string' })
  t.teardown(() => {
    for (const name of [out, into]) {
      for (const cleanup of [
        () => Channel.unlink(name),
        () => SharedMap.unlink(`${name}.inflight`),
        () => SharedMap.unlink(`${name}.bridge`),
      ])
        try {
          cleanup()
        } catch {}
    }
    for (const name of [`${out}-t`, `${into}-t`]) {
      for (const cleanup of [() => Topic.unlink(name), () => SharedMap.unlink(`${name}.bridge`)])
        try {
          cleanup()
        } catch {}
    }
  })
  const b = await bridge({
    servers: broker.url,
    createStream: true,
    exports: [
      { name: out, subject: 'shmkit.orders' },
      { name: `${out}-t`, subject: 'shmkit.prices' },
    ],
    imports: [
      { name: into, subject: 'shmkit.orders' },
      { name: `${into}-t`, subject: 'shmkit.prices' },
    ],
    onEvent: (e) => events.push(e),
  })
  t.teardown(() => b.close())
  const N = 3000
  const sending = (async () => {
    for (let i = 0; i < N; i++) await ch.sendAsync({ i, pad: 'x'.repeat(i % 200) }, { timeout: 30_000 })
    ch.end()
  })()
  await until(
    () => fs.existsSync(`/dev/shm/shmkit.${into}`),
    30_000,
    () => JSON.stringify(events),
  )
  const received = Channel.open(into)
  t.is(received.codec, 'json', 'the import created a json channel, as the export sent')
  const got = []
  for await (const m of received) got.push(m.i)
  await sending
  t.deepEqual(
    got,
    Array.from({ length: N }, (_, i) => i),
    'every message once, in order, then the end',
  )
  received.close()

  // A topic, into one that exists already with a capacity of its own (the import uses it as it
  // is): a subscriber there gets every message, in order.
  const topicIn = Topic.create(`${into}-t`, { capacity: 8192, codec: 'string' })
  const sub = topicIn.subscribe()
  const published = ['one', 'two', 'three']
  for (const m of published) topicOut.publish(m)
  for (const m of published) t.is(await sub.recvAsync({ timeout: 30_000 }), m)
  sub.close()
  topicIn.close()
  topicOut.close()
  const routes = Object.fromEntries(b.status().routes.map((r) => [`${r.direction} ${r.kind}`, r]))
  t.like(routes['export channel'], { state: 'ended', forwarded: N })
  t.like(routes['import channel'], { state: 'ended', forwarded: N, duplicatesSkipped: 0 })
  t.like(routes['export topic'], { state: 'running', forwarded: 3 })
  ch.close()
})

withNats('shmkit bridge: --help, usage errors exit 2, --json events, SIGTERM stops it cleanly', async (t) => {
  const broker = await startBroker(t)
  const run = (args, opts = {}) =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, [cli, 'bridge', ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...opts })
      let stdout = ''
      let stderr = ''
      child.stdout.on('data', (c) => (stdout += c))
      child.stderr.on('data', (c) => (stderr += c))
      child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr }))
      if (opts.onSpawn) opts.onSpawn(child, () => stdout)
    })
  const help = await run(['--help'])
  t.is(help.code, 0)
  t.regex(help.stdout, /--export NAME/)
  const noServer = await run(['--export', 'x'])
  t.is(noServer.code, 2)
  t.regex(noServer.stderr, /--nats URL is required/)
  const badName = await run(['--nats', broker.url, '--export', 'bad/name'])
  t.is(badName.code, 2)
  t.regex(badName.stderr, /invalid/)
  const noStream = await run(['--nats', broker.url, '--export', 'x'])
  t.is(noStream.code, 1)
  t.regex(noStream.stderr, /ERR_SHM_NO_STREAM/)
  const name = uniqueName(t, 'cli')
  const stopped = await run(['--nats', broker.url, '--export', name, '--create-stream', '--json'], {
    onSpawn: async (child, stdout) => {
      await until(() => stdout().includes('"route-waiting"'), 15_000, stdout)
      child.kill('SIGTERM')
    },
  })
  if (process.versions.deno && stopped.signal === 'SIGTERM') {
    // Deno's child_process reports a child it sent SIGTERM to as killed by it even when the child
    // handled the signal and exited 0; the events below show the clean stop.
    t.is(stopped.code, null)
  } else t.is(stopped.code, 0, stopped.stderr)
  const events = stopped.stdout
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line))
  t.deepEqual(
    events.map((e) => e.event),
    ['connecting', 'connected', 'stream-created', 'route-waiting', 'closed', 'status'],
  )
  t.like(events.at(-1).routes[0], { direction: 'export', name, state: 'closed', forwarded: 0 })
})

withHosts(
  'two hosts: 100,000 messages through both bridges, each bridge SIGKILLed and restarted twice, the broker once: nothing lost, duplicates only from killed importers',
  async (t) => {
    t.timeout(240_000)
    const broker = await startBroker(t)
    const [a, b] = [await startHost(t), await startHost(t)]
    const N = 100_000
    // Host A: a producer whose channel is small, so that a stalled bridge makes it wait.
    const producer = a.fixture(
      `const ch = shmkit.Channel.create('orders', { capacity: 1 << 14, codec: 'json' })
       await send('created')
       for (let i = 0; i < ${N}; i++) await ch.sendAsync({ i })
       ch.end(); await send('sent')`,
    )
    await producer.nextMessage((m) => m === 'created')
    // Either bridge may start first: both may create the stream (the second finds it).
    const common = ['--nats', broker.url, '--ack-wait', '2', '--create-stream']
    let exporter = await a.bridge([...common, '--export', 'orders'])
    let importer = await b.bridge([...common, '--import', 'orders', '--host', 'b'])
    // Host B: a consumer that counts every message, reporting progress.
    const consumer = b.fixture(
      `let ch
       for (;;) { try { ch = shmkit.Channel.open('orders'); break } catch { await new Promise((r) => setTimeout(r, 50)) } }
       const counts = new Uint8Array(${N}); let received = 0
       for await (const m of ch) { counts[m.i]++; if (++received % 1000 === 0) await send({ received }) }
       await send({ done: true, received, missing: counts.filter((c) => c === 0).length, duplicates: received - counts.filter((c) => c > 0).length })`,
    )
    const progress = () => consumer.messages.filter((m) => m.received !== undefined).at(-1)?.received ?? 0
    const reached = (n) =>
      until(
        () => progress() >= n,
        120_000,
        () => `at ${progress()}: ${JSON.stringify(importer.events.slice(-3))}`,
      )
    let importerKills = 0
    await reached(15_000)
    await killed(exporter)
    exporter = await a.bridge([...common, '--export', 'orders'])
    await reached(35_000)
    await killed(importer)
    importerKills++
    importer = await b.bridge([...common, '--import', 'orders', '--host', 'b'])
    await reached(55_000)
    await broker.restart()
    await reached(75_000)
    await Promise.all([killed(exporter), killed(importer)])
    importerKills++
    exporter = await a.bridge([...common, '--export', 'orders'])
    importer = await b.bridge([...common, '--import', 'orders', '--host', 'b'])
    const result = await consumer.nextMessage((m) => m.done, 180_000)
    t.is((await producer.nextMessage((m) => m === 'sent')) && 'sent', 'sent')
    t.is(result.missing, 0, 'nothing lost')
    t.true(result.duplicates <= importerKills, `${result.duplicates} duplicate(s), ${importerKills} importer kills`)
    t.log(`${result.received} received, ${result.duplicates} duplicate(s) after ${importerKills} importer kills`)
    for (const child of [exporter, importer]) child.kill('SIGTERM')
  },
)
