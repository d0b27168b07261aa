'use strict'
// The drop-in write path (MISSION.md section 1): every Collection method gives
// the official driver's results, stores the same bytes, and replicates them.
const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { createSync, BSON, ObjectId, Decimal128, Long, Int32, Double, Binary, UUID, Timestamp, BSONRegExp, MinKey, MaxKey, Code } = require('..')
const { LOCAL, ATLAS, uniqueDb, driver, closeDrivers, rawDump, dump, assertSame, syncOptions } = require('./helpers')

const db = uniqueDb('writepath')
let sync, local, atlas

before(async () => {
  sync = await createSync(syncOptions(db))
  local = await driver(LOCAL)
  atlas = await driver(ATLAS)
})

after(async () => {
  await sync.close()
  await closeDrivers()
})

/** One document holding every BSON type the mission lists, and a few more. */
function everyType(i) {
  return {
    _id: new ObjectId(),
    i,
    objectId: new ObjectId(),
    date: new Date(Date.UTC(2024, 1, 29, 12, 34, 56, 789)),
    decimal: Decimal128.fromString('1234567890.123456789012345678901234'),
    long: Long.fromString('9007199254740993'),
    smallLong: Long.fromNumber(42),
    int32: new Int32(7),
    double: new Double(3),
    plainNumber: 3.25,
    negZero: -0,
    binary: new Binary(Buffer.from([0, 1, 2, 250, 255]), 0),
    uuid: new UUID('5f4dcc3b-5aa7-4c8a-9d2e-3c7d1a2b4e6f'),
    timestamp: new Timestamp({ t: 1700000000, i: 3 }),
    regexp: /ab+c/gim,
    bsonRegExp: new BSONRegExp('^x\\d', 'imsux'),
    nil: null,
    bool: true,
    string: 'héllo ✓ \u0000 inside',
    nested: { a: { b: { c: [1, 'two', { three: 3 }] } }, empty: {} },
    array: [new Int32(1), new Double(2), Long.fromNumber(3), [], [null]],
    minKey: new MinKey(),
    maxKey: new MaxKey(),
    code: new Code('function () { return 1 }'),
  }
}

test('every BSON type is stored with the same bytes as the official driver writes, locally and on Atlas', async () => {
  const docs = [everyType(1), everyType(2)]
  const copies = docs.map((d) => ({ ...d }))
  await sync.db(db).collection('types').insertOne(docs[0])
  await sync.db(db).collection('types').insertMany([docs[1]])
  await local.db(db).collection('types_driver').insertMany(copies)
  const ours = await rawDump(local, db, 'types')
  const theirs = await rawDump(local, db, 'types_driver')
  assert.equal(ours.length, 2)
  assert.deepEqual(ours, theirs, 'the addon stored different bytes than the driver')
  await sync.flush({ timeoutMs: 30000 })
  const onAtlas = await rawDump(atlas, db, 'types')
  if (process.env.TEST_SERVER_KIND === 'rs') {
    // secantusd-rs re-sorts the option letters of regular expressions in a
    // document that arrives through an update (the engine's copy is a
    // replace-with-upsert); MongoDB stores the bytes it is given, and
    // secantusd-py does too. So here, and only here, regex options are
    // compared as sorted; every other byte must still be equal.
    assert.deepEqual(onAtlas.map(sortRegexOptions), ours.map(sortRegexOptions), 'Atlas holds different bytes than local')
  } else {
    assert.deepEqual(onAtlas, ours, 'Atlas holds different bytes than local')
  }
  // and reads through the addon return the same values as the driver's reads
  const viaAddon = await sync.db(db).collection('types').find({}).sort({ i: 1 }).toArray()
  const viaDriver = await local.db(db).collection('types').find({}).sort({ i: 1 }).toArray()
  assert.deepEqual(viaAddon, viaDriver)
  assert.ok(viaAddon[0].decimal instanceof Decimal128)
  assert.ok(viaAddon[0].long instanceof Long)
})

test('BSON values of the bson 6 package (the driver 6 an app may still import) are written as our own', async () => {
  // An app moving from driver 6 keeps `const { ObjectId } = require('mongodb')`
  // in its routes. bson 7 refuses to encode values of another major version;
  // the addon rebuilds them as bson 7 values of the same type and bytes.
  const B6 = require('bson6')
  const same = (B) => ({
    _id: new B.ObjectId('65a1b2c3d4e5f60718293a4b'),
    objectId: new B.ObjectId('65a1b2c3d4e5f60718293a4c'),
    decimal: B.Decimal128.fromString('-1234.5678901234567890123456789012'),
    long: B.Long.fromString('-9007199254740993'),
    int32: new B.Int32(7),
    double: new B.Double(3),
    binary: new B.Binary(Buffer.from([0, 1, 250]), 0x80),
    uuid: new B.UUID('5f4dcc3b-5aa7-4c8a-9d2e-3c7d1a2b4e6f'),
    timestamp: new B.Timestamp({ t: 4000000000, i: 3 }),
    bsonRegExp: new B.BSONRegExp('^x', 'i'),
    minKey: new B.MinKey(),
    maxKey: new B.MaxKey(),
    code: new B.Code('f()'),
    nested: { list: [new B.Int32(1), { deep: new B.ObjectId('65a1b2c3d4e5f60718293a4d') }] },
  })
  const old = same(B6)
  assert.throws(() => BSON.serialize(old), /BSONVersionError|bson types must be from bson 7/, 'the premise: bson 7 refuses them')
  const coll = sync.db(db).collection('bson6')
  await coll.insertOne(old)
  await local.db(db).collection('bson6_driver').insertOne(same(BSON))
  // one of our values holding one of theirs (a DBRef to a driver 6 ObjectId)
  await coll.insertOne({ _id: 'mixed', r: new BSON.DBRef('c', new B6.ObjectId('65a1b2c3d4e5f60718293a4e')) })
  await local.db(db).collection('bson6_driver').insertOne({ _id: 'mixed', r: new BSON.DBRef('c', new ObjectId('65a1b2c3d4e5f60718293a4e')) })
  assert.deepEqual(await rawDump(local, db, 'bson6'), await rawDump(local, db, 'bson6_driver'))
  // as filters and update values too
  const found = await coll.findOne({ _id: new B6.ObjectId('65a1b2c3d4e5f60718293a4b') })
  assert.ok(found && found._id instanceof ObjectId && found.decimal instanceof Decimal128)
  const r = await coll.updateOne({ _id: old._id }, { $set: { decimal: B6.Decimal128.fromString('2.50'), at: new B6.Timestamp({ t: 1, i: 2 }) } })
  assert.equal(r.modifiedCount, 1)
  assert.equal((await coll.findOne({ 'nested.list.deep': old.nested.list[1].deep })).decimal.toString(), '2.50')
  await sync.flush({ timeoutMs: 30000 })
  assert.deepEqual(await rawDump(atlas, db, 'bson6'), await rawDump(local, db, 'bson6'))
  // the caller's document is not changed (no _id added, no value replaced)
  assert.ok(old.decimal instanceof B6.Decimal128 && !(old.decimal instanceof Decimal128))
})

/** Hex BSON with the option letters of every regular expression sorted. */
function sortRegexOptions(hex) {
  const sortAll = (v) => {
    if (v instanceof BSONRegExp) return new BSONRegExp(v.pattern, [...v.options].sort().join(''))
    if (Array.isArray(v)) return v.map(sortAll)
    if (v && typeof v === 'object' && !v._bsontype && !(v instanceof Date)) {
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, sortAll(x)]))
    }
    return v
  }
  const doc = BSON.deserialize(Buffer.from(hex, 'hex'), { bsonRegExp: true, promoteValues: false, promoteLongs: false })
  return Buffer.from(BSON.serialize(sortAll(doc))).toString('hex')
}

/** Runs the same calls through the addon and through the driver and compares results. */
async function sideBySide(name, fn) {
  const ours = await fn(sync.db(db).collection(`${name}_addon`))
  const theirs = await fn(local.db(db).collection(`${name}_driver`))
  return { ours, theirs }
}

const ID_KEYS = ['_id', 'insertedId', 'upsertedId']
const stripIds = (v) =>
  JSON.parse(
    JSON.stringify(v, (k, x) => {
      if (ID_KEYS.includes(k)) return typeof x
      if (k === 'insertedIds' || k === 'upsertedIds') return Object.keys(x)
      return x
    }),
  )

