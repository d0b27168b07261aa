'use strict'
// Change streams: collection.watch() and db.watch() give the local server's
// changes as the official driver's ChangeStream does (iterator and emitter
// use, resume tokens, pipelines, options), end with close() or the
// instance's close(), and never touch replication.
const { test, after } = require('node:test')
const assert = require('node:assert/strict')
const { Timestamp } = require('bson')
const { createSync, ChangeStream, MongoAPIError } = require('..')
const { LOCAL, uniqueDb, withDb, driver, closeDrivers, syncOptions, waitFor } = require('./helpers')

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

    // stream(): a Readable of the changes; destroying it closes the stream.
    const watched = c.watch()
    const readable = watched.stream()
    assert.equal(await watched.tryNext(), null)
    await c.insertOne({ _id: 3 })
    for await (const e of readable) {
      assert.equal(e.documentKey._id, 3)
      break
    }
    await new Promise((r) => setImmediate(r))
    assert.equal(watched.closed, true)
    assert.throws(() => watched.stream(), { message: 'ChangeStream is closed' })

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
})

test('a stream of a dropped collection ends as the driver\'s: its drop and invalidate events, then closed; an emitter gets \'close\', not \'error\'', async () => {
  const db = uniqueDb('watchdrop')
  const sync = await createSync(syncOptions(db, FAST))
  const local = await driver(LOCAL)
  const c = sync.db(db).collection('c')
  await c.insertOne({ _id: 0 })
  const ours = c.watch()
  const theirs = local.db(db).collection('c').watch()
  const oursH = c.watch()
  const theirsH = local.db(db).collection('c').watch()
  const emitter = c.watch()
  const emitted = []
  emitter.on('change', (e) => emitted.push(e.operationType))
  emitter.on('error', (e) => emitted.push(`error ${e.message}`))
  emitter.on('close', () => emitted.push('close'))
  try {
    for (const cs of [ours, theirs, oursH, theirsH]) await cs.tryNext()
    await waitFor(() => emitter._id !== null, { what: 'the emitter\'s stream to open' })
    await c.insertOne({ _id: 1 })
    await c.drop()
    const read = async (cs) => {
      const out = []
      for (let i = 0; i < 5; i++) {
        try {
          const e = await cs.next()
          out.push(`${e.operationType}${cs.closed ? ' closed' : ''}`)
        } catch (e) {
          out.push(`${e.name}: ${e.message}`)
          break
        }
      }
      out.push(cs.closed)
      await cs.next().catch((e) => out.push(`${e.name}: ${e.message}`))
      return out
    }
    const want = await read(theirs)
    assert.deepEqual(await read(ours), want)
    assert.deepEqual(want, ['insert', 'drop', 'invalidate closed', 'MongoRuntimeError: ChangeStream is closed', true, 'MongoAPIError: ChangeStream is closed'], 'the premise')
    // hasNext() is false once the stream ended, and the token moves only
    // when next() hands a change out; tryNext() then answers null.
    const readH = async (cs) => {
      const out = []
      for (;;) {
        const before = JSON.stringify(cs.resumeToken)
        const more = await cs.hasNext()
        out.push(`hasNext ${more}`)
        if (!more) break
        out.push(`token kept ${JSON.stringify(cs.resumeToken) === before}`)
        const e = await cs.next()
        out.push(`${e.operationType} token ${JSON.stringify(cs.resumeToken) === JSON.stringify(e._id)}`)
      }
      out.push(`tryNext ${await cs.tryNext()}`)
      return out
    }
    const wantH = await readH(theirsH)
    assert.deepEqual(await readH(oursH), wantH)
    assert.equal(wantH.filter((x) => x === 'token kept true').length, 3, 'the premise')
    await waitFor(() => emitted.includes('close'), { what: 'the emitter to close' })
    assert.deepEqual(emitted, ['insert', 'drop', 'invalidate', 'close'])
    // Closed before it was ever read: tryNext() null, hasNext() false.
    const never = [c.watch(), local.db(db).collection('c').watch()]
    for (const cs of never) await cs.close()
    const reads = async (cs) => [await cs.tryNext(), await cs.hasNext(), cs.closed]
    assert.deepEqual(await reads(never[0]), await reads(never[1]))
  } finally {
    await Promise.all([ours, theirs, oursH, theirsH, emitter].map((cs) => cs.close()))
    await sync.close()
  }
})

