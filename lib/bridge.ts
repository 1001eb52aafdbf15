// The bridge: local channels and topics mirrored to NATS JetStream subjects and back, so that a
// pipeline spans hosts with the same API on both ends (docs/BRIDGE.md). Loaded only through the
// `shmkit/bridge` entry point and `shmkit bridge`: the core package never loads the NATS client.
//
// Export (local -> JetStream): a channel's messages are taken with `ch.take()` and acknowledged
// locally only once JetStream confirmed them; each is published with a message id derived from its
// in-flight id, so a bridge killed and restarted (which takes the same messages again) is
// de-duplicated by JetStream. A topic is read by a subscription of the bridge.
// Import (JetStream -> local): a durable pull consumer per route; a message is acknowledged to
// JetStream only after the local channel or topic accepted it, and the stream sequences delivered
// and not yet known to be acknowledged are kept in a SharedMap on this host, so redeliveries
// (after a broker restart or a bridge restart) are not delivered twice.

import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'

import { Channel } from './channel'
import type { Codec } from './codec'
import { AbortError, coded, isShmkitError, typeError } from './errors'
import type { Job } from './queue'
import { SharedMap } from './map'
import { Segment } from './segment'
import { Topic, type Subscription } from './topic'
import { validateInteger, validateName, validateOptions, validateSignal } from './validate'

/** One local channel or topic and the JetStream subject it is mirrored to. */
export interface Route {
  /** The local channel or topic. */
  name: string
  /** The JetStream subject. Default: `<subjectPrefix>.<name>`. */
  subject?: string
}

/** Options of `bridge()`. */
export interface BridgeOptions {
  /** NATS server URL(s), e.g. `nats://10.0.0.5:4222` (user and password or token may be in the URL). */
  servers: string | readonly string[]
  /** Local channels and topics whose messages go to JetStream (names, or `{ name, subject }`). */
  exports?: readonly (string | Route)[]
  /** JetStream subjects whose messages go to local channels and topics. */
  imports?: readonly (string | Route)[]
  /** The JetStream stream that holds the subjects. Default `'SHMKIT'`. */
  stream?: string
  /** Subjects are `<subjectPrefix>.<name>` unless a route names its own. Default `'shmkit'`. */
  subjectPrefix?: string
  /** Creates the stream (file storage, subjects `<subjectPrefix>.>`) when it does not exist. Default false. */
  createStream?: boolean
  /** This host's name in the durable consumer of each imported topic (every host gets every message). Default: the host name. */
  host?: string
  /** Ring bytes of a channel or topic an import creates because it does not exist yet. Default 1 MiB. */
  capacity?: number
  /**
   * Milliseconds JetStream waits for an import's acknowledgement before delivering a message
   * again: how soon the messages a killed bridge held reach another one. Set when the durable
   * consumer is created (by the first bridge importing the subject). Default 30 000.
   */
  ackWait?: number
  /** Publishes an export keeps in flight before it waits for JetStream's confirmations. Default 256. */
  window?: number
  /** Further options for the NATS client's `connect` (credentials, TLS, `name`, ...). */
  connection?: Record<string, unknown>
  /** Called with every state change (connection, routes, retries); the CLI prints them. */
  onEvent?: (event: BridgeEvent) => void
  /** Stops the bridge, as `close()` does. */
  signal?: AbortSignal
}

/** A state change, as the CLI logs it. */
export interface BridgeEvent {
  /** ISO time. */
  time: string
  level: 'info' | 'warn' | 'error'
  /** e.g. `connecting`, `connected`, `disconnected`, `route-running`, `route-retrying`, `local-created`, `route-ended`, `route-failed`, `closed`. */
  event: string
  /** `export orders -> shmkit.orders` for route events. */
  route?: string
  message: string
  /** The error code behind a warning or error, when there is one. */
  code?: string
}

/** What `bridge.status()` reports of one route. */
export interface RouteStatus {
  direction: 'export' | 'import'
  name: string
  subject: string
  /** `'channel'` or `'topic'`; undefined until the local object is known (an import waits for its first message to learn it). */
  kind: 'channel' | 'topic' | undefined
  state: 'starting' | 'waiting' | 'running' | 'retrying' | 'ended' | 'failed' | 'closed'
  /** Messages forwarded (confirmed by JetStream, or accepted locally). */
  forwarded: number
  /** Import: messages JetStream delivered again that were already delivered here, skipped. */
  duplicatesSkipped: number
  /** Export of a topic: messages the bridge's subscription missed because it lagged (overwrite topics). */
  missed: number
  /** Times the route restarted after an error. */
  retries: number
  lastError?: string
}

/** What `bridge.status()` reports. */
export interface BridgeStatus {
  connected: boolean
  server: string | undefined
  stream: string
  routes: RouteStatus[]
}

/** A running bridge. */
export interface Bridge {
  status(): BridgeStatus
  /** Stops taking and pulling, waits for what is in flight (bounded), gives back what is unconfirmed, disconnects. */
  close(): Promise<void>
  /** Resolves when the bridge has closed: by `close()`, by the signal, or because every route ended or failed. */
  readonly closed: Promise<void>
}