test('results have the driver shapes for every write method', async () => {
  const { ours, theirs } = await sideBySide('shapes', async (c) => {
    const out = []
    out.push(await c.insertOne({ n: 1, tag: 'a' }))
    out.push(await c.insertMany([{ n: 2, tag: 'b' }, { n: 3, tag: 'b' }, { n: 4, tag: 'c' }]))
    out.push(await c.updateOne({ tag: 'b' }, { $inc: { n: 10 } }))
    out.push(await c.updateOne({ tag: 'zzz' }, { $set: { n: 0 } }))
    out.push(await c.updateOne({ tag: 'new' }, { $set: { n: 100 } }, { upsert: true }))
    out.push(await c.updateMany({ tag: 'b' }, { $inc: { n: 1 } }))
    out.push(await c.updateMany({ tag: 'b' }, [{ $set: { piped: { $add: ['$n', 1] } } }]))
    out.push(await c.replaceOne({ tag: 'c' }, { n: 40, tag: 'c2' }))
    out.push(await c.replaceOne({ tag: 'r' }, { n: 50, tag: 'r' }, { upsert: true }))
    out.push(await c.findOneAndUpdate({ tag: 'a' }, { $set: { x: 1 } }))
    out.push(await c.findOneAndUpdate({ tag: 'a' }, { $set: { x: 2 } }, { returnDocument: 'after', projection: { _id: 0 } }))
    out.push(await c.findOneAndUpdate({ tag: 'none' }, { $set: { x: 3 } }, { upsert: true, returnDocument: 'after', projection: { _id: 0 } }))
    out.push(await c.findOneAndReplace({ tag: 'c2' }, { n: 41, tag: 'c3' }, { returnDocument: 'after', projection: { _id: 0 } }))
    out.push(await c.findOneAndDelete({ tag: 'c3' }, { projection: { _id: 0 } }))
    out.push(await c.findOneAndDelete({ tag: 'gone' }))
    out.push(await c.deleteOne({ tag: 'r' }))
    out.push(await c.deleteMany({ tag: 'b' }))
    out.push(await c.deleteMany({ tag: 'nothing' }))
    const bulk = await c.bulkWrite([
      { insertOne: { document: { n: 7, tag: 'bulk' } } },
      { insertOne: { document: { n: 8, tag: 'bulk' } } },
      { updateOne: { filter: { n: 7 }, update: { $set: { y: 1 } } } },
      { updateMany: { filter: { tag: 'bulk' }, update: { $inc: { n: 1 } } } },
      { replaceOne: { filter: { n: 9 }, replacement: { n: 90, tag: 'bulk' } } },
      { updateOne: { filter: { n: 1000 }, update: { $set: { n: 1000 } }, upsert: true } },
      { deleteOne: { filter: { n: 90 } } },
      { deleteMany: { filter: { n: 1000 } } },
    ])
    out.push({
      insertedCount: bulk.insertedCount,
      matchedCount: bulk.matchedCount,
      modifiedCount: bulk.modifiedCount,
      deletedCount: bulk.deletedCount,
      upsertedCount: bulk.upsertedCount,
      insertedKeys: Object.keys(bulk.insertedIds),
      upsertedKeys: Object.keys(bulk.upsertedIds),
    })
    out.push(await c.countDocuments())
    out.push(await c.countDocuments({ tag: 'a' }))
    out.push(await c.estimatedDocumentCount())
    out.push(await c.find({}, { projection: { _id: 0 } }).sort({ n: -1 }).skip(1).limit(2).toArray())
    out.push(await c.findOne({ tag: 'a' }, { projection: { _id: 0 } }))
    out.push(await c.findOne({ tag: 'none-at-all' }))
    out.push(await c.aggregate([{ $group: { _id: '$tag', total: { $sum: '$n' } } }, { $sort: { _id: 1 } }]).toArray())
    out.push((await c.distinct('tag')).sort())
    return out
  })
  assert.deepEqual(stripIds(ours), stripIds(theirs))
  await sync.flush({ timeoutMs: 30000 })
  assert.deepEqual(await dump(atlas, db, 'shapes_addon'), await dump(local, db, 'shapes_addon'))
})

test('cursor.count() and collection.count() (deprecated in the driver, still in legacy code) count as the driver\'s do', async () => {
  const ours = sync.db(db).collection('legacy_count')
  const theirs = local.db(db).collection('legacy_count')
  await ours.insertMany(Array.from({ length: 12 }, (_, n) => ({ n, even: n % 2 === 0 })))
  const cases = [
    (c) => c.find().count(),
    (c) => c.find({ even: true }).count(),
    (c) => c.find({ n: { $gte: 3 } }).skip(2).limit(4).count(),
    (c) => c.find({}, { skip: 10 }).count(),
    (c) => c.find().limit(0).count(),
    (c) => c.find().limit(-3).count(),
    (c) => c.find({ even: false }).sort({ n: -1 }).project({ n: 1 }).count({ limit: 2 }),
    (c) => c.find({ n: { $lt: 5 } }).hint({ _id: 1 }).maxTimeMS(5000).count(),
    (c) => c.count(),
    (c) => c.count({ even: true }, { skip: 1, limit: 0 }),
    (c) => c.count({ n: { $gt: 2 } }, { limit: -4, maxTimeMS: 5000 }),
  ]
  const got = []
  const want = []
  for (const run of cases) {
    got.push(await run(ours))
    want.push(await run(theirs))
  }
  assert.deepEqual(got, want)
  assert.deepEqual(want, [12, 6, 4, 2, 12, 3, 2, 5, 12, 5, 4], 'the premise: the cases differ')
  await assert.rejects(ours.count({}, { limti: 1 }), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /unknown option 'limti'/ })
  await assert.rejects(ours.find().count(true), { name: 'MongoInvalidArgumentError' })
  // Counting does not read the cursor.
  const cursor = ours.find({ even: true }).sort({ n: 1 })
  assert.equal(await cursor.count(), 6)
  assert.equal((await cursor.next()).n, 0)
})

test('the legacy bulk builder (initializeOrderedBulkOp / initializeUnorderedBulkOp) gives the driver\'s results, and replicates', async () => {
  const { MongoBatchReExecutionError } = require('..')
  const run = async (c, ordered) => {
    await c.insertMany([{ _id: 1, n: 1 }, { _id: 2, n: 2 }, { _id: 3, n: 3, tags: [1, 5] }])
    const bulk = ordered ? c.initializeOrderedBulkOp() : c.initializeUnorderedBulkOp()
    bulk.insert({ _id: 4, n: 4 })
    bulk.find({ _id: 1 }).updateOne({ $inc: { n: 10 } })
    bulk.find({ n: { $gte: 2 } }).update({ $set: { big: true } })
    bulk.find({ _id: 9 }).upsert().updateOne({ $set: { n: 9 } })
    bulk.find({ _id: 3 }).arrayFilters([{ t: { $gt: 2 } }]).updateOne({ $set: { 'tags.$[t]': 0 } })
    bulk.find({ _id: 2 }).replaceOne({ n: 20 })
    bulk.find({ _id: 10 }).upsert().replaceOne({ n: 100 })
    bulk.raw({ updateOne: { filter: { _id: 4 }, update: { $set: { raw: 1 } } } })
    bulk.find({ _id: 4 }).deleteOne()
    bulk.find({ big: true }).delete()
    const length = bulk.length
    const r = await bulk.execute()
    const again = await bulk.execute().then(() => null, (e) => e.name)
    const { insertedCount, matchedCount, modifiedCount, deletedCount, upsertedCount, insertedIds, upsertedIds } = r
    const docs = await local.db(db).collection(c.collectionName).find({}).sort({ _id: 1 }).toArray()
    // What code written for the builder reads of the driver's BulkWriteResult.
    const { nInserted, nUpserted, nMatched, nModified, nRemoved, upserted } = r.result
    const legacy = { nInserted, nUpserted, nMatched, nModified, nRemoved, upserted, at1: r.getUpsertedIdAt(1), errors: r.getWriteErrorCount() }
    return { length, insertedCount, matchedCount, modifiedCount, deletedCount, upsertedCount, insertedIds, upsertedIds, ok: r.isOk(), again, docs, legacy }
  }
  for (const ordered of [true, false]) {
    const name = `legacy_bulk_${ordered ? 'ordered' : 'unordered'}`
    const ours = await run(sync.db(db).collection(name), ordered)
    const theirs = await run(local.db(db).collection(`${name}_driver`), ordered)
    assert.deepEqual(ours, theirs, `${name}: as the driver`)
    assert.equal(ours.again, 'MongoBatchReExecutionError')
    assert.equal(ours.deletedCount, 3, 'the premise: the operations did something')
  }
  // An error stops an ordered bulk and not an unordered one, with bulkWrite's error.
  for (const ordered of [true, false]) {
    const c = sync.db(db).collection(`legacy_bulk_err_${ordered}`)
    const bulk = ordered ? c.initializeOrderedBulkOp() : c.initializeUnorderedBulkOp()
    bulk.insert({ _id: 1 }).insert({ _id: 1 }).insert({ _id: 2 })
    const e = await bulk.execute().then(() => null, (err) => err)
    assert.equal(e && e.name, 'MongoBulkWriteError')
    assert.equal(e.writeErrors[0].code, 11000)
    assert.equal(await c.countDocuments(), ordered ? 1 : 2)
  }
  // Refused as the driver refuses them, when added.
  const b = sync.db(db).collection('legacy_bulk_bad').initializeOrderedBulkOp()
  assert.throws(() => b.find(), { name: 'MongoInvalidArgumentError', message: /must specify a selector/ })
  assert.throws(() => b.find({}).updateOne({ n: 1 }), { name: 'MongoInvalidArgumentError', message: /atomic operators/ })
  assert.throws(() => b.find({}).replaceOne({ $set: { n: 1 } }), { name: 'MongoInvalidArgumentError', message: /atomic operators/ })
  assert.throws(() => b.raw({ updateOne: { q: {}, u: { $set: { n: 1 } } } }), { name: 'MongoInvalidArgumentError', message: /Raw operations/ })
  await assert.rejects(b.execute(), { name: 'MongoInvalidArgumentError', message: /Batch cannot be empty/ })
  // A per-call write concern is refused with the reason, before the bulk is spent.
  const wc = sync.db(db).collection('legacy_bulk_wc')
  assert.throws(() => wc.initializeOrderedBulkOp({ w: 1 }), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /unknown option 'w' \(the local write concern comes from MONGODB_URI/ })
  const spared = wc.initializeUnorderedBulkOp().raw({ insertOne: { _id: 'q', q: 1 } })
  await assert.rejects(spared.execute({ j: true }), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /unknown option 'j'/ })
  assert.equal((await spared.execute()).insertedCount, 1, 'still runs; a document with a field q is no raw statement')
  assert.ok(new MongoBatchReExecutionError() instanceof Error)
  await sync.flush({ timeoutMs: 30000 })
  for (const c of ['legacy_bulk_ordered', 'legacy_bulk_unordered', 'legacy_bulk_err_true', 'legacy_bulk_err_false', 'legacy_bulk_wc']) {
    assert.deepEqual(await dump(atlas, db, c), await dump(local, db, c), `${c} on Atlas`)
  }
})

