#!/usr/bin/env node
'use strict'
// `npm run demo`: the example bomba server with dual-mongo-sync, end to end.
//
// Starts two test servers ("local" and "atlas", see servers.js) unless
// MONGODB_URI and MONGODB_ATLAS_URI are set, starts examples/bomba-server on
// a free port, creates, updates and deletes customers and orders over HTTP,
// and shows each change arriving on Atlas, with health and metrics from
// /api/sync every second (a live view on a terminal, log lines otherwise).
// Keeps writing a little until Ctrl-C, then stops everything cleanly.
//
//   npm run demo                  # until Ctrl-C
//   npm run demo -- --once        # the writes, proof they arrived, exit 0 (1 if not)
//   npm run demo -- --db NAME     # database of the demo collections (default bomba_demo)
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { parseArgs } = require('node:util')
const { MongoClient } = require('mongodb')
const { EJSON } = require('bson')
const { startServer, ensureServerBinary } = require('./servers')
const { start } = require('../examples/bomba-server/server')
const { ObjectId } = require('..')

const USAGE = 'usage: npm run demo [-- [--once] [--db NAME]]'
const ARRIVAL_TIMEOUT_MS = 60000
const COLLS = ['customers', 'orders']

const t0 = Date.now()
const since = () => `${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s`
const redact = (uri) => uri.replace(/^([a-z+]+:\/\/)[^@/]*@/i, '$1***@')
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

function cli() {
  try {
    const { values } = parseArgs({ options: { once: { type: 'boolean' }, db: { type: 'string' }, help: { type: 'boolean', short: 'h' } } })
    if (values.help) {
      console.log(USAGE)
      process.exit(0)
    }
    return { once: Boolean(values.once), db: values.db || 'bomba_demo' }
  } catch (e) {
    console.error(`${e.message}\n${USAGE}`)
    process.exit(2)
  }
}

/** The two servers: from the env, or started here (and stopped at the end). */
async function servers(log) {
  const { MONGODB_URI, MONGODB_ATLAS_URI } = process.env
  if (MONGODB_URI && MONGODB_ATLAS_URI) return { localUri: MONGODB_URI, atlasUri: MONGODB_ATLAS_URI, started: [] }
  if (MONGODB_URI || MONGODB_ATLAS_URI) throw new Error('set both MONGODB_URI and MONGODB_ATLAS_URI, or neither (the demo then starts two test servers)')
  log('starting two test servers ("local" and "atlas")...')
  ensureServerBinary({ log })
  const started = await Promise.all([startServer({ name: 'local' }), startServer({ name: 'atlas' })])
  return { localUri: started[0].uri, atlasUri: started[1].uri, started }
}

/** Writes and whether each has reached Atlas (Atlas holds the same state as local). */
class Tracker {
  constructor(local, atlas, db) {
    this.local = local.db(db)
    this.atlas = atlas.db(db)
    this.events = []
  }

  add(event) {
    this.events.push({ ...event, at: Date.now(), arrivedMs: null })
  }

  pending() {
    return this.events.filter((e) => e.arrivedMs === null)
  }

  /** Marks the writes whose document is now the same on both servers; returns them. */
  async check() {
    const arrived = []
    for (const coll of COLLS) {
      const waiting = this.pending().filter((e) => e.coll === coll)
      if (waiting.length === 0) continue
      const ids = [...new Set(waiting.map((e) => e.id.toHexString()))]
      const query = { _id: { $in: waiting.map((e) => e.id) } }
      const [l, a] = await Promise.all([this.local, this.atlas].map((d) => d.collection(coll).find(query).toArray()))
      const state = (docs, id) => {
        const d = docs.find((x) => x._id.toHexString() === id)
        return d ? EJSON.stringify(d, { relaxed: false }) : null
      }
      const same = new Set(ids.filter((id) => state(l, id) === state(a, id)))
      for (const e of waiting) {
        if (!same.has(e.id.toHexString())) continue
        e.arrivedMs = Date.now() - e.at
        arrived.push(e)
      }
    }
    return arrived
  }

  async counts() {
    const out = {}
    for (const coll of COLLS) {
      const [l, a] = await Promise.all([this.local, this.atlas].map((d) => d.collection(coll).countDocuments()))
      out[coll] = { local: l, atlas: a }
    }
    return out
  }
}

