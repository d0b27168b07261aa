'use strict'
// Figure 1: what the addon adds to a write. insertOne and updateOne through
// the addon (sync enabled, replicator running) against the official driver
// straight to the same local server, one at a time and 32 at a time; the
// addon with sync off, which has no journal and no replicator; and the addon
// with sync on but replication paused, which journals and does not copy.
const { makeDocs, makeUpdate } = require('../lib/doc')
const { closedLoop, cpuNow } = require('../lib/load')
const { percentile, ratio } = require('../lib/stats')

const OPS = ['insertOne', 'updateOne']
const CONC = [1, 32]
const WARMUP = 50

/**
 * Measures one (op, concurrency) pair for one implementation. `flush` runs
 * before (so an earlier backlog does not count) and after (CPU including
 * the replication of these writes).
 */
async function measure({ op, conc, n, coll, ids, flush }) {
  let fn
  if (op === 'insertOne') {
    const warm = makeDocs(WARMUP)
    for (const d of warm) await coll.insertOne(d)
    const docs = makeDocs(n)
    fn = (i) => coll.insertOne(docs[i])
  } else {
    for (let i = 0; i < WARMUP; i++) await coll.updateOne({ _id: ids[(ids.length - 1 - i) % ids.length] }, makeUpdate(i))
    const updates = Array.from({ length: n }, (_, i) => makeUpdate(i))
    fn = (i) => coll.updateOne({ _id: ids[i % ids.length] }, updates[i])
  }
  if (flush) await flush()
  const cpuStart = cpuNow()
  const r = await closedLoop(n, conc, fn)
  const out = {
    p50: percentile(r.lat, 0.5),
    p99: percentile(r.lat, 0.99),
    opsPerSec: (n / r.wallMs) * 1000,
    cpuUsPerOp: r.cpuUs / n,
  }
  if (flush) await flush()
  out.cpuUsPerOpWithRepl = (cpuNow() - cpuStart) / n
  return out
}

async function run(ctx, { sizes, runIndex }) {
  const db = ctx.dbName('wp')
  const { sync } = await ctx.openSync(db)
  const flush = () => ctx.flush(sync)
  // The addon with sync off (no journal, no replicator) separates the cost
  // of crossing into Rust from the cost of the journal and replication.
  const { sync: off } = await ctx.openSync(db, { enabled: false })
  // Sync on with replication paused (its own journal): the journal's cost
  // without the replicator's work beside it.
  const { sync: held } = await ctx.openSync(db)
  await held.pause()
  const impls = [
    { name: 'addon', ins: sync.db(db).collection('ins_addon'), upd: sync.db(db).collection('upd_addon'), flush },
    { name: 'driver', ins: ctx.local.db(db).collection('ins_driver'), upd: ctx.local.db(db).collection('upd_driver'), flush: null },
    { name: 'nosync', ins: off.db(db).collection('ins_nosync'), upd: off.db(db).collection('upd_nosync'), flush: null },
    { name: 'paused', ins: held.db(db).collection('ins_paused'), upd: held.db(db).collection('upd_paused'), flush: null },
  ]
  if (runIndex % 2 === 1) impls.reverse() // alternate who goes first
  // Documents for the updates, inserted with the driver into both collections.
  const nUpd = Math.max(sizes.seq, sizes.conc)
  const ids = {}
  for (const impl of impls) {
    const coll = ctx.local.db(db).collection(impl.upd.collectionName)
    ids[impl.name] = []
    for (let k = 0; k < nUpd; k += 1000) {
      const docs = makeDocs(Math.min(1000, nUpd - k), k)
      await coll.insertMany(docs)
      for (const d of docs) ids[impl.name].push(d._id)
    }
  }
  const m = {}
  for (const op of OPS) {
    for (const conc of CONC) {
      const n = conc === 1 ? sizes.seq : sizes.conc
      for (const impl of impls) {
        ctx.log(`  fig 1: ${op} x${conc} ${impl.name} (${n} ops)`)
        const r = await measure({
          op,
          conc,
          n,
          coll: op === 'insertOne' ? impl.ins : impl.upd,
          ids: ids[impl.name],
          flush: impl.flush,
        })
        for (const [k, v] of Object.entries(r)) m[`${op}.c${conc}.${impl.name}.${k}`] = v
      }
      const a = (k) => m[`${op}.c${conc}.addon.${k}`]
      const d = (k) => m[`${op}.c${conc}.driver.${k}`]
      m[`${op}.c${conc}.ratio.p50`] = ratio(a('p50'), d('p50'))
      m[`${op}.c${conc}.ratio.p99`] = ratio(a('p99'), d('p99'))
      m[`${op}.c${conc}.ratio.ops`] = ratio(a('opsPerSec'), d('opsPerSec'))
      m[`${op}.c${conc}.ratio.cpu`] = ratio(a('cpuUsPerOp'), d('cpuUsPerOp'))
      m[`${op}.c${conc}.nosyncRatio.p50`] = ratio(m[`${op}.c${conc}.nosync.p50`], d('p50'))
      m[`${op}.c${conc}.nosyncRatio.ops`] = ratio(m[`${op}.c${conc}.nosync.opsPerSec`], d('opsPerSec'))
      m[`${op}.c${conc}.pausedRatio.p50`] = ratio(m[`${op}.c${conc}.paused.p50`], d('p50'))
    }
  }
  return m
}

function rows(S, r) {
  const out = []
  for (const op of OPS) {
    for (const conc of CONC) {
      const p = `${op}.c${conc}`
      const label = `${op} ${conc === 1 ? 'sequential' : `x${conc} concurrent`}`
      out.push(r.ratio(`${label}: p50 ratio`, `${p}.ratio.p50`, `${p}.addon.p50`, `${p}.driver.p50`, 'ms', { le: 1.1 }))
      out.push(r.ratio(`${label}: p99 ratio`, `${p}.ratio.p99`, `${p}.addon.p99`, `${p}.driver.p99`, 'ms', { le: 1.25 }))
      out.push(
        r.ratio(`${label}: throughput ratio`, `${p}.ratio.ops`, `${p}.addon.opsPerSec`, `${p}.driver.opsPerSec`, 'ops/s', conc === 32 ? { ge: 0.9 } : null),
      )
      out.push(r.ratio(`${label}: CPU/op ratio`, `${p}.ratio.cpu`, `${p}.addon.cpuUsPerOp`, `${p}.driver.cpuUsPerOp`, 'µs', null))
      out.push(r.value(`${label}: addon CPU/op incl. its replication`, `${p}.addon.cpuUsPerOpWithRepl`, 'µs'))
      out.push(r.value(`${label}: CPU/op, addon with sync off`, `${p}.nosync.cpuUsPerOp`, 'µs'))
      out.push(r.ratio(`${label}: p50 ratio, addon with sync off`, `${p}.nosyncRatio.p50`, `${p}.nosync.p50`, `${p}.driver.p50`, 'ms', null, ['sync off', 'driver']))
      out.push(r.ratio(`${label}: p50 ratio, addon with replication paused`, `${p}.pausedRatio.p50`, `${p}.paused.p50`, `${p}.driver.p50`, 'ms', null, ['paused', 'driver']))
      if (conc === 32) {
        out.push(r.ratio(`${label}: throughput ratio, addon with sync off`, `${p}.nosyncRatio.ops`, `${p}.nosync.opsPerSec`, `${p}.driver.opsPerSec`, 'ops/s', null, ['sync off', 'driver']))
      }
    }
  }
  return out
}

module.exports = {
  id: 1,
  title: 'Write-path cost: addon (sync enabled) vs official driver, same local server',
  run,
  rows,
}
