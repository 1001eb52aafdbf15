// The shmkit command: see what shared memory shmkit has made on this machine, and clean it up.
// See docs/cli.md.

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'

import { isShmkitError } from './errors'
import type { MutexStats, SegmentInspection } from './inspect'
import { NativeSegment } from './native'
import { takenMessages, type TakenMessage } from './queue'
import { Segment } from './segment'

const USAGE = `Usage: shmkit <command> [options]

Commands:
  ls                  list the shmkit segments and channels on this machine
  inspect NAME        show one in detail: attachers, lock holders (dead ones too), traffic, entries
  rm NAME...          remove segments or channels by name
  rm --prefix P       remove every one whose name starts with P
  gc                  remove auto-unlink segments whose every attacher is dead
  bridge ...          mirror channels and topics to NATS JetStream (shmkit bridge --help)

Options:
  --json              machine-readable output
  --version, -v       the shmkit version
  --help, -h          this text`

/** Runs the command line `argv` (without node and the script); returns the exit code. */
export function main(argv: string[]): number | Promise<number> {
  // Loaded only for this command: the rest of the CLI never loads the NATS client.
  if (argv[0] === 'bridge') return import('./bridge').then((bridge) => bridge.main(argv.slice(1)))
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        json: { type: 'boolean', default: false },
        prefix: { type: 'string' },
        version: { type: 'boolean', short: 'v', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    })
  } catch (error) {
    return usageError((error as Error).message)
  }
  const { values, positionals } = parsed
  if (values.version) {
    console.log(version())
    return 0
  }
  const [command, ...names] = positionals
  if (values.help || command === 'help') {
    console.log(USAGE)
    return 0
  }
  if (command === undefined) {
    console.log(USAGE)
    return 2
  }
  const json = values.json ?? false
  if (values.prefix !== undefined && command !== 'rm') return usageError('--prefix goes with rm')
  switch (command) {
    case 'ls':
      return names.length ? usageError('ls takes no names') : list(json)
    case 'inspect':
      return names.length === 1 ? inspectOne(names[0]!, json) : usageError('inspect takes exactly one NAME')
    case 'rm':
      if (values.prefix !== undefined)
        return names.length ? usageError('rm takes names or --prefix, not both') : remove(byPrefix(values.prefix), json)
      return names.length ? remove(names, json) : usageError('rm needs at least one NAME, or --prefix P')
    case 'gc':
      return names.length ? usageError('gc takes no names') : collect(json)
    default:
      return usageError(`unknown command ${JSON.stringify(command)}`)
  }
}

function version(): string {
  const manifest = JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }
  return manifest.version
}

function usageError(message: string): number {
  console.error(`shmkit: ${message}\n\n${USAGE}`)
  return 2
}

interface Skipped {
  name: string
  code: string | undefined
  reason: string
}

/** Inspects every listed name; objects that are not valid shmkit segments are set aside. */
function survey(): { segments: SegmentInspection[]; skipped: Skipped[] } {
  const segments: SegmentInspection[] = []
  const skipped: Skipped[] = []
  for (const name of Segment.list()) {
    try {
      segments.push(Segment.inspect(name))
    } catch (error) {
      const code = isShmkitError(error) ? error.code : undefined
      if (code !== 'ENOENT') skipped.push({ name, code, reason: (error as Error).message })
    }
  }
  return { segments, skipped }
}

function byPrefix(prefix: string): string[] {
  return Segment.list().filter((name) => name.startsWith(prefix))
}

