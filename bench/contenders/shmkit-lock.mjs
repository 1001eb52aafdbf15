// A contending process for the shmkit lock benchmark: lock, increment a plain counter, unlock,
// until the parent raises the stop flag; reports its own acquisitions.
import { Segment } from '../../index.js'

const [name] = process.argv.slice(2)
const segment = Segment.open(name)
const flags = new Int32Array(segment.buffer, 0, 4) // [0] start, [1] stop
const counter = new Float64Array(segment.buffer, 16, 1)
const mutex = segment.mutex
process.send('ready')
while (Atomics.load(flags, 0) === 0);
let mine = 0
while (Atomics.load(flags, 1) === 0) {
  for (let i = 0; i < 64; i++) {
    const guard = mutex.lock({ timeout: 5000 }) // as the README writes it
    counter[0] += 1
    guard.unlock()
  }
  mine += 64
}
process.send({ mine }, () => segment.close())
