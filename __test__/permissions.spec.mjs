// Permissions with a real second user: a 0600 segment cannot be opened (or removed) by another
// user; a 0666 one can. Needs root (to run a child as `nobody`) and setpriv; skipped otherwise.
import test from 'ava'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import { fileURLToPath } from 'node:url'

import { Segment } from '../index.js'
import { uniqueName } from './helpers.mjs'

const index = fileURLToPath(new URL('../index.js', import.meta.url))
const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((file) => fs.existsSync(file))
const canSwitchUser = process.platform === 'linux' && process.getuid?.() === 0 && setpriv !== undefined
const asNobody = canSwitchUser ? test : test.skip

/** Runs `code` as user nobody (uid/gid 65534) with `shmkit` bound to the package. */
function runAsNobody(code) {
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
  t.is(runAsNobody(attempt(`shmkit.Segment.open(${JSON.stringify(privateName)})`)).trim(), 'EACCES')
  t.is(runAsNobody(attempt(`shmkit.Segment.unlink(${JSON.stringify(privateName)})`)).trim(), 'EACCES')
  t.is(runAsNobody(attempt(`shmkit.Segment.open(${JSON.stringify(sharedName)}).close()`)).trim(), 'ok')
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
