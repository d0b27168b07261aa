'use strict'
// Figure 4: a backlog. Replication is paused (sync.pause(), standing in for
// Atlas being down) while N document inserts are captured; then Node's RSS
// growth and the journal's bytes per pending change are read, replication
// resumes, and the drain rate (N / time until flush resolves) is compared
// with the raw Atlas bulk rate of figure 2.
//
// The capture and drain run in a child Node process (backlog-child.js) that
// does nothing else, so its RSS is not blurred by the other figures' heaps.
const path = require('node:path')
const { spawn } = require('node:child_process')
const { ratio } = require('../lib/stats')
const { withDb } = require('../lib/context')

const BATCH = 1000

function runChild(args, log) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', path.join(__dirname, 'backlog-child.js'), JSON.stringify(args)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => {
      for (const line of String(d).split('\n')) if (line.trim()) log(`  fig 4: ${line}`)
    })
    child.on('error', reject)
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`backlog child exited with code ${code}`))
      try {
        resolve(JSON.parse(out.trim().split('\n').pop()))
      } catch (e) {
        reject(new Error(`backlog child printed no result: ${e.message}`))
      }
    })
  })
}

async function run(ctx, { sizes, results }) {
  const n = sizes.backlog
  const db = ctx.dbName('backlog')
  await ctx.local.db(db).createCollection('backlog')
  await ctx.atlas.db(db).createCollection('backlog')
  const r = await runChild(
    {
      n,
      batch: BATCH,
      localUri: withDb(ctx.localUri, db),
      atlasUri: ctx.atlasUri,
      dataDir: ctx.dataDir(),
      syncOptions: ctx.syncOptions,
      flushTimeoutMs: ctx.flushTimeoutMs,
    },
    ctx.log,
  )
  const onAtlas = await ctx.atlas.db(db).collection('backlog').estimatedDocumentCount()
  ctx.check(onAtlas === n, `fig 4: Atlas holds ${onAtlas} of ${n} documents after the drain`)
  let raw = results[2] && results[2].summary.rawAtlasRate && results[2].summary.rawAtlasRate.median
  if (!raw) {
    if (!ctx.shared.rawAtlasRate) {
      ctx.log(`  fig 4: figure 2 not run; measuring the raw Atlas insertMany rate once (${sizes.raw} docs)`)
      ctx.shared.rawAtlasRate = await ctx.rawAtlasInsertRate(sizes.raw)
    }
    raw = ctx.shared.rawAtlasRate
  }
  return { ...r, rawAtlasRate: raw, drainRatio: ratio(r.drainRate, raw), countOk: onAtlas === n ? 1 : 0 }
}

function rows(S, r) {
  const n = S.n ? S.n.median : 0
  const full = n >= 1e6
  return [
    r.value(`capture rate while paused (insertMany of ${BATCH}, addon)`, 'captureRate', 'docs/s'),
    r.value(`Node RSS growth after ${n} ops (after GC)`, 'rssGrowthMB', 'MB', full ? { le: 100 } : null),
    r.value('  of which anonymous memory (heaps: V8, malloc)', 'rssAnonGrowthMB', 'MB'),
    r.value('  of which file-backed pages (mapped files)', 'rssFileGrowthMB', 'MB'),
    r.value('  V8 heapUsed growth', 'heapUsedGrowthMB', 'MB'),
    r.value('Node RSS growth, peak during capture', 'rssPeakGrowthMB', 'MB'),
    ...(full ? [] : [r.value('Node RSS growth projected to 1M ops (2nd-half median slope)', 'rssGrowth1M', 'MB', { le: 100 })]),
    r.value('Node RSS growth after the drain (after GC)', 'rssAfterDrainGrowthMB', 'MB'),
    r.value('journal bytes per pending op (SYNC_DATA_DIR files)', 'journalBytesPerOp', 'B'),
    r.value('drain rate after resume() (until flush resolves)', 'drainRate', 'docs/s'),
    r.plain('drain / raw Atlas insertMany ratio', 'drainRatio', null),
  ]
}

module.exports = { id: 4, title: 'Backlog while replication is paused, then the drain', run, rows }