// NATS headers carrying what the other end needs to be the same kind of object.
const H_KIND = 'Shmkit-Kind'
const H_CODEC = 'Shmkit-Codec'
const H_END = 'Shmkit-End'
const CODEC_NAMES: readonly Codec[] = ['bytes', 'string', 'json', 'v8']
/** How long a channel message taken by an export may stay unconfirmed before another taker may take it. */
const EXPORT_LEASE_MS = 120_000
/** How long JetStream waits for an import's acknowledgement before it delivers a message again. */
const ACK_WAIT_MS = 30_000
/** Messages an import's consumer may have delivered and unacknowledged. */
const MAX_ACK_PENDING = 4096
/** Retry delays of a failing route: doubling from the first to the last. */
const BACKOFF_FIRST_MS = 250
const BACKOFF_LAST_MS = 10_000
/** Entries of an import's record of delivered sequences (`NAME.bridge`). */
const SEEN_CAPACITY = 1 << 17
/** How old the ack floor an import forgets delivered sequences below must be (a broker's unsaved acknowledgements). */
const FLOOR_DELAY_MS = 15_000
/** How often an import forgets the delivered sequences below its consumer's ack floor. */
const PRUNE_EVERY_MS = 2_000
const SUBJECT_TOKEN = /^[^\s.*>]+$/
const STREAM_NAME = /^[A-Za-z0-9_-]{1,64}$/

// The NATS client, loaded on first use (an optional peer dependency). Typed loosely on purpose:
// its types must not leak into this package's declarations, which users compile without it.
/* eslint-disable @typescript-eslint/no-explicit-any */
type Any = any
interface Nats {
  connect(options: Record<string, unknown>): Promise<Any>
  headers(): Any
  jetstream(nc: Any, options?: Record<string, unknown>): Any
  jetstreamManager(nc: Any): Promise<Any>
}

function loadNats(): Nats {
  try {
    const transport = require('@nats-io/transport-node') as Any
    const js = require('@nats-io/jetstream') as Any
    return {
      connect: transport.connect,
      headers: transport.headers,
      jetstream: js.jetstream,
      jetstreamManager: js.jetstreamManager,
    }
  } catch (cause) {
    if ((cause as { code?: string }).code !== 'MODULE_NOT_FOUND') throw cause
    throw coded(
      new Error(
        'The bridge needs the NATS client, an optional peer dependency: npm install @nats-io/transport-node @nats-io/jetstream',
        { cause },
      ),
      'ERR_SHM_NO_NATS',
    )
  }
}

/**
 * Starts a bridge: connects to NATS (retrying until it can), checks or creates the stream, and
 * runs every route until `close()`. Rejects on bad options, a missing NATS client, or a missing
 * stream (unless `createStream`); route errors are retried with backoff and reported as events.
 */
export async function bridge(options: BridgeOptions): Promise<Bridge> {
  const config = validateBridgeOptions(options)
  const nats = loadNats()
  return new Running(config, nats).start()
}

interface RouteConfig {
  direction: 'export' | 'import'
  name: string
  subject: string
}

interface Config {
  servers: string[]
  exports: RouteConfig[]
  imports: RouteConfig[]
  stream: string
  subjectPrefix: string
  createStream: boolean
  host: string
  capacity: number
  window: number
  ackWait: number
  connection: Record<string, unknown>
  onEvent: (event: BridgeEvent) => void
  signal: AbortSignal | undefined
}

