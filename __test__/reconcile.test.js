'use strict'
// Full sync and verify (MISSION.md section 3): correct under concurrent
// writes, resumable after a crash, and verify finds exactly what differs.
const { test, after } = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const readline = require('node:readline')
const { spawn } = require('node:child_process')
const { createSync, Double } = require('..')
const { LOCAL, ATLAS, uniqueDb, withDb, tempDir, driver, closeDrivers, assertSame, syncOptions, waitFor } = require('./helpers')
const { opStream, runOp, COLLS } = require('./fixtures/ops')

after(closeDrivers)

const FAST = { takeoverGraceMs: 200, retryBaseMs: 20, retryMaxMs: 500 }

/**
 * Stores `value` as the data directory's full-sync checkpoint, straight in
 * the journal's SQLite file (with Python's sqlite3), as a crashed or older
 * engine may have left it; waits for a live engine's transaction.
 */
function writeCheckpoint(dataDir, value) {
  const script =
    'import sqlite3, sys\n' +
    'c = sqlite3.connect(sys.argv[1], timeout=30)\n' +
    "c.execute(\"INSERT OR REPLACE INTO meta (key, value) VALUES ('full_sync', ?)\", (sys.argv[2],))\n" +
    'c.commit()\n'
  require('node:child_process').execFileSync('python3', ['-c', script, path.join(dataDir, 'journal.sqlite3'), value])
}

/** Documents written straight to local (as if they predate the sync). */
async function seedLocal(local, db, coll, n, from = 0) {
  const docs = Array.from({ length: n }, (_, i) => ({ _id: from + i, k: (from + i) % 10, n: 0, body: 'x'.repeat(100) }))
  await local.db(db).collection(coll).insertMany(docs)
}

test('full sync copies what Atlas lacks, removes what local lacks, and ends identical while the app writes', async () => {
  const db = uniqueDb('full')
  const [local, atlas] = await Promise.all([driver(LOCAL), driver(ATLAS)])
  await seedLocal(local, db, 'a', 1500)
  await seedLocal(local, db, 'b', 500)
  await atlas.db(db).collection('a').insertMany([{ _id: 'stale-extra' }, { _id: 3, k: 'old version' }])
  await atlas.db(db).collection('atlas_only').insertMany([{ _id: 1 }, { _id: 2 }])
  const sync = await createSync(syncOptions(db, { ...FAST, batchSize: 200 }))
  const writing = (async () => {
    const next = opStream(4242)
    for (let i = 0; i < 150; i++) await runOp(next(), sync, db)
  })()
  const status = await sync.fullSync()
  await writing
  assert.equal(status.state, 'done')
  assert.equal(status.collectionsTotal, 3, 'a, b and the Atlas-only collection')
  assert.ok(status.documentsDone >= 2000, JSON.stringify(status))
  await sync.flush({ timeoutMs: 60000 })
  const m = await sync.metrics()
  assert.equal(m.fullSync.state, 'done')
  await sync.close()
  await assertSame(local, atlas, db, [...COLLS, 'atlas_only'])
  assert.equal(await atlas.db(db).collection('atlas_only').countDocuments(), 0)
})

test('a full sync killed mid-way resumes from its checkpoint on restart', async () => {
  const db = uniqueDb('fullcrash')
  const dataDir = tempDir()
  const [local, atlas] = await Promise.all([driver(LOCAL), driver(ATLAS)])
  await seedLocal(local, db, 'big', 6000)
  const child = spawn(process.execPath, [path.join(__dirname, 'fixtures', 'fullsync.js')], {
    env: { ...process.env, DATA_DIR: dataDir, LOCAL_URI: withDb(LOCAL, db), ATLAS_URI: ATLAS },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const seen = await new Promise((resolve, reject) => {
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      const s = JSON.parse(line)
      if (s.error) reject(new Error(s.error))
      if (s.done >= 2000) {
        child.kill('SIGKILL')
        resolve(s)
      }
    })
    child.once('exit', (code) => reject(new Error(`child exited early with ${code}`)))
  })
  await new Promise((r) => (child.exitCode !== null || child.signalCode ? r() : child.once('exit', r)))
  assert.equal(await atlas.db(db).collection('big').countDocuments(), 0, 'replication was paused in the child')
  const sync = await createSync({ localUri: withDb(LOCAL, db), atlasUri: ATLAS, dataDir, logLevel: 'warn', ...FAST })
  // Its progress never goes back below what the killed run had committed
  // (a restart from scratch would count from 0 again, a chunk of 1,000 at
  // a time).
  let lowest = Infinity
  const resumed = await waitFor(async () => {
    const s = await sync.fullSyncStatus()
    if (s.id === seen.id) lowest = Math.min(lowest, s.documentsDone)
    return s.id === seen.id && s.state === 'done' ? s : null
  }, { timeoutMs: 120000, everyMs: 10, what: `full sync ${seen.id} to resume and finish` })
  assert.ok(lowest >= seen.done, `progress fell back to ${lowest} from ${seen.done}`)
  assert.equal(resumed.documentsDone, 6000)
  await sync.flush({ timeoutMs: 60000 })
  await sync.close()
  await assertSame(local, atlas, db, ['big'])
})

