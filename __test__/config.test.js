'use strict'
// Configuration (MISSION.md section 4): env vars with defaults, JS options
// over them, and clear ERR_SYNC_CONFIG errors that never show a password.
const { test, after } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { MongoClient } = require('mongodb')
const { createSync } = require('..')
const { LOCAL, ATLAS, uniqueDb, withDb, tempDir, driver, closeDrivers } = require('./helpers')
const { startProxy } = require('./proxy')

after(closeDrivers)

/** Runs createSync in a child with exactly `env`, returns what it printed. */
function createInChild(env) {
  const script = `
    require(${JSON.stringify(path.join(__dirname, '..'))}).createSync()
      .then(async (s) => { console.log(JSON.stringify({ ok: true, enabled: s.enabled })); await s.close() })
      .catch((e) => console.log(JSON.stringify({ ok: false, code: e.code, name: e.name, message: e.message })))`
  const r = spawnSync(process.execPath, ['-e', script], {
    env: { PATH: process.env.PATH, SYNC_LOG_LEVEL: 'off', ...env },
    encoding: 'utf8',
    timeout: 60000,
  })
  const line = r.stdout.trim().split('\n').pop()
  return { ...JSON.parse(line), stderr: r.stderr }
}

const base = () => ({ MONGODB_URI: LOCAL, MONGODB_ATLAS_URI: ATLAS, SYNC_DATA_DIR: tempDir() })

test('a bad env value fails createSync with the variable, the value and what is allowed', () => {
  const cases = [
    ['SYNC_BATCH_SIZE', 'abc', /SYNC_BATCH_SIZE="abc".*whole number from 1 to 10000/],
    ['SYNC_WORKERS', '0', /SYNC_WORKERS="0".*1 to 64/],
    ['SYNC_ENABLED', 'maybe', /SYNC_ENABLED="maybe".*true or false/],
    ['SYNC_HEALTH_MIN_SUCCESS_RATE', '1.5', /SYNC_HEALTH_MIN_SUCCESS_RATE="1.5".*0 to 1/],
    ['SYNC_LOG_LEVEL', 'loud', /SYNC_LOG_LEVEL="loud".*one of: off, error, warn, info, debug, trace/],
    ['SYNC_RETRY_BASE_MS', '-5', /SYNC_RETRY_BASE_MS="-5"/],
    ['SYNC_MAX_RETRIES', '1e3', /SYNC_MAX_RETRIES="1e3"/],
    ['MONGODB_URI', 'localhost:27017', /MONGODB_URI="localhost:27017".*connection string/],
  ]
  for (const [name, value, re] of cases) {
    const r = createInChild({ ...base(), [name]: value })
    assert.equal(r.ok, false, `${name}=${value} was accepted`)
    assert.equal(r.code, 'ERR_SYNC_CONFIG', `${name}: ${r.message}`)
    assert.match(r.message, re)
  }
})

test('credentials never appear in configuration errors', () => {
  const r = createInChild({ ...base(), MONGODB_ATLAS_URI: 'mongodb://admin:Sup3rSecret@/nohost' })
  assert.equal(r.code, 'ERR_SYNC_CONFIG')
  assert.match(r.message, /MONGODB_ATLAS_URI/)
  assert.doesNotMatch(r.message + r.stderr, /Sup3rSecret/)
  // A password with an unescaped `/` or `?` (the driver refuses the string) or `@`.
  for (const [name, uri] of [
    ['MONGODB_ATLAS_URI', 'mongodb://admin:Sup3r/Secret@127.0.0.1:1/x'],
    ['MONGODB_ATLAS_URI', 'mongodb://admin:Sup3r?Secret@127.0.0.1:1/x'],
    ['MONGODB_URI', 'mongodb://admin:Sup3r@Secret@127.0.0.1:1/x?serverSelectionTimeoutMS=300&directConnection=true'],
  ]) {
    const r2 = createInChild({ ...base(), SYNC_LOG_LEVEL: 'info', [name]: uri })
    assert.equal(r2.ok, false, `${uri} was accepted`)
    assert.doesNotMatch(r2.message + r2.stderr, /Secret/, `${name}: ${r2.message}`)
  }
  const t = createInChild({ ...base(), SYNC_ADMIN_TOKEN: 'short secret' })
  assert.equal(t.code, 'ERR_SYNC_CONFIG')
  assert.doesNotMatch(t.message, /short secret/)
})

