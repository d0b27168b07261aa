'use strict'
// Test servers: two (or more) MongoDB wire-protocol servers on free loopback
// ports, each with its own temporary storage. Uses `secantusd-rs` when it is
// on PATH, else the Python SecantusDB from PyPI in a cached venv, installed
// on first use. Started and stopped by the test harness and by tests.
const fs = require('node:fs')
const os = require('node:os')
const net = require('node:net')
const path = require('node:path')
const { spawn, spawnSync } = require('node:child_process')

const SECANTUS_VERSION = '0.7.0b3'
const CACHE = process.env.DUAL_SYNC_CACHE_DIR || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'dual-mongo-sync')

function onPath(cmd) {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' })
  return r.status === 0 ? r.stdout.trim() : null
}

/** The server binary to run: `{ bin, kind }`, installing the venv if needed. */
function ensureServerBinary({ log = console.error } = {}) {
  const rs = process.env.SECANTUSD_RS || onPath('secantusd-rs')
  if (rs) return { bin: rs, kind: 'rs' }
  const venv = path.join(CACHE, `secantus-${SECANTUS_VERSION}`)
  const bin = path.join(venv, 'bin', 'secantusd-py')
  if (!fs.existsSync(bin)) {
    log(`test servers: installing SecantusDB==${SECANTUS_VERSION} into ${venv} (once)`)
    fs.mkdirSync(CACHE, { recursive: true })
    const python = onPath('python3') || 'python3'
    let r = spawnSync(python, ['-m', 'venv', venv], { stdio: 'inherit' })
    if (r.status !== 0) throw new Error('python3 -m venv failed; install python3 (with venv)')
    r = spawnSync(path.join(venv, 'bin', 'pip'), ['install', '-q', `SecantusDB==${SECANTUS_VERSION}`], { stdio: 'inherit' })
    if (r.status !== 0) throw new Error(`pip install SecantusDB==${SECANTUS_VERSION} failed`)
  }
  return { bin, kind: 'py' }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

/**
 * Servers started here and not yet stopped. If this process exits with any
 * still running (an uncaught error, `process.exit` from a failed step, a
 * reader of its output that went away), they are killed and their temporary
 * storage removed, so that no server outlives the tests or the benchmark
 * that started it. (Nothing can run on SIGKILL; callers that handle signals
 * exit through `process.exit`, which runs this.)
 */
const running = new Set()

function killRunning() {
  // The server may still be dying (SIGKILL is delivered, not awaited): a
  // file it creates meanwhile fails one pass of the removal.
  const rm = (p) => {
    try {
      fs.rmSync(p, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 })
    } catch {}
  }
  for (const server of running) {
    try {
      server.proc.kill('SIGKILL')
    } catch {}
    if (server.ownDir) rm(server.dir)
    rm(server.cfg)
  }
  running.clear()
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })
}

/**
 * Starts one server (`args`: extra server flags, e.g. TLS files). Returns
 * `{ uri, port, dir, stop(), kill(), restart() }`.
 * `stop()` waits for a clean exit (SIGTERM, then SIGKILL after 15 s).
 */
async function startServer({ name = 'server', port, dir, args: extra = [], log = () => {} } = {}) {
  const { bin } = ensureServerBinary()
  port = port || (await freePort())
  const ownDir = !dir
  dir = dir || fs.mkdtempSync(path.join(os.tmpdir(), `dms-${name}-`))
  const cfg = path.join(dir, '..', `${path.basename(dir)}.toml`)
  fs.writeFileSync(cfg, '') // an empty config: no auto-discovered secantusd.toml
  const args = ['--config', cfg, '--host', '127.0.0.1', '--port', String(port), '--storage-path', dir]
  args.push('--cache-size', '512M', ...extra)
  const server = { name, port, dir, uri: `mongodb://127.0.0.1:${port}/?directConnection=true`, proc: null }
  const tracked = { dir, cfg, ownDir, proc: null }
  const launch = async () => {
    const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    proc.stdout.on('data', (d) => log(`[${name}] ${d}`))
    proc.stderr.on('data', (d) => log(`[${name}] ${d}`))
    server.proc = proc
    tracked.proc = proc
    if (!process.listeners('exit').includes(killRunning)) process.on('exit', killRunning)
    running.add(tracked)
    proc.once('exit', () => {
      if (tracked.proc === proc) running.delete(tracked)
    })
    const deadline = Date.now() + 60000
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) throw new Error(`${name} server exited with code ${proc.exitCode}`)
      if (await canConnect(port)) return
      await new Promise((r) => setTimeout(r, 100))
    }
    proc.kill('SIGKILL')
    throw new Error(`${name} server did not listen on port ${port} within 60 s`)
  }
  const waitExit = (proc, ms) =>
    new Promise((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return resolve(true)
      const t = setTimeout(() => resolve(false), ms)
      proc.once('exit', () => {
        clearTimeout(t)
        resolve(true)
      })
    })
  server.stop = async () => {
    const proc = server.proc
    if (!proc) return
    server.proc = null
    proc.kill('SIGTERM')
    if (!(await waitExit(proc, 15000))) {
      proc.kill('SIGKILL')
      await waitExit(proc, 5000)
    }
  }
  server.kill = async () => {
    const proc = server.proc
    if (!proc) return
    server.proc = null
    proc.kill('SIGKILL')
    await waitExit(proc, 5000)
  }
  server.restart = async () => {
    await server.stop()
    await launch()
  }
  server.start = launch
  server.remove = async () => {
    await server.stop()
    fs.rmSync(dir, { recursive: true, force: true })
    fs.rmSync(cfg, { force: true })
  }
  await launch()
  return server
}

module.exports = { ensureServerBinary, startServer, freePort, CACHE }
