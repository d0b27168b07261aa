'use strict'
// The `dual-mongo-sync` command line (MISSION.md section 3): each command run
// as a child process against the test servers, its --json output parsed and
// checked against what both servers hold, its exit codes, and that no
// password ever reaches its output.
const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { EJSON, ObjectId } = require('bson')
const { LOCAL, ATLAS, uniqueDb, withDb, tempDir, driver, closeDrivers, assertSame } = require('./helpers')

const BIN = path.join(__dirname, '..', 'bin', 'dual-mongo-sync.js')
const SCRATCH = 'dual_mongo_sync_selftest'
const db = uniqueDb('cli')
let local, atlas

before(async () => {
  local = await driver(LOCAL)
  atlas = await driver(ATLAS)
})
after(closeDrivers)

/** The environment of a CLI run: the test servers, a fresh journal, nothing inherited but PATH. */
function cliEnv(extra = {}) {
  return { PATH: process.env.PATH, MONGODB_URI: withDb(LOCAL, db), MONGODB_ATLAS_URI: ATLAS, SYNC_DATA_DIR: tempDir(), ...extra }
}

/** Runs the CLI; resolves with { code, stdout, stderr, json } (json: stdout parsed as relaxed EJSON, if it is). */
function cli(args, env = cliEnv()) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), 120000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      let json
      try {
        json = EJSON.parse(stdout, { relaxed: true })
      } catch {
        json = undefined
      }
      resolve({ code, stdout, stderr, json })
    })
  })
}

const show = (r) => `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`

test('--help, -h and help print the usage on stdout and exit 0', async () => {
  for (const args of [['--help'], ['-h'], ['help'], ['verify', '--help']]) {
    const r = await cli(args)
    assert.equal(r.code, 0, show(r))
    assert.match(r.stdout, /^Usage: dual-mongo-sync <command>/)
    for (const cmd of ['status', 'verify', 'full', 'test-basic', 'test-performance', 'test-resilience']) {
      assert.match(r.stdout, new RegExp(`^  ${cmd} `, 'm'))
    }
    assert.equal(r.stderr, '')
  }
})

test('usage errors exit 2 with the reason on stderr; with --json, stdout holds one JSON error', async () => {
  const cases = [
    [[], /no command given/],
    [['bogus'], /unknown command "bogus"/],
    [['verify', '--bogus'], /unknown flag --bogus for 'verify'/],
    [['status', '--repair'], /unknown flag --repair for 'status'/],
    [['--repair', 'verify'], /flags come after the command/],
    [['test-performance', '--ops', '0'], /--ops must be a whole number from 1/],
    [['test-performance', '--ops=12x'], /--ops must be a whole number/],
    [['verify', '--collections'], /--collections needs a value/],
    [['verify', '--collections', '--repair'], /--collections needs a value, got the flag --repair/],
    [['verify', '--repair=yes'], /--repair takes no value/],
    [['status', 'extra'], /unexpected argument "extra"/],
  ]
  for (const [args, message] of cases) {
    const r = await cli(args)
    assert.equal(r.code, 2, `${args.join(' ')}: ${show(r)}`)
    assert.match(r.stderr, message)
    assert.match(r.stderr, /--help for usage/)
    assert.equal(r.stdout, '')
  }
  const j = await cli(['full', '--colections', 'a', '--json'])
  assert.equal(j.code, 2)
  assert.equal(j.json.ok, false)
  assert.equal(j.json.error.code, 'ERR_SYNC_USAGE')
  assert.match(j.json.error.message, /unknown flag --colections for 'full'/)
  const swallowed = await cli(['verify', '--collections', '--json'])
  assert.equal(swallowed.code, 2, show(swallowed))
  assert.match(swallowed.json.error.message, /--collections needs a value, got the flag --json/)
})

test('status --json gives health and metrics and exits 0 when healthy; plain status is readable', async () => {
  const r = await cli(['status', '--json'])
  assert.equal(r.code, 0, show(r))
  assert.equal(r.json.health.status, 'healthy')
  assert.equal(r.json.health.checks.atlasConnection.pass, true)
  assert.equal(r.json.metrics.queueSize, 0)
  assert.equal(r.json.metrics.connections.atlas, 'up')
  const human = await cli(['status'])
  assert.equal(human.code, 0, show(human))
  assert.match(human.stdout, /^status: healthy$/m)
  assert.match(human.stdout, /^ {2}ok {3}atlasConnection +up$/m)
  assert.match(human.stdout, /^queue: 0 change\(s\) waiting/m)
})