test('verify reports exactly the planted differences, and repair removes them', async () => {
  const db = uniqueDb('verify')
  const sync = await createSync(syncOptions(db, FAST))
  const c = sync.collection('v')
  await c.insertMany(Array.from({ length: 300 }, (_, i) => ({ _id: i, n: i })))
  await sync.collection('w').insertOne({ _id: 'w1', same: true })
  await sync.flush({ timeoutMs: 30000 })
  const clean = await sync.verify()
  assert.equal(clean.ok, true, JSON.stringify(clean))
  assert.equal(clean.differences, 0)
  const atlas = await driver(ATLAS)
  const av = atlas.db(db).collection('v')
  await av.deleteOne({ _id: 10 }) // missing on Atlas
  await av.insertOne({ _id: 'extra', n: -1 }) // extra on Atlas
  await av.updateOne({ _id: 20 }, { $set: { n: 2000 } }) // different content
  await av.updateOne({ _id: 30 }, { $set: { n: new Double(30) } }) // same value, other type
  const report = await sync.verify()
  assert.equal(report.ok, false)
  assert.equal(report.differences, 4)
  const v = report.collections.find((r) => r.ns === `${db}.v`)
  assert.deepEqual(v.missing, [10])
  assert.deepEqual(v.extra, ['extra'])
  assert.deepEqual(v.different.sort(), [20, 30])
  assert.equal(v.localCount, 300)
  assert.equal(v.atlasCount, 300)
  assert.notEqual(v.localHash, v.atlasHash)
  const w = report.collections.find((r) => r.ns === `${db}.w`)
  assert.equal(w.localHash, w.atlasHash)
  const repaired = await sync.verify({ repair: true })
  assert.equal(repaired.repaired, 4)
  const after = await sync.verify({ collections: ['v'] })
  assert.equal(after.ok, true, JSON.stringify(after))
  assert.equal((await sync.verifyStatus()).state, 'done')
  await sync.close()
  const local = await driver(LOCAL)
  await assertSame(local, atlas, db, ['v', 'w'])
})

test('verify counts every difference but lists the first 1000 of each kind, and repair fixes them all', async () => {
  // 1,500 documents written past the addon: verify must not hold all their
  // ids (a collection missing on Atlas may have millions).
  const db = uniqueDb('verifycap')
  const local = await driver(LOCAL)
  await local.db(db).collection('big').insertMany(Array.from({ length: 1500 }, (_, i) => ({ _id: i })))
  const sync = await createSync(syncOptions(db, FAST))
  const report = await sync.verify({ collections: ['big'] })
  const big = report.collections[0]
  assert.equal(report.differences, 1500)
  assert.equal(big.missingCount, 1500)
  assert.equal(big.missing.length, 1000)
  assert.equal(big.truncated, true)
  assert.equal((await sync.verify({ collections: ['big'], repair: true })).repaired, 1500)
  assert.equal((await sync.verify({ collections: ['big'] })).ok, true)
  await sync.close()
  await assertSame(local, await driver(ATLAS), db, ['big'])
})

test('an engine closed while its full sync runs leaves it to the next one, which finishes it', async () => {
  const db = uniqueDb('fullclose')
  const opts = syncOptions(db, FAST)
  const local = await driver(LOCAL)
  const atlas = await driver(ATLAS)
  await local.db(db).collection('c').insertMany(Array.from({ length: 3000 }, (_, i) => ({ _id: i })))
  await atlas.db(db).collection('c').insertOne({ _id: 'atlas only' })
  const first = await createSync(opts)
  first.pause() // the run cannot drain: it is still running when the engine closes
  const { id } = await first.startFullSync({ collections: ['c'] })
  await waitFor(async () => (await first.fullSyncStatus()).documentsDone > 0, { what: 'the copy to start' })
  await first.close({ timeoutMs: 100 })
  const next = await createSync(opts)
  try {
    next.resume()
    const done = await waitFor(async () => {
      const s = await next.fullSyncStatus()
      return s.id === id && s.state !== 'running' ? s : null
    }, { timeoutMs: 60000, what: 'the full sync to be carried on' })
    assert.equal(done.state, 'done', JSON.stringify(done))
    await next.flush({ timeoutMs: 60000 })
    await assertSame(local, atlas, db, ['c'])
  } finally {
    await next.close()
  }
})

