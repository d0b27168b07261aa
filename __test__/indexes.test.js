'use strict'
// Indexes: the Collection's index methods behave as the official driver's on
// the local server, and the engine makes Atlas's indexes of a replicated
// collection match the local ones (created, re-created when they differ,
// dropped when dropped through the addon), durably and by full sync too.
const { test, after } = require('node:test')
const assert = require('node:assert/strict')
const { createSync } = require('..')
const { LOCAL, ATLAS, uniqueDb, driver, closeDrivers, syncOptions, waitFor } = require('./helpers')

after(closeDrivers)

const FAST = { takeoverGraceMs: 200, retryBaseMs: 20, retryMaxMs: 200 }

/** `{ name: definition }` without what each server adds of its own. */
async function indexMap(client, db, coll) {
  const out = {}
  let list
  try {
    list = await client.db(db).collection(coll).indexes()
  } catch (e) {
    if (e.code === 26) return out
    throw e
  }
  for (const { v, ns, ...def } of list) out[def.name] = def
  return out
}

async function atlasHas(db, coll, expected) {
  const atlas = await driver(ATLAS)
  return waitFor(
    async () => {
      const got = await indexMap(atlas, db, coll)
      return expected(got) ? got : null
    },
    { what: `Atlas indexes of ${db}.${coll}` },
  )
}

test('createIndex and createIndexes answer as the driver does, and Atlas gets the same indexes', async () => {
  const db = uniqueDb('idx')
  const sync = await createSync(syncOptions(db, FAST))
  const c = sync.db(db).collection('users')
  await c.insertOne({ email: 'a@x', age: 3, at: new Date() })
  assert.equal(await c.createIndex({ email: 1 }, { unique: true }), 'email_1')
  assert.equal(await c.createIndex('age'), 'age_1')
  const names = await c.createIndexes([
    { key: { age: -1, email: 1 }, name: 'age_email' },
    { key: { at: 1 }, expireAfterSeconds: 3600 },
    { key: { email: 1, age: 1 }, partialFilterExpression: { age: { $gt: 1 } } },
  ])
  assert.deepEqual(names, ['age_email', 'at_1', 'email_1_age_1'])

  const local = await driver(LOCAL)
  const want = await indexMap(local, db, 'users')
  assert.deepEqual(Object.keys(want).sort(), ['_id_', 'age_1', 'age_email', 'at_1', 'email_1', 'email_1_age_1'])
  assert.equal(want.email_1.unique, true)
  // The key order of a compound index is kept.
  assert.deepEqual(Object.keys(want.age_email.key), ['age', 'email'])

  // Our reads of them are the driver's.
  assert.deepEqual(await c.indexes(), await local.db(db).collection('users').indexes())
  assert.deepEqual(await c.listIndexes().toArray(), await local.db(db).collection('users').listIndexes().toArray())
  assert.deepEqual(await c.indexInformation(), await local.db(db).collection('users').indexInformation())
  assert.equal(await c.indexExists(['email_1', 'at_1']), true)
  assert.equal(await c.indexExists('nope_1'), false)

  // flush() waits for index changes too: Atlas has them when it resolves.
  await sync.flush({ timeoutMs: 20000 })
  const got = await indexMap(await driver(ATLAS), db, 'users')
  assert.deepEqual(got, want)
  assert.deepEqual(Object.keys(got.age_email.key), ['age', 'email'])
  await sync.close()
})