test('findOneAnd* with includeResultMetadata report lastErrorObject as the server does', async () => {
  const calls = async (c) => {
    const m = { includeResultMetadata: true }
    const out = []
    out.push(await c.findOneAndUpdate({ _id: 'm1' }, { $set: { a: 1 } }, { ...m, upsert: true, returnDocument: 'after' }))
    out.push(await c.findOneAndUpdate({ _id: 'm1' }, { $set: { a: 2 } }, { ...m, upsert: true, returnDocument: 'after' }))
    out.push(await c.findOneAndUpdate({ _id: 'm2' }, { $set: { a: 1 } }, { ...m, upsert: true }))
    out.push(await c.findOneAndUpdate({ _id: 'm2' }, { $set: { a: 3 } }, { ...m, upsert: true }))
    out.push(await c.findOneAndUpdate({ _id: 'none' }, { $set: { a: 1 } }, m))
    out.push(await c.findOneAndReplace({ _id: 'm2' }, { a: 4 }, { ...m, returnDocument: 'after' }))
    out.push(await c.findOneAndReplace({ k: 'x' }, { k: 'x', v: 1 }, { ...m, upsert: true, returnDocument: 'after' }))
    out.push(await c.findOneAndUpdate({ k: 'x' }, { $set: { v: 2 } }, { ...m, returnDocument: 'after' }))
    out.push(await c.findOneAndUpdate({ k: 'y' }, { $set: { v: 2 } }, m))
    out.push(await c.findOneAndDelete({ _id: 'm1' }, m))
    out.push(await c.findOneAndDelete({ _id: 'm1' }, m))
    out.push(await c.findOneAndDelete({ k: 'x' }, { ...m, projection: { _id: 0 } }))
    // (the driver's result is the whole reply, $clusterTime and all)
    return out.map(({ value, ok, lastErrorObject }) => ({ value, ok, lastErrorObject })).map((r) => {
      // an _id the server generated differs between the two runs
      if (r.lastErrorObject.upserted instanceof ObjectId) r.lastErrorObject.upserted = 'generated'
      if (r.value && r.value._id instanceof ObjectId) r.value._id = 'generated'
      return r
    })
  }
  const theirs = await calls(local.db(db).collection('meta_driver'))
  assert.deepEqual(theirs[0].lastErrorObject, { n: 1, updatedExisting: false, upserted: 'm1' }, 'the premise: the server reports it')
  assert.deepEqual(await calls(sync.db(db).collection('meta_addon')), theirs)
  const off = await createSync({ ...syncOptions(db), enabled: false })
  try {
    assert.deepEqual(await calls(off.db(db).collection('meta_off')), theirs, 'with sync disabled too')
  } finally {
    await off.close()
  }
})

test('an upsert that sets its own _id ($setOnInsert, $set, a pipeline) inserts that _id, like the driver', async () => {
  // The engine pins an upsert's _id in the filter before it runs; it must be
  // the one the change sets, or the server refuses to change the immutable _id.
  const { ours, theirs } = await sideBySide('upsert_id', async (c) => {
    const out = []
    out.push(await c.updateOne({ email: 'a@x' }, { $setOnInsert: { _id: 'user-a', since: 1 }, $set: { seen: 1 } }, { upsert: true }))
    out.push(await c.updateOne({ email: 'a@x' }, { $setOnInsert: { _id: 'user-a', since: 1 }, $set: { seen: 2 } }, { upsert: true }))
    out.push(await c.updateOne({ email: 'b@x' }, { $set: { _id: new ObjectId('65a1b2c3d4e5f60718293a50'), seen: 1 } }, { upsert: true }))
    out.push(await c.updateMany({ email: 'c@x' }, { $setOnInsert: { _id: { org: 1, n: new Long(2) } } }, { upsert: true }))
    out.push(await c.updateOne({ email: 'd@x' }, [{ $set: { _id: { $literal: '$not-a-path' }, seen: { $add: [1, 1] } } }], { upsert: true }))
    out.push(await c.updateOne({ email: 'e@x' }, [{ $addFields: { _id: 'user-e' } }], { upsert: true }))
    out.push(await c.findOneAndUpdate({ email: 'f@x' }, { $setOnInsert: { _id: 7 } }, { upsert: true, returnDocument: 'after' }))
    out.push(await c.find({}).sort({ email: 1 }).toArray())
    return out
  })
  assert.deepEqual(ours, theirs)
  assert.equal(ours[0].upsertedId, 'user-a')
  assert.deepEqual(ours[7].map((d) => d._id), ['user-a', new ObjectId('65a1b2c3d4e5f60718293a50'), { org: 1, n: 2 }, '$not-a-path', 'user-e', 7])
  // an _id computed by an expression cannot be known before the write runs
  const c = sync.db(db).collection('upsert_id_addon')
  await assert.rejects(
    c.updateOne({ email: 'g@x' }, [{ $set: { _id: { $concat: ['u-', '$email'] } } }], { upsert: true }),
    (e) => e.code === 'ERR_SYNC_INVALID_ARGUMENT' && /pipeline sets _id with an expression/.test(e.message),
  )
  assert.equal(await c.countDocuments({ email: 'g@x' }), 0)
  await sync.flush({ timeoutMs: 30000 })
  assert.deepEqual(await dump(atlas, db, 'upsert_id_addon'), await dump(local, db, 'upsert_id_addon'))
})

test('insertOne and bulkWrite give documents without _id a new ObjectId, like the driver', async () => {
  const c = sync.db(db).collection('ids')
  const doc = { a: 1 }
  const r = await c.insertOne(doc)
  assert.ok(doc._id instanceof ObjectId, 'the document was given its _id')
  assert.ok(r.insertedId.equals(doc._id))
  const docs = [{ b: 1 }, { _id: 'mine', b: 2 }]
  const m = await c.insertMany(docs)
  assert.equal(m.insertedIds[1], 'mine')
  assert.ok(m.insertedIds[0].equals(docs[0]._id))
  const found = await local.db(db).collection('ids').findOne({ _id: 'mine' })
  assert.deepEqual(found, { _id: 'mine', b: 2 })
})

test('a write that names no filter is refused as the driver refuses it, and changes nothing here or on Atlas', async () => {
  // updateMany(undefined, ...) used to update every document, and
  // bulkWrite([{ deleteMany: {} }]) to delete every one, then on Atlas.
  const ours = sync.db(db).collection('nofilter')
  const theirs = local.db(db).collection('nofilter_driver')
  const seed = [{ _id: 1, v: 0 }, { _id: 2, v: 0 }]
  await ours.insertMany(seed.map((d) => ({ ...d })))
  await theirs.insertMany(seed.map((d) => ({ ...d })))
  // The driver refuses these itself.
  const cases = {
    updateOne: (c) => c.updateOne(undefined, { $set: { v: 1 } }),
    updateMany: (c) => c.updateMany(undefined, { $set: { v: 1 } }),
    'updateMany, null filter': (c) => c.updateMany(null, { $set: { v: 1 } }),
    replaceOne: (c) => c.replaceOne(undefined, { v: 1 }),
    findOneAndUpdate: (c) => c.findOneAndUpdate(undefined, { $set: { v: 1 } }),
    findOneAndReplace: (c) => c.findOneAndReplace(undefined, { v: 1 }),
    findOneAndDelete: (c) => c.findOneAndDelete(),
    'bulkWrite updateMany': (c) => c.bulkWrite([{ updateMany: { update: { $set: { v: 1 } } } }]),
    'bulkWrite replaceOne': (c) => c.bulkWrite([{ replaceOne: { replacement: { v: 1 } } }]),
  }
  // The driver sends these without a filter and MongoDB refuses them (code
  // 40414, 'delete.deletes.q' is missing); they are refused before sending.
  const refusedByServer = {
    'bulkWrite deleteMany': (c) => c.bulkWrite([{ deleteMany: {} }]),
    'bulkWrite deleteOne': (c) => c.bulkWrite([{ deleteOne: {} }]),
  }
  for (const [name, call] of Object.entries({ ...cases, ...refusedByServer })) {
    if (name in cases) await assert.rejects(call(theirs), `the premise: the driver refuses ${name}`)
    await assert.rejects(call(ours), (e) => {
      assert.equal(e.name, 'MongoInvalidArgumentError', name)
      assert.match(e.message, /a filter is required/, name)
      return true
    })
  }
  assert.deepEqual(await local.db(db).collection('nofilter').find().toArray(), seed)
  // As the driver: deleteOne() and deleteMany() with no filter at all mean {}.
  assert.deepEqual(await ours.deleteOne(), await theirs.deleteOne())
  // ... and bulkWrite takes an insertOne's document in place of { document }.
  const legacy = [{ insertOne: { _id: 9, a: 1 } }]
  assert.equal((await ours.bulkWrite(legacy)).insertedCount, (await theirs.bulkWrite(legacy)).insertedCount)
  await sync.flush({ timeoutMs: 30000 })
  assert.deepEqual(await local.db(db).collection('nofilter').find().toArray(), [{ _id: 2, v: 0 }, { _id: 9, a: 1 }])
  await assertSame(local, atlas, db, ['nofilter'])
})

