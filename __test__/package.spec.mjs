// The published shape, end to end: the tarballs from `npm run pack:local` install into a fresh
// project with no Rust toolchain on PATH and no install script, and work from CommonJS, from ESM
// (named imports) and from a strict TypeScript consumer. Needs `npm run pack:local` first; .ci/run
// and the GitHub workflow do that; elsewhere the test is skipped when artifacts/ is missing.
import test from 'ava'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const artifacts = path.join(root, 'artifacts')
const tarballs = fs.existsSync(artifacts) ? fs.readdirSync(artifacts).filter((f) => f.endsWith('.tgz')) : []
// .ci/run sets SHMKIT_REQUIRE_PACKAGE_TEST, so a missing artifacts/ fails there instead of skipping.
const packaged = tarballs.length >= 2 || process.env.SHMKIT_REQUIRE_PACKAGE_TEST ? test : test.skip

/** PATH without any Rust toolchain directory. */
function pathWithoutRust() {
  return process.env.PATH.split(path.delimiter)
    .filter((dir) => !/cargo|rustup/.test(dir) && !fs.existsSync(path.join(dir, 'cargo')))
    .join(path.delimiter)
}

const consumerScript = (importLine) => `${importLine}
const name = 'pkg-test-' + process.pid
const seg = Segment.create(name, { size: 64 })
const guard = seg.mutex.lock()
new Int32Array(seg.buffer)[0] = 41 + 1
guard.unlock()
const ch = Channel.create(name + '-ch', { capacity: 256, codec: 'json' })
ch.send({ ok: new Int32Array(seg.buffer)[0] })
const { ok } = ch.recv()
ch.close(); Channel.unlink(name + '-ch')
seg.close(); Segment.unlink(name)
if (ok !== 42) throw new Error('wrong value ' + ok)
console.log('consumer ok')
`

packaged('the packed tarballs install without Rust or install scripts and work from CJS, ESM and strict TS', (t) => {
  t.true(tarballs.length >= 2, 'npm run pack:local wrote the main and the platform tarball')
  const project = fs.mkdtempSync(path.join(os.tmpdir(), 'shmkit-consumer-'))
  t.teardown(() => fs.rmSync(project, { recursive: true, force: true }))
  fs.writeFileSync(
    path.join(project, 'package.json'),
    JSON.stringify({ name: 'consumer', private: true, version: '1.0.0' }),
  )
  const env = { ...process.env, PATH: pathWithoutRust(), npm_config_foreground_scripts: 'true' }
  delete env.npm_config_ignore_scripts
  const npm = process.env.npm_execpath ? [process.execPath, process.env.npm_execpath] : ['npm']
  const installLog = execFileSync(
    npm[0],
    [...npm.slice(1), 'install', '--no-audit', '--no-fund', ...tarballs.map((f) => path.join(artifacts, f))],
    {
      cwd: project,
      env,
      encoding: 'utf8',
    },
  )
  t.notRegex(installLog, /cargo|rustc|napi build/, 'nothing was compiled')

  const installed = JSON.parse(fs.readFileSync(path.join(project, 'node_modules/shmkit/package.json'), 'utf8'))
  for (const hook of ['preinstall', 'install', 'postinstall', 'prepare'])
    t.falsy(installed.scripts?.[hook], `no ${hook} script`)
  t.false(
    fs.readdirSync(path.join(project, 'node_modules/shmkit')).some((f) => f.endsWith('.node')),
    'the binary comes from the platform package',
  )

  const node = (file) => execFileSync(process.execPath, [file], { cwd: project, env, encoding: 'utf8' })
  fs.writeFileSync(path.join(project, 'cjs.cjs'), consumerScript(`const { Segment, Channel } = require('shmkit')`))
  t.regex(node('cjs.cjs'), /consumer ok/)
  fs.writeFileSync(path.join(project, 'esm.mjs'), consumerScript(`import { Segment, Channel } from 'shmkit'`))
  t.regex(node('esm.mjs'), /consumer ok/)

  t.true(
    fs.existsSync(path.join(project, 'node_modules/.bin', process.platform === 'win32' ? 'shmkit.cmd' : 'shmkit')),
    'installed as a bin',
  )
  if (process.platform === 'linux') {
    const bin = execFileSync(
      process.execPath,
      [path.join(project, 'node_modules/shmkit/bin/shmkit.js'), 'ls', '--json'],
      { cwd: project, env, encoding: 'utf8' },
    )
    t.true(Array.isArray(JSON.parse(bin).segments), 'the shmkit command runs (listing needs Linux)')
  }

  fs.writeFileSync(
    path.join(project, 'consumer.ts'),
    `import { Segment, Mutex, Channel, type LockGuard, type WaitResult } from 'shmkit'
const seg: Segment = Segment.openOrCreate('pkg-ts', { size: 128, mode: 0o600 })
const guard: LockGuard = Mutex.at(seg, 64).lock({ timeout: 10 })
const owner: boolean = guard.ownerDied
guard.unlock()
const result: WaitResult = seg.wait(0, 1, 0)
const ch = Channel.open<{ n: number }>('pkg-ts-ch', { codec: 'json' })
const value: { n: number } = ch.recv({ timeout: 1 })
export { owner, result, value }
`,
  )
  fs.writeFileSync(
    path.join(project, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        module: 'nodenext',
        moduleResolution: 'nodenext',
        target: 'es2022',
        noEmit: true,
        types: ['node'],
        typeRoots: [path.join(root, 'node_modules/@types')],
      },
      files: ['consumer.ts'],
    }),
  )
  execFileSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', project], {
    cwd: project,
    env,
    encoding: 'utf8',
  })
  t.pass()
})

test('without a binary for the platform, loading fails with a clear coded error', (t) => {
  const bare = fs.mkdtempSync(path.join(os.tmpdir(), 'shmkit-nobinary-'))
  t.teardown(() => fs.rmSync(bare, { recursive: true, force: true }))
  fs.mkdirSync(path.join(bare, 'lib'))
  const files = [
    'index.js',
    'binding.js',
    ...fs
      .readdirSync(path.join(root, 'lib'))
      .filter((f) => f.endsWith('.js'))
      .map((f) => `lib/${f}`),
  ]
  for (const file of files) fs.copyFileSync(path.join(root, file), path.join(bare, file))
  const output = execFileSync(
    process.execPath,
    [
      '-e',
      `try { require(${JSON.stringify(path.join(bare, 'index.js'))}) } catch (e) { console.log(e.code + ': ' + e.message) }`,
    ],
    { encoding: 'utf8' },
  )
  t.regex(output, /^ERR_SHM_NO_BINARY: shmkit has no native binary for \w+-\w+/)
})
