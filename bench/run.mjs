// `npm run bench [-- --quick]`: every benchmark in turn, each writing its JSON into
// bench/results/, then the chart in docs/benchmarks.svg. The quick mode is a smoke run (CI runs
// it): small counts, one round, nothing written, numbers not meant to be quoted.
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const quick = process.argv.includes('--quick')
const here = (file) => fileURLToPath(new URL(file, import.meta.url))
const run = (script, args) => {
  const { status } = spawnSync(process.execPath, [here(script), ...args], { stdio: 'inherit' })
  if (status !== 0) process.exit(status ?? 1)
}
for (const bench of ['locks', 'channels', 'segments']) {
  run(`./${bench}.mjs`, quick ? ['--quick'] : ['--json', here(`./results/${bench}.json`)])
}
if (!quick) run('./chart.mjs', [])
