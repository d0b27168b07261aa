'use strict'
// The HTTP router (MISSION.md section 3): every route over real HTTP, the
// admin-token and hook checks of the POST routes, content negotiation of the
// metrics, error shapes and codes, and full sync / verify results read back
// from both servers.
const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const http = require('node:http')
const { EJSON, ObjectId } = require('bson')
const { createSync, syncRouter } = require('..')
const { healthHttpStatus, errorHttpStatus, redact } = require('../lib/router')
const { LOCAL, ATLAS, uniqueDb, driver, closeDrivers, assertSame, syncOptions, waitFor } = require('./helpers')

const db = uniqueDb('router')
const TOKEN = 'router-test-token-0123456789'
let sync, local, atlas
const servers = []

/** Serves `handler` on a free port; resolves with its base URL. */
async function serve(handler) {
  const server = http.createServer(handler)
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  servers.push(server)
  return `http://127.0.0.1:${server.address().port}`
}

/** A plain http server around a router; unknown paths end in a 404 from next(). */
function serveRouter(router) {
  return serve((req, res) =>
    router(req, res, () => {
      res.statusCode = 404
      res.end('not found by the router')
    }),
  )
}

/** One request; resolves with status, headers, text and the parsed JSON body (if JSON). */
async function call(base, method, path, { body, token, headers = {} } = {}) {
  const h = { ...headers }
  if (token) h.authorization = `Bearer ${token}`
  const init = { method, headers: h }
  if (body !== undefined) init.body = typeof body === 'string' ? body : JSON.stringify(body)
  const r = await fetch(base + path, init)
  const text = await r.text()
  const isJson = /json/.test(r.headers.get('content-type') || '') && text !== ''
  const json = isJson ? EJSON.parse(text, { relaxed: true }) : undefined
  return { status: r.status, headers: r.headers, text, json }
}

let base, noAuthBase
before(async () => {
  delete process.env.SYNC_ADMIN_TOKEN
  sync = await createSync(syncOptions(db, { retryBaseMs: 20, retryMaxMs: 500 }))
  local = await driver(LOCAL)
  atlas = await driver(ATLAS)
  base = await serveRouter(syncRouter(sync, { adminToken: TOKEN }))
  noAuthBase = await serveRouter(syncRouter(sync))
})

after(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))))
  await sync.close()
  await closeDrivers()
})

test('GET /health answers the health report: 200 once healthy, and HEAD works too', async () => {
  const r = await waitFor(async () => {
    const x = await call(base, 'GET', '/api/sync/health')
    return x.status === 200 ? x : null
  }, { what: 'health to turn healthy' })
  assert.equal(r.json.status, 'healthy')
  assert.equal(r.json.checks.atlasConnection.pass, true)
  assert.equal(r.json.checks.queueSize.threshold, 100)
  assert.match(r.headers.get('content-type'), /^application\/json/)
  assert.equal(r.headers.get('cache-control'), 'no-store')
  const head = await call(base, 'HEAD', '/api/sync/health')
  assert.equal(head.status, 200)
  assert.equal(head.text, '')
})

test('health and errors map to HTTP status codes', () => {
  assert.equal(healthHttpStatus({ status: 'healthy' }), 200)
  assert.equal(healthHttpStatus({ status: 'degraded' }), 503)
  assert.equal(healthHttpStatus({ status: 'unhealthy' }), 503)
  assert.equal(errorHttpStatus({ code: 'ERR_SYNC_INVALID_ARGUMENT' }), 400)
  assert.equal(errorHttpStatus({ code: 'ERR_SYNC_CONFLICT' }), 409)
  assert.equal(errorHttpStatus({ code: 'ERR_SYNC_CLOSED' }), 503)
  assert.equal(errorHttpStatus({ code: 'ERR_SYNC_TIMEOUT' }), 504)
  assert.equal(errorHttpStatus({ code: 'ERR_SYNC_CONNECT' }), 500)
  assert.equal(errorHttpStatus(new TypeError('bug')), 500)
})

