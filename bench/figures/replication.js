'use strict'
// Figure 2: sustained replication throughput. Writers push documents
// through the addon as fast as the local server takes them; the rate is
// documents / (first write started .. sync.flush() resolved), i.e. the rate
// at which they were all on Atlas. Compared with the Atlas server's own
// bulk rate: the same documents, official driver, insertMany of 1000.
const { makeDocs } = require('../lib/doc')
const { closedLoop, now } = require('../lib/load')
const { ratio } = require('../lib/stats')
const { Forwarder } = require('../lib/forward')

/** The two writer shapes: single inserts, 32 in flight; insertMany of 100, 8 in flight. */
const MODES = {
  one: { label: 'insertOne x32', batch: 1, conc: 32 },
  many: { label: 'insertMany(100) x8', batch: 100, conc: 8 },
}

/**
 * Writes `n` documents through a fresh addon instance with the given writer
 * mode and waits for Atlas. Returns docs/s figures and a count check.
 */
async function replicate(ctx, { n, mode, syncExtra = {}, tag = 'repl' }) {
  const { batch, conc } = MODES[mode]
  const db = ctx.dbName(tag)
  const { sync } = await ctx.openSync(db, syncExtra)
  const coll = sync.db(db).collection('repl')
  // Warm up (collection creation on both sides, connection pools), then start clean.
  await coll.insertMany(makeDocs(100, -100))
  await ctx.flush(sync)
  const calls = Math.ceil(n / batch)
  const docs = makeDocs(n)
  const t0 = now()
  const w = await closedLoop(calls, conc, (i) =>
    batch === 1 ? coll.insertOne(docs[i]) : coll.insertMany(docs.slice(i * batch, Math.min(n, (i + 1) * batch))),
  )
  const tWritten = now()
  await ctx.flush(sync)
  const t1 = now()
  const onAtlas = await ctx.atlas.db(db).collection('repl').estimatedDocumentCount()
  const what = `${n} documents by ${MODES[mode].label} writers (${tag})`
  ctx.check(onAtlas === n + 100, `${what}: Atlas holds ${onAtlas} of ${n + 100} documents after flush`)
  await ctx.checkVerify(sync, ['repl'], what)
  const metrics = await sync.metrics()
  await sync.close({ timeoutMs: 5000 })
  return {
    replRate: (n / (t1 - t0)) * 1000,
    writeRate: (n / w.wallMs) * 1000,
    catchUpMs: t1 - tWritten,
    countOk: onAtlas === n + 100 ? 1 : 0,
    retried: metrics.retried,
    deadLettered: metrics.deadLettered,
  }
}

/**
 * The same writers with the official driver straight to local (no addon, no
 * replication): how fast the local server takes these documents, the
 * ceiling of any replicated rate measured while writing.
 */
async function driverWriteRate(ctx, { n, mode }) {
  const { batch, conc } = MODES[mode]
  const coll = ctx.local.db(ctx.dbName('drv')).collection('repl')
  await coll.insertMany(makeDocs(100, -100))
  const docs = makeDocs(n)
  const w = await closedLoop(Math.ceil(n / batch), conc, (i) =>
    batch === 1 ? coll.insertOne(docs[i]) : coll.insertMany(docs.slice(i * batch, Math.min(n, (i + 1) * batch))),
  )
  return (n / w.wallMs) * 1000
}

/**
 * The same writers with the official driver writing each call to local,
 * then to Atlas: the naive dual write an app could do itself (no journal,
 * each write waits for Atlas, nothing survives a crash or an outage). Its
 * rate is what both servers and one Node process take together on this
 * machine: a ceiling for replication measured while writing, where the raw
 * Atlas rate has the machine to itself.
 */
async function dualWriteRate(ctx, { n, mode }) {
  const { batch, conc } = MODES[mode]
  const db = ctx.dbName('dual')
  const [lc, ac] = [ctx.local, ctx.atlas].map((c) => c.db(db).collection('repl'))
  const both = async (write) => {
    await write(lc)
    await write(ac)
  }
  await both((c) => c.insertMany(makeDocs(100, -100)))
  const docs = makeDocs(n)
  const w = await closedLoop(Math.ceil(n / batch), conc, (i) =>
    both((c) => (batch === 1 ? c.insertOne({ ...docs[i] }) : c.insertMany(docs.slice(i * batch, Math.min(n, (i + 1) * batch))))),
  )
  return (n / w.wallMs) * 1000
}

/**
 * The same writers with the official driver straight to local, and beside
 * them a forwarder that sends every written document on to Atlas with the
 * official driver, in `insertMany` batches of up to 1000 (the raw rate's
 * own command), one batch at a time, taking the documents from memory as
 * each local write resolves. This is the least work any replication of
 * these writes adds to the machine: no capture, no journal, no read-back,
 * and Atlas's cheapest write. Its rate (first write .. last Atlas batch
 * acknowledged) tells what the two servers take together on this machine
 * when replication costs them nothing extra; the raw Atlas rate has the
 * machine to itself. (Not a strict ceiling for the addon: the forwarder
 * encodes its batches on the JS thread the writers use, the addon on
 * threads of its own.)
 */
