'use strict'
// Collections: db.createCollection() behaves as the official driver's on the
// local server, and the engine gives Atlas's collection of a replicated
// namespace the same kind and the options that decide how it stores
// documents (capped, collation, clustered index, a view's definition),
// re-creating it when documents reached Atlas first.
const { test, after } = require('node:test')
const assert = require('node:assert/strict')
const { createSync, SyncError, Collection } = require('..')
const { LOCAL, ATLAS, uniqueDb, driver, closeDrivers, syncOptions } = require('./helpers')

after(closeDrivers)

const FAST = { takeoverGraceMs: 200, retryBaseMs: 20, retryMaxMs: 200 }

/** `listCollections` of a database as `{ name: { type, options } }`. */
async function collections(client, db) {
  const out = {}
  for (const c of await client.db(db).listCollections().toArray()) {
    if (c.name.startsWith('system.')) continue
    out[c.name] = { type: c.type, options: c.options }
  }
  return out
}

/** Whether `client`'s server evicts a capped collection down to `max` within one insert of several documents, as MongoDB does. */
async function evictsWithinOneInsert(client) {
  const probe = client.db(uniqueDb('cappedprobe'))
  const c = await probe.createCollection('c', { capped: true, size: 65536, max: 3 })
  await c.insertOne({ _id: 1 })
  await c.insertMany([{ _id: 2 }, { _id: 3 }, { _id: 4 }, { _id: 5 }])
  const n = await c.countDocuments()
  await probe.dropDatabase()
  return n === 3
}

async function docs(client, db, coll) {
  return client.db(db).collection(coll).find().sort({ _id: 1 }).toArray()
}

test('createCollection answers as the driver does, and Atlas gets a capped collection, a collation, a clustered collection and a view', async () => {
  const db = uniqueDb('coll')
  const sync = await createSync(syncOptions(db, FAST))
  const d = sync.db(db)
  const capped = await d.createCollection('capped', { capped: true, size: 65536, max: 3 })
  assert.equal(capped.collectionName, 'capped')
  assert.equal(capped.dbName, db)
  for (let i = 1; i <= 5; i++) await capped.insertOne({ _id: i, n: i })
  const fr = await d.createCollection('fr', { collation: { locale: 'fr', strength: 2 } })
  await fr.insertOne({ _id: 'a', name: 'Élodie' })
  const clustered = await d.createCollection('events', {
    clusteredIndex: { key: { _id: 1 }, unique: true },
    expireAfterSeconds: 86400,
  })
  await clustered.insertOne({ _id: 1, at: new Date() })
  await d.createCollection('recent', { viewOn: 'capped', pipeline: [{ $match: { n: { $gte: 4 } } }] })
  // Validators stay local: Atlas stores what local accepted, including a
  // document written with bypassDocumentValidation.
  const validated = await d.createCollection('validated', { validator: { n: { $type: 'int' } } })
  await validated.insertOne({ _id: 1, n: 'not an int' }, { bypassDocumentValidation: true })
  await sync.flush({ timeoutMs: 30000 })

  const local = await driver(LOCAL)
  const atlas = await driver(ATLAS)
  const want = await collections(local, db)
  const got = await collections(atlas, db)
  assert.deepEqual(Object.keys(got).sort(), ['capped', 'events', 'fr', 'recent', 'validated'])
  assert.equal(want.capped.options.capped, true, 'the local one is the driver\'s')
  for (const f of ['capped', 'size', 'max']) assert.equal(got.capped.options[f], want.capped.options[f], f)
  assert.equal(got.fr.options.collation.locale, 'fr')
  assert.equal(got.fr.options.collation.strength, 2)
  assert.deepEqual(got.events.options.clusteredIndex.key, { _id: 1 })
  assert.equal(got.events.options.expireAfterSeconds, 86400)
  assert.equal(got.recent.type, 'view')
  assert.equal(got.recent.options.viewOn, 'capped')
  assert.deepEqual(got.recent.options.pipeline, [{ $match: { n: { $gte: 4 } } }])
  assert.equal(got.validated.options.validator, undefined, 'no validator on Atlas')

  // The capped collections hold the same last three documents, and the view
  // reads them on Atlas as locally. The Python test server keeps more than
  // `max` documents when one insert command of several documents overflows
  // a capped collection (MongoDB evicts down to `max`, as secantusd-rs
  // does), and the engine copies inserts in batches: there, only the newest
  // `max` of Atlas's are compared.
  const localCapped = await docs(local, db, 'capped')
  assert.deepEqual(localCapped, [3, 4, 5].map((i) => ({ _id: i, n: i })))
  const atlasCapped = await docs(atlas, db, 'capped')
  if (await evictsWithinOneInsert(atlas)) {
    assert.deepEqual(atlasCapped, localCapped)
    assert.deepEqual(await docs(atlas, db, 'recent'), await docs(local, db, 'recent'))
  } else {
    assert.deepEqual(atlasCapped.slice(-3), localCapped)
  }
  assert.deepEqual(await docs(atlas, db, 'validated'), [{ _id: 1, n: 'not an int' }])
  assert.deepEqual(await docs(atlas, db, 'events'), await docs(local, db, 'events'))
  const m = await sync.metrics()
  assert.equal(m.deadLettered, 0)
  assert.equal(m.lastError, null, JSON.stringify(m.lastError))
  await sync.close()
})

