'use strict'
// Resilience (issue 5): faults between the engine and Atlas, the local server
// going down, a model-based randomized run under random faults, and bad
// input. Every scenario ends with Atlas byte-identical to local.
// SYNC_SOAK=N multiplies the work (`npm run soak`).
const { test, after } = require('node:test')
const assert = require('node:assert/strict')
const { createSync } = require('..')
const { startServer, freePort } = require('../scripts/servers')
const { startProxy } = require('./proxy')
const { LOCAL, ATLAS, uniqueDb, withDb, driver, closeDrivers, assertSame, syncOptions, waitFor } = require('./helpers')
const { opStream, runOp, COLLS } = require('./fixtures/ops')

const SOAK = Math.max(1, Number(process.env.SYNC_SOAK || 1))
const FAST = { takeoverGraceMs: 200, retryBaseMs: 20, retryMaxMs: 300, atlasTimeoutMs: 1500 }
const totals = { faults: 0, ops: 0, differences: 0 }

after(async () => {
  await closeDrivers()
  console.log(`# resilience totals: ${JSON.stringify(totals)}`)
})

/** An Atlas URI through the proxy that gives up quickly on a dead server. */
const viaProxy = (proxy) => `${proxy.uri}&serverSelectionTimeoutMS=1000&connectTimeoutMS=1000`
const atlasPort = () => Number(new URL(ATLAS).port)

async function compareAll(db, colls) {
  const [local, atlas] = await Promise.all([driver(LOCAL), driver(ATLAS)])
  try {
    await assertSame(local, atlas, db, colls)
  } catch (e) {
    totals.differences += 1
    throw e
  }
}

for (const [mode, opts] of [
  ['cut', {}],
  ['blackhole', {}],
  ['latency', { ms: 40 }],
  ['reset', { afterBytes: 3000 }],
]) {
  test(`Atlas fault '${mode}': local writes go on, health shows it, everything arrives after`, async () => {
    const db = uniqueDb(`fault_${mode}`)
    const proxy = await startProxy(atlasPort())
    const sync = await createSync({ ...syncOptions(db, { ...FAST, batchSize: 50 }), atlasUri: viaProxy(proxy) })
    try {
      const next = opStream(500 + mode.length)
      for (let i = 0; i < 40; i++) await runOp(next(), sync, db)
      proxy.set(mode, opts)
      totals.faults += 1
      for (let i = 0; i < 120 * SOAK; i++) await runOp(next(), sync, db)
      totals.ops += 40 + 120 * SOAK
      if (mode === 'cut' || mode === 'blackhole') {
        await waitFor(async () => !(await sync.health()).checks.atlasConnection.pass, { what: 'health to show Atlas down' })
        assert.notEqual((await sync.health()).status, 'healthy')
      }
      proxy.set('pass')
      await sync.flush({ timeoutMs: 120000 })
      const m = await sync.metrics()
      assert.equal(m.deadLettered, 0, `a fault must not dead-letter anything: ${JSON.stringify(m.lastError)}`)
      if (mode === 'reset') assert.ok(proxy.state.resets > 0, 'connections were reset mid-stream')
    } finally {
      await sync.close()
      await proxy.close()
    }
    await compareAll(db, COLLS)
  })
}

