// Permissions with a real second user: a 0600 segment cannot be opened (or removed) by another
// user; a 0666 one can. Needs root (to run a child as `nobody`) and setpriv; skipped otherwise.
import test from 'ava'
import { execFileSync } from 'node:child_process'
import path from 'node:path'

import { Segment } from '../index.js'
import { asNobody, canSwitchUser, readableCopy, uniqueName } from './helpers.mjs'

const asNobodyTest = canSwitchUser ? test : test.skip

/** Runs `code` as user nobody with `shmkit` bound to the package copy at `copy`. */
function runAsNobody(copy, code) {
  const index = path.join(copy, 'index.js')
  return execFileSync(
    asNobody[0],
    [...asNobody.slice(1), process.execPath, '-e', `const shmkit = require(${JSON.stringify(index)});\n${code}`],
    // From the copy: user nobody may not enter this process's working directory, which newer
    // Node versions read package.json files up from.
    { encoding: 'utf8', cwd: copy },
  )
}

const attempt = (what) => `try { ${what}; console.log('ok') } catch (e) { console.log(e.code) }`

asNobodyTest('another user cannot open or remove a 0600 segment, and can open a 0666 one', (t) => {
  const privateName = uniqueName(t)
  const sharedName = uniqueName(t)
  Segment.create(privateName, { size: 64 }).close()
  Segment.create(sharedName, { size: 64, mode: 0o666 }).close()
  const index = readableCopy(t)
  t.is(runAsNobody(index, attempt(`shmkit.Segment.open(${JSON.stringify(privateName)})`)).trim(), 'EACCES')
  t.is(runAsNobody(index, attempt(`shmkit.Segment.unlink(${JSON.stringify(privateName)})`)).trim(), 'EACCES')
  t.is(
    runAsNobody(index, attempt(`shmkit.Segment.open(${JSON.stringify(sharedName)}, { owner: 0 }).close()`)).trim(),
    'ok',
  )
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
