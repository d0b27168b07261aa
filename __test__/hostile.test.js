'use strict'
// Bad and hostile input (issue 5): oversized documents, forbidden keys, a
// damaged, unusable or full journal, credentials in URIs at trace level,
// and TLS options of the Atlas URI.
const { test, after } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { createSync } = require('..')
const { startServer } = require('../scripts/servers')
const { LOCAL, ATLAS, uniqueDb, withDb, tempDir, driver, closeDrivers, assertSame, syncOptions } = require('./helpers')

after(closeDrivers)

test('oversized documents are refused with a clear error; big batches of small ones pass', async () => {
  const db = uniqueDb('big')
  const sync = await createSync(syncOptions(db))
  const c = sync.collection('docs')
  await assert.rejects(c.insertOne({ big: 'x'.repeat(17 * 1024 * 1024) }), {
    code: 'ERR_SYNC_INVALID_ARGUMENT',
    message: /17\.0 MiB; MongoDB's limit is 16 MiB/,
  })
  await assert.rejects(c.updateOne({ _id: 1 }, { $set: { big: 'x'.repeat(17 * 1024 * 1024) } }, { upsert: true }), {
    code: 'ERR_SYNC_INVALID_ARGUMENT',
  })
  // Just over the limit but under bson's buffer: refused before it is sent,
  // by the Rust driver's size check, naming both sizes. (The Node driver
  // sends it and relays the server's refusal, code 10334.)
  await assert.rejects(c.insertOne({ _id: 'near', big: 'x'.repeat(16 * 1024 * 1024 + 10) }), {
    name: 'MongoInvalidArgumentError',
    code: 'ERR_SYNC_INVALID_ARGUMENT',
    message: /must be within 16777216 bytes, but document provided is 1677725\d bytes/,
  })
  // 24 MB in one insertMany of 1 KB documents is fine
  const docs = Array.from({ length: 24000 }, (_, i) => ({ _id: i, pad: 'p'.repeat(1000) }))
  const r = await c.insertMany(docs)
  assert.equal(r.insertedCount, 24000)
  await sync.flush({ timeoutMs: 120000 })
  await sync.close()
  const [local, atlas] = await Promise.all([driver(LOCAL), driver(ATLAS)])
  assert.equal(await local.db(db).collection('docs').countDocuments({ _id: 'near' }), 0)
  await assertSame(local, atlas, db, ['docs'])
})

test('$-prefixed keys: refused where MongoDB forbids them, replicated exactly where it allows them', async () => {
  const db = uniqueDb('dollar')
  const sync = await createSync(syncOptions(db))
  const c = sync.collection('d')
  await c.insertOne({ _id: 1, a: 1 })
  await assert.rejects(c.replaceOne({ _id: 1 }, { $set: { a: 2 } }), { name: 'MongoInvalidArgumentError' })
  await assert.rejects(c.updateOne({ _id: 1 }, { $foo: { a: 2 } }), (e) => e.name === 'MongoServerError' && e.code === 9)
  await assert.rejects(c.updateOne({ _id: 1 }, { a: 2 }), { name: 'MongoInvalidArgumentError' })
  // MongoDB 5.0+ accepts $-prefixed and dotted field names inside documents
  await c.insertOne({ _id: 2, nested: { $price: 5 }, 'dotted.name': true })
  // and $-prefixed ones at the top level from an insert, but not in a
  // replacement document: later changes of such a document must still
  // reach Atlas, where a copy as a replacement would be refused.
  await c.insertMany([{ _id: 3, $price: 10, qty: 1 }, { _id: 4, $price: 20, qty: 1 }, { _id: 5, $price: 30, qty: 1 }])
  await sync.flush({ timeoutMs: 30000 })
  await c.updateOne({ _id: 3 }, { $set: { qty: 2 } })
  await c.findOneAndUpdate({ _id: 4 }, { $inc: { qty: 5 } })
  await c.bulkWrite([{ updateOne: { filter: { _id: 5 }, update: { $set: { qty: 3 } } } }])
  await sync.flush({ timeoutMs: 30000 })
  const m = await sync.metrics()
  await sync.close()
  assert.equal(m.deadLettered, 0, JSON.stringify(m.lastError))
  const [local, atlas] = await Promise.all([driver(LOCAL), driver(ATLAS)])
  assert.deepEqual(await atlas.db(db).collection('d').find({ _id: { $gte: 3 } }).toArray(), [
    { _id: 3, $price: 10, qty: 2 }, { _id: 4, $price: 20, qty: 6 }, { _id: 5, $price: 30, qty: 3 },
  ])
  await assertSame(local, atlas, db, ['d'])
})