test('verify repair counts what it fixed: a copy Atlas refuses is no repair', async () => {
  const db = uniqueDb('verifyrefused')
  const local = await driver(LOCAL)
  const atlas = await driver(ATLAS)
  // Written past the addon; Atlas's collection was made by hand with a
  // validator the first document breaks.
  await local.db(db).collection('strict').insertMany([{ _id: 1, n: 'text' }, { _id: 2, n: 5 }])
  await atlas.db(db).createCollection('strict', { validator: { n: { $type: 'int' } } })
  const sync = await createSync(syncOptions(db, FAST))
  try {
    const report = await sync.verify({ collections: ['strict'], repair: true })
    assert.equal(report.differences, 2)
    assert.equal(report.repaired, 1, 'it used to say 2: the refused copy left the journal too')
    assert.equal(report.collections[0].repaired, 1)
    assert.equal((await sync.metrics()).deadLettered, 1)
    assert.deepEqual(await atlas.db(db).collection('strict').find().toArray(), [{ _id: 2, n: 5 }])
  } finally {
    await sync.close()
  }
})

test('one full sync per data directory: racing starts share it, another pm2 instance sees and joins it, other collections conflict', async () => {
  const db = uniqueDb('fullone')
  const [local, atlas] = await Promise.all([driver(LOCAL), driver(ATLAS)])
  await seedLocal(local, db, 'a', 300)
  await seedLocal(local, db, 'b', 10)
  const opts = syncOptions(db, FAST)
  const first = await createSync(opts)
  await waitFor(async () => (await first.metrics()).leader, { what: 'the first instance to lead' })
  const second = await createSync({ ...opts })
  try {
    // Paused, a run stays in its drain phase (running) until resumed.
    first.pause()
    // Two used to start two runs over one checkpoint, each finishing the other's.
    const starts = await Promise.all([
      first.startFullSync({ collections: ['a'] }),
      first.startFullSync({ collections: ['a'] }),
      second.startFullSync({ collections: ['a'] }),
    ])
    const { id } = starts[0]
    assert.deepEqual(starts.map((s) => s.id), [id, id, id])
    for (const s of [first, second]) {
      const status = await s.fullSyncStatus()
      assert.deepEqual([status.id, status.state], [id, 'running'], 'both instances see the one run')
      assert.equal((await s.metrics()).fullSync.id, id)
    }
    for (const s of [first, second]) {
      await assert.rejects(s.startFullSync({ collections: ['b'] }), (e) => {
        assert.equal(e.code, 'ERR_SYNC_CONFLICT')
        assert.match(e.message, new RegExp(`full sync ${id} is running.* over ${db}\\.a; it must end before one over ${db}\\.b starts`))
        return true
      })
    }
    // fullSync() from the instance that does not run it waits for that run.
    const joined = second.fullSync({ collections: ['a'] })
    await new Promise((r) => setTimeout(r, 300))
    first.resume()
    const done = await joined
    assert.deepEqual([done.id, done.state], [id, 'done'])
    const b = await second.fullSync({ collections: ['b'] })
    assert.equal(b.state, 'done', 'the next run starts once the first ended')
    assert.notEqual(b.id, id)
    await first.flush({ timeoutMs: 60000 })
    await assertSame(local, atlas, db, ['a', 'b'])
  } finally {
    await second.close()
    await first.close()
  }
})

test('an unreadable full-sync checkpoint is replaced by the next full sync', async () => {
  const db = uniqueDb('fullbad')
  const opts = syncOptions(db, FAST)
  await (await createSync(opts)).close() // creates the journal
  // Written as an older or a broken version might have left it.
  writeCheckpoint(opts.dataDir, '{not json')
  const sync = await createSync(opts)
  try {
    await sync.collection('c').insertOne({ _id: 1 })
    const status = await sync.fullSync({ collections: ['c'] })
    assert.equal(status.state, 'done', 'it used to fail: every start lost its compare-and-set to the unreadable value')
    await sync.flush({ timeoutMs: 30000 })
    await assertSame(await driver(LOCAL), await driver(ATLAS), db, ['c'])
  } finally {
    await sync.close()
  }
})

test('a full sync carried on after a crash looks for Atlas-only documents even if Atlas was empty when it began', async () => {
  const db = uniqueDb('fullresume')
  const opts = syncOptions(db, FAST)
  await (await createSync(opts)).close() // creates the journal
  const local = await driver(LOCAL)
  const atlas = await driver(ATLAS)
  await local.db(db).collection('c').insertMany([{ _id: 0 }, { _id: 1 }])
  // Copied before the crash, then deleted locally while sync was disabled:
  // only Atlas has it now.
  await atlas.db(db).collection('c').insertMany([{ _id: 0 }, { _id: -1, gone: true }])
  // Left by a process killed in the copy phase after _id 0, when Atlas's
  // collection had been empty (so its run would skip the extras scan).
  const lastId = [...require('bson').BSON.serialize({ _id: 0 })]
  const cp = {
    id: 'full-crashed', collections: [[db, 'c']], index: 0, phase: 'copy', last_id: lastId,
    documents_done: 1, documents_total: 2, started_at_ms: Date.now(), atlas_was_empty: true, owner: null,
  }
  writeCheckpoint(opts.dataDir, JSON.stringify(cp))
  const sync = await createSync(opts)
  try {
    const status = await sync.fullSync({ collections: ['c'] })
    assert.deepEqual([status.id, status.state], ['full-crashed', 'done'], JSON.stringify(status))
    await sync.flush({ timeoutMs: 30000 })
    await assertSame(local, atlas, db, ['c'])
  } finally {
    await sync.close()
  }
})

