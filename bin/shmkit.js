#!/usr/bin/env node
// The shmkit command (lib/cli.ts; see docs/cli.md).
'use strict'

const fail = (error) => {
  console.error(`shmkit: ${error.message}`)
  process.exitCode = 1
}
try {
  const code = require('../lib/cli.js').main(process.argv.slice(2))
  if (typeof code === 'number') process.exitCode = code
  else code.then((done) => (process.exitCode = done), fail)
} catch (error) {
  fail(error)
}
