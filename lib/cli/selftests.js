'use strict'
// The seed's helper scripts as commands: test-basic, test-performance and
// test-resilience. They write through the addon into the scratch collection
// `dual_mongo_sync_selftest` (each run tags its documents with a run id and
// deletes them at the end) and prove Atlas equality with sync.verify(), so
// they need nothing but the addon. main() gives them a Sync with a private
// temporary journal: this process replicates its own writes, whatever app
// shares the database.
const { ObjectId } = require('bson')
const { settledHealth, verifyPassed } = require('./commands')

const SCRATCH = 'dual_mongo_sync_selftest'
const FLUSH_TIMEOUT_MS = 120000
const DEFAULT_OPS = 1000
const RESILIENCE_DOCS = 50
/** healthMaxQueue of the test-resilience Sync: below RESILIENCE_DOCS, so the queue must show in health. */
const RESILIENCE_MAX_QUEUE = 20

/** Fails the current step with `message` unless `condition` holds. */
function expect(condition, message) {
  if (!condition) throw new Error(message)
}

function scratch(sync, flags) {
  return sync.db(flags.db).collection(SCRATCH)
}

/** Named steps, timed; after the first failure `run` skips, `always` (cleanup) still runs. */
class Steps {
  constructor() {
    this.list = []
  }

  async run(name, fn) {
    return this.failed() ? undefined : this.always(name, fn)
  }

  async always(name, fn) {
    const t0 = performance.now()
    try {
      const value = await fn()
      this.list.push({ name, ok: true, ms: Math.round(performance.now() - t0) })
      return value
    } catch (e) {
      this.list.push({ name, ok: false, ms: Math.round(performance.now() - t0), error: e.message })
      return undefined
    }
  }

  failed() {
    return this.list.some((s) => !s.ok)
  }

  lines(title) {
    return [
      `${title}: ${this.failed() ? 'FAILED' : 'passed'}`,
      ...this.list.map((s) => `  ${s.ok ? 'ok  ' : 'FAIL'} ${s.name} (${s.ms} ms)${s.error ? `: ${s.error}` : ''}`),
    ]
  }
}

/** Waits until everything written is on Atlas, then proves it with verify. */
async function flushAndVerify(sync, coll) {
  await sync.flush({ timeoutMs: FLUSH_TIMEOUT_MS })
  const report = await sync.verify({ collections: [coll.namespace] })
  const c = report.collections.find((x) => x.ns === coll.namespace)
  expect(c, `verify did not cover ${coll.namespace}`)
  expect(verifyPassed(report, false), `Atlas differs from local: ${report.differences} difference(s) in ${coll.namespace}`)
  expect(c.localCount === c.atlasCount, `local has ${c.localCount} documents, Atlas ${c.atlasCount}`)
  return report
}

/** The basic CRUD writes, each checked against its driver result and the local state. */
async function crudSteps(steps, coll, run) {
  const ids = {}
  await steps.run('insertOne', async () => {
    ids.one = (await coll.insertOne({ run, n: 1 })).insertedId
  })
  await steps.run('insertMany', async () => {
    const r = await coll.insertMany([{ run, n: 2 }, { run, n: 3 }, { run, n: 4 }])
    expect(r.insertedCount === 3, `insertMany inserted ${r.insertedCount}, expected 3`)
  })
  await steps.run('updateOne', async () => {
    const r = await coll.updateOne({ _id: ids.one }, { $inc: { n: 10 }, $set: { updated: true } })
    expect(r.modifiedCount === 1, `updateOne modified ${r.modifiedCount}, expected 1`)
  })
  await steps.run('replaceOne', async () => {
    const r = await coll.replaceOne({ run, n: 2 }, { run, n: 20, replaced: true })
    expect(r.modifiedCount === 1, `replaceOne modified ${r.modifiedCount}, expected 1`)
  })
  await steps.run('deleteOne', async () => {
    const r = await coll.deleteOne({ run, n: 3 })
    expect(r.deletedCount === 1, `deleteOne deleted ${r.deletedCount}, expected 1`)
  })
  await steps.run('read back locally', async () => {
    const docs = await coll.find({ run }, { projection: { _id: 0, n: 1 } }).sort({ n: 1 }).toArray()
    const ns = docs.map((d) => d.n).join(',')
    expect(ns === '4,11,20', `local holds n = ${ns}, expected 4,11,20`)
  })
}

/** `test-basic`: CRUD through the addon, flush, verify Atlas equals local; the same after cleanup. */
async function testBasic(sync, out, flags) {
  const coll = scratch(sync, flags)
  const run = new ObjectId().toHexString()
  const steps = new Steps()
  await crudSteps(steps, coll, run)
  const report = await steps.run('flush and verify on Atlas', () => flushAndVerify(sync, coll))
  await steps.always('delete the test documents, flush and verify', async () => {
    await coll.deleteMany({ run })
    await flushAndVerify(sync, coll)
  })
  const result = { ok: !steps.failed(), collection: coll.namespace, run, steps: steps.list, verify: report ?? null }
  out.result(result, steps.lines('test-basic'))
  return steps.failed() ? 1 : 0
}

function percentile(sorted, p) {
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]
}

