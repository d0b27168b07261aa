#!/usr/bin/env node
'use strict'
// `npm run bench [-- --full] [--only 1,3] [--runs N] [--set key=value]`
//
// Measures the six figures of BENCHMARKS.md against two servers it starts
// itself (scripts/servers.js: secantusd-rs when on PATH or SECANTUSD_RS,
// else the Python SecantusDB), or against TEST_LOCAL_URI / TEST_ATLAS_URI.
// Every figure runs --runs times, each run on fresh databases and a fresh
// SYNC_DATA_DIR; the table shows the median of the runs and their min-max.
// Progress goes to stderr, the table to stdout, the numbers to
// bench-results/<timestamp>.json and bench-results/latest.json.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { Context, addonBuild } = require('./lib/context')
const { summarize } = require('./lib/stats')
const { DOC_BYTES } = require('./lib/doc')

const ROOT = path.join(__dirname, '..')
const FIGURES = [
  require('./figures/write-path'),
  require('./figures/replication'),
  require('./figures/lag'),
  require('./figures/backlog'),
  require('./figures/full-sync'),
  require('./figures/scaling'),
]

/** Sizes per mode. quick: about 5-10 minutes on 2 cores with the Python server. */
const SIZES = {
  quick: {
    seq: 1000, // figure 1, operations one at a time (fewer make p99 the 3rd-worst call)
    conc: 2000, // figure 1, operations 32 at a time
    raw: 10000, // raw Atlas insertMany documents (figure 2)
    replOne: 5000, // figure 2, insertOne x32 writers
    replMany: 10000, // figure 2, insertMany(100) x8 writers
    lagSeconds: 10, // figure 3, per rate
    backlog: 100000, // figure 4
    fullSync: 20000, // figure 5
    scaleOps: 1000, // figure 6, insertOne x32 per setting
    scaleDocs: 3000, // figure 6, documents replicated / drained per setting
  },
  full: {
    seq: 2000,
    conc: 20000,
    raw: 100000,
    replOne: 50000,
    replMany: 200000,
    lagSeconds: 60,
    backlog: 1000000,
    fullSync: 1000000,
    scaleOps: 10000,
    scaleDocs: 50000,
  },
}

const USAGE = `usage: npm run bench [-- options]
  --full              the issue's sizes (1M-document backlog and full sync; hours with the Python server)
  --only 1,3          figures to run (1 write path, 2 replication throughput, 3 lag, 4 backlog,
                      5 full sync/verify, 6 scaling); default all
  --runs N            runs per figure, the table shows their median and min-max (default 3)
  --workers N         createSync workers for figures 1-5 (default: the engine's default)
  --batch-size N      createSync batchSize for figures 1-5 (default: the engine's default)
  --set key=value     override a size (${Object.keys(SIZES.quick).join(', ')})
  --retry-writes on|off|auto   retryable writes on every connection; auto (default): off when a
                      server is the Python SecantusDB (see BENCHMARKS.md, "Server quirks"), else
                      as the URIs say (the drivers' default: on)
  --out DIR           where the JSON goes (default bench-results/)
  --render FILE       print the table of a saved result (e.g. bench-results/latest.json) and exit
env: TEST_LOCAL_URI + TEST_ATLAS_URI use those servers instead of starting two;
     SECANTUSD_RS=/path/to/secantusd-rs prefers the native server.`

function parseArgs(argv) {
  const o = { full: false, only: null, runs: 3, sync: {}, set: {}, retryWrites: 'auto', out: path.join(ROOT, 'bench-results') }
  const num = (flag, v) => {
    const n = Number(v)
    if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} needs a whole number >= 1, got ${JSON.stringify(v)}`)
    return n
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`)
      return argv[++i]
    }
    if (a === '--full') o.full = true
    else if (a === '--quick') o.full = false
    else if (a === '--only') {
      o.only = next()
        .split(',')
        .map((s) => num('--only', s.trim()))
      for (const f of o.only) if (!FIGURES.some((x) => x.id === f)) throw new Error(`--only: there is no figure ${f} (1-6)`)
    } else if (a === '--runs') o.runs = num('--runs', next())
    else if (a === '--workers') o.sync.workers = num('--workers', next())
    else if (a === '--batch-size') o.sync.batchSize = num('--batch-size', next())
    else if (a === '--set') {
      const [k, v] = next().split('=')
      if (!(k in SIZES.quick)) throw new Error(`--set: unknown size '${k}'; known: ${Object.keys(SIZES.quick).join(', ')}`)
      o.set[k] = num(`--set ${k}`, v)
    } else if (a === '--retry-writes') {
      o.retryWrites = next()
      if (!['on', 'off', 'auto'].includes(o.retryWrites)) throw new Error(`--retry-writes: on, off or auto, got '${o.retryWrites}'`)
    } else if (a === '--out') o.out = path.resolve(next())
    else if (a === '--render') o.render = path.resolve(next())
    else if (a === '--help' || a === '-h') {
      console.log(USAGE)
      process.exit(0)
    } else throw new Error(`unknown argument '${a}'\n${USAGE}`)
  }
  return o
}

