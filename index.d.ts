/**
 * shmkit: named shared memory for Node.js.
 *
 * - `Segment`: a named shared-memory segment, seen as one zero-copy `ArrayBuffer`.
 * - `Mutex`: an inter-process lock in the segment header or anywhere in the data area.
 * - `seg.wait` / `seg.notify`: `Atomics.wait`/`notify` that work across processes.
 *
 * Arguments are validated here, Node-style (`TypeError`/`RangeError` with a `code`), before any
 * native call. The uncontended lock and unlock run entirely in JavaScript on the mapped lock word
 * (the protocol is in docs/LOCKING.md); native code is called only to sleep, wake or recover.
 */
import type * as Binding from './binding';
/** Every error shmkit throws has a `code`: Node's argument codes, errno names, or `ERR_SHM_*`. */
export interface ShmkitError extends Error {
    code: string;
}
/** Rejection of an aborted `lockAsync`/`waitAsync`, as Node's own APIs do it. */
export declare class AbortError extends Error {
    readonly code = "ABORT_ERR";
    constructor(message?: string, options?: {
        cause?: unknown;
    });
}
/** Longest segment name, in bytes. */
export declare const MAX_NAME_LENGTH = 200;
/** Largest data area, in bytes (16 TiB): beyond any machine, below JavaScript's limits. */
export declare const MAX_SEGMENT_SIZE: number;
export interface CreateOptions {
    /** Bytes in the data area (`seg.buffer.byteLength`), from 1 to `MAX_SEGMENT_SIZE`. */
    size: number;
    /** Permission bits of the new segment, applied exactly (not masked by the umask). Default `0o600`. */
    mode?: number;
    /**
     * Remove the segment automatically when the last process that has it open closes it or dies
     * (dead processes are noticed by the next open, close or `shmkit gc`). Default `false`: the
     * segment lives until someone unlinks it.
     */
    autoUnlink?: boolean;
    /**
     * Allocate every page now (Linux), so a /dev/shm too small for the segment fails here with
     * `ENOSPC` instead of killing a process with SIGBUS on its first write later. Default `true`.
     * Reserving costs the allocation up front (about 0.35 ms per MiB on a small VM); with `false`,
     * pages are allocated on first touch, as plain `shm_open` + `mmap` would.
     */
    reserve?: boolean;
}
/** What `Segment.inspect` reports; see also `mutex.stats()`. */
export type SegmentInspection = Binding.SegmentInspection;
/** A snapshot of a mutex: holder, waiters, counters. */
export type MutexStats = Binding.MutexReport;
export interface OpenOptions {
    /** How long to wait, in ms, for a creator that is still initialising the segment. Default 2000. */
    readyTimeout?: number;
}
/** Result of `wait`, as with `Atomics.wait`. */
export type WaitResult = 'ok' | 'not-equal' | 'timed-out';
/**
 * A named shared-memory segment mapped into this process (or worker thread).
 *
 * A segment lives until someone unlinks it: closing, process exit and garbage collection only
 * unmap it. `close()` detaches `buffer`, so views over it read as empty instead of touching
 * unmapped memory.
 */
export declare class Segment {
    #private;
    /** Creates segment `name`. Throws `EEXIST` if it exists, `ENOSPC` if shared memory is too small. */
    static create(name: string, options: CreateOptions): Segment;
    /** Opens existing segment `name`. Throws `ENOENT` if it does not exist, `ERR_SHM_*` if it is not a valid shmkit segment. */
    static open(name: string, options?: OpenOptions): Segment;
    /**
     * Opens `name`, creating it if needed. Safe to race from many processes: exactly one creates
     * it (`seg.created` tells which), the others wait for it to be ready. Throws
     * `ERR_SHM_SIZE_MISMATCH` if it exists with another size.
     */
    static openOrCreate(name: string, options: CreateOptions & OpenOptions): Segment;
    /** Removes segment `name`; processes that have it open keep using it. Throws `ENOENT` if absent. */
    static unlink(name: string): void;
    get name(): string;
    /** Bytes in the data area. */
    get size(): number;
    /** The data area, zero-copy. Every `byteOffset` in this API is relative to it. Empty once closed. */
    get buffer(): ArrayBuffer;
    /**
     * Describes segment (or channel) `name` without opening it for use: header fields, the
     * processes that have it open and whether each is alive, the header mutex's holder and
     * counters. Throws like `open` for a missing, foreign or damaged segment.
     */
    static inspect(name: string): SegmentInspection;
    /** Names of the shmkit segments and channels on this machine (Linux only: `ENOSYS` elsewhere). */
    static list(): string[];
    /**
     * Forgets the dead processes recorded as having `name` open and, if it was created with
     * `autoUnlink` and no live process has it open, removes it. Returns whether it was removed.
     */
    static collect(name: string): boolean;
    /** Whether the segment removes itself when its last user closes it or dies. */
    get autoUnlink(): boolean;
    /** Whether this mapping created the segment (as opposed to opening an existing one). */
    get created(): boolean;
    get closed(): boolean;
    /** The mutex in the segment header. */
    get mutex(): Mutex;
    /**
     * Unmaps the segment from this process, releasing the locks held through this mapping first.
     * Never removes the segment (see `unlink`). Idempotent.
     */
    close(): void;
    /** Removes the segment's name (this mapping stays usable until closed). */
    unlink(): void;
    /**
     * Sleeps while the 32-bit word at `byteOffset` equals `expected`, like `Atomics.wait`, but woken
     * by `notify` from any process. Blocks this thread: prefer it in workers, not on the main thread.
     */
    wait(byteOffset: number, expected: number, timeout?: number): WaitResult;
    /**
     * `wait` without blocking: the promise settles with `'ok'`, `'not-equal'` or `'timed-out'`.
     * The sleep happens on a native waiter thread, not the libuv pool. Rejects with `AbortError`
     * when `options.signal` aborts. A pending wait keeps the process alive, like a timer.
     */
    waitAsync(byteOffset: number, expected: number, timeout?: number, options?: {
        signal?: AbortSignal;
    }): Promise<WaitResult>;
    /** Wakes up to `count` (default: all) waiters on the word at `byteOffset`, in any process. Returns how many woke. */
    notify(byteOffset: number, count?: number): number;
    [Symbol.dispose](): void;
}
export interface LockOptions {
    /** Milliseconds to wait before throwing `ETIMEDOUT`; default: wait forever. */
    timeout?: number;
}
/**
 * An inter-process mutex: exclusive between processes and between worker threads. Not recursive:
 * locking it again from the thread that holds it throws `EDEADLK`. If the holding process (or
 * thread) dies, the next locker takes it over and its guard says `ownerDied: true`.
 */
