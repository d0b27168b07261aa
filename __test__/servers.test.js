'use strict'
// The test servers' harness (scripts/servers.js): a server it started must
// not outlive the process that started it, however that process ends short
// of stopping it (a failed step's `process.exit`, an uncaught error such as
// the EPIPE of `npm run bench | head`). Left running, each one holds a
// 512 MB cache and a port for the rest of the machine's life.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { waitFor } = require('./helpers')

const SERVERS = path.join(__dirname, '..', 'scripts', 'servers.js')

/** Runs a child that starts one server, reports it, then ends as `how` says. */
function child(how) {
  const code = `
    const { startServer } = require(${JSON.stringify(SERVERS)})
    startServer({ name: 'orphan' }).then((s) => {
      console.log(JSON.stringify({ pid: s.proc.pid, dir: s.dir }))
      ${how}
    })`
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    p.stdout.on('data', (d) => (out += d))
    p.stderr.on('data', (d) => (err += d))
    p.on('error', reject)
    p.on('close', (status) => {
      const line = out.split('\n').find((l) => l.startsWith('{'))
      if (!line) return reject(new Error(`the child reported no server (exit ${status}): ${err}`))
      resolve({ status, server: JSON.parse(line), stderr: err })
    })
  })
}

/** Whether `pid` still runs (a zombie waiting to be reaped does not). */
const alive = (pid) => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z'
  } catch (e) {
    if (e.code === 'ENOENT') return false
    throw e
  }
}

for (const [what, how, status] of [
  ['process.exit', 'process.exit(3)', 3],
  ['an uncaught error', "setImmediate(() => { throw new Error('boom') })", 1],
]) {
  test(`a test server dies with the process that started it (${what})`, async () => {
    const { status: got, server, stderr } = await child(how)
    try {
      assert.equal(got, status, stderr)
      await waitFor(async () => !alive(server.pid), { timeoutMs: 10000, what: `server ${server.pid} to be gone` })
      assert.equal(fs.existsSync(server.dir), false, `its storage ${server.dir} is removed`)
    } finally {
      if (alive(server.pid)) process.kill(server.pid, 'SIGKILL')
    }
  })
}