test('writes to a view are refused as the driver\'s are, and leave Atlas nothing to copy: flush at once, no dead letter', async (t) => {
  // A refused write still journals its _ids (its outcome is copied as a
  // state); Atlas's view refuses that copy too, which used to be retried
  // SYNC_MAX_RETRIES times (about a minute) and then dead-lettered.
  const db = uniqueDb('viewwrite')
  const sync = await createSync(syncOptions(db))
  const d = sync.db(db)
  const theirs = (await driver(LOCAL)).db(db)
  try {
    await d.collection('src').insertOne({ _id: 5, a: 1 })
    await d.createCollection('vw', { viewOn: 'src', pipeline: [] })
    await sync.flush({ timeoutMs: 30000 })
    const err = (p) => p.then(() => null, (e) => ({ name: e.name, code: e.code }))
    // MongoDB refuses any write to a view (166); the Python SecantusDB
    // takes an insert into one.
    const probe = await err(theirs.collection('vw').insertOne({ _id: 'probe' }))
    if (!probe || probe.code !== 166) return t.skip('this server accepts writes to a view, which MongoDB refuses (code 166)')
    for (const [what, call] of [
      ['insertOne', (c) => c.insertOne({ _id: 6 })],
      ['updateOne', (c) => c.updateOne({ _id: 5 }, { $set: { b: 1 } })],
      ['deleteMany', (c) => c.deleteMany({})],
      ['bulkWrite', (c) => c.bulkWrite([{ insertOne: { document: { _id: 7 } } }])],
    ]) {
      const want = await err(call(theirs.collection('vw')))
      assert.equal(want && want.code, 166, `the premise: the driver's ${what} is refused`)
      assert.deepEqual(await err(call(d.collection('vw'))), want, what)
    }
    await sync.flush({ timeoutMs: 5000 })
    const m = await sync.metrics()
    assert.equal(m.deadLettered, 0, JSON.stringify(m.lastError))
    assert.equal((await sync.health()).status, 'healthy')
    assert.deepEqual(await (await driver(ATLAS)).db(db).collection('src').find().toArray(), [{ _id: 5, a: 1 }])
  } finally {
    await sync.close()
  }
})