function validateBridgeOptions(options: BridgeOptions): Config {
  const o = validateOptions<BridgeOptions>(
    options,
    'options',
    [
      'servers',
      'exports',
      'imports',
      'stream',
      'subjectPrefix',
      'createStream',
      'host',
      'capacity',
      'window',
      'ackWait',
      'connection',
      'onEvent',
      'signal',
    ],
    true,
  )
  const servers = typeof o.servers === 'string' ? [o.servers] : o.servers
  if (!Array.isArray(servers) || servers.length === 0 || servers.some((s) => typeof s !== 'string' || s === ''))
    throw typeError('options.servers', 'a non-empty string or array of strings', o.servers)
  const subjectPrefix = o.subjectPrefix ?? 'shmkit'
  if (typeof subjectPrefix !== 'string' || !validSubject(subjectPrefix))
    throw typeError('options.subjectPrefix', 'a NATS subject (tokens without spaces, * or >)', subjectPrefix)
  const stream = o.stream ?? 'SHMKIT'
  if (typeof stream !== 'string' || !STREAM_NAME.test(stream))
    throw typeError('options.stream', 'a stream name of 1 to 64 characters from A-Z a-z 0-9 _ -', stream)
  const routes = (list: unknown, direction: 'export' | 'import'): RouteConfig[] => {
    if (list === undefined) return []
    if (!Array.isArray(list)) throw typeError(`options.${direction}s`, 'an array', list)
    return list.map((route: unknown) => {
      const r = typeof route === 'string' ? { name: route } : route
      if (typeof r !== 'object' || r === null)
        throw typeError(`options.${direction}s[]`, 'a name or { name, subject }', route)
      const { name, subject } = r as Route
      validateName(name)
      const full = subject ?? `${subjectPrefix}.${name}`
      if (typeof full !== 'string' || !validSubject(full))
        throw coded(
          new TypeError(
            `The subject ${JSON.stringify(full)} of ${direction} ${name} is not a NATS subject: give the route a subject (name=subject)`,
          ),
          'ERR_INVALID_ARG_VALUE',
        )
      return { direction, name, subject: full }
    })
  }
  const exports = routes(o.exports, 'export')
  const imports = routes(o.imports, 'import')
  if (exports.length + imports.length === 0)
    throw coded(new TypeError('A bridge needs at least one export or import'), 'ERR_INVALID_ARG_VALUE')
  for (const e of exports) {
    if (imports.some((i) => i.name === e.name))
      throw coded(new TypeError(`${e.name} is both exported and imported: that would loop`), 'ERR_INVALID_ARG_VALUE')
  }
  const seen = new Set<string>()
  for (const r of [...exports, ...imports]) {
    const key = `${r.direction} ${r.name}`
    if (seen.has(key)) throw coded(new TypeError(`${key} is given twice`), 'ERR_INVALID_ARG_VALUE')
    seen.add(key)
  }
  const host = o.host ?? hostname()
  if (typeof host !== 'string' || host === '') throw typeError('options.host', 'a non-empty string', host)
  if (o.createStream !== undefined && typeof o.createStream !== 'boolean')
    throw typeError('options.createStream', 'a boolean', o.createStream)
  if (o.connection !== undefined && (typeof o.connection !== 'object' || o.connection === null))
    throw typeError('options.connection', 'an object', o.connection)
  if (o.onEvent !== undefined && typeof o.onEvent !== 'function')
    throw typeError('options.onEvent', 'a function', o.onEvent)
  return {
    servers,
    exports,
    imports,
    stream,
    subjectPrefix,
    createStream: o.createStream ?? false,
    host,
    capacity: o.capacity === undefined ? 1 << 20 : validateInteger(o.capacity, 'options.capacity', 64, 2 ** 40),
    window: o.window === undefined ? 256 : validateInteger(o.window, 'options.window', 1, 65_536),
    ackWait: o.ackWait === undefined ? ACK_WAIT_MS : validateInteger(o.ackWait, 'options.ackWait', 1_000, 3_600_000),
    connection: o.connection ?? {},
    onEvent: o.onEvent ?? (() => {}),
    signal: validateSignal(o.signal),
  }
}

function validSubject(subject: string): boolean {
  return subject.length <= 255 && subject.split('.').every((token) => SUBJECT_TOKEN.test(token))
}

/** A durable consumer name from parts: letters, digits, `_` and `-` only. */
function durableName(...parts: string[]): string {
  return parts
    .join('_')
    .replace(/[^A-Za-z0-9_-]/g, '_')
    .slice(0, 200)
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve()
    const timer = setTimeout(done, ms)
    function done() {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    signal.addEventListener('abort', done, { once: true })
  })

/** The local channel or topic an import fills, opened for bytes. */
interface Target {
  kind: 'channel' | 'topic'
  codec: Codec
  ch?: Channel<Uint8Array>
  topic?: Topic<Uint8Array>
}

/** Thrown by a route for a condition that retrying cannot fix (it fails the route for good). */
class Fatal extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message)
  }
}

class Running implements Bridge {
  readonly #config: Config
  readonly #nats: Nats
  readonly #stop = new AbortController()
  readonly #routes: RouteStatus[] = []
  #nc: Any
  #js: Any
  #jsm: Any
  #connected = false
  #server: string | undefined
  #closing: Promise<void> | undefined
  #runs: Promise<unknown> = Promise.resolve()
  #resolveClosed!: () => void
  readonly closed: Promise<void>

