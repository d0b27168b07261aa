'use strict'
// What the CLI prints. Results go to stdout: one relaxed Extended JSON
// document with --json, else lines for people. Errors and progress go to
// stderr. Everything printed passes through redact(): connection strings
// lose their user and password.
const { EJSON } = require('bson')
const { redact } = require('../router')

const BAR_WIDTH = 24
const TTY_REDRAW_MS = 100
const LINE_EVERY_MS = 5000

class Output {
  constructor({ json, stdout = process.stdout, stderr = process.stderr }) {
    this.json = json
    this.stdout = stdout
    this.stderr = stderr
  }

  /** Prints a command's result: `value` as JSON, or `lines` for people. */
  result(value, lines) {
    if (this.json) this.stdout.write(redact(EJSON.stringify(value, { relaxed: true })) + '\n')
    else this.stdout.write(redact(lines.join('\n')) + '\n')
  }

  /** Prints an error: as `{ ok: false, error }` on stdout with --json, and always on stderr. */
  error(err) {
    // A driver error without a code (a server not reachable) is named by its
    // class, not reported as an internal error of this tool.
    const code = err.code ?? (typeof err.name === 'string' && err.name.startsWith('Mongo') ? err.name : 'ERR_SYNC_INTERNAL')
    const message = redact(err.message || String(err))
    if (this.json) this.stdout.write(JSON.stringify({ ok: false, error: { code, message } }) + '\n')
    this.stderr.write(`dual-mongo-sync: ${message}${err.name === 'UsageError' ? '' : ` (${code})`}\n`)
  }

  /** A progress display on stderr, see {@link Progress}. */
  progress(label) {
    return new Progress(this.stderr, label)
  }
}

/**
 * Progress of a long run on stderr: a redrawn bar when stderr is a terminal,
 * else a line at each further tenth done (or every 5 s without a total).
 */
class Progress {
  constructor(stream, label) {
    this.stream = stream
    this.label = label
    this.tty = Boolean(stream.isTTY)
    this.started = Date.now()
    this.lastAt = 0
    this.lastTenth = -1
    this.drawn = false
  }

  /** Shows `done` of `total` (total null: unknown), with an optional note. */
  update(done, total, note = '') {
    const now = Date.now()
    const tenth = total ? Math.floor((10 * done) / total) : -1
    if (this.tty) {
      if (now - this.lastAt < TTY_REDRAW_MS && done !== total) return
      this.stream.write(`\r\x1b[K${this.text(done, total, note, true)}`)
      this.drawn = true
    } else {
      if (tenth <= this.lastTenth && now - this.lastAt < LINE_EVERY_MS) return
      this.stream.write(this.text(done, total, note, false) + '\n')
      this.lastTenth = Math.max(tenth, this.lastTenth)
    }
    this.lastAt = now
  }

  text(done, total, note, withBar) {
    const secs = `${Math.round((Date.now() - this.started) / 1000)} s`
    const tail = note ? `, ${note}` : ''
    if (!total) return `${this.label}: running, ${secs}${tail}`
    const share = Math.min(1, done / total)
    const filled = Math.round(share * BAR_WIDTH)
    const bar = withBar ? ` [${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}]` : ''
    return `${this.label}:${bar} ${done}/${total} (${Math.floor(share * 100)}%), ${secs}${tail}`
  }

  /** Ends the display (the terminal line is cleared). */
  end() {
    if (this.tty && this.drawn) this.stream.write('\r\x1b[K')
  }
}

/**
 * Calls `tick` every `everyMs` while `promise` runs (never two at once);
 * resolves with the promise's result once the last tick is over. A failing
 * tick only misses one progress update.
 */
async function whileRunning(promise, tick, everyMs = 500) {
  let inFlight = null
  const timer = setInterval(() => {
    if (!inFlight) inFlight = tick().catch(() => {}).finally(() => (inFlight = null))
  }, everyMs)
  try {
    return await promise
  } finally {
    clearInterval(timer)
    await inFlight
  }
}

module.exports = { Output, whileRunning }
