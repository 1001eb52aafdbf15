/**
 * shmkit: named shared memory for Node.js.
 *
 * - `Segment`: a named shared-memory segment, seen as one zero-copy `ArrayBuffer`.
 * - `Mutex`: an inter-process lock in the segment header or anywhere in the data area.
 * - `seg.wait` / `seg.notify`: `Atomics.wait`/`notify` that work across processes.
 * - `Channel`: a cross-process message queue in shared memory.
 *
 * The implementation lives in `lib/`, one file per concern; this file is the public surface.
 */

export { AbortError, type ShmkitError } from './lib/errors'
export { Segment, type CreateOptions, type OpenOptions, type WaitResult, type SegmentInspection, type MutexStats } from './lib/segment'
export { Mutex, type LockGuard } from './lib/mutex'
export { Channel, type ChannelCreateOptions, type ChannelOpenOptions } from './lib/channel'
export { channelStats, type ChannelStats } from './lib/channel-layout'
export type { Codec } from './lib/codec'
export { MAX_NAME_LENGTH, MAX_SEGMENT_SIZE, type TimeoutOptions, type AsyncOptions } from './lib/validate'
