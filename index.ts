/**
 * shmkit: named shared memory for Node.js.
 *
 * - `Segment`: a named shared-memory segment, seen as one zero-copy `ArrayBuffer`.
 * - `Mutex`: an inter-process lock in the segment header or anywhere in the data area.
 * - `seg.wait` / `seg.notify`: `Atomics.wait`/`notify` that work across processes.
 * - `Channel`: a cross-process message queue in shared memory.
 * - `Layout`: typed fields and placed mutexes laid out in a segment.
 * - `SharedMap`: a key-value map every process reads without a lock.
 * - `Topic`: broadcast: every subscriber gets every message.
 *
 * The implementation lives in `lib/`, in layers; this file is the public surface.
 */

export { AbortError, isShmkitError, type ShmkitError, type ShmkitErrorCode } from './lib/errors'
export { Segment, type CreateOptions, type OpenOptions, type WaitResult } from './lib/segment'
export { Mutex, type LockGuard } from './lib/mutex'
export {
  Channel,
  type ChannelCreateOptions,
  type ChannelOpenOptions,
  type IfPeersGone,
  type Sendable,
} from './lib/channel'
export type { Job, TakeOptions } from './lib/queue'
export type { Codec, CodecValues } from './lib/codec'
export type { Kind } from './lib/handle'
export type {
  ChannelPeer,
  ChannelPeers,
  ChannelStats,
  Liveness,
  MapStats,
  MutexStats,
  SegmentInspection,
  TopicStats,
  TopicSubscriberStats,
} from './lib/inspect'
export { Layout, type FieldType, type LayoutFields, type LayoutView } from './lib/layout'
export { SharedMap, type SharedMapOptions, type SetOptions, type MapChange } from './lib/map'
export { Topic, Subscription, type TopicCreateOptions, type TopicOpenOptions } from './lib/topic'
export { MAX_NAME_LENGTH, MAX_SEGMENT_SIZE, type AsyncOptions, type TimeoutOptions } from './lib/validate'