  constructor(config: Config, nats: Nats) {
    this.#config = config
    this.#nats = nats
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve
    })
  }

  #event(level: BridgeEvent['level'], event: string, message: string, extra: Partial<BridgeEvent> = {}): void {
    const record: BridgeEvent = { time: new Date().toISOString(), level, event, message, ...extra }
    try {
      this.#config.onEvent(record)
    } catch {
      // A throwing listener must not stop the bridge.
    }
  }

  async start(): Promise<Bridge> {
    const { signal } = this.#config
    if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason })
    this.#event('info', 'connecting', `connecting to ${this.#config.servers.join(',')} (until it answers)`)
    this.#nc = await this.#nats.connect({
      name: `shmkit bridge on ${this.#config.host}`,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      waitOnFirstConnect: true,
      ...this.#config.connection,
      servers: this.#config.servers,
    })
    this.#connected = true
    this.#server = this.#nc.getServer?.()
    this.#event('info', 'connected', `connected to ${this.#server ?? this.#config.servers.join(',')}`)
    void this.#watchConnection()
    try {
      this.#jsm = await this.#nats.jetstreamManager(this.#nc)
      this.#js = this.#nats.jetstream(this.#nc)
      await this.#ensureStream()
    } catch (error) {
      await this.#nc.close().catch(() => {})
      throw error
    }
    signal?.addEventListener('abort', () => void this.close(), { once: true })
    if (signal?.aborted) void this.close() // aborted while connecting
    const runs = [...this.#config.exports, ...this.#config.imports].map((route) => this.#supervise(route))
    this.#runs = Promise.allSettled(runs)
    // Every route ended or failed: the bridge has nothing left to do.
    void this.#runs.then(() => this.close())
    return this
  }

  async #watchConnection(): Promise<void> {
    for await (const s of this.#nc.status()) {
      const type = String(s.type)
      if (type === 'disconnect') {
        this.#connected = false
        this.#event('warn', 'disconnected', `disconnected from ${s.server ?? 'the server'}`)
      } else if (type === 'reconnect') {
        this.#connected = true
        this.#server = s.server ?? this.#server
        this.#event('info', 'reconnected', `reconnected to ${s.server ?? 'the server'}`)
      } else if (type === 'reconnecting') {
        this.#connected = false
      } else if (type === 'error') {
        this.#event('warn', 'connection-error', String(s.error?.message ?? s.error ?? 'connection error'))
      }
    }
  }

  async #ensureStream(): Promise<void> {
    const { stream, subjectPrefix, createStream } = this.#config
    try {
      await this.#jsm.streams.info(stream)
      return
    } catch (error) {
      if (!/not found/i.test(String((error as Error).message))) throw error
    }
    if (!createStream)
      throw coded(
        new Error(`The JetStream stream ${stream} does not exist: create it, or start the bridge with --create-stream`),
        'ERR_SHM_NO_STREAM',
      )
    await this.#jsm.streams.add({
      name: stream,
      subjects: [`${subjectPrefix}.>`],
      storage: 'file',
      duplicate_window: 120 * 1e9,
    })
    this.#event('info', 'stream-created', `created the stream ${stream} for ${subjectPrefix}.>`)
  }

  /** Runs one route, restarting it with backoff after errors, until the bridge closes or it ends or fails. */
  async #supervise(route: RouteConfig): Promise<void> {
    const status: RouteStatus = {
      direction: route.direction,
      name: route.name,
      subject: route.subject,
      kind: undefined,
      state: 'starting',
      forwarded: 0,
      duplicatesSkipped: 0,
      missed: 0,
      retries: 0,
    }
    this.#routes.push(status)
    const label = `${route.direction} ${route.name} ${route.direction === 'export' ? '->' : '<-'} ${route.subject}`
    const stop = this.#stop.signal
    let delay = BACKOFF_FIRST_MS
    while (!stop.aborted) {
      try {
        const ended =
          route.direction === 'export'
            ? await this.#export(route, status, label)
            : await this.#import(route, status, label)
        if (ended) {
          status.state = 'ended'
          this.#event('info', 'route-ended', 'the local stream ended; the route is done', { route: label })
        }
        if (ended || stop.aborted) break
        delay = BACKOFF_FIRST_MS
      } catch (error) {
        if (stop.aborted) break
        const code = (error as { code?: string }).code
        status.lastError = (error as Error).message
        if (error instanceof Fatal) {
          status.state = 'failed'
          this.#event('error', 'route-failed', error.message, { route: label, code: error.code })
          return
        }
        status.state = 'retrying'
        status.retries++
        this.#event('warn', 'route-retrying', `${(error as Error).message}; retrying in ${delay} ms`, {
          route: label,
          ...(code === undefined ? {} : { code: String(code) }),
        })
        await sleep(delay, stop)
        delay = Math.min(delay * 2, BACKOFF_LAST_MS)
      }
    }
    if (status.state !== 'ended' && status.state !== 'failed') status.state = 'closed'
  }

  // --- export ---------------------------------------------------------------------------------

  /** Waits until the local object exists; returns its kind and codec. */
  async #local(name: string, status: RouteStatus, label: string): Promise<{ kind: 'channel' | 'topic'; codec: Codec }> {
    let announced = false
    for (;;) {
      try {
        const inspection = Segment.inspect(name)
        if (inspection.kind === 'channel') {
          const ch = Channel.open(name)
          try {
            return { kind: 'channel', codec: ch.codec }
          } finally {
            ch.close()
          }
        }
        if (inspection.kind === 'topic') {
          const topic = Topic.open(name)
          try {
            return { kind: 'topic', codec: topic.codec }
          } finally {
            topic.close()
          }
        }
        throw new Fatal(`${name} is a ${inspection.kind}, not a channel or topic`, 'ERR_SHM_WRONG_KIND')
      } catch (error) {
        if ((error as { code?: string }).code !== 'ENOENT') throw error
      }
      if (!announced) {
        status.state = 'waiting'
        this.#event('info', 'route-waiting', `waiting for the local channel or topic ${name} to exist`, {
          route: label,
        })
        announced = true
      }
      await sleep(500, this.#stop.signal)
      if (this.#stop.signal.aborted) throw new AbortError()
    }
  }

  #headers(kind: string, codec: Codec, end = false): Any {
    const h = this.#nats.headers()
    h.set(H_KIND, kind)
    h.set(H_CODEC, codec)
    if (end) h.set(H_END, '1')
    return h
  }

  async #export(route: RouteConfig, status: RouteStatus, label: string): Promise<boolean> {
    const { kind, codec } = await this.#local(route.name, status, label)
    status.kind = kind
    status.state = 'running'
    this.#event('info', 'route-running', `exporting the ${codec} ${kind} ${route.name}`, { route: label })
    const headers = this.#headers(kind, codec)
    return kind === 'channel'
      ? this.#exportChannel(route, status, label, headers, codec, kind)
      : this.#exportTopic(route, status, label, headers, codec, kind)
  }

  /**
   * Publishes in order with up to `window` confirmations outstanding; `confirm` runs for each
   * message once JetStream stored it (or knew its id as a duplicate). When a publish fails (the
   * broker is down or unreachable), every unconfirmed message is published again, in order, each
   * until JetStream confirms it, with backoff; their ids make the repeats harmless. Meanwhile the
   * route takes nothing more, so the local channel fills and its senders wait: backpressure, not
   * loss. Only closing the bridge ends the retries.
   */
  #pipeline(subject: string, headers: Any, status: RouteStatus, label: string) {
    const window = this.#config.window
    const stop = this.#stop.signal
    const inFlight: { data: Uint8Array; id: string; confirm: () => void; ack: Promise<unknown> }[] = []
    const publish = (data: Uint8Array, id: string) => {
      // The client makes an Error per request up front, for a timeout's stack trace; capturing
      // that stack was a quarter of an export's time. The errors keep their messages.
      const limit = Error.stackTraceLimit
      Error.stackTraceLimit = 0
      let ack: Promise<unknown>
      try {
        ack = this.#js.publish(subject, data, { msgID: id, headers, timeout: 5_000 }) as Promise<unknown>
      } finally {
        Error.stackTraceLimit = limit
      }
      ack.catch(() => {}) // observed when its turn comes
      return ack
    }
    const settleOldest = async () => {
      const oldest = inFlight[0]!
      try {
        await oldest.ack
        inFlight.shift()
        oldest.confirm()
        return
      } catch (error) {
        status.state = 'retrying'
        status.retries++
        status.lastError = (error as Error).message
        this.#event('warn', 'route-retrying', `a publish failed (${(error as Error).message}); publishing again`, {
          route: label,
        })
      }
      let delay = BACKOFF_FIRST_MS
      while (inFlight.length > 0) {
        const item = inFlight[0]!
        try {
          await publish(item.data, item.id)
          inFlight.shift()
          item.confirm()
          delay = BACKOFF_FIRST_MS
        } catch (error) {
          if (stop.aborted) throw new AbortError(undefined, { cause: error })
          status.lastError = (error as Error).message
          await sleep(delay, stop)
          delay = Math.min(delay * 2, BACKOFF_LAST_MS)
        }
      }
      status.state = 'running'
      this.#event('info', 'route-running', 'JetStream confirmed every message again', { route: label })
    }
    return {
      get size() {
        return inFlight.length
      },
      async push(data: Uint8Array, id: string, confirm: () => void) {
        inFlight.push({ data, id, confirm, ack: publish(data, id) })
        while (inFlight.length >= window) await settleOldest()
      },
      async drain() {
        while (inFlight.length > 0) await settleOldest()
      },
      /** Forgets what is unconfirmed (at close: channel messages go back to the channel). */
      abandon() {
        inFlight.length = 0
      },
    }
  }

  async #exportChannel(
    route: RouteConfig,
    status: RouteStatus,
    label: string,
    headers: Any,
    codec: Codec,
    kind: string,
  ) {
    const ch = Channel.open<Uint8Array>(route.name, { codec: 'bytes' })
    const pipeline = this.#pipeline(route.subject, headers, status, label)
    const held = new Map<string, Job<Uint8Array>>()
    const stop = this.#stop.signal
    try {
      for (;;) {
        let job: Job<Uint8Array>
        try {
          // While confirmations are outstanding, take only what is already there: then confirm.
          job =
            pipeline.size > 0
              ? await ch.take({ leaseMs: EXPORT_LEASE_MS, timeout: 0, signal: stop }).catch((error: unknown) => {
                  if ((error as { code?: string }).code === 'ETIMEDOUT') return undefined as never
                  throw error
                })
              : await ch.take({ leaseMs: EXPORT_LEASE_MS, signal: stop })
        } catch (error) {
          if ((error as { code?: string }).code === 'ERR_SHM_CHANNEL_ENDED') {
            await pipeline.drain()
            await this.#publishEnd(route.subject, kind, codec)
            return true
          }
          if (error instanceof AbortError || stop.aborted) return false
          throw error
        }
        if (job === undefined) {
          await pipeline.drain()
          continue
        }
        // A message taken again (its earlier taker died, or this bridge's lease ran out) keeps its
        // id, and so its message id: JetStream stores it once.
        held.set(job.id, job)
        await pipeline.push(job.value, `${route.subject}:${job.id}`, () => {
          if (held.get(job.id) === job) held.delete(job.id)
          if (job.ack()) status.forwarded++
        })
      }
    } finally {
      // Unconfirmed messages go back to the channel (taken again by the next run, same ids).
      pipeline.abandon()
      for (const job of held.values()) job.nack()
      ch.close()
    }
  }

  async #exportTopic(route: RouteConfig, status: RouteStatus, label: string, headers: Any, codec: Codec, kind: string) {
    const topic = Topic.open<Uint8Array>(route.name, { codec: 'bytes' })
    let subscription: Subscription<Uint8Array> | undefined
    const pipeline = this.#pipeline(route.subject, headers, status, label)
    const run = randomBytes(8).toString('hex')
    const stop = this.#stop.signal
    let n = 0
    try {
      subscription = topic.subscribe()
      for (;;) {
        let message: Uint8Array | undefined
        try {
          message = pipeline.size > 0 ? subscription.tryRecv() : await subscription.recvAsync({ signal: stop })
        } catch (error) {
          const code = (error as { code?: string }).code
          if (code === 'ERR_SHM_LAGGED') {
            const missed = (error as { missed?: number }).missed ?? 0
            status.missed += missed
            this.#event('warn', 'route-lagged', `the bridge's subscription missed ${missed} message(s)`, {
              route: label,
              code,
            })
            continue
          }
          if (code === 'ERR_SHM_CHANNEL_ENDED') {
            await pipeline.drain()
            await this.#publishEnd(route.subject, kind, codec)
            return true
          }
          if (error instanceof AbortError || stop.aborted) return false
          throw error
        }
        if (message === undefined) {
          await pipeline.drain()
          continue
        }
        await pipeline.push(message, `${route.subject}:${run}:${n++}`, () => {
          status.forwarded++
        })
      }
    } finally {
      if (!stop.aborted) await pipeline.drain().catch(() => {})
      pipeline.abandon()
      subscription?.close()
      topic.close()
    }
  }

  async #publishEnd(subject: string, kind: string, codec: Codec): Promise<void> {
    await this.#js.publish(subject, new Uint8Array(0), {
      msgID: `${subject}:end:${randomBytes(8).toString('hex')}`,
      headers: this.#headers(kind, codec, true),
      timeout: 5_000,
    })
  }

  // --- import ---------------------------------------------------------------------------------

  async #consumer(route: RouteConfig, topic: boolean): Promise<Any> {
    const durable = topic
      ? durableName('shmkit', 'topic', this.#config.host, route.subject)
      : durableName('shmkit', 'channel', route.subject)
    try {
      await this.#jsm.consumers.info(this.#config.stream, durable)
    } catch (error) {
      if (!/not found/i.test(String((error as Error).message))) throw error
      await this.#jsm.consumers.add(this.#config.stream, {
        durable_name: durable,
        filter_subject: route.subject,
        ack_policy: 'explicit',
        deliver_policy: 'all',
        ack_wait: this.#config.ackWait * 1e6,
        max_ack_pending: MAX_ACK_PENDING,
      })
    }
    return this.#js.consumers.get(this.#config.stream, durable)
  }

  /** The kind the route imports into: the local object's, else that of the last message stored on the subject. */
  async #importKind(route: RouteConfig): Promise<'channel' | 'topic' | undefined> {
    try {
      const kind = Segment.inspect(route.name).kind
      if (kind === 'channel' || kind === 'topic') return kind
      throw new Fatal(`${route.name} is a ${kind}, not a channel or topic`, 'ERR_SHM_WRONG_KIND')
    } catch (error) {
      if ((error as { code?: string }).code !== 'ENOENT') throw error
    }
    try {
      const last = await this.#jsm.streams.getMessage(this.#config.stream, { last_by_subj: route.subject })
      const kind = last?.header?.get(H_KIND)
      if (kind === 'channel' || kind === 'topic') return kind
    } catch (error) {
      if (!/not found|no message/i.test(String((error as Error).message))) throw error
    }
    return undefined
  }

  async #import(route: RouteConfig, status: RouteStatus, label: string): Promise<boolean> {
    const stop = this.#stop.signal
    let kind = await this.#importKind(route)
    if (kind === undefined) {
      status.state = 'waiting'
      this.#event('info', 'route-waiting', `waiting for a first message to learn what ${route.name} is`, {
        route: label,
      })
      while (kind === undefined) {
        await sleep(500, stop)
        if (stop.aborted) return false
        kind = await this.#importKind(route)
      }
    }
    status.kind = kind
    // A channel import shares one durable consumer among hosts (each message to one of them); a
    // topic import has one per host (every host gets every message).
    const consumer = await this.#consumer(route, kind === 'topic')
    // Stream sequences delivered here, on this host: they outlive a bridge killed between
    // delivering a message and acknowledging it, and a broker that forgot acknowledgements it
    // had confirmed (one killed before it saved them). An entry goes once the consumer's ack
    // floor, as the broker reported it FLOOR_DELAY_MS earlier, passes it. Never full: it evicts
    // the least recently used entry first (which could only cost a duplicate).
    const seen = SharedMap.openOrCreate<number>(`${route.name}.bridge`, {
      capacity: SEEN_CAPACITY,
      memory: SEEN_CAPACITY * 48, // keys of up to 16 digits, values `1`: 17 MiB in all
      codec: 'json',
      evict: 'lru',
    })
    let target: Target | undefined
    let messages: Any
    let lastPrune = Date.now()
    const floors: { at: number; floor: number }[] = []
    const prune = async () => {
      lastPrune = Date.now()
      const info = await consumer.info()
      floors.push({ at: lastPrune, floor: Number(info.ack_floor?.stream_seq ?? 0) })
      let floor = 0
      while (floors.length > 0 && floors[0]!.at <= lastPrune - FLOOR_DELAY_MS) floor = floors.shift()!.floor
      if (floor === 0) return
      const stale: string[] = []
      for (const key of seen.keys()) if (Number(key) <= floor) stale.push(key)
      for (const key of stale) seen.delete(key)
    }
    status.state = 'running'
    this.#event('info', 'route-running', `importing into the ${kind} ${route.name}`, { route: label })
    const onAbort = () => void messages?.stop?.()
    stop.addEventListener('abort', onAbort, { once: true })
    try {
      messages = await consumer.consume({ max_messages: 256 })
      for await (const m of messages) {
        if (stop.aborted) return false
        const seq = String(m.seq)
        if (seen.has(seq)) {
          // Delivered before: its acknowledgement was lost (a broker restart) or never sent (a bridge killed).
          status.duplicatesSkipped++
          m.ack()
          continue
        }
        const mKind = m.headers?.get(H_KIND)
        const mCodec = m.headers?.get(H_CODEC) as Codec
        if ((mKind !== 'channel' && mKind !== 'topic') || !CODEC_NAMES.includes(mCodec)) {
          m.term()
          this.#event('warn', 'foreign-message', `message ${seq} has no shmkit headers; it was dropped`, {
            route: label,
          })
          continue
        }
        if (mKind !== kind)
          throw new Fatal(`${route.subject} carries a ${mKind} but ${route.name} is a ${kind}`, 'ERR_SHM_WRONG_KIND')
        target ??= this.#openTarget(route.name, kind, mCodec, label)
        if (mCodec !== target.codec)
          throw new Fatal(
            `${route.subject} carries ${mCodec} messages but ${route.name} is a ${target.codec} ${kind}`,
            'ERR_SHM_CODEC_MISMATCH',
          )
        if (m.headers?.get(H_END) === '1') {
          // Messages before the end that a killed bridge held come again after the ack wait:
          // the end waits for them (it is the one message still pending when they are done).
          const pending = Number((await consumer.info()).num_ack_pending ?? 0)
          if (pending > 1) {
            m.nak(500)
            continue
          }
          if (target.ch) target.ch.end()
          else target.topic!.end()
          m.ack()
          return true
        }
        await this.#deliver(target, m, stop)
        seen.set(seq, 1)
        m.ack()
        status.forwarded++
        if (Date.now() - lastPrune > PRUNE_EVERY_MS) await prune()
      }
      return false
    } catch (error) {
      if ((error as { code?: string }).code === 'ERR_SHM_CHANNEL_ENDED') return true
      if (error instanceof AbortError || stop.aborted) return false
      throw error
    } finally {
      stop.removeEventListener('abort', onAbort)
      messages?.stop?.()
      target?.ch?.close()
      target?.topic?.close()
      seen.close()
    }
  }

  /** Opens the local channel or topic for bytes, creating it with the kind and codec of the messages if it does not exist. */
  #openTarget(name: string, kind: 'channel' | 'topic', codec: Codec, label: string): Target {
    const Kind = (kind === 'channel' ? Channel : Topic) as {
      open(name: string): Channel | Topic
      create(name: string, options: { capacity: number; codec: Codec }): Channel | Topic
    }
    let probe: Channel | Topic
    try {
      probe = Kind.open(name) // whatever its capacity
    } catch (error) {
      if ((error as { code?: string }).code !== 'ENOENT') throw error
      // One creator among racers; a racer that won made it with its own capacity: open that.
      try {
        probe = Kind.create(name, { capacity: this.#config.capacity, codec })
        this.#event('info', 'local-created', `created the ${codec} ${kind} ${name}, as the messages are`, {
          route: label,
        })
      } catch (again) {
        if ((again as { code?: string }).code !== 'EEXIST') throw again
        probe = Kind.open(name)
      }
    }
    const recorded = probe.codec
    probe.close()
    return kind === 'channel'
      ? { kind, codec: recorded, ch: Channel.open<Uint8Array>(name, { codec: 'bytes' }) }
      : { kind, codec: recorded, topic: Topic.open<Uint8Array>(name, { codec: 'bytes' }) }
  }

  /** Sends one message locally, telling JetStream the bridge is working on it while the local side is full. */
  async #deliver(target: Target, m: Any, stop: AbortSignal): Promise<void> {
    const data = m.data as Uint8Array
    if (target.ch?.trySend(data)) return
    const working = setInterval(() => m.working(), this.#config.ackWait / 3)
    try {
      if (target.ch) await target.ch.sendAsync(data, { signal: stop })
      else await target.topic!.publishAsync(data, { signal: stop })
    } finally {
      clearInterval(working)
    }
  }

  status(): BridgeStatus {
    return {
      connected: this.#connected,
      server: this.#server,
      stream: this.#config.stream,
      routes: this.#routes.map((r) => ({ ...r })),
    }
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#stop.abort()
      // The routes give back what JetStream has not confirmed before the connection goes.
      await this.#runs
      try {
        await this.#nc?.drain()
      } catch {
        await this.#nc?.close().catch(() => {})
      }
      this.#connected = false
      this.#event('info', 'closed', 'the bridge stopped')
      this.#resolveClosed()
    })()
    return this.#closing
  }
}