test('arguments nested too deep for the engine are refused by name; the process lives, and what MongoDB takes still works', async () => {
  // Converting BSON recurses once per level: a few hundred levels in a
  // filter overflowed a thread's stack and killed Node (SIGSEGV).
  const db = uniqueDb('deep')
  const sync = await createSync(syncOptions(db))
  const c = sync.collection('d')
  const theirs = (await driver(LOCAL)).db(db).collection('d')
  const deep = (n) => {
    let d = { x: 1 }
    for (let i = 1; i < n; i++) d = { o: d }
    return d
  }
  try {
    await c.insertOne({ _id: 1, v: deep(50) })
    // As deep as MongoDB lets a document be, and more in a filter: as the driver.
    for (const n of [100, 150]) {
      assert.deepEqual(await c.find({ v: deep(n) }).toArray(), await theirs.find({ v: deep(n) }).toArray())
    }
    assert.equal((await c.find({ v: deep(50) }).toArray()).length, 1, 'the premise: a deep filter matches')
    const refused = { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /nested more than 200 levels deep/ }
    for (const n of [300, 600, 5000]) {
      await assert.rejects(c.find({ v: deep(n) }).toArray(), refused)
      await assert.rejects(c.countDocuments({ v: deep(n) }), refused)
      await assert.rejects(c.aggregate([{ $match: { v: deep(n) } }]).toArray(), refused)
      await assert.rejects(c.deleteMany({ v: deep(n) }), refused)
      await assert.rejects(c.updateOne({ v: deep(n) }, { $set: { a: 1 } }, { hint: { _id: 1 } }), refused)
      await assert.rejects(c.insertOne({ _id: n, v: deep(n) }), refused)
      await assert.rejects(c.bulkWrite([{ updateOne: { filter: { v: deep(n) }, update: { $set: { a: 1 } } } }]), refused)
    }
    assert.equal(await c.countDocuments(), 1, 'nothing refused was written')
  } finally {
    await sync.close()
  }
})

test('a damaged journal stops createSync with ERR_SYNC_JOURNAL and is kept, never silently replaced', async () => {
  const dataDir = tempDir()
  const file = path.join(dataDir, 'journal.sqlite3')
  fs.writeFileSync(file, Buffer.concat([Buffer.from('SQLite format 3\0'), Buffer.alloc(4096, 0xab)]))
  const before = fs.readFileSync(file)
  await assert.rejects(createSync({ ...syncOptions(uniqueDb('damaged')), dataDir }), (e) => {
    assert.equal(e.code, 'ERR_SYNC_JOURNAL')
    assert.match(e.message, /journal\.sqlite3/)
    assert.match(e.message, /malformed|not a database|damaged|corrupt/i)
    return true
  })
  assert.deepEqual(fs.readFileSync(file), before, 'the damaged file was left as it was')
})

test('a journal folder that cannot be created fails createSync with ERR_SYNC_JOURNAL', async () => {
  const file = path.join(tempDir(), 'a-file')
  fs.writeFileSync(file, 'not a folder')
  await assert.rejects(createSync({ ...syncOptions(uniqueDb('nodir')), dataDir: path.join(file, 'journal') }), {
    code: 'ERR_SYNC_JOURNAL',
    message: /SYNC_DATA_DIR/,
  })
})

