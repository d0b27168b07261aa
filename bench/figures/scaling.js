'use strict'
// Figure 6: figures 1 and 2 again for several `workers` x `batchSize`
// settings, to choose the defaults from data. For each setting:
// - write path: insertOne x32 through the addon vs the driver (the driver
//   baseline is measured once per run);
// - replication: figure 2's insertMany(100) x8 writers, first write .. flush;
// - drain: a paused backlog of the same size, resume() .. flush, which is
//   the replicator's own capacity (the writers above may be the limit).
const { makeDocs } = require('../lib/doc')
const { closedLoop, now } = require('../lib/load')
const { percentile, ratio } = require('../lib/stats')
const { replicate } = require('./replication')

/** quick: one factor at a time around the default (4, 500); full: the 3x3 grid. */
function grid(full) {
  if (full) return [1, 2, 4].flatMap((workers) => [100, 500, 1000].map((batchSize) => ({ workers, batchSize })))
  return [
    { workers: 1, batchSize: 500 },
    { workers: 2, batchSize: 500 },
    { workers: 4, batchSize: 500 },
    { workers: 4, batchSize: 100 },
    { workers: 4, batchSize: 1000 },
  ]
}

const key = ({ workers, batchSize }) => `w${workers}b${batchSize}`

async function insertX32(coll, n) {
  const warm = makeDocs(50)
  for (const d of warm) await coll.insertOne(d)
  const docs = makeDocs(n)
  const r = await closedLoop(n, 32, (i) => coll.insertOne(docs[i]))
  return { p50: percentile(r.lat, 0.5), p99: percentile(r.lat, 0.99), opsPerSec: (n / r.wallMs) * 1000 }
}

async function run(ctx, { sizes, full, results, runIndex }) {
  const m = {}
  const baseDb = ctx.dbName('scalebase')
  ctx.log(`  fig 6: driver baseline insertOne x32 (${sizes.scaleOps} ops)`)
  const base = await insertX32(ctx.local.db(baseDb).collection('driver'), sizes.scaleOps)
  let raw = results[2] && results[2].summary.rawAtlasRate && results[2].summary.rawAtlasRate.median
  if (!raw) {
    if (!ctx.shared.rawAtlasRate) ctx.shared.rawAtlasRate = await ctx.rawAtlasInsertRate(sizes.raw)
    raw = ctx.shared.rawAtlasRate
  }
  const configs = grid(full)
  if (runIndex % 2 === 1) configs.reverse()
  for (const cfg of configs) {
    const k = key(cfg)
    ctx.log(`  fig 6: workers=${cfg.workers} batchSize=${cfg.batchSize}`)
    const db = ctx.dbName(`scale${k}`)
    const { sync } = await ctx.openSync(db, cfg)
    const w = await insertX32(sync.db(db).collection('ins'), sizes.scaleOps)
    await ctx.flush(sync)
    m[`${k}.p50ratio`] = ratio(w.p50, base.p50)
    m[`${k}.p99ratio`] = ratio(w.p99, base.p99)
    m[`${k}.opsRatio`] = ratio(w.opsPerSec, base.opsPerSec)
    // drain of a paused backlog
    const coll = sync.db(db).collection('drain')
    sync.pause()
    for (let j = 0; j < sizes.scaleDocs; j += 1000) await coll.insertMany(makeDocs(Math.min(1000, sizes.scaleDocs - j), j))
    const t = now()
    sync.resume()
    await ctx.flush(sync)
    m[`${k}.drainRate`] = (sizes.scaleDocs / (now() - t)) * 1000
    await ctx.checkVerify(sync, ['ins', 'drain'], `fig 6 workers=${cfg.workers} batchSize=${cfg.batchSize}: insertOne x32 and the drained backlog`)
    await sync.close({ timeoutMs: 5000 })
    const r = await replicate(ctx, { n: sizes.scaleDocs, mode: 'many', syncExtra: cfg, tag: `scalerepl${k}` })
    m[`${k}.replRate`] = r.replRate
    m[`${k}.replRatio`] = ratio(r.replRate, raw)
  }
  return m
}

function rows(S, r, { full }) {
  const out = []
  for (const cfg of grid(full)) {
    const k = key(cfg)
    const name = `workers ${cfg.workers}, batch ${cfg.batchSize}`
    out.push(r.plain(`${name}: insertOne x32 p50 ratio`, `${k}.p50ratio`, { le: 1.1 }))
    out.push(r.plain(`${name}: insertOne x32 p99 ratio`, `${k}.p99ratio`, { le: 1.25 }))
    out.push(r.plain(`${name}: insertOne x32 throughput ratio`, `${k}.opsRatio`, { ge: 0.9 }))
    out.push(r.value(`${name}: replicated, insertMany(100) x8 writers`, `${k}.replRate`, 'docs/s'))
    out.push(r.plain(`${name}: replication / raw Atlas ratio`, `${k}.replRatio`, { ge: 0.8 }))
    out.push(r.value(`${name}: drain of a paused backlog`, `${k}.drainRate`, 'docs/s'))
  }
  return out
}

module.exports = { id: 6, title: 'Scaling: workers x batchSize (figures 1-2 per setting, plus drain)', run, rows }