function list(json: boolean): number {
  const { segments, skipped } = survey()
  if (json) {
    console.log(JSON.stringify({ segments: segments.map(summary), skipped }, null, 2))
    return 0
  }
  if (segments.length === 0) console.log('No shmkit segments.')
  else {
    printTable(
      ['NAME', 'KIND', 'SIZE', 'OWNER', 'MODE', 'ATTACHED', 'LOCK', 'AUTO-UNLINK', 'AGE'],
      segments.map((s) => {
        const { alive, dead } = attacherCounts(s)
        return [
          s.name,
          s.kind,
          formatBytes(s.size),
          ownerLabel(s),
          modeLabel(s),
          dead ? `${alive} (+${dead} dead)` : String(alive),
          lockSummary(s),
          s.autoUnlink ? 'yes' : 'no',
          formatAge(s.createdAt),
        ]
      }),
    )
  }
  for (const { name, reason } of skipped) console.error(`shmkit: skipped ${name}: ${reason}`)
  return 0
}

function summary(s: SegmentInspection) {
  const { alive, dead } = attacherCounts(s)
  return {
    ...s,
    createdAt: new Date(s.createdAt).toISOString(),
    attached: { alive, dead, unknown: s.attachers.length - alive - dead },
  }
}

function inspectOne(name: string, json: boolean): number {
  let s: SegmentInspection
  try {
    s = Segment.inspect(name)
  } catch (error) {
    return failure(name, error, json)
  }
  // A channel's messages taken with take() and not acknowledged, with their holders.
  let taken: TakenMessage[] | undefined
  if (s.kind === 'channel') {
    try {
      taken = takenMessages(name)
    } catch {
      taken = undefined // a scribbled or foreign in-flight table: the channel itself is shown
    }
  }
  if (json) {
    console.log(JSON.stringify({ ...summary(s), ...(taken ? { taken } : {}) }, null, 2))
    return 0
  }
  const lines: [string, string][] = [
    ['name', s.name],
    ['kind', s.kind],
    ['size', `${formatBytes(s.size)} (${s.size} bytes of data, ${s.headerSize}-byte header)`],
    ['created', `${new Date(s.createdAt).toISOString()} by pid ${s.creatorPid} (${formatAge(s.createdAt)} ago)`],
    [
      'auto-unlink',
      s.autoUnlink ? 'yes: removed when its last attacher closes it or dies' : 'no: lives until unlinked',
    ],
  ]
  if (s.owner !== undefined) {
    const warning = s.foreign ? ': ANOTHER USER (opened only with the owner option: was the name squatted?)' : ''
    lines.push(['owner', `${ownerLabel(s)}${warning}`])
  }
  if (s.mode !== undefined) {
    const warning = s.widerThanAsked ? `: WIDER than the 0o${s.requestedMode.toString(8)} asked for at creation` : ''
    lines.push(['mode', `${modeLabel(s)}${warning}`])
  }
  if (s.doomed) lines.push(['state', 'being removed by its last closer'])
  lines.push(['attached', s.attachers.length ? '' : 'nobody'])
  for (const a of s.attachers)
    lines.push([
      '',
      `pid ${a.pid}: ${a.state === 'dead' ? 'DEAD (its slot is reaped by the next open, close or gc)' : a.state}`,
    ])
  if (s.overflow) lines.push(['', `and ${s.overflow} more mapping(s) not recorded (table full)`])
  lines.push(...lockLines('header lock', s.headerMutex))
  for (const { offset, role, mutex } of s.placedMutexes) lines.push(...lockLines(role ?? `mutex @${offset}`, mutex))
  if (s.channel) {
    const c = s.channel
    lines.push([
      'channel',
      `${c.messagesInFlight} message(s), ${formatBytes(c.bytesInFlight)} in flight of ${formatBytes(c.capacity)}`,
    ])
    lines.push(['', `${c.sent} sent, ${c.received} received${c.ended ? ', ENDED (receivers drain, then stop)' : ''}`])
    const p = s.peers
    if (p !== undefined) {
      const side = (count: number, gone: boolean, what: string) =>
        `${count} live ${what}${gone ? ' (ALL GONE: receivers or senders that asked stop waiting)' : ''}`
      lines.push([
        'peers',
        `${side(p.producers, p.producersGone, 'producer(s)')}, ${side(p.consumers, p.consumersGone, 'consumer(s)')}` +
          (p.unlisted ? `, ${p.unlisted} unlisted (table full)` : ''),
      ])
      for (const peer of p.peers) {
        const role = peer.producer && peer.consumer ? 'producer and consumer' : peer.producer ? 'producer' : 'consumer'
        lines.push(['', `pid ${peer.pid}: ${role}, ${peer.state === 'dead' ? 'DEAD' : peer.state}`])
      }
    }
    if (taken !== undefined) {
      lines.push(['taken', `${taken.length} message(s) taken and not acknowledged`])
      const now = Date.now()
      for (const m of taken)
        lines.push([
          '',
          `${m.id}: thread ${m.tid} of pid ${m.pid}, ` +
            `${m.holder === 'dead' ? 'DEAD (delivered again by the next take)' : m.holder}, ` +
            `delivery ${m.deliveries}, ` +
            (m.leaseEndsAt <= now
              ? 'lease over (delivered again)'
              : `lease ends in ${Math.ceil((m.leaseEndsAt - now) / 1000)} s`) +
            `, ${formatBytes(m.bytes)}`,
        ])
    }
  }
  if (s.map) {
    const m = s.map
    lines.push([
      'map',
      `${m.entries} of ${m.capacity} entries, ${formatBytes(m.bytesUsed)} of ${formatBytes(m.heapSize)} used` +
        (m.evict === 'lru' ? ' (LRU: full means evict)' : ''),
    ])
    lines.push(['', `${m.evictions} evicted, ${m.expirations} expired`])
  }
  if (s.topic) {
    const tp = s.topic
    lines.push([
      'topic',
      `${tp.published} published, ${formatBytes(tp.capacity)} ring, slow: ${tp.slow}` +
        `${tp.ended ? ', ENDED (subscribers drain, then stop)' : ''}`,
    ])
    lines.push([
      'subscribers',
      `${tp.subscribers.length} of ${tp.subscriberSlots} slots, ${tp.reaped} reaped after death`,
    ])
    for (const sub of tp.subscribers)
      lines.push([
        '',
        `slot ${sub.slot}: thread ${sub.tid} of pid ${sub.pid}, ` +
          `${sub.alive ? 'alive' : 'DEAD (removed when it holds a publisher back)'}, ` +
          `${sub.behind} message(s) behind${sub.missed ? `, ${sub.missed} missed (lapped)` : ''}`,
      ])
  }
  const width = Math.max(...lines.map(([label]) => label.length))
  for (const [label, value] of lines) console.log(`${label.padEnd(width)}  ${value}`)
  return 0
}