test('db.listCollections(), db.collections(), collection.options() and isCapped() read the local server as the driver\'s do', async () => {
  const db = uniqueDb('listcoll')
  const sync = await createSync(syncOptions(db, FAST))
  try {
    const d = sync.db(db)
    await d.collection('plain').insertOne({ _id: 1 })
    await d.createCollection('capped', { capped: true, size: 4096 })
    await d.createCollection('view', { viewOn: 'plain', pipeline: [] })
    const local = (await driver(LOCAL)).db(db)
    const byName = (l) => [...l].sort((a, b) => a.name.localeCompare(b.name))
    const cases = [
      [{}, {}],
      [{ name: 'capped' }, {}],
      [{}, { nameOnly: true }],
      [{ type: 'view' }, { maxTimeMS: 5000 }],
    ]
    for (const [filter, options] of cases) {
      const ours = byName(await d.listCollections(filter, options).toArray())
      const theirs = byName(await local.listCollections(filter, options).toArray())
      assert.deepEqual(ours, theirs, `listCollections(${JSON.stringify(filter)}, ${JSON.stringify(options)})`)
    }
    const listed = (await d.listCollections().toArray()).map((c) => c.name).filter((n) => !n.startsWith('system.'))
    assert.deepEqual(listed.sort(), ['capped', 'plain', 'view'], 'the premise')
    const names = (l) => l.map((c) => c.collectionName).sort()
    assert.deepEqual(names(await d.collections()), names(await local.collections()))
    assert.equal((await d.collections()).find((c) => c.collectionName === 'plain') instanceof Collection, true)
    for await (const c of d.listCollections({ name: 'plain' })) assert.equal(c.type, 'collection')
    // collection.options() and isCapped(), as the driver's.
    for (const name of ['plain', 'capped', 'view']) {
      assert.deepEqual(await d.collection(name).options(), await local.collection(name).options(), `${name}.options()`)
      assert.equal(await d.collection(name).isCapped(), await local.collection(name).isCapped(), `${name}.isCapped()`)
    }
    assert.equal(await d.collection('capped').isCapped(), true, 'the premise')
    const missing = await d.collection('missing').options().then(() => null, (e) => e)
    const theirs = await local.collection('missing').options().then(() => null, (e) => e)
    assert.equal(missing && missing.name, 'MongoAPIError')
    assert.equal(missing.message, theirs.message)
    assert.throws(() => d.listCollections('plain'), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /filter must be an object/ })
    assert.throws(() => d.listCollections({}, { session: {} }), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /unknown option 'session'/ })
  } finally {
    await sync.close()
  }
})

test('a capped collection keeps the same documents on Atlas when its inserts are copied in many batches', async () => {
  // A capped collection keeps the documents inserted last: Atlas's keeps
  // the same ones only if the copies land in the local order. Small
  // batches and several workers would let two batches land swapped
  // (before the fix, Atlas ended with an older window in 4 rounds of 4).
  const db = uniqueDb('capped_order')
  const sync = await createSync(syncOptions(db, { ...FAST, batchSize: 5, workers: 4 }))
  try {
    const c = await sync.db(db).createCollection('log', { capped: true, size: 65536, max: 20 })
    for (let i = 0; i < 300; i++) await c.insertOne({ _id: i, i })
    await sync.flush({ timeoutMs: 30000 })
    const local = await driver(LOCAL)
    const atlas = await driver(ATLAS)
    const want = await docs(local, db, 'log')
    assert.deepEqual(want.map((d) => d._id), Array.from({ length: 20 }, (_, k) => 280 + k), 'the premise: local kept the last 20')
    assert.deepEqual(await docs(atlas, db, 'log'), want)
    assert.ok((await sync.metrics()).batches >= 10, 'the premise: many batches')
  } finally {
    await sync.close()
  }
})

test('a capped collection keeps its order on Atlas when one batch holds new documents and changed ones', async () => {
  // A batch copied its new documents (insertMany) before its changed ones
  // (replace-with-upsert): Atlas's capped collection got another insertion
  // order, and then evicted another document than local did.
  const db = uniqueDb('capped_mixed')
  const sync = await createSync(syncOptions(db, FAST))
  const [local, atlas] = await Promise.all([driver(LOCAL), driver(ATLAS)])
  const natural = async (client) => client.db(db).collection('log').find().toArray()
  try {
    const c = await sync.db(db).createCollection('log', { capped: true, size: 100000, max: 3 })
    await sync.flush({ timeoutMs: 30000 })
    await sync.pause() // so the four writes are copied as one batch
    await c.insertMany([{ _id: 1, s: 'x' }, { _id: 2, s: 'x' }, { _id: 3, s: 'x' }])
    await c.updateOne({ _id: 1 }, { $set: { s: 'y' } })
    await sync.resume()
    await sync.flush({ timeoutMs: 30000 })
    assert.deepEqual(await natural(atlas), await natural(local))
    await c.insertOne({ _id: 4, s: 'x' })
    await sync.flush({ timeoutMs: 30000 })
    assert.deepEqual((await natural(local)).map((d) => d._id), [2, 3, 4], 'the premise: local evicted the first inserted')
    assert.deepEqual(await natural(atlas), await natural(local))
  } finally {
    await sync.close()
  }
})