test('the let option reaches the documents a write picks: a filter on $$variables matches as with the driver', async (t) => {
  // The engine finds the _ids a write will change before running it; that
  // read dropped `let`, so the server said "Use of undefined variable".
  const seed = () => Array.from({ length: 8 }, (_, i) => ({ _id: i, w: i % 4 }))
  const ours = sync.db(db).collection('letvars')
  const theirs = local.db(db).collection('letvars_driver')
  await ours.insertMany(seed())
  await theirs.insertMany(seed())
  const on = (x) => ({ $expr: { $eq: ['$w', '$$x'] } })
  const calls = [
    (c) => c.updateOne(on(), { $set: { one: true } }, { let: { x: 1 } }),
    (c) => c.updateMany(on(), { $set: { many: true } }, { let: { x: 2 } }),
    (c) => c.findOneAndUpdate(on(), { $set: { fam: true } }, { let: { x: 3 }, sort: { _id: 1 } }),
    (c) => c.deleteOne(on(), { let: { x: 0 } }),
    (c) => c.bulkWrite([{ updateMany: { filter: on(), update: { $set: { bulk: true } } } }], { let: { x: 3 } }),
    (c) => c.deleteMany(on(), { let: { x: 0 } }),
  ]
  const first = await calls[0](theirs).catch((e) => e)
  if (first instanceof Error) return t.skip(`this test server does not take let: ${first.message}`)
  const results = [[first, await calls[0](ours)]]
  for (const call of calls.slice(1)) results.push([await call(theirs), await call(ours)])
  for (const [driverResult, ourResult] of results) {
    const plain = (r) => JSON.parse(JSON.stringify(r))
    assert.deepEqual(plain(ourResult), plain(driverResult))
  }
  const strip = (docs) => docs.map(({ _id, ...rest }) => ({ _id, ...rest }))
  assert.deepEqual(strip(await local.db(db).collection('letvars').find().sort({ _id: 1 }).toArray()), strip(await theirs.find().sort({ _id: 1 }).toArray()))
  await sync.flush({ timeoutMs: 30000 })
  await assertSame(local, atlas, db, ['letvars'])
})

test('concurrent upserts of one unique key all succeed, as with the driver, and the document ends the same on Atlas', async (t) => {
  // MongoDB retries an upsert that lost the insert to a concurrent one on a
  // unique key; the _id the engine adds to an upsert's filter stopped that,
  // so 1 in 3 of these calls failed with E11000.
  const run = async (c) => {
    await c.createIndex({ email: 1 }, { unique: true })
    const calls = []
    for (let round = 0; round < 10; round++) {
      calls.push(...[0, 1].map(() => c.updateOne({ email: `a${round}@x` }, { $set: { seen: true } }, { upsert: true })))
    }
    calls.push(...Array.from({ length: 30 }, () => c.updateOne({ email: 'count@x' }, { $inc: { n: 1 } }, { upsert: true })))
    calls.push(...Array.from({ length: 10 }, () => c.findOneAndUpdate({ email: 'fam@x' }, { $inc: { n: 1 } }, { upsert: true })))
    calls.push(...Array.from({ length: 10 }, () => c.updateMany({ email: 'many@x' }, { $inc: { n: 1 } }, { upsert: true })))
    const settled = await Promise.allSettled(calls)
    const failed = settled.filter((r) => r.status === 'rejected').map((r) => r.reason.message)
    const docs = await c.find({}, { projection: { _id: 0 } }).sort({ email: 1 }).toArray()
    return { failed, docs }
  }
  const theirs = await run(local.db(db).collection('upsertrace_driver'))
  if (theirs.failed.length > 0) return t.skip(`this test server does not retry a lost upsert itself: ${theirs.failed[0]}`)
  const ours = await run(sync.db(db).collection('upsertrace'))
  assert.deepEqual(ours, theirs)
  assert.equal(ours.docs.find((d) => d.email === 'count@x').n, 30)
  await sync.flush({ timeoutMs: 30000 })
  await assertSame(local, atlas, db, ['upsertrace'])
})

test('upserts whose filter names the _id as $in of one value or inside $and insert that _id, as with the driver', async () => {
  // The engine added its own _id beside the filter's: "path '_id' is matched twice".
  const ours = sync.db(db).collection('upsertid')
  const theirs = local.db(db).collection('upsertid_driver')
  const calls = [
    (c) => c.updateOne({ _id: { $in: [50] } }, { $set: { v: 1 } }, { upsert: true }),
    (c) => c.updateOne({ $and: [{ _id: 200 }, { k: 'x' }] }, { $set: { v: 2 } }, { upsert: true }),
    (c) => c.findOneAndUpdate({ $and: [{ k: 'y' }, { _id: 201 }] }, { $set: { v: 3 } }, { upsert: true, returnDocument: 'after' }),
    (c) => c.bulkWrite([{ updateOne: { filter: { _id: { $in: [202] } }, update: { $set: { v: 4 } }, upsert: true } }]),
    (c) => c.updateOne({ _id: { $in: [50] } }, { $inc: { v: 10 } }, { upsert: true }),
  ]
  for (const call of calls) {
    const plain = (r) => JSON.parse(JSON.stringify(r))
    assert.deepEqual(plain(await call(ours)), plain(await call(theirs)))
  }
  assert.deepEqual(await local.db(db).collection('upsertid').find().sort({ _id: 1 }).toArray(), await theirs.find().sort({ _id: 1 }).toArray())
  await sync.flush({ timeoutMs: 30000 })
  await assertSame(local, atlas, db, ['upsertid'])
})

test('local write errors reject with the driver error: code, name, message', async () => {
  const c = sync.db(db).collection('errors')
  await c.insertOne({ _id: 1 })
  const theirs = await local.db(db).collection('errors').insertOne({ _id: 1 }).catch((e) => e)
  await assert.rejects(c.insertOne({ _id: 1 }), (e) => {
    assert.equal(e.name, 'MongoServerError')
    assert.equal(e.code, 11000)
    assert.match(e.message, /duplicate key/i)
    assert.equal(e.codeName, theirs.codeName, 'codeName as the driver has it (absent for a write error)')
    return true
  })
  await assert.rejects(c.insertMany([{ _id: 2 }, { _id: 1 }, { _id: 3 }]), (e) => {
    assert.equal(e.name, 'MongoBulkWriteError')
    assert.equal(e.code, 11000)
    assert.equal(e.insertedCount, 1, 'ordered insertMany stops at the first error')
    assert.deepEqual(Object.keys(e.insertedIds), ['0'])
    assert.equal(e.writeErrors[0].index, 1)
    return true
  })
  await assert.rejects(c.insertMany([{ _id: 1 }, { _id: 4 }], { ordered: false }), (e) => {
    assert.equal(e.insertedCount, 1)
    assert.deepEqual(Object.keys(e.insertedIds), ['1'])
    return true
  })
  // writeErrors are WriteErrors, as the driver's: the same fields, toJSON()
  // and getOperation() (the document, for an insert).
  const { WriteError } = require('..')
  const bulkErrors = async (coll) => {
    const e = await coll.bulkWrite([{ insertOne: { document: { _id: 20 } } }, { insertOne: { document: { _id: 20, x: 1 } } }]).catch((x) => x)
    const w = e.writeErrors[0]
    return { json: JSON.parse(JSON.stringify(w)), fields: [w.code, w.index, w.errmsg.replace(/collection: \S+/, '')], op: w.getOperation(), all: e.writeErrors.length, ok: e.result.isOk() }
  }
  const theirErrors = await bulkErrors(local.db(db).collection('errors_driver'))
  assert.deepEqual(theirErrors.op, { _id: 20, x: 1 }, 'the premise')
  const ourErrors = await bulkErrors(sync.db(db).collection('errors_b'))
  assert.deepEqual({ ...ourErrors, json: { ...ourErrors.json, errmsg: undefined } }, { ...theirErrors, json: { ...theirErrors.json, errmsg: undefined } })
  const many = await sync.db(db).collection('errors_c').insertMany([{ _id: 30 }, { _id: 30, y: 1 }]).catch((x) => x)
  assert.ok(many.writeErrors[0] instanceof WriteError)
  assert.deepEqual(many.writeErrors[0].getOperation(), { _id: 30, y: 1 })
  await assert.rejects(c.updateOne({ _id: 1 }, { n: 1 }), { name: 'MongoInvalidArgumentError', message: 'Update document requires atomic operators' })
  await assert.rejects(c.replaceOne({ _id: 1 }, { $set: { n: 1 } }), { name: 'MongoInvalidArgumentError' })
  const typeErr = await local.db(db).collection('errors').updateOne({ _id: 1 }, { $inc: { s: 'x' } }).catch((e) => e)
  assert.equal(typeof typeErr.code, 'number', 'the premise: the driver is refused too')
  await assert.rejects(c.updateOne({ _id: 1 }, { $inc: { s: 'x' } }), { name: 'MongoServerError', code: typeErr.code, message: typeErr.message })
  await assert.rejects(c.bulkWrite([{ insertOne: { document: { _id: 10 } } }, { insertOne: { document: { _id: 10 } } }, { insertOne: { document: { _id: 11 } } }]), (e) => {
    assert.equal(e.name, 'MongoBulkWriteError')
    assert.equal(e.writeErrors[0].index, 1)
    assert.equal(e.result.insertedCount, 1)
    return true
  })
  // errorResponse (the server's reply, or its write error entry) and the
  // fields the driver copies from it (index; ok, operationTime, ...), as the
  // driver's; the cluster times differ from call to call.
  const shape = (e) => {
    const { $clusterTime, operationTime, ...response } = e.errorResponse
    // name and errmsg are the driver's getters, own fields here.
    const own = Object.keys(e).filter((k) => !['errorLabelSet', '$clusterTime', 'operationTime', 'name', 'errmsg'].includes(k)).sort()
    return { response, own, index: e.index, ok: e.ok, times: [$clusterTime !== undefined, operationTime !== undefined] }
  }
  const twin = local.db(db).collection('errors')
  for (const [what, call] of [
    ['a duplicate key', (x) => x.insertOne({ _id: 1 })],
    ['an unknown update operator', (x) => x.updateOne({ _id: 1 }, { $foo: { a: 1 } })],
    ['a bad query', (x) => x.find({ $foo: 1 }).toArray()],
    ['a bad stage', (x) => x.aggregate([{ $foo: 1 }]).toArray()],
  ]) {
    const [ours, theirs] = [await call(c).catch((e) => e), await call(twin).catch((e) => e)]
    assert.ok(theirs.errorResponse, `the premise: the driver fails on ${what}`)
    assert.deepEqual(shape(ours), shape(theirs), what)
  }
  await sync.flush({ timeoutMs: 30000 })
  await assertSame(local, atlas, db, ['errors'])
  assert.deepEqual((await local.db(db).collection('errors').find().toArray()).map((d) => d._id).sort(), [1, 10, 2, 4])
})