test('GET /metrics: JSON by default, Prometheus text by ?format=prometheus or Accept: text/plain', async () => {
  const json = await call(base, 'GET', '/api/sync/metrics')
  assert.equal(json.status, 200)
  assert.equal(typeof json.json.queueSize, 'number')
  assert.equal(json.json.fullSync.state !== undefined, true)
  for (const [path, headers] of [
    ['/api/sync/metrics?format=prometheus', {}],
    ['/api/sync/metrics', { accept: 'text/plain' }],
    ['/api/sync/metrics', { accept: 'application/openmetrics-text;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1' }],
  ]) {
    const r = await call(base, 'GET', path, { headers })
    assert.equal(r.status, 200)
    assert.match(r.headers.get('content-type'), /^text\/plain; version=0\.0\.4/, `${path} ${JSON.stringify(headers)}`)
    assert.match(r.text, /^dual_sync_queue_size \d+$/m)
    assert.match(r.text, /^# TYPE dual_sync_synced_total counter$/m)
  }
  const asJson = await call(base, 'GET', '/api/sync/metrics?format=json', { headers: { accept: 'text/plain' } })
  assert.equal(typeof asJson.json.queueSize, 'number', '?format wins over Accept')
  const bad = await call(base, 'GET', '/api/sync/metrics?format=xml')
  assert.equal(bad.status, 400)
  assert.equal(bad.json.error.code, 'ERR_SYNC_INVALID_ARGUMENT')
})

test('routes answer with or without the prefix, behind an Express-style mount, with a trailing slash; others go to next()', async () => {
  const router = syncRouter(sync, { adminToken: TOKEN })
  const mounted = await serve((req, res) => {
    // What Express does for app.use('/mnt', router): req.url loses the mount path.
    if (!req.url.startsWith('/mnt/')) return void res.writeHead(404).end()
    req.url = req.url.slice('/mnt'.length)
    router(req, res, () => res.writeHead(404).end('next'))
  })
  for (const [b, path] of [
    [base, '/api/sync/metrics'],
    [base, '/metrics'],
    [base, '/api/sync/metrics/'],
    [mounted, '/mnt/metrics'],
  ]) {
    const r = await call(b, 'GET', path)
    assert.equal(r.status, 200, path)
    assert.equal(typeof r.json.queueSize, 'number', path)
  }
  for (const path of ['/api/sync/nope', '/elsewhere', '/api/syncx/metrics', '/api/sync', '/']) {
    const r = await call(base, 'GET', path)
    assert.equal(r.status, 404, path)
    assert.equal(r.text, 'not found by the router', path)
  }
  const unprefixed = await serveRouter(syncRouter(sync, { prefix: '' }))
  assert.equal((await call(unprefixed, 'GET', '/metrics')).status, 200)
  assert.equal((await call(unprefixed, 'GET', '/api/sync/metrics')).status, 404)
})

test('a wrong method on a known route gets 405 with an Allow header', async () => {
  const cases = [
    ['DELETE', '/api/sync/health', 'GET, HEAD'],
    ['POST', '/api/sync/metrics', 'GET, HEAD'],
    ['GET', '/api/sync/pause', 'POST'],
    ['PUT', '/api/sync/full', 'GET, HEAD, POST'],
    ['PATCH', '/api/sync/verify', 'GET, HEAD, POST'],
  ]
  for (const [method, path, allow] of cases) {
    const r = await call(base, method, path, { token: TOKEN })
    assert.equal(r.status, 405, `${method} ${path}`)
    assert.equal(r.headers.get('allow'), allow)
    assert.equal(r.json.error.code, 'ERR_SYNC_METHOD_NOT_ALLOWED')
  }
})

test('POST routes: 403 when no token is configured, 401 for a missing or wrong token, and nothing happens', async () => {
  const refused = await call(noAuthBase, 'POST', '/api/sync/pause', { token: TOKEN })
  assert.equal(refused.status, 403)
  assert.equal(refused.json.error.code, 'ERR_SYNC_FORBIDDEN')
  assert.match(refused.json.error.message, /SYNC_ADMIN_TOKEN.*authorize/)
  assert.equal((await call(noAuthBase, 'GET', '/api/sync/full')).status, 200, 'GET routes stay open')
  const missing = await call(base, 'POST', '/api/sync/pause')
  assert.equal(missing.status, 401)
  assert.match(missing.headers.get('www-authenticate'), /^Bearer realm="dual-mongo-sync"$/)
  assert.equal(missing.json.error.code, 'ERR_SYNC_UNAUTHORIZED')
  for (const authorization of [`Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, `Basic ${TOKEN}`, TOKEN]) {
    const r = await call(base, 'POST', '/api/sync/pause', { headers: { authorization } })
    assert.equal(r.status, 401, authorization)
    assert.match(r.headers.get('www-authenticate'), /^Bearer/)
    assert.ok(!r.text.includes(TOKEN.slice(0, 12)), 'the token is never echoed')
  }
  assert.equal((await sync.metrics()).paused, false, 'a refused POST /pause did not pause')
})

test('the right token: POST /pause, /flush and /resume work, and a flush while paused times out with 504', async () => {
  const paused = await call(base, 'POST', '/api/sync/pause', { token: TOKEN })
  assert.equal(paused.status, 200)
  assert.deepEqual(paused.json, { paused: true })
  assert.equal((await sync.metrics()).paused, true)
  const _id = new ObjectId()
  await sync.collection('flushed').insertOne({ _id, v: 1 })
  const timedOut = await call(base, 'POST', '/api/sync/flush', { token: TOKEN, body: { timeoutMs: 200 } })
  assert.equal(timedOut.status, 504)
  assert.equal(timedOut.json.error.code, 'ERR_SYNC_TIMEOUT')
  assert.equal(await atlas.db(db).collection('flushed').countDocuments({ _id }), 0, 'nothing reached Atlas while paused')
  const resumed = await call(base, 'POST', '/api/sync/resume', { token: TOKEN })
  assert.deepEqual([resumed.status, resumed.json], [200, { paused: false }])
  const flushed = await call(base, 'POST', '/api/sync/flush', { token: TOKEN })
  assert.deepEqual([flushed.status, flushed.json], [200, { flushed: true }])
  assert.deepEqual(await atlas.db(db).collection('flushed').findOne({ _id }), { _id, v: 1 })
})

test('the admin token comes from SYNC_ADMIN_TOKEN too; weak tokens and unknown options are refused', async () => {
  process.env.SYNC_ADMIN_TOKEN = 'env-admin-token-abcdefghijkl'
  try {
    const envBase = await serveRouter(syncRouter(sync))
    const r = await call(envBase, 'POST', '/api/sync/resume', { token: 'env-admin-token-abcdefghijkl' })
    assert.equal(r.status, 200)
    assert.equal((await call(envBase, 'POST', '/api/sync/resume', { token: TOKEN })).status, 401)
  } finally {
    delete process.env.SYNC_ADMIN_TOKEN
  }
  assert.throws(() => syncRouter(sync, { adminToken: 'tooShortSecret' }), (e) => {
    assert.equal(e.code, 'ERR_SYNC_CONFIG')
    assert.doesNotMatch(e.message, /tooShortSecret/)
    return true
  })
  assert.throws(() => syncRouter(sync, { token: TOKEN }), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /token.*adminToken/ })
  assert.throws(() => syncRouter(sync, { prefix: 'api/' }), { code: 'ERR_SYNC_INVALID_ARGUMENT' })
  assert.throws(() => syncRouter({}), { code: 'ERR_SYNC_INVALID_ARGUMENT', message: /Sync of createSync/ })
})

test('an authorize(req) hook allows or refuses POST routes; with a token as well, the token also works', async () => {
  const authorize = async (req) => req.headers['x-role'] === 'admin'
  const hooked = await serveRouter(syncRouter(sync, { authorize }))
  const refused = await call(hooked, 'POST', '/api/sync/resume')
  assert.equal(refused.status, 403)
  assert.equal(refused.json.error.code, 'ERR_SYNC_FORBIDDEN')
  assert.equal((await call(hooked, 'POST', '/api/sync/resume', { headers: { 'x-role': 'admin' } })).status, 200)
  const both = await serveRouter(syncRouter(sync, { authorize, adminToken: TOKEN }))
  assert.equal((await call(both, 'POST', '/api/sync/resume', { token: TOKEN })).status, 200)
  assert.equal((await call(both, 'POST', '/api/sync/resume', { headers: { 'x-role': 'admin' } })).status, 200)
  assert.equal((await call(both, 'POST', '/api/sync/resume')).status, 401)
  const throwing = await serveRouter(syncRouter(sync, { authorize: () => Promise.reject(new Error('session store down')) }))
  const failed = await call(throwing, 'POST', '/api/sync/resume')
  assert.equal(failed.status, 500)
  assert.match(failed.json.error.message, /session store down/)
  // A hook that rejects with nothing, or with a header Node refuses, is answered too (it used to
  // throw inside the error handler, an unhandled rejection that ends the Node process).
  for (const reason of [undefined, null, 'nope']) {
    const bare = await serveRouter(syncRouter(sync, { authorize: () => Promise.reject(reason) }))
    const r = await call(bare, 'POST', '/api/sync/resume')
    assert.equal(r.status, 500, String(reason))
    assert.equal(r.json.error.code, 'ERR_SYNC_INTERNAL')
    assert.match(r.json.error.message, /instead of an Error/)
  }
  const badHeader = Object.assign(new Error('refused'), { status: 403, headers: { 'X-Bad': 'a\nb' } })
  const withHeader = await serveRouter(syncRouter(sync, { authorize: () => Promise.reject(badHeader) }))
  const r = await call(withHeader, 'POST', '/api/sync/resume')
  assert.equal(r.status, 500)
  assert.match(r.json.error.message, /refused/)
})

test('POST /pause on a sync with SYNC_ENABLED=false answers paused: false, as its metrics say (nothing to pause)', async () => {
  const off = await createSync({ localUri: syncOptions(db).localUri, enabled: false, logLevel: 'off' })
  try {
    const offBase = await serveRouter(syncRouter(off, { adminToken: TOKEN }))
    const r = await call(offBase, 'POST', '/api/sync/pause', { token: TOKEN })
    assert.deepEqual([r.status, r.json], [200, { paused: false }])
    assert.equal((await off.metrics()).paused, false)
  } finally {
    await off.close()
  }
})

test('the admin token given to createSync() is the router default; the router option overrides it', async () => {
  const other = 'create-sync-token-0123456789'
  const tokened = await createSync(syncOptions(db, { adminToken: other }))
  try {
    assert.ok(!JSON.stringify(tokened).includes(other), 'not in the serialized Sync')
    assert.ok(!require('node:util').inspect(tokened, { depth: 5 }).includes(other), 'not in util.inspect')
    const fromSync = await serveRouter(syncRouter(tokened))
    assert.equal((await call(fromSync, 'POST', '/api/sync/resume', { token: other })).status, 200)
    assert.equal((await call(fromSync, 'POST', '/api/sync/resume', { token: TOKEN })).status, 401)
    const overridden = await serveRouter(syncRouter(tokened, { adminToken: TOKEN }))
    assert.equal((await call(overridden, 'POST', '/api/sync/resume', { token: TOKEN })).status, 200)
    assert.equal((await call(overridden, 'POST', '/api/sync/resume', { token: other })).status, 401)
  } finally {
    await tokened.close()
  }
})

test('request bodies: invalid JSON, wrong fields and types get 400, over 64 KiB gets 413', async () => {
  const cases = [
    ['/api/sync/full', '{"collections": [', 400, /not valid JSON/],
    ['/api/sync/full', '[]', 400, /must be a JSON object/],
    ['/api/sync/full', { colections: ['a'] }, 400, /unknown field 'colections'.*allowed: collections/],
    ['/api/sync/full', { collections: 'a' }, 400, /collections/],
    ['/api/sync/full', { collections: [] }, 400, /non-empty array/],
    ['/api/sync/full', { repair: true }, 400, /unknown field 'repair'/],
    ['/api/sync/verify', { repair: 'yes' }, 400, /'repair' must be a boolean/],
    ['/api/sync/pause', { now: true }, 400, /unknown field 'now'/],
    ['/api/sync/flush', { timeoutMs: -1 }, 400, /timeoutMs/],
    ['/api/sync/full', JSON.stringify({ collections: ['x'.repeat(70 * 1024)] }), 413, /64|65536/],
  ]
  for (const [path, body, status, message] of cases) {
    const r = await call(base, 'POST', path, { token: TOKEN, body, headers: { 'content-type': 'application/json' } })
    assert.equal(r.status, status, `${path} ${String(JSON.stringify(body)).slice(0, 60)}: ${r.text}`)
    assert.match(r.json.error.message, message)
    assert.equal(r.json.error.code, status === 413 ? 'ERR_SYNC_BODY_TOO_LARGE' : 'ERR_SYNC_INVALID_ARGUMENT')
  }
})

test('a chunked body (no Content-Length) over 64 KiB is cut off with 413', async () => {
  const url = new URL('/api/sync/full', base)
  const status = await new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } }, (res) => {
      res.resume()
      resolve(res.statusCode)
    })
    req.on('error', reject)
    for (let i = 0; i < 80; i++) req.write('x'.repeat(1024))
    req.end()
  })
  assert.equal(status, 413)
})

test('a body already parsed by a body parser (req.body, as express.json() leaves it) is used', async () => {
  const router = syncRouter(sync, { adminToken: TOKEN })
  const parsing = await serve(async (req, res) => {
    const chunks = []
    for await (const c of req) chunks.push(c)
    req.body = JSON.parse(Buffer.concat(chunks).toString() || '{}')
    router(req, res, () => res.writeHead(404).end())
  })
  const r = await call(parsing, 'POST', '/api/sync/flush', { token: TOKEN, body: { timeoutMs: -5 } })
  assert.equal(r.status, 400)
  assert.match(r.json.error.message, /timeoutMs.*-5/)
  assert.equal((await call(parsing, 'POST', '/api/sync/flush', { token: TOKEN, body: { timeoutMs: 5000 } })).status, 200)
  const swallowing = await serve(async (req, res) => {
    await new Promise((r) => req.resume().on('end', r)) // reads the body and keeps nothing
    router(req, res, () => res.writeHead(404).end())
  })
  const lost = await call(swallowing, 'POST', '/api/sync/verify', { token: TOKEN, body: { collections: ['a'] } })
  assert.equal(lost.status, 500, 'a body read elsewhere is not taken for an empty one')
  assert.match(lost.json.error.message, /already read by another middleware/)
  assert.equal((await call(swallowing, 'POST', '/api/sync/resume', { token: TOKEN })).status, 200, 'no body: nothing lost')
})

test('a closed Sync answers 503 ERR_SYNC_CLOSED; error messages never show credentials', async () => {
  const closed = await createSync(syncOptions(uniqueDb('routerclosed')))
  await closed.close()
  const b = await serveRouter(syncRouter(closed, { adminToken: TOKEN }))
  for (const [method, path] of [['GET', '/api/sync/health'], ['GET', '/api/sync/metrics'], ['POST', '/api/sync/full']]) {
    const r = await call(b, method, path, { token: TOKEN })
    assert.equal(r.status, 503, path)
    assert.equal(r.json.error.code, 'ERR_SYNC_CLOSED')
  }
  const leak = new Error('cannot reach mongodb+srv://admin:hunter2secret@cluster0.example.net/app')
  const leaky = { health: async () => Promise.reject(Object.assign(leak, { code: 'ERR_SYNC_CONNECT' })) }
  const r = await call(await serveRouter(syncRouter(leaky)), 'GET', '/api/sync/health')
  assert.equal(r.status, 500)
  assert.equal(r.json.error.message, 'cannot reach mongodb+srv://***@cluster0.example.net/app')
  assert.equal(redact('a mongodb://u:p@h1,h2/x and mongodb://h3/y'), 'a mongodb://***@h1,h2/x and mongodb://h3/y')
})

/** Polls GET `path` until the job `id` has ended; resolves with its status. */
function untilEnded(path, id) {
  return waitFor(async () => {
    const r = await call(base, 'GET', path)
    assert.equal(r.status, 200)
    return r.json.id === id && r.json.state !== 'running' ? r.json : null
  }, { timeoutMs: 60000, what: `${path} ${id} to end` })
}

test('POST /full copies to Atlas and removes Atlas-only documents; GET /full shows its progress', async () => {
  const docs = Array.from({ length: 40 }, (_, i) => ({ _id: i, n: i }))
  await local.db(db).collection('full').insertMany(docs)
  await atlas.db(db).collection('full').insertMany([{ _id: 3, n: 'stale' }, { _id: 'atlas-only' }])
  const started = await call(base, 'POST', '/api/sync/full', { token: TOKEN, body: { collections: [`${db}.full`] } })
  assert.equal(started.status, 202)
  assert.equal(typeof started.json.id, 'string')
  const s = await untilEnded('/api/sync/full', started.json.id)
  assert.equal(s.state, 'done', JSON.stringify(s))
  assert.equal(s.collectionsTotal, 1)
  assert.equal(s.collectionsDone, 1)
  assert.ok(s.documentsDone >= 40, JSON.stringify(s))
  assert.equal(s.error, null)
  await assertSame(local, atlas, db, ['full'])
  assert.equal(await atlas.db(db).collection('full').countDocuments({ _id: 'atlas-only' }), 0)
})

test('POST /verify finds exactly the differences planted on Atlas, with their _id types; repair removes them', async () => {
  const oid = new ObjectId()
  const docs = [{ _id: oid, n: 1 }, { _id: 'b', n: 2 }, { _id: 3, n: 3 }, { _id: 4, n: 4 }]
  await local.db(db).collection('ver').insertMany(docs.map((d) => ({ ...d })))
  await atlas.db(db).collection('ver').insertMany(docs.map((d) => ({ ...d })))
  const av = atlas.db(db).collection('ver')
  await av.deleteOne({ _id: 'b' }) // missing on Atlas
  await av.insertOne({ _id: 'x', n: 9 }) // extra on Atlas
  await av.updateOne({ _id: oid }, { $set: { n: 100 } }) // different
  const started = await call(base, 'POST', '/api/sync/verify', { token: TOKEN, body: { collections: ['ver'] } })
  assert.equal(started.status, 202)
  const s = await untilEnded('/api/sync/verify', started.json.id)
  assert.equal(s.state, 'done', JSON.stringify(s))
  assert.equal(s.report.ok, false)
  assert.equal(s.report.differences, 3)
  assert.equal(s.report.collections.length, 1)
  const c = s.report.collections[0]
  assert.equal(c.ns, `${db}.ver`)
  assert.deepEqual([c.localCount, c.atlasCount], [4, 4])
  assert.deepEqual(c.missing, ['b'])
  assert.deepEqual(c.extra, ['x'])
  assert.equal(c.different.length, 1)
  assert.ok(c.different[0] instanceof ObjectId && c.different[0].equals(oid), 'the ObjectId _id comes back as an ObjectId')
  const repair = await call(base, 'POST', '/api/sync/verify', { token: TOKEN, body: { collections: ['ver'], repair: true } })
  const r = await untilEnded('/api/sync/verify', repair.json.id)
  assert.equal(r.report.repaired, 3, JSON.stringify(r))
  await assertSame(local, atlas, db, ['ver'])
})