test('dropIndex drops on Atlas what was dropped locally; an index made on Atlas by hand stays until dropIndexes()', async () => {
  const db = uniqueDb('idxdrop')
  const sync = await createSync(syncOptions(db, FAST))
  const c = sync.db(db).collection('c')
  await c.insertOne({ a: 1, b: 2 })
  await c.createIndexes([{ key: { a: 1 } }, { key: { b: 1 } }])
  await atlasHas(db, 'c', (g) => g.a_1 && g.b_1)
  const atlas = await driver(ATLAS)
  await atlas.db(db).collection('c').createIndex({ b: -1 }, { name: 'reporting' })

  const reply = await c.dropIndex('a_1')
  assert.equal(reply.ok, 1)
  const afterDrop = await atlasHas(db, 'c', (g) => !g.a_1)
  assert.deepEqual(Object.keys(afterDrop).sort(), ['_id_', 'b_1', 'reporting'])

  // Dropping by key document, as the server allows.
  await c.dropIndex({ b: 1 })
  await atlasHas(db, 'c', (g) => !g.b_1)
  assert.ok((await indexMap(atlas, db, 'c')).reporting, 'an Atlas-only index is not dropped by another drop')

  // Several by an array of names, as the driver passes it on (MongoDB
  // 4.2+ takes one; the Python SecantusDB refuses it, as with the driver).
  await c.createIndexes([{ key: { a: 1 } }, { key: { b: 1 } }])
  await atlasHas(db, 'c', (g) => g.a_1 && g.b_1)
  const scratch = (await driver(LOCAL)).db(db).collection('arrayprobe')
  await scratch.createIndex({ x: 1 })
  const takesArrays = await scratch.dropIndex(['x_1']).then(() => true, (e) => (e.code === 14 ? false : Promise.reject(e)))
  await scratch.drop()
  if (takesArrays) {
    assert.equal((await c.dropIndex(['a_1', 'b_1'])).ok, 1)
  } else {
    await assert.rejects(c.dropIndex(['a_1', 'b_1']), { name: 'MongoServerError', code: 14 })
    await c.dropIndex('a_1')
    await c.dropIndex('b_1')
  }
  await atlasHas(db, 'c', (g) => !g.a_1 && !g.b_1)
  assert.deepEqual(Object.keys(await indexMap(await driver(LOCAL), db, 'c')).sort(), ['_id_'])

  await c.createIndex({ a: 1 })
  await atlasHas(db, 'c', (g) => g.a_1)
  assert.equal(await c.dropIndexes(), true)
  const none = await atlasHas(db, 'c', (g) => Object.keys(g).length === 1)
  assert.deepEqual(Object.keys(none), ['_id_'])
  await sync.close()
})

test('an index re-created locally with other options is re-created on Atlas', async () => {
  const db = uniqueDb('idxredo')
  const sync = await createSync(syncOptions(db, FAST))
  const c = sync.db(db).collection('s')
  await c.insertOne({ at: new Date() })
  await c.createIndex({ at: 1 }, { name: 'ttl', expireAfterSeconds: 60 })
  await atlasHas(db, 's', (g) => g.ttl && g.ttl.expireAfterSeconds === 60)
  await c.dropIndex('ttl')
  await c.createIndex({ at: 1 }, { name: 'ttl', expireAfterSeconds: 120 })
  const got = await atlasHas(db, 's', (g) => g.ttl && g.ttl.expireAfterSeconds === 120)
  assert.deepEqual(got.ttl.key, { at: 1 })
  await sync.close()
})

test('an index created while replication is paused reaches Atlas after a restart: the mark is in the journal', async () => {
  const db = uniqueDb('idxpause')
  const opts = syncOptions(db, FAST)
  const first = await createSync(opts)
  const c = first.db(db).collection('p')
  await c.insertOne({ k: 1 })
  await first.flush({ timeoutMs: 20000 })
  await first.pause()
  await c.createIndex({ k: 1 }, { unique: true })
  await new Promise((r) => setTimeout(r, 1500))
  const atlas = await driver(ATLAS)
  assert.equal((await indexMap(atlas, db, 'p')).k_1, undefined, 'nothing copied while paused')
  await assert.rejects(first.flush({ timeoutMs: 300 }), {
    code: 'ERR_SYNC_TIMEOUT',
    message: /the index changes of 1 collection\(s\) still waiting for Atlas/,
  })
  await first.close()

  const second = await createSync(opts)
  await second.resume()
  const got = await atlasHas(db, 'p', (g) => g.k_1)
  assert.equal(got.k_1.unique, true)
  await second.close()
})

test('a full sync copies indexes made locally without the addon; excluded collections get none', async () => {
  const db = uniqueDb('idxfull')
  const local = await driver(LOCAL)
  await local.db(db).collection('made').insertOne({ x: 1 })
  await local.db(db).collection('made').createIndex({ x: -1 }, { name: 'by_x', sparse: true })
  await local.db(db).collection('secret').insertOne({ y: 1 })
  await local.db(db).collection('secret').createIndex({ y: 1 })
  const sync = await createSync(syncOptions(db, { ...FAST, excludedCollections: ['secret'] }))
  const r = await sync.fullSync()
  assert.equal(r.state, 'done', JSON.stringify(r))
  // Done means done: the indexes are there when fullSync() resolves.
  const atlas = await driver(ATLAS)
  const got = await indexMap(atlas, db, 'made')
  assert.deepEqual(got.by_x, { key: { x: -1 }, name: 'by_x', sparse: true })
  await sync.db(db).collection('secret').createIndex({ y: -1 })
  // An index made after it on a replicated collection arrives: flush waits
  // for index changes, so by then the excluded one would have too.
  await sync.db(db).collection('made').createIndex({ x: 1 })
  await sync.flush({ timeoutMs: 20000 })
  assert.deepEqual((await indexMap(atlas, db, 'made')).x_1, { key: { x: 1 }, name: 'x_1' })
  assert.deepEqual(await indexMap(atlas, db, 'secret'), {}, 'an excluded collection is not touched on Atlas')
  await sync.close()
})

