// Squatted names, with a real second user: a segment or channel that another user created first
// under the name a service expects is refused by default (ERR_SHM_FOREIGN_OWNER), by open and by
// openOrCreate alike, and accepted only with the `owner` option; modes are never wider than
// asked; the CLI shows owners and modes and flags what is foreign or widened. Needs root and
// setpriv (Linux); skipped elsewhere.
import test from 'ava'
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'

import { Channel, Segment, SharedMap, Topic } from '../index.js'
import { asNobody, canSwitchUser, readableCopy, startFixture, throwsCoded, uniqueName } from './helpers.mjs'

const asRoot = canSwitchUser ? test : test.skip
const cli = fileURLToPath(new URL('../bin/shmkit.js', import.meta.url))
const NOBODY = 65534

/** Has user nobody create `name` (a 0o666 segment holding byte 42, a channel holding a message,
 * a map holding a key, or a topic) and keep it. */
async function squat(t, name, kind) {
  const squatter = startFixture(
    'script.mjs',
    [
      `const make = {
         channel: () => shmkit.Channel.create(args[0], { capacity: 256, mode: 0o666, codec: 'json' }),
         map: () => shmkit.SharedMap.create(args[0], { capacity: 16, mode: 0o666 }),
         topic: () => shmkit.Topic.create(args[0], { capacity: 256, mode: 0o666 }),
         segment: () => shmkit.Segment.create(args[0], { size: 4096, mode: 0o666 }),
       }
       const created = make[args[1]]()
       if (args[1] === 'channel') created.send({ from: 'nobody' })
       else if (args[1] === 'map') created.set('from', 'nobody')
       else if (args[1] === 'segment') new Uint8Array(created.buffer)[0] = 42
       created.close()
       await send('created')`,
      name,
      kind,
    ],
    { prefix: asNobody, root: readableCopy(t) },
  )
  t.is(await squatter.nextMessage(), 'created')
  await squatter.done()
}

asRoot('a squatted segment is refused by open and openOrCreate, and accepted with owner', async (t) => {
  const name = uniqueName(t)
  await squat(t, name, 'segment')
  const refused = throwsCoded(t, () => Segment.openOrCreate(name, { size: 4096 }), Error, 'ERR_SHM_FOREIGN_OWNER')
  t.regex(refused.message, /owned by uid 65534 \(nobody\), not by this user \(uid 0\)/)
  t.regex(refused.message, /owner: 65534, or 'any'/)
  throwsCoded(t, () => Segment.open(name), Error, 'ERR_SHM_FOREIGN_OWNER')
  throwsCoded(t, () => Segment.open(name, { owner: 1 }), Error, 'ERR_SHM_FOREIGN_OWNER')
  for (const owner of [NOBODY, [1, NOBODY], 'any']) {
    const segment = Segment.open(name, { owner })
    t.is(new Uint8Array(segment.buffer)[0], 42, `read with owner ${JSON.stringify(owner)}`)
    segment.close()
  }
  const adopted = Segment.openOrCreate(name, { size: 4096, owner: NOBODY })
  t.false(adopted.created)
  adopted.close()
  throwsCoded(t, () => Segment.open(name, { owner: 'nobody' }), TypeError, 'ERR_INVALID_ARG_TYPE')
  throwsCoded(t, () => Segment.open(name, { owner: [] }), TypeError, 'ERR_INVALID_ARG_TYPE')
  throwsCoded(t, () => Segment.open(name, { owner: -1 }), RangeError, 'ERR_OUT_OF_RANGE')
})

asRoot('a squatted channel is refused by open and openOrCreate, and accepted with owner', async (t) => {
  const name = uniqueName(t, 'ch')
  await squat(t, name, 'channel')
  throwsCoded(t, () => Channel.open(name), Error, 'ERR_SHM_FOREIGN_OWNER')
  throwsCoded(t, () => Channel.openOrCreate(name, { capacity: 256, codec: 'json' }), Error, 'ERR_SHM_FOREIGN_OWNER')
  const channel = Channel.open(name, { owner: NOBODY })
  t.deepEqual(channel.recv({ timeout: 1000 }), { from: 'nobody' })
  channel.close()
})

