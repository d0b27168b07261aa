'use strict'
// Figure 3: replication lag under a steady load. insertOne through the addon
// on a fixed schedule (open loop) at 100 writes/s and at half the sustained
// rate of figure 2 (its insertOne x32 writers). Two measures:
// - external (the one the targets use): a poller reads Atlas with the
//   official driver for a sample of the written _ids; lag = when the poll
//   that found the document returned - when the local insertOne resolved.
//   An upper bound: it includes up to one poll round trip.
// - internal: sync.metrics().lagMs, journal record (just before the local
//   write) to Atlas acknowledgement, over the engine's recent samples.
const { makeDocs } = require('../lib/doc')
const { openLoop, now, sleep } = require('../lib/load')
const { percentile, median } = require('../lib/stats')
const { replicate } = require('./replication')

/** Samples per second the poller follows at most (it costs Atlas reads). */
const SAMPLES_PER_SEC = 50

async function phase(ctx, { rate, seconds, tag }) {
  const db = ctx.dbName(tag)
  // Create the collections first, so no write pays for it.
  await ctx.local.db(db).createCollection('lag')
  await ctx.atlas.db(db).createCollection('lag')
  const { sync } = await ctx.openSync(db)
  const coll = sync.db(db).collection('lag')
  const atlasColl = ctx.atlas.db(db).collection('lag')
  const n = Math.max(1, Math.round(rate * seconds))
  const every = Math.max(1, Math.round(rate / SAMPLES_PER_SEC))
  const docs = makeDocs(n)
  const pending = new Map() // hex id -> { id, resolvedAt }
  const lags = []
  const polls = []
  let writing = true
  let deadline = Infinity
  const poller = (async () => {
    while (writing || (pending.size > 0 && now() < deadline)) {
      if (pending.size === 0) {
        await sleep(1)
        continue
      }
      const ids = []
      for (const p of pending.values()) {
        ids.push(p.id)
        if (ids.length === 500) break
      }
      const t0 = now()
      const found = await atlasColl.find({ _id: { $in: ids } }, { projection: { _id: 1 } }).toArray()
      const t = now()
      polls.push(t - t0)
      for (const f of found) {
        const key = f._id.toHexString()
        const p = pending.get(key)
        if (!p) continue
        lags.push(Math.max(0, t - p.resolvedAt))
        pending.delete(key)
      }
    }
  })()
  const r = await openLoop(n, rate, async (i) => {
    await coll.insertOne(docs[i])
    if (i % every === 0) pending.set(docs[i]._id.toHexString(), { id: docs[i]._id, resolvedAt: now() })
  })
  const sampled = Math.ceil(n / every)
  await ctx.flush(sync)
  deadline = now() + 10000
  writing = false
  await poller
  const onAtlas = await atlasColl.estimatedDocumentCount()
  ctx.check(onAtlas === n, `fig 3 at ${rate} writes/s: Atlas holds ${onAtlas} of ${n} documents after flush`)
  const metrics = await sync.metrics()
  await sync.close({ timeoutMs: 5000 })
  return {
    rate,
    achievedRate: (n / r.wallMs) * 1000,
    writeP50: percentile(r.lat, 0.5),
    writeP99: percentile(r.lat, 0.99),
    extP50: percentile(lags, 0.5),
    extP99: percentile(lags, 0.99),
    extMax: percentile(lags, 1),
    samples: lags.length,
    missing: sampled - lags.length,
    pollMs: median(polls),
    metricsP50: metrics.lagMs.p50,
    metricsP99: metrics.lagMs.p99,
  }
}

async function run(ctx, { sizes, results }) {
  // Half the sustained rate of figure 2's insertOne writers (this run's
  // figure 2 median, else one quick measurement made here once).
  let sustained = results[2] && results[2].summary['one.replRate'] && results[2].summary['one.replRate'].median
  if (!sustained) {
    if (!ctx.shared.sustainedOne) {
      ctx.log(`  fig 3: figure 2 not run; measuring the sustained insertOne x32 rate once (${sizes.replOne} docs)`)
      ctx.shared.sustainedOne = (await replicate(ctx, { n: sizes.replOne, mode: 'one', tag: 'lagcal' })).replRate
    }
    sustained = ctx.shared.sustainedOne
  }
  const m = {}
  for (const [key, rate] of [
    ['r100', 100],
    ['half', Math.max(1, Math.round(sustained / 2))],
  ]) {
    ctx.log(`  fig 3: ${rate} writes/s for ${sizes.lagSeconds} s`)
    const r = await phase(ctx, { rate, seconds: sizes.lagSeconds, tag: `lag${key}` })
    for (const [k, v] of Object.entries(r)) m[`${key}.${k}`] = v
    ctx.check(r.missing === 0, `fig 3 at ${rate} writes/s: ${r.missing} sampled ids not seen on Atlas within 10 s of the flush`)
  }
  return m
}

function rows(S, r) {
  const out = []
  for (const [key, name, p99] of [
    ['r100', '100 writes/s', 50],
    ['half', '50% of sustained rate', 250],
  ]) {
    const rate = S[`${key}.rate`] ? Math.round(S[`${key}.rate`].median) : '?'
    out.push(r.value(`${name}: achieved rate (asked ${rate}/s)`, `${key}.achievedRate`, 'writes/s'))
    out.push(r.value(`${name}: lag p50, external poll`, `${key}.extP50`, 'ms'))
    out.push(r.value(`${name}: lag p99, external poll`, `${key}.extP99`, 'ms', { le: p99 }))
    out.push(r.value(`${name}: lag p50, metrics().lagMs`, `${key}.metricsP50`, 'ms'))
    out.push(r.value(`${name}: lag p99, metrics().lagMs`, `${key}.metricsP99`, 'ms'))
    out.push(r.value(`${name}: poll round trip (resolution)`, `${key}.pollMs`, 'ms'))
    out.push(r.value(`${name}: insertOne p50 while paced`, `${key}.writeP50`, 'ms'))
  }
  return out
}

module.exports = { id: 3, title: 'Replication lag under a steady write rate', run, rows }
