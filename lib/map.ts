// SharedMap: a key-value map in shared memory (docs/MAP.md). Reads run here, in JavaScript, over
// the mapped buffer, without a lock and without a call into native code: the protocol of
// crates/shmkit-core/src/map.rs (versioned entry slots, read and re-checked). Writes run in the
// Rust core, under the map's robust lock, as transactions that a crash cannot leave half done.

import { inspect } from 'node:util'
import { deserialize, serialize } from 'node:v8'

import { CODECS, validateCodec, type Codec, type CodecValues } from './codec'
import { AbortError, coded, rangeError, stateError, typeError, type ShmkitError } from './errors'
import { Handle } from './handle'
import { mapStats, type MapStats } from './inspect'
import { CONSTRUCT, HANDLE } from './internal'
import type { LockCell } from './lock'
import { lockCell } from './mutex'
import { CONTRACT, NativeSegment } from './native'
import type { OpenOptions } from './segment'
import {
  openOptions,
  timeoutOption,
  validateBoolean,
  validateInteger,
  validateMode,
  validateName,
  validateOptions,
  validateSignal,
  type AsyncOptions,
  type TimeoutOptions,
} from './validate'
import { nativeWait } from './waiting'

const M = CONTRACT.map
const W = {
  count: M.count / 4,
  bytesUsed: M.bytesUsed / 4,
  heapSize: M.heapSize / 4,
  capacity: M.capacity / 4,
  evict: M.evict / 4,
  indexGen: M.indexGen / 4,
  evictions: M.evictions / 4,
  expirations: M.expirations / 4,
  events: M.events / 4,
  watchers: M.watchers / 4,
  changePos: M.changePos / 4,
  codec: M.codec / 4,
}
const ENTRY_WORDS = M.entrySize / 4
const SLOT_WORDS = M.slotSize / 4
const TOMB = M.tomb | 0
// Word offsets inside an entry and a slot, as plain constants for the lookup's hot loop.
const E_SLOTS = M.eSlots / 4
const S_HASH = M.sHash / 4
const S_BLOCK = M.sBlock / 4
const S_KEY_LEN = M.sKeyLen / 4
const S_VALUE_LEN = M.sValueLen / 4
const S_EXPIRES_LO = M.sExpiresLo / 4
const S_EXPIRES_HI = M.sExpiresHi / 4
const BLOCK_HEADER = M.blockHeader
/** A reader retries a lookup this many times while writers keep changing it, then checks
 * whether the writer died mid-write (and repairs). */
const READ_ATTEMPTS = 1000
/** Decoded values kept per handle (a key's value is decoded once per version). */
const CACHE_LIMIT = 10_000

const utf8 = new TextEncoder()
const utf8Decoder = new TextDecoder()

export interface SharedMapOptions<C extends Codec = Codec> {
  /** Entries the map holds at most, 1 to 2^24. */
  capacity: number
  /** Heap bytes for keys and values, 4 KiB to 4 GiB. Default: 256 bytes an entry, at least 1 MiB, at most 1 GiB. */
  memory?: number
  /** How values are encoded. Default `'json'`. */
  codec?: C
  /** `'none'` (default): a new key into a full map throws `ERR_SHM_MAP_FULL`; `'lru'`: evict entries not used recently (CLOCK, an approximation of LRU). */
  evict?: 'none' | 'lru'
  /** As for segments. */
  mode?: number
  autoUnlink?: boolean
}

export interface SetOptions {
  /** Milliseconds until the entry expires (it then reads as absent and its room is reused). */
  ttl?: number
}

/** A change seen by `watch`: the key's new value, or `undefined` once deleted (or expired and removed). */
export interface MapChange<T> {
  key: string
  value: T | undefined
}

interface Cached<T> {
  entry: number
  seq: number
  value: T
  expires: number
}