asRoot('a squatted map or topic is refused by open and openOrCreate, and accepted with owner', async (t) => {
  const mapName = uniqueName(t, 'map')
  await squat(t, mapName, 'map')
  throwsCoded(t, () => SharedMap.open(mapName), Error, 'ERR_SHM_FOREIGN_OWNER')
  throwsCoded(t, () => SharedMap.openOrCreate(mapName, { capacity: 16 }), Error, 'ERR_SHM_FOREIGN_OWNER')
  const map = SharedMap.open(mapName, { owner: NOBODY })
  t.is(map.get('from'), 'nobody')
  map.close()
  const topicName = uniqueName(t, 'topic')
  await squat(t, topicName, 'topic')
  throwsCoded(t, () => Topic.open(topicName), Error, 'ERR_SHM_FOREIGN_OWNER')
  throwsCoded(t, () => Topic.openOrCreate(topicName, { capacity: 256 }), Error, 'ERR_SHM_FOREIGN_OWNER')
  const topic = Topic.open(topicName, { owner: 'any' })
  t.is(topic.capacity, 256)
  topic.close()
})

asRoot('a squatting object that is not even shmkit is refused for its owner before its contents are read', (t) => {
  const name = uniqueName(t)
  const path = `/dev/shm/shmkit.${name}`
  fs.writeFileSync(path, Buffer.alloc(8192, 0x41))
  fs.chownSync(path, NOBODY, NOBODY)
  throwsCoded(t, () => Segment.openOrCreate(name, { size: 64 }), Error, 'ERR_SHM_FOREIGN_OWNER')
  throwsCoded(t, () => Segment.open(name, { owner: 'any' }), Error, 'ERR_SHM_NOT_SHMKIT')
})

asRoot('a segment never exists with a mode wider than asked, whatever the umask', async (t) => {
  const name = uniqueName(t)
  const path = `/dev/shm/shmkit.${name}`
  const previous = process.umask(0)
  t.teardown(() => process.umask(previous))
  // A watcher polls the object's mode as fast as it can while it is created and removed 300 times.
  const watcher = startFixture('script.mjs', [
    `const fs = require('node:fs'); let seen = 0, looks = 0, stopped = false
     const tick = () => { for (let i = 0; i < 2000; i++) { try { seen |= fs.statSync(args[0]).mode & 0o777; looks++ } catch {} } if (!stopped) setImmediate(tick) }
     await send('watching')
     tick()
     await next((m) => m === 'stop')
     stopped = true
     await send({ seen, looks })`,
    path,
  ])
  await watcher.nextMessage((m) => m === 'watching')
  for (let i = 0; i < 300; i++) {
    Segment.create(name, { size: 64, mode: i % 2 ? 0o600 : 0o640 }).close()
    Segment.unlink(name)
  }
  watcher.send('stop')
  const { seen, looks } = await watcher.nextMessage((m) => typeof m === 'object')
  await watcher.done()
  t.true(looks > 0, 'the watcher saw the object')
  t.is(seen & ~0o640, 0, `never more than asked: saw 0o${seen.toString(8)}`)
})

asRoot('the CLI shows owners and modes, and flags foreign and widened segments', async (t) => {
  const name = uniqueName(t)
  await squat(t, name, 'segment')
  const mine = uniqueName(t)
  Segment.create(mine, { size: 64, mode: 0o600 }).close()
  fs.chmodSync(`/dev/shm/shmkit.${mine}`, 0o666) // widened behind shmkit's back
  const run = async (...args) => (await promisify(execFile)(process.execPath, [cli, ...args])).stdout
  const table = await run('ls')
  t.regex(table, /^NAME\s+KIND\s+SIZE\s+OWNER\s+MODE/)
  t.regex(table, new RegExp(`${name}\\s+segment\\s+4\\.0 KiB\\s+!65534 \\(nobody\\)\\s+0o666`))
  t.regex(table, new RegExp(`${mine}\\s+segment\\s+64 B\\s+0 \\(root\\)\\s+!0o666`))
  t.regex(await run('inspect', name), /owner\s+!65534 \(nobody\): ANOTHER USER/)
  t.regex(await run('inspect', mine), /mode\s+!0o666: WIDER than the 0o600 asked for at creation/)
  const report = JSON.parse(await run('inspect', mine, '--json'))
  t.like(report, {
    owner: 0,
    ownerName: 'root',
    mode: 0o666,
    requestedMode: 0o600,
    foreign: false,
    widerThanAsked: true,
  })
  const theirs = JSON.parse(await run('inspect', name, '--json'))
  t.like(theirs, { owner: NOBODY, foreign: true, widerThanAsked: false })
})
