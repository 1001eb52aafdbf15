// Acknowledged receive on a channel (docs/CHANNELS.md, "Acknowledged receive"): `ch.take()` moves
// a message from the ring into the channel's in-flight table (a SharedMap named `<channel>.inflight`)
// under the receive lock, in one step that a crash cannot split (the record is written before the
// head moves); `ack()` removes it; a message whose holder died or whose lease expired is taken
// again by the next `take()`, with its delivery count, or sent to a dead-letter channel after
// `maxDeliveries`.

import { randomBytes } from 'node:crypto'

import { decodeMessage, type Codec } from './codec'
import { AbortError, stateError, timedOut, typeError } from './errors'
import { SharedMap } from './map'
import { currentThreadIdentity, threadLiveness } from './native'
import {
  BUSY,
  EMPTY,
  RECV_EVENT,
  RECV_SLEEPERS,
  TRY,
  channelEnded,
  sleepOnAsync,
  spinUntil,
  type Ring,
  type SideLock,
} from './ring'
import {
  MAX_NAME_LENGTH,
  validateInteger,
  validateOptions,
  validateSignal,
  validateTimeout,
  type AsyncOptions,
} from './validate'
import { deadlineOf, remainingMs } from './waiting'

/** Options of `ch.take()`. */
export interface TakeOptions extends AsyncOptions {
  /** Milliseconds this consumer has to `ack()` before the message is delivered again. Default 30 000. */
  leaseMs?: number
  /** Deliveries after which a message is not delivered again but sent to `deadLetter` (or dropped and reported). Default 5. */
  maxDeliveries?: number
  /** Where a message goes after `maxDeliveries` deliveries (its bytes as they are). */
  deadLetter?: {
    sendWith(byteLength: number, fill: (target: Uint8Array) => void, options?: { timeout?: number }): void
  }
  /** Called with the message's bytes when one is given up without a dead-letter channel. */
  onDropped?: (bytes: Uint8Array, deliveries: number) => void
}

/** A message taken with `ch.take()`: acknowledge it when done, or give it back. */
export interface Job<T> {
  /** The message. */
  readonly value: T
  /** Its id in the channel's in-flight table. */
  readonly id: string
  /** How many times it has been delivered, this time included (more than 1: a consumer died or gave it back). */
  readonly deliveries: number
  /** Done with it: removes it for good. False if it was no longer this consumer's (its lease expired and another consumer took it). */
  ack(): boolean
  /** Gives it back: the next `take()` (of any consumer) gets it again. False if it was no longer this consumer's. */
  nack(): boolean
  /** `using job = await ch.take()`: gives the job back unless it was acknowledged. */
  [Symbol.dispose](): void
}

// The in-flight record (a bytes value of the in-flight map): the holder's identity, as a lock
// owner record, the delivery count, the lease's end, then the message's bytes.
const R_TID = 0
const R_NS = 1
const R_START_LO = 2
const R_START_HI = 3
const R_PID = 4
const R_DELIVERIES = 5
const R_DEADLINE = 3 // in f64 units: bytes 24..32
const RECORD_HEADER = 32
/** Entries of an in-flight table (messages taken and not acknowledged at once, channel-wide). */
const INFLIGHT_CAPACITY = 4096
/** How long a judged holder is believed alive before /proc is asked again. */
const LIVENESS_TTL_MS = 100
/** Longest sleep of a waiting take: leases and deaths are looked for between sleeps. */
const SLEEP_SLICE_MS = 250
/**
 * How often a handle looks through the in-flight table for messages due again (a dead holder,
 * an ended lease) at most, while messages keep coming: the look reads every record, so doing it
 * on every take made a take cost O(messages in flight). A lease that ends sooner is looked for
 * at its end.
 */
const SCAN_EVERY_MS = 50
/** The in-flight table of channel `name` is the map `name + INFLIGHT_SUFFIX`. */
const INFLIGHT_SUFFIX = '.inflight'

