// The shmkit command, run as users run it, against segments held by real processes.
import test from 'ava'
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'

import { Channel, Mutex, Segment, SharedMap, Topic } from '../index.js'
import { startFixture, uniqueName } from './helpers.mjs'

const cli = fileURLToPath(new URL('../bin/shmkit.js', import.meta.url))
const execFileAsync = promisify(execFile)
const onLinux = process.platform === 'linux' ? test : test.skip

/** Runs the CLI; resolves with { code, stdout, stderr } whatever the exit code. */
async function shmkit(...args) {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [cli, ...args])
    return { code: 0, stdout, stderr }
  } catch (error) {
    return { code: error.code, stdout: error.stdout, stderr: error.stderr }
  }
}

onLinux('ls lists segments and channels, as a table and as JSON, and skips foreign objects', async (t) => {
  const name = uniqueName(t)
  const channelName = uniqueName(t, 'ch')
  const foreign = uniqueName(t, 'foreign')
  const segment = Segment.create(name, { size: 1 << 20 })
  const channel = Channel.create(channelName, { capacity: 1024 })
  t.teardown(() => {
    segment.close()
    channel.close()
  })
  fs.writeFileSync(`/dev/shm/shmkit.${foreign}`, Buffer.alloc(8192, 0x41))
  const table = await shmkit('ls')
  t.is(table.code, 0)
  t.regex(table.stdout, /^NAME\s+KIND\s+SIZE\s+OWNER\s+MODE\s+ATTACHED\s+LOCK\s+AUTO-UNLINK\s+AGE/)
  t.regex(table.stdout, new RegExp(`${name}\\s+segment\\s+1\\.0 MiB\\s+0 \\(root\\)\\s+0o600\\s+1\\s+free\\s+no`))
  t.regex(table.stdout, new RegExp(`${channelName}\\s+channel`))
  t.notRegex(table.stdout, new RegExp(foreign))
  t.regex(table.stderr, new RegExp(`skipped ${foreign}`))
  const { segments, skipped } = JSON.parse((await shmkit('ls', '--json')).stdout)
  const mine = segments.find((s) => s.name === name)
  t.like(mine, { kind: 'segment', size: 1 << 20, autoUnlink: false, attached: { alive: 1, dead: 0 } })
  t.like(
    segments.find((s) => s.name === channelName),
    { kind: 'channel', channel: { capacity: 1024, messagesInFlight: 0 } },
  )
  t.true(skipped.some((s) => s.name === foreign && s.code === 'ERR_SHM_NOT_SHMKIT'))
})

onLinux('inspect shows a map: entries, memory, evictions; ls --json has them too; rm removes it', async (t) => {
  const name = uniqueName(t, 'map')
  const map = SharedMap.create(name, { capacity: 4, evict: 'lru' })
  t.teardown(() => map.close())
  for (const key of ['a', 'b', 'c', 'd', 'e', 'f']) map.set(key, key.repeat(100))
  const shown = await shmkit('inspect', name)
  t.is(shown.code, 0)
  t.regex(shown.stdout, /kind\s+map/)
  t.regex(shown.stdout, /map\s+4 of 4 entries, [\d.]+ (B|KiB) of 1\.0 MiB used \(LRU: full means evict\)/)
  t.regex(shown.stdout, /2 evicted, 0 expired/)
  const { segments } = JSON.parse((await shmkit('ls', '--json')).stdout)
  t.like(
    segments.find((s) => s.name === name),
    { kind: 'map', map: { entries: 4, capacity: 4, evictions: 2, evict: 'lru' } },
  )
  map.close()
  t.is((await shmkit('rm', name)).code, 0)
  t.throws(() => SharedMap.open(name), { code: 'ENOENT' })
})

onLinux('inspect says plainly when the lock holder and an attacher are dead', async (t) => {
  const name = uniqueName(t)
  Segment.create(name, { size: 4096 }).close()
  const holder = startFixture('hold-lock.mjs', [name, 'hold'])
  await holder.nextMessage((m) => m === 'locked')
  const live = await shmkit('inspect', name)
  t.regex(live.stdout, new RegExp(`held by thread \\d+ of pid ${holder.pid} \\(alive\\)`))
  holder.kill('SIGKILL')
  await holder.done()
  const dead = await shmkit('inspect', name)
  t.is(dead.code, 0)
  t.regex(dead.stdout, /which is DEAD: the next locker takes it over and is told ownerDied/)
  t.regex(dead.stdout, new RegExp(`pid ${holder.pid}: DEAD`))
  const report = JSON.parse((await shmkit('inspect', name, '--json')).stdout)
  t.like(report.headerMutex, { locked: true, holderPid: holder.pid, holderState: 'dead' })
  t.deepEqual(report.attachers, [{ pid: holder.pid, state: 'dead' }])
})

