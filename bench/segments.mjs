// Segment life-cycle benchmark: create + open + close + unlink of a 1 MiB segment (touching one
// page), shmkit against Python's multiprocessing.shared_memory and, where it installs, the
// shm-typed-array package. Rounds alternate between contenders; medians are reported.
//
//   node bench/segments.mjs [--quick] [--json FILE]
import { execFile } from 'node:child_process'
import { createRequire } from 'node:module'
import os from 'node:os'
import { promisify } from 'node:util'

import { Segment } from '../index.js'
import { summary, writeResults } from './stats.mjs'

const quick = process.argv.includes('--quick')
const jsonIndex = process.argv.indexOf('--json')
const jsonPath = jsonIndex > 0 ? process.argv[jsonIndex + 1] : undefined
const SIZE = 1 << 20
const CYCLES = quick ? 50 : 500
const ROUNDS = quick ? 1 : 5

function shmkitCycles(count, reserve = true) {
  const name = `bench-seg-${process.pid}`
  const started = performance.now()
  for (let i = 0; i < count; i++) {
    const created = Segment.create(name, { size: SIZE, reserve })
    new Uint8Array(created.buffer)[0] = 1
    const opened = Segment.open(name)
    opened.close()
    created.close()
    Segment.unlink(name)
  }
  return ((performance.now() - started) * 1000) / count
}

async function pythonCycles(count) {
  const script = new URL('./contenders/python_segments.py', import.meta.url).pathname
  const { stdout } = await promisify(execFile)('python3', [script, String(SIZE), String(count)], { timeout: 120_000 })
  return JSON.parse(stdout).microseconds
}

/** shm-typed-array, if it is installed (it builds from source, so it is not a dependency). */
function shmTypedArray() {
  try {
    return createRequire(import.meta.url)('shm-typed-array')
  } catch {
    return undefined
  }
}

function shmTypedArrayCycles(shm, count) {
  const name = `/bench-sta-${process.pid}`
  const started = performance.now()
  for (let i = 0; i < count; i++) {
    const created = shm.createPosix(name, SIZE, 'Buffer', '600')
    created[0] = 1
    shm.getPosix(name, 'Buffer')
    shm.detachPosix(name, true)
  }
  return ((performance.now() - started) * 1000) / count
}

const times = { shmkit: [], shmkitLazy: [], python: [], shmTypedArray: [] }
const other = shmTypedArray()
let pythonError
shmkitCycles(20) // warm-up
for (let round = 0; round < ROUNDS; round++) {
  times.shmkit.push(shmkitCycles(CYCLES))
  times.shmkitLazy.push(shmkitCycles(CYCLES, false))
  if (!pythonError) {
    try {
      times.python.push(await pythonCycles(CYCLES))
    } catch (error) {
      pythonError = error.message.split('\n')[0]
    }
  }
  if (other) times.shmTypedArray.push(shmTypedArrayCycles(other, CYCLES))
}

const results = {
  size: SIZE,
  shmkit: summary(times.shmkit),
  shmkitLazy: summary(times.shmkitLazy),
  python: pythonError ? { skipped: pythonError } : summary(times.python),
  shmTypedArray: other
    ? summary(times.shmTypedArray)
    : { skipped: 'not installed (npm install --no-save shm-typed-array; it builds from source with node-gyp)' },
}
console.log(
  `\nSegments: create + open + close + unlink of 1 MiB (${os.cpus().length} cores, Node ${process.version}; medians of ${ROUNDS} rounds of ${CYCLES})\n`,
)
console.log(`shmkit (pages reserved: ENOSPC up front)  ${results.shmkit.median.toFixed(1)} µs`)
console.log(`shmkit, reserve: false                    ${results.shmkitLazy.median.toFixed(1)} µs`)
if (results.python.median) {
  console.log(
    `Python multiprocessing.shared_memory      ${results.python.median.toFixed(1)} µs   shmkit takes ${(results.shmkit.median / results.python.median).toFixed(2)}x its time (reserve: false: ${(results.shmkitLazy.median / results.python.median).toFixed(2)}x)`,
  )
} else console.log(`Python: skipped (${results.python.skipped})`)
if (results.shmTypedArray.median)
  console.log(`shm-typed-array                           ${results.shmTypedArray.median.toFixed(1)} µs`)
else console.log(`shm-typed-array: skipped (${results.shmTypedArray.skipped})`)
writeResults(jsonPath, results)