test('local MongoDB down: writes reject with the driver error, nothing phantom reaches Atlas, recovery after', async () => {
  const db = uniqueDb('localdown')
  const localServer = await startServer({ name: 'local-down' })
  const localUri = `${withDb(localServer.uri, db)}&serverSelectionTimeoutMS=1000`
  const sync = await createSync({ ...syncOptions(db, FAST), localUri })
  const c = sync.collection('orders')
  try {
    await c.insertMany([{ _id: 1 }, { _id: 2 }])
    await sync.flush({ timeoutMs: 30000 })
    await localServer.stop()
    totals.faults += 1
    await assert.rejects(c.insertOne({ _id: 'phantom' }), (e) => /MongoServerSelectionError|MongoNetworkError/.test(e.name))
    await assert.rejects(c.updateOne({ _id: 1 }, { $set: { phantom: true } }), (e) => /MongoServerSelectionError|MongoNetworkError/.test(e.name))
    await assert.rejects(c.find({}).toArray(), (e) => /MongoServerSelectionError|MongoNetworkError/.test(e.name))
    await waitFor(async () => (await sync.health()).status === 'unhealthy', { what: 'health to show local down' })
    await localServer.start()
    await waitFor(async () => (await sync.health()).checks.localConnection.pass, { timeoutMs: 30000, what: 'local back' })
    await c.insertOne({ _id: 3 })
    await sync.flush({ timeoutMs: 60000 })
    const [local, atlas] = await Promise.all([driver(localServer.uri), driver(ATLAS)])
    await assertSame(local, atlas, db, ['orders'])
    assert.deepEqual((await atlas.db(db).collection('orders').find().toArray()).map((d) => d._id), [1, 2, 3])
  } finally {
    await sync.close()
    await localServer.remove()
  }
})

test('an Atlas that does not answer is in metrics().lastError and the log while nothing waits to be copied, password hidden', async () => {
  const db = uniqueDb('atlas_silent')
  const port = await freePort()
  const atlasUri = `mongodb://syncuser:S3cret-Pa55@127.0.0.1:${port}/?directConnection=true&serverSelectionTimeoutMS=1000`
  const sync = await createSync({ ...syncOptions(db, FAST), atlasUri })
  try {
    const m = await waitFor(async () => {
      const x = await sync.metrics()
      return x.lastError ? x : null
    }, { timeoutMs: 20000, what: 'lastError to say why Atlas is down' })
    assert.match(m.lastError.message, /^Atlas \(MONGODB_ATLAS_URI\) does not answer/)
    assert.equal(m.queueSize, 0, 'the premise: nothing was waiting')
    assert.ok(!JSON.stringify(m).includes('S3cret-Pa55'), 'no password in metrics')
    assert.equal((await sync.health()).checks.atlasConnection.pass, false)
  } finally {
    await sync.close({ timeoutMs: 1000 })
  }
})

test('verify() and fullSync() with a server down fail at once, naming it; with both back they work', async () => {
  // Verify first waits (up to 30 s) for the queue to drain: with Atlas down
  // it could not, and the error that came after did not say which server.
  const db = uniqueDb('reconcile_down')
  const [atlasProxy, localProxy] = await Promise.all([startProxy(atlasPort()), startProxy(Number(new URL(LOCAL).port))])
  const localUri = `${localProxy.uri.replace('/?', `/${db}?`)}&serverSelectionTimeoutMS=1000&connectTimeoutMS=1000`
  const sync = await createSync({ ...syncOptions(db, FAST), localUri, atlasUri: viaProxy(atlasProxy) })
  const c = sync.collection('orders')
  const failure = async (call) => {
    const at = Date.now()
    const e = await call().then(() => null, (e) => e)
    return { name: e && e.name, message: e && e.message, ms: Date.now() - at }
  }
  try {
    await c.insertMany([{ _id: 1 }, { _id: 2 }])
    await sync.flush({ timeoutMs: 30000 })
    atlasProxy.set('cut')
    totals.faults += 1
    await c.insertOne({ _id: 3 }) // pending: Atlas cannot take it
    for (const [what, call] of [['verify', () => sync.verify()], ['fullSync', () => sync.fullSync()]]) {
      const f = await failure(call)
      assert.equal(f.name, 'MongoServerSelectionError', `${what}: ${f.message}`)
      assert.match(f.message, /^Atlas: /, what)
      assert.ok(f.ms < 15000, `${what} failed after ${f.ms} ms, not at once`)
    }
    atlasProxy.set('pass')
    localProxy.set('cut')
    for (const [what, call] of [['verify', () => sync.verify()], ['fullSync', () => sync.fullSync()]]) {
      const f = await failure(call)
      assert.equal(f.name, 'MongoServerSelectionError', `${what}: ${f.message}`)
      assert.match(f.message, /^local MongoDB: /, what)
    }
    localProxy.set('pass')
    await sync.flush({ timeoutMs: 60000 })
    assert.equal((await sync.verify()).differences, 0)
    assert.equal((await sync.fullSync()).state, 'done')
    await compareAll(db, ['orders'])
  } finally {
    await sync.close()
    await Promise.all([atlasProxy.close(), localProxy.close()])
  }
})