/** What one lookup found: the entry, its version and its slot, and the value's bytes. */
interface Hit {
  entry: number
  seq: number
  expires: number
  /** The value's text (text codecs) or a copy of its bytes; undefined when not asked for. */
  value: string | Uint8Array | undefined
}

/** What a lookup reads of the value: nothing (`has`), its text, or a copy of its bytes. */
const enum Want {
  Nothing,
  Text,
  Bytes,
}

const RETRY = Symbol('retry')

/**
 * A key-value map in shared memory, for every process and worker thread of a host: a cache, a
 * session table, counters. Reads take no lock and never see a torn value; writes are
 * crash-safe transactions; `update` and `increment` are atomic across processes.
 *
 * Values read (json and v8 codecs) are decoded once per version and shared between reads: they
 * are frozen. Copy one (`structuredClone`) to change it, then `set` it.
 */
export class SharedMap<T = unknown> {
  /** @internal */
  readonly [HANDLE]: Handle
  readonly #codec: Codec
  /** What a `get` reads of a value: text for the text codecs, bytes for the others. */
  readonly #want: Want
  readonly #words: Uint32Array
  readonly #heap: Buffer
  /** The same bytes as a plain Uint8Array (copies of it are what a bytes map returns). */
  readonly #heapBytes: Uint8Array
  readonly #capacity: number
  readonly #buckets: number
  readonly #heapSize: number
  readonly #indexA: number
  readonly #indexB: number
  readonly #entries: number
  readonly #lru: boolean
  readonly #lock: LockCell
  readonly #cache = new Map<string, Cached<T>>()
  /** Scratch for encoding keys (the longest key, in UTF-8). */
  readonly #keyBytes = new Uint8Array(M.maxKeyBytes + 4)

  /** @internal Use `SharedMap.create`, `open` or `openOrCreate`. */
  constructor(token: symbol, handle: Handle, codec: Codec | undefined) {
    if (token !== CONSTRUCT)
      throw coded(
        new TypeError('Use SharedMap.create(), SharedMap.open() or SharedMap.openOrCreate()'),
        'ERR_ILLEGAL_CONSTRUCTOR',
      )
    this[HANDLE] = handle
    const regions = handle.native.mapRegions()
    this.#words = new Uint32Array(handle.data)
    this.#heap = Buffer.from(handle.data, regions.heap, regions.heapSize)
    this.#heapBytes = new Uint8Array(handle.data, regions.heap, regions.heapSize)
    this.#capacity = regions.capacity
    this.#buckets = regions.buckets
    this.#heapSize = regions.heapSize
    this.#indexA = regions.indexA / 4
    this.#indexB = regions.indexB / 4
    this.#entries = regions.entries / 4
    this.#lru = this.#words[W.evict] === 1
    this.#codec = codec ?? CODECS[this.#words[W.codec]!] ?? 'json'
    this.#want = this.#codec === 'json' || this.#codec === 'string' ? Want.Text : Want.Bytes
    this.#lock = lockCell(handle, M.lock, `the lock of map "${handle.name}"`)
  }

  /** Creates map `name`. Throws `EEXIST` if it exists. */
  static create<C extends Codec = 'json'>(
    name: string,
    options: SharedMapOptions<C>,
  ): SharedMap<C extends 'json' | 'v8' ? unknown : CodecValues[C]>
  static create<V>(name: string, options: SharedMapOptions<'json' | 'v8'>): SharedMap<V>
  static create(name: string, options: SharedMapOptions): SharedMap<unknown> {
    validateName(name)
    const native = mapOptions(options, [])
    return new SharedMap(CONSTRUCT, new Handle(NativeSegment.createMap(name, native)), undefined)
  }

  /** Opens map `name` (waiting and checking its owner as `Segment.open` does). `ERR_SHM_WRONG_KIND` if it is not a map. */
  static open<V = unknown>(name: string, options?: OpenOptions): SharedMap<V> {
    validateName(name)
    return new SharedMap<V>(CONSTRUCT, new Handle(NativeSegment.openMap(name, openOptions(options, []))), undefined)
  }

