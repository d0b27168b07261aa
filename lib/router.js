'use strict'
// The HTTP operations surface of a Sync: health, metrics, full sync, verify,
// pause, resume and flush as a plain `(req, res, next)` middleware. It needs
// no framework: mount it with Express (`app.use('/api/sync', router)`, req.url
// is then relative to the mount) or call it from `http.createServer` (full
// paths; the `prefix` is stripped). GET routes are open; every POST route
// needs the admin token or the `authorize(req)` hook. Responses are relaxed
// Extended JSON, so ObjectId `_id`s of a verify report stay ObjectIds.
const crypto = require('node:crypto')
const { EJSON } = require('bson')
const { SyncError, invalidArgument } = require('./errors')
const { describe } = require('./options')
const { ADMIN_TOKEN } = require('./sync')

const MAX_BODY_BYTES = 64 * 1024
const PROMETHEUS_TYPE = 'text/plain; version=0.0.4; charset=utf-8'
const ROUTER_OPTIONS = ['adminToken', 'authorize', 'prefix']
const STATUS_OF_CODE = { ERR_SYNC_INVALID_ARGUMENT: 400, ERR_SYNC_CONFLICT: 409, ERR_SYNC_CLOSED: 503, ERR_SYNC_TIMEOUT: 504 }

/** An error answered with its own HTTP status (and headers). */
class HttpError extends Error {
  constructor(status, code, message, headers = {}) {
    super(message)
    this.status = status
    this.code = code
    this.headers = headers
  }
}

/** HTTP status of a health report: 200 when healthy, 503 when degraded or unhealthy. */
function healthHttpStatus(health) {
  return health && health.status === 'healthy' ? 200 : 503
}

/** HTTP status of an error: its own, else by engine code (400, 409, 503, 504), else 500. */
function errorHttpStatus(err) {
  if (err instanceof HttpError) return err.status
  return STATUS_OF_CODE[err && err.code] ?? 500
}

/** Hides the user info of connection strings (`scheme://user:pass@host` -> `scheme://***@host`). */
function redact(text) {
  return String(text).replace(/([a-z][a-z0-9+.-]*:\/\/)[^@/\s]*@/gi, '$1***@')
}

/** Answers with `body`: a string as Prometheus text, anything else as relaxed Extended JSON. */
function send(res, status, body, headers = {}) {
  res.statusCode = status
  res.setHeader('Cache-Control', 'no-store')
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v)
  if (typeof body === 'string') {
    res.setHeader('Content-Type', PROMETHEUS_TYPE)
    res.end(body)
    return
  }
  res.setHeader('Content-Type', 'application/json; charset=utf-8')
  res.end(EJSON.stringify(body, { relaxed: true }))
}

/** Answers with an error; anything may have been thrown (an authorize hook may reject with nothing). */
function sendError(res, err) {
  const e = typeof err === 'object' && err !== null ? err : { message: `failed with ${describe(err)} instead of an Error` }
  const code = typeof e.code === 'string' || typeof e.code === 'number' ? e.code : 'ERR_SYNC_INTERNAL'
  const message = redact(e.message || String(e))
  const headers = typeof e.headers === 'object' && e.headers !== null ? e.headers : {}
  try {
    send(res, errorHttpStatus(e), { error: { code, message } }, headers)
  } catch {
    // A header the error brought that Node refuses: answer without its headers.
    if (res.headersSent) return res.destroy()
    for (const k of Object.keys(headers)) res.removeHeader(k)
    send(res, errorHttpStatus(e), { error: { code, message } })
  }
}

/** The SHA-256 digest of a string, so tokens of any length compare in constant time. */
function digest(s) {
  return crypto.createHash('sha256').update(s, 'utf8').digest()
}

/**
 * The admin token's digest, or null; a weak token is refused. The token is
 * the router's `adminToken` option, else the one given to createSync(), else
 * SYNC_ADMIN_TOKEN.
 */
function tokenDigest(optionToken, syncToken) {
  const token = optionToken ?? syncToken ?? process.env.SYNC_ADMIN_TOKEN
  if (token === undefined || token === '') return null
  if (typeof token !== 'string' || token.length < 16 || /\s/.test(token)) {
    // The token is a secret: never echo it.
    const from =
      optionToken !== undefined ? 'options.adminToken' : syncToken !== undefined ? 'createSync({ adminToken })' : 'SYNC_ADMIN_TOKEN'
    throw new SyncError(`syncRouter: ${from}=(hidden) is not allowed: at least 16 characters without spaces`, 'ERR_SYNC_CONFIG')
  }
  return digest(token)
}

function bearerToken(req) {
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.headers.authorization || '')
  return m ? m[1] : null
}

