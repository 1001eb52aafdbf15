// Node, Bun and Deno processes on one segment and one channel: one counter incremented under one
// mutex by all of them ends exact, and each one's messages arrive whole and in order. Bun and
// Deno come from SHMKIT_BUN / SHMKIT_DENO (paths; CI installs them from npm into a cache) or the
// PATH; a missing one is skipped, unless SHMKIT_REQUIRE_RUNTIMES=1 (CI) makes that a failure.
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import test from 'ava'

import { Channel, Segment } from '../index.js'
import { uniqueName } from './helpers.mjs'

const peer = fileURLToPath(new URL('./fixtures/runtime-peer.mjs', import.meta.url))
const found = (env, command) => {
  const file = process.env[env] || command
  return spawnSync(file, ['--version'], { stdio: 'ignore' }).status === 0 ? file : undefined
}
const runtimes = {
  node: [process.execPath],
  bun: found('SHMKIT_BUN', 'bun') && [found('SHMKIT_BUN', 'bun')],
  // The flags Deno needs to load a Node-API addon (docs/platforms.md).
  deno: found('SHMKIT_DENO', 'deno') && [
    found('SHMKIT_DENO', 'deno'),
    'run',
    '--allow-read',
    '--allow-env',
    '--allow-ffi',
  ],
}
const required = process.env.SHMKIT_REQUIRE_RUNTIMES === '1'

test('a Node, a Bun and a Deno process share one counter under one mutex and one channel', async (t) => {
  const missing = Object.keys(runtimes).filter((name) => !runtimes[name])
  if (missing.length && required) t.fail(`not found: ${missing.join(', ')}`)
  const present = Object.entries(runtimes).filter(([, command]) => command)
  const rounds = 3000
  const seg = Segment.create(uniqueName(t, 'rt'), { size: 4096 })
  const channel = Channel.create(uniqueName(t, 'rt-ch'), { capacity: 4096, codec: 'json' })
  t.teardown(() => {
    seg.close()
    channel.close()
  })
  const exits = present.map(([label, [command, ...flags]]) => {
    const child = spawn(command, [...flags, peer, seg.name, channel.name, String(rounds), label], {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, NO_COLOR: '1' },
    })
    return new Promise((resolve) => child.on('exit', (code) => resolve([label, code])))
  })
  const counter = new Uint32Array(seg.buffer, 0, 1)
  for (let i = 0; i < rounds; i++) {
    const guard = seg.mutex.lock({ timeout: 20_000 })
    counter[0]++
    guard.unlock()
  }
  const seen = Object.fromEntries(present.map(([label]) => [label, []]))
  let done = 0
  while (done < present.length) {
    const message = await channel.recvAsync({ timeout: 60_000 })
    if (message.done) done++
    else seen[message.runtime].push(message.i)
  }
  for (const [label, code] of await Promise.all(exits)) t.is(code, 0, `${label} exited with ${code}`)
  t.is(counter[0], rounds * (present.length + 1), `${present.map(([label]) => label).join(', ')} and this process`)
  for (const [label, values] of Object.entries(seen)) {
    t.deepEqual(
      values,
      Array.from({ length: rounds / 100 }, (_, k) => k * 100),
      `${label}'s messages, in order`,
    )
  }
  if (missing.length) t.log(`skipped: ${missing.join(', ')} (not installed)`)
})

test('Deno without a permission shmkit needs: ERR_SHM_NO_BINARY naming the flag', (t) => {
  if (!runtimes.deno) {
    if (required) t.fail('deno not found')
    else t.pass('deno is not installed')
    return
  }
  const [deno] = runtimes.deno
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shmkit-deno-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const script = path.join(dir, 'load.mjs')
  fs.writeFileSync(
    script,
    `import { createRequire } from 'node:module'
    try { createRequire(import.meta.url)(${JSON.stringify(fileURLToPath(new URL('../index.js', import.meta.url)))}) }
    catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }`,
  )
  // Everything but --allow-ffi.
  const run = spawnSync(deno, ['run', '--allow-read', '--allow-env', script], {
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1' },
  })
  const { code, message } = JSON.parse(run.stdout.trim().split('\n').at(-1))
  t.is(code, 'ERR_SHM_NO_BINARY')
  t.regex(message, /Deno refused --allow-ffi/)
  t.regex(message, /--allow-read --allow-env --allow-ffi/)
})