test('a collection Atlas already has without the local options is created again with them and keeps exactly the local documents', async () => {
  const db = uniqueDb('collre')
  const atlas = await driver(ATLAS)
  // On Atlas first, plain: made by hand, or documents copied before the
  // collection's options (the replicator is faster than the copier).
  await atlas.db(db).collection('late').insertMany([{ _id: 'atlas only' }, { _id: 1, v: 'old' }])
  const sync = await createSync(syncOptions(db, FAST))
  const late = await sync.db(db).createCollection('late', { capped: true, size: 100000 })
  await late.insertMany([{ _id: 1, v: 'new' }, { _id: 2, v: 'new' }])
  await sync.flush({ timeoutMs: 30000 })
  const got = (await collections(atlas, db)).late
  assert.equal(got.options.capped, true, JSON.stringify(got))
  assert.equal(got.options.size, 100000)
  assert.deepEqual(await docs(atlas, db, 'late'), [{ _id: 1, v: 'new' }, { _id: 2, v: 'new' }])

  // A plain local collection leaves a capped Atlas one alone (made by hand
  // there, for reporting say): only the local options ask for a re-creation.
  await atlas.db(db).createCollection('mine', { capped: true, size: 8192 })
  await atlas.db(db).collection('mine').insertOne({ _id: 'kept' })
  await sync.db(db).createCollection('mine')
  await sync.db(db).collection('mine').insertOne({ _id: 1 })
  await sync.flush({ timeoutMs: 30000 })
  assert.equal((await collections(atlas, db)).mine.options.capped, true)
  assert.deepEqual(await docs(atlas, db, 'mine'), [{ _id: 1 }, { _id: 'kept' }])

  // Dropped and created again plain before the leader saw the drop (paused):
  // Atlas's capped one goes too, and the new one holds the new documents.
  const cycle = await sync.db(db).createCollection('cycle', { capped: true, size: 4096 })
  await cycle.insertMany([{ _id: 1, v: 'old' }, { _id: 2, v: 'old' }])
  await sync.flush({ timeoutMs: 30000 })
  assert.equal((await collections(atlas, db)).cycle.options.capped, true)
  await sync.pause()
  await cycle.drop()
  await sync.db(db).createCollection('cycle')
  await cycle.insertOne({ _id: 2, v: 'new' })
  await sync.resume()
  await sync.flush({ timeoutMs: 30000 })
  assert.notEqual((await collections(atlas, db)).cycle.options.capped, true, 'plain on Atlas too')
  assert.deepEqual(await docs(atlas, db, 'cycle'), [{ _id: 2, v: 'new' }])
  const m = await sync.metrics()
  assert.equal(m.deadLettered, 0)
  assert.equal(m.lastError, null, JSON.stringify(m.lastError))
  await sync.close()
})

test('a full sync gives Atlas the options of collections made locally without the addon', async () => {
  const db = uniqueDb('collfull')
  const local = await driver(LOCAL)
  await local.db(db).createCollection('made', { capped: true, size: 32768, max: 10 })
  await local.db(db).collection('made').insertMany([{ _id: 1 }, { _id: 2 }])
  const sync = await createSync(syncOptions(db, FAST))
  const r = await sync.fullSync()
  assert.equal(r.state, 'done', JSON.stringify(r))
  await sync.flush({ timeoutMs: 30000 })
  const atlas = await driver(ATLAS)
  const got = (await collections(atlas, db)).made
  assert.equal(got.options.capped, true, JSON.stringify(got))
  assert.equal(got.options.max, 10)
  assert.deepEqual(await docs(atlas, db, 'made'), [{ _id: 1 }, { _id: 2 }])
  await sync.close()
})

