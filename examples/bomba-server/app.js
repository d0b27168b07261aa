'use strict'
// The example "bomba" Express app: customers and orders, stored through
// dual-mongo-sync. Every write and read goes through the addon's Collection
// (a drop-in for the official driver's), so writes land on the local MongoDB
// and are replicated to Atlas in the background. The sync operations are
// mounted at /api/sync.
const express = require('express')
const { syncRouter, ObjectId, Decimal128, MongoServerError, SyncError } = require('../..')

const ORDER_STATUSES = ['new', 'paid', 'shipped', 'cancelled']
const MAX_LIST = 100

/** An error answered with its HTTP status and `{ error: { code, message } }`. */
class HttpError extends Error {
  constructor(status, code, message) {
    super(message)
    this.status = status
    this.code = code
  }
}

const badRequest = (message) => new HttpError(400, 'BAD_REQUEST', message)
const notFound = (what) => new HttpError(404, 'NOT_FOUND', `${what} not found`)

function objectId(value, name) {
  if (typeof value !== 'string' || !ObjectId.isValid(value) || value.length !== 24) {
    throw badRequest(`${name} must be a 24-character hex ObjectId, got ${JSON.stringify(value)}`)
  }
  return new ObjectId(value)
}

function text(value, name, { max = 200 } = {}) {
  if (typeof value !== 'string' || value.trim() === '' || value.length > max) {
    throw badRequest(`${name} must be a non-empty string of at most ${max} characters`)
  }
  return value.trim()
}

function limitOf(query) {
  if (query.limit === undefined) return 20
  const n = Number(query.limit)
  if (!Number.isInteger(n) || n < 1 || n > MAX_LIST) throw badRequest(`limit must be a whole number from 1 to ${MAX_LIST}`)
  return n
}

/** `[{ sku, qty, price }]` -> items with Decimal128 prices, and their total. */
function itemsOf(value) {
  if (!Array.isArray(value) || value.length === 0 || value.length > 100) {
    throw badRequest('items must be a list of 1 to 100 { sku, qty, price } objects')
  }
  let totalCents = 0
  const items = value.map((it, i) => {
    if (typeof it !== 'object' || it === null) throw badRequest(`items[${i}] must be an object`)
    const qty = Number(it.qty)
    const cents = Math.round(Number(it.price) * 100)
    if (!Number.isInteger(qty) || qty < 1) throw badRequest(`items[${i}].qty must be a whole number >= 1`)
    if (!Number.isSafeInteger(cents) || cents < 0) throw badRequest(`items[${i}].price must be a number >= 0`)
    totalCents += qty * cents
    return { sku: text(it.sku, `items[${i}].sku`, { max: 64 }), qty, price: Decimal128.fromString((cents / 100).toFixed(2)) }
  })
  return { items, total: Decimal128.fromString((totalCents / 100).toFixed(2)) }
}

function statusOf(value) {
  if (!ORDER_STATUSES.includes(value)) throw badRequest(`status must be one of: ${ORDER_STATUSES.join(', ')}`)
  return value
}

/** Wraps an async route so its rejection reaches the error handler. */
const route = (fn) => (req, res, next) => fn(req, res).catch(next)

/** JSON answers: ObjectId as its hex string (BSON's own toJSON), Decimal128 as a decimal string. */
function jsonReplacer(key, value) {
  const original = this[key]
  if (original && original._bsontype === 'Decimal128') return original.toString()
  return value
}

function customerRoutes(customers) {
  const r = express.Router()
  r.post('/', route(async (req, res) => {
    const body = req.body || {}
    const doc = { name: text(body.name, 'name'), email: text(body.email, 'email'), createdAt: new Date() }
    await customers.insertOne(doc)
    res.status(201).json(doc)
  }))
  r.get('/', route(async (req, res) => {
    res.json(await customers.find({}).sort({ createdAt: -1 }).limit(limitOf(req.query)).toArray())
  }))
  return r
}