  /** Opens `name`, creating it if needed (one creator among racers). `ERR_SHM_SIZE_MISMATCH` for a map of another capacity or memory. */
  static openOrCreate<C extends Codec = 'json'>(
    name: string,
    options: SharedMapOptions<C> & Pick<OpenOptions, 'readyTimeout' | 'owner'>,
  ): SharedMap<C extends 'json' | 'v8' ? unknown : CodecValues[C]>
  static openOrCreate<V>(
    name: string,
    options: SharedMapOptions<'json' | 'v8'> & Pick<OpenOptions, 'readyTimeout' | 'owner'>,
  ): SharedMap<V>
  static openOrCreate(
    name: string,
    options: SharedMapOptions & Pick<OpenOptions, 'readyTimeout' | 'owner'>,
  ): SharedMap<unknown> {
    validateName(name)
    const native = mapOptions(options, ['readyTimeout', 'owner'])
    const open = openOptions({ readyTimeout: options.readyTimeout, owner: options.owner }, [])
    return new SharedMap(CONSTRUCT, new Handle(NativeSegment.openOrCreateMap(name, native, open)), undefined)
  }

  /** Removes map `name` (`ERR_SHM_WRONG_KIND` if it is not a map); processes that have it open keep using it. */
  static unlink(name: string): void {
    NativeSegment.unlink(validateName(name), CONTRACT.kinds.indexOf('map'))
  }

  get name(): string {
    return this[HANDLE].name
  }

  get codec(): Codec {
    return this.#codec
  }

  get capacity(): number {
    return this.#capacity
  }

  /** Whether this handle is closed. */
  get closed(): boolean {
    return this[HANDLE].closed
  }