test('db.command(), db.stats() and db.admin() answer as the driver\'s on the local server; a command that could change data is refused unsent while writes are replicated', async () => {
  const db = uniqueDb('command')
  const sync = await createSync(syncOptions(db, FAST))
  const d = sync.db(db)
  const local = await driver(LOCAL)
  const theirs = local.db(db)
  try {
    await d.collection('c').insertMany([{ _id: 1, n: 1 }, { _id: 2, n: 2 }, { _id: 3, n: 3 }])
    assert.equal((await d.command({ ping: 1 })).ok, 1)
    // Read-only commands answer as the driver's own db.command does.
    const count = { count: 'c', query: { n: { $gte: 2 } } }
    assert.equal((await d.command(count)).n, 2)
    assert.equal((await d.command(count)).n, (await theirs.command(count)).n)
    const distinct = { distinct: 'c', key: 'n', query: {} }
    assert.deepEqual((await d.command(distinct)).values, (await theirs.command(distinct)).values)
    const find = { find: 'c', filter: { _id: 2 } }
    assert.deepEqual((await d.command(find)).cursor.firstBatch, [{ _id: 2, n: 2 }])
    const agg = { aggregate: 'c', pipeline: [{ $group: { _id: null, total: { $sum: '$n' } } }], cursor: {} }
    assert.deepEqual((await d.command(agg)).cursor.firstBatch, [{ _id: null, total: 6 }])
    const stats = await d.stats()
    const driverStats = await theirs.stats()
    for (const k of ['db', 'collections', 'objects']) assert.deepEqual(stats[k], driverStats[k], `stats().${k}`)
    assert.equal(stats.objects, 3, 'the premise')
    assert.equal((await d.stats({ scale: 1024 })).ok, 1)
    const admin = d.admin()
    assert.equal((await admin.ping()).ok, 1)
    assert.equal((await admin.buildInfo()).version, (await local.db('admin').admin().buildInfo()).version)
    const dbs = await admin.listDatabases({ nameOnly: true })
    assert.ok(dbs.databases.some((x) => x.name === db), `listDatabases lists ${db}`)
    assert.equal((await sync.db('admin').command({ hello: 1 })).isWritablePrimary, (await local.db('admin').command({ hello: 1 })).isWritablePrimary)
    // A read-only command the server rejects rejects with the server's error.
    const bad = { count: 'c', query: { $nope: 1 } }
    const ours = await d.command(bad).then(() => null, (e) => e)
    const driverErr = await theirs.command(bad).then(() => null, (e) => e)
    assert.equal(ours && ours.name, 'MongoServerError')
    assert.equal(ours.code, driverErr.code)

    // Commands that could write are refused before they are sent: what they
    // changed would reach local and never Atlas.
    const refused = [
      [{ insert: 'c', documents: [{ _id: 99 }] }, /command: 'insert' is not a read-only command/],
      [{ delete: 'c', deletes: [{ q: {}, limit: 0 }] }, /'delete'/],
      [{ dropDatabase: 1 }, /'dropDatabase'/],
      [{ aggregate: 'c', pipeline: [{ $out: 'copy' }], cursor: {} }, /\$out stage writes/],
      [{ explain: { aggregate: 'c', pipeline: [{ $merge: { into: 'copy' } }], cursor: {} } }, /\$merge stage writes/],
    ]
    for (const [cmd, message] of refused) {
      await assert.rejects(d.command(cmd), (e) => {
        assert.ok(e instanceof SyncError, e.message)
        assert.equal(e.code, 'ERR_SYNC_INVALID_ARGUMENT')
        assert.match(e.message, message)
        return true
      }, JSON.stringify(cmd))
    }
    await assert.rejects(admin.command({ validate: 'c' }), /'validate' is not a read-only command/)
    assert.deepEqual(await theirs.collection('c').find().sort({ _id: 1 }).toArray(), [{ _id: 1, n: 1 }, { _id: 2, n: 2 }, { _id: 3, n: 3 }], 'nothing refused reached local')
    assert.deepEqual((await theirs.listCollections({ name: 'copy' }).toArray()), [], 'the $out did not run')
    // Bad input is refused by name.
    await assert.rejects(d.command(null), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /command must be a non-empty object/ })
    await assert.rejects(d.command({}), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /command must be a non-empty object/ })
    await assert.rejects(d.command({ ping: 1 }, { readPreference: 'secondary' }), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /unknown option 'readPreference' \(reads always go to the local MongoDB\)/ })
    await assert.rejects(d.stats({ scale: 1, session: {} }), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /stats: unknown option 'session'/ })

    await sync.flush({ timeoutMs: 30000 })
    const atlas = await driver(ATLAS)
    assert.deepEqual(await atlas.db(db).collection('c').find().sort({ _id: 1 }).toArray(), [{ _id: 1, n: 1 }, { _id: 2, n: 2 }, { _id: 3, n: 3 }])
  } finally {
    await sync.close()
  }
  // With sync disabled nothing is replicated, so any command runs, as with the driver.
  const off = await createSync({ ...syncOptions(db), enabled: false })
  try {
    assert.equal((await off.db(db).command({ insert: 'c', documents: [{ _id: 4, n: 4 }] })).n, 1)
    assert.equal(await theirs.collection('c').countDocuments({ _id: 4 }), 1)
  } finally {
    await off.close()
  }
})

