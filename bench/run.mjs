// `npm run bench [-- --quick]`: every benchmark, one after the other, each writing its JSON
// into bench/results/ (the quick mode is a smoke run whose numbers are not meant to be quoted).
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const quick = process.argv.includes('--quick')
const here = (file) => fileURLToPath(new URL(file, import.meta.url))
for (const bench of ['locks', 'channels']) {
  const args = [here(`./${bench}.mjs`)]
  if (quick) args.push('--quick')
  else args.push('--json', here(`./results/${bench}.json`))
  const { status } = spawnSync(process.execPath, args, { stdio: 'inherit' })
  if (status !== 0) process.exit(status ?? 1)
}
