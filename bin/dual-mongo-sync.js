#!/usr/bin/env node
'use strict'
// The dual-mongo-sync command line; see `dual-mongo-sync --help`.
require('../lib/cli').main(process.argv.slice(2)).then((code) => {
  process.exitCode = code
})