  /** Entries in the map now (expired ones count until they are removed). */
  get size(): number {
    this[HANDLE].assertOpen()
    return Atomics.load(this.#words, W.count)
  }

  /** The value of `key`, or `undefined`. Takes no lock; never a torn value. */
  get(key: string): T | undefined {
    if (this[HANDLE].closed) this[HANDLE].assertOpen()
    if (typeof key !== 'string') throw typeError('key', 'of type string', key)
    // Bytes are returned as a fresh copy every time (the caller may write to it): not cached.
    const cached = this.#codec === 'bytes' ? undefined : this.#cache.get(key)
    if (cached !== undefined) {
      const seqWord = this.#entries + cached.entry * ENTRY_WORDS
      if (Atomics.load(this.#words, seqWord) === cached.seq) {
        if (cached.expires !== 0 && cached.expires <= Date.now()) return undefined
        if (this.#lru) this.#touch(cached.entry)
        return cached.value
      }
    }
    const hit = this.#find(key, this.#want)
    if (hit === undefined) {
      if (cached !== undefined) this.#cache.delete(key)
      return undefined
    }
    const value = freeze(this.#decode(hit.value!))
    if (this.#codec === 'bytes') return value
    if (this.#cache.size >= CACHE_LIMIT) this.#cache.delete(this.#cache.keys().next().value!)
    this.#cache.set(key, { entry: hit.entry, seq: hit.seq, value, expires: hit.expires })
    return value
  }

  /** Whether `key` is present (and not expired). */
  has(key: string): boolean {
    if (this[HANDLE].closed) this[HANDLE].assertOpen()
    if (typeof key !== 'string') throw typeError('key', 'of type string', key)
    return this.#find(key, Want.Nothing) !== undefined
  }

  /**
   * Sets `key` to `value` (expiring after `options.ttl` ms, if given). Throws
   * `ERR_SHM_MAP_FULL` for a new key when the map is full and does not evict,
   * `ERR_OUT_OF_RANGE` for a key over 1024 UTF-8 bytes or a value over a quarter of the memory.
   */
  set(key: string, value: T, options?: SetOptions): this {
    const ttl = ttlOption(options)
    this.#write(key, value, ttl, false)
    return this
  }

  /** Removes `key`; whether it was there. */
  delete(key: string): boolean {
    this[HANDLE].assertOpen()
    checkKey(key)
    return this[HANDLE].native.mapDelete(key, false)
  }

  /** Removes every entry (each removal atomic). */
  clear(): void {
    this[HANDLE].assertOpen()
    this[HANDLE].native.mapClear()
  }

  /**
   * Replaces the value of `key` with `fn(current)`, atomically across processes: the map's lock
   * is held while `fn` runs (keep it short and synchronous). `fn` returning `undefined` deletes
   * the key. Returns the new value. If `fn` throws, nothing changes. Waits for the lock up to
   * `options.timeout` ms.
   */
  update(
    key: string,
    fn: (current: T | undefined) => T | undefined,
    options?: SetOptions & TimeoutOptions,
  ): T | undefined {
    if (typeof fn !== 'function') throw typeError('fn', 'of type function', fn)
    const { ttl, timeout } = validateOptions<SetOptions & TimeoutOptions>(options, 'options', ['ttl', 'timeout'], false)
    const ttlMs = ttlOption(ttl === undefined ? undefined : { ttl })
    const timeoutMs = timeoutOption(timeout === undefined ? undefined : { timeout })
    this[HANDLE].assertOpen()
    checkKey(key)
    const native = this[HANDLE].native
    if (this.#lock.acquire(timeoutMs)) native.mapRecover()
    try {
      const next = fn(this.get(key))
      if (next === undefined) native.mapDelete(key, true)
      else this.#write(key, next, ttlMs, true)
      return next
    } finally {
      this.#lock.release()
    }
  }

  /** Adds `delta` (default 1) to the number at `key` (absent: 0), atomically; returns the new number. */
  increment(key: string, delta = 1, options?: SetOptions & TimeoutOptions): number {
    if (typeof delta !== 'number' || !Number.isFinite(delta)) throw typeError('delta', 'a finite number', delta)
    if (this.#codec !== 'json' && this.#codec !== 'v8') {
      throw coded(new TypeError(`increment needs a json or v8 map, not ${this.#codec}`), 'ERR_INVALID_ARG_VALUE')
    }
    return this.update(
      key,
      (current) => {
        if (current !== undefined && typeof current !== 'number') {
          throw coded(new TypeError(`The value at "${key}" is not a number`), 'ERR_INVALID_ARG_TYPE')
        }
        return (((current as number | undefined) ?? 0) + delta) as T
      },
      options,
    ) as number
  }

  /** Keys, values and entries: a snapshot of each entry, as `Map` iteration is while it changes. */
  *keys(): IterableIterator<string> {
    for (const [key] of this.entries()) yield key
  }

  *values(): IterableIterator<T> {
    for (const [, value] of this.entries()) yield value
  }

  *entries(): IterableIterator<[string, T]> {
    this[HANDLE].assertOpen()
    const now = Date.now()
    for (let entry = 0; entry < this.#capacity; entry++) {
      if (this[HANDLE].closed) return
      const found = this.#readEntry(entry)
      if (found === undefined || (found.expires !== 0 && found.expires <= now)) continue
      yield [found.key, freeze(this.#decode(found.value))]
    }
  }

  [Symbol.iterator](): IterableIterator<[string, T]> {
    return this.entries()
  }

  /**
   * Changes as they happen, from any process: every change of `key`, or of any key. Uses
   * cross-process wait/notify (a native waiter thread, never the libuv pool). Ends when this
   * handle is closed or `options.signal` aborts. A watcher that falls more than 1024 changes
   * behind skips the ones it missed.
   */
  async *watch(key?: string, options?: Pick<AsyncOptions, 'signal'>): AsyncGenerator<MapChange<T>, void, undefined> {
    if (key !== undefined) checkKey(key)
    const { signal } = validateOptions<AsyncOptions>(options, 'options', ['signal'], false)
    const abortSignal = validateSignal(signal)
    const handle = this[HANDLE]
    handle.assertOpen()
    const words = this.#words
    let position = Atomics.load(words, W.changePos)
    // A record names an entry, and the entry's key may be gone by the time it is read (deleted,
    // or the entry reused for another key). So the watcher remembers which key each entry held:
    // for one key, the entry holding it; for every key, every entry's key (read once here).
    let tracked = key === undefined ? -1 : (this.#find(key, Want.Nothing)?.entry ?? -1)
    const known = key === undefined ? this.#keysByEntry() : undefined
    for (;;) {
      const event = Atomics.load(words, W.events)
      const end = Atomics.load(words, W.changePos)
      if ((end - position) >>> 0 > M.changes) position = (end - M.changes) >>> 0
      const changed: string[] = []
      for (; position !== end; position = (position + 1) >>> 0) {
        const entry = words[M.changeRing / 4 + (position % M.changes) * 2]!
        if (entry >= this.#capacity) continue // a scribbled record
        const now = this.#entryKey(entry)
        if (key !== undefined) {
          if (entry === tracked || now === key) changed.push(key)
        } else {
          const before = known!.get(entry)
          if (before !== undefined && before !== now) changed.push(before) // deleted, evicted or replaced
          if (now !== undefined) {
            changed.push(now)
            known!.set(entry, now)
          } else known!.delete(entry)
        }
      }
      for (const changedKey of new Set(changed)) {
        const value = this.get(changedKey)
        if (key !== undefined) tracked = value === undefined ? -1 : (this.#find(key, Want.Nothing)?.entry ?? -1)
        yield { key: changedKey, value }
        if (handle.closed) return
      }
      // Sleep until a writer commits (the flag asks writers for a wake-up).
      Atomics.store(words, W.watchers, 1)
      if (Atomics.load(words, W.events) !== event) continue
      try {
        await nativeWait(handle, abortSignal, (token) => handle.native.waitAsync(M.events, event | 0, 1000, token))
      } catch (error) {
        if ((error as ShmkitError).code === 'ERR_SHM_CLOSED' || error instanceof AbortError) return
        throw error
      }
    }
  }

  /** A snapshot of the counters. */
  stats(): MapStats {
    this[HANDLE].assertOpen()
    const words = this.#words
    return mapStats((offset) => Atomics.load(words, offset / 4))
  }

  /** Checks the whole structure (holding the lock): for tests and diagnostics; `ERR_SHM_CORRUPT` says what is wrong. */
  verify(): { entries: number; usedBytes: number; freeBytes: number; freeBlocks: number } {
    this[HANDLE].assertOpen()
    return this[HANDLE].native.mapVerify()
  }

  /** Closes this handle (unmaps the map in this thread); ends its watchers. The map stays. */
  close(): void {
    this.#cache.clear()
    this[HANDLE].close()
  }

  [Symbol.dispose](): void {
    this.close()
  }

  [inspect.custom](): string {
    const { name, closed } = this[HANDLE]
    return `SharedMap ${inspect({ name, codec: this.#codec, capacity: this.#capacity, closed }, { breakLength: Infinity })}`
  }

  // ----------------------------------------------------------------------------- internals

  #write(key: string, value: T, ttlMs: number, locked: boolean): void {
    this[HANDLE].assertOpen()
    checkKey(key)
    const native = this[HANDLE].native
    const encoded = this.#encode(value)
    try {
      if (typeof encoded === 'string') native.mapSetText(key, encoded, ttlMs, locked)
      else native.mapSetBytes(key, encoded, ttlMs, locked)
    } catch (error) {
      // The core measures the encoded value; its limit errors are range errors, as Node's are.
      if ((error as ShmkitError).code === 'ERR_OUT_OF_RANGE' && !(error instanceof RangeError)) {
        throw coded(new RangeError((error as Error).message), 'ERR_OUT_OF_RANGE')
      }
      throw error
    }
  }

  /** The value as the core stores it: text for the text codecs, bytes for the others. */
  #encode(value: T): string | Uint8Array {
    switch (this.#codec) {
      case 'json': {
        let text: string | undefined
        try {
          text = JSON.stringify(value)
        } catch (error) {
          throw cannotEncode('json', error)
        }
        if (text === undefined) throw cannotEncode('json', undefined)
        return text
      }
      case 'string':
        if (typeof value !== 'string') throw typeError('value', 'of type string', value)
        return value
      case 'bytes':
        if (!(value instanceof Uint8Array)) throw typeError('value', 'a Uint8Array', value)
        return value
      case 'v8':
        try {
          return serialize(value)
        } catch (error) {
          throw cannotEncode('v8', error)
        }
    }
  }

  #decode(raw: string | Uint8Array): T {
    const text = typeof raw === 'string' ? raw : undefined
    switch (this.#codec) {
      case 'json':
        return JSON.parse(text ?? utf8Decoder.decode(raw as Uint8Array)) as T
      case 'string':
        return (text ?? utf8Decoder.decode(raw as Uint8Array)) as T
      case 'bytes':
        return raw as T
      case 'v8':
        return deserialize(raw as Uint8Array) as T
    }
  }

  /** Sets the entry's CLOCK reference bit (LRU maps), only if it is not set: no write otherwise. */
  #touch(entry: number): void {
    const ref = this.#entries + entry * ENTRY_WORDS + M.eRef / 4
    if (Atomics.load(this.#words, ref) === 0) Atomics.store(this.#words, ref, 1)
  }

  /** Looks `key` up: a consistent snapshot of its entry, or undefined (absent or expired). */
  #find(key: string, want: Want): Hit | undefined {
    const scratch = this.#keyBytes
    const length = key.length
    if (length > M.maxKeyBytes) return undefined // longer than any key
    // The key's UTF-8 bytes and their FNV-1a hash in one pass for ASCII keys (most keys);
    // others through the encoder.
    let written = length
    let hash = 0x811c9dc5
    for (let i = 0; i < length; i++) {
      const code = key.charCodeAt(i)
      if (code > 0x7f) {
        written = -1
        break
      }
      scratch[i] = code
      hash = Math.imul(hash ^ code, 0x01000193)
    }
    if (written < 0) {
      const encoded = utf8.encodeInto(key, scratch)
      if (encoded.read !== length || encoded.written > M.maxKeyBytes) return undefined
      written = encoded.written
      hash = 0x811c9dc5
      for (let i = 0; i < written; i++) hash = Math.imul(hash ^ scratch[i]!, 0x01000193)
    }
    hash >>>= 0
    for (let attempt = 0; attempt < READ_ATTEMPTS * 2; attempt++) {
      if (attempt === READ_ATTEMPTS) this.#repairIfAbandoned()
      const found = this.#tryFind(scratch, written, hash, want)
      if (found === RETRY) continue
      if (found === undefined) return undefined
      if (found.expires !== 0 && found.expires <= Date.now()) return undefined
      if (this.#lru) this.#touch(found.entry)
      return found
    }
    throw corrupt('lookups keep changing under readers')
  }

  #tryFind(key: Uint8Array, keyLength: number, hash: number, want: Want): Hit | undefined | typeof RETRY {
    const words = this.#words
    const heap = this.#heap
    const buckets = this.#buckets
    const gen = Atomics.load(words, W.indexGen)
    const index = gen & 1 ? this.#indexB : this.#indexA
    const mask = buckets - 1
    for (let probe = 0; probe < buckets; probe++) {
      const bucket = Atomics.load(words, index + ((hash + probe) & mask)) | 0
      if (bucket === 0) break
      if (bucket === TOMB) continue
      const entry = (bucket >>> 0) - 1
      if (entry >= this.#capacity) throw corrupt(`bucket names entry ${entry}`)
      const base = this.#entries + entry * ENTRY_WORDS
      const seq = Atomics.load(words, base)
      const slot = base + E_SLOTS + (seq & 1) * SLOT_WORDS
      if (words[slot + S_HASH] !== hash || words[slot + S_KEY_LEN] !== keyLength) {
        if (Atomics.load(words, base) !== seq) return RETRY
        continue
      }
      const block = words[slot + S_BLOCK]! >>> 0
      const valueLength = words[slot + S_VALUE_LEN]! >>> 0
      const expires = (words[slot + S_EXPIRES_LO]! >>> 0) + (words[slot + S_EXPIRES_HI]! >>> 0) * 2 ** 32
      const start = block + BLOCK_HEADER
      const end = start + keyLength + valueLength
      if (block % 8 !== 0 || end > this.#heapSize) {
        if (Atomics.load(words, base) !== seq) return RETRY
        throw corrupt(`entry ${entry} points outside the heap`)
      }
      let same = true
      for (let i = 0; i < keyLength; i++) {
        if (heap[start + i] !== key[i]) {
          same = false
          break
        }
      }
      // Decoding bytes a writer may be changing is harmless: the result is dropped below unless
      // `seq` proves they were one version.
      const value =
        !same || want === Want.Nothing
          ? undefined
          : want === Want.Text
            ? heap.toString('utf8', start + keyLength, end)
            : this.#heapBytes.slice(start + keyLength, end)
      // The slot and its bytes are consistent if `seq` did not move (the entry's SYNC POINT).
      if (Atomics.load(words, base) !== seq) return RETRY
      if (!same) continue
      if (Atomics.load(words, W.indexGen) !== gen) return RETRY
      return { entry, seq, expires, value }
    }
    if (Atomics.load(words, W.indexGen) !== gen) return RETRY
    return undefined
  }

  /** A live entry's key and value bytes, read consistently; undefined if it is not live. */
  #readEntry(entry: number): { key: string; value: Uint8Array; expires: number } | undefined {
    const words = this.#words
    const base = this.#entries + entry * ENTRY_WORDS
    for (let attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
      const seq = Atomics.load(words, base)
      const live = Atomics.load(words, base + M.eLive / 4) !== 0
      if (!live) return undefined
      const found = this.#slotBytes(base, seq & 1)
      if (Atomics.load(words, base) !== seq) continue
      // An empty slot under `live`: a delete between publishing the empty slot and clearing
      // `live` (docs/MAP.md), in progress or cut short by a death: the entry is going away.
      if (found === null) return undefined
      if (found === undefined) throw corrupt(`entry ${entry} points outside the heap`)
      return found
    }
    return undefined
  }

  /**
   * The key and value of slot `slot` of the entry at word `base` (copied out); null for an empty
   * slot (block 0), undefined if out of bounds.
   */
  #slotBytes(base: number, slot: number): { key: string; value: Uint8Array; expires: number } | null | undefined {
    const words = this.#words
    const s = base + M.eSlots / 4 + slot * SLOT_WORDS
    const block = words[s + M.sBlock / 4]!
    const keyLength = words[s + M.sKeyLen / 4]!
    const valueLength = words[s + M.sValueLen / 4]!
    const start = block + M.blockHeader
    const end = start + keyLength + valueLength
    if (block === 0) return null
    if (block % 8 !== 0 || keyLength > M.maxKeyBytes || end > this.#heapSize) return undefined
    return {
      key: this.#heap.toString('utf8', start, start + keyLength),
      value: this.#heapBytes.slice(start + keyLength, end),
      expires: words[s + M.sExpiresLo / 4]! + words[s + M.sExpiresHi / 4]! * 2 ** 32,
    }
  }

  /** The key entry `entry` holds now, read consistently; undefined if it is free. */
  #entryKey(entry: number): string | undefined {
    const words = this.#words
    const base = this.#entries + entry * ENTRY_WORDS
    for (let attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
      const seq = Atomics.load(words, base)
      const live = Atomics.load(words, base + M.eLive / 4) !== 0
      const slot = base + E_SLOTS + (seq & 1) * SLOT_WORDS
      const block = words[slot + S_BLOCK]!
      const keyLength = words[slot + S_KEY_LEN]!
      const start = block + BLOCK_HEADER
      const inside = block !== 0 && block % 8 === 0 && keyLength <= M.maxKeyBytes && start + keyLength <= this.#heapSize
      const key = live && inside ? this.#heap.toString('utf8', start, start + keyLength) : undefined
      if (Atomics.load(words, base) === seq) return key
    }
    return undefined
  }

  /** Every live entry's key, by entry. */
  #keysByEntry(): Map<number, string> {
    const keys = new Map<number, string>()
    for (let entry = 0; entry < this.#capacity; entry++) {
      const key = this.#entryKey(entry)
      if (key !== undefined) keys.set(entry, key)
    }
    return keys
  }

  /** For readers that kept seeing changes: a dead writer's lock is taken over and the map repaired. */
  #repairIfAbandoned(): void {
    const taken = this.#lock.tryAcquire()
    if (taken === 0) return
    try {
      if (taken === 2) this[HANDLE].native.mapRecover()
    } finally {
      this.#lock.release()
    }
  }
}

function corrupt(what: string): Error & ShmkitError {
  return stateError('ERR_SHM_CORRUPT', `Damaged map: ${what}`)
}

function cannotEncode(codec: Codec, cause: unknown): TypeError {
  const why = cause instanceof Error ? `: ${cause.message}` : ''
  return coded(new TypeError(`The ${codec} codec cannot encode this value${why}`, { cause }), 'ERR_SHM_ENCODE')
}

function checkKey(key: unknown): asserts key is string {
  if (typeof key !== 'string') throw typeError('key', 'of type string', key)
  if (key.length > M.maxKeyBytes || Buffer.byteLength(key) > M.maxKeyBytes) {
    throw rangeError('key', `at most ${M.maxKeyBytes} bytes in UTF-8`, `${Buffer.byteLength(key)} bytes`)
  }
}

function ttlOption(options: unknown): number {
  if (options === undefined) return -1
  const { ttl } = validateOptions<SetOptions>(options, 'options', ['ttl'], false)
  if (ttl === undefined) return -1
  if (typeof ttl !== 'number') throw typeError('options.ttl', 'of type number', ttl)
  if (!(ttl >= 0)) throw rangeError('options.ttl', 'a number of milliseconds >= 0', ttl)
  return ttl
}

/** Deep-freezes a decoded value, so the shared, cached copy cannot be changed by one reader. */
function freeze<V>(value: V): V {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value) && !ArrayBuffer.isView(value)) {
    Object.freeze(value)
    for (const child of Object.values(value)) freeze(child)
  }
  return value
}

function mapOptions(options: unknown, extra: readonly string[]) {
  const { capacity, memory, codec, evict, mode, autoUnlink } = validateOptions<SharedMapOptions>(
    options,
    'options',
    ['capacity', 'memory', 'codec', 'evict', 'mode', 'autoUnlink', ...extra],
    true,
  )
  const entries = validateInteger(capacity, 'options.capacity', 1, M.maxCapacity)
  // The default (256 bytes an entry, 1 MiB to 1 GiB) is the core's: -1 asks for it.
  const heap = memory === undefined ? -1 : validateInteger(memory, 'options.memory', M.minMemory, M.maxMemory)
  if (evict !== undefined && evict !== 'none' && evict !== 'lru') {
    throw coded(
      new TypeError(`The "options.evict" option must be 'none' or 'lru'. Received ${String(evict)}`),
      'ERR_INVALID_ARG_VALUE',
    )
  }
  return {
    capacity: entries,
    memory: heap,
    codec: CODECS.indexOf(validateCodec(codec, 'codec') ?? 'json'),
    evict: evict ?? 'none',
    mode: validateMode(mode),
    autoUnlink: validateBoolean(autoUnlink, 'options.autoUnlink'),
  }
}
