// Other users, hidden /proc and PID namespaces, for real: a second user (nobody), /proc mounted
// with hidepid=invisible in a private mount namespace, and processes that are pid 1 of their own
// PID namespace, as in two containers sharing /dev/shm. Needs root, setpriv and unshare (Linux);
// skipped elsewhere.
import test from 'ava'
import { execFileSync } from 'node:child_process'

import { Segment } from '../index.js'
import { asNobody, canSwitchUser, readableCopy, startFixture, throwsCoded, uniqueName } from './helpers.mjs'

const hasUnshare = (() => {
  try {
    execFileSync('unshare', ['-m', '-p', '-f', 'true'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
})()
const asRootWithNamespaces = canSwitchUser && hasUnshare ? test : test.skip
const asRootWithUsers = canSwitchUser ? test : test.skip

/** Runs what follows in a private mount namespace whose /proc hides other users' processes. */
const hiddenProc = [
  'unshare',
  '-m',
  '--propagation',
  'private',
  '--',
  'sh',
  '-c',
  'mount -t proc -o hidepid=invisible proc /proc && exec "$@"',
  'sh',
]
/** Runs what follows as pid 1 of a new PID namespace (with its own /proc), like a container's init. */
const newPidNamespace = ['unshare', '-p', '-f', '--mount-proc', '--']

asRootWithNamespaces('defect 1: a live holder of another user hidden by /proc is never judged dead', async (t) => {
  const name = uniqueName(t)
  const auto = uniqueName(t, 'auto')
  Segment.create(name, { size: 64, mode: 0o666 }).close()
  const holder = startFixture('script.mjs', [
    `const seg = shmkit.Segment.open(args[0]); const auto = shmkit.Segment.create(args[1], { size: 64, mode: 0o666, autoUnlink: true })
     const guard = seg.mutex.lock()
     await send('locked')
     await next((m) => m === 'exit')
     await send(guard.locked ? 'still locked' : 'lost it')
     guard.unlock(); auto.close(); seg.close()`,
    name,
    auto,
  ])
  await holder.nextMessage((m) => m === 'locked')
  const copy = readableCopy(t)
  const waiter = startFixture(
    'script.mjs',
    [
      `const hidden = (() => { try { require('node:fs').readFileSync('/proc/' + args[2] + '/stat'); return false } catch { return true } })()
       const seg = shmkit.Segment.open(args[0], { owner: 0 })
       let outcome
       try { const g = seg.mutex.lock({ timeout: 400 }); outcome = g.ownerDied ? 'ownerDied' : 'acquired'; g.unlock() } catch (e) { outcome = e.code }
       const auto = shmkit.Segment.open(args[1], { owner: 0 }); auto.close()
       seg.close()
       await send({ hidden, outcome, uid: process.getuid() })`,
      name,
      auto,
      holder.pid,
    ],
    { prefix: [...hiddenProc, ...asNobody], root: copy },
  )
  const seen = await waiter.nextMessage()
  await waiter.done()
  t.deepEqual(seen, { hidden: true, outcome: 'ETIMEDOUT', uid: 65534 }, 'waited for the live holder it could not see')
  t.notThrows(() => Segment.open(auto).close(), 'the auto-unlink segment root still has open is still there')
  holder.send('exit')
  t.is(await holder.nextMessage((m) => typeof m === 'string' && m !== 'locked'), 'still locked')
  await holder.done()
})

asRootWithUsers('defect 2: a last closer that may not unlink reports it, and the segment stays usable', async (t) => {
  const name = uniqueName(t)
  const mine = Segment.create(name, { size: 64, mode: 0o666, autoUnlink: true })
  const other = startFixture(
    'script.mjs',
    [
      `const seg = shmkit.Segment.open(args[0], { owner: 0 })
       await send('opened')
       await next((m) => m === 'close')
       try { seg.close(); await send('closed') } catch (e) { await send({ code: e.code, closed: seg.closed }) }`,
      name,
    ],
    { prefix: asNobody, root: readableCopy(t) },
  )
  await other.nextMessage((m) => m === 'opened')
  mine.close()
  other.send('close')
  const outcome = await other.nextMessage((m) => m !== 'opened')
  await other.done()
  t.true(
    ['EACCES', 'EPERM'].includes(outcome.code),
    `close() reports that it could not remove the segment: ${JSON.stringify(outcome)}`,
  )
  t.true(outcome.closed, 'the handle is closed all the same')
  const again = Segment.open(name, { readyTimeout: 100 })
  t.pass('open still works (it failed with ENOENT before)')
  throwsCoded(t, () => Segment.create(name, { size: 64 }), Error, 'EEXIST')
  again.close() // the owner is the last closer now, and may remove it
  throwsCoded(t, () => Segment.open(name), Error, 'ENOENT')
})

asRootWithNamespaces('defect 10: pid 1 of one PID namespace is not pid 1 of another', async (t) => {
  const name = uniqueName(t)
  Segment.create(name, { size: 64, mode: 0o600 }).close()
  const first = startFixture(
    'script.mjs',
    [
      `const seg = shmkit.Segment.open(args[0]); const guard = seg.mutex.lock()
       await send({ pid: process.pid }); await next((m) => m === 'exit'); guard.unlock(); seg.close()`,
      name,
    ],
    { prefix: newPidNamespace },
  )
  t.deepEqual(await first.nextMessage(), { pid: 1 })
  const second = startFixture(
    'script.mjs',
    [
      `const seg = shmkit.Segment.open(args[0])
       const tried = seg.mutex.tryLock()
       let timed
       try { seg.mutex.lock({ timeout: 300 }); timed = 'acquired' } catch (e) { timed = e.code }
       seg.close()
       await send({ pid: process.pid, tried: tried === null ? null : 'acquired', timed })`,
      name,
    ],
    { prefix: newPidNamespace },
  )
  t.deepEqual(await second.nextMessage(), { pid: 1, tried: null, timed: 'ETIMEDOUT' })
  await second.done()
  first.send('exit')
  await first.done()
  const guard = Segment.open(name).mutex.lock({ timeout: 1000 })
  t.false(guard.ownerDied, 'released normally by its holder')
})