export declare class Mutex {
    #private;
    /** Bytes a placed mutex occupies; lay out your data around it. */
    static readonly byteLength = 64;
    /** Required alignment of a placed mutex's byte offset. */
    static readonly alignment = 8;
    /**
     * The mutex occupying `Mutex.byteLength` bytes at `byteOffset` of the data area (a multiple of
     * `Mutex.alignment`). Zeroed memory is an unlocked mutex, so a fresh segment needs no set-up.
     */
    static at(segment: Segment, byteOffset: number): Mutex;
    get segment(): Segment;
    /** Blocks this thread until the lock is taken; throws `ETIMEDOUT` after `options.timeout` ms. */
    lock(options?: LockOptions): LockGuard;
    /**
     * Resolves with a `LockGuard` once the lock is taken, without blocking the event loop: the
     * uncontended case completes at once in JavaScript, a contended one waits on a native waiter
     * thread (never the libuv pool). Rejects with `ETIMEDOUT` after `options.timeout` ms and with
     * `AbortError` when `options.signal` aborts; a lock acquired just as the caller gave up is
     * released. Unlike `lock()`, it never throws `EDEADLK`: if this thread already holds the lock
     * (another async task of the same thread), it waits for that guard to be released, so
     * concurrent `withLock` calls of one thread run one after the other.
     */
    lockAsync(options?: LockOptions & {
        signal?: AbortSignal;
    }): Promise<LockGuard>;
    /**
     * Runs `fn` holding the lock and returns its result; `fn` may be async. The lock is released
     * when `fn` returns, throws or rejects. Takes the same options as `lockAsync`.
     */
    withLock<T>(fn: (guard: LockGuard) => T | Promise<T>, options?: LockOptions & {
        signal?: AbortSignal;
    }): Promise<T>;
    /** Takes the lock if it is free (or its holder died); otherwise returns `null` at once. */
    tryLock(): LockGuard | null;
    /** A snapshot: who holds it (and whether that thread is alive), waiters, counters. */
    stats(): MutexStats;
}
/** Proof of holding a `Mutex`. Release it with `unlock()` or a `using` declaration. */
export interface LockGuard {
    /**
     * True when the previous holder died while holding the lock: the data it protected may be
     * half-updated, so check or repair it. Only the first holder after the death is told.
     */
    readonly ownerDied: boolean;
    /** Whether this guard still holds the lock (closing its segment releases it). */
    readonly locked: boolean;
    /**
     * Releases the lock. Throws `ERR_SHM_NOT_LOCKED` if it was already released (by this guard or
     * by closing the segment).
     */
    unlock(): void;
    /** Releases the lock if still held (for `using`). */
    [Symbol.dispose](): void;
}
/**
 * How channel messages are encoded: `'bytes'` (send `Uint8Array`/`Buffer`/string, receive a
 * `Uint8Array`), `'string'` (UTF-8 strings), `'json'` (JSON values) or `'v8'` (structured-clone
 * values, via `v8.serialize`).
 */
