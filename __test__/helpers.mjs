// Shared helpers for the ava suites: unique segment names and real child processes that are
// killed if they outlive their deadline (a hung child must fail the test, not hang the run).
import { fork, spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

import { Channel, Segment, SharedMap, Topic } from '../index.js'

const here = path.dirname(fileURLToPath(import.meta.url))
let counter = 0

/** A name no other test (or earlier run) uses; removed (whatever its kind) when the test ends. */
export function uniqueName(t, label = 'seg') {
  const name = `test-${label}-${process.pid}-${++counter}-${Math.random().toString(36).slice(2, 8)}`
  t.teardown(() => removeAnyKind(name))
  return name
}

/** Removes `name`, whatever its kind; a missing one is fine. */
export function removeAnyKind(name) {
  for (const kind of [Segment, Channel, SharedMap, Topic]) {
    try {
      return kind.unlink(name)
    } catch (error) {
      if (error.code === 'ENOENT') return
      if (error.code !== 'ERR_SHM_WRONG_KIND') throw error
    }
  }
  throw new Error(`removeAnyKind: ${name} is of a kind this helper does not know`)
}

/**
 * Forks `__test__/fixtures/<script>` with `args`. Resolves with `{ code, signal, messages,
 * stderr }` when it exits; kills it (SIGKILL) and rejects after `timeout` ms.
 */
export function runFixture(script, args = [], { timeout = 30_000, execArgv = [] } = {}) {
  const child = startFixture(script, args, { execArgv })
  return child.done(timeout)
}

/**
 * Forks a fixture and returns it with helpers to await its messages and its exit. `prefix` runs
 * it through a wrapper command (e.g. `setpriv` to switch user, `unshare` for namespaces), which
 * must exec Node with the inherited IPC channel; `root` is where `__test__/fixtures` lives.
 */
export function startFixture(script, args = [], { execArgv = [], prefix = [], root = path.dirname(here) } = {}) {
  const file = path.join(root, '__test__', 'fixtures', script)
  const stdio = ['ignore', 'inherit', 'pipe', 'ipc']
  const child =
    prefix.length === 0
      ? fork(file, args.map(String), { stdio, execArgv })
      : // From the fixture's root: another user may not be allowed into this process's working
        // directory, and newer Node versions read package.json files up from it.
        spawn(prefix[0], [...prefix.slice(1), process.execPath, ...execArgv, file, ...args.map(String)], {
          stdio,
          cwd: root,
        })
  const messages = []
  const waiting = []
  let stderr = ''
  child.stderr.on('data', (chunk) => {
    stderr += chunk
  })
  child.on('message', (message) => {
    messages.push(message)
    for (const waiter of waiting.splice(0)) waiter()
  })
  // 'close' comes after 'exit' once stdio and the IPC channel are drained: only then is it
  // certain that no message is still on its way.
  let closed = false
  const exited = new Promise((resolve) => {
    child.on('close', (code, signal) => {
      closed = true
      for (const waiter of waiting.splice(0)) waiter()
      resolve({ code, signal, messages, stderr })
    })
  })
  return Object.assign(child, {
    messages,
    /** Resolves with the first message matching `predicate`. */
    async nextMessage(predicate = () => true, timeout = 15_000) {
      const deadline = Date.now() + timeout
      for (;;) {
        const found = messages.find(predicate)
        if (found !== undefined) return found
        if (Date.now() > deadline || closed) {
          throw new Error(`fixture ${script} sent no matching message (stderr: ${stderr})`)
        }
        await new Promise((resolve) => {
          waiting.push(resolve)
          setTimeout(resolve, 50)
        })
      }
    },
    async done(timeout = 30_000) {
      let timer
      const overdue = new Promise((_, reject) => {
        timer = setTimeout(() => {
          child.kill('SIGKILL')
          reject(new Error(`fixture ${script} ran longer than ${timeout} ms and was killed (stderr: ${stderr})`))
        }, timeout)
      })
      try {
        return await Promise.race([exited, overdue])
      } finally {
        clearTimeout(timer)
      }
    },
  })
}

/** Runs each of `ops` against damaged memory: each returns, or throws an error with a `code`
 * (never a crash, a hang or an uncoded error). */
export function codedOrFine(t, label, ops) {
  for (const op of ops) {
    try {
      op()
    } catch (error) {
      t.true(typeof error?.code === 'string', `${label}: ${error}`)
    }
  }
}

/** Asserts that `fn` throws an error of class `type` with `code`. */
export function throwsCoded(t, fn, type, code, message) {
  const error = t.throws(fn, { instanceOf: type }, message)
  t.is(error?.code, code, message)
  return error
}

const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((file) => fs.existsSync(file))
/** Root can run children as user nobody (uid/gid 65534) on this machine. */
export const canSwitchUser = process.platform === 'linux' && process.getuid?.() === 0 && setpriv !== undefined
/** A command prefix that runs what follows as user nobody. */
export const asNobody = setpriv === undefined ? [] : [setpriv, '--reuid=65534', '--regid=65534', '--clear-groups']

/**
 * A copy of the built package (and of the script fixture) that user nobody can read: the checkout
 * itself may sit in a directory only its owner can enter (a `mktemp -d` folder is 0700). Returns
 * the copy's root, for `startFixture(..., { root })`.
 */
export function readableCopy(t) {
  const root = path.dirname(here)
  const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'shmkit-nobody-'))
  t.teardown(() => fs.rmSync(copy, { recursive: true, force: true }))
  const built = fs.readdirSync(root).filter((f) => f === 'index.js' || f === 'binding.js' || f.endsWith('.node'))
  const lib = fs
    .readdirSync(path.join(root, 'lib'))
    .filter((f) => f.endsWith('.js'))
    .map((f) => `lib/${f}`)
  for (const file of [...built, ...lib, '__test__/fixtures/script.mjs']) {
    fs.mkdirSync(path.dirname(path.join(copy, file)), { recursive: true })
    fs.copyFileSync(path.join(root, file), path.join(copy, file))
    fs.chmodSync(path.join(copy, file), 0o644)
  }
  for (const dir of ['', 'lib', '__test__', '__test__/fixtures']) fs.chmodSync(path.join(copy, dir), 0o755)
  return copy
}
