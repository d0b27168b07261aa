'use strict'
// `npm test`: lint, build the addon (debug), run the Rust unit tests, start
// two test servers ("local" and "atlas"), run the JS tests against them, and
// stop the servers whatever happens. With TEST_LOCAL_URI and TEST_ATLAS_URI
// set, those servers are used instead of starting any.
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { startServer, ensureServerBinary } = require('./servers')

const root = path.join(__dirname, '..')
const TARGET = 'x86_64-unknown-linux-gnu'

function run(cmd, args, opts = {}) {
  console.log(`\n$ ${cmd} ${args.join(' ')}`)
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', ...opts })
  if (r.error) throw r.error
  // Killed by a signal: no status, and not a pass.
  return r.status ?? 1
}

function step(cmd, args, opts) {
  const status = run(cmd, args, opts)
  if (status !== 0) {
    console.error(`\nnpm test: '${cmd} ${args.join(' ')}' failed (exit ${status})`)
    process.exit(status || 1)
  }
}

async function main() {
  const only = process.argv.slice(2)
  if (!process.env.TEST_SKIP_BUILD) {
    step('cargo', ['fmt', '--check'])
    step('npx', ['napi', 'build', '--platform', '--js', 'binding.js', '--dts', 'binding.d.ts'])
    step('cargo', ['clippy', '--target', TARGET, '--all-targets', '--', '-D', 'warnings'])
    step('cargo', ['test', '--target', TARGET, '--no-default-features'])
  }
  let local, atlas
  const env = { ...process.env }
  if (process.env.TEST_LOCAL_URI && process.env.TEST_ATLAS_URI) {
    console.log('\nusing the servers of TEST_LOCAL_URI and TEST_ATLAS_URI')
  } else {
    env.TEST_SERVER_KIND = ensureServerBinary({ log: console.log }).kind
    ;[local, atlas] = await Promise.all([startServer({ name: 'local' }), startServer({ name: 'atlas' })])
    env.TEST_LOCAL_URI = local.uri
    env.TEST_ATLAS_URI = atlas.uri
    console.log(`\ntest servers: local ${local.uri}, atlas ${atlas.uri}`)
  }
  // What the JS tests put in the temporary directory (data directories,
  // servers of their own) goes under one directory of this run, removed
  // after a passing run and kept, for a look, otherwise.
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'dms-run-'))
  const kept = () => console.error(`\nnpm test: the tests' temporary files are kept in ${scratch}`)
  env.TMPDIR = scratch
  let status = 1
  const stopAll = async () => Promise.all([local && local.remove(), atlas && atlas.remove()])
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]]) {
    process.on(signal, () => {
      kept()
      stopAll().then(() => process.exit(code))
    })
  }
  try {
    const files = only.length ? only : [path.join('__test__')]
    status = run(process.execPath, ['--test', '--test-concurrency=1', '--test-timeout=600000', ...files], { env })
  } finally {
    await stopAll()
  }
  if (status === 0) fs.rmSync(scratch, { recursive: true, force: true })
  else kept()
  process.exit(status)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