test('a listener that throws gets \'error\' and the stream goes on; close() ends a pending next(); a stream cut short by socketTimeoutMS resumes where it was', async () => {
  const db = uniqueDb('watcherr')
  const sync = await createSync(syncOptions(db, FAST))
  const c = sync.db(db).collection('c')
  const stream = c.watch()
  const errors = []
  const seen = []
  stream.on('change', (e) => {
    seen.push(e.documentKey._id)
    throw new Error(`listener failed on ${e.documentKey._id}`)
  })
  stream.on('error', (e) => errors.push(e.message))
  try {
    await waitFor(() => stream._id !== null, { what: 'the stream to open' })
    await c.insertOne({ _id: 1 })
    await c.insertOne({ _id: 2 })
    await waitFor(() => seen.length === 2, { what: 'both changes' })
    assert.deepEqual(errors, ['listener failed on 1', 'listener failed on 2'])
    assert.equal(stream.closed, false, 'the stream goes on, as the driver\'s')
    // With no 'error' listener, a process warning rather than an exception
    // nothing could catch.
    const quiet = c.watch()
    const warned = new Promise((resolve) => process.once('warning', resolve))
    quiet.on('change', () => { throw new Error('unheard') })
    await waitFor(() => quiet._id !== null, { what: 'the second stream to open' })
    await c.insertOne({ _id: 3 })
    assert.match((await warned).message, /unheard/)
    await quiet.close()

    // close() while next() waits: the pending next() rejects, close() resolves.
    const waiting = c.watch()
    assert.equal(await waiting.tryNext(), null)
    const pending = waiting.next()
    await new Promise((r) => setTimeout(r, 100))
    await waiting.close()
    await assert.rejects(pending, { message: 'ChangeStream is closed' })
  } finally {
    await stream.close()
    await sync.close()
  }

  // Every read cut short at 300 ms (the server holds an empty getMore for
  // 1 s): each time the engine drops the stream, and the next read opens
  // it again after its last token, so no change is lost.
  const cut = await createSync({ ...syncOptions(db, FAST), localUri: `${withDb(LOCAL, db)}${withDb(LOCAL, db).includes('?') ? '&' : '?'}socketTimeoutMS=300` })
  try {
    const cc = cut.db(db).collection('c')
    const resumed = cc.watch([], { maxAwaitTimeMS: 1000 })
    // The first read answers from the open's empty first batch; the next
    // waits on the server and is cut short (a slow server may answer one
    // more read before it holds one: up to five reads, none has a change).
    for (let i = 0; i < 5 && (i < 2 || resumed._id !== null); i++) assert.equal(await resumed.tryNext(), null)
    assert.equal(resumed._id, null, 'the premise: a read was cut short, and the engine dropped its stream')
    const next = resumed.next()
    await new Promise((r) => setTimeout(r, 700))
    await cc.insertOne({ _id: 10 })
    await cc.insertOne({ _id: 11 })
    assert.equal((await next).documentKey._id, 10)
    assert.equal((await resumed.next()).documentKey._id, 11)
    await resumed.close()
  } finally {
    await cut.close()
  }
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
    await assert.rejects(c.watch([], { fullDocument: 'sometimes' }).next(), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /'fullDocument' must be one of 'default', .*"sometimes"/ })
    // 'default' is MongoDB's own value (it used to reach the server as an object).
    const dflt = c.watch([], { fullDocument: 'default' })
    assert.equal(await dflt.tryNext(), null)
    await c.insertOne({ _id: 'dflt' })
    assert.equal((await dflt.next()).documentKey._id, 'dflt')
    await dflt.close()
    // A stage the server refuses rejects with the server's error; an
    // emitter gets the same events as the driver's ('close', then 'error').
    const stageErr = await (await driver(LOCAL)).db(db).collection('c').watch([{ $nope: {} }]).next().catch((e) => e)
    assert.equal(typeof stageErr.code, 'number', 'the premise: the driver is refused too')
    await assert.rejects(c.watch([{ $nope: {} }]).next(), { name: 'MongoServerError', code: stageErr.code })
    const eventsOf = async (cs) => {
      const events = []
      cs.on('error', (e) => events.push(`error ${e.name}`))
      cs.on('close', () => events.push('close'))
      cs.on('change', () => events.push('change'))
      await waitFor(() => events.length >= 2, { what: 'the stream to fail' })
      await new Promise((r) => setTimeout(r, 200))
      return events
    }
    const local = await driver(LOCAL)
    const want = await eventsOf(local.db(db).collection('c').watch([{ $nope: {} }]))
    assert.deepEqual(await eventsOf(c.watch([{ $nope: {} }])), want)
    assert.deepEqual(want, ['close', 'error MongoServerError'], 'the premise')
  } finally {
    await sync.close()
  }
})
