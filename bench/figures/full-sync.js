'use strict'
// Figure 5: full sync and verify of N documents that were inserted straight
// into local with the official driver (so nothing is journaled). Rates:
// sync.fullSync() + flush, and sync.verify() of the then identical
// collections, against the same servers' raw rates: insertMany(1000) of the
// same documents into Atlas, and a streamed find() over the local collection.
const { makeDocs } = require('../lib/doc')
const { now } = require('../lib/load')
const { ratio } = require('../lib/stats')

async function run(ctx, { sizes }) {
  const n = sizes.fullSync
  const db = ctx.dbName('full')
  const rawDb = ctx.dbName('fullraw')
  const local = ctx.local.db(db).collection('fs')
  const rawAtlas = ctx.atlas.db(rawDb).collection('fs')
  await rawAtlas.insertOne({ warm: true })
  await rawAtlas.deleteOne({ warm: true })
  // The same documents into local (setup) and into Atlas (the raw rate), batch by batch.
  let localMs = 0
  let atlasMs = 0
  let lastLog = now()
  for (let k = 0; k < n; k += 1000) {
    const docs = makeDocs(Math.min(1000, n - k), k)
    let t = now()
    await local.insertMany(docs)
    localMs += now() - t
    t = now()
    await rawAtlas.insertMany(docs)
    atlasMs += now() - t
    if (now() - lastLog > 10000) {
      lastLog = now()
      ctx.log(`  fig 5: inserted ${k + 1000}/${n} into local and raw Atlas`)
    }
  }
  ctx.log(`  fig 5: raw scan of ${n} local docs`)
  let t = now()
  let scanned = 0
  for await (const _ of local.find({})) scanned++ // eslint-disable-line no-unused-vars
  const scanMs = now() - t

  const { sync } = await ctx.openSync(db)
  ctx.log(`  fig 5: fullSync of ${n} docs`)
  t = now()
  const status = await sync.fullSync({ collections: ['fs'] })
  await ctx.flush(sync)
  const fullMs = now() - t
  ctx.log(`  fig 5: verify`)
  t = now()
  const report = await sync.verify({ collections: ['fs'] })
  const verifyMs = now() - t
  await sync.close({ timeoutMs: 5000 })
  ctx.checkReport(report, 'fig 5: after fullSync')
  const m = {
    n,
    rawLocalInsertRate: (n / localMs) * 1000,
    rawAtlasInsertRate: (n / atlasMs) * 1000,
    rawScanRate: (scanned / scanMs) * 1000,
    fullSyncRate: (n / fullMs) * 1000,
    fullSyncDocsDone: status.documentsDone,
    verifyRate: (n / verifyMs) * 1000,
    verifyOk: report.ok ? 1 : 0,
  }
  m.fullSyncRatio = ratio(m.fullSyncRate, m.rawAtlasInsertRate)
  m.verifyRatio = ratio(m.verifyRate, m.rawScanRate)
  return m
}

function rows(S, r) {
  const n = S.n ? S.n.median : '?'
  return [
    r.value(`raw Atlas insertMany(1000) of the same ${n} docs`, 'rawAtlasInsertRate', 'docs/s'),
    r.value('raw local scan, find() streamed', 'rawScanRate', 'docs/s'),
    r.value('fullSync() + flush', 'fullSyncRate', 'docs/s'),
    r.plain('fullSync / raw Atlas insertMany ratio', 'fullSyncRatio', { ge: 0.8 }),
    r.value('verify() (reads both servers)', 'verifyRate', 'docs/s'),
    r.plain('verify / raw local scan ratio', 'verifyRatio', { ge: 0.8 }),
  ]
}

module.exports = { id: 5, title: 'Full sync and verify vs raw bulk insert and raw scan', run, rows }