test('a command that cannot run exits 1 with the error code: bad setting, sync disabled, excluded collection, Atlas not reachable', async () => {
  // Nothing listens on this port: the driver's server selection error,
  // named by its class (it has no code), not an internal error of the tool.
  const nowhere = `mongodb://127.0.0.1:${await require('../scripts/servers').freePort()}/?directConnection=true&serverSelectionTimeoutMS=500`
  const cases = [
    [['verify', '--collections', 'nothing', '--json'], { MONGODB_ATLAS_URI: nowhere }, 'MongoServerSelectionError', /127\.0\.0\.1/],
    [['status', '--json'], { SYNC_BATCH_SIZE: 'abc' }, 'ERR_SYNC_CONFIG', /SYNC_BATCH_SIZE="abc"/],
    [['test-basic', '--json'], { SYNC_ENABLED: 'false' }, 'ERR_SYNC_CONFIG', /test-basic needs replication on/],
    [['verify', '--collections', 'secret', '--json'], { SYNC_EXCLUDED_COLLECTIONS: 'secret' }, 'ERR_SYNC_INVALID_ARGUMENT', /excluded/],
  ]
  for (const [args, env, code, message] of cases) {
    const r = await cli(args, cliEnv(env))
    assert.equal(r.code, 1, show(r))
    assert.equal(r.json.ok, false)
    assert.equal(r.json.error.code, code)
    assert.match(r.json.error.message, message)
    assert.match(r.stderr, new RegExp(`\\(${code}\\)`))
  }
})

test('passwords in MONGODB_ATLAS_URI and MONGODB_URI never reach the output, even at debug log level', async () => {
  // The test servers refuse these made-up users (SCRAM AuthenticationFailed),
  // so the failures, where a password could leak, are what gets printed.
  const secret = 'Pa55wordNeverShown'
  const atlasUri = new URL(ATLAS)
  atlasUri.username = 'cliuser'
  atlasUri.password = secret
  atlasUri.searchParams.set('serverSelectionTimeoutMS', '1000')
  const env = cliEnv({ MONGODB_ATLAS_URI: atlasUri.toString(), SYNC_LOG_LEVEL: 'debug' })
  const status = await cli(['status', '--json'], env)
  assert.equal(status.code, 1, show(status))
  assert.equal(status.json.health.checks.atlasConnection.pass, false)
  const verify = await cli(['verify', '--collections', 'nothing', '--json'], env)
  assert.equal(verify.code, 1, show(verify))
  assert.equal(verify.json.ok, false)
  assert.match(verify.json.error.message, /auth|server selection/i)
  const localUri = new URL(withDb(LOCAL, db))
  localUri.username = 'cliuser'
  localUri.password = secret
  localUri.searchParams.set('serverSelectionTimeoutMS', '1000')
  const open = await cli(['status', '--json'], cliEnv({ MONGODB_URI: localUri.toString(), SYNC_LOG_LEVEL: 'debug' }))
  assert.equal(open.code, 1, show(open))
  assert.equal(open.json.error.code, 'ERR_SYNC_CONNECT')
  for (const r of [status, verify, open]) {
    assert.ok(!(r.stdout + r.stderr).includes(secret), `the password was printed:\n${show(r)}`)
  }
})

/** Writes the same documents straight to both servers (not through the addon), then `plant`s differences on Atlas. */
async function seedBoth(coll, docs, plant) {
  await local.db(db).collection(coll).insertMany(docs.map((d) => ({ ...d })))
  await atlas.db(db).collection(coll).insertMany(docs.map((d) => ({ ...d })))
  await plant(atlas.db(db).collection(coll))
}

