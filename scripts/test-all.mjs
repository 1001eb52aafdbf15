// `npm test`: every test suite of the project, one after another: the JavaScript suite (ava,
// real processes, worker threads and namespaces), the Rust core and binding (cargo test), the Go
// module and the Python package (each with Node peers). Prints each suite's counts, then one
// line "N passed, N failed" summed over all; exits 1 if anything failed.
//
//   npm test                      every suite
//   npm test -- js|rust|go|python  some of them
//   npm test -- js -- FILES...    arguments after a second -- go to that one suite's runner
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const argv = process.argv.slice(2)
const split = argv.indexOf('--')
const chosen = split < 0 ? argv : argv.slice(0, split)
const extra = split < 0 ? [] : argv.slice(split + 1)

const suites = {
  js: {
    label: 'JavaScript (ava)',
    command: [process.execPath, ['node_modules/ava/entrypoints/cli.mjs', '--tap']],
    count: (out) => ({ passed: last(out, /^# pass (\d+)$/m), failed: last(out, /^# fail (\d+)$/m) }),
  },
  rust: {
    label: 'Rust (cargo test)',
    command: ['cargo', ['test', '--workspace']],
    count: (out) => sumOf(out, /^test result: \w+\. (\d+) passed; (\d+) failed/gm),
  },
  go: {
    label: 'Go (go vet, go test)',
    // The Node peers are part of these tests: fail, not skip, if the Node package is missing.
    command: [
      'bash',
      [
        '-c',
        'if ! command -v go >/dev/null; then echo "go: SKIPPED (no go)"; exit 0; fi; cd go && go vet ./... && SHMKIT_REQUIRE_NODE=1 go test -count=1 -v ./... "$@"',
        'go',
      ],
    ],
    count: (out) => ({
      passed: (out.match(/^\s*--- PASS/gm) ?? []).length,
      failed: (out.match(/^\s*--- FAIL/gm) ?? []).length,
    }),
  },
  python: {
    label: 'Python (pytest)',
    command: ['bash', ['scripts/test-python.sh', '-q']],
    count: (out) => ({ passed: last(out, /(\d+) passed/), failed: last(out, /(\d+) failed/) }),
  },
}

function last(text, pattern) {
  const flags = pattern.flags.includes('g') ? pattern.flags : pattern.flags + 'g'
  const all = [...text.matchAll(new RegExp(pattern.source, flags))]
  return all.length ? Number(all.at(-1)[1]) : 0
}

function sumOf(text, pattern) {
  let passed = 0
  let failed = 0
  for (const m of text.matchAll(pattern)) {
    passed += Number(m[1])
    failed += Number(m[2])
  }
  return { passed, failed }
}

function run([command, args]) {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    for (const stream of [child.stdout, child.stderr]) {
      stream.on('data', (chunk) => {
        out += chunk
        ;(stream === child.stdout ? process.stdout : process.stderr).write(chunk)
      })
    }
    child.on('error', (error) => resolve({ code: 1, out: `${out}\n${error.message}` }))
    child.on('close', (code) => resolve({ code, out }))
  })
}

const names = chosen.length ? chosen : Object.keys(suites)
for (const name of names)
  if (!suites[name]) throw new Error(`unknown suite ${name}: one of ${Object.keys(suites).join(', ')}`)
const results = []
for (const name of names) {
  const suite = suites[name]
  console.log(`\n=== ${suite.label}`)
  const [command, args] = suite.command
  const { code, out } = await run([command, [...args, ...extra]])
  const counts = suite.count(out)
  // A crash or a build failure is never green, whatever was counted before it.
  if (code !== 0 && counts.failed === 0) counts.failed = 1
  results.push({ label: suite.label, ...counts })
}
console.log('\n=== Test suites')
for (const r of results) console.log(`${r.label.padEnd(24)} ${r.passed} passed, ${r.failed} failed`)
const passed = results.reduce((sum, r) => sum + r.passed, 0)
const failed = results.reduce((sum, r) => sum + r.failed, 0)
console.log(`${passed} passed, ${failed} failed`)
process.exit(failed === 0 ? 0 : 1)
