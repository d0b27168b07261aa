'use strict'
// Shared helpers of the JS tests: the two servers given by the harness
// (TEST_LOCAL_URI, TEST_ATLAS_URI), unique database names, the official
// driver for reading both servers, and exact comparison of their contents.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const assert = require('node:assert/strict')
const { MongoClient } = require('mongodb')
const { EJSON } = require('bson')

const LOCAL = process.env.TEST_LOCAL_URI
const ATLAS = process.env.TEST_ATLAS_URI
if (!LOCAL || !ATLAS) {
  throw new Error('run the tests with `npm test` (it starts the servers) or set TEST_LOCAL_URI and TEST_ATLAS_URI')
}

let counter = 0
function uniqueDb(prefix) {
  counter += 1
  return `${prefix}_${process.pid}_${Date.now().toString(36)}_${counter}`
}

/** `uri` with `db` as its default database. */
function withDb(uri, db) {
  const u = new URL(uri)
  u.pathname = `/${db}`
  return u.toString()
}

function tempDir(prefix = 'dms-test-') {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix))
}

const clients = []
async function driver(uri) {
  const c = new MongoClient(uri, { serverSelectionTimeoutMS: 20000 })
  await c.connect()
  clients.push(c)
  return c
}

async function closeDrivers() {
  await Promise.all(clients.splice(0).map((c) => c.close()))
}

/** Every document of a collection, as canonical Extended JSON (types kept), by _id. */
async function dump(client, db, coll) {
  const docs = await client.db(db).collection(coll).find({}).toArray()
  return docs.map((d) => EJSON.stringify(d, { relaxed: false })).sort()
}

/** The raw BSON bytes of every document, by _id, as hex. */
async function rawDump(client, db, coll) {
  const docs = await client.db(db).collection(coll).find({}, { raw: true }).toArray()
  return docs.map((b) => Buffer.from(b).toString('hex')).sort()
}

/** Asserts that local and Atlas hold exactly the same documents, byte for byte. */
async function assertSame(local, atlas, db, colls) {
  for (const coll of colls) {
    const [l, a] = await Promise.all([rawDump(local, db, coll), rawDump(atlas, db, coll)])
    if (l.length !== a.length || l.some((x, i) => x !== a[i])) {
      const [le, ae] = await Promise.all([dump(local, db, coll), dump(atlas, db, coll)])
      assert.deepEqual(ae, le, `${db}.${coll}: Atlas differs from local`)
    }
    assert.equal(a.length, l.length)
  }
}

function syncOptions(db, extra = {}) {
  return {
    localUri: withDb(LOCAL, db),
    atlasUri: ATLAS,
    dataDir: tempDir(),
    logLevel: 'error',
    ...extra,
  }
}

async function waitFor(check, { timeoutMs = 20000, everyMs = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await check()
    if (v) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, everyMs))
  }
}

module.exports = { LOCAL, ATLAS, uniqueDb, withDb, tempDir, driver, closeDrivers, dump, rawDump, assertSame, syncOptions, waitFor }