test('a connection string written for the Node driver works unchanged', async () => {
  // Options the official driver takes and the Rust driver refuses: old
  // spellings (j, fsync, wtimeout), socketTimeoutMS, Node's socket and JS
  // knobs, maxStalenessSeconds without a secondary read preference; and
  // compressors it needs optional packages for, built in here. The
  // official driver takes each string as it is (checked here), so
  // createSync must too.
  const nodeOptions = 'j=true&wtimeout=5000&socketTimeoutMS=45000&timeoutMS=0&family=4&autoSelectFamily=true&noDelay=true&minHeartbeatFrequencyMS=500&monitorCommands=false&enableUtf8Validation=true&maxStalenessSeconds=120&compressors=snappy,zlib&zlibCompressionLevel=6&tlsAllowInvalidHostnames=false'
  const env = {
    ...base(),
    SYNC_LOG_LEVEL: 'info',
    MONGODB_URI: `${LOCAL}&${nodeOptions}`,
    MONGODB_ATLAS_URI: `${ATLAS}&fsync=true&socketTimeoutMS=30000&compressors=zstd`,
  }
  // (The official driver speaks snappy and zstd only with optional packages
  // installed; without them it fails, so it is checked with zlib alone.)
  for (const uri of [env.MONGODB_URI, env.MONGODB_ATLAS_URI]) {
    const official = await driver(uri.replace('snappy,zlib', 'zlib').replace('&compressors=zstd', ''))
    await official.db('admin').command({ ping: 1 })
  }
  const r = createInChild(env)
  assert.equal(r.ok, true, `refused: ${r.message}`)
  // What has no effect here is named once, not silently dropped.
  assert.match(r.stderr, /MONGODB_URI: options of the Node driver with no effect here: timeoutMS=0, family=4, autoSelectFamily=true, noDelay=true, minHeartbeatFrequencyMS=500, monitorCommands=false, enableUtf8Validation=true, maxStalenessSeconds=120\n/)
  // The compressors are all used (see the test of the wire below).
  assert.doesNotMatch(r.stderr, /no effect here:.*compressors/)
  assert.doesNotMatch(r.stderr, /MONGODB_ATLAS_URI: options of the Node driver with no effect here/)
  assert.match(r.stderr, /MONGODB_ATLAS_URI: socketTimeoutMS is not applied; each Atlas batch is bounded by SYNC_ATLAS_TIMEOUT_MS/)

  // A compressor the Node driver does not know fails there and here.
  for (const name of ['lz4', 'ZSTD']) {
    const uri = `${ATLAS.replace('//', '//u:Hidden7@')}&compressors=zstd,${name}`
    assert.throws(() => new MongoClient(uri), new RegExp(`${name} is not a valid compression mechanism`))
    const c = createInChild({ ...base(), MONGODB_ATLAS_URI: uri })
    assert.equal(c.code, 'ERR_SYNC_CONFIG', c.message)
    assert.match(c.message, new RegExp(`MONGODB_ATLAS_URI=.*expected compressors from none, snappy, zlib, zstd \\("${name}" is not a valid compression mechanism\\)`))
    assert.doesNotMatch(c.message + c.stderr, /Hidden7/)
  }

  // What cannot be honoured is refused by name, password hidden.
  const bad = createInChild({ ...base(), MONGODB_ATLAS_URI: 'mongodb://u:Hidden7@127.0.0.1:1/?tls=true&tlsAllowInvalidHostnames=true' })
  assert.equal(bad.code, 'ERR_SYNC_CONFIG')
  assert.match(bad.message, /MONGODB_ATLAS_URI.*tlsAllowInvalidHostnames=true.*tlsInsecure=true/)
  assert.doesNotMatch(bad.message + bad.stderr, /Hidden7/)
  const nan = createInChild({ ...base(), MONGODB_URI: `${LOCAL}&socketTimeoutMS=soon` })
  assert.equal(nan.code, 'ERR_SYNC_CONFIG')
  assert.match(nan.message, /MONGODB_URI.*socketTimeoutMS to be a whole number of milliseconds/)
})

