'use strict'
// Change streams: collection.watch() and db.watch() give the local server's
// changes as the official driver's ChangeStream does (iterator and emitter
// use, resume tokens, pipelines, options), end with close() or the
// instance's close(), and never touch replication.
const { test, after } = require('node:test')
const assert = require('node:assert/strict')
const { Timestamp } = require('bson')
const { createSync, ChangeStream, MongoAPIError } = require('..')
const { LOCAL, ATLAS, uniqueDb, driver, closeDrivers, syncOptions, waitFor } = require('./helpers')

after(closeDrivers)

const FAST = { takeoverGraceMs: 200, retryBaseMs: 20, retryMaxMs: 200 }

/** What a change event says, without the parts that differ between two streams of the same change. */
function gist(e) {
  const { _id, clusterTime, wallTime, collectionUUID, ...rest } = e
  return rest
}

test('collection.watch() gives the same change events as the driver\'s, resumes after a token, and filters with a pipeline', async () => {
  const db = uniqueDb('watch')
  const sync = await createSync(syncOptions(db, FAST))
  const local = await driver(LOCAL)
  const c = sync.db(db).collection('c')
  await c.insertOne({ _id: 0, n: 0 })
  const ours = c.watch([], { fullDocument: 'updateLookup' })
  const theirs = local.db(db).collection('c').watch([], { fullDocument: 'updateLookup' })
  const inserts = c.watch([{ $match: { operationType: 'insert' } }])
  try {
    assert.ok(ours instanceof ChangeStream)
    // Both open before the writes: tryNext() opens and answers null when nothing changed.
    assert.equal(await ours.tryNext(), null)
    assert.equal(await theirs.tryNext(), null)
    assert.equal(await inserts.tryNext(), null)
    await c.insertOne({ _id: 1, n: 1, at: new Date(0) })
    await c.updateOne({ _id: 1 }, { $inc: { n: 1 } })
    await c.deleteOne({ _id: 0 })
    const got = [await ours.next(), await ours.next(), await ours.next()]
    const want = [await theirs.next(), await theirs.next(), await theirs.next()]
    assert.deepEqual(got.map(gist), want.map(gist))
    assert.deepEqual(got.map((e) => e.operationType), ['insert', 'update', 'delete'], 'the premise')
    assert.deepEqual(got[1].fullDocument, { _id: 1, n: 2, at: new Date(0) })
    assert.ok(got[0].clusterTime instanceof Timestamp, 'clusterTime keeps its BSON type')
    assert.deepEqual(got.map((e) => e._id), want.map((e) => e._id), 'the same resume tokens')
    assert.deepEqual(ours.resumeToken, got[2]._id)
    assert.equal((await inserts.next()).documentKey._id, 1)

    // Resuming after the insert gives the update and the delete again.
    const again = c.watch([], { resumeAfter: got[0]._id })
    assert.deepEqual([await again.next(), await again.next()].map((e) => e.operationType), ['update', 'delete'])
    await again.close()
    assert.equal(again.closed, true)
    await assert.rejects(again.next(), (e) => e instanceof MongoAPIError && e.message === 'ChangeStream is closed')

    // A for-await loop left early closes its stream.
    const looped = c.watch()
    assert.equal(await looped.tryNext(), null)
    await c.insertOne({ _id: 2 })
    for await (const e of looped) {
      assert.equal(e.documentKey._id, 2)
      break
    }
    assert.equal(looped.closed, true)
  } finally {
    await Promise.all([ours.close(), theirs.close(), inserts.close()])
    await sync.close()
  }
  // Watching does not change what is replicated.
  const atlas = await driver(ATLAS)
  const again = await createSync(syncOptions(db, FAST))
  await again.flush({ timeoutMs: 30000 })
  await again.close()
  assert.deepEqual(await atlas.db(db).collection('c').find().sort({ _id: 1 }).toArray(), await local.db(db).collection('c').find().sort({ _id: 1 }).toArray())
})

test('db.watch() and on(\'change\') stream the changes of every collection; the instance\'s close() ends them quietly', async () => {
  const db = uniqueDb('watchdb')
  const sync = await createSync(syncOptions(db, FAST))
  const d = sync.db(db)
  const stream = d.watch()
  const seen = []
  const errors = []
  let closed = 0
  stream.on('change', (e) => seen.push(`${e.operationType} ${e.ns.coll} ${e.documentKey._id}`))
  stream.on('error', (e) => errors.push(e))
  stream.on('close', () => closed++)
  // The stream opens on its first read (the listener starts it): changes
  // made before that are not in it, as with the driver. `_id` is the
  // engine's stream id, set once the server answered the open.
  await waitFor(() => stream._id !== null, { what: 'the stream to open' })
  await d.collection('a').insertOne({ _id: 1 })
  await d.collection('b').insertOne({ _id: 2 })
  await d.collection('a').deleteOne({ _id: 1 })
  await waitFor(() => seen.length >= 3, { what: 'three changes' })
  assert.deepEqual(seen, ['insert a 1', 'insert b 2', 'delete a 1'])
  // One stream is used one way, as with the driver.
  await assert.rejects(stream.next(), (e) => e instanceof MongoAPIError && /cannot be used as an iterator after being used as an EventEmitter/.test(e.message))
  const it = d.collection('a').watch()
  await it.tryNext()
  assert.throws(() => it.on('change', () => {}), /cannot be used as an EventEmitter after being used as an iterator/)
  const started = Date.now()
  await sync.close()
  assert.ok(Date.now() - started < 10000, `close() waited ${Date.now() - started} ms on open streams`)
  await waitFor(() => closed === 1, { what: 'the stream to close' })
  assert.deepEqual(errors, [], 'closing the instance is not an error of the stream')
  assert.equal(stream.closed, true)
  await assert.rejects(it.next(), { code: 'ERR_SYNC_CLOSED' })
})

test('watch() refuses bad arguments by name', async () => {
  const db = uniqueDb('watchbad')
  const sync = await createSync(syncOptions(db, FAST))
  try {
    const c = sync.db(db).collection('c')
    assert.throws(() => c.watch('x'), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /watch: pipeline must be an array/ })
    assert.throws(() => c.watch([], { session: {} }), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /watch: unknown option 'session'/ })
    await assert.rejects(c.watch([], { fullDocument: 1 }).next(), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /'fullDocument' must be a string/ })
    await assert.rejects(c.watch([], { resumeAfter: 'x' }).next(), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /'resumeAfter' must be an object/ })
    // A stage the server refuses rejects with the server's error.
    await assert.rejects(c.watch([{ $nope: {} }]).next(), (e) => e.name === 'MongoServerError')
  } finally {
    await sync.close()
  }
})