test('a local write whose connection fails is copied only after the grace, in case it still lands', async () => {
  // A connection that breaks after the command may have been sent leaves
  // the outcome unknown: the server can still apply it later. Its intent
  // waits SYNC_TAKEOVER_GRACE_MS before the replicator may copy the document.
  const db = uniqueDb('unknown')
  const proxy = await startProxy(Number(new URL(LOCAL).port))
  const grace = 3000
  const localUri = `${proxy.uri}&serverSelectionTimeoutMS=500&connectTimeoutMS=500`
  const sync = await createSync({ ...syncOptions(db, { ...FAST, takeoverGraceMs: grace }), localUri }).catch(async (e) => {
    await proxy.close()
    throw e
  })
  const c = sync.db(db).collection('u')
  try {
    await c.insertOne({ _id: 1, v: 0 })
    await sync.flush({ timeoutMs: 30000 })
    proxy.set('reset', { afterBytes: 0 }) // the connection breaks as the command goes out
    totals.faults += 1
    const failed = await c.updateOne({ _id: 1 }, { $inc: { v: 1 } }).then(() => null, (e) => e)
    assert.ok(failed, 'the premise: the update failed')
    assert.equal(failed.name, 'MongoNetworkError', `the premise: a network error (${failed.name}: ${failed.message})`)
    const at = Date.now()
    proxy.set('pass')
    await assert.rejects(sync.flush({ timeoutMs: 1000 }), { code: 'ERR_SYNC_TIMEOUT' }, 'copied before the grace')
    await sync.flush({ timeoutMs: 30000 })
    assert.ok(Date.now() - at >= grace - 100, `copied after ${Date.now() - at} ms`)
    await compareAll(db, ['u'])
  } finally {
    await sync.close()
    await proxy.close()
  }
})

/**
 * Makes the copy of `{_id: 1, v: 1}` stall on its way to Atlas (held by the
 * proxy until `release()`), then writes v: 2 and waits for the retry to put
 * it on Atlas.
 */
async function stallACopy(sync, c, proxy, onAtlas) {
  await c.insertOne({ _id: 1, v: 0 })
  await sync.flush({ timeoutMs: 30000 })
  proxy.set('hold')
  totals.faults += 1
  await c.updateOne({ _id: 1 }, { $set: { v: 1 } })
  await waitFor(() => proxy.keptBytes() > 0, { what: 'the copy of v: 1 to be held' })
  proxy.set('pass') // the held connection stays held; new ones pass
  await c.updateOne({ _id: 1 }, { $set: { v: 2 } })
  await waitFor(async () => (await onAtlas()) === 2, { what: 'the retry to copy v: 2' })
}