const NOT_CONFIGURED =
  'mutating sync endpoints are disabled: set SYNC_ADMIN_TOKEN (16+ characters, sent as ' +
  "'Authorization: Bearer <token>'), or pass adminToken or authorize(req) to syncRouter()"

/** Resolves if `req` may call a mutating route; rejects with 401 or 403 otherwise. */
function makeAuthorizer(adminDigest, authorize) {
  return async (req) => {
    if (!adminDigest && !authorize) throw new HttpError(403, 'ERR_SYNC_FORBIDDEN', NOT_CONFIGURED)
    const sent = bearerToken(req)
    if (adminDigest && sent !== null && crypto.timingSafeEqual(digest(sent), adminDigest)) return
    if (authorize && (await authorize(req))) return
    if (!adminDigest) throw new HttpError(403, 'ERR_SYNC_FORBIDDEN', 'not allowed by the authorize hook')
    const challenge = `Bearer realm="dual-mongo-sync"${sent === null ? '' : ', error="invalid_token"'}`
    const message = sent === null ? "missing 'Authorization: Bearer <token>' header" : 'wrong admin token'
    throw new HttpError(401, 'ERR_SYNC_UNAUTHORIZED', message, { 'WWW-Authenticate': challenge })
  }
}

function tooLarge() {
  return new HttpError(413, 'ERR_SYNC_BODY_TOO_LARGE', `request body over ${MAX_BODY_BYTES} bytes`, { Connection: 'close' })
}

/** Reads the raw request body, refusing more than MAX_BODY_BYTES. */
function readRaw(req) {
  return new Promise((resolve, reject) => {
    if (Number(req.headers['content-length']) > MAX_BODY_BYTES) return reject(tooLarge())
    const chunks = []
    let size = 0
    const onData = (chunk) => {
      size += chunk.length
      if (size <= MAX_BODY_BYTES) return chunks.push(chunk)
      req.off('data', onData)
      req.resume()
      reject(tooLarge())
    }
    req.on('data', onData)
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })
}

/** `{ text }` of the body, or `{ parsed }` when a body parser (express.json(), text(), raw()) already read it. */
async function bodyOf(req) {
  const parsed = req.body
  if (parsed !== undefined && (req.readableEnded || req._body === true)) {
    if (typeof parsed !== 'string' && !Buffer.isBuffer(parsed)) return { parsed }
    if (Buffer.byteLength(parsed) > MAX_BODY_BYTES) throw tooLarge()
    return { text: parsed.toString() }
  }
  if (req.readableEnded) {
    // Read by some other middleware that kept nothing: only an empty body is certain.
    if (!req.headers['transfer-encoding'] && !(Number(req.headers['content-length']) > 0)) return { text: '' }
    throw new Error('the request body was already read by another middleware; mount syncRouter() before it')
  }
  return { text: (await readRaw(req)).toString('utf8') }
}

/** The JSON object of the request body ({} when empty), with only `allowed` keys. */
async function readJsonBody(req, allowed) {
  const got = await bodyOf(req)
  let body = got.parsed
  if (body === undefined) {
    try {
      body = got.text.trim() === '' ? {} : JSON.parse(got.text)
    } catch (e) {
      throw invalidArgument(`the request body is not valid JSON: ${e.message}`)
    }
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw invalidArgument(`the request body must be a JSON object, got ${describe(body)}`)
  }
  for (const k of Object.keys(body)) {
    if (!allowed.includes(k)) throw invalidArgument(`unknown field '${k}' in the request body; allowed: ${allowed.join(', ')}`)
  }
  return body
}

/** `{ collections?, repair? }` of a body, type-checked, without absent keys. */
function jobOptions(body) {
  const out = {}
  if (body.collections !== undefined) {
    const c = body.collections
    if (!Array.isArray(c) || c.length === 0 || c.some((x) => typeof x !== 'string' || x === '')) {
      throw invalidArgument(`'collections' must be a non-empty array of collection names, got ${describe(c)}`)
    }
    out.collections = c
  }
  if (body.repair !== undefined) {
    if (typeof body.repair !== 'boolean') throw invalidArgument(`'repair' must be a boolean, got ${describe(body.repair)}`)
    out.repair = body.repair
  }
  return out
}

/** `json` or `prometheus`, from `?format=` first, else from the Accept header. */
function metricsFormat(query, req) {
  const asked = query.get('format')
  if (asked === 'json' || asked === 'prometheus') return asked
  if (asked !== null) throw invalidArgument(`format must be 'json' or 'prometheus', got ${describe(asked)}`)
  return /\btext\/plain\b/i.test(req.headers.accept || '') ? 'prometheus' : 'json'
}

