// `npm run pack:local`: builds the release addon for this machine and writes installable
// tarballs of the main package and of this platform's binary package into artifacts/, shaped
// exactly as a publish would ship them (the main package lists every platform package as an
// optional dependency; the binary lives only in the platform package).
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const artifacts = path.join(root, 'artifacts')
const npmCli = process.env.npm_execpath ? [process.execPath, process.env.npm_execpath] : ['npm']
const run = (command, args, cwd = root) => execFileSync(command, args, { cwd, stdio: 'inherit' })
const npm = (args, cwd) => run(npmCli[0], [...npmCli.slice(1), ...args], cwd)

npm(['run', 'build'])

const manifest = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'))
const { binaryName } = manifest.napi
const addon = fs.readdirSync(root).find((file) => file.startsWith(`${binaryName}.`) && file.endsWith('.node'))
if (!addon) throw new Error('the build produced no .node file')
const platformArchAbi = addon.slice(binaryName.length + 1, -'.node'.length)
const platformDir = path.join(root, 'npm', platformArchAbi)
if (!fs.existsSync(platformDir))
  throw new Error(`no npm/${platformArchAbi}: is this target in package.json napi.targets?`)

fs.rmSync(artifacts, { recursive: true, force: true })
fs.mkdirSync(artifacts)

// The platform package: its package.json plus the binary.
const platformStage = fs.mkdtempSync(path.join(artifacts, '.stage-platform-'))
fs.cpSync(platformDir, platformStage, { recursive: true })
fs.copyFileSync(path.join(root, addon), path.join(platformStage, addon))
npm(['pack', '--pack-destination', artifacts], platformStage)

// The main package, with the optional dependencies that publishing adds.
const mainStage = fs.mkdtempSync(path.join(artifacts, '.stage-main-'))
// The files npm itself would publish (package.json `files`, globs expanded), minus package.json.
const [{ files: packed }] = JSON.parse(
  execFileSync(npmCli[0], [...npmCli.slice(1), 'pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: root,
    encoding: 'utf8',
  }),
)
for (const { path: file } of packed.filter((f) => f.path !== 'package.json')) {
  fs.mkdirSync(path.dirname(path.join(mainStage, file)), { recursive: true })
  fs.copyFileSync(path.join(root, file), path.join(mainStage, file))
}
const platformNames = fs.readdirSync(path.join(root, 'npm')).map((dir) => `${manifest.name}-${dir}`)
const published = {
  ...manifest,
  optionalDependencies: Object.fromEntries(platformNames.map((name) => [name, manifest.version])),
}
delete published.devDependencies
delete published.scripts
fs.writeFileSync(path.join(mainStage, 'package.json'), `${JSON.stringify(published, null, 2)}\n`)
npm(['pack', '--pack-destination', artifacts], mainStage)

for (const stage of [platformStage, mainStage]) fs.rmSync(stage, { recursive: true })
console.log(`artifacts/: ${fs.readdirSync(artifacts).join(', ')}`)