/** OP_COMPRESSED (opCode 2012) wrapping an OP_MSG (2013), little-endian. */
const OP_COMPRESSED_MSG = Buffer.from([0xdc, 0x07, 0, 0, 0xdd, 0x07, 0, 0])

/** The compressor ids of the OP_COMPRESSED messages in `bytes`. */
function compressedWith(bytes) {
  const ids = new Set()
  for (let p = bytes.indexOf(OP_COMPRESSED_MSG); p >= 0; p = bytes.indexOf(OP_COMPRESSED_MSG, p + 1)) {
    if (p + 12 < bytes.length) ids.add(bytes[p + 12])
  }
  return ids
}

test('compressors in the connection strings compress what the engine sends, where the server agrees', async (t) => {
  // The bytes the engine sends each server are watched through a proxy:
  // its calls to local, its replicator's reads of local and writes to
  // Atlas. MongoDB and Atlas offer snappy, zlib and zstd in their hello
  // reply, and then every message after the handshake travels as
  // OP_COMPRESSED with the compressor's id. (The Python SecantusDB offers
  // none: with it the test checks only that nothing is sent compressed, as
  // a server that did not agree could not read it, and that all arrives,
  // and says it was skipped.)
  const port = (uri) => Number(new URL(uri).port)
  const plain = Buffer.from('dolor lorem ipsum dolor lorem')
  let offered = 0
  for (const [name, id] of [['zstd', 3], ['snappy', 1], ['zlib', 2]]) {
    const db = uniqueDb(`comp_${name}`)
    const [lp, ap] = await Promise.all([startProxy(port(LOCAL)), startProxy(port(ATLAS))])
    lp.state.tap = []
    ap.state.tap = []
    const sync = await createSync({
      localUri: withDb(`${lp.uri}&compressors=${name}`, db),
      atlasUri: `${ap.uri}&compressors=${name}`,
      dataDir: tempDir(),
      logLevel: 'warn',
    })
    try {
      const c = sync.collection('c')
      await c.insertMany(Array.from({ length: 200 }, (_, i) => ({ _id: i, text: 'lorem ipsum dolor '.repeat(40), n: i })))
      await c.updateMany({ n: { $lt: 100 } }, { $set: { done: true } })
      await sync.flush({ timeoutMs: 60000 })
      const atlas = (await driver(ATLAS)).db(db).collection('c')
      assert.equal(await atlas.countDocuments(), 200, `${name}: every document on Atlas`)
      assert.equal(await atlas.countDocuments({ done: true }), 100, `${name}: the update on Atlas`)
      for (const [side, proxy, uri] of [['local', lp, LOCAL], ['Atlas', ap, ATLAS]]) {
        const hello = await (await driver(uri)).db('admin').command({ hello: 1, compression: [name] })
        const bytes = Buffer.concat(proxy.state.tap)
        const sent = compressedWith(bytes)
        if ((hello.compression || []).includes(name)) {
          offered += 1
          assert.deepEqual([...sent], [id], `${name}: what the engine sent ${side} went compressed with ${name}`)
          assert.equal(bytes.includes(plain), false, `${name}: the documents' text did not cross to ${side} in the clear`)
        } else {
          assert.equal(sent.size, 0, `${name}: ${side} did not agree to compress, and nothing was sent compressed`)
        }
      }
    } finally {
      await sync.close()
      await Promise.all([lp.close(), ap.close()])
    }
  }
  if (offered === 0) t.skip('the test servers offer no compression (the Python SecantusDB): only checked that nothing was sent compressed')
})

test('sync enabled without MONGODB_ATLAS_URI says what to set', () => {
  const r = createInChild({ MONGODB_URI: LOCAL, SYNC_DATA_DIR: tempDir() })
  assert.equal(r.code, 'ERR_SYNC_CONFIG')
  assert.match(r.message, /MONGODB_ATLAS_URI.*SYNC_ENABLED=false/)
})