test('verify finds exactly the differences planted on Atlas (exit 1); --repair fixes them (exit 0)', async () => {
  const oid = new ObjectId()
  const docs = [{ _id: oid, n: 1 }, { _id: 'b', n: 2 }, { _id: 3, n: 3 }, { _id: 4, n: 4 }]
  await seedBoth('ver', docs, async (c) => {
    await c.deleteOne({ _id: 'b' })
    await c.insertOne({ _id: 'x', n: 9 })
    await c.updateOne({ _id: oid }, { $set: { n: 100 } })
  })
  const r = await cli(['verify', '--collections', 'ver', '--json'])
  assert.equal(r.code, 1, show(r))
  assert.equal(r.json.ok, false)
  assert.equal(r.json.differences, 3)
  const [c] = r.json.collections
  assert.equal(c.ns, `${db}.ver`)
  assert.deepEqual([c.localCount, c.atlasCount], [4, 4])
  assert.deepEqual(c.missing, ['b'])
  assert.deepEqual(c.extra, ['x'])
  assert.ok(c.different.length === 1 && c.different[0] instanceof ObjectId && c.different[0].equals(oid), show(r))
  const human = await cli(['verify', '--collections', `${db}.ver`])
  assert.equal(human.code, 1, show(human))
  assert.match(human.stdout, new RegExp(`^ {2}DIFFERENT ${db}\\.ver: local 4, atlas 4$`, 'm'))
  assert.match(human.stdout, /missing on Atlas \(1\): "b"/)
  assert.match(human.stdout, new RegExp(`different on Atlas \\(1\\): \\{"\\$oid":"${oid.toHexString()}"\\}`))
  const repaired = await cli(['verify', '--repair', '--collections', 'ver', '--json'])
  assert.equal(repaired.code, 0, show(repaired))
  assert.equal(repaired.json.repaired, 3)
  await assertSame(local, atlas, db, ['ver'])
  const clean = await cli(['verify', '--collections', 'ver'])
  assert.equal(clean.code, 0, show(clean))
  assert.match(clean.stdout, /^verify: local and Atlas are the same/)
})

test('verify prints a collection whose options Atlas lacks (exit 1); --repair creates it again with them (exit 0)', async () => {
  await local.db(db).createCollection('capcli', { capped: true, size: 8192 })
  await local.db(db).collection('capcli').insertMany([{ _id: 1 }, { _id: 2 }])
  await atlas.db(db).collection('capcli').insertMany([{ _id: 1 }, { _id: 2 }])
  const human = await cli(['verify', '--collections', 'capcli'])
  assert.equal(human.code, 1, show(human))
  assert.match(human.stdout, /^verify: 0 difference\(s\), 0 repaired; 1 collection option difference\(s\), 0 repaired$/m)
  assert.match(human.stdout, new RegExp(`^ {2}DIFFERENT ${db}\\.capcli: local 2, atlas 2$`, 'm'))
  assert.match(human.stdout, /collection options different on Atlas \(1\): capped/)
  const repaired = await cli(['verify', '--repair', '--collections', 'capcli', '--json'])
  assert.equal(repaired.code, 0, show(repaired))
  assert.equal(repaired.json.optionsRepaired, 1)
  const [info] = await atlas.db(db).listCollections({ name: 'capcli' }).toArray()
  assert.equal(info.options.capped, true)
  await assertSame(local, atlas, db, ['capcli'])
})

test('full copies local to Atlas and deletes Atlas-only documents', async () => {
  const docs = Array.from({ length: 30 }, (_, i) => ({ _id: i, n: i }))
  await local.db(db).collection('full').insertMany(docs)
  await atlas.db(db).collection('full').insertMany([{ _id: 5, n: 'stale' }, { _id: 'atlas-only' }])
  const r = await cli(['full', '--collections', 'full', '--json'])
  assert.equal(r.code, 0, show(r))
  assert.equal(r.json.state, 'done')
  assert.equal(r.json.collectionsTotal, 1)
  assert.ok(r.json.documentsDone >= 30, show(r))
  await assertSame(local, atlas, db, ['full'])
  assert.equal(await atlas.db(db).collection('full').countDocuments({ _id: 'atlas-only' }), 0)
})

/**
 * What Atlas itself received during a self-test, seen without the addon: a
 * change stream on Atlas's scratch collection, opened before the command
 * runs (the command's own verify and the empty collection it leaves behind
 * would both pass if nothing had reached Atlas). `collect(run, done)` reads
 * it until `done(docs)` or 30 s and returns `docs`: by `_id`, the states
 * Atlas held for the run's documents (from insert and replace events; the
 * engine copies every change as one of those or a delete) and whether
 * Atlas deleted the document after.
 */
async function watchAtlas() {
  const stream = atlas.db(db).collection(SCRATCH).watch()
  await stream.tryNext() // the stream is open from here on
  return async function collect(run, done) {
    const docs = new Map()
    const deadline = Date.now() + 30000
    try {
      while (!done(docs) && Date.now() < deadline) {
        const e = await stream.tryNext()
        if (!e) continue
        const id = e.documentKey._id.toHexString()
        if ((e.operationType === 'insert' || e.operationType === 'replace') && e.fullDocument.run === run) {
          const d = docs.get(id) ?? { states: [], deleted: false }
          d.states.push(e.fullDocument)
          d.deleted = false
          docs.set(id, d)
        } else if (e.operationType === 'delete' && docs.has(id)) {
          docs.get(id).deleted = true
        }
      }
    } finally {
      await stream.close()
    }
    return docs
  }
}