test('write errors carry the server fields the driver hands on: keyValue, keyPattern, errInfo', async () => {
  const schema = { $jsonSchema: { bsonType: 'object', required: ['name'], properties: { name: { bsonType: 'string' } } } }
  const caught = async (p) => p.then(() => assert.fail('expected a rejection'), (e) => e)
  const run = async (c) => {
    const out = {}
    const dup = await caught(c.insertOne({ _id: 'u2', email: 'a@x' }))
    out.dup = { code: dup.code, keyValue: dup.keyValue, keyPattern: dup.keyPattern }
    const dupId = await caught(c.insertOne({ _id: 'u1' }))
    out.dupId = { keyValue: dupId.keyValue, keyPattern: dupId.keyPattern }
    const dupNested = await caught(c.insertOne({ p: { h: 'x', n: new Long(3) }, org: 1 }))
    out.dupNested = { keyValue: dupNested.keyValue, keyPattern: dupNested.keyPattern }
    const upd = await caught(c.updateOne({ _id: 'u2b' }, { $set: { email: 'a@x' } }, { upsert: true }))
    out.upd = { code: upd.code, keyValue: upd.keyValue }
    const v = c.s ? sync.db(db).collection(`${c.collectionName}_v`) : local.db(db).collection(`${c.collectionName}_v`)
    const one = await caught(v.insertOne({ _id: 5, x: 1 }))
    out.one = { code: one.code, errInfo: one.errInfo }
    const many = await caught(v.insertMany([{ _id: 6, name: 'ok' }, { _id: 7, name: 7 }]))
    out.many = many.writeErrors.map((w) => ({ index: w.index, code: w.code, errInfo: w.errInfo }))
    const bulk = await caught(v.bulkWrite([{ insertOne: { document: { _id: 8, name: 'ok' } } }, { insertOne: { document: { _id: 9 } } }]))
    out.bulk = bulk.writeErrors.map((w) => ({ index: w.index, code: w.code, errInfo: w.errInfo }))
    return out
  }
  for (const name of ['kv_addon', 'kv_driver']) {
    await local.db(db).collection(name).createIndex({ email: 1 }, { unique: true })
    await local.db(db).collection(name).createIndex({ 'p.h': 1, org: -1 }, { unique: true, sparse: true, name: 'handle per org' })
    await local.db(db).collection(name).insertOne({ _id: 'u1', email: 'a@x' })
    await local.db(db).collection(name).insertOne({ _id: 'u3', email: 'c@x', p: { h: 'x' }, org: 1 })
    await local.db(db).createCollection(`${name}_v`, { validator: schema })
  }
  const ours = await run(Object.assign(sync.db(db).collection('kv_addon'), { s: true }))
  const theirs = await run(local.db(db).collection('kv_driver'))
  assert.deepEqual(ours, theirs)
  assert.deepEqual(ours.dup.keyValue, { email: 'a@x' }, 'the premise: the server sends keyValue')
  assert.deepEqual(ours.dupNested, { keyValue: { 'p.h': 'x', org: 1 }, keyPattern: { 'p.h': 1, org: -1 } })
  assert.equal(ours.one.errInfo.failingDocumentId, 5)
  assert.equal(typeof ours.many[0].errInfo.details, 'object')
})

test('bad arguments get a clear error naming what was wrong, and break nothing', async () => {
  const c = sync.db(db).collection('bad')
  const code = 'ERR_SYNC_INVALID_ARGUMENT'
  await assert.rejects(c.insertOne(5), { code, message: /insertOne: document must be an object, got number 5/ })
  await assert.rejects(c.insertOne(null), { code })
  await assert.rejects(c.insertMany('x'), { code, message: /must be an array/ })
  const circular = { a: 1 }
  circular.self = circular
  await assert.rejects(c.insertOne(circular), { code, message: /circular/i })
  await assert.rejects(c.updateOne({}, { $set: { a: 1 } }, { upsret: true }), { code, message: /unknown option 'upsret'.*allowed: .*upsert/ })
  assert.throws(() => c.find({}, { session: {} }), { code, message: /session/ })
  await assert.rejects(c.findOneAndUpdate({}, { $set: { a: 1 } }, { returnDocument: 'later' }), { code })
  await assert.rejects(c.bulkWrite([{ insertTwo: {} }]), { code, message: /operation 0/ })
  // A number option of the wrong kind is named, with what it had to be.
  await assert.rejects(c.find({}).limit(1.5).toArray(), { code, message: /find: option 'limit' is invalid: .*1\.5/ })
  await assert.rejects(c.find({}).skip(-1).toArray(), { code, message: /find: option 'skip' is invalid: .*-1/ })
  await assert.rejects(c.find({}, { batchSize: 1e12 }).toArray(), { code, message: /find: option 'batchSize' is invalid/ })
  await assert.rejects(c.countDocuments({}, { limit: -1 }), { code, message: /countDocuments: option 'limit' is invalid/ })
  // A whole number past 32 bits (sent as a double) is read as that number, as by the driver.
  const big = sync.db(db).collection('biglimit')
  await big.insertMany([{ n: 1 }, { n: 2 }])
  assert.deepEqual(await big.find({}).limit(2 ** 53).toArray(), await local.db(db).collection('biglimit').find({}).limit(2 ** 53).toArray())
  assert.throws(() => sync.db(db).collection(''), { code })
  await assert.rejects(sync.db('bad.name').collection('x').insertOne({}), { code, message: /database name/ })
  // the instance still works
  await c.insertOne({ ok: true })
  assert.equal(await c.countDocuments(), 1)
})

test('maxTimeMS reaches the local server with every read that takes it', async () => {
  // Seen on the wire (a proxy in front of the local server): the Rust
  // driver's FindOneOptions and CountOptions name it differently, and a
  // name it does not know was dropped without a word.
  const { startProxy } = require('./proxy')
  const proxy = await startProxy(Number(new URL(LOCAL).port))
  const s = await createSync({ ...syncOptions(db), localUri: `${proxy.uri}&appName=maxtime`, enabled: false })
  try {
    const c = s.db(db).collection('maxtime')
    await c.insertOne({ a: 1 })
    const sent = async (ms, call) => {
      proxy.state.tap = []
      await call()
      const bytes = Buffer.concat(proxy.state.tap)
      proxy.state.tap = null
      const at = bytes.indexOf('maxTimeMS\0')
      if (at < 1) return undefined
      const v = at + 'maxTimeMS'.length + 1
      return bytes[at - 1] === 0x10 ? bytes.readInt32LE(v) : Number(bytes.readBigInt64LE(v))
    }
    assert.equal(await sent(1201, () => c.findOne({ a: 1 }, { maxTimeMS: 1201 })), 1201)
    assert.equal(await sent(1202, () => c.countDocuments({ a: 1 }, { maxTimeMS: 1202 })), 1202)
    assert.equal(await sent(1203, () => c.find({ a: 1 }, { maxTimeMS: 1203 }).toArray()), 1203)
    assert.equal(await sent(1206, () => c.find({ a: 1 }).maxTimeMS(1206).next()), 1206)
    assert.equal(await sent(1204, () => c.aggregate([{ $match: { a: 1 } }], { maxTimeMS: 1204 }).toArray()), 1204)
    assert.equal(await sent(1205, () => c.distinct('a', {}, { maxTimeMS: 1205 })), 1205)
    assert.equal(await sent(1207, () => c.estimatedDocumentCount({ maxTimeMS: 1207 })), 1207)
    assert.equal(await sent(0, () => c.findOne({ a: 1 })), undefined, 'none given, none sent')
    for (const bad of [-1, 1.5, '100']) {
      await assert.rejects(c.findOne({}, { maxTimeMS: bad }), (e) => e.code === 'ERR_SYNC_INVALID_ARGUMENT' && /maxTimeMS/.test(e.message))
    }
  } finally {
    await s.close()
    await proxy.close()
  }
})