test('inspect shows channel traffic', async (t) => {
  const name = uniqueName(t, 'ch')
  const channel = Channel.create(name, { capacity: 1024, codec: 'json' })
  t.teardown(() => channel.close())
  channel.send({ a: 1 })
  channel.send({ b: 2 })
  channel.recv()
  const { stdout } = await shmkit('inspect', name)
  t.regex(stdout, /1 message\(s\), 12 B in flight of 1\.0 KiB/)
  t.regex(stdout, /2 sent, 1 received/)
})

onLinux('inspect shows the messages taken and not acknowledged, with their holders alive or dead', async (t) => {
  const name = uniqueName(t, 'jobs')
  const channel = Channel.create(name, { capacity: 4096, codec: 'json' })
  t.teardown(() => {
    channel.close()
    SharedMap.unlink(`${name}.inflight`)
  })
  for (let i = 0; i < 3; i++) channel.send({ job: i })
  const mine = await channel.take({ leaseMs: 60_000 })
  const worker = startFixture('script.mjs', [
    `const ch = shmkit.Channel.open(args[0]); globalThis.job = await ch.take({ leaseMs: 60_000 }); await send('holding'); setInterval(() => {}, 1000)`,
    name,
  ])
  await worker.nextMessage((m) => m === 'holding')
  worker.kill('SIGKILL')
  await worker.done()
  const { stdout } = await shmkit('inspect', name)
  t.regex(stdout, /taken\s+2 message\(s\) taken and not acknowledged/)
  t.regex(stdout, new RegExp(`thread ${process.pid} of pid ${process.pid}, alive, delivery 1, lease ends in \\d+ s`))
  t.regex(stdout, new RegExp(`thread ${worker.pid} of pid ${worker.pid}, DEAD \\(delivered again by the next take\\)`))
  const json = JSON.parse((await shmkit('inspect', name, '--json')).stdout)
  t.deepEqual(json.taken.map((m) => m.holder).sort(), ['alive', 'dead'])
  mine.ack()
  t.regex((await shmkit('inspect', name)).stdout, /taken\s+1 message\(s\)/)
})

onLinux('inspect shows a topic and its subscribers: alive or dead, how far behind', async (t) => {
  const name = uniqueName(t, 'topic')
  const topic = Topic.create(name, { capacity: 4096, subscribers: 8 })
  t.teardown(() => topic.close())
  const mine = topic.subscribe()
  // A subscriber whose process is killed (one that exits normally may be cleaned up at exit). It
  // keeps its subscription referenced: one that is garbage collected gives its slot back.
  const gone = startFixture('script.mjs', [
    `globalThis.held = shmkit.Topic.open(args[0]).subscribe(); await send('subscribed'); setInterval(() => {}, 1000)`,
    name,
  ])
  await gone.nextMessage((m) => m === 'subscribed')
  gone.kill('SIGKILL')
  await gone.done()
  topic.publish('a')
  topic.publish('b')
  mine.recv()
  const inspection = Segment.inspect(name)
  t.is(inspection.kind, 'topic')
  t.is(inspection.topic.published, 2)
  t.deepEqual(
    inspection.topic.subscribers.map((s) => [s.alive, s.behind]),
    [
      [true, 1],
      [false, 2],
    ],
  )
  const { stdout } = await shmkit('inspect', name)
  t.regex(stdout, /2 published, 4\.0 KiB ring, slow: block/)
  t.regex(stdout, /2 of 8 slots/)
  t.regex(stdout, new RegExp(`thread ${process.pid} of pid ${process.pid}, alive, 1 message\\(s\\) behind`))
  t.regex(stdout, /DEAD \(removed when it holds a publisher back\), 2 message\(s\) behind/)
  t.regex((await shmkit('ls')).stdout, new RegExp(`${name}\\s+topic`))
})

test('rm removes by name; a missing name fails with a clear error and a non-zero exit', async (t) => {
  const first = uniqueName(t)
  const second = uniqueName(t)
  Segment.create(first, { size: 64 }).close()
  Segment.create(second, { size: 64 }).close()
  const removed = await shmkit('rm', first, second)
  t.is(removed.code, 0)
  t.regex(removed.stdout, new RegExp(`removed ${first}\\nremoved ${second}`))
  t.throws(() => Segment.open(first), { code: 'ENOENT' })
  const missing = await shmkit('rm', first)
  t.is(missing.code, 1)
  t.regex(missing.stderr, new RegExp(`cannot remove ${first}: no such segment`))
  const json = JSON.parse((await shmkit('rm', first, '--json')).stdout)
  t.like(json[0], { name: first, removed: false, code: 'ENOENT' })
  const inspectMissing = await shmkit('inspect', first)
  t.is(inspectMissing.code, 1)
  t.regex(inspectMissing.stderr, /no such segment/)
})