test('the leader carries on, within 30 s, a full sync whose process died while it led', async () => {
  const db = uniqueDb('fullorphan')
  const opts = syncOptions(db, FAST)
  const sync = await createSync(opts)
  try {
    await waitFor(async () => (await sync.metrics()).leader, { what: 'this engine to lead' })
    // Past its check at becoming leader (it looks every 500 ms until then).
    await new Promise((r) => setTimeout(r, 1500))
    const local = await driver(LOCAL)
    const atlas = await driver(ATLAS)
    await local.db(db).collection('o').insertMany([{ _id: 1 }, { _id: 2 }])
    await atlas.db(db).collection('o').insertOne({ _id: 'atlas only' })
    // Started by another pm2 instance, which died in the copy phase: its
    // owner is no live engine of the directory.
    const cp = {
      id: 'full-orphan', collections: [[db, 'o']], index: 0, phase: 'copy', last_id: null,
      documents_done: 0, documents_total: 2, started_at_ms: Date.now(), atlas_was_empty: false, owner: 'gone-4242',
    }
    writeCheckpoint(opts.dataDir, JSON.stringify(cp))
    // It used to wait for the next start of an engine.
    await waitFor(async () => {
      const ids = (await atlas.db(db).collection('o').find().sort({ _id: 1 }).toArray()).map((d) => d._id)
      return JSON.stringify(ids) === '[1,2]'
    }, { timeoutMs: 60000, everyMs: 500, what: 'the orphaned full sync to be carried on' })
  } finally {
    await sync.close()
  }
})

test('a verify asked again while it runs: the same options share it, other options conflict', async () => {
  const db = uniqueDb('verifyone')
  const opts = syncOptions(db, FAST)
  const sync = await createSync(opts)
  try {
    // Paused with a change queued, a verify waits (up to 30 s) for the queue to settle.
    sync.pause()
    await sync.collection('v').insertOne({ _id: 1 })
    const { id } = await sync.startVerify({ collections: ['v'] })
    assert.equal((await sync.startVerify({ collections: ['v'] })).id, id)
    // It used to answer with the running id, dropping repair: true unseen.
    await assert.rejects(sync.startVerify({ collections: ['v'], repair: true }), (e) => {
      assert.equal(e.code, 'ERR_SYNC_CONFLICT')
      assert.match(e.message, new RegExp(`verify ${id} is running over v, repair false; it must end before one over v, repair true starts`))
      return true
    })
    await assert.rejects(sync.verify({ collections: ['v'] }), { code: 'ERR_SYNC_CONFLICT' })
    // Another pm2 instance of the data directory (GET /verify may reach it) sees the run.
    const other = await createSync(opts)
    try {
      const seen = await other.verifyStatus()
      assert.deepEqual([seen.id, seen.state], [id, 'running'], 'it used to show its own: idle')
      sync.resume()
      const done = await waitFor(async () => {
        const s = await sync.verifyStatus()
        return s.state === 'done' ? s : null
      }, { what: 'the verify to end' })
      assert.equal(done.id, id)
      assert.equal(done.report.ok, true)
      const there = await other.verifyStatus()
      assert.deepEqual([there.id, there.state, there.report.ok], [id, 'done', true])
      assert.deepEqual(there.report.collections[0].missing, done.report.collections[0].missing)
    } finally {
      await other.close()
    }
  } finally {
    await sync.close()
  }
})

test('full sync and verify refuse excluded collections and bad options', async () => {
  const db = uniqueDb('refuse')
  const sync = await createSync(syncOptions(db, { ...FAST, excludedCollections: ['secret'] }))
  await assert.rejects(sync.verify({ collections: ['secret'] }), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /excluded/ })
  await assert.rejects(sync.startFullSync({ collections: 'a' }), { code: 'ERR_SYNC_INVALID_ARGUMENT' })
  await assert.rejects(sync.verify({ repiar: true }), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /repiar/ })
  await sync.close()
  const off = await createSync({ localUri: withDb(LOCAL, db), enabled: false, logLevel: 'off' })
  await assert.rejects(off.verify(), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /SYNC_ENABLED/ })
  await off.close()
})