export type Codec = 'bytes' | 'string' | 'json' | 'v8';
export interface ChannelCreateOptions {
    /** Ring bytes, rounded up to a power of two, 64 to 2^30. Each message takes 4 + its length rounded up to 4. */
    capacity: number;
    /** Default codec for every process that opens the channel. Default `'bytes'`. */
    codec?: Codec;
    mode?: number;
    /** As for segments: remove the channel when the last process that has it open closes it or dies. */
    autoUnlink?: boolean;
}
/** A snapshot of a channel's traffic. */
export interface ChannelStats {
    /** Messages sent so far, and received (both wrap at 2^32). */
    sent: number;
    received: number;
    /** Messages and bytes (with their 4-byte headers) waiting to be read. */
    messagesInFlight: number;
    bytesInFlight: number;
    capacity: number;
    closed: boolean;
}
export interface ChannelOpenOptions extends OpenOptions {
    /** Overrides the codec recorded at creation, for this process. */
    codec?: Codec;
}
export interface SendOptions {
    /** Milliseconds to wait for room before `ETIMEDOUT`; default: wait forever. */
    timeout?: number;
}
export interface AsyncOptions extends SendOptions {
    signal?: AbortSignal;
}
/**
 * A cross-process message queue in shared memory, for any number of producer and consumer
 * processes and worker threads.
 *
 * Every message is delivered exactly once and whole, in order per producer; a full channel makes
 * `send` wait (or `trySend` return false), it never drops. `close()` marks the end of the stream
 * for everyone: receivers drain what is left, then `recv` throws `ERR_SHM_CHANNEL_CLOSED` and
 * `for await` loops end. `disconnect()` unmaps this process's view.
 */
export declare class Channel<T = unknown> {
    #private;
    /** Creates channel `name` with a ring of `capacity` bytes. Throws `EEXIST` if it exists. */
    static create<T = unknown>(name: string, options: ChannelCreateOptions): Channel<T>;
    /** Opens channel `name`. Throws `ENOENT` if absent, `ERR_SHM_WRONG_KIND` for a plain segment. */
    static open<T = unknown>(name: string, options?: ChannelOpenOptions): Channel<T>;
    /** Removes channel `name`; processes that have it open keep using it. */
    static unlink(name: string): void;
    get name(): string;
    /** Ring bytes. The largest message is `capacity - 4` bytes once encoded. */
    get capacity(): number;
    get codec(): Codec;
    /** Whether `close()` was called (by any process). Messages may still be waiting to be read. */
    get closed(): boolean;
    /** Bytes of messages (with their 4-byte headers) waiting to be read: a snapshot. */
    get bytesInFlight(): number;
    /** A snapshot of the traffic: counts sent and received, what is waiting to be read. */
    stats(): ChannelStats;
    /** Sends `data` if there is room now; returns false if the channel is full. */
    trySend(data: T | Uint8Array | string): boolean;
    /** Sends `data`, waiting while the channel is full; `ETIMEDOUT` after `options.timeout` ms. */
    send(data: T | Uint8Array | string, options?: SendOptions): void;
    /** `send` without blocking the event loop; rejects with `ETIMEDOUT` or `AbortError`. */
    sendAsync(data: T | Uint8Array | string, options?: AsyncOptions): Promise<void>;
    /**
     * Sends a `byteLength`-byte message that `fill(target)` writes straight into the ring: no
     * intermediate buffer for large messages (when the slot wraps around the ring's end, `target`
     * is a temporary copied in afterwards). `fill` runs under the send lock and must be
     * synchronous; if it throws, nothing is sent. Waits for room like `send`. Codec-independent.
     */
    sendWith(byteLength: number, fill: (target: Uint8Array) => void, options?: SendOptions): void;
    /**
     * Receives the next message and passes its raw bytes to `use(view)`, returning what `use`
     * returns: `view` looks straight into the ring (no copy) and is valid only during the call.
     * `use` runs under the receive lock and must be synchronous; if it throws, the message is NOT
     * consumed and stays for the next receiver. Waits like `recv`.
     */
    recvWith<R>(use: (view: Uint8Array) => R, options?: SendOptions): R;
    /** Receives the next message if one is there; otherwise `undefined` at once. */
    tryRecv(): T | undefined;
    /**
     * Receives the next message, waiting for one; `ETIMEDOUT` after `options.timeout` ms,
     * `ERR_SHM_CHANNEL_CLOSED` once the channel is closed and drained.
     */
    recv(options?: SendOptions): T;
    /** `recv` without blocking the event loop; rejects with `ETIMEDOUT`, `AbortError` or `ERR_SHM_CHANNEL_CLOSED`. */
    recvAsync(options?: AsyncOptions): Promise<T>;
    /** Receives until the channel is closed and drained. */
    [Symbol.asyncIterator](): AsyncGenerator<T, void, undefined>;
    /**
     * Marks the end of the stream, for every process: later sends fail with
     * `ERR_SHM_CHANNEL_CLOSED`, receivers drain what is left and then stop. Idempotent.
     */
    close(): void;
    /** Unmaps the channel from this process (the channel and its messages stay). Idempotent. */
    disconnect(): void;
    /** Removes the channel's name. */
    unlink(): void;
    [Symbol.dispose](): void;
}
/**
 * Channel statistics from its control block's words (a channel's first data words, as
 * `Segment.inspect(name).dataWords` also reports them).
 */
export declare function channelStats(words: ArrayLike<number>): ChannelStats;
