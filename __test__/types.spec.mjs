// The published types, as a strict TypeScript consumer sees them: codecs type what channels send
// and receive, inspection results are literal unions, layouts type their views, unknown options
// do not compile. __test__/types/consumer.ts holds the cases; tsc must accept it as is (each
// line that must not compile carries an expected-error marker, which fails if it compiles).
import test from 'ava'
import { execFileSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
const project = fileURLToPath(new URL('./types/tsconfig.json', import.meta.url))

test('a strict TypeScript consumer compiles what it should and rejects what it should not', (t) => {
  t.notThrows(() => execFileSync(process.execPath, [tsc, '-p', project], { encoding: 'utf8', stdio: 'pipe' }))
})
