'use strict'
// `dual-mongo-sync <command>`: parses the command line, opens a Sync from the
// environment (as createSync() does), runs the command and closes the Sync.
// main() resolves with the exit code: 0 success, 1 failure, 2 usage error.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { createSync } = require('../sync')
const { SyncError } = require('../errors')
const { parseArgs, HELP } = require('./args')
const { Output } = require('./output')
const { status, verify, full } = require('./commands')
const { SELFTESTS } = require('./selftests')

const OPERATIONS = { status, verify, full }
/** `status` only reads: it does not wait long for a backlog to drain on close. */
const CLOSE_TIMEOUT_MS = { status: 1000 }

/** Settings come from the env; only the log level defaults to warnings, to keep the output readable. */
function envOptions() {
  return process.env.SYNC_LOG_LEVEL ? {} : { logLevel: 'warn' }
}

/** status, verify, full: on the configured journal (SYNC_DATA_DIR), shared with the app. */
async function runOperation(command, flags, out) {
  const sync = await createSync(envOptions())
  try {
    return await OPERATIONS[command](sync, out, flags)
  } finally {
    await sync.close({ timeoutMs: CLOSE_TIMEOUT_MS[command] ?? 5000 })
  }
}

/** test-*: on a temporary journal of their own, removed afterwards. */
async function runSelftest(command, flags, out) {
  const test = SELFTESTS[command]
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dual-mongo-sync-selftest-'))
  try {
    const sync = await createSync({ ...envOptions(), ...test.syncOptions, dataDir })
    try {
      if (!sync.enabled) throw new SyncError(`${command} needs replication on, but SYNC_ENABLED is false`, 'ERR_SYNC_CONFIG')
      return await test.run(sync, out, flags)
    } finally {
      await sync.close()
    }
  } finally {
    fs.rmSync(dataDir, { recursive: true, force: true })
  }
}

/** Runs the CLI with `argv` (arguments after the script); resolves with the exit code. */
async function main(argv, io = {}) {
  const out = new Output({ json: argv.includes('--json'), ...io })
  let parsed
  try {
    parsed = parseArgs(argv)
  } catch (e) {
    out.error(e)
    out.stderr.write('Run dual-mongo-sync --help for usage.\n')
    return 2
  }
  if (parsed.flags.help) {
    out.stdout.write(HELP)
    return 0
  }
  try {
    const run = SELFTESTS[parsed.command] ? runSelftest : runOperation
    return await run(parsed.command, parsed.flags, out)
  } catch (e) {
    out.error(e)
    return 1
  }
}

module.exports = { main }