async function forwardRate(ctx, { n, mode }) {
  const { batch, conc } = MODES[mode]
  const db = ctx.dbName('fwd')
  const [lc, ac] = [ctx.local, ctx.atlas].map((c) => c.db(db).collection('repl'))
  await lc.insertMany(makeDocs(100, -100))
  await ac.insertMany(makeDocs(100, -100))
  const docs = makeDocs(n)
  const fwd = new Forwarder((chunk) => ac.insertMany(chunk), { max: 1000 })
  const t0 = now()
  await closedLoop(Math.ceil(n / batch), conc, async (i) => {
    const part = docs.slice(i * batch, Math.min(n, (i + 1) * batch))
    await (batch === 1 ? lc.insertOne({ ...part[0] }) : lc.insertMany(part))
    fwd.push(...part)
  })
  await fwd.idle()
  if (fwd.sent !== n) throw new Error(`forwarder sent ${fwd.sent} of ${n} documents`)
  return (n / (now() - t0)) * 1000
}

async function run(ctx, { sizes }) {
  const m = {}
  ctx.log(`  fig 2: raw Atlas insertMany(1000) of ${sizes.raw} docs`)
  m.rawAtlasRate = await ctx.rawAtlasInsertRate(sizes.raw)
  ctx.log(`  fig 2: raw replicator steps (local $in read, Atlas replace-upsert) of ${sizes.raw} docs`)
  Object.assign(m, await ctx.rawReplicatorSteps(sizes.raw))
  for (const mode of Object.keys(MODES)) {
    const n = mode === 'one' ? sizes.replOne : sizes.replMany
    ctx.log(`  fig 2: ${MODES[mode].label}, ${n} docs through the addon, then flush`)
    const r = await replicate(ctx, { n, mode })
    for (const [k, v] of Object.entries(r)) m[`${mode}.${k}`] = v
    m[`${mode}.ratio`] = ratio(r.replRate, m.rawAtlasRate)
    ctx.log(`  fig 2: ${MODES[mode].label}, ${n} docs with the official driver straight to local`)
    m[`${mode}.driverWriteRate`] = await driverWriteRate(ctx, { n, mode })
    m[`${mode}.driverRatio`] = ratio(r.replRate, m[`${mode}.driverWriteRate`])
    ctx.log(`  fig 2: ${MODES[mode].label}, ${n} docs with the official driver to local, then Atlas`)
    m[`${mode}.dualWriteRate`] = await dualWriteRate(ctx, { n, mode })
    m[`${mode}.dualRatio`] = ratio(r.replRate, m[`${mode}.dualWriteRate`])
    ctx.log(`  fig 2: ${MODES[mode].label}, ${n} docs with the official driver to local, forwarded to Atlas by insertMany(1000)`)
    m[`${mode}.forwardRate`] = await forwardRate(ctx, { n, mode })
    m[`${mode}.forwardRawRatio`] = ratio(m[`${mode}.forwardRate`], m.rawAtlasRate)
    m[`${mode}.forwardRatio`] = ratio(r.replRate, m[`${mode}.forwardRate`])
  }
  return m
}

function rows(S, r) {
  const out = [
    r.value('raw Atlas insertMany(1000), official driver', 'rawAtlasRate', 'docs/s'),
    r.value('reference: raw Atlas bulkWrite of 500 replace-upserts (the replicator\'s write)', 'atlasUpsertRate', 'docs/s'),
    r.value('reference: raw local find _id $in 500 (the replicator\'s read)', 'localInReadRate', 'docs/s'),
  ]
  for (const [mode, { label }] of Object.entries(MODES)) {
    out.push(r.value(`writers ${label}: local write rate, official driver, no replication`, `${mode}.driverWriteRate`, 'docs/s'))
    out.push(r.value(`writers ${label}: local write rate via addon`, `${mode}.writeRate`, 'docs/s'))
    out.push(r.value(`writers ${label}: replicated (first write .. flush)`, `${mode}.replRate`, 'docs/s'))
    out.push(r.value(`writers ${label}: flush after last write`, `${mode}.catchUpMs`, 'ms'))
    out.push(r.plain(`writers ${label}: replicated / driver's local write rate`, `${mode}.driverRatio`))
    out.push(r.value(`writers ${label}: reference: official driver writing each call to local, then Atlas (naive dual write)`, `${mode}.dualWriteRate`, 'docs/s'))
    out.push(r.plain(`writers ${label}: replicated / naive dual-write rate`, `${mode}.dualRatio`))
    out.push(r.value(`writers ${label}: reference: official driver to local, each document forwarded to Atlas by insertMany(1000) (no capture, journal or read-back)`, `${mode}.forwardRate`, 'docs/s'))
    out.push(r.plain(`writers ${label}: forwarded / raw Atlas ratio (both servers' share of these cores)`, `${mode}.forwardRawRatio`))
    out.push(r.plain(`writers ${label}: replicated / forwarded rate`, `${mode}.forwardRatio`))
    out.push(r.plain(`writers ${label}: replication / raw Atlas ratio`, `${mode}.ratio`, { ge: 0.8 }))
  }
  return out
}

module.exports = {
  id: 2,
  title: 'Replication throughput while writers saturate the local server',
  run,
  rows,
  replicate,
  MODES,
}