/** Runs `op(i)` n times in sequence; resolves with throughput and latency percentiles. */
async function timed(out, label, n, op) {
  const progress = out.progress(label)
  const latencies = []
  const t0 = performance.now()
  try {
    for (let i = 0; i < n; i++) {
      const s = performance.now()
      await op(i)
      latencies.push(performance.now() - s)
      progress.update(i + 1, n)
    }
  } finally {
    progress.end()
  }
  const totalMs = performance.now() - t0
  latencies.sort((a, b) => a - b)
  const round = (x) => Math.round(x * 1000) / 1000
  return {
    opsPerSec: round((n * 1000) / totalMs),
    p50Ms: round(percentile(latencies, 50)),
    p99Ms: round(percentile(latencies, 99)),
    maxMs: round(latencies[n - 1]),
  }
}

function perfLines(r) {
  const line = (name, x) => `  ${name.padEnd(10)} ${x.opsPerSec} ops/s, p50 ${x.p50Ms} ms, p99 ${x.p99Ms} ms, max ${x.maxMs} ms`
  return [
    `test-performance: ${r.ops} operations of each kind on ${r.collection}`,
    line('insertOne', r.insertOne),
    line('updateOne', r.updateOne),
    `  queue after the writes: ${r.queuedAfterWrites}; flush to Atlas took ${r.flushMs} ms`,
  ]
}

/** `test-performance [--ops N]`: latency and throughput of local writes, then the time Atlas needs to catch up. */
async function testPerformance(sync, out, flags) {
  const coll = scratch(sync, flags)
  const n = flags.ops ?? DEFAULT_OPS
  const run = new ObjectId().toHexString()
  const ids = Array.from({ length: n }, () => new ObjectId())
  try {
    const insertOne = await timed(out, 'insertOne', n, (i) => coll.insertOne({ _id: ids[i], run, i, pad: 'x'.repeat(100) }))
    const updateOne = await timed(out, 'updateOne', n, (i) => coll.updateOne({ _id: ids[i] }, { $inc: { v: 1 } }))
    const queuedAfterWrites = (await sync.metrics()).queueSize
    const t0 = performance.now()
    await sync.flush({ timeoutMs: FLUSH_TIMEOUT_MS })
    const flushMs = Math.round(performance.now() - t0)
    const result = { ok: true, collection: coll.namespace, run, ops: n, insertOne, updateOne, queuedAfterWrites, flushMs }
    out.result(result, perfLines(result))
    return 0
  } finally {
    await coll.deleteMany({ run })
    await sync.flush({ timeoutMs: FLUSH_TIMEOUT_MS })
  }
}

/** Writes while replication is paused; checks the queue shows in metrics and health. */
async function pausedWrites(sync, coll, run, facts) {
  sync.pause()
  const t0 = performance.now()
  for (let i = 0; i < RESILIENCE_DOCS; i++) await coll.insertOne({ run, i })
  facts.writeMsWhilePaused = Math.round(performance.now() - t0)
  const m = await sync.metrics()
  const health = await sync.health()
  facts.queuedWhilePaused = m.queueSize
  facts.healthWhilePaused = health.status
  expect(m.paused, 'metrics do not show replication as paused')
  expect(m.queueSize >= RESILIENCE_DOCS, `queue holds ${m.queueSize} change(s) while paused, expected ${RESILIENCE_DOCS}+`)
  expect(!health.checks.queueSize.pass && health.status !== 'healthy', `health stays ${health.status} with ${m.queueSize} queued`)
}

/** `test-resilience`: pause, write (writes go on), the queue shows in health; resume, drain, verify. */
async function testResilience(sync, out, flags) {
  const coll = scratch(sync, flags)
  const run = new ObjectId().toHexString()
  const steps = new Steps()
  const facts = {}
  await steps.run('Atlas reachable', async () => {
    const h = await settledHealth(sync)
    expect(h.checks.atlasConnection.pass, 'Atlas is not reachable; check MONGODB_ATLAS_URI')
  })
  await steps.run(`pause and write ${RESILIENCE_DOCS} documents`, () => pausedWrites(sync, coll, run, facts))
  await steps.run('resume and drain the queue', async () => {
    sync.resume()
    const t0 = performance.now()
    await sync.flush({ timeoutMs: FLUSH_TIMEOUT_MS })
    facts.drainMs = Math.round(performance.now() - t0)
    const health = await sync.health()
    const queue = health.checks.queueSize
    expect(queue.pass && queue.value === 0, `queue holds ${queue.value} after the drain`)
  })
  await steps.run('verify Atlas equals local', () => flushAndVerify(sync, coll))
  await steps.always('delete the test documents, flush and verify', async () => {
    sync.resume()
    await coll.deleteMany({ run })
    await flushAndVerify(sync, coll)
  })
  const result = { ok: !steps.failed(), collection: coll.namespace, run, ...facts, steps: steps.list }
  out.result(result, steps.lines('test-resilience'))
  return steps.failed() ? 1 : 0
}

const SELFTESTS = {
  'test-basic': { run: testBasic, syncOptions: {} },
  'test-performance': { run: testPerformance, syncOptions: {} },
  'test-resilience': { run: testResilience, syncOptions: { healthMaxQueue: RESILIENCE_MAX_QUEUE } },
}

module.exports = { SELFTESTS }
