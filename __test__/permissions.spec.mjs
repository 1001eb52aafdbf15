// Permissions with a real second user: a 0600 segment cannot be opened (or removed) by another
// user; a 0666 one can. Needs root (to run a child as `nobody`) and setpriv; skipped otherwise.
import test from 'ava'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { Segment } from '../index.js'
import { uniqueName } from './helpers.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((file) => fs.existsSync(file))
const canSwitchUser = process.platform === 'linux' && process.getuid?.() === 0 && setpriv !== undefined
const asNobody = canSwitchUser ? test : test.skip

/**
 * A copy of the built package that user nobody can read: the checkout itself may sit in a
 * directory only its owner can enter (a `mktemp -d` folder is 0700).
 */
function readableCopy(t) {
  const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'shmkit-nobody-'))
  t.teardown(() => fs.rmSync(copy, { recursive: true, force: true }))
  fs.mkdirSync(path.join(copy, 'lib'))
  const built = fs.readdirSync(root).filter((f) => f === 'index.js' || f === 'binding.js' || f.endsWith('.node'))
  const lib = fs.readdirSync(path.join(root, 'lib')).filter((f) => f.endsWith('.js')).map((f) => `lib/${f}`)
  for (const file of [...built, ...lib]) {
    fs.copyFileSync(path.join(root, file), path.join(copy, file))
    fs.chmodSync(path.join(copy, file), 0o644)
  }
  for (const dir of [copy, path.join(copy, 'lib')]) fs.chmodSync(dir, 0o755)
  return path.join(copy, 'index.js')
}

/** Runs `code` as user nobody (uid/gid 65534) with `shmkit` bound to the package at `index`. */
function runAsNobody(index, code) {
  return execFileSync(setpriv, ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e', `const shmkit = require(${JSON.stringify(index)});\n${code}`], {
    encoding: 'utf8',
  })
}

const attempt = (what) => `try { ${what}; console.log('ok') } catch (e) { console.log(e.code) }`

asNobody('another user cannot open or remove a 0600 segment, and can open a 0666 one', (t) => {
  const privateName = uniqueName(t)
  const sharedName = uniqueName(t)
  Segment.create(privateName, { size: 64 }).close()
  Segment.create(sharedName, { size: 64, mode: 0o666 }).close()
  const index = readableCopy(t)
  t.is(runAsNobody(index, attempt(`shmkit.Segment.open(${JSON.stringify(privateName)})`)).trim(), 'EACCES')
  t.is(runAsNobody(index, attempt(`shmkit.Segment.unlink(${JSON.stringify(privateName)})`)).trim(), 'EACCES')
  t.is(runAsNobody(index, attempt(`shmkit.Segment.open(${JSON.stringify(sharedName)}).close()`)).trim(), 'ok')
  t.notThrows(() => Segment.open(privateName).close(), 'still there for its owner')
})

test('names cannot leave the shared-memory namespace', (t) => {
  for (const name of ['../etc/passwd', '/etc/passwd', 'a/../../b', 'x/..', '.\\x']) {
    t.throws(() => Segment.create(name, { size: 8 }), { code: 'ERR_INVALID_ARG_VALUE' })
  }
  // Dots alone are allowed, but only ever as part of the prefixed object name.
  const dots = '..'.repeat(3) + uniqueName(t)
  const segment = Segment.create(dots, { size: 8 })
  segment.close()
  Segment.unlink(dots)
  t.pass()
})