/** Calls the example app; rejects on an unexpected status. */
function client(baseUrl, token) {
  return async (method, p, body, expected) => {
    const headers = { 'content-type': 'application/json' }
    if (p.startsWith('/api/sync/') && method !== 'GET') headers.authorization = `Bearer ${token}`
    const res = await fetch(baseUrl + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
    const text = await res.text()
    const json = text ? JSON.parse(text) : null
    if (expected && res.status !== expected) throw new Error(`${method} ${p}: HTTP ${res.status} ${text}`)
    return { status: res.status, json }
  }
}

/** The demo's writes: each goes through the app (and so the addon), then is tracked. */
function writer(api, tracker, say, ObjectId) {
  const orders = []
  const write = async (method, p, body, expected, what) => {
    const started = Date.now()
    const { json } = await api(method, p, body, expected)
    const id = new ObjectId(what.id || json._id)
    tracker.add({ coll: what.coll, id, label: `${what.label} ${id.toHexString().slice(-6)}` })
    say(`${method.padEnd(6)} ${p.padEnd(40)} -> ${expected}  ${what.label} (local write, ${Date.now() - started} ms)`)
    return json
  }
  const sku = () => ['tea', 'coffee', 'cup', 'kettle', 'sugar'][crypto.randomInt(5)]
  const items = () => [{ sku: sku(), qty: 1 + crypto.randomInt(4), price: (1 + crypto.randomInt(2000) / 100).toFixed(2) }]
  return {
    orders,
    customer: (name) => write('POST', '/api/customers', { name, email: `${name.toLowerCase()}@example.com` }, 201, { coll: 'customers', label: `customer ${name}` }),
    order: async (customer) => {
      const o = await write('POST', '/api/orders', { customerId: customer._id, items: items() }, 201, { coll: 'orders', label: 'order created' })
      orders.push(o._id)
      return o
    },
    status: (id, status) => write('PATCH', `/api/orders/${id}`, { status }, 200, { coll: 'orders', id, label: `order ${status}` }),
    items: (id) => write('PATCH', `/api/orders/${id}`, { items: items() }, 200, { coll: 'orders', id, label: 'order items changed' }),
    remove: async (id) => {
      await write('DELETE', `/api/orders/${id}`, undefined, 204, { coll: 'orders', id, label: 'order deleted' })
      orders.splice(orders.indexOf(id), 1)
    },
  }
}

function healthLine(h) {
  const c = h.checks
  const pct = (x) => `${(x * 100).toFixed(1)}%`
  return `health ${h.status}: local ${c.localConnection.value}, atlas ${c.atlasConnection.value}, queue ${c.queueSize.value} (< ${c.queueSize.threshold}), success ${pct(c.successRate.value)} (> ${pct(c.successRate.threshold)})`
}

function metricsLine(m) {
  const ms = (x) => (x === null ? '-' : `${x} ms`)
  return `metrics: captured ${m.captured}, synced ${m.synced}, failed ${m.failed}, retried ${m.retried}, dead-lettered ${m.deadLettered}, lag p50 ${ms(m.lagMs.p50)} p99 ${ms(m.lagMs.p99)}, ${m.throughputPerSec.toFixed(1)} docs/s${m.paused ? ', PAUSED' : ''}`
}

function countsLine(counts) {
  return Object.entries(counts).map(([c, n]) => `${c} local ${n.local} / atlas ${n.atlas}`).join(', ')
}

/** One snapshot: health and metrics over HTTP, counts on both servers. */
async function snapshot(api, tracker) {
  const [health, metrics, counts] = await Promise.all([api('GET', '/api/sync/health'), api('GET', '/api/sync/metrics', undefined, 200), tracker.counts()])
  return { health: health.json, metrics: metrics.json, counts }
}

function liveView(info, snap, tracker) {
  const rows = tracker.events.slice(-10).map((e) => {
    const when = new Date(e.at).toTimeString().slice(0, 8)
    const where = e.arrivedMs === null ? 'waiting for Atlas...' : `seen on Atlas after ${e.arrivedMs} ms`
    return `  ${when}  ${e.label.padEnd(34)} ${where}`
  })
  return [
    '\x1b[2J\x1b[Hdual-mongo-sync demo (Ctrl-C to stop)',
    `app ${info.url}   local ${redact(info.localUri)}   atlas ${redact(info.atlasUri)}   database ${info.db}`,
    '',
    healthLine(snap.health),
    metricsLine(snap.metrics),
    countsLine(snap.counts),
    '',
    'recent writes (through the app) and their arrival on Atlas:',
    ...rows,
    '',
  ].join('\n')
}

/** Waits until every tracked write is on Atlas; false on timeout. */
async function allArrived(tracker, say) {
  const deadline = Date.now() + ARRIVAL_TIMEOUT_MS
  while (Date.now() < deadline) {
    for (const e of await tracker.check()) say(`  seen on Atlas: ${e.label}, ${e.arrivedMs} ms after the write`)
    if (tracker.pending().length === 0) return true
    await sleep(100)
  }
  return false
}

async function main() {
  const opts = cli()
  const live = process.stdout.isTTY && !opts.once
  const log = (line) => console.log(`[${since()}] ${line}`)
  const cleanup = []
  let stopping = null
  const stop = async (code) => {
    stopping ??= (async () => {
      if (cleanup.length === 0) process.exit(code)
      log('stopping: HTTP server, then sync.close(), then the servers')
      for (const fn of cleanup.reverse()) {
        try {
          await fn()
        } catch (e) {
          console.error(`cleanup: ${e.message}`)
        }
      }
      log('stopped cleanly')
      process.exit(code)
    })()
    return stopping
  }
  process.once('SIGINT', () => {
    process.once('SIGINT', () => process.exit(130))
    stop(0)
  })
  process.once('SIGTERM', () => stop(0))
  try {
    const { localUri, atlasUri, started } = await servers(log)
    for (const s of started) cleanup.push(() => s.remove())
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dual-mongo-sync-demo-'))
    cleanup.push(() => fs.rmSync(dataDir, { recursive: true, force: true }))
    const token = process.env.SYNC_ADMIN_TOKEN || crypto.randomBytes(24).toString('hex')
    const syncOptions = { localUri, atlasUri, dataDir, enabled: true, excludedCollections: [], logLevel: process.env.SYNC_LOG_LEVEL || 'warn' }
    const app = await start({ port: 0, host: '127.0.0.1', adminToken: token, dbName: opts.db, syncOptions })
    cleanup.push(() => app.stop())
    const [local, atlas] = await Promise.all([localUri, atlasUri].map((u) => new MongoClient(u, { serverSelectionTimeoutMS: 20000 }).connect()))
    cleanup.push(() => Promise.all([local.close(), atlas.close()]))
    log(`example server on ${app.url}; local ${redact(localUri)}, atlas ${redact(atlasUri)}, database ${opts.db}`)
    const tracker = new Tracker(local, atlas, opts.db)
    const api = client(app.url, token)
    const say = live ? () => {} : log
    const w = writer(api, tracker, say, ObjectId)

    const ada = await w.customer('Ada')
    const grace = await w.customer('Grace')
    const o1 = await w.order(ada)
    const o2 = await w.order(grace)
    const o3 = await w.order(ada)
    await w.status(o1._id, 'paid')
    await w.items(o2._id)
    await w.remove(o3._id)

    if (opts.once) {
      await api('POST', '/api/sync/flush', { timeoutMs: 30000 }, 200)
      log('POST /api/sync/flush -> 200: everything written so far is on Atlas')
      const ok = await allArrived(tracker, log)
      const snap = await snapshot(api, tracker)
      for (const line of [healthLine(snap.health), metricsLine(snap.metrics), countsLine(snap.counts)]) log(line)
      const consistent = ok && Object.values(snap.counts).every((n) => n.local === n.atlas)
      log(consistent ? `all ${tracker.events.length} writes are on Atlas; local and Atlas agree` : 'FAILED: Atlas does not hold what local holds')
      return stop(consistent ? 0 : 1)
    }

    const customers = [ada, grace]
    let step = 0
    const activity = async () => {
      step += 1
      if (w.orders.length > 6) await w.remove(w.orders[0])
      else if (step % 3 === 0 && w.orders.length > 0) await w.status(w.orders[w.orders.length - 1], 'shipped')
      else await w.order(customers[step % customers.length])
    }
    const arrivals = setInterval(() => {
      if (stopping) return
      tracker.check().then((es) => es.forEach((e) => say(`  seen on Atlas: ${e.label}, ${e.arrivedMs} ms after the write`)), () => {})
    }, 100)
    const display = setInterval(() => {
      if (stopping) return
      snapshot(api, tracker).then(
        (snap) => {
          if (live) process.stdout.write(liveView({ ...app, localUri, atlasUri, db: opts.db }, snap, tracker))
          else log(`${healthLine(snap.health)} | ${metricsLine(snap.metrics)} | ${countsLine(snap.counts)}`)
        },
        (e) => log(`snapshot failed: ${e.message}`),
      )
    }, 1000)
    const writes = setInterval(() => !stopping && activity().catch((e) => log(`write failed: ${e.message}`)), 3000)
    cleanup.push(() => [arrivals, display, writes].forEach(clearInterval))
    log('writing a little every 3 s; Ctrl-C to stop')
  } catch (e) {
    console.error(`demo failed: ${e.message}`)
    await stop(1)
  }
}

main()
