#!/usr/bin/env node
// The shmkit command: see what shared memory shmkit has made on this machine, and clean it up.
//
//   shmkit ls [--json]            every shmkit segment and channel
//   shmkit inspect NAME [--json]  one in detail: attachers, lock holder, channel traffic
//   shmkit rm NAME... [--json]    remove segments by name (never objects shmkit did not make)
//   shmkit gc [--json]            remove auto-unlink segments whose every attacher is dead
'use strict'

const { Segment, channelStats } = require('..')

const USAGE = `Usage: shmkit <command> [--json]

Commands:
  ls              list the shmkit segments and channels on this machine
  inspect NAME    show one in detail, including dead lock holders and attachers
  rm NAME...      remove segments or channels by name
  gc              remove auto-unlink segments whose every attacher is dead

Options:
  --json          machine-readable output
  --help          this text`

function main(argv) {
  const json = argv.includes('--json')
  const args = argv.filter((arg) => arg !== '--json')
  const [command, ...names] = args
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    console.log(USAGE)
    return command === undefined ? 2 : 0
  }
  const unknownFlag = args.find((arg) => arg.startsWith('-'))
  if (unknownFlag) return usageError(`unknown option ${unknownFlag}`)
  switch (command) {
    case 'ls':
      return names.length ? usageError('ls takes no names') : list(json)
    case 'inspect':
      return names.length === 1 ? inspect(names[0], json) : usageError('inspect takes exactly one NAME')
    case 'rm':
      return names.length ? remove(names, json) : usageError('rm needs at least one NAME')
    case 'gc':
      return names.length ? usageError('gc takes no names') : collect(json)
    default:
      return usageError(`unknown command ${JSON.stringify(command)}`)
  }
}

function usageError(message) {
  console.error(`shmkit: ${message}\n\n${USAGE}`)
  return 2
}

/** Inspects every listed name; objects that are not valid shmkit segments are set aside. */
function survey() {
  const segments = []
  const skipped = []
  for (const name of Segment.list()) {
    try {
      segments.push(Segment.inspect(name))
    } catch (error) {
      if (error.code !== 'ENOENT') skipped.push({ name, code: error.code, reason: error.message })
    }
  }
  return { segments, skipped }
}

function list(json) {
  const { segments, skipped } = survey()
  if (json) {
    console.log(JSON.stringify({ segments: segments.map(summary), skipped }, null, 2))
    return 0
  }
  if (segments.length === 0) console.log('No shmkit segments.')
  else {
    printTable(
      ['NAME', 'KIND', 'SIZE', 'ATTACHED', 'LOCK', 'AUTO-UNLINK', 'AGE'],
      segments.map((s) => {
        const { alive, dead } = attacherCounts(s)
        return [s.name, s.kind, formatBytes(s.size), dead ? `${alive} (+${dead} dead)` : String(alive), lockSummary(s.headerMutex), s.autoUnlink ? 'yes' : 'no', formatAge(s.createdAt)]
      }),
    )
  }
  for (const { name, reason } of skipped) console.error(`shmkit: skipped ${name}: ${reason}`)
  return 0
}

function summary(s) {
  const { alive, dead } = attacherCounts(s)
  const base = {
    name: s.name,
    kind: s.kind,
    size: s.size,
    createdAt: new Date(s.createdAt).toISOString(),
    creatorPid: s.creatorPid,
    autoUnlink: s.autoUnlink,
    attachers: s.attachers,
    attached: { alive, dead, unknown: s.attachers.length - alive - dead },
    lock: s.headerMutex,
  }
  return s.kind === 'channel' ? { ...base, channel: channelStats(s.dataWords) } : base
}

function inspect(name, json) {
  let s
  try {
    s = Segment.inspect(name)
  } catch (error) {
    return failure(name, error, json)
  }
  if (json) {
    console.log(JSON.stringify(summary(s), null, 2))
    return 0
  }
  const lock = s.headerMutex
  const lines = [
    ['name', s.name],
    ['kind', s.kind],
    ['size', `${formatBytes(s.size)} (${s.size} bytes of data, ${s.headerSize}-byte header)`],
    ['created', `${new Date(s.createdAt).toISOString()} by pid ${s.creatorPid} (${formatAge(s.createdAt)} ago)`],
    ['auto-unlink', s.autoUnlink ? 'yes: removed when its last attacher closes it or dies' : 'no: lives until unlinked'],
  ]
  if (s.doomed) lines.push(['state', 'being removed by its last closer'])
  lines.push(['attached', s.attachers.length ? '' : 'nobody'])
  for (const a of s.attachers) lines.push(['', `pid ${a.pid}: ${a.state === 'dead' ? 'DEAD (its slot is reaped by the next open, close or gc)' : a.state}`])
  if (s.overflow) lines.push(['', `and ${s.overflow} more mapping(s) not recorded (table full)`])
  lines.push(['header lock', lockDetail(lock)])
  lines.push(['', `${lock.acquisitions} acquisitions, ${lock.contended} contended, ${lock.ownerDeaths} taken over from a dead holder`])
  if (s.kind === 'channel') {
    const c = channelStats(s.dataWords)
    lines.push(['channel', `${c.messagesInFlight} message(s), ${formatBytes(c.bytesInFlight)} in flight of ${formatBytes(c.capacity)}`])
    lines.push(['', `${c.sent} sent, ${c.received} received${c.ended ? ', ENDED (receivers drain, then stop)' : ''}`])
  }
  const width = Math.max(...lines.map(([label]) => label.length))
  for (const [label, value] of lines) console.log(`${label.padEnd(width)}  ${value}`)
  return 0
}