const ME = currentThreadIdentity()
/** In-flight ids: unique per thread (random) and per take (a counter), without a random draw each time. */
const ID_PREFIX = `${randomBytes(8).toString('hex')}.`
let idCounter = 0

function record(deliveries: number, deadline: number, payload: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(RECORD_HEADER + payload.length)
  const words = new Uint32Array(bytes.buffer, 0, 6)
  words.set([ME[0]!, ME[1]!, ME[2]!, ME[3]!, ME[4]!, deliveries])
  new Float64Array(bytes.buffer, 0, 4)[R_DEADLINE] = deadline
  bytes.set(payload, RECORD_HEADER)
  return bytes
}

interface Parsed {
  holder: number[]
  deliveries: number
  deadline: number
  payload: Uint8Array
}

function parse(bytes: Uint8Array): Parsed | undefined {
  if (bytes.length < RECORD_HEADER) return undefined
  const copy = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice()
  const words = new Uint32Array(copy.buffer, copy.byteOffset, 6)
  return {
    holder: [words[R_TID]!, words[R_NS]!, words[R_START_LO]!, words[R_START_HI]!, words[R_PID]!],
    deliveries: words[R_DELIVERIES]!,
    deadline: new Float64Array(copy.buffer, copy.byteOffset, 4)[R_DEADLINE]!,
    payload: copy.subarray(RECORD_HEADER),
  }
}

const isMe = (holder: number[]) => holder.every((value, i) => value === ME[i])

/** The in-flight table and the liveness verdicts of one channel handle. */
export class InFlight {
  readonly map: SharedMap<Uint8Array>
  readonly #verdicts = new Map<string, { dead: boolean; at: number }>()
  /** `Date.now()` before which `redeliver` need not look (nothing it saw is due earlier). */
  nextScan = 0

  constructor(channelName: string, ringCapacity: number) {
    // Every opener computes the same geometry from the channel's capacity (openOrCreate checks it).
    const memory = Math.max(1 << 20, 4 * ringCapacity + 4 * RECORD_HEADER * INFLIGHT_CAPACITY)
    const name = `${channelName}${INFLIGHT_SUFFIX}`
    if (name.length > MAX_NAME_LENGTH) {
      throw stateError(
        'ENAMETOOLONG',
        `take() keeps the messages in flight in a map named "<channel>${INFLIGHT_SUFFIX}": the channel's name ` +
          `must be at most ${MAX_NAME_LENGTH - INFLIGHT_SUFFIX.length} characters for take(), not ${channelName.length}`,
      )
    }
    this.map = SharedMap.openOrCreate(name, {
      capacity: INFLIGHT_CAPACITY,
      memory: 2 ** Math.ceil(Math.log2(memory)),
      codec: 'bytes',
    })
  }

  /** Whether `holder` is gone (dead; a thread of another namespace is never judged dead). */
  holderDead(holder: number[]): boolean {
    if (isMe(holder)) return false
    const key = holder.join(',')
    const now = performance.now()
    const seen = this.#verdicts.get(key)
    if (seen && now - seen.at < LIVENESS_TTL_MS) return seen.dead
    const dead = threadLiveness(holder) === 'dead'
    this.#verdicts.set(key, { dead, at: now })
    return dead
  }

  close(): void {
    this.map.close()
  }
}

/** A message taken with `take()` and not acknowledged yet, as `shmkit inspect` shows it. */
export interface TakenMessage {
  id: string
  pid: number
  tid: number
  /** Whether its holder still runs: `'unknown'` for another PID namespace or hidden /proc. */
  holder: 'alive' | 'dead' | 'unknown'
  deliveries: number
  /** `Date.now()` at which its lease ends (0: given back, due at once). */
  leaseEndsAt: number
  bytes: number
}