test('socketTimeoutMS from a Node driver connection string: a call past it fails as the driver\'s does, and a write that lands late still reaches Atlas', async () => {
  // The Rust driver refuses socketTimeoutMS (and j, wtimeout, family, ...);
  // the engine reads the string as the Node driver does (src/uri.rs) and
  // bounds each local call itself: past the bound the call is dropped and
  // rejects with MongoNetworkTimeoutError. A write already on its way may
  // still land, so its journal entry waits SYNC_TAKEOVER_GRACE_MS before
  // the replicator copies the document, as after any network error.
  const { MongoNetworkError, MongoNetworkTimeoutError } = require('..')
  const db = uniqueDb('socket_timeout')
  const proxy = await startProxy(Number(new URL(LOCAL).port))
  const grace = 3000
  const localUri = `${withDb(proxy.uri, db)}&socketTimeoutMS=300&j=true&wtimeout=2500&family=4&noDelay=true&timeoutMS=0`
  const sync = await createSync({ ...syncOptions(db, { ...FAST, takeoverGraceMs: grace }), localUri }).catch(async (e) => {
    await proxy.close()
    throw e
  })
  const c = sync.db(db).collection('t')
  try {
    proxy.state.tap = []
    await c.insertOne({ _id: 1, v: 0 })
    const sent = Buffer.concat(proxy.state.tap)
    proxy.state.tap = null
    // j and wtimeout reached the server as the write concern of the insert.
    assert.ok(sent.includes(Buffer.from('\x08j\x00\x01', 'latin1')), 'j: true was sent')
    const wt = sent.indexOf('wtimeout\0')
    assert.ok(wt > 0, 'wtimeout was sent')
    const v = wt + 'wtimeout'.length + 1
    assert.equal(sent[wt - 1] === 0x10 ? sent.readInt32LE(v) : Number(sent.readBigInt64LE(v)), 2500)
    await sync.flush({ timeoutMs: 30000 })

    proxy.set('hold') // what is sent now is kept back: no reply comes
    totals.faults += 1
    const at = Date.now()
    const failed = await c.updateOne({ _id: 1 }, { $inc: { v: 1 } }).then(() => null, (e) => e)
    const waited = Date.now() - at
    assert.ok(failed, 'the call rejected')
    assert.equal(failed.name, 'MongoNetworkTimeoutError', `${failed.name}: ${failed.message}`)
    assert.ok(failed instanceof MongoNetworkTimeoutError && failed instanceof MongoNetworkError)
    assert.match(failed.message, /socketTimeoutMS \(300 ms\)/)
    assert.ok(waited < grace, `rejected after ${waited} ms`)
    await assert.rejects(c.findOne({ _id: 1 }), { name: 'MongoNetworkTimeoutError' }, 'reads are bounded too')
    // The held update reaches the server late, within the grace.
    proxy.set('pass')
    proxy.release()
    const local = await driver(LOCAL)
    await waitFor(async () => (await local.db(db).collection('t').findOne({ _id: 1 })).v === 1, { what: 'the late update' })
    await sync.flush({ timeoutMs: 30000 })
    assert.ok(Date.now() - at >= grace - 100, `copied after ${Date.now() - at} ms, before the grace`)
    await compareAll(db, ['t'])
    // Calls within the bound are unaffected.
    await c.updateOne({ _id: 1 }, { $inc: { v: 1 } })
    assert.equal((await c.findOne({ _id: 1 })).v, 2)
    await sync.flush({ timeoutMs: 30000 })
    await compareAll(db, ['t'])

    // An index command that lands late, after the leader already copied
    // the indexes its first mark asked for, is copied by the second mark
    // the dropped call leaves after the grace. Only that command stalls.
    proxy.state.holdIf = Buffer.from('createIndexes\0')
    await assert.rejects(c.createIndex({ v: 1 }), { name: 'MongoNetworkTimeoutError' })
    await new Promise((r) => setTimeout(r, 1500)) // the copier took the first mark
    proxy.state.holdIf = null
    proxy.release()
    const atlas = await driver(ATLAS)
    const names = async (client) => (await client.db(db).collection('t').indexes()).map((i) => i.name).sort()
    await waitFor(async () => (await names(local)).includes('v_1'), { what: 'the late createIndex on local' })
    await waitFor(async () => (await names(atlas)).includes('v_1'), { what: 'the late index on Atlas', timeoutMs: 30000 })
  } finally {
    await sync.close()
    await proxy.close()
  }
})