test('aggregate stages that write ($out, $merge) are refused while sync is on', async () => {
  const c = sync.db(db).collection('agg')
  await c.insertOne({ a: 1 })
  await assert.rejects(c.aggregate([{ $out: 'elsewhere' }]).toArray(), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /\$out/ })
  await assert.rejects(c.aggregate([{ $match: {} }, { $merge: { into: 'elsewhere' } }]).toArray(), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /\$merge/ })
  await assert.rejects(c.aggregate([{ $merge: 'elsewhere' }]).toArray(), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /\$merge/ })
  // Refused before anything ran: nothing was written locally either.
  assert.deepEqual(await local.db(db).listCollections({ name: 'elsewhere' }).toArray(), [])
})

test('cursors chain like the driver: sort/skip/limit/project/map and async iteration', async () => {
  const c = sync.db(db).collection('cursor')
  await c.insertMany(Array.from({ length: 10 }, (_, i) => ({ _id: i, sq: i * i })))
  const docs = await c.find({ _id: { $gte: 2 } }).sort('_id', -1).skip(1).limit(3).project({ sq: 1 }).map((d) => d.sq).toArray()
  assert.deepEqual(docs, [64, 49, 36])
  const seen = []
  for await (const d of c.find({}, { sort: [['_id', 1]], limit: 3 })) seen.push(d._id)
  assert.deepEqual(seen, [0, 1, 2])
  const cur = c.find({ _id: 5 })
  assert.equal(await cur.hasNext(), true)
  assert.deepEqual(await cur.next(), { _id: 5, sq: 25 })
  assert.equal(await cur.next(), null)
  // clone(): the same query again, unread, without the map (as the driver's)
  const q = c.find({ _id: { $lt: 3 } }).sort({ _id: -1 }).limit(2).map((d) => d._id)
  assert.deepEqual(await q.toArray(), [2, 1])
  assert.deepEqual(await q.clone().toArray(), [{ _id: 2, sq: 4 }, { _id: 1, sq: 1 }])
  const agg = c.aggregate([{ $match: { _id: { $gte: 8 } } }, { $sort: { _id: 1 } }], { batchSize: 1 })
  assert.deepEqual(await agg.toArray(), [{ _id: 8, sq: 64 }, { _id: 9, sq: 81 }])
  assert.deepEqual(await agg.clone().toArray(), [{ _id: 8, sq: 64 }, { _id: 9, sq: 81 }])
})

test('sorts are read as the driver reads them, in every form, and pick the same document for a write', async () => {
  // ['a', 'desc'] is a field and its direction, not two fields; fields named
  // like integers keep their place (a plain object would put them first).
  const seed = [{ _id: 1, a: 1, 2: 2 }, { _id: 2, a: 1, 2: 1 }, { _id: 3, a: 0, 2: 3 }, { _id: 4, a: 2, 2: 0 }]
  const ours = sync.db(db).collection('sorts')
  const theirs = local.db(db).collection('sorts_driver')
  await ours.insertMany(seed.map((d) => ({ ...d })))
  await theirs.insertMany(seed.map((d) => ({ ...d })))
  const ids = (docs) => docs.map((d) => d._id)
  const sorts = [['a', 'desc'], ['a', 'asc'], ['a', '-1'], ['a', 'Descending'], [['a', 1], ['2', 1]], [['a', -1], ['2', -1]],
    new Map([['a', -1], ['2', -1]]), new Map([['a', 1], ['2', 1]]), 'a', ['a', '2'], { a: 'descending', 2: 1 }, {}, [], new Map()]
  for (const sort of sorts) {
    const what = `sort ${JSON.stringify(sort instanceof Map ? [...sort] : sort)}`
    const want = ids(await theirs.find({}, { sort }).toArray())
    assert.deepEqual(ids(await ours.find({}, { sort }).toArray()), want, what)
    assert.deepEqual(ids(await ours.find({}).sort(sort).toArray()), want, `${what} (cursor.sort)`)
    assert.deepEqual(await ours.findOne({}, { sort }), await theirs.findOne({}, { sort }), `${what} (findOne)`)
  }
  assert.deepEqual(ids(await ours.find({}).sort('a', 'desc').toArray()), ids(await theirs.find({}).sort('a', 'desc').toArray()))
  assert.deepEqual(ids(await theirs.find({}, { sort: ['a', 'desc'] }).toArray()), [4, 1, 2, 3], 'the premise: a direction')
  // The same writes on both collections pick the same documents.
  for (const sort of [['a', 'desc'], [['a', 1], ['2', 1]], new Map([['a', -1], ['2', -1]])]) {
    for (const c of [ours, theirs]) {
      await c.findOneAndUpdate({}, { $inc: { n: 1 } }, { sort })
      await c.updateOne({}, { $inc: { u: 1 } }, { sort })
      await c.bulkWrite([{ updateOne: { filter: {}, update: { $inc: { b: 1 } }, sort } }])
    }
  }
  assert.equal((await theirs.findOne({ _id: 4 })).n, 2, 'the premise: descending sorts picked _id 4')
  for (const c of [ours, theirs]) {
    await c.replaceOne({}, { a: 5, replaced: true }, { sort: ['a', 'asc'] })
    await c.bulkWrite([{ replaceOne: { filter: {}, replacement: { a: 6, bulk: true }, sort: { _id: -1 } } }])
    await c.findOneAndDelete({}, { sort: [['2', -1]] })
  }
  const all = async (c) => c.find({}, { sort: { _id: 1 } }).toArray()
  assert.deepEqual(await all(ours), await all(theirs))
  // A bad direction is refused as the driver refuses it.
  const err = (call) => Promise.resolve().then(call).then(() => null, (e) => ({ name: e.name, message: e.message }))
  const bad = { a: 'sideways' }
  assert.deepEqual(await err(() => ours.find({}, { sort: bad }).toArray()), await err(() => theirs.find({}, { sort: bad }).toArray()))
  assert.deepEqual(await err(() => ours.updateOne({}, { $set: { z: 1 } }, { sort: { a: 2 } })), await err(() => theirs.updateOne({}, { $set: { z: 1 } }, { sort: { a: 2 } })))
  assert.equal((await err(() => ours.find({}, { sort: bad }).toArray())).name, 'MongoInvalidArgumentError', 'the premise')
  await sync.flush({ timeoutMs: 30000 })
  await assertSame(local, atlas, db, ['sorts'])
})

test('find, findOne and aggregate decode with the driver\'s BSON options (promoteLongs, raw, bsonRegExp, ...), across batches', async () => {
  const name = 'bsonopts'
  const docs = Array.from({ length: 5 }, (_, i) => ({
    _id: i, i32: 5, long: Long.fromNumber(2 ** 40 + i), small: Long.fromNumber(7), d: 1.5,
    bin: new Binary(Buffer.from([1, 2, 3]), 0), re: new BSONRegExp('^a.b', 'i'), arr: [{ x: i }], s: 'x',
  }))
  await sync.db(db).collection(name).insertMany(docs)
  const ours = sync.db(db).collection(name)
  const theirs = local.db(db).collection(name)
  const sets = [{}, { promoteLongs: false }, { promoteValues: false }, { promoteBuffers: true }, { bsonRegExp: true },
    { useBigInt64: true }, { raw: true }, { fieldsAsRaw: { arr: true } }, { enableUtf8Validation: false },
    { promoteValues: false, promoteBuffers: true }]
  for (const o of sets) {
    const what = JSON.stringify(o)
    const want = await theirs.find({}, { ...o, sort: { _id: 1 }, batchSize: 2 }).toArray()
    assert.deepEqual(await ours.find({}, { ...o, sort: { _id: 1 }, batchSize: 2 }).toArray(), want, `find ${what}`)
    assert.deepEqual(await ours.findOne({ _id: 3 }, o), await theirs.findOne({ _id: 3 }, o), `findOne ${what}`)
    const pipeline = [{ $sort: { _id: -1 } }]
    assert.deepEqual(await ours.aggregate(pipeline, { ...o, batchSize: 2 }).toArray(), await theirs.aggregate(pipeline, { ...o, batchSize: 2 }).toArray(), `aggregate ${what}`)
  }
  // The premises: the options change what is read.
  assert.ok(Buffer.isBuffer((await ours.findOne({}, { raw: true }))), 'raw gives the bytes')
  assert.equal(typeof (await ours.findOne({}, { useBigInt64: true })).long, 'bigint')
  assert.ok((await ours.find({}, { promoteLongs: false, batchSize: 2 }).toArray()).every((d) => d.small instanceof Long), 'a Long in every batch')
  // A stored pattern JavaScript cannot compile is read with bsonRegExp, as with the driver.
  await ours.insertOne({ _id: 'bad-re', re: new BSONRegExp('a(', '') })
  await assert.rejects(theirs.findOne({ _id: 'bad-re' }), SyntaxError)
  await assert.rejects(ours.findOne({ _id: 'bad-re' }), SyntaxError)
  assert.deepEqual(await ours.findOne({ _id: 'bad-re' }, { bsonRegExp: true }), await theirs.findOne({ _id: 'bad-re' }, { bsonRegExp: true }))
  // explain() does not send them to the server.
  assert.ok(await ours.find({}, { promoteLongs: false }).explain())
  await assert.rejects(ours.find({}, { promoteLongs: 'no' }).toArray(), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /option 'promoteLongs' must be a boolean/ })
})