/** The last state Atlas held of each document, by its `field`, sorted; and whether all were deleted after. */
function lastStates(docs, field) {
  const values = [...docs.values()].map((d) => d.states.at(-1)[field]).sort((a, b) => a - b)
  return { values, allDeleted: [...docs.values()].every((d) => d.deleted) }
}

/** How many documents of a self-test run are left on each server. */
async function leftOver(run) {
  const q = { run }
  return Promise.all([local, atlas].map((c) => c.db(db).collection(SCRATCH).countDocuments(q)))
}

test('test-basic passes every step, proves Atlas equal with verify, and removes its documents', async () => {
  const collect = await watchAtlas()
  const r = await cli(['test-basic', '--json'])
  assert.equal(r.code, 0, show(r))
  assert.equal(r.json.ok, true)
  assert.equal(r.json.collection, `${db}.${SCRATCH}`)
  const names = r.json.steps.map((s) => s.name)
  for (const name of ['insertOne', 'insertMany', 'updateOne', 'replaceOne', 'deleteOne', 'flush and verify on Atlas']) {
    assert.ok(names.includes(name), `step ${name} missing: ${names}`)
  }
  assert.ok(r.json.steps.every((s) => s.ok), show(r))
  assert.equal(r.json.verify.ok, true)
  assert.equal(r.json.verify.collections[0].localCount, r.json.verify.collections[0].atlasCount)
  assert.deepEqual(await leftOver(r.json.run), [0, 0])
  await assertSame(local, atlas, db, [SCRATCH])
  // Atlas held what the steps left locally (n = 4, 11, 20; the document
  // deleteOne removed may have been copied before it or not at all), then
  // the cleanup deleted every one of them.
  const held = (docs) => lastStates(docs, 'n').values.filter((n) => n !== 3)
  const docs = await collect(r.json.run, (d) => held(d).join() === '4,11,20' && lastStates(d, 'n').allDeleted)
  assert.deepEqual(held(docs), [4, 11, 20], 'the states Atlas held before the cleanup')
  assert.ok(lastStates(docs, 'n').allDeleted, 'the cleanup reached Atlas')
})

test('test-performance reports throughput and latency percentiles, with progress lines on a non-TTY stderr', async () => {
  const r = await cli(['test-performance', '--ops', '20', '--json'])
  assert.equal(r.code, 0, show(r))
  assert.equal(r.json.ops, 20)
  for (const kind of ['insertOne', 'updateOne']) {
    const x = r.json[kind]
    assert.ok(x.opsPerSec > 0, kind)
    assert.ok(x.p50Ms > 0 && x.p50Ms <= x.p99Ms && x.p99Ms <= x.maxMs, `${kind}: ${JSON.stringify(x)}`)
  }
  assert.ok(Number.isFinite(r.json.flushMs) && r.json.flushMs >= 0, show(r))
  assert.match(r.stderr, /^insertOne: 20\/20 \(100%\)/m)
  assert.match(r.stderr, /^updateOne: 20\/20 \(100%\)/m)
  assert.ok(!r.stderr.includes('\r'), 'no terminal redraws when stderr is not a TTY')
  assert.deepEqual(await leftOver(r.json.run), [0, 0])
})

test('test-resilience: writes go on while paused, the queue shows in health, and Atlas ends equal', async () => {
  const collect = await watchAtlas()
  const r = await cli(['test-resilience', '--json'])
  assert.equal(r.code, 0, show(r))
  assert.equal(r.json.ok, true)
  assert.ok(r.json.steps.every((s) => s.ok), show(r))
  assert.ok(r.json.queuedWhilePaused >= 50, show(r))
  assert.equal(r.json.healthWhilePaused, 'degraded')
  assert.equal(typeof r.json.drainMs, 'number')
  assert.deepEqual(await leftOver(r.json.run), [0, 0])
  await assertSame(local, atlas, db, [SCRATCH])
  // The 50 documents written while paused all reached Atlas after the
  // resume, and the cleanup deleted them there.
  const all = Array.from({ length: 50 }, (_, i) => i).join()
  const docs = await collect(r.json.run, (d) => lastStates(d, 'i').values.join() === all && lastStates(d, 'i').allDeleted)
  assert.equal(lastStates(docs, 'i').values.join(), all, 'the documents Atlas held')
  assert.ok(lastStates(docs, 'i').allDeleted, 'the cleanup reached Atlas')
})
