// `npm run bench [-- --quick]`: every benchmark in turn, each writing its JSON into
// bench/results/, then the report (the goals, and docs/benchmarks.md) and the chart
// (docs/benchmarks.svg), all from that one run. The quick mode is a smoke run (CI runs it):
// small counts, one round, nothing written, numbers not meant to be quoted.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const quick = process.argv.includes('--quick')
const here = (file) => fileURLToPath(new URL(file, import.meta.url))
const run = (script, args) => {
  const { status } = spawnSync(process.execPath, [here(script), ...args], { stdio: 'inherit' })
  if (status !== 0) process.exit(status ?? 1)
}
// The quick run writes its JSON to a temporary directory: the report still prints the goals.
const results = quick ? fs.mkdtempSync(path.join(os.tmpdir(), 'shmkit-bench-')) : here('./results')
for (const bench of ['locks', 'channels', 'segments', 'maps', 'topics', 'bridge']) {
  run(`./${bench}.mjs`, [...(quick ? ['--quick'] : []), '--json', path.join(results, `${bench}.json`)])
}
run('./report.mjs', ['--results', results, ...(quick ? [] : ['--write'])])
if (quick) fs.rmSync(results, { recursive: true, force: true })
else {
  run('./chart.mjs', [])
  // The report's tables, aligned as every other page is.
  spawnSync(
    process.execPath,
    [here('../node_modules/prettier/bin/prettier.cjs'), '--write', here('../docs/benchmarks.md')],
    {
      stdio: 'inherit',
    },
  )
}