function orderRoutes(orders, customers) {
  const r = express.Router()
  r.post('/', route(async (req, res) => {
    const body = req.body || {}
    const customerId = objectId(body.customerId, 'customerId')
    if (!(await customers.findOne({ _id: customerId }, { projection: { _id: 1 } }))) throw badRequest(`customer ${customerId} does not exist`)
    const now = new Date()
    const doc = { customerId, ...itemsOf(body.items), status: 'new', version: 1, createdAt: now, updatedAt: now }
    await orders.insertOne(doc)
    res.status(201).json(doc)
  }))
  r.get('/', route(async (req, res) => {
    const filter = {}
    if (req.query.status !== undefined) filter.status = statusOf(req.query.status)
    if (req.query.customerId !== undefined) filter.customerId = objectId(req.query.customerId, 'customerId')
    res.json(await orders.find(filter).sort({ createdAt: -1 }).limit(limitOf(req.query)).toArray())
  }))
  r.get('/:id', route(async (req, res) => {
    const order = await orders.findOne({ _id: objectId(req.params.id, 'id') })
    if (!order) throw notFound('order')
    res.json(order)
  }))
  // Changes status and/or items; `version` counts changes with $inc, which
  // the replication never applies twice (it copies the document's state).
  r.patch('/:id', route(async (req, res) => {
    const body = req.body || {}
    const set = { updatedAt: new Date() }
    if (body.status !== undefined) set.status = statusOf(body.status)
    if (body.items !== undefined) Object.assign(set, itemsOf(body.items))
    if (Object.keys(set).length === 1) throw badRequest('nothing to change: send status and/or items')
    const order = await orders.findOneAndUpdate(
      { _id: objectId(req.params.id, 'id') },
      { $set: set, $inc: { version: 1 } },
      { returnDocument: 'after' },
    )
    if (!order) throw notFound('order')
    res.json(order)
  }))
  r.delete('/:id', route(async (req, res) => {
    const { deletedCount } = await orders.deleteOne({ _id: objectId(req.params.id, 'id') })
    if (deletedCount === 0) throw notFound('order')
    res.status(204).end()
  }))
  return r
}

/** Maps errors to HTTP answers: ours, then MongoDB's and the engine's. */
function errorHandler(err, req, res, next) {
  if (res.headersSent) return next(err)
  let status = 500
  let code = 'INTERNAL'
  let message = 'internal error'
  if (err instanceof HttpError) {
    ;({ status, code, message } = err)
  } else if (err.type === 'entity.parse.failed' || err.type === 'entity.too.large') {
    status = err.status
    code = 'BAD_REQUEST'
    message = err.message
  } else if (err instanceof MongoServerError && err.code === 11000) {
    status = 409
    code = 'DUPLICATE_KEY'
    message = 'a document with this key already exists'
  } else if (err instanceof SyncError && err.code === 'ERR_SYNC_CLOSED') {
    status = 503
    code = err.code
    message = 'the server is shutting down'
  } else {
    console.error(`${req.method} ${req.originalUrl}:`, err)
  }
  res.status(status).json({ error: { code, message } })
}

/**
 * The Express app over an open Sync (see `createSync()`).
 * - `adminToken`: token of the mutating /api/sync routes; default env SYNC_ADMIN_TOKEN.
 * - `dbName`: the database of the collections; default that of MONGODB_URI.
 */
function createApp(sync, { adminToken, dbName } = {}) {
  const db = sync.db(dbName)
  const orders = db.collection('orders')
  const customers = db.collection('customers')
  const app = express()
  app.disable('x-powered-by')
  app.set('json replacer', jsonReplacer)
  // The sync router reads its own (small) JSON bodies; mount it before the parser.
  app.use('/api/sync', syncRouter(sync, adminToken === undefined ? {} : { adminToken }))
  app.use(express.json({ limit: '100kb' }))
  app.use('/api/customers', customerRoutes(customers))
  app.use('/api/orders', orderRoutes(orders, customers))
  app.use((req, res) => res.status(404).json({ error: { code: 'NOT_FOUND', message: `no route ${req.method} ${req.path}` } }))
  app.use(errorHandler)
  return app
}

module.exports = { createApp, ORDER_STATUSES }
