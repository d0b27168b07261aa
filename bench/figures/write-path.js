'use strict'
// Figure 1: what the addon adds to a write. insertOne and updateOne through
// the addon (sync enabled, replicator running) against the official driver
// straight to the same local server, one at a time and 32 at a time; the
// addon with sync off, which has no journal and no replicator; and the addon
// with sync on but replication paused, which journals and does not copy;
// and, for reference, the driver with each write forwarded to Atlas by the
// driver (bench/lib/forward.js): the Atlas work of a copy, without the
// addon's capture, journal or read-back.
const { makeDocs, makeUpdate } = require('../lib/doc')
const { Forwarder } = require('../lib/forward')
const { closedLoop, cpuNow } = require('../lib/load')
const { percentile, ratio } = require('../lib/stats')

const OPS = ['insertOne', 'updateOne']
const CONC = [1, 32]
const WARMUP = 50
/** Slices each measurement is cut into, interleaved across implementations. */
const CHUNKS = 4
/**
 * Untimed calls each implementation makes right before each of its timed
 * slices. After another implementation's slice the machine takes a while to
 * settle into this one's pattern (which threads run, where the scheduler
 * puts them): measured over slices of 250 sequential updates, the first 100
 * calls after a slice of the other kind ran 10-40 % slower and the rest
 * kept drifting down (BENCHMARKS.md, session 15). Without these, short
 * slices measure each implementation half-way out of the previous one.
 */
const SLICE_WARMUP = 300

/**
 * The calls one implementation makes: `timed(i)` for operation i of (op),
 * `warm(j)` for the j-th untimed call before a slice (its own documents,
 * for inserts), after a first warm-up.
 */
async function prepare({ op, n, coll, ids }) {
  if (op === 'insertOne') {
    const warm = makeDocs(WARMUP)
    for (const d of warm) await coll.insertOne(d)
    const docs = makeDocs(n)
    const spare = makeDocs(CHUNKS * SLICE_WARMUP)
    return { timed: (i) => coll.insertOne(docs[i]), warm: (j) => coll.insertOne(spare[j]) }
  }
  const other = (j) => ({ _id: ids[(ids.length - 1 - j) % ids.length] })
  for (let i = 0; i < WARMUP; i++) await coll.updateOne(other(i), makeUpdate(i))
  const updates = Array.from({ length: n }, (_, i) => makeUpdate(i))
  const spare = Array.from({ length: CHUNKS * SLICE_WARMUP }, (_, j) => makeUpdate(j))
  return {
    timed: (i) => coll.updateOne({ _id: ids[i % ids.length] }, updates[i]),
    warm: (j) => coll.updateOne(other(j), spare[j]),
  }
}

/**
 * Measures one (op, concurrency) pair for every implementation, in CHUNKS
 * interleaved slices (the order alternating), so that a machine whose speed
 * drifts over seconds slows each of them alike; each slice follows
 * SLICE_WARMUP untimed calls of its own implementation. For the addon,
 * `flush` runs before those (an earlier backlog does not count) and after
 * the slice (CPU including the replication of its writes).
 */