test('an index Atlas refuses is given up after SYNC_MAX_RETRIES attempts, with the reason in lastError', async () => {
  const db = uniqueDb('idxrefuse')
  const atlas = await driver(ATLAS)
  // Atlas already holds two documents the local data does not: a unique
  // index on `u` cannot be built there.
  await atlas.db(db).collection('d').insertMany([{ u: 1 }, { u: 1 }])
  const sync = await createSync(syncOptions(db, { ...FAST, maxRetries: 1 }))
  const c = sync.db(db).collection('d')
  await c.insertOne({ u: 2 })
  await c.createIndex({ u: 1 }, { unique: true })
  const m = await waitFor(
    async () => {
      const m = await sync.metrics()
      return m.lastError && /indexes of .*\.d to Atlas failed, given up/.test(m.lastError.message) ? m : null
    },
    { what: 'the index copy given up' },
  )
  assert.match(m.lastError.message, /duplicate key|E11000/i)
  assert.equal((await indexMap(atlas, db, 'd')).u_1, undefined)
  // The collection's documents replicate as ever.
  await sync.flush({ timeoutMs: 20000 })
  assert.equal(await atlas.db(db).collection('d').countDocuments({ u: 2 }), 1)
  await sync.close()
})

test('index methods reject bad input with a clear error and work with sync disabled', async () => {
  const db = uniqueDb('idxbad')
  const sync = await createSync(syncOptions(db, { ...FAST, enabled: false }))
  const c = sync.db(db).collection('b')
  await assert.rejects(c.createIndex(42), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /index spec must be/ })
  await assert.rejects(c.createIndex({}), { message: /names no field/ })
  await assert.rejects(c.createIndex({ a: 1 }, { uniq: true }), { message: /unknown option 'uniq'/ })
  await assert.rejects(c.createIndexes([]), { message: /non-empty array/ })
  await assert.rejects(c.dropIndex(7), { message: /indexName must be a name, an array of names or a key document/ })
  await assert.rejects(c.indexExists([1]), { message: /a name or an array of names/ })
  await assert.rejects(c.createIndex([42]), { message: /index spec must be/ })
  // The server's own errors come through as the driver's.
  await assert.rejects(c.indexes(), (e) => e.code === 26)
  await c.insertOne({ a: 1 })
  assert.equal(await c.createIndex({ a: 1 }), 'a_1')
  const conflict = await (await driver(LOCAL)).db(db).collection('b').createIndex({ a: 1 }, { name: 'a_1', unique: true }).catch((e) => e)
  assert.equal(typeof conflict.code, 'number', 'the premise: the driver is refused too')
  await assert.rejects(c.createIndex({ a: 1 }, { name: 'a_1', unique: true }), { name: 'MongoServerError', code: conflict.code })
  await assert.rejects(c.dropIndex('nope'), (e) => e.name === 'MongoServerError' && e.code === 27)
  assert.ok(await c.indexExists('a_1'))
  assert.equal(await c.indexExists([]), true, 'as the driver: every one of no names exists')
  // As the driver: false, not an error, when the server refuses.
  assert.equal(await sync.db(db).collection('never_made').dropIndexes(), false)
  await sync.close()
  const atlas = await driver(ATLAS)
  assert.deepEqual(await indexMap(atlas, db, 'b'), {}, 'sync disabled: Atlas untouched')
})