test('a full disk: the write is refused before it reaches the local server, nothing acknowledged is lost', async () => {
  const db = uniqueDb('fulldisk')
  const dataDir = tempDir()
  // The child may write at most 1 MiB per file (`sh` is dash here, whose
  // ulimit -f counts 512-byte blocks; bash's count 1 KiB, 2 MiB then) and
  // ignores SIGXFSZ, so journal writes fail with EFBIG as on a full disk;
  // the write clock's 256 KiB file fits. Replication is paused so every
  // write stays in the journal.
  const script = `
    const { createSync } = require(${JSON.stringify(path.join(__dirname, '..'))})
    ;(async () => {
      const sync = await createSync(${JSON.stringify({ ...syncOptions(db), dataDir })})
      sync.pause()
      let ok = 0
      let err
      for (let i = 0; i < 20000 && !err; i++) {
        try { await sync.collection('c').insertOne({ _id: i, pad: 'x'.repeat(200) }); ok++ } catch (e) { err = e }
      }
      console.log(JSON.stringify({ ok, code: err && err.code, message: err && err.message }))
      process.exit(0)
    })().catch((e) => { console.log(JSON.stringify({ fatal: e.message, code: e.code })); process.exit(1) })`
  const r = spawnSync('sh', ['-c', `trap '' XFSZ; ulimit -f 2048; exec "${process.execPath}" -e "$0"`, script], {
    encoding: 'utf8',
    timeout: 120000,
  })
  const out = JSON.parse(r.stdout.trim().split('\n').pop())
  assert.equal(out.code, 'ERR_SYNC_JOURNAL', JSON.stringify(out) + r.stderr)
  assert.match(out.message, /free space|writable/)
  assert.ok(out.ok > 0)
  const local = await driver(LOCAL)
  assert.equal(await local.db(db).collection('c').countDocuments(), out.ok, 'local holds exactly the acknowledged writes')
  // with room again, everything acknowledged reaches Atlas
  const sync = await createSync({ ...syncOptions(db), dataDir })
  await sync.flush({ timeoutMs: 60000 })
  await sync.close()
  const atlas = await driver(ATLAS)
  await assertSame(local, atlas, db, ['c'])
})

/** Runs a child that uses the addon with `env`; returns everything it printed. */
function runChild(env, body) {
  const script = `
    const { createSync } = require(${JSON.stringify(path.join(__dirname, '..'))})
    ;(async () => { ${body} })().catch((e) => { console.log('ERROR', e.code, e.message); process.exit(0) })`
  const r = spawnSync(process.execPath, ['-e', script], { env: { PATH: process.env.PATH, ...env }, encoding: 'utf8', timeout: 120000 })
  return r.stdout + r.stderr
}

test('passwords never appear in logs (trace level), errors, health or metrics', () => {
  const secret = 'Pa55w0rdNeverShown'
  const db = uniqueDb('secret')
  const atlasWithCreds = ATLAS.replace('mongodb://', `mongodb://syncuser:${secret}@`) + '&serverSelectionTimeoutMS=1000'
  const out = runChild(
    {
      MONGODB_URI: withDb(LOCAL, db),
      MONGODB_ATLAS_URI: atlasWithCreds,
      SYNC_DATA_DIR: tempDir(),
      SYNC_LOG_LEVEL: 'trace',
      SYNC_RETRY_MAX_MS: '200',
    },
    `const sync = await createSync()
     await sync.collection('c').insertOne({ a: 1 })
     await sync.flush({ timeoutMs: 3000 }).catch((e) => console.log('flush', e.code, e.message))
     console.log(JSON.stringify(await sync.health()))
     console.log(JSON.stringify(await sync.metrics()))
     console.log(await sync.metrics({ format: 'prometheus' }))
     await sync.close({ timeoutMs: 100 })`,
  )
  assert.match(out, /"status"/, out)
  assert.ok(!out.includes(secret), `the password leaked:\n${out}`)
  const local = runChild(
    { MONGODB_URI: `mongodb://admin:${secret}@127.0.0.1:1/?serverSelectionTimeoutMS=300`, SYNC_ENABLED: 'false', SYNC_LOG_LEVEL: 'trace' },
    `await createSync()`,
  )
  assert.match(local, /ERROR ERR_SYNC_CONNECT/)
  assert.ok(!local.includes(secret), `the password leaked:\n${local}`)
})

