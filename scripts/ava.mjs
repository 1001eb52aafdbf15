// Runs ava under the runtime that runs this file (Node, Bun or Deno): `bun scripts/ava.mjs`,
// `deno run -A scripts/ava.mjs`. ava writes V8 coverage when a run ends with v8.takeCoverage(),
// which Bun and Deno do not implement (they throw): there, with no coverage to write, it does nothing.
import v8 from 'node:v8'

try {
  v8.takeCoverage()
} catch {
  v8.takeCoverage = () => {}
}
await import('../node_modules/ava/entrypoints/cli.mjs')