test('verify reports indexes Atlas lacks or has otherwise, and repair copies them', async () => {
  const db = uniqueDb('idxverify')
  const sync = await createSync(syncOptions(db, FAST))
  const c = sync.db(db).collection('v')
  await c.insertOne({ a: 1, b: 1 })
  await c.createIndex({ a: 1 })
  await atlasHas(db, 'v', (g) => g.a_1)
  await sync.flush({ timeoutMs: 20000 })
  assert.equal((await sync.verify()).ok, true)

  // Made behind the addon's back: one local index Atlas lacks, one Atlas
  // index of the same name defined otherwise, one only Atlas has.
  const [local, atlas] = await Promise.all([driver(LOCAL), driver(ATLAS)])
  await local.db(db).collection('v').createIndex({ b: 1 })
  await atlas.db(db).collection('v').dropIndex('a_1')
  await atlas.db(db).collection('v').createIndex({ a: -1 }, { name: 'a_1' })
  await atlas.db(db).collection('v').createIndex({ z: 1 })
  const report = await sync.verify()
  assert.equal(report.ok, false)
  assert.equal(report.differences, 0, 'the documents are the same')
  assert.equal(report.indexDifferences, 2)
  const [v] = report.collections
  assert.deepEqual(v.indexesMissing, ['b_1'])
  assert.deepEqual(v.indexesDifferent, ['a_1'])

  const repaired = await sync.verify({ repair: true })
  assert.equal(repaired.indexesRepaired, 2, JSON.stringify(repaired))
  assert.deepEqual(repaired.collections[0].indexesMissing, [])
  const again = await sync.verify()
  assert.equal(again.ok, true, JSON.stringify(again))
  const got = await indexMap(atlas, db, 'v')
  assert.deepEqual(got.a_1.key, { a: 1 })
  assert.ok(got.b_1 && got.z_1, 'the Atlas-only index stays')
  await sync.close()
})

test('index specs in every form the driver takes get the driver\'s names and keys', async () => {
  const db = uniqueDb('idxforms')
  // Local only: this is about the driver's forms and names, and the Python
  // test server once stopped answering while building these on "Atlas".
  const sync = await createSync(syncOptions(db, { ...FAST, enabled: false }))
  const c = sync.db(db).collection('f')
  await c.insertOne({ a: 1, b: 2, loc: { type: 'Point', coordinates: [0, 0] } })
  const local = (await driver(LOCAL)).db(db).collection('f')
  // The same call through the official driver on another collection gives the same.
  const ref = (await driver(LOCAL)).db(db).collection('ref')
  await ref.insertOne({ a: 1 })
  const forms = [['a', -1], [['a'], ['b', -1]], [{ b: 1 }, 'a'], new Map([['b', -1], ['a', 1]]), 'b']
  for (const spec of forms) {
    const name = await c.createIndex(spec)
    assert.equal(name, await ref.createIndex(spec), `the driver's name for ${JSON.stringify([...(spec instanceof Map ? spec : [spec])])}`)
  }
  assert.equal(await c.createIndex(['loc', '2dsphere']), 'loc_2dsphere')
  const list = await local.indexes()
  assert.deepEqual(
    list.map((i) => i.name).sort(),
    ['_id_', 'a_-1', 'a_1_b_-1', 'b_1_a_1', 'b_-1_a_1', 'b_1', 'loc_2dsphere'].sort(),
  )
  assert.deepEqual(Object.keys(list.find((i) => i.name === 'b_-1_a_1').key), ['b', 'a'])

  // What indexes() lists can be fed back to createIndexes, as with the driver.
  const again = sync.db(db).collection('g')
  await again.insertOne({ a: 1 })
  const listed = (await c.indexes()).filter((i) => i.name !== '_id_' && i.name !== 'loc_2dsphere')
  assert.deepEqual(await again.createIndexes(listed), listed.map((i) => i.name))

  // listIndexes() is a cursor: next, hasNext, map, close.
  const cursor = c.listIndexes().map((i) => i.name)
  assert.equal(await cursor.next(), '_id_')
  assert.equal(await cursor.hasNext(), true)
  assert.equal((await cursor.toArray()).length, 6)
  assert.equal(await cursor.hasNext(), false)

  // The Db shorthands, as the driver's.
  const refDb = (await driver(LOCAL)).db(db)
  assert.equal(await sync.db(db).createIndex('f', { b: 1, c: 1 }), await refDb.createIndex('ref', { b: 1, c: 1 }))
  assert.deepEqual(await sync.db(db).indexInformation('f'), await refDb.indexInformation('f'))
  assert.equal(sync.db(db).namespace, refDb.namespace)
  await sync.close()
})