async function measureAll({ op, conc, n, impls, ids, log }) {
  const fns = []
  for (const impl of impls) {
    fns.push(await prepare({ op, n, coll: op === 'insertOne' ? impl.ins : impl.upd, ids: ids[impl.name] }))
  }
  const acc = impls.map(() => ({ lat: [], wallMs: 0, cpuUs: 0, cpuWithRepl: 0 }))
  const per = Math.ceil(n / CHUNKS)
  for (let c = 0; c < CHUNKS; c++) {
    const from = c * per
    const count = Math.min(per, n - from)
    const order = impls.map((_, k) => k)
    if (c % 2 === 1) order.reverse()
    for (const k of order) {
      const { flush, name } = impls[k]
      if (c === 0) log(`  fig 1: ${op} x${conc} ${name} (${n} ops in ${CHUNKS} slices)`)
      if (flush) await flush()
      // The addon's replicator keeps copying the last of these during the
      // slice, as it would in a steady run.
      await closedLoop(SLICE_WARMUP, conc, (j) => fns[k].warm(c * SLICE_WARMUP + j))
      const cpuStart = cpuNow()
      const r = await closedLoop(count, conc, (i) => fns[k].timed(from + i))
      if (flush) await flush()
      const a = acc[k]
      for (const x of r.lat) a.lat.push(x)
      a.wallMs += r.wallMs
      a.cpuUs += r.cpuUs
      a.cpuWithRepl += cpuNow() - cpuStart
    }
  }
  return acc.map((a) => ({
    p50: percentile(a.lat, 0.5),
    p99: percentile(a.lat, 0.99),
    opsPerSec: (n / a.wallMs) * 1000,
    cpuUsPerOp: a.cpuUs / n,
    cpuUsPerOpWithRepl: a.cpuWithRepl / n,
  }))
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
  // The driver with every write sent on to Atlas after it resolved, in the
  // replicator's batching window (5 ms): inserts by insertMany, updates as
  // the same update operators in one ordered bulkWrite (cheaper for Atlas
  // than the addon's replace of the whole document, and not safe to retry).
  const fwdIns = ctx.atlas.db(db).collection('ins_fwd')
  const fwdUpd = ctx.atlas.db(db).collection('upd_fwd')
  const insFwd = new Forwarder((docs) => fwdIns.insertMany(docs), { lingerMs: 5 })
  const updFwd = new Forwarder(
    (ops) => fwdUpd.bulkWrite(ops.map(([filter, update]) => ({ updateOne: { filter, update } }))),
    { lingerMs: 5 },
  )
  const fwdLocal = (name) => ctx.local.db(db).collection(name)
  const forwarded = {
    name: 'forwarded',
    ins: {
      insertOne: async (doc) => {
        const r = await fwdLocal('ins_fwd').insertOne(doc)
        insFwd.push(doc)
        return r
      },
    },
    upd: {
      collectionName: 'upd_fwd',
      updateOne: async (filter, update) => {
        const r = await fwdLocal('upd_fwd').updateOne(filter, update)
        updFwd.push([filter, update])
        return r
      },
    },
    flush: async () => {
      await insFwd.idle()
      await updFwd.idle()
    },
  }
  const impls = [
    { name: 'addon', ins: sync.db(db).collection('ins_addon'), upd: sync.db(db).collection('upd_addon'), flush },
    { name: 'driver', ins: ctx.local.db(db).collection('ins_driver'), upd: ctx.local.db(db).collection('upd_driver'), flush: null },
    { name: 'nosync', ins: off.db(db).collection('ins_nosync'), upd: off.db(db).collection('upd_nosync'), flush: null },
    { name: 'paused', ins: held.db(db).collection('ins_paused'), upd: held.db(db).collection('upd_paused'), flush: null },
    forwarded,
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
      if (impl === forwarded) await fwdUpd.insertMany(docs.map((d) => ({ ...d })))
      for (const d of docs) ids[impl.name].push(d._id)
    }
  }
  const m = {}
  for (const op of OPS) {
    for (const conc of CONC) {
      const n = conc === 1 ? sizes.seq : sizes.conc
      const res = await measureAll({ op, conc, n, impls, ids, log: ctx.log })
      impls.forEach((impl, k) => {
        for (const [key, v] of Object.entries(res[k])) m[`${op}.c${conc}.${impl.name}.${key}`] = v
      })
      const a = (k) => m[`${op}.c${conc}.addon.${k}`]
      const d = (k) => m[`${op}.c${conc}.driver.${k}`]
      m[`${op}.c${conc}.ratio.p50`] = ratio(a('p50'), d('p50'))
      m[`${op}.c${conc}.ratio.p99`] = ratio(a('p99'), d('p99'))
      m[`${op}.c${conc}.ratio.ops`] = ratio(a('opsPerSec'), d('opsPerSec'))
      m[`${op}.c${conc}.ratio.cpu`] = ratio(a('cpuUsPerOp'), d('cpuUsPerOp'))
      m[`${op}.c${conc}.nosyncRatio.p50`] = ratio(m[`${op}.c${conc}.nosync.p50`], d('p50'))
      m[`${op}.c${conc}.nosyncRatio.ops`] = ratio(m[`${op}.c${conc}.nosync.opsPerSec`], d('opsPerSec'))
      m[`${op}.c${conc}.pausedRatio.p50`] = ratio(m[`${op}.c${conc}.paused.p50`], d('p50'))
      m[`${op}.c${conc}.forwardedRatio.p50`] = ratio(m[`${op}.c${conc}.forwarded.p50`], d('p50'))
      m[`${op}.c${conc}.forwardedRatio.p99`] = ratio(m[`${op}.c${conc}.forwarded.p99`], d('p99'))
    }
  }
  // Every slice ended with a flush; Atlas must now hold exactly what the
  // addon's collections hold locally (every update document was updated
  // through the addon at least once: the concurrent run covers all ids).
  await flush()
  await ctx.checkVerify(sync, ['ins_addon', 'upd_addon'], 'fig 1: the addon\'s collections after flush')
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
      out.push(r.ratio(`${label}: p50 ratio, driver with each write forwarded to Atlas (reference)`, `${p}.forwardedRatio.p50`, `${p}.forwarded.p50`, `${p}.driver.p50`, 'ms', null, ['forwarded', 'driver']))
      out.push(r.ratio(`${label}: p99 ratio, driver with each write forwarded to Atlas (reference)`, `${p}.forwardedRatio.p99`, `${p}.forwarded.p99`, `${p}.driver.p99`, 'ms', null, ['forwarded', 'driver']))
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