test('an Atlas write that stalls and lands after the retry is overwritten: the documents are copied again', async () => {
  // The batch carrying v: 1 times out (SYNC_ATLAS_TIMEOUT_MS) while its bytes
  // sit in the network; the retry copies v: 2; then the stalled write runs
  // and Atlas holds v: 1. The engine copies such documents once more after
  // the timeout, so Atlas ends with v: 2.
  const db = uniqueDb('stalled')
  const proxy = await startProxy(atlasPort())
  const sync = await createSync({ ...syncOptions(db, FAST), atlasUri: viaProxy(proxy) }).catch(async (e) => {
    await proxy.close()
    throw e
  })
  const c = sync.db(db).collection('s')
  const atlas = await driver(ATLAS)
  const onAtlas = async () => (await atlas.db(db).collection('s').findOne({ _id: 1 }))?.v
  try {
    await stallACopy(sync, c, proxy, onAtlas)
    const flushed = sync.flush({ timeoutMs: 30000 }) // asked before the stalled write lands
    await proxy.release() // the stalled write of v: 1 lands now
    await waitFor(async () => (await onAtlas()) === 1, { what: 'the stalled write to land' })
    await flushed
    assert.equal(await onAtlas(), 2, 'flush() resolved before the copy that follows the stalled write')
    await compareAll(db, ['s'])
  } finally {
    await sync.close()
    await proxy.close()
  }
})

/**
 * A takeover after a stalled Atlas write: `stall(first, c, proxy, onAtlas)`
 * leaves the copy of v: 1 held by the proxy and closes the first process;
 * a second one on the same data directory takes over, the stalled write
 * lands after that, and Atlas must still end with v: 2.
 */
async function stalledTakeover(name, stall) {
  const db = uniqueDb(name)
  const proxy = await startProxy(atlasPort())
  const opts = { ...syncOptions(db, { ...FAST, atlasTimeoutMs: 3000 }), atlasUri: viaProxy(proxy) } // both processes: one data directory
  const first = await createSync(opts).catch(async (e) => {
    await proxy.close()
    throw e
  })
  const atlas = await driver(ATLAS)
  const onAtlas = async () => (await atlas.db(db).collection('s').findOne({ _id: 1 }))?.v
  let second
  try {
    await stall(first, first.db(db).collection('s'), proxy, onAtlas)
    second = await createSync(opts)
    await new Promise((r) => setTimeout(r, 800))
    await proxy.release() // lands after the second process took over
    await waitFor(async () => (await onAtlas()) === 1, { what: 'the stalled write to land' })
    await second.flush({ timeoutMs: 30000 })
    assert.equal(await onAtlas(), 2, 'the new replicator copied before the stalled write landed')
    await compareAll(db, ['s'])
  } finally {
    if (second) await second.close()
    await proxy.close()
  }
}

test('a replicator that takes over waits until a stalled Atlas write of the previous one can no longer land', async () => {
  // As above, but the first process closes before its second copy, and the
  // stalled write lands after the next process took over: that process
  // waits out SYNC_ATLAS_TIMEOUT_MS from the stalled write before copying.
  await stalledTakeover('stalledtakeover', async (first, c, proxy, onAtlas) => {
    await stallACopy(first, c, proxy, onAtlas)
    await first.close({ timeoutMs: 200 })
  })
})