test('rename() and db.renameCollection() answer as the driver\'s, and Atlas follows: the old name goes, the new one holds exactly the local documents and indexes', async (t) => {
  const db = uniqueDb('rename')
  const sync = await createSync(syncOptions(db, { ...FAST, excludedCollections: ['private'] }))
  const d = sync.db(db)
  const local = await driver(LOCAL)
  const atlas = await driver(ATLAS)
  try {
    const orders = d.collection('orders')
    await orders.insertMany(Array.from({ length: 50 }, (_, i) => ({ _id: i, n: i })))
    await orders.createIndex({ n: 1 })
    // The Python SecantusDB now and then still lists the source of a rename
    // that succeeded, empty, right after it returned (about once in 20 runs
    // of this file; MongoDB's rename is atomic). Atlas then rightly keeps a
    // collection of that name as well, and what follows cannot hold.
    const leftBehind = async (source) => {
      const left = Object.keys(await collections(local, db)).includes(source)
      if (left) t.skip(`this server still listed '${source}' right after renaming it, as an empty collection`)
      return left
    }
    // Atlas has a 'target' of its own documents, which a dropTarget rename must not leave behind.
    await d.collection('target').insertMany([{ _id: 'old1' }, { _id: 'old2' }])
    await sync.flush({ timeoutMs: 30000 })
    assert.equal(await atlas.db(db).collection('orders').countDocuments(), 50, 'the premise')

    const archive = await orders.rename('archive')
    if (await leftBehind('orders')) return
    assert.ok(archive instanceof Collection)
    assert.equal(archive.collectionName, 'archive')
    await archive.insertOne({ _id: 50, n: 50 })
    await archive.updateOne({ _id: 1 }, { $set: { n: -1 } })
    const moved = await d.renameCollection('archive', 'target', { dropTarget: true })
    if (await leftBehind('archive')) return
    assert.equal(moved.collectionName, 'target')
    await moved.deleteOne({ _id: 2 })
    await sync.flush({ timeoutMs: 30000 })
    const names = async (client) => (await collections(client, db))
    assert.deepEqual(Object.keys(await names(atlas)).sort(), Object.keys(await names(local)).sort())
    assert.deepEqual(Object.keys(await names(local)).sort(), ['target'], 'the premise')
    assert.deepEqual(await docs(atlas, db, 'target'), await docs(local, db, 'target'))
    assert.equal((await docs(atlas, db, 'target')).length, 50)
    const indexNames = async (client) => (await client.db(db).collection('target').indexes()).map((i) => i.name).sort()
    assert.deepEqual(await indexNames(atlas), await indexNames(local))
    assert.deepEqual(await indexNames(local), ['_id_', 'n_1'], 'the premise')

    // Errors are the server's, as with the driver's rename, and lose nothing:
    // not the source, not the target, not a collection only Atlas has under
    // the name a failed rename asked for.
    await d.collection('other').insertOne({ _id: 1 })
    await atlas.db(db).collection('reports').insertOne({ _id: 'atlas only' })
    await sync.flush({ timeoutMs: 30000 })
    const copiedBefore = (await sync.metrics()).synced
    const err = (p) => p.then(() => null, (e) => ({ name: e.name, code: e.code }))
    assert.deepEqual(await err(d.collection('other').rename('target')), await err(local.db(db).collection('other').rename('target')))
    assert.equal((await err(d.collection('other').rename('target'))).code, 48, 'the premise: the target exists')
    assert.deepEqual(await err(d.collection('missing').rename('reports')), await err(local.db(db).collection('missing').rename('reports')))
    assert.equal((await err(d.collection('missing').rename('reports'))).code, 26, 'the premise: no such source')
    await sync.flush({ timeoutMs: 30000 })
    assert.equal((await sync.metrics()).synced, copiedBefore, 'a refused rename copies nothing again')
    assert.deepEqual(await docs(atlas, db, 'other'), [{ _id: 1 }])
    assert.deepEqual(await docs(atlas, db, 'target'), await docs(local, db, 'target'))
    assert.deepEqual(await docs(atlas, db, 'reports'), [{ _id: 'atlas only' }])
    // Renames into and out of an excluded collection: what is replicated follows.
    await d.collection('private').insertMany([{ _id: 'p1' }, { _id: 'p2' }])
    await d.collection('private').rename('public')
    if (await leftBehind('private')) return
    await d.collection('other').rename('private')
    if (await leftBehind('other')) return
    await sync.flush({ timeoutMs: 30000 })
    assert.deepEqual(Object.keys(await names(atlas)).sort(), ['public', 'reports', 'target'])
    assert.deepEqual(await docs(atlas, db, 'public'), [{ _id: 'p1' }, { _id: 'p2' }])
    // Bad input is refused by name, before any call.
    await assert.rejects(d.collection('target').rename(''), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /rename: the new name must be a non-empty string/ })
    await assert.rejects(d.collection('target').rename('x', { session: {} }), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /rename: unknown option 'session'/ })
    await assert.rejects(d.collection('target').rename('x', { dropTarget: 'yes' }), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /'dropTarget' must be a boolean/ })
    await assert.rejects(d.collection('target').rename('a$b'), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /invalid collection name/ })
  } finally {
    await sync.close()
  }
  // With sync disabled the rename is local only.
  const off = await createSync({ ...syncOptions(db), enabled: false })
  try {
    await off.db(db).collection('public').rename('renamedOffline')
    assert.deepEqual(Object.keys(await collections(local, db)).sort(), ['private', 'renamedOffline', 'target'])
  } finally {
    await off.close()
  }
})