test('an unreachable local MongoDB fails createSync with ERR_SYNC_CONNECT, password hidden', () => {
  const r = createInChild({
    ...base(),
    MONGODB_URI: 'mongodb://u:Hidden9@127.0.0.1:1/?serverSelectionTimeoutMS=500&directConnection=true',
  })
  assert.equal(r.code, 'ERR_SYNC_CONNECT', r.message)
  assert.doesNotMatch(r.message + r.stderr, /Hidden9/)
})

test('JS options override env vars and unknown options are refused', async () => {
  await assert.rejects(createSync({ localUri: LOCAL, atlasUri: ATLAS, batchsize: 5 }), {
    code: 'ERR_SYNC_CONFIG',
    message: /batchsize.*batchSize/,
  })
  await assert.rejects(createSync({ localUri: LOCAL, atlasUri: ATLAS, workers: 'many' }), {
    code: 'ERR_SYNC_CONFIG',
    message: /option 'workers'="many"/,
  })
  await assert.rejects(createSync('mongodb://x'), { code: 'ERR_SYNC_INVALID_ARGUMENT' })
  // A connection string the driver refuses is blamed on where it came from.
  for (const [k, uri] of [['atlasUri', 'mongodb://u:Pw0rd@127.0.0.1:1/db?bogusOpt=1'], ['localUri', 'mongodb://u:Pw0rd@127.0.0.1:1/db?bogusOpt=1']]) {
    await assert.rejects(createSync({ localUri: LOCAL, atlasUri: ATLAS, [k]: uri }), (e) => {
      assert.equal(e.code, 'ERR_SYNC_CONFIG')
      assert.match(e.message, new RegExp(`option '${k}'=`))
      assert.doesNotMatch(e.message, /MONGODB_|Pw0rd/)
      return true
    })
  }
  // Values that are not strings, numbers or booleans are refused by name,
  // not turned into '[object Object]' (a journal folder of that name).
  const cwd = fs.readdirSync('.')
  for (const [k, v, shown] of [['dataDir', {}, /an object/], ['excludedCollections', { x: 1 }, /an object/], ['excludedCollections', ['a', 1], /an array/], ['batchSize', NaN, /number NaN/]]) {
    await assert.rejects(createSync({ localUri: LOCAL, atlasUri: ATLAS, [k]: v }), (e) => {
      assert.equal(e.code, 'ERR_SYNC_CONFIG')
      assert.match(e.message, new RegExp(`option '${k}'=`))
      assert.match(e.message, shown)
      return true
    })
  }
  assert.deepEqual(fs.readdirSync('.'), cwd, 'nothing was created')
})

test('SYNC_ENABLED=false writes locally only: no journal, nothing on Atlas', async () => {
  const db = uniqueDb('disabled')
  const dataDir = path.join(tempDir(), 'journal-here')
  const sync = await createSync({ localUri: withDb(LOCAL, db), enabled: false, dataDir, logLevel: 'off' })
  assert.equal(sync.enabled, false)
  const c = sync.collection('orders')
  await c.insertOne({ _id: 1, a: 1 })
  await c.updateOne({ _id: 1 }, { $inc: { a: 1 } })
  await sync.flush()
  const m = await sync.metrics()
  assert.equal(m.connections.atlas, 'disabled')
  assert.equal(m.captured, 0)
  assert.equal((await sync.health()).status, 'healthy')
  await sync.close()
  assert.equal(fs.existsSync(dataDir), false, 'no journal folder was created')
  const local = await driver(LOCAL)
  const atlas = await driver(ATLAS)
  assert.deepEqual(await local.db(db).collection('orders').findOne({ _id: 1 }), { _id: 1, a: 2 })
  assert.equal(await atlas.db(db).collection('orders').countDocuments(), 0)
})

test('sync.collection(name) uses the database of MONGODB_URI', async () => {
  const db = uniqueDb('defaultdb')
  const sync = await createSync({ localUri: withDb(LOCAL, db), enabled: false, logLevel: 'off' })
  await sync.collection('c').insertOne({ _id: 'x' })
  await sync.close()
  const local = await driver(LOCAL)
  assert.equal(await local.db(db).collection('c').countDocuments({ _id: 'x' }), 1)
})