test('TLS options of the Atlas URI are honoured: tls=true against a plain server never connects', async () => {
  const db = uniqueDb('tls')
  const sync = await createSync({
    ...syncOptions(db),
    atlasUri: `${ATLAS}&tls=true&serverSelectionTimeoutMS=500`,
    retryMaxMs: 200,
  })
  await sync.collection('c').insertOne({ a: 1 })
  await assert.rejects(sync.flush({ timeoutMs: 2000 }), { code: 'ERR_SYNC_TIMEOUT' })
  const m = await sync.metrics()
  assert.equal(m.connections.atlas, 'down')
  assert.ok(m.failed > 0)
  await sync.close({ timeoutMs: 100 })
  const atlas = await driver(ATLAS)
  assert.equal(await atlas.db(db).collection('c').countDocuments(), 0, 'nothing went over plain TCP')
})

/** A CA and a server certificate for 127.0.0.1 signed by it, made with openssl. */
function certificates(dir) {
  const f = (n) => path.join(dir, n)
  const run = (args) => {
    const r = spawnSync('openssl', args, { encoding: 'utf8' })
    assert.equal(r.status, 0, `openssl ${args[0]} failed: ${r.stderr}`)
  }
  run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=test CA'])
  run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('key.pem'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1'])
  fs.writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n')
  run(['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('cert.pem'), '-days', '2', '-extfile', f('ext.cnf')])
  return { ca: f('ca.pem'), cert: f('cert.pem'), key: f('key.pem') }
}

test('TLS to Atlas: replicates with the CA of the URI, refuses a server the CA does not vouch for', async () => {
  const { ca, cert, key } = certificates(tempDir())
  const other = certificates(tempDir())
  const atlasServer = await startServer({ name: 'atlas-tls', args: ['--tls-cert-file', cert, '--tls-key-file', key] })
  const tlsUri = `${atlasServer.uri}&tls=true&tlsCAFile=${encodeURIComponent(ca)}`
  const db = uniqueDb('tlsok')
  try {
    const sync = await createSync({ ...syncOptions(db), atlasUri: tlsUri })
    await sync.collection('c').insertOne({ _id: 'over-tls' })
    await sync.flush({ timeoutMs: 30000 })
    await sync.close()
    const atlas = await driver(tlsUri)
    assert.equal(await atlas.db(db).collection('c').countDocuments({ _id: 'over-tls' }), 1)
    const wrongCa = `${atlasServer.uri}&tls=true&tlsCAFile=${encodeURIComponent(other.ca)}&serverSelectionTimeoutMS=500`
    const badDb = uniqueDb('tlsbad')
    const untrusted = await createSync({ ...syncOptions(badDb), atlasUri: wrongCa, retryMaxMs: 200 })
    await untrusted.collection('c').insertOne({ a: 1 })
    await assert.rejects(untrusted.flush({ timeoutMs: 1500 }), { code: 'ERR_SYNC_TIMEOUT' })
    assert.equal((await untrusted.metrics()).connections.atlas, 'down')
    await untrusted.close({ timeoutMs: 100 })
    assert.equal(await atlas.db(badDb).collection('c').countDocuments(), 0, 'nothing was sent to the server the CA does not vouch for')
  } finally {
    await atlasServer.remove()
  }
})
