// Shared helpers for the ava suites: unique segment names and real child processes that are
// killed if they outlive their deadline (a hung child must fail the test, not hang the run).
import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

import { Segment } from '../index.js'

const here = path.dirname(fileURLToPath(import.meta.url))
let counter = 0

/** A name no other test (or earlier run) uses; unlinked by `cleanup`. */
export function uniqueName(t, label = 'seg') {
  const name = `test-${label}-${process.pid}-${++counter}-${Math.random().toString(36).slice(2, 8)}`
  t.teardown(() => {
    try {
      Segment.unlink(name)
    } catch (error) {
      if (error.code !== 'ENOENT') throw error
    }
  })
  return name
}

/**
 * Forks `__test__/fixtures/<script>` with `args`. Resolves with `{ code, signal, messages,
 * stderr }` when it exits; kills it (SIGKILL) and rejects after `timeout` ms.
 */
export function runFixture(script, args = [], { timeout = 30_000, execArgv = [] } = {}) {
  const child = startFixture(script, args, { execArgv })
  return child.done(timeout)
}

/** Forks a fixture and returns it with helpers to await its messages and its exit. */
export function startFixture(script, args = [], { execArgv = [] } = {}) {
  const child = fork(path.join(here, 'fixtures', script), args.map(String), {
    stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    execArgv,
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

/** Asserts that `fn` throws an error of class `type` with `code`. */
export function throwsCoded(t, fn, type, code, message) {
  const error = t.throws(fn, { instanceOf: type }, message)
  t.is(error?.code, code, message)
  return error
}
