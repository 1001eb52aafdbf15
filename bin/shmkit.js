#!/usr/bin/env node
// The shmkit command (lib/cli.ts; see docs/cli.md).
'use strict'

try {
  process.exitCode = require('../lib/cli.js').main(process.argv.slice(2))
} catch (error) {
  console.error(`shmkit: ${error.message}`)
  process.exitCode = 1
}