/** The messages of channel `name` taken and not acknowledged; undefined if nothing was ever taken from it. */
export function takenMessages(name: string): TakenMessage[] | undefined {
  let map: SharedMap<Uint8Array>
  try {
    map = SharedMap.open<Uint8Array>(`${name}${INFLIGHT_SUFFIX}`)
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return undefined
    throw error
  }
  try {
    const taken: TakenMessage[] = []
    for (const [id, value] of map.entries()) {
      const r = parse(value)
      if (r === undefined) continue
      taken.push({
        id,
        pid: r.holder[4]!,
        tid: r.holder[0]!,
        holder: threadLiveness(r.holder) as TakenMessage['holder'],
        deliveries: r.deliveries,
        leaseEndsAt: r.deadline,
        bytes: r.payload.length,
      })
    }
    return taken
  } finally {
    map.close()
  }
}

/** What `take` needs of its channel. */
export interface Taker {
  name: string
  ring: Ring
  codec: Codec
  inflight(): InFlight
  assertOpen(): void
  /** With `ifPeersGone`: throws once every producer is gone, the ring is empty and `nothingElse()`. */
  checkProducers(nothingElse: () => boolean): void
  /** Waits (holding nothing) for the receive lock found busy; how the next attempt takes it. */
  awaitRecvLock(deadline: number, signal: AbortSignal | undefined, timeoutMs: number): Promise<SideLock>
}

export async function take<T>(channel: Taker, options: TakeOptions | undefined): Promise<Job<T>> {
  const { timeout, signal, leaseMs, maxDeliveries, deadLetter, onDropped } = validateOptions<TakeOptions>(
    options,
    'options',
    ['timeout', 'signal', 'leaseMs', 'maxDeliveries', 'deadLetter', 'onDropped'],
    false,
  )
  const timeoutMs = validateTimeout(timeout, 'options.timeout')
  const lease = leaseMs === undefined ? 30_000 : validateInteger(leaseMs, 'options.leaseMs', 1, 2 ** 31)
  const most = maxDeliveries === undefined ? 5 : validateInteger(maxDeliveries, 'options.maxDeliveries', 1, 2 ** 31)
  if (deadLetter !== undefined && typeof (deadLetter as { sendWith?: unknown })?.sendWith !== 'function') {
    throw typeError('options.deadLetter', 'a Channel', deadLetter)
  }
  if (onDropped !== undefined && typeof onDropped !== 'function') {
    throw typeError('options.onDropped', 'of type function', onDropped)
  }
  const abortSignal = validateSignal(signal)
  const deadline = deadlineOf(timeoutMs)
  const ring = channel.ring
  let lock: SideLock = TRY
  for (;;) {
    if (abortSignal?.aborted) throw new AbortError(undefined, { cause: abortSignal.reason })
    channel.assertOpen()
    const inflight = channel.inflight()
    const again = redeliver<T>(channel, inflight, lease, most, deadLetter, onDropped)
    if (again) return again
    const taken = ring.take((view, inRing) => {
      // The record goes into the in-flight table BEFORE the head moves (`take` consumes only
      // after this returns): a consumer killed in between leaves the message in the ring and
      // possibly in the table, delivered again (at least once), never lost.
      const id = `j:${ID_PREFIX}${(++idCounter).toString(36)}`
      const payload = inRing ? view.slice() : view
      inflight.map.set(id, record(1, Date.now() + lease, payload))
      return { id, payload }
    }, lock)
    if (taken === BUSY) {
      lock = await channel.awaitRecvLock(deadline, abortSignal, timeoutMs)
      continue
    }
    lock = TRY
    if (taken !== EMPTY) return job<T>(channel, inflight, taken.id, 1, taken.payload)
    if (ring.drainedAfterEnd()) {
      if (inflight.map.size === 0) throw channelEnded(channel.name)
      // Ended and drained, but messages are still in flight: one may come back (its holder
      // dies, its lease ends, it is given back). Nothing will bump the event: look again later.
      const left = remainingMs(deadline)
      if (left === 0) throw timedOut(`a message in channel "${channel.name}"`, timeoutMs)
      await pause(left < 0 ? SLEEP_SLICE_MS : Math.min(left, SLEEP_SLICE_MS), abortSignal)
      continue
    }
    const ready = () => ring.inFlight() !== 0 || ring.ended()
    if (spinUntil(ready)) continue
    // A message in flight may still come back: only an empty table lets producers be "gone".
    channel.checkProducers(() => inflight.map.size === 0)
    try {
      await sleepOnAsync(
        ring.handle,
        ring.words,
        RECV_SLEEPERS,
        RECV_EVENT,
        ready,
        deadline,
        abortSignal,
        () => `a message in channel "${channel.name}"`,
        timeoutMs,
        Math.min(SLEEP_SLICE_MS, lease),
      )
    } catch (error) {
      // Before giving up, a last look for messages that became due meanwhile.
      if ((error as { code?: string }).code !== 'ETIMEDOUT') throw error
      inflight.nextScan = 0
      const last = redeliver<T>(channel, inflight, lease, most, deadLetter, onDropped)
      if (last) return last
      throw error
    }
  }
}