test('ignoreUndefined and serializeFunctions encode the arguments as the driver\'s do, and the bytes reach Atlas', async () => {
  const ours = sync.db(db).collection('encodeopts')
  const theirs = local.db(db).collection('encodeopts_driver')
  const fn = function twice(x) { return 2 * x }
  for (const c of [ours, theirs]) {
    await c.insertOne({ _id: 1, a: undefined, f: fn, keep: 1 }, { ignoreUndefined: true, serializeFunctions: true })
    await c.insertOne({ _id: 2, a: undefined, f: fn, keep: 2 })
    await c.insertMany([{ _id: 3, a: undefined }], { ignoreUndefined: true })
    await c.updateOne({ _id: 2 }, { $set: { b: undefined, g: fn } }, { ignoreUndefined: true, serializeFunctions: true })
    await c.bulkWrite([{ updateOne: { filter: { _id: 3 }, update: { $set: { c: undefined, d: 1 } } } }], { ignoreUndefined: true })
  }
  const raw = async (c) => (await c.find({}, { sort: { _id: 1 }, raw: true }).toArray()).map((b) => Buffer.from(b).toString('hex'))
  assert.deepEqual(await raw(ours), await raw(local.db(db).collection('encodeopts_driver')))
  assert.deepEqual(await ours.findOne({ _id: 1 }), { _id: 1, f: new Code(fn.toString()), keep: 1 }, 'the premise: the options changed the bytes')
  // In a filter too: { a: undefined } left out matches every document.
  const filter = { a: undefined }
  assert.equal(await ours.countDocuments(filter, { ignoreUndefined: true }), await theirs.countDocuments(filter, { ignoreUndefined: true }))
  assert.deepEqual(await ours.find(filter, { ignoreUndefined: true }).toArray(), await theirs.find(filter, { ignoreUndefined: true }).toArray())
  assert.equal((await ours.find(filter, { ignoreUndefined: true }).toArray()).length, 3, 'the premise')
  await assert.rejects(ours.insertOne({ _id: 9 }, { ignoreUndefined: 1 }), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /option 'ignoreUndefined' must be a boolean/ })
  await sync.flush({ timeoutMs: 30000 })
  await assertSame(local, atlas, db, ['encodeopts'])
})

test('cursors closed, rewound, with a negative batch size or an ObjectId filter act as the driver\'s', async () => {
  const ours = sync.db(db).collection('cursorends')
  const theirs = local.db(db).collection('cursorends')
  const oid = new ObjectId()
  await ours.insertMany([{ _id: oid, n: 0 }, ...Array.from({ length: 6 }, (_, i) => ({ _id: i + 1, n: i + 1 }))])
  const outcome = async (fn) => {
    try {
      return { value: await fn() }
    } catch (e) {
      return { error: e.name }
    }
  }
  const both = async (what, fn) => {
    const [a, b] = [await outcome(() => fn(ours)), await outcome(() => fn(theirs))]
    assert.deepEqual(a, b, what)
    return a
  }
  const closedOpen = async (c, read) => {
    const cur = c.find({}, { sort: { n: 1 }, batchSize: 2 })
    await cur.next()
    await cur.close()
    return read(cur)
  }
  assert.deepEqual(await both('next after closing an open cursor', (c) => closedOpen(c, (cur) => cur.next())), { error: 'MongoCursorExhaustedError' })
  await both('tryNext after closing an open cursor', (c) => closedOpen(c, (cur) => cur.tryNext()))
  await both('hasNext after closing an open cursor', (c) => closedOpen(c, (cur) => cur.hasNext()))
  await both('toArray after closing an open cursor', (c) => closedOpen(c, (cur) => cur.toArray()))
  await both('rewind after closing an open cursor', (c) => closedOpen(c, async (cur) => {
    cur.rewind()
    return cur.toArray()
  }))
  await both('next after closing a cursor read to the end', async (c) => {
    const cur = c.find({ n: { $gte: 5 } })
    await cur.toArray()
    await cur.close()
    return cur.next()
  })
  assert.equal((await both('a negative batch size', (c) => c.find({}, { sort: { n: 1 } }).batchSize(-2).toArray())).value.length, 2)
  await both('a negative batch size option', (c) => c.find({}, { sort: { n: 1 }, batchSize: -3, limit: 5 }).toArray())
  assert.deepEqual((await both('find(ObjectId)', (c) => c.find(oid).toArray())).value, [{ _id: oid, n: 0 }])
  await both('findOne(ObjectId)', (c) => c.findOne(oid))
  assert.deepEqual(await both('allowDiskUse() without a sort', async (c) => c.find({}).allowDiskUse()), { error: 'MongoInvalidArgumentError' })
  await both('allowDiskUse() with a sort', (c) => c.find({}).sort({ n: -1 }).allowDiskUse().limit(2).toArray())
})

test('db.aggregate runs on the database ({ aggregate: 1 }) as the driver\'s, a batch at a time; $out is refused', async () => {
  const docs = Array.from({ length: 7 }, (_, i) => ({ n: i, even: i % 2 === 0 }))
  const pipeline = [{ $documents: docs }, { $match: { even: true } }, { $sort: { n: -1 } }]
  const ours = sync.db(db).aggregate(pipeline, { batchSize: 1 })
  const want = await local.db(db).aggregate(pipeline, { batchSize: 1 }).toArray()
  assert.equal(want.length, 4, 'the premise: the server runs $documents')
  assert.deepEqual(await ours.toArray(), want)
  assert.deepEqual(await sync.db(db).aggregate(pipeline).clone().map((d) => d.n).toArray(), [6, 4, 2, 0])
  assert.ok(await sync.db(db).aggregate(pipeline).explain('queryPlanner'))
  await assert.rejects(sync.db(db).aggregate([{ $documents: docs }, { $out: 'fromDocuments' }]).toArray(), {
    code: 'ERR_SYNC_INVALID_ARGUMENT', message: /the \$out stage writes without being replicated/,
  })
  assert.throws(() => sync.db(db).aggregate({ $match: {} }), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /pipeline must be an array/ })
})

test('cursors end as the driver\'s do: after a for await loop, on a map to null, when rewound during toArray', async () => {
  // The driver keeps a closed cursor's buffered documents readable; so do we.
  await local.db(db).collection('ends').insertMany(Array.from({ length: 5 }, (_, i) => ({ _id: i })))
  const run = async (c) => {
    const out = {}
    // leaving the loop early closes the cursor
    const cur = c.find({}).sort({ _id: 1 })
    for await (const d of cur) { out.first = d._id; break }
    out.afterBreak = await cur.next()
    // a map that returns null fails the read and closes the cursor
    const mapped = c.find({}).sort({ _id: 1 }).map((d) => (d._id === 1 ? null : d._id))
    out.mapped = [await mapped.next()]
    out.nullMap = await mapped.next().then(() => 'no error', (e) => `${e.name}: ${/Mapping documents to `null` is not supported/.test(e.message)}`)
    out.afterNull = await mapped.next()
    return out
  }
  const theirs = await run(local.db(db).collection('ends'))
  const ours = await run(sync.db(db).collection('ends'))
  assert.deepEqual(ours, theirs)
  assert.deepEqual(ours, { first: 0, afterBreak: { _id: 1 }, mapped: [0], nullMap: 'MongoAPIError: true', afterNull: 2 })
  // rewound while toArray runs: no TypeError, the documents read so far
  const c = sync.db(db).collection('ends')
  const cur = c.find({}).batchSize(2)
  const all = cur.toArray()
  cur.rewind()
  const read = (await all).map((d) => d._id)
  assert.deepEqual(read, [0, 1, 2, 3, 4].slice(0, read.length), 'what it had read, in order')
  assert.deepEqual((await cur.toArray()).map((d) => d._id), [0, 1, 2, 3, 4], 'and it reads from the start again')
})