test('a replicator that stops while its retries still fail leaves the wait for its stalled write to the next one', async () => {
  // As above, but Atlas stays unreachable after the stall, so the first
  // process never copies v: 2 before it closes. It used to journal the wait
  // only for documents it had copied again, so the next process copied v: 2
  // at once and the stalled v: 1 landed after it, for good.
  await stalledTakeover('stalledstop', async (first, c, proxy, onAtlas) => {
    await c.insertOne({ _id: 1, v: 0 })
    await first.flush({ timeoutMs: 30000 })
    proxy.set('hold')
    totals.faults += 1
    await c.updateOne({ _id: 1 }, { $set: { v: 1 } })
    await waitFor(() => proxy.keptBytes() > 0, { what: 'the copy of v: 1 to be held' })
    proxy.set('blackhole') // the retries hang and time out too
    await c.updateOne({ _id: 1 }, { $set: { v: 2 } })
    await waitFor(async () => (await first.metrics()).retried > 0, { timeoutMs: 30000, what: 'a retry' })
    await first.close({ timeoutMs: 200 })
    assert.equal(await onAtlas(), 0, 'the premise: nothing of v: 1 or v: 2 reached Atlas')
    proxy.set('pass')
  })
})

/** The model: what each writer's documents must be after its own operations. */
function modelStep(model, id, r, c) {
  const has = model.has(id)
  const kind = Math.floor(r() * 6)
  switch (kind) {
    case 0:
      if (has) return { run: () => c.insertOne({ _id: id, n: 0 }).then(() => assert.fail('duplicate accepted'), (e) => assert.equal(e.code, 11000)) }
      model.set(id, { _id: id, n: 0 })
      return { run: () => c.insertOne({ _id: id, n: 0 }) }
    case 1:
      if (has) model.get(id).n += 1
      return { run: () => c.updateOne({ _id: id }, { $inc: { n: 1 } }) }
    case 2: {
      const s = `s${Math.floor(r() * 1000)}`
      if (has) model.get(id).s = s
      return { run: () => c.updateOne({ _id: id }, { $set: { s } }) }
    }
    case 3: {
      const v = Math.floor(r() * 100)
      if (has) model.set(id, { _id: id, n: v, replaced: true })
      return { run: () => c.replaceOne({ _id: id }, { n: v, replaced: true }) }
    }
    case 4:
      model.delete(id)
      return { run: () => c.deleteOne({ _id: id }) }
    default:
      if (has) model.get(id).n += 10
      else model.set(id, { _id: id, n: 10 })
      return { run: () => c.updateOne({ _id: id }, { $inc: { n: 10 } }, { upsert: true }) }
  }
}

test('model-based: concurrent writers under random faults; local equals the model, Atlas equals local', async () => {
  const db = uniqueDb('model')
  const proxy = await startProxy(atlasPort())
  const sync = await createSync({ ...syncOptions(db, { ...FAST, batchSize: 20, workers: 3 }), atlasUri: viaProxy(proxy) })
  const c = sync.collection('m')
  const models = [new Map(), new Map(), new Map()]
  let seed = 12345
  const r = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed / 2147483648
  }
  let chaos = true
  const chaosLoop = (async () => {
    const modes = [['cut'], ['blackhole'], ['latency', { ms: 20 }], ['reset', { afterBytes: 1500 }], ['pass']]
    while (chaos) {
      const [mode, opts] = modes[Math.floor(Math.random() * modes.length)]
      proxy.set(mode, opts)
      totals.faults += 1
      await new Promise((res) => setTimeout(res, 100 + Math.random() * 400))
    }
  })()
  try {
    await Promise.all(
      models.map(async (model, w) => {
        for (let i = 0; i < 150 * SOAK; i++) {
          const id = `w${w}-${Math.floor(r() * 15)}`
          await modelStep(model, id, r, c).run()
          totals.ops += 1
        }
      }),
    )
  } finally {
    chaos = false
    await chaosLoop
    proxy.set('pass')
  }
  await sync.flush({ timeoutMs: 120000 })
  await sync.close()
  await proxy.close()
  const local = await driver(LOCAL)
  const expected = models.flatMap((m) => [...m.values()]).sort((a, b) => (a._id < b._id ? -1 : 1))
  const actual = await local.db(db).collection('m').find({}).sort({ _id: 1 }).toArray()
  assert.deepEqual(actual, expected, 'local differs from the model')
  await compareAll(db, ['m'])
})