function lockLines(label: string, lock: MutexStats): [string, string][] {
  return [
    [label, lockDetail(lock)],
    [
      '',
      `${lock.acquisitions} acquisitions, ${lock.contended} contended, ${lock.ownerDeaths} taken over from a dead holder`,
    ],
  ]
}

function remove(names: string[], json: boolean): number {
  const results = names.map((name) => {
    try {
      const s = Segment.inspect(name) // refuses objects that are not shmkit segments
      NativeSegment.unlink(name, 0) // any kind
      return { name, removed: true, stillMappedBy: attacherCounts(s).alive }
    } catch (error) {
      return {
        name,
        removed: false,
        code: isShmkitError(error) ? error.code : undefined,
        error: (error as Error).message,
      }
    }
  })
  if (json) console.log(JSON.stringify(results, null, 2))
  else {
    if (results.length === 0) console.log('Nothing to remove.')
    for (const r of results) {
      if (r.removed)
        console.log(
          `removed ${r.name}${r.stillMappedBy ? ` (${r.stillMappedBy} live process(es) keep their mapping until they close it)` : ''}`,
        )
      else console.error(`shmkit: cannot remove ${r.name}: ${describeFailure(r.code, r.error ?? '')}`)
    }
  }
  return results.every((r) => r.removed) ? 0 : 1
}