/** `shmkit bridge ...`: runs a bridge until SIGINT or SIGTERM. */
export async function main(argv: string[]): Promise<number> {
  const { parseArgs } = await import('node:util')
  let values
  try {
    values = parseArgs({
      args: argv,
      allowPositionals: false,
      options: {
        nats: { type: 'string', multiple: true },
        export: { type: 'string', multiple: true, default: [] },
        import: { type: 'string', multiple: true, default: [] },
        stream: { type: 'string' },
        prefix: { type: 'string' },
        'create-stream': { type: 'boolean', default: false },
        host: { type: 'string' },
        capacity: { type: 'string' },
        'ack-wait': { type: 'string' },
        json: { type: 'boolean', default: false },
        status: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }).values
  } catch (error) {
    console.error(`shmkit bridge: ${(error as Error).message}\n\n${BRIDGE_USAGE}`)
    return 2
  }
  if (values.help) {
    console.log(BRIDGE_USAGE)
    return 0
  }
  if (!values.nats?.length) {
    console.error(`shmkit bridge: --nats URL is required\n\n${BRIDGE_USAGE}`)
    return 2
  }
  const json = values.json ?? false
  const print = (event: BridgeEvent) => {
    const line = json
      ? JSON.stringify(event)
      : `${event.time} ${event.level.padEnd(5)} ${event.route ? `[${event.route}] ` : ''}${event.message}`
    if (event.level === 'info') console.log(line)
    else console.error(line)
  }
  const route = (spec: string): Route => {
    const at = spec.indexOf('=')
    return at < 0 ? { name: spec } : { name: spec.slice(0, at), subject: spec.slice(at + 1) }
  }
  const statusEvery = values.status === undefined ? 0 : Number(values.status)
  if (!Number.isFinite(statusEvery) || statusEvery < 0) {
    console.error(`shmkit bridge: --status takes seconds\n\n${BRIDGE_USAGE}`)
    return 2
  }
  const controller = new AbortController()
  // Before anything starts: a signal that comes while the bridge connects stops it cleanly too.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => controller.abort())
  let running: Bridge
  try {
    running = await bridge({
      servers: values.nats.flatMap((s) => s.split(',')),
      exports: values.export!.map(route),
      imports: values.import!.map(route),
      ...(values.stream === undefined ? {} : { stream: values.stream }),
      ...(values.prefix === undefined ? {} : { subjectPrefix: values.prefix }),
      createStream: values['create-stream'] ?? false,
      ...(values.host === undefined ? {} : { host: values.host }),
      ...(values.capacity === undefined ? {} : { capacity: Number(values.capacity) }),
      ...(values['ack-wait'] === undefined ? {} : { ackWait: Math.round(Number(values['ack-wait']) * 1000) }),
      onEvent: print,
      signal: controller.signal,
    })
  } catch (error) {
    const code = isShmkitError(error) ? ` (${error.code})` : ''
    console.error(`shmkit bridge: ${(error as Error).message}${code}`)
    return isShmkitError(error) && error.code === 'ERR_INVALID_ARG_VALUE' ? 2 : 1
  }
  const statusLine = () => {
    const s = running.status()
    if (json) console.log(JSON.stringify({ time: new Date().toISOString(), event: 'status', ...s }))
    else
      for (const r of s.routes)
        console.log(
          `${new Date().toISOString()} info  [${r.direction} ${r.name}] ${r.state}: ${r.forwarded} forwarded, ${r.duplicatesSkipped} duplicates skipped, ${r.retries} retries`,
        )
  }
  const timer = statusEvery > 0 ? setInterval(statusLine, statusEvery * 1000) : undefined
  process.on('SIGUSR2', statusLine)
  await running.closed
  if (timer) clearInterval(timer)
  statusLine()
  return running.status().routes.some((r) => r.state === 'failed') ? 1 : 0
}

const BRIDGE_USAGE = `Usage: shmkit bridge --nats URL [--export NAME[=SUBJECT]]... [--import NAME[=SUBJECT]]... [options]

Mirrors local channels and topics to NATS JetStream subjects (--export) and JetStream subjects to
local channels and topics (--import). See docs/BRIDGE.md.

Options:
  --nats URL          NATS server(s), comma-separated or repeated (nats://user:pass@host:4222)
  --export NAME       a local channel or topic to publish; SUBJECT defaults to PREFIX.NAME
  --import NAME       a local channel or topic to fill; created (kind and codec as sent) if missing
  --stream S          the JetStream stream (default SHMKIT)
  --prefix P          the subject prefix (default shmkit)
  --create-stream     create the stream (file storage, subjects PREFIX.>) if it does not exist
  --host H            this host's name in topic consumers (default: the host name)
  --capacity BYTES    ring bytes of a channel or topic an import creates (default 1048576)
  --ack-wait SECONDS  how long JetStream waits for an import's ack before delivering again (default 30)
  --status SECONDS    print the routes' counts this often (also on SIGUSR2)
  --json              one JSON object per line
  --help, -h          this text`