// ---- table -----------------------------------------------------------------

function fmt(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–'
  const a = Math.abs(v)
  if (a >= 100) return Math.round(v).toLocaleString('en-US')
  if (a >= 10) return v.toFixed(1)
  return v.toFixed(2)
}

function targetText(t) {
  if (!t) return ''
  return t.le !== undefined ? `≤ ${t.le}` : `≥ ${t.ge}`
}

function verdict(t, v) {
  if (!t || v === null || v === undefined) return ''
  const goal = t.le !== undefined ? t.le : t.ge
  const ok = t.le !== undefined ? v <= goal : v >= goal
  if (ok) return 'met'
  const diff = v - goal
  return `missed by ${diff > 0 ? '+' : ''}${fmt(diff)} (${diff > 0 ? '+' : ''}${Math.round((diff / goal) * 100)}%)`
}

/** Row builders handed to each figure's `rows()`. */
function rowBuilder(S) {
  const get = (k) => (S[k] ? S[k] : null)
  const row = (label, k, target) => {
    const s = get(k)
    return {
      label,
      key: k,
      median: s ? s.median : null,
      min: s ? s.min : null,
      max: s ? s.max : null,
      n: s ? s.n : 0,
      target: targetText(target),
      result: verdict(target, s ? s.median : null),
    }
  }
  return {
    value: (label, k, unit, target) => row(`${label} (${unit})`, k, target),
    plain: (label, k, target) => row(label, k, target),
    ratio: (label, k, a, b, unit, target, [na, nb] = ['addon', 'driver']) => {
      const sa = get(a)
      const sb = get(b)
      return row(`${label} (${na} ${fmt(sa && sa.median)} / ${nb} ${fmt(sb && sb.median)} ${unit})`, k, target)
    },
  }
}

function tableMarkdown(figs) {
  const lines = ['| fig | metric | median | min–max | target | result |', '| --- | --- | ---: | ---: | --- | --- |']
  for (const f of figs) {
    if (f.errors.length) lines.push(`| ${f.id} | **${f.errors.length} run(s) failed**: ${f.errors[0].replace(/\|/g, '/').split('\n')[0]} | | | | |`)
    for (const what of f.failedChecks || []) lines.push(`| ${f.id} | **check failed**, ${what.replace(/\|/g, '/')} | | | | |`)
    for (const r of f.rows) {
      const spread = r.n > 1 ? `${fmt(r.min)}–${fmt(r.max)}` : r.n === 1 ? '(1 run)' : ''
      lines.push(`| ${f.id} | ${r.label} | ${fmt(r.median)} | ${spread} | ${r.target} | ${r.result} |`)
    }
  }
  return lines.join('\n')
}

/** The header lines and the table. */
function report(meta, figs, table) {
  const { addon } = meta
  const load = `load avg ${meta.loadAvgAtStart.toFixed(2)} at start, ${meta.loadAvgAtEnd !== undefined ? meta.loadAvgAtEnd.toFixed(2) : '?'} at end`
  const head = [
    `dual-mongo-sync benchmark, ${meta.mode} mode, median of ${meta.runs} run(s) [min–max]`,
    `${meta.startedAt.slice(0, 10)}; ${meta.machine.cpus} x ${meta.machine.model}; ${load}; node ${meta.node}`,
    `servers: ${meta.server ? meta.server.kind : '?'}, reporting MongoDB ${(meta.server && meta.server.version) || '?'}; retryable writes ${(meta.server && meta.server.retryWrites) || (meta.retryWrites === false ? 'off' : '?')}`,
    `addon: ${addon.build} build${addon.build === 'release' ? '' : ' (NOT representative: regenerate after `npm run build`)'}; documents ${meta.docBytes} B of BSON; ${meta.durationS} s`,
  ]
  return [head.join('\n'), '', ...figs.map((f) => `fig ${f.id}: ${f.title}`), '', table].join('\n')
}

/** `--render FILE`: the table of a saved result, with this version's rows. */
function render(file) {
  const saved = JSON.parse(fs.readFileSync(file, 'utf8'))
  const figs = Object.values(saved.figures).map((f) => {
    const def = FIGURES.find((x) => x.id === f.id)
    return { ...f, rows: def ? def.rows(f.summary, rowBuilder(f.summary), { full: saved.meta.mode === 'full' }) : f.rows }
  })
  console.log(report(saved.meta, figs, tableMarkdown(figs)))
}

// ---- main ------------------------------------------------------------------