test('db.dropDatabase() answers as the driver\'s, and Atlas drops what was replicated of it, keeping what only Atlas has', async () => {
  const db = uniqueDb('dropdb')
  const sync = await createSync(syncOptions(db, { ...FAST, excludedCollections: ['private'] }))
  const d = sync.db(db)
  const local = await driver(LOCAL)
  const atlas = await driver(ATLAS)
  try {
    await d.collection('a').insertMany([{ _id: 1 }, { _id: 2 }])
    await d.collection('b').createIndex({ x: 1 })
    await d.createCollection('v', { viewOn: 'a', pipeline: [] })
    await d.collection('private').insertOne({ _id: 'local only' })
    await atlas.db(db).collection('atlasOnly').insertOne({ _id: 'kept' })
    await atlas.db(db).collection('private').insertOne({ _id: 'not ours' })
    await sync.flush({ timeoutMs: 30000 })
    assert.deepEqual(Object.keys(await collections(atlas, db)).sort(), ['a', 'atlasOnly', 'b', 'private', 'v'], 'the premise')

    assert.equal(await d.dropDatabase(), true)
    // The Python test server's dropDatabase can leave collections behind
    // when another connection reads the database at that moment (its
    // storage.py drop_database notes the snapshot that hides them): here the
    // engine's index copier does, woken by the drop's marks. MongoDB drops
    // them all. The test asks again, as an app that checked would; Atlas
    // follows local either way.
    for (let i = 0; i < 3 && Object.keys(await collections(local, db)).length > 0; i++) await d.dropDatabase()
    assert.deepEqual(Object.keys(await collections(local, db)), [], 'dropped locally')
    await d.collection('a').insertOne({ _id: 3 })
    await sync.flush({ timeoutMs: 30000 })
    assert.deepEqual(Object.keys(await collections(atlas, db)).sort(), ['a', 'atlasOnly', 'private'])
    assert.deepEqual(await docs(atlas, db, 'a'), [{ _id: 3 }], 'the old documents went with the drop')
    assert.deepEqual(await docs(atlas, db, 'private'), [{ _id: 'not ours' }])
    // The driver answers the same on a database that does not exist.
    assert.equal(await sync.db(uniqueDb('nothing')).dropDatabase(), await local.db(uniqueDb('nothing')).dropDatabase())
    await assert.rejects(d.dropDatabase({ session: {} }), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /dropDatabase: unknown option 'session'/ })
  } finally {
    await sync.close()
  }
})