/** Takes over one in-flight message whose holder died or whose lease ended, if there is one. */
function redeliver<T>(
  channel: Taker,
  inflight: InFlight,
  lease: number,
  most: number,
  deadLetter: TakeOptions['deadLetter'],
  onDropped: TakeOptions['onDropped'],
): Job<T> | undefined {
  if (inflight.map.size === 0) return undefined
  const now = Date.now()
  if (now < inflight.nextScan) return undefined
  // Entries another handle adds later have leases of their own: looked for within SCAN_EVERY_MS.
  let next = now + SCAN_EVERY_MS
  const due = (r: Parsed) => r.deadline <= now || inflight.holderDead(r.holder)
  for (const [id, value] of inflight.map.entries()) {
    const seen = parse(value)
    if (seen === undefined) continue
    if (!due(seen)) {
      next = Math.min(next, seen.deadline)
      continue
    }
    let claimed: Parsed | undefined
    inflight.map.update(id, (current) => {
      const r = current && parse(current)
      if (r === undefined || !due(r)) return current // taken (or acknowledged) by someone else meanwhile
      claimed = { ...r, holder: ME.slice(0, 5), deliveries: r.deliveries + 1, deadline: now + lease }
      return record(claimed.deliveries, claimed.deadline, r.payload)
    })
    if (claimed === undefined) continue
    if (claimed.deliveries > most) {
      const bytes = claimed.payload
      if (deadLetter) deadLetter.sendWith(bytes.length, (target) => target.set(bytes), { timeout: 10_000 })
      else onDropped?.(bytes, claimed.deliveries - 1)
      inflight.map.delete(id)
      continue
    }
    inflight.nextScan = 0 // more may be due: the next take looks again
    return job<T>(channel, inflight, id, claimed.deliveries, claimed.payload)
  }
  inflight.nextScan = next
  return undefined
}

function job<T>(channel: Taker, inflight: InFlight, id: string, deliveries: number, payload: Uint8Array): Job<T> {
  let settled = false
  const value = decodeMessage<T>(channel.codec, payload, false)
  /** Applies `change` to the record if it is still this delivery's; whether it was. */
  const settle = (change: (r: Parsed) => Uint8Array | undefined): boolean => {
    if (settled) throw stateError('ERR_SHM_NOT_LOCKED', `Job ${id} was already acknowledged or given back`)
    settled = true
    let mine = false
    inflight.map.update(id, (current) => {
      const r = current && parse(current)
      if (r === undefined || !isMe(r.holder) || r.deliveries !== deliveries) return current
      mine = true
      return change(r)
    })
    return mine
  }
  const giveBack = () => {
    inflight.nextScan = 0 // due at once: this handle's next take looks
    return settle((r) => record(r.deliveries, 0, r.payload))
  }
  return {
    value,
    id,
    deliveries,
    ack: () => settle(() => undefined),
    nack: () => giveBack(),
    [Symbol.dispose]() {
      if (!settled) giveBack()
    },
  }
}

/** Waits `ms` without blocking the event loop; rejects with an AbortError if `signal` aborts. */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer)
      reject(new AbortError(undefined, { cause: signal!.reason }))
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
