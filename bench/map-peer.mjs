// A reader process of the map benchmark: opens the map, says it is ready, reads for the given
// milliseconds when told to go, and reports its reads per second.
//
//   map-peer.mjs shmkit NAME MS | map-peer.mjs lmdb DIR MS
import { SharedMap } from '../index.js'
import { KEYS, keyOf, order } from './map-data.mjs'

const [kind, where, ms] = process.argv.slice(2)
const ORDER = order()
let get
if (kind === 'shmkit') {
  const map = SharedMap.open(where)
  get = (key) => map.get(key)
} else {
  const { open } = await import('lmdb')
  const db = open({ path: where, readOnly: true, noSync: true })
  get = (key) => db.get(key)
}
// Warm up as a long-running reader would be: every key read once, the loop compiled.
for (let i = 0; i < KEYS; i++) get(keyOf(i))
for (let i = 0; i < 1 << 17; i++) get(keyOf(ORDER[i & 0xffff]))
process.send('ready')
process.once('message', () => {
  let done = 0
  const started = performance.now()
  const deadline = started + Number(ms)
  while (performance.now() < deadline) {
    for (let i = 0; i < 1024; i++) get(keyOf(ORDER[(done + i) & 0xffff]))
    done += 1024
  }
  process.send(done / ((performance.now() - started) / 1000), () => process.exit(0))
})
