'use strict'
// The command line of `dual-mongo-sync`: commands, their flags, and the help
// text. Anything not listed here is a usage error (exit code 2).

class UsageError extends Error {
  constructor(message) {
    super(message)
    this.name = 'UsageError'
    this.code = 'ERR_SYNC_USAGE'
  }
}

const MAX_OPS = 1_000_000

/** Each command's flags and their kinds: boolean, list (a,b,c), count (1..MAX_OPS) or string. */
const COMMANDS = {
  status: { flags: {}, summary: 'health checks and the queue' },
  verify: { flags: { repair: 'boolean', collections: 'list' }, summary: 'compare local and Atlas; --repair copies what differs' },
  full: { flags: { collections: 'list' }, summary: 'full sync: copy every collection to Atlas, delete Atlas-only documents' },
  'test-basic': { flags: { db: 'string' }, summary: 'insert/update/replace/delete through the addon, then verify Atlas' },
  'test-performance': { flags: { ops: 'count', db: 'string' }, summary: 'time N insertOne and N updateOne, then the flush' },
  'test-resilience': { flags: { db: 'string' }, summary: 'pause replication, write, see the queue in health, resume, verify' },
}
const GLOBAL_FLAGS = { json: 'boolean', help: 'boolean' }

const HELP = `Usage: dual-mongo-sync <command> [flags]

Commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(18)}${c.summary}`)
  .join('\n')}

Flags:
  --collections a,b   only these collections: coll (database of MONGODB_URI) or db.coll
  --repair            (verify) copy the differing documents again
  --ops N             (test-performance) operations of each kind, default 1000
  --db NAME           (test-*) database of the scratch collection, default that of MONGODB_URI
  --json              print one JSON document on stdout (relaxed Extended JSON), nothing else
  --help, -h          this help

Settings come from the environment, as for createSync(): MONGODB_URI,
MONGODB_ATLAS_URI, SYNC_DATA_DIR, SYNC_EXCLUDED_COLLECTIONS, SYNC_* (see the README).
The test-* commands write to the scratch collection dual_mongo_sync_selftest,
remove their documents afterwards, and use a temporary journal of their own.

Exit codes: 0 success, 1 failure or differences found, 2 usage error.
`

/** `--name=value` or `--name value` or `-h`, as [name, inlineValue]. */
function flagName(token) {
  if (token === '-h') return ['help', undefined]
  const eq = token.indexOf('=')
  return eq === -1 ? [token.slice(2), undefined] : [token.slice(2, eq), token.slice(eq + 1)]
}

function flagValue(name, kind, raw) {
  if (kind === 'boolean') {
    if (raw !== undefined) throw new UsageError(`--${name} takes no value`)
    return true
  }
  if (raw === undefined || raw === '') throw new UsageError(`--${name} needs a value`)
  if (kind === 'list') {
    const list = raw.split(',').map((s) => s.trim()).filter(Boolean)
    if (list.length === 0) throw new UsageError(`--${name} needs at least one name`)
    return list
  }
  if (kind === 'count') {
    if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > MAX_OPS) {
      throw new UsageError(`--${name} must be a whole number from 1 to ${MAX_OPS}, got ${JSON.stringify(raw)}`)
    }
    return Number(raw)
  }
  return raw
}

/** Parses argv (without node and the script) into { command, flags }. */
function parseArgs(argv) {
  const flags = {}
  let command = null
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]
    if (!token.startsWith('-')) {
      if (command !== null) throw new UsageError(`unexpected argument ${JSON.stringify(token)}`)
      if (token !== 'help' && !Object.hasOwn(COMMANDS, token)) throw new UsageError(`unknown command ${JSON.stringify(token)}`)
      command = token === 'help' ? null : token
      if (token === 'help') flags.help = true
      continue
    }
    const [name, inline] = flagName(token)
    const known = { ...GLOBAL_FLAGS, ...(command ? COMMANDS[command].flags : {}) }
    if (!Object.hasOwn(known, name)) {
      throw new UsageError(`unknown flag ${token.split('=')[0]}${command ? ` for '${command}'` : ' (flags come after the command)'}`)
    }
    const takesValue = known[name] !== 'boolean' && inline === undefined
    // `--collections --json` forgot the value: the next flag is not it.
    if (takesValue && argv[i + 1]?.startsWith('--')) throw new UsageError(`--${name} needs a value, got the flag ${argv[i + 1]}`)
    flags[name] = flagValue(name, known[name], takesValue ? argv[++i] : inline)
  }
  if (command === null && !flags.help) throw new UsageError('no command given')
  return { command, flags }
}

module.exports = { parseArgs, HELP }
