// Small statistics helpers shared by the benchmarks.
import fs from 'node:fs'
import os from 'node:os'

/** Writes a benchmark's results with the run's date and machine to `jsonPath` (when given). */
export function writeResults(jsonPath, results) {
  if (!jsonPath) return
  const meta = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: os.cpus().length,
    cpu: os.cpus()[0]?.model,
  }
  fs.writeFileSync(jsonPath, JSON.stringify({ ...meta, results }, null, 2))
}

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

export function summary(values) {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values), runs: values.length }
}

export function formatRate(perSecond) {
  if (perSecond >= 1e6) return `${(perSecond / 1e6).toFixed(2)} M/s`
  if (perSecond >= 1e3) return `${(perSecond / 1e3).toFixed(1)} k/s`
  return `${perSecond.toFixed(0)} /s`
}

/** Runs `fn` for about `ms` milliseconds in batches; returns operations per second. */
export function ratePerSecond(fn, batch, ms) {
  const deadline = performance.now() + ms
  const started = performance.now()
  let done = 0
  while (performance.now() < deadline) {
    fn(batch)
    done += batch
  }
  return done / ((performance.now() - started) / 1000)
}
