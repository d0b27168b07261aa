'use strict'
// Cursors with the driver's chainable API. Results are read from the local
// MongoDB when first needed (toArray, iteration, next).
const { invalidArgument } = require('./errors')

function normalizeSort(sort) {
  if (sort === undefined || sort === null) return undefined
  const dir = (v) => {
    if (v === 1 || v === -1) return v
    if (typeof v === 'object' && v !== null && '$meta' in v) return v
    const s = String(v).toLowerCase()
    if (s === 'asc' || s === 'ascending') return 1
    if (s === 'desc' || s === 'descending') return -1
    throw invalidArgument(`sort direction must be 1, -1, 'asc' or 'desc', got ${JSON.stringify(v)}`)
  }
  if (typeof sort === 'string') return { [sort]: 1 }
  if (sort instanceof Map) return Object.fromEntries([...sort].map(([k, v]) => [k, dir(v)]))
  if (Array.isArray(sort)) {
    if (sort.length === 2 && typeof sort[0] === 'string' && !Array.isArray(sort[1]) && typeof sort[1] !== 'string') {
      return { [sort[0]]: dir(sort[1]) }
    }
    return Object.fromEntries(sort.map((s) => (Array.isArray(s) ? [s[0], dir(s[1])] : [s, 1])))
  }
  if (typeof sort === 'object') return Object.fromEntries(Object.entries(sort).map(([k, v]) => [k, dir(v)]))
  throw invalidArgument(`sort must be an object, an array or a field name, got ${typeof sort}`)
}

class BaseCursor {
  constructor(load) {
    this._load = load
    this._buffer = null
    this._maps = []
  }

  map(fn) {
    this._maps.push(fn)
    return this
  }

  async toArray() {
    const docs = this._buffer ?? (await this._load())
    this._buffer = []
    return this._maps.length ? docs.map((d) => this._maps.reduce((x, f) => f(x), d)) : docs
  }

  async _fill() {
    if (this._buffer === null) this._buffer = await this._load()
  }

  async hasNext() {
    await this._fill()
    return this._buffer.length > 0
  }

  async next() {
    await this._fill()
    const d = this._buffer.shift()
    return d === undefined ? null : this._maps.reduce((x, f) => f(x), d)
  }

  async tryNext() {
    return this.next()
  }

  async forEach(fn) {
    for await (const d of this) {
      if ((await fn(d)) === false) break
    }
  }

  rewind() {
    this._buffer = null
  }

  async close() {
    this._buffer = []
  }

  async *[Symbol.asyncIterator]() {
    await this._fill()
    while (this._buffer.length) yield this._maps.reduce((x, f) => f(x), this._buffer.shift())
  }
}

/** `collection.find(filter, options)`. */
class FindCursor extends BaseCursor {
  constructor(collection, filter, options) {
    super(() => collection._find(this._filter, this._options))
    this._filter = filter
    this._options = { ...options }
    if (this._options.sort !== undefined) this._options.sort = normalizeSort(this._options.sort)
  }

  _set(k, v) {
    if (this._buffer !== null) throw invalidArgument(`cannot change '${k}' of a cursor that was already read`)
    this._options[k] = v
    return this
  }

  sort(s, dir) {
    return this._set('sort', normalizeSort(dir === undefined ? s : { [s]: dir }))
  }
  limit(n) {
    return this._set('limit', n)
  }
  skip(n) {
    return this._set('skip', n)
  }
  project(p) {
    return this._set('projection', p)
  }
  batchSize(n) {
    return this._set('batchSize', n)
  }
  hint(h) {
    return this._set('hint', h)
  }
  collation(c) {
    return this._set('collation', c)
  }
  comment(c) {
    return this._set('comment', c)
  }
  maxTimeMS(ms) {
    return this._set('maxTimeMS', ms)
  }
  filter(f) {
    this._filter = f
    return this
  }
}

/** `collection.aggregate(pipeline, options)`. */
class AggregationCursor extends BaseCursor {
  constructor(collection, pipeline, options) {
    super(() => collection._aggregate(this._pipeline, options))
    this._pipeline = pipeline
  }
}

module.exports = { FindCursor, AggregationCursor, normalizeSort }
