'use strict'
// The example bomba server (examples/bomba-server) end to end: orders and
// customers written over HTTP through the addon arrive on Atlas, deletes are
// gone there, the sync endpoints answer, SIGTERM drains before exiting, and
// `npm run demo -- --once` succeeds.
const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const readline = require('node:readline')
const { spawn } = require('node:child_process')
const { ObjectId, Decimal128 } = require('..')
const { start } = require('../examples/bomba-server/server')
const { LOCAL, ATLAS, uniqueDb, withDb, tempDir, driver, closeDrivers, assertSame, syncOptions, waitFor } = require('./helpers')

const root = path.join(__dirname, '..')
const TOKEN = 'example-test-admin-token-0123456789'
const db = uniqueDb('example')
let app, local, atlas

before(async () => {
  app = await start({ port: 0, host: '127.0.0.1', adminToken: TOKEN, syncOptions: syncOptions(db, { takeoverGraceMs: 200 }) })
  local = await driver(LOCAL)
  atlas = await driver(ATLAS)
})

after(async () => {
  await app.stop()
  await closeDrivers()
})

/** One HTTP call to the example app: `{ status, body }` (body parsed when JSON). */
async function call(method, p, body, headers = {}) {
  const res = await fetch(app.url + p, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await res.text()
  const type = res.headers.get('content-type') || ''
  return { status: res.status, type, body: type.includes('json') && text ? JSON.parse(text) : text }
}

const auth = { authorization: `Bearer ${TOKEN}` }

test('orders and customers written over HTTP reach Atlas; deleted ones are gone there', async () => {
  const ada = await call('POST', '/api/customers', { name: 'Ada', email: 'ada@example.com' })
  assert.equal(ada.status, 201)
  const bob = await call('POST', '/api/customers', { name: 'Bob', email: 'bob@example.com' })
  assert.equal(bob.status, 201)
  assert.equal((await call('GET', '/api/customers')).body.length, 2)

  const items = [{ sku: 'tea', qty: 2, price: 3.5 }, { sku: 'cup', qty: 1, price: '1.10' }]
  const created = []
  for (const customerId of [ada.body._id, bob.body._id, ada.body._id]) {
    const r = await call('POST', '/api/orders', { customerId, items })
    assert.equal(r.status, 201, JSON.stringify(r.body))
    assert.equal(r.body.total, '8.10')
    created.push(r.body._id)
  }
  const [keep, change, drop] = created
  assert.equal((await call('POST', '/api/orders', { customerId: new ObjectId().toHexString(), items })).status, 400)
  assert.equal((await call('GET', '/api/orders/not-an-id')).status, 400)

  const paid = await call('PATCH', `/api/orders/${change}`, { status: 'paid', items: [{ sku: 'kettle', qty: 1, price: 25 }] })
  assert.equal(paid.status, 200)
  assert.equal(paid.body.status, 'paid')
  assert.equal(paid.body.version, 2)
  assert.equal((await call('DELETE', `/api/orders/${drop}`)).status, 204)
  assert.equal((await call('DELETE', `/api/orders/${drop}`)).status, 404)
  assert.equal((await call('GET', `/api/orders/${drop}`)).status, 404)
  assert.equal((await call('GET', `/api/orders/${keep}`)).body.status, 'new')
  const adas = await call('GET', `/api/orders?customerId=${ada.body._id}`)
  assert.deepEqual(adas.body.map((o) => o._id), [keep])

  assert.equal((await call('POST', '/api/sync/flush', {})).status, 401, 'flush needs the token')
  const flushed = await call('POST', '/api/sync/flush', { timeoutMs: 30000 }, auth)
  assert.equal(flushed.status, 200, JSON.stringify(flushed.body))

  await assertSame(local, atlas, db, ['orders', 'customers'])
  const orders = atlas.db(db).collection('orders')
  assert.equal(await orders.countDocuments(), 2)
  assert.equal(await orders.findOne({ _id: new ObjectId(drop) }), null, 'the deleted order is gone from Atlas')
  const onAtlas = await orders.findOne({ _id: new ObjectId(change) })
  assert.equal(onAtlas.status, 'paid')
  assert.equal(onAtlas.version, 2)
  assert.ok(onAtlas.total instanceof Decimal128, 'money stays Decimal128 on Atlas')
  assert.equal(onAtlas.total.toString(), '25.00')
  assert.ok(onAtlas.customerId instanceof ObjectId)
  assert.equal(await atlas.db(db).collection('customers').countDocuments(), 2)
})

test('GET /api/sync/health and /metrics answer JSON; POST routes need the token', async () => {
  const health = await waitFor(async () => {
    const r = await call('GET', '/api/sync/health')
    return r.status === 200 ? r : null
  }, { what: 'health 200 (Atlas ping answered)' })
  assert.match(health.type, /application\/json/)
  assert.equal(health.body.status, 'healthy')
  assert.equal(health.body.checks.atlasConnection.pass, true)
  const metrics = await call('GET', '/api/sync/metrics')
  assert.equal(metrics.status, 200)
  assert.equal(typeof metrics.body.queueSize, 'number')
  assert.equal(metrics.body.connections.atlas, 'up')
  const prom = await call('GET', '/api/sync/metrics?format=prometheus')
  assert.match(prom.body, /dual_sync_queue_size/)
  assert.equal((await call('POST', '/api/sync/pause', {}, { authorization: 'Bearer wrong-token-wrong-token' })).status, 401)
  assert.equal((await call('GET', '/api/nowhere')).status, 404)
})

/** Runs `node <args>` in the repo with `env` added; resolves with its exit code and output. */
function runNode(args, env, { onLine } = {}) {
  const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    out += line + '\n'
    if (onLine) onLine(line, child)
  })
  child.stderr.on('data', (d) => (out += d))
  const done = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal, out: () => out })))
  return { child, done }
}