/** The route handlers: each resolves with [status, body]. */
function handlers(sync) {
  return {
    '/health': {
      GET: async () => {
        const health = await sync.health()
        return [healthHttpStatus(health), health]
      },
    },
    '/metrics': {
      GET: async ({ req, query }) => [200, await sync.metrics({ format: metricsFormat(query, req) })],
    },
    '/full': {
      GET: async () => [200, await sync.fullSyncStatus()],
      POST: async ({ req }) => [202, await sync.startFullSync(jobOptions(await readJsonBody(req, ['collections'])))],
    },
    '/verify': {
      GET: async () => [200, await sync.verifyStatus()],
      POST: async ({ req }) => [202, await sync.startVerify(jobOptions(await readJsonBody(req, ['collections', 'repair'])))],
    },
    '/pause': {
      POST: async ({ req }) => {
        await readJsonBody(req, [])
        sync.pause()
        // What the sync reports: false when SYNC_ENABLED=false left nothing to pause.
        return [200, { paused: (await sync.metrics()).paused }]
      },
    },
    '/resume': {
      POST: async ({ req }) => {
        await readJsonBody(req, [])
        sync.resume()
        return [200, { paused: (await sync.metrics()).paused }]
      },
    },
    '/flush': {
      POST: async ({ req }) => {
        const body = await readJsonBody(req, ['timeoutMs'])
        await sync.flush(body.timeoutMs === undefined ? undefined : { timeoutMs: body.timeoutMs })
        return [200, { flushed: true }]
      },
    },
  }
}

/** The route path of a request URL: the prefix and one trailing slash removed. */
function routePath(pathname, prefix) {
  let p = pathname
  if (prefix && (p === prefix || p.startsWith(prefix + '/'))) p = p.slice(prefix.length)
  if (p.length > 1 && p.endsWith('/')) p = p.slice(0, -1)
  return p
}

function allowHeader(route) {
  const methods = Object.keys(route)
  if (methods.includes('GET')) methods.splice(methods.indexOf('GET') + 1, 0, 'HEAD')
  return methods.join(', ')
}

function checkRouterOptions(sync, options) {
  if (!sync || typeof sync.health !== 'function') {
    throw invalidArgument(`syncRouter: the first argument must be the Sync of createSync(), got ${describe(sync)}`)
  }
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw invalidArgument(`syncRouter: options must be an object, got ${describe(options)}`)
  }
  for (const k of Object.keys(options)) {
    if (!ROUTER_OPTIONS.includes(k)) throw invalidArgument(`syncRouter: unknown option '${k}'; allowed: ${ROUTER_OPTIONS.join(', ')}`)
  }
  if (options.authorize !== undefined && typeof options.authorize !== 'function') {
    throw invalidArgument(`syncRouter: authorize must be a function (req) => boolean, got ${describe(options.authorize)}`)
  }
  const prefix = options.prefix ?? '/api/sync'
  if (typeof prefix !== 'string' || (prefix !== '' && (!prefix.startsWith('/') || prefix.endsWith('/')))) {
    throw invalidArgument(`syncRouter: prefix must be '' or a path like '/api/sync', got ${describe(prefix)}`)
  }
  return prefix
}

/**
 * The sync operations as a `(req, res, next)` middleware: `GET /health`,
 * `GET /metrics`, `GET|POST /full`, `GET|POST /verify`, `POST /pause`,
 * `POST /resume`, `POST /flush`. Other paths call `next()`.
 */
function syncRouter(sync, options = {}) {
  const prefix = checkRouterOptions(sync, options)
  const authorizeMutation = makeAuthorizer(tokenDigest(options.adminToken, sync[ADMIN_TOKEN]), options.authorize)
  const routes = handlers(sync)
  return async function dualMongoSyncRouter(req, res, next) {
    const url = req.url || '/'
    const q = url.indexOf('?')
    const path = routePath(q === -1 ? url : url.slice(0, q), prefix)
    if (!Object.hasOwn(routes, path)) return next()
    const route = routes[path]
    const method = req.method === 'HEAD' ? 'GET' : req.method
    try {
      if (!Object.hasOwn(route, method)) {
        const allow = allowHeader(route)
        const message = `${req.method} is not allowed here; use ${allow}`
        throw new HttpError(405, 'ERR_SYNC_METHOD_NOT_ALLOWED', message, { Allow: allow })
      }
      if (method !== 'GET') await authorizeMutation(req)
      const [status, body] = await route[method]({ req, query: new URLSearchParams(q === -1 ? '' : url.slice(q + 1)) })
      send(res, status, body)
    } catch (e) {
      sendError(res, e)
    }
  }
}

module.exports = { syncRouter, healthHttpStatus, errorHttpStatus, redact }