function collect(json: boolean): number {
  const { segments } = survey()
  const removed: string[] = []
  const errors: { name: string; code: string | undefined; error: string }[] = []
  for (const s of segments.filter((s) => s.autoUnlink)) {
    try {
      if (Segment.collect(s.name)) removed.push(s.name)
    } catch (error) {
      const code = isShmkitError(error) ? error.code : undefined
      if (code !== 'ENOENT') errors.push({ name: s.name, code, error: (error as Error).message })
    }
  }
  if (json) console.log(JSON.stringify({ removed, errors }, null, 2))
  else {
    console.log(removed.length ? removed.map((name) => `removed ${name}`).join('\n') : 'Nothing to remove.')
    for (const e of errors) console.error(`shmkit: ${e.name}: ${e.error}`)
  }
  return errors.length ? 1 : 0
}

function failure(name: string, error: unknown, json: boolean): number {
  const code = isShmkitError(error) ? error.code : undefined
  const message = (error as Error).message
  if (json) console.log(JSON.stringify({ name, code, error: message }, null, 2))
  else console.error(`shmkit: ${name}: ${describeFailure(code, message)}`)
  return 1
}

function describeFailure(code: string | undefined, message: string): string {
  if (code === 'ENOENT') return 'no such segment'
  if (code === 'ERR_SHM_NOT_SHMKIT') return 'not a shmkit segment: left alone'
  return message
}

/** `1000 (alice)`, flagged with `!` when it is another user. */
function ownerLabel(s: SegmentInspection): string {
  if (s.owner === undefined) return '-'
  return `${s.foreign ? '!' : ''}${s.owner}${s.ownerName ? ` (${s.ownerName})` : ''}`
}

/** `0o600`, flagged with `!` when wider than asked for at creation. */
function modeLabel(s: SegmentInspection): string {
  if (s.mode === undefined) return '-'
  return `${s.widerThanAsked ? '!' : ''}0o${s.mode.toString(8).padStart(3, '0')}`
}

function attacherCounts(s: SegmentInspection): { alive: number; dead: number } {
  return {
    alive: s.attachers.filter((a) => a.state !== 'dead').length,
    dead: s.attachers.filter((a) => a.state === 'dead').length,
  }
}

/** The header lock, or for a channel the worst of its locks: a wedged channel must show. */
function lockSummary(s: SegmentInspection): string {
  const locks = [s.headerMutex, ...s.placedMutexes.map((p) => p.mutex)]
  const held = locks.find((l) => l.locked && l.holderState === 'dead') ?? locks.find((l) => l.locked)
  if (held === undefined) return 'free'
  const who = held.holderPid ? `pid ${held.holderPid}` : `tid ${held.holderTid}`
  return `${who} ${held.holderState === 'dead' ? 'DEAD' : held.holderState}`
}

function lockDetail(lock: MutexStats): string {
  if (!lock.locked) return `free${lock.waiters ? ' (a waiter is waking up)' : ''}`
  const who = `thread ${lock.holderTid}${lock.holderPid ? ` of pid ${lock.holderPid}` : ''}`
  const waiting = lock.waiters ? `; ${lock.sleepers} waiter(s) asleep` : ''
  if (lock.holderState === 'dead')
    return `held by ${who}, which is DEAD: the next locker takes it over and is told ownerDied${waiting}`
  return `held by ${who} (${lock.holderState})${waiting}`
}

function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`
}

function formatAge(createdAt: number): string {
  const seconds = Math.max(0, (Date.now() - createdAt) / 1000)
  if (seconds < 60) return `${Math.floor(seconds)}s`
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h`
  return `${Math.floor(seconds / 86400)}d`
}

function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c]!.length)))
  for (const row of [header, ...rows])
    console.log(
      row
        .map((cell, c) => cell.padEnd(widths[c]!))
        .join('  ')
        .trimEnd(),
    )
}