test('a document that breaks a unique index dropped locally is retried, not dead-lettered, until Atlas drops it too', async () => {
  const db = uniqueDb('idxuniq')
  const sync = await createSync(syncOptions(db, { ...FAST, maxRetries: 0 }))
  const c = sync.db(db).collection('u')
  await c.insertOne({ _id: 1, u: 1 })
  await c.createIndex({ u: 1 }, { unique: true })
  await atlasHas(db, 'u', (g) => g.u_1)
  await sync.flush({ timeoutMs: 20000 })
  // Dropped locally; the duplicate follows at once, before the leader's
  // index copier (every 500 ms) dropped it on Atlas.
  await c.dropIndex('u_1')
  await c.insertOne({ _id: 2, u: 1 })
  await sync.flush({ timeoutMs: 20000 })
  const m = await sync.metrics()
  assert.equal(m.deadLettered, 0, JSON.stringify(m.lastError))
  const atlas = await driver(ATLAS)
  assert.equal(await atlas.db(db).collection('u').countDocuments({ u: 1 }), 2)
  await sync.close()
})

test('a unique value that moves between documents reaches Atlas: freed by a delete, swapped, case-folded; a real conflict is still dead-lettered', async () => {
  // States are copied a document at a time, so Atlas can meet a conflict
  // that local never had: the Atlas copy of the document that held the
  // value is stale, and is freed; a holder that holds it locally too is not.
  const db = uniqueDb('idxmove')
  const sync = await createSync(syncOptions(db, { ...FAST, maxRetries: 2 }))
  const [local, atlas] = await Promise.all([driver(LOCAL), driver(ATLAS)])
  const users = sync.db(db).collection('users')
  const slots = sync.db(db).collection('slots')
  const names = sync.db(db).collection('names')
  const docsOf = async (client, coll) => client.db(db).collection(coll).find({}, { sort: { _id: 1 } }).toArray()
  const same = async (coll) => assert.deepEqual(await docsOf(atlas, coll), await docsOf(local, coll), coll)
  try {
    await users.insertMany([{ _id: 2, email: 'x@e.com' }, { _id: 3, email: 'y@e.com' }])
    await slots.insertMany([{ _id: 1, a: 1 }, { _id: 2, a: 2 }, { _id: 3, a: 3 }])
    await names.insertMany([{ _id: 1, name: 'Bob' }, { _id: 2, name: 'Ann' }])
    await sync.flush({ timeoutMs: 30000 })
    // The indexes after the documents, on both servers: the SecantusDB test
    // servers keep the old entry of a document inserted after its unique
    // index was built when an update changes the value (the official
    // driver's next insert of that value is refused too); MongoDB does not.
    await users.createIndex({ email: 1 }, { unique: true })
    await slots.createIndex({ a: 1 }, { unique: true })
    await names.createIndex({ name: 1 }, { unique: true, collation: { locale: 'en', strength: 2 } })
    await sync.flush({ timeoutMs: 30000 })
    // An account closed and its email taken by a new one.
    await users.deleteOne({ _id: 2 })
    await users.insertOne({ _id: 1, email: 'x@e.com' })
    // A value updated away and taken by a new document.
    await users.updateOne({ _id: 3 }, { $set: { email: 'z@e.com' } })
    await users.insertOne({ _id: 4, email: 'y@e.com' })
    // Two slots swapped, one call at a time, then three in one bulkWrite.
    await slots.updateOne({ _id: 1 }, { $set: { a: 0 } })
    await slots.updateOne({ _id: 2 }, { $set: { a: 1 } })
    await slots.updateOne({ _id: 1 }, { $set: { a: 2 } })
    await slots.bulkWrite([
      { updateOne: { filter: { _id: 3 }, update: { $set: { a: 10 } } } },
      { updateOne: { filter: { _id: 1 }, update: { $set: { a: 3 } } } },
      { updateOne: { filter: { _id: 3 }, update: { $set: { a: 2 } } } },
    ])
    // Equal under the index's collation: 'BOB' is 'Bob'.
    await names.deleteOne({ _id: 1 })
    await names.insertOne({ _id: 3, name: 'BOB' })
    await sync.flush({ timeoutMs: 30000 })
    let m = await sync.metrics()
    assert.equal(m.deadLettered, 0, JSON.stringify(m.lastError))
    for (const coll of ['users', 'slots', 'names']) await same(coll)
    assert.deepEqual((await docsOf(local, 'slots')).map((d) => d.a), [3, 1, 2], 'the premise: the values moved round')
    const report = await sync.verify()
    assert.equal(report.differences, 0)

    // A unique index only Atlas has: its conflict is real, and its holder stays.
    const teams = sync.db(db).collection('teams')
    await teams.insertOne({ _id: 9, team: 's' })
    await sync.flush({ timeoutMs: 30000 })
    await atlas.db(db).collection('teams').createIndex({ team: 1 }, { unique: true })
    await teams.insertMany([{ _id: 10, team: 't' }, { _id: 11, team: 't' }])
    await sync.flush({ timeoutMs: 30000 })
    m = await sync.metrics()
    assert.equal(m.deadLettered, 1)
    assert.match(m.lastError.message, /E11000|duplicate key/)
    assert.equal(await atlas.db(db).collection('teams').countDocuments({ team: 't' }), 1, 'the holder stays')
  } finally {
    await sync.close()
  }
})