onLinux('rm leaves objects shmkit did not make alone', async (t) => {
  const foreign = uniqueName(t, 'foreign')
  fs.writeFileSync(`/dev/shm/shmkit.${foreign}`, Buffer.alloc(8192, 0x41))
  const result = await shmkit('rm', foreign)
  t.is(result.code, 1)
  t.regex(result.stderr, /not a shmkit segment: left alone/)
  t.true(fs.existsSync(`/dev/shm/shmkit.${foreign}`))
})

onLinux('gc removes auto-unlink segments whose every attacher is dead, and nothing else', async (t) => {
  const orphan = uniqueName(t)
  const kept = uniqueName(t)
  const plain = uniqueName(t)
  const creator = startFixture('attach.mjs', [orphan, 'create-auto'])
  await creator.nextMessage((m) => m === 'attached')
  creator.kill('SIGKILL')
  await creator.done()
  const liveOne = Segment.create(kept, { size: 64, autoUnlink: true })
  t.teardown(() => liveOne.close())
  const plainHolder = startFixture('attach.mjs', [plain, 'create-auto'])
  await plainHolder.nextMessage((m) => m === 'attached')
  plainHolder.kill('SIGKILL') // auto-unlink too, but we keep it open below
  await plainHolder.done()
  const keeper = Segment.open(plain)
  t.teardown(() => keeper.close())
  const { code, stdout } = await shmkit('gc', '--json')
  t.is(code, 0)
  const { removed } = JSON.parse(stdout)
  t.true(removed.includes(orphan))
  t.false(removed.includes(kept))
  t.false(removed.includes(plain))
  t.throws(() => Segment.inspect(orphan), { code: 'ENOENT' })
  t.notThrows(() => Segment.inspect(kept))
})

test('usage errors exit with 2 and print the usage', async (t) => {
  for (const args of [[], ['frobnicate'], ['inspect'], ['inspect', 'a', 'b'], ['rm'], ['ls', 'x'], ['ls', '--fast']]) {
    const { code, stdout, stderr } = await shmkit(...args)
    t.is(code, 2, args.join(' '))
    t.regex(stdout + stderr, /Usage: shmkit <command>/)
  }
  const help = await shmkit('--help')
  t.is(help.code, 0)
})

test('--version prints the package version', async (t) => {
  const { version } = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
  for (const flag of ['--version', '-v']) {
    const { code, stdout } = await shmkit(flag)
    t.is(code, 0)
    t.is(stdout.trim(), version)
  }
})

onLinux(
  'rm --prefix removes every segment and channel whose name starts with the prefix, and nothing else',
  async (t) => {
    const prefix = `${uniqueName(t, 'pfx')}-`
    const names = [`${prefix}a`, `${prefix}b`]
    Segment.create(names[0], { size: 64 }).close()
    Channel.create(names[1], { capacity: 64 }).close()
    const bystander = uniqueName(t)
    Segment.create(bystander, { size: 64 }).close()
    const { code, stdout } = await shmkit('rm', '--prefix', prefix)
    t.is(code, 0)
    for (const name of names) t.regex(stdout, new RegExp(`removed ${name}`))
    for (const name of names) t.throws(() => Segment.inspect(name), { code: 'ENOENT' })
    t.notThrows(() => Segment.inspect(bystander))
    t.is((await shmkit('rm', '--prefix', prefix)).stdout.trim(), 'Nothing to remove.')
    t.is((await shmkit('rm', 'x', '--prefix', prefix)).code, 2)
  },
)

onLinux('inspect shows placed mutexes and a wedged channel lock with its dead holder', async (t) => {
  const name = uniqueName(t, 'ch')
  const channel = Channel.create(name, { capacity: 256 })
  t.teardown(() => channel.close())
  const holder = startFixture('script.mjs', [
    `const seg = shmkit.Segment.open(args[0]); shmkit.Mutex.at(seg, 256).lock(); await send('locked'); await new Promise(() => {})`,
    name,
  ])
  await holder.nextMessage((m) => m === 'locked')
  holder.kill('SIGKILL')
  await holder.done()
  const text = (await shmkit('inspect', name)).stdout
  t.regex(text, /send lock\s+free/)
  t.regex(text, /receive lock\s+held by thread \d+ of pid \d+, which is DEAD/)
  const report = JSON.parse((await shmkit('inspect', name, '--json')).stdout)
  t.like(
    report.placedMutexes.find((p) => p.role === 'receive lock'),
    { offset: 256, mutex: { locked: true, holderState: 'dead' } },
  )
  t.regex((await shmkit('ls')).stdout, new RegExp(`${name}\\s+channel\\s+.*DEAD`), 'ls flags the wedged channel')
  const segmentName = uniqueName(t)
  const segment = Segment.create(segmentName, { size: 1024 })
  t.teardown(() => segment.close())
  const guard = Mutex.at(segment, 128).lock()
  t.regex((await shmkit('inspect', segmentName)).stdout, /mutex @128\s+held by thread/)
  guard.unlock()
})