test('server.js on SIGTERM closes HTTP, drains the queue to Atlas and exits 0', async () => {
  const sdb = uniqueDb('example_sigterm')
  let resolveUrl
  const url = new Promise((r) => (resolveUrl = r))
  const { child, done } = runNode([path.join('examples', 'bomba-server', 'server.js')], {
    MONGODB_URI: withDb(LOCAL, sdb),
    MONGODB_ATLAS_URI: ATLAS,
    SYNC_DATA_DIR: tempDir(),
    SYNC_LOG_LEVEL: 'warn',
    SYNC_ENABLED: 'true',
    PORT: '0',
  }, { onLine: (line) => { const m = / on (http:\/\/\S+)/.exec(line); if (m) resolveUrl(m[1]) } })
  const base = await Promise.race([url, done.then((r) => Promise.reject(new Error(`server exited: ${r.out()}`)))])
  const post = (p, body) => fetch(base + p, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const customer = await (await post('/api/customers', { name: 'Sig', email: 'sig@example.com' })).json()
  const orders = []
  for (let i = 0; i < 20; i++) orders.push((await (await post('/api/orders', { customerId: customer._id, items: [{ sku: `s${i}`, qty: 1, price: i }] })).json())._id)
  child.kill('SIGTERM')
  const r = await done
  assert.equal(r.code, 0, r.out())
  assert.match(r.out(), /SIGTERM: closing/)
  assert.equal(await atlas.db(sdb).collection('orders').countDocuments({ _id: { $in: orders.map((id) => new ObjectId(id)) } }), 20)
  await assertSame(local, atlas, sdb, ['orders', 'customers'])
})

test('npm run demo -- --once writes through the example server and sees it all on Atlas', async () => {
  const ddb = uniqueDb('demo')
  const { done } = runNode([path.join('scripts', 'demo.js'), '--once', '--db', ddb], { MONGODB_URI: LOCAL, MONGODB_ATLAS_URI: ATLAS })
  const r = await done
  assert.equal(r.code, 0, r.out())
  assert.match(r.out(), /local and Atlas agree/)
  assert.match(r.out(), /stopped cleanly/)
  await assertSame(local, atlas, ddb, ['orders', 'customers'])
  assert.equal(await atlas.db(ddb).collection('orders').countDocuments(), 2)
})