function gitInfo() {
  const g = (args) => {
    const r = spawnSync('git', args, { cwd: ROOT, encoding: 'utf8' })
    return r.status === 0 ? r.stdout.trim() : null
  }
  return { commit: g(['rev-parse', '--short', 'HEAD']), dirty: Boolean(g(['status', '--porcelain', '--untracked-files=no'])) }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2))
  if (opts.render) return render(opts.render)
  const mode = opts.full ? 'full' : 'quick'
  const sizes = { ...SIZES[mode], ...opts.set }
  const selected = FIGURES.filter((f) => !opts.only || opts.only.includes(f.id))
  const log = (...a) => console.error(...a)
  if (typeof global.gc !== 'function') log('bench: run with node --expose-gc (npm run bench does) for comparable RSS readings')
  const addon = addonBuild()
  const cpus = os.cpus()
  const meta = {
    startedAt: new Date().toISOString(),
    mode,
    runs: opts.runs,
    figures: selected.map((f) => f.id),
    sizes,
    syncOptions: opts.sync,
    docBytes: DOC_BYTES,
    machine: { cpus: cpus.length, model: cpus[0] && cpus[0].model, memGB: Math.round(os.totalmem() / 2 ** 30), platform: `${os.platform()} ${os.release()}` },
    node: process.version,
    addon,
    git: gitInfo(),
  }
  meta.loadAvgAtStart = os.loadavg()[0]
  log(`bench: ${mode} mode, ${opts.runs} run(s) per figure, figures ${meta.figures.join(',')}, addon build: ${addon.build}`)
  if (meta.loadAvgAtStart > 0.5 * cpus.length) {
    log(`bench: WARNING the machine is busy (load average ${meta.loadAvgAtStart.toFixed(2)} on ${cpus.length} cores); figures will be off`)
  }
  if (addon.build !== 'release') log('bench: NOTE the addon is not a release build; run `npm run build` first for representative numbers')

  meta.retryWrites = opts.retryWrites
  const ctx = new Context({ log, syncOptions: opts.sync, retryWrites: opts.retryWrites, flushTimeoutMs: opts.full ? 3600000 : 600000 })
  let interrupted = false
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]]) {
    process.on(signal, () => {
      if (interrupted) process.exit(code)
      interrupted = true
      log(`bench: ${signal}; stopping the servers`)
      ctx.close().finally(() => process.exit(code))
    })
  }
  const results = {}
  const t0 = Date.now()
  try {
    await ctx.start()
    meta.server = { kind: ctx.serverKind, version: ctx.serverVersion, info: ctx.serverInfo, retryWrites: ctx.retryWritesOff ? 'off' : 'on' }
    for (const fig of selected) {
      if (interrupted) break
      const runs = []
      const errors = []
      const failedChecks = []
      for (let runIndex = 0; runIndex < opts.runs && !interrupted; runIndex++) {
        const ts = Date.now()
        log(`fig ${fig.id} run ${runIndex + 1}/${opts.runs}: ${fig.title}`)
        try {
          runs.push(await fig.run(ctx, { sizes, runIndex, results, full: opts.full }))
        } catch (e) {
          errors.push(String((e && e.stack) || e))
          log(`fig ${fig.id} run ${runIndex + 1} FAILED: ${(e && e.stack) || e}`)
        } finally {
          for (const what of await ctx.endRun()) failedChecks.push(`run ${runIndex + 1}: ${what}`)
        }
        log(`fig ${fig.id} run ${runIndex + 1}: ${((Date.now() - ts) / 1000).toFixed(1)} s`)
      }
      const summary = summarize(runs)
      results[fig.id] = { id: fig.id, title: fig.title, runs, errors, failedChecks, summary }
      results[fig.id].rows = fig.rows(summary, rowBuilder(summary), { full: opts.full })
    }
  } finally {
    await ctx.close()
  }
  // Interrupted: no table and no results file (they would hold a figure cut
  // short by the servers stopping); the signal's handler exits.
  if (interrupted) return
  meta.finishedAt = new Date().toISOString()
  meta.loadAvgAtEnd = os.loadavg()[0]
  const addonEnd = addonBuild()
  if (addonEnd.mtime !== addon.mtime) {
    meta.addonChangedDuringRun = addonEnd
    log(`bench: WARNING the addon file was replaced during the run (now a ${addonEnd.build} build); the process kept the one it loaded`)
  }
  meta.durationS = Math.round((Date.now() - t0) / 1000)

  const figs = Object.values(results)
  const table = tableMarkdown(figs)
  console.log(report(meta, figs, table))

  fs.mkdirSync(opts.out, { recursive: true })
  const out = { meta, figures: results, table }
  const file = path.join(opts.out, `${meta.startedAt.replace(/[:.]/g, '-')}.json`)
  fs.writeFileSync(file, JSON.stringify(out, null, 2))
  fs.copyFileSync(file, path.join(opts.out, 'latest.json'))
  log(`bench: wrote ${path.relative(process.cwd(), file)} and latest.json`)
  // A failed run or a failed check (Atlas does not hold what was written)
  // fails the benchmark: its speed figures say nothing then.
  const failed = figs.filter((f) => f.errors.length || f.failedChecks.length)
  if (failed.length) {
    log(`bench: FAILED: ${failed.map((f) => `fig ${f.id} (${f.errors.length} run(s) failed, ${f.failedChecks.length} check(s) failed)`).join(', ')}`)
    process.exitCode = 1
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