test('createCollection rejects bad input as the driver does, leaves excluded collections local and works with sync disabled', async () => {
  const db = uniqueDb('collbad')
  const sync = await createSync(syncOptions(db, { ...FAST, excludedCollections: ['private'] }))
  const d = sync.db(db)
  // The server's errors, with their codes, as the driver rejects with them.
  await assert.rejects(d.createCollection('c', { capped: true }), (e) => {
    assert.equal(e.name, 'MongoServerError')
    assert.equal(e.code, 72, e.message)
    return true
  })
  await d.createCollection('c', { capped: true, size: 4096 })
  await assert.rejects(d.createCollection('c', { collation: { locale: 'fr' } }), (e) => {
    assert.equal(e.name, 'MongoServerError')
    assert.equal(e.code, 48, e.message)
    return true
  })
  // Options the engine does not handle are refused by name, before any call.
  await assert.rejects(d.createCollection('c', { pkFactory: { createPk: () => 1 } }), (e) => {
    assert.ok(e instanceof SyncError)
    assert.equal(e.code, 'ERR_SYNC_INVALID_ARGUMENT')
    assert.match(e.message, /createCollection: unknown option 'pkFactory'/)
    return true
  })
  await assert.rejects(d.createCollection('c', 'capped'), /createCollection: options must be an object/)
  await assert.rejects(d.createCollection(''), /collection name/)

  await d.createCollection('private', { capped: true, size: 4096 })
  await sync.flush({ timeoutMs: 30000 })
  const atlas = await driver(ATLAS)
  assert.deepEqual(Object.keys(await collections(atlas, db)), ['c'], 'the excluded collection stays local')
  await sync.close()

  const off = await createSync({ ...syncOptions(db), enabled: false })
  const v = await off.db(db).createCollection('offline', { capped: true, size: 4096 })
  await v.insertOne({ _id: 1 })
  const local = await driver(LOCAL)
  assert.equal((await collections(local, db)).offline.options.capped, true)
  await off.close()
})

test('verify reports a collection whose options Atlas lacks, and repair creates it again with them', async () => {
  const db = uniqueDb('collver')
  const local = await driver(LOCAL)
  const atlas = await driver(ATLAS)
  // Made without the addon on both sides: capped locally, plain on Atlas.
  await local.db(db).createCollection('log', { capped: true, size: 16384 })
  await local.db(db).collection('log').insertMany([{ _id: 1 }, { _id: 2 }])
  await atlas.db(db).collection('log').insertMany([{ _id: 1 }, { _id: 2 }])
  await local.db(db).collection('plain').insertOne({ _id: 1 })
  await atlas.db(db).collection('plain').insertOne({ _id: 1 })
  const sync = await createSync(syncOptions(db, FAST))
  const report = await sync.verify()
  assert.equal(report.ok, false)
  assert.equal(report.differences, 0)
  assert.equal(report.optionDifferences, 1)
  const by = Object.fromEntries(report.collections.map((c) => [c.ns, c]))
  assert.deepEqual(by[`${db}.log`].optionsDifferent, ['capped'])
  assert.deepEqual(by[`${db}.plain`].optionsDifferent, [])

  const fixed = await sync.verify({ repair: true })
  assert.equal(fixed.optionsRepaired, 1, JSON.stringify(fixed))
  // The documents were compared after Atlas's collection was filled again:
  // they are there when repair resolves.
  assert.equal(fixed.differences, 0, JSON.stringify(fixed))
  assert.equal((await collections(atlas, db)).log.options.capped, true)
  assert.deepEqual(await docs(atlas, db, 'log'), [{ _id: 1 }, { _id: 2 }])
  const again = await sync.verify()
  assert.equal(again.ok, true, JSON.stringify(again))
  await sync.close()
})