function remove(names, json) {
  const results = names.map((name) => {
    try {
      const s = Segment.inspect(name) // refuses objects that are not shmkit segments
      Segment.unlink(name)
      const { alive } = attacherCounts(s)
      return { name, removed: true, stillMappedBy: alive }
    } catch (error) {
      return { name, removed: false, code: error.code, error: error.message }
    }
  })
  if (json) console.log(JSON.stringify(results, null, 2))
  else {
    for (const r of results) {
      if (r.removed) console.log(`removed ${r.name}${r.stillMappedBy ? ` (${r.stillMappedBy} live process(es) keep their mapping until they close it)` : ''}`)
      else console.error(`shmkit: cannot remove ${r.name}: ${describeFailure(r.code, r.error)}`)
    }
  }
  return results.every((r) => r.removed) ? 0 : 1
}

function collect(json) {
  const { segments } = survey()
  const removed = []
  const errors = []
  for (const s of segments.filter((s) => s.autoUnlink)) {
    try {
      if (Segment.collect(s.name)) removed.push(s.name)
    } catch (error) {
      if (error.code !== 'ENOENT') errors.push({ name: s.name, code: error.code, error: error.message })
    }
  }
  if (json) console.log(JSON.stringify({ removed, errors }, null, 2))
  else {
    console.log(removed.length ? removed.map((name) => `removed ${name}`).join('\n') : 'Nothing to remove.')
    for (const e of errors) console.error(`shmkit: ${e.name}: ${e.error}`)
  }
  return errors.length ? 1 : 0
}

function failure(name, error, json) {
  if (json) console.log(JSON.stringify({ name, code: error.code, error: error.message }, null, 2))
  else console.error(`shmkit: ${name}: ${describeFailure(error.code, error.message)}`)
  return 1
}

function describeFailure(code, message) {
  if (code === 'ENOENT') return 'no such segment'
  if (code === 'ERR_SHM_NOT_SHMKIT') return 'not a shmkit segment: left alone'
  return message
}

function attacherCounts(s) {
  return {
    alive: s.attachers.filter((a) => a.state !== 'dead').length,
    dead: s.attachers.filter((a) => a.state === 'dead').length,
  }
}

function lockSummary(lock) {
  if (!lock.locked) return 'free'
  const who = lock.holderPid ? `pid ${lock.holderPid}` : `tid ${lock.holderTid}`
  return `${who} ${lock.holderState === 'dead' ? 'DEAD' : lock.holderState}`
}

function lockDetail(lock) {
  if (!lock.locked) return `free${lock.waiters ? ' (a waiter is waking up)' : ''}`
  const who = `thread ${lock.holderTid}${lock.holderPid ? ` of pid ${lock.holderPid}` : ''}`
  const waiting = lock.waiters ? `; ${lock.sleepers} waiter(s) asleep` : ''
  if (lock.holderState === 'dead') return `held by ${who}, which is DEAD: the next locker takes it over and is told ownerDied${waiting}`
  return `held by ${who} (${lock.holderState})${waiting}`
}

function formatBytes(bytes) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`
}

function formatAge(createdAt) {
  const seconds = Math.max(0, (Date.now() - createdAt) / 1000)
  if (seconds < 60) return `${Math.floor(seconds)}s`
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h`
  return `${Math.floor(seconds / 86400)}d`
}

function printTable(header, rows) {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c].length)))
  for (const row of [header, ...rows]) console.log(row.map((cell, c) => cell.padEnd(widths[c])).join('  ').trimEnd())
}

try {
  process.exitCode = main(process.argv.slice(2))
} catch (error) {
  console.error(`shmkit: ${error.message}`)
  process.exitCode = 1
}