test('cursors offer the driver\'s stream(), explain(), buffer reads, find modifiers and aggregation stage builders, with its results', async () => {
  await local.db(db).collection('more').insertMany(Array.from({ length: 6 }, (_, i) => ({ _id: i, g: i % 2, tags: [`t${i}`, 'all'] })))
  const settle = (p) => p.then((v) => v, (e) => ({ error: e.name, code: e.code }))
  const run = async (c, d) => {
    const out = {}
    const streamed = []
    for await (const x of c.find({}).sort({ _id: 1 }).map((x) => x._id).stream()) streamed.push(x)
    out.streamed = streamed
    // A stream given up early closes its cursor.
    const early = c.find({}).sort({ _id: 1 }).batchSize(2)
    const s = early.stream()
    for await (const x of s) { out.firstStreamed = x._id; break }
    await new Promise((r) => setImmediate(r))
    out.earlyClosed = early.closed
    const fresh = c.find({}).sort({ _id: 1 }).batchSize(2).map((x) => x._id)
    out.before = [fresh.closed, fresh.bufferedCount()]
    await fresh.hasNext()
    out.buffered = fresh.bufferedCount()
    out.readBuffered = fresh.readBufferedDocuments(1)
    out.rest = await fresh.toArray()
    out.after = fresh.closed
    out.minMax = await settle(c.find({}).hint({ _id: 1 }).min({ _id: 1 }).max({ _id: 3 }).toArray())
    out.returnKey = await settle(c.find({ _id: { $lt: 2 } }).hint({ _id: 1 }).returnKey(true).toArray())
    out.diskUse = await c.find({ g: 1 }).sort({ _id: -1 }).allowDiskUse().toArray()
    out.noTimeout = await c.find({ _id: 0 }).addCursorFlag('noCursorTimeout', true).toArray()
    out.badFlag = (() => { try { c.find({}).addCursorFlag('bogus', true) } catch (e) { return `${e.name}: ${e.message}` } })()
    out.badValue = (() => { try { c.find({}).addCursorFlag('noCursorTimeout', 'yes') } catch (e) { return `${e.name}: ${e.message}` } })()
    out.stages = await c.aggregate().match({ _id: { $gte: 1 } }).sort({ _id: -1 }).skip(1).limit(3).project({ tags: 0 }).maxTimeMS(5000).batchSize(1).toArray()
    out.grouped = await c.aggregate().unwind('$tags').match({ tags: 'all' }).group({ _id: '$g', n: { $sum: 1 } }).sort({ _id: 1 }).toArray()
    out.looked = await c.aggregate([{ $match: { _id: 0 } }]).lookup({ from: 'more', localField: 'g', foreignField: 'g', as: 'same' }).addStage({ $project: { n: { $size: '$same' } } }).toArray()
    const qp = await c.find({ _id: 2 }).explain('queryPlanner')
    out.explainFind = [qp.ok, qp.queryPlanner.namespace, 'executionStats' in qp]
    const all = await c.find({ g: 0 }).sort({ _id: 1 }).explain()
    out.explainFindAll = ['queryPlanner' in all, 'executionStats' in all]
    const agg = await c.aggregate([{ $match: { g: 1 } }]).explain(false)
    out.explainAgg = [agg.ok, Object.keys(agg).filter((k) => !['$clusterTime', 'operationTime'].includes(k)).sort()]
    out.badVerbosity = await settle(c.find({}).explain('everything'))
    return out
  }
  const theirs = await run(local.db(db).collection('more'))
  const ours = await run(sync.db(db).collection('more'))
  assert.deepEqual(ours, theirs)
  assert.deepEqual(ours.streamed, [0, 1, 2, 3, 4, 5], 'the premise')
  assert.deepEqual(ours.minMax.map((x) => x._id), [1, 2], 'min and max bound the index scan')
  assert.deepEqual(ours.returnKey, [{ _id: 0 }, { _id: 1 }], 'returnKey gives the index keys')
  assert.deepEqual([ours.firstStreamed, ours.earlyClosed, ours.before, ours.buffered, ours.after], [0, true, [false, 0], 2, true])
  assert.deepEqual(ours.readBuffered, [{ _id: 0, g: 0, tags: ['t0', 'all'] }], 'unmapped, as the driver\'s')
  assert.deepEqual(ours.stages.map((x) => x._id), [4, 3, 2])
  assert.deepEqual(ours.grouped, [{ _id: 0, n: 3 }, { _id: 1, n: 3 }])
  assert.equal(ours.badVerbosity.error, 'MongoServerError', 'a verbosity the server does not know is its to refuse')
  // Tailable and exhaust reads are not offered, said by name.
  assert.throws(() => sync.db(db).collection('more').find({}).addCursorFlag('tailable', true), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /'tailable' is not offered/ })
  // A stage builder after the cursor was read, and $out through the builder while sync is on, are refused.
  const read = sync.db(db).collection('more').aggregate([])
  await read.toArray()
  const theirsRead = local.db(db).collection('more').aggregate([])
  await theirsRead.toArray()
  const inUse = (f) => { try { f() } catch (e) { return `${e.name}: ${e.message}` } }
  assert.equal(inUse(() => read.match({})), inUse(() => theirsRead.match({})))
  assert.equal(inUse(() => read.match({})), 'MongoCursorInUseError: Cursor is already initialized')
  assert.equal(inUse(() => read.map((x) => x)), inUse(() => theirsRead.map((x) => x)), 'map after a read, as the driver')
  assert.throws(() => sync.db(db).collection('more').aggregate().addStage(null), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /addStage: a stage must be an object/ })
  await assert.rejects(sync.db(db).collection('more').aggregate().out('copy').toArray(), /\$out stage writes without being replicated/)
  await assert.rejects(sync.db(db).collection('more').aggregate().out('copy').explain(), /\$out stage writes/)
})

test('find and aggregate read large results a batch at a time, like the driver', async () => {
  const c = sync.db(db).collection('batches')
  const n = 2500
  for (let k = 0; k < n; k += 500) await c.insertMany(Array.from({ length: 500 }, (_, i) => ({ _id: k + i, pad: 'x'.repeat(100) })))
  const ids = Array.from({ length: n }, (_, i) => i)

  // Only the first batch is in memory after the first read; the rest follow in order.
  const cur = c.find({}, { sort: { _id: 1 } }).batchSize(300)
  assert.equal(await cur.hasNext(), true)
  assert.equal(cur._buffer.length, 300, 'one batch buffered, not the whole result')
  const oneByOne = []
  for (let d = await cur.next(); d !== null; d = await cur.next()) oneByOne.push(d._id)
  assert.deepEqual(oneByOne, ids)
  assert.equal(cur._state.id, 0, 'a cursor read to the end is no longer open in the engine')

  // toArray over many batches, and with the default batch size.
  assert.deepEqual((await c.find({}).sort({ _id: 1 }).batchSize(7).toArray()).map((d) => d._id), ids)
  assert.deepEqual((await c.find({}).sort({ _id: 1 }).toArray()).map((d) => d._id), ids)
  const agg = c.aggregate([{ $match: { _id: { $lt: 1000 } } }, { $sort: { _id: -1 } }, { $project: { pad: 0 } }], { batchSize: 64 })
  const aggIds = []
  for await (const d of agg) aggIds.push(d._id)
  assert.deepEqual(aggIds, ids.slice(0, 1000).reverse())

  // Reads racing on one cursor neither lose nor repeat documents.
  const racing = c.find({}, { sort: { _id: 1 }, batchSize: 10 })
  const got = await Promise.all(Array.from({ length: 55 }, () => racing.next()))
  assert.deepEqual(got.map((d) => d._id), ids.slice(0, 55))
  await racing.close()

  // Leaving a for await loop early closes the engine's cursor; a later getMore names it.
  const early = c.find({}, { sort: { _id: 1 }, batchSize: 50 })
  for await (const d of early) if (d._id === 10) break
  assert.equal(early._state.id, 0)
  const open = c.find({}, { batchSize: 5 })
  await open.hasNext()
  const id = open._state.id
  assert.ok(id > 0, 'more than one batch: the engine keeps the cursor')
  await open.close()
  assert.equal(await open.hasNext(), false, 'a closed cursor gives nothing more')
  await assert.rejects(open.next(), { name: 'MongoCursorExhaustedError' }, 'as the driver\'s, closed while the server held it')
  await assert.rejects(c._getMore(id), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: new RegExp(`cursor ${id} is not open`) })

  // close() while a batch is on its way: the batch is dropped, not revived.
  const closing = c.find({}, { sort: { _id: 1 }, batchSize: 3 })
  for (let i = 0; i < 3; i++) await closing.next()
  const inFlight = closing.next() // the buffer is empty: this one asks for the next batch
  await closing.close()
  assert.equal(await inFlight, null)
  assert.equal(closing._state.id, 0)
  await assert.rejects(closing.next(), { name: 'MongoCursorExhaustedError' })

  // rewind runs the query again from the start.
  const again = c.find({ _id: { $lt: 20 } }, { sort: { _id: 1 }, batchSize: 4 })
  assert.deepEqual([(await again.next())._id, (await again.next())._id], [0, 1])
  again.rewind()
  assert.deepEqual((await again.toArray()).map((d) => d._id), ids.slice(0, 20))
})

test('the metrics and health read as the mission describes', async () => {
  await sync.flush({ timeoutMs: 30000 })
  const m = await sync.metrics()
  for (const k of ['queueSize', 'captured', 'synced', 'failed', 'retried', 'deadLettered', 'successRate', 'lagMs', 'connections']) {
    assert.ok(k in m, `metrics has ${k}`)
  }
  assert.ok(m.captured > 0)
  assert.ok(m.synced > 0 && m.synced <= m.captured, JSON.stringify(m))
  assert.equal(m.queueSize, 0, 'flushed')
  assert.equal(m.deadLettered, 0)
  assert.deepEqual(m.connections, { local: 'up', atlas: 'up' })
  const h = await sync.health()
  assert.equal(h.status, 'healthy', JSON.stringify(h))
  assert.equal(h.checks.localConnection.pass, true)
  assert.equal(h.checks.atlasConnection.pass, true)
  assert.equal(h.checks.queueSize.value, 0)
  const text = await sync.metrics({ format: 'prometheus' })
  assert.match(text, /# TYPE dual_sync_queue_size gauge\ndual_sync_queue_size \d+/)
})

test('after close every call fails with ERR_SYNC_CLOSED', async () => {
  const s = await createSync(syncOptions(db))
  const c = s.collection('closed')
  await c.insertMany(Array.from({ length: 5 }, (_, i) => ({ i })))
  const reading = c.find({}, { batchSize: 2 })
  assert.equal(await reading.hasNext(), true)
  await s.close()
  await assert.rejects(c.insertOne({ a: 2 }), { code: 'ERR_SYNC_CLOSED' })
  // A cursor open in the engine when it closed: its next batch fails the same way, closing it does not throw.
  await reading.next()
  await reading.next()
  await assert.rejects(reading.next(), { code: 'ERR_SYNC_CLOSED' })
  await reading.close()
  await assert.rejects(s.flush(), { code: 'ERR_SYNC_CLOSED' })
  assert.throws(() => s.pause(), { code: 'ERR_SYNC_CLOSED' })
  await s.close() // closing twice is fine
})

test('ESM import exposes the same API', async () => {
  const esm = await import('../index.mjs')
  assert.equal(typeof esm.createSync, 'function')
  assert.equal(esm.ObjectId, ObjectId)
  assert.equal(esm.default.createSync, createSync)
})
