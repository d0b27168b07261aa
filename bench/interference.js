#!/usr/bin/env node
'use strict'
// `npm run bench:interference [-- --rounds N]`
//
// Why figure 1's sequential updateOne p99 moves when replication runs: the
// official driver's sequential updateOne, alone and while a separate
// process does what the replicator does during that figure (every 6 ms,
// read 12 documents back from local with one `_id $in` find, and/or write
// them to Atlas as one `update` of 12 replace-upserts), next to the addon
// itself with replication on and paused. On one 2-core machine the Atlas
// test server's work competes with the local write path; against a real
// Atlas it runs on another machine. Rounds interleave every variant; the
// table shows medians over rounds. Numbers go to
// bench-results/interference-latest.json.
const fs = require('node:fs')
const path = require('node:path')
const { fork } = require('node:child_process')
const { MongoClient } = require('mongodb')
const { makeDocs, makeUpdate } = require('./lib/doc')
const { percentile, median } = require('./lib/stats')

const BATCH = 12
const PERIOD_MS = 6

if (process.argv[2] === '--load') {
  loadProcess(...process.argv.slice(3)).catch((e) => {
    console.error(e)
    process.exit(1)
  })
} else {
  main().catch((e) => {
    console.error(e)
    process.exit(1)
  })
}

/** The background load, in its own process: `what` is find, upsert or both. */
async function loadProcess(what, localUri, atlasUri, db, n) {
  const local = await MongoClient.connect(localUri)
  const atlas = await MongoClient.connect(atlasUri)
  const docs = makeDocs(Number(n))
  process.send('ready')
  for (let k = 0; ; k = (k + BATCH) % (docs.length - BATCH)) {
    const batch = docs.slice(k, k + BATCH)
    const t = performance.now()
    if (what !== 'upsert') {
      await local.db(db).collection('source').find({ _id: { $in: batch.map((d) => d._id) } }).toArray()
    }
    if (what !== 'find') {
      const updates = batch.map((d) => ({ q: { _id: d._id }, u: d, upsert: true }))
      await atlas.db(db).command({ update: 'copy', updates, ordered: false })
    }
    const left = PERIOD_MS - (performance.now() - t)
    if (left > 0) await new Promise((r) => setTimeout(r, left))
  }
}

async function main() {
  const { Context } = require('./lib/context')
  const arg = (name, dflt) => {
    const i = process.argv.indexOf(name)
    return i > 0 ? Number(process.argv[i + 1]) : dflt
  }
  const rounds = arg('--rounds', 5)
  const n = arg('--n', 2000)
  const ctx = new Context({ log: (s) => console.error(s), flushTimeoutMs: 120000 })
  await ctx.start()
  try {
    const db = ctx.dbName('interference')
    const docs = makeDocs(n)
    await ctx.local.db(db).collection('source').insertMany(docs)
    const { sync } = await ctx.openSync(db)
    const { sync: held } = await ctx.openSync(db)
    await held.pause()
    const variants = [
      { name: 'driver', coll: ctx.local.db(db).collection('driver') },
      { name: 'driver + local reads', coll: ctx.local.db(db).collection('driver_f'), load: 'find' },
      { name: 'driver + Atlas replace-upserts', coll: ctx.local.db(db).collection('driver_u'), load: 'upsert' },
      { name: 'driver + both', coll: ctx.local.db(db).collection('driver_b'), load: 'both' },
      { name: 'addon, replication on', coll: sync.db(db).collection('addon'), sync },
      { name: 'addon, replication paused', coll: held.db(db).collection('paused') },
    ]
    for (const v of variants) await ctx.local.db(db).collection(v.coll.collectionName).insertMany(docs)
    const res = Object.fromEntries(variants.map((v) => [v.name, { p50: [], p99: [], perBatch: [] }]))
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 ? [...variants].reverse() : variants
      for (const v of order) {
        ctx.log(`interference: round ${r + 1}/${rounds}, ${v.name}`)
        let child = null
        if (v.load) {
          child = fork(__filename, ['--load', v.load, ctx.localUri, ctx.atlasUri, db, String(n)])
          await new Promise((ok) => child.once('message', ok))
        }
        if (v.sync) await ctx.flush(v.sync)
        const m0 = v.sync ? await v.sync.metrics() : null
        const lat = []
        for (let i = 0; i < n; i++) {
          const t = performance.now()
          await v.coll.updateOne({ _id: docs[i]._id }, makeUpdate(i + r * n))
          lat.push(performance.now() - t)
        }
        if (child) child.kill()
        const e = res[v.name]
        e.p50.push(percentile(lat, 0.5))
        e.p99.push(percentile(lat, 0.99))
        if (v.sync) {
          await ctx.flush(v.sync)
          const m1 = await v.sync.metrics()
          e.perBatch.push((m1.synced - m0.synced) / Math.max(1, m1.batches - m0.batches))
        }
      }
    }
    const base = median(res.driver.p99)
    const rows = Object.entries(res).map(([name, e]) => ({
      name,
      p50Ms: median(e.p50),
      p99Ms: median(e.p99),
      p99VsDriver: median(e.p99) / base,
      p99Runs: e.p99,
      docsPerBatch: e.perBatch.length ? median(e.perBatch) : null,
    }))
    console.log(`sequential updateOne, ${n} calls per variant, ${rounds} interleaved rounds, ${ctx.serverKind}`)
    console.log(`background load: ${BATCH} documents every ${PERIOD_MS} ms, from another process`)
    console.log('| variant | p50 ms | p99 ms | p99 / driver alone | p99 per round |')
    console.log('| --- | ---: | ---: | ---: | --- |')
    for (const x of rows) {
      const extra = x.docsPerBatch ? ` (replicated ${x.docsPerBatch.toFixed(1)} docs per batch)` : ''
      console.log(
        `| ${x.name}${extra} | ${x.p50Ms.toFixed(3)} | ${x.p99Ms.toFixed(2)} | ${x.p99VsDriver.toFixed(2)} | ${x.p99Runs.map((v) => v.toFixed(2)).join(', ')} |`,
      )
    }
    const out = path.join(__dirname, '..', 'bench-results')
    fs.mkdirSync(out, { recursive: true })
    const meta = { date: new Date().toISOString(), server: ctx.serverKind, n, rounds, batch: BATCH, periodMs: PERIOD_MS }
    fs.writeFileSync(path.join(out, 'interference-latest.json'), JSON.stringify({ meta, rows }, null, 2))
  } finally {
    await ctx.close()
  }
}
