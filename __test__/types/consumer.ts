// A strict TypeScript consumer of the published types: what must compile, and what must not
// (each marked as an expected error). Checked by __test__/types.spec.mjs with tsc --noEmit.
import {
  Channel,
  Layout,
  Mutex,
  Segment,
  SharedMap,
  Topic,
  isShmkitError,
  type ChannelPeers,
  type IfPeersGone,
  type TopicStats,
  type ShmkitErrorCode,
  type SegmentInspection,
} from 'shmkit'

const bytes = Channel.create('t-bytes', { capacity: 64 })
const fromBytes: Uint8Array = bytes.recv()
bytes.send(new Uint8Array(1))
bytes.send('text is fine for bytes')
bytes.send(Buffer.from('so is a Buffer'))
// @ts-expect-error a number is not bytes
bytes.send(5)

const text = Channel.create('t-string', { capacity: 64, codec: 'string' })
const fromText: string = text.recv()
// @ts-expect-error a string channel receives strings
const wrong: Uint8Array = text.recv()
// @ts-expect-error a string channel sends strings
text.send(new Uint8Array(1))

interface Job {
  id: number
}
const jobs = Channel.create<Job>('t-json', { capacity: 64, codec: 'json' })
const job: Job = jobs.recv()
jobs.send({ id: 1 })
// @ts-expect-error not a Job
jobs.send({ name: 'x' })
const anyJson = Channel.create('t-json2', { capacity: 64, codec: 'json' })
const unknownMessage: unknown = anyJson.recv()
// @ts-expect-error json messages are unknown until you say what they are
const notAString: string = anyJson.recv()

const opened = Channel.open<Job>('t-json')
const again: Job = opened.recv({ timeout: 10 })

const results = Channel.open<Job>('t-json', { ifPeersGone: 'end' })
const peers: ChannelPeers = results.peers()
const producersGone: boolean = peers.producersGone
const peerState: 'alive' | 'dead' | 'unknown' | undefined = peers.peers[0]?.state
const mode: IfPeersGone = 'throw'
// @ts-expect-error ifPeersGone is 'wait', 'end' or 'throw'
Channel.open('t-json', { ifPeersGone: 'sometimes' })
const noProducers: ShmkitErrorCode = 'ERR_SHM_NO_PRODUCERS'

const segment = Segment.open('t-seg', { wait: 1000 })
const kind: 'segment' | 'channel' | 'map' | 'topic' = Segment.inspect('t-seg').kind
const inspection: SegmentInspection = Segment.inspect('t-seg')
const state: 'alive' | 'dead' | 'unknown' | undefined = inspection.headerMutex.holderState
const waited: 'ok' | 'not-equal' | 'timed-out' = segment.wait(0, 0, { timeout: 5 })
const positional: 'ok' | 'not-equal' | 'timed-out' = segment.wait(0, 0, 5)
// @ts-expect-error unknown options are a compile error too
segment.wait(0, 0, { timeot: 5 })

const layout = Layout.of({ lock: 'mutex', count: 'int32', samples: ['float64', 4] })
const view = layout.view(segment)
const lock: Mutex = view.lock
const count: Int32Array = view.count
const samples: Float64Array = view.samples
// @ts-expect-error no such field
void view.missing

try {
  Segment.open('nope')
} catch (error) {
  if (isShmkitError(error)) {
    const code: ShmkitErrorCode = error.code
    // @ts-expect-error not a shmkit code
    const bad: ShmkitErrorCode = 'ENOTACODE'
    void code
    void bad
  }
}

interface Session {
  user: string
  hits: number
}
const sessions = SharedMap.create<Session>('t-map', { capacity: 1000, evict: 'lru' })
sessions.set('s1', { user: 'ada', hits: 1 }, { ttl: 60_000 })
const session: Session | undefined = sessions.get('s1')
// @ts-expect-error get may find nothing
const mustExist: Session = sessions.get('s1')
// @ts-expect-error values are checked against the map's type
sessions.set('s2', { user: 'bob' })
const updated = sessions.update('s1', (current) => current && { ...current, hits: current.hits + 1 }, { timeout: 100 })
const counters = SharedMap.openOrCreate<number>('t-counters', { capacity: 16 })
const hits: number = counters.increment('hits')
const labels = SharedMap.openOrCreate('t-labels', { capacity: 16, codec: 'string' })
const label: string | undefined = labels.get('x')
const blobs = SharedMap.create('t-blobs', { capacity: 4, codec: 'bytes' })
const blob: Uint8Array | undefined = blobs.get('b')
// @ts-expect-error a bytes map holds bytes
blobs.set('b', 'text')
for (const [key, value] of sessions) void [key.length, value.hits]

interface Tick {
  symbol: string
  price: number
}
const prices = Topic.create<Tick>('t-topic', { capacity: 1 << 16, slow: 'overwrite', subscribers: 8 })
prices.publish({ symbol: 'ACME', price: 1 }, { timeout: 10 })
// @ts-expect-error messages are checked against the topic's type
prices.publish({ symbol: 'ACME' })
// @ts-expect-error slow is 'block' or 'overwrite'
Topic.create('t-topic2', { capacity: 1024, slow: 'drop' })
const subscription = prices.subscribe()
const tick: Tick = subscription.recv({ timeout: 5 })
const maybeTick: Tick | undefined = subscription.tryRecv()
const size: number = subscription.recvWith((view) => view.byteLength)
const topicStats: TopicStats = prices.stats()
const bytesTopic = Topic.open<Uint8Array>('t-bytes-topic', { codec: 'bytes' })
bytesTopic.publish('text is fine for bytes')

void [
  fromBytes,
  fromText,
  wrong,
  job,
  unknownMessage,
  notAString,
  again,
  kind,
  state,
  waited,
  positional,
  lock,
  count,
  samples,
  session,
  mustExist,
  updated,
  hits,
  label,
  blob,
  tick,
  maybeTick,
  size,
  topicStats,
  producersGone,
  peerState,
  mode,
  noProducers,
]