test('full sync and verify of a database leave views alone', async (t) => {
  const db = uniqueDb('idxview')
  const local = await driver(LOCAL)
  await local.db(db).collection('base').insertMany([{ a: 1 }, { a: 2 }])
  try {
    await local.db(db).createCollection('big', { viewOn: 'base', pipeline: [{ $match: { a: { $gt: 1 } } }] })
  } catch (e) {
    t.skip(`this server has no views: ${e.message}`)
    return
  }
  const sync = await createSync(syncOptions(db, FAST))
  const r = await sync.fullSync()
  assert.equal(r.state, 'done', JSON.stringify(r))
  const report = await sync.verify()
  assert.equal(report.ok, true, JSON.stringify(report))
  assert.deepEqual(report.collections.map((c) => c.ns), [`${db}.base`])
  const atlas = await driver(ATLAS)
  const names = (await atlas.db(db).listCollections().toArray()).map((c) => c.name)
  assert.deepEqual(names, ['base'], 'the view was not copied as a collection')
  // Named, it is refused: its documents are its source's.
  await assert.rejects(sync.startFullSync({ collections: ['big'] }), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /is a view/ })
  await assert.rejects(sync.verify({ collections: ['big'] }), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /is a view/ })
  await sync.close()
})

test('drop() drops the collection on Atlas too; one created again meanwhile keeps only its new documents there', async () => {
  const db = uniqueDb('drop')
  const sync = await createSync(syncOptions(db, FAST))
  const atlas = await driver(ATLAS)
  const gone = sync.db(db).collection('gone')
  await gone.insertMany([{ _id: 1 }, { _id: 2 }])
  await gone.createIndex({ x: 1 })
  await sync.flush({ timeoutMs: 20000 })
  assert.equal(await atlas.db(db).collection('gone').countDocuments(), 2)
  assert.equal(await gone.drop(), true)
  // MongoDB 7.0 and later drop a missing collection without an error, so
  // the driver resolves true (false only from older servers' NamespaceNotFound).
  assert.equal(await gone.drop(), true)
  await sync.flush({ timeoutMs: 20000 })
  const names = (await atlas.db(db).listCollections().toArray()).map((c) => c.name)
  assert.deepEqual(names, [], 'dropped on Atlas, indexes and all')

  // Dropped and created again before the leader saw the drop (paused):
  // Atlas ends with exactly the new documents.
  const again = sync.db(db).collection('again')
  await again.insertMany([{ _id: 1, v: 'old' }, { _id: 2, v: 'old' }, { _id: 3, v: 'old' }])
  await sync.flush({ timeoutMs: 20000 })
  await sync.pause()
  assert.equal(await sync.db(db).dropCollection('again'), true)
  await again.insertMany([{ _id: 3, v: 'new' }, { _id: 4, v: 'new' }])
  await sync.resume()
  await sync.flush({ timeoutMs: 20000 })
  const got = await atlas.db(db).collection('again').find().sort({ _id: 1 }).toArray()
  assert.deepEqual(got, [{ _id: 3, v: 'new' }, { _id: 4, v: 'new' }])
  assert.equal((await sync.metrics()).deadLettered, 0)

  // Dropped right after a large insert whose copies are still on their way
  // (sent from the bytes the inserts stored): none lands after Atlas's drop.
  const burst = sync.db(db).collection('burst')
  const docs = Array.from({ length: 5000 }, (_, i) => ({ _id: i, pad: 'x'.repeat(200) }))
  await burst.insertMany(docs)
  await burst.drop()
  await sync.flush({ timeoutMs: 60000 })
  assert.equal(await atlas.db(db).collection('burst').countDocuments(), 0)
  const left = (await atlas.db(db).listCollections().toArray()).map((c) => c.name)
  assert.ok(!left.includes('burst'), `burst is gone on Atlas: ${left}`)
  await sync.close()
})
