'use strict'
// Cursors with the driver's chainable API. Results are read from the local
// MongoDB when first needed (toArray, iteration, next), a batch at a time:
// the engine keeps the server's cursor open between batches.
const { Readable } = require('node:stream')
const { invalidArgument, MongoAPIError, MongoCursorExhaustedError, MongoCursorInUseError, MongoInvalidArgumentError } = require('./errors')
const { formatSort } = require('./options')
const { readOptions, serverOptions } = require('./bson')

let countWarned = false

/**
 * The options of the driver's deprecated `count` as `countDocuments`
 * options: a limit of 0 is no limit and a negative one (a find's single
 * batch of at most n) counts at most n, as the count command reads them.
 * `cursor` takes only the options a count reads from a find cursor's;
 * otherwise every option goes on, to be refused by name if unknown, as are
 * values of the wrong type.
 */
function countOptions(o, cursor = false) {
  o = o ?? {}
  const opts = {}
  const keys = cursor ? ['skip', 'hint', 'collation', 'maxTimeMS', 'comment'] : Object.keys(o).filter((k) => k !== 'limit')
  for (const k of keys) if (o[k] !== undefined) opts[k] = o[k]
  if (typeof o.limit === 'number') {
    if (o.limit !== 0) opts.limit = Math.abs(o.limit)
  } else if (o.limit !== undefined) opts.limit = o.limit
  return opts
}

/**
 * The driver's deprecated `count`: the `count` command, which answers an
 * empty query from the collection's metadata (as `estimatedDocumentCount`
 * does, in constant time on a large collection) and any other like
 * `countDocuments`.
 */
function legacyCount(coll, filter, options, cursor = false) {
  const opts = countOptions(options, cursor)
  const whole = filter !== null && typeof filter === 'object' && !Array.isArray(filter) && Object.keys(filter).length === 0
  const { maxTimeMS, comment, ...rest } = opts
  if (whole && Object.keys(rest).length === 0) return coll.estimatedDocumentCount({ maxTimeMS, comment })
  return coll.countDocuments(filter, opts)
}

/**
 * Cursors still open in the engine when their JS object is collected
 * unread: the engine is told to drop them (it also drops any left unread
 * for 10 minutes, as the server does).
 */
const abandoned = new FinalizationRegistry((state) => kill(state.coll, state.id))

/** Tells the engine to drop cursor `id` (none if 0); a failure (the instance closed) changes nothing. */
function kill(coll, id) {
  return id ? coll._killCursor(id).catch(() => {}) : Promise.resolve()
}

class BaseCursor {
  /** `open()` runs the query and resolves to its first batch: `{ id, docs }`. */
  constructor(collection, open) {
    this._open = open
    this._buffer = null // null until the query ran
    this._state = { coll: collection, id: 0 } // id: the engine's cursor, 0 once read to the end
    this._filling = null
    this._era = 0 // counts close() and rewind(): batches of an earlier era are dropped
    this._maps = []
  }

  map(fn) {
    // As the driver's: a map applies to a cursor not read yet.
    if (this._buffer !== null) throw new MongoCursorInUseError()
    this._maps.push(fn)
    return this
  }

  /** The batch size the call asked for (undefined: the engine's default; a negative one is a find's limit). */
  _batchSize() {
    const n = this._options && this._options.batchSize
    return typeof n === 'number' && n < 0 ? undefined : n
  }

  /** How this cursor's documents are decoded (its BSON options). */
  _read() {
    return readOptions('find', this._options)
  }

  /** Sets option `k` of a find or aggregate cursor not read yet, as the driver's builders. */
  _set(k, v) {
    if (this._buffer !== null) throw new MongoCursorInUseError()
    this._options[k] = v
    return this
  }

  /** Reads batches until one document is buffered or the cursor is exhausted; one read at a time. */
  _fill() {
    this._filling ??= this._fillNow().finally(() => {
      this._filling = null
    })
    return this._filling
  }

  async _fillNow() {
    const state = this._state
    const era = this._era
    // A batch that arrives after close() or rewind() is not this cursor's any more.
    const stale = ({ id }) => {
      if (era === this._era) return false
      kill(state.coll, id)
      return true
    }
    if (this._buffer === null) {
      const batch = await this._open()
      if (stale(batch)) return
      this._buffer = batch.docs
      this._setId(batch.id)
    }
    while (this._buffer.length === 0 && state.id) {
      let batch
      try {
        batch = await state.coll._getMore(state.id, this._batchSize(), this._read())
      } catch (e) {
        if (era === this._era) {
          // The engine drops a cursor whose read failed, but not one whose
          // call was cut short (socketTimeoutMS): told to, in either case.
          kill(state.coll, state.id)
          this._setId(0)
        }
        throw e
      }
      if (stale(batch)) return
      this._buffer = batch.docs
      this._setId(batch.id)
    }
  }

  _setId(id) {
    const state = this._state
    if (id && !state.id) abandoned.register(this, state, state)
    if (!id && state.id) abandoned.unregister(state)
    state.id = id
  }

  /**
   * The mapped document. A map that throws or returns null fails the read
   * and drops the engine's cursor, as the driver's does (documents already
   * buffered can still be read, as there).
   */
  _apply(d) {
    if (this._maps.length === 0) return d
    try {
      const out = this._maps.reduce((x, f) => f(x), d)
      if (out === null) {
        throw new MongoAPIError(
          'Cursor returned a `null` document, but the cursor is not exhausted.  Mapping documents to `null` is not supported in the cursor transform.',
        )
      }
      return out
    } catch (e) {
      this._drop()
      throw e
    }
  }

  async toArray() {
    const out = []
    for (;;) {
      await this._fill()
      // null or empty: the end, or close() or rewind() meanwhile (the documents read so far)
      if (this._buffer === null || this._buffer.length === 0) break
      for (const d of this._buffer) out.push(d)
      this._buffer = []
    }
    return this._maps.length ? out.map((d) => this._apply(d)) : out
  }

  /**
   * The next document, unmapped (undefined once the cursor is read to the
   * end). Takes it in the same turn as it checks the buffer: reads racing
   * on one cursor share a batch, and the ones it did not cover wait for
   * the next.
   */
  async _take() {
    for (;;) {
      if (this._buffer !== null && this._buffer.length > 0) return this._buffer.shift()
      if (this._buffer !== null && !this._state.id) return undefined
      await this._fill()
    }
  }

  async hasNext() {
    for (;;) {
      if (this._buffer !== null && this._buffer.length > 0) return true
      if (this._buffer !== null && !this._state.id) return false
      await this._fill()
    }
  }

  async next() {
    if (this._killed) throw new MongoCursorExhaustedError()
    const d = await this._take()
    return d === undefined ? null : this._apply(d)
  }

  async tryNext() {
    return this.next()
  }

  async forEach(fn) {
    for await (const d of this) {
      if ((await fn(d)) === false) break
    }
  }

  /** Back to before the first read: the query runs again when next read. */
  rewind() {
    this._drop()
    this._buffer = null
    this._killed = false
  }

  /**
   * Drops the engine's cursor if it is still open; later reads return
   * nothing, and `next()`/`tryNext()` fail with MongoCursorExhaustedError if
   * it was open (the driver's cursor, killed on the server, does the same).
   */
  async close() {
    if (this._state.id) this._killed = true
    this._buffer = []
    await this._drop()
  }

  /** Forgets the engine's cursor and tells the engine to drop it; resolves once it did. */
  _drop() {
    const { coll, id } = this._state
    this._era += 1
    this._setId(0)
    return kill(coll, id)
  }

  /** True once the cursor was closed or read to the end, and nothing is left buffered, as the driver's. */
  get closed() {
    return this._buffer !== null && this._buffer.length === 0 && !this._state.id
  }

  /** How many documents are read from the server and not yet returned. */
  bufferedCount() {
    return this._buffer ? this._buffer.length : 0
  }

  /** Takes up to `n` (default all) of the buffered documents, without the cursor's map, as the driver's. */
  readBufferedDocuments(n) {
    if (!this._buffer) return []
    return this._buffer.splice(0, Math.min(n ?? this._buffer.length, this._buffer.length))
  }

  /**
   * The cursor as a Node `Readable` in object mode (with its map), as the
   * driver's `stream()`: `cursor.stream().pipe(transform).pipe(res)`. It ends
   * with the cursor; destroying it (a client that went away) closes the
   * cursor.
   */
  stream() {
    const cursor = this
    return new Readable({
      objectMode: true,
      highWaterMark: 1,
      read() {
        cursor.next().then(
          (d) => this.push(d),
          (e) => this.destroy(e),
        )
      },
      destroy(err, done) {
        cursor.close().then(() => done(err), () => done(err))
      },
    })
  }

  /**
   * The server's explain of the cursor's query (`verbosity`: 'queryPlanner',
   * 'executionStats', 'allPlansExecution', or true / false for the most and
   * the least; default 'allPlansExecution'), as the driver's; the cursor is
   * not read.
   */
  async explain(verbosity, options) {
    let maxTimeMS
    if (verbosity !== null && typeof verbosity === 'object') ({ verbosity, maxTimeMS } = verbosity)
    if (options && options.timeoutMS !== undefined) throw invalidArgument('explain: unknown option \'timeoutMS\' (use maxTimeMS)')
    if (verbosity === undefined || verbosity === true) verbosity = 'allPlansExecution'
    else if (verbosity === false) verbosity = 'queryPlanner'
    // Another string goes to the server, which names what it takes (as with the driver).
    if (typeof verbosity !== 'string') {
      throw new MongoInvalidArgumentError(`explain: verbosity must be 'queryPlanner', 'executionStats', 'allPlansExecution' or a boolean, got ${typeof verbosity}`)
    }
    if (!this._command) throw new MongoAPIError('explain: only find and aggregate cursors can be explained')
    const coll = this._state.coll
    const command = { explain: this._command(coll.collectionName), verbosity }
    if (maxTimeMS !== undefined) command.maxTimeMS = maxTimeMS
    return coll._sync.db(coll.dbName).command(command)
  }

  async *[Symbol.asyncIterator]() {
    try {
      for (let d = await this._take(); d !== undefined; d = await this._take()) yield this._apply(d)
    } finally {
      // Leaving a for await loop early closes the cursor, as the driver's does.
      if (this._state.id) await this.close()
    }
  }
}

/** `collection.find(filter, options)`. */
class FindCursor extends BaseCursor {
  constructor(collection, filter, options) {
    super(collection, () => collection._find(this._filter, this._options))
    this._filter = filter
    this._options = { ...options }
  }


  sort(s, dir) {
    return this._set('sort', formatSort(s, dir))
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
  min(d) {
    return this._set('min', d)
  }
  max(d) {
    return this._set('max', d)
  }
  returnKey(b) {
    return this._set('returnKey', b)
  }
  showRecordId(b) {
    return this._set('showRecordId', b)
  }
  allowDiskUse(b = true) {
    if (!this._options.sort) throw new MongoInvalidArgumentError('Option "allowDiskUse" requires a sort specification')
    return this._set('allowDiskUse', b)
  }

  /** The driver's cursor flags: `noCursorTimeout` is taken; the others are for tailable, exhaust or sharded reads, which are not offered. */
  addCursorFlag(flag, value) {
    if (typeof value !== 'boolean') throw new MongoInvalidArgumentError(`Flag ${flag} must be a boolean value`)
    if (flag === 'noCursorTimeout') return this._set('noCursorTimeout', value)
    if (['tailable', 'oplogReplay', 'awaitData', 'exhaust', 'partial'].includes(flag)) {
      throw invalidArgument(`addCursorFlag: '${flag}' is not offered: cursors read a finite result of the local server (use watch() to follow changes)`)
    }
    throw new MongoInvalidArgumentError(`Flag ${flag} is not one of tailable,oplogReplay,noCursorTimeout,awaitData,exhaust,partial`)
  }

  /** The `find` command this cursor runs, for explain. */
  _command(coll) {
    const { batchSize, ...rest } = serverOptions(this._options, true)
    // A negative limit is one batch of at most that many, as the driver sends it.
    if (typeof rest.limit === 'number' && rest.limit < 0) Object.assign(rest, { limit: -rest.limit, singleBatch: true })
    if (typeof batchSize === 'number' && batchSize < 0) rest.limit = -batchSize
    return { find: coll, filter: this._filter ?? {}, ...rest }
  }

  /**
   * How many documents the query matches, within the cursor's skip and
   * limit: the driver's deprecated `cursor.count()`, kept for code written
   * against it (driver 7 still has it and warns once, as this does); see
   * `legacyCount`. The cursor itself is not read.
   */
  async count(options) {
    if (typeof options === 'boolean') throw new MongoInvalidArgumentError('Invalid first parameter to count')
    if (!countWarned) {
      countWarned = true
      process.emitWarning(
        'cursor.count is deprecated and will be removed in the next major version, please use `collection.estimatedDocumentCount` or `collection.countDocuments` instead',
        'DeprecationWarning',
      )
    }
    return legacyCount(this._state.coll, this._filter ?? {}, { ...this._options, ...options }, true)
  }

  /** A new, unread cursor of the same query and options (not its map), as the driver's. */
  clone() {
    return new FindCursor(this._state.coll, this._filter, { ...this._options })
  }
}

/** `collection.aggregate(pipeline, options)`. */
class AggregationCursor extends BaseCursor {
  constructor(collection, pipeline, options) {
    super(collection, () => collection._aggregate(this._pipeline, this._options))
    this._pipeline = [...pipeline]
    this._options = { ...options }
  }


  /** Adds a stage to the pipeline (before the cursor is read), as the driver's. */
  addStage(stage) {
    if (this._buffer !== null) throw new MongoCursorInUseError()
    if (stage === null || typeof stage !== 'object' || Array.isArray(stage)) {
      throw invalidArgument(`addStage: a stage must be an object such as { $match: {} }, got ${stage === null ? 'null' : Array.isArray(stage) ? 'an array' : typeof stage}`)
    }
    this._pipeline.push(stage)
    return this
  }
  group($group) {
    return this.addStage({ $group })
  }
  limit($limit) {
    return this.addStage({ $limit })
  }
  match($match) {
    return this.addStage({ $match })
  }
  out($out) {
    return this.addStage({ $out })
  }
  project($project) {
    return this.addStage({ $project })
  }
  lookup($lookup) {
    return this.addStage({ $lookup })
  }
  redact($redact) {
    return this.addStage({ $redact })
  }
  skip($skip) {
    return this.addStage({ $skip })
  }
  sort($sort) {
    return this.addStage({ $sort })
  }
  unwind($unwind) {
    return this.addStage({ $unwind })
  }
  geoNear($geoNear) {
    return this.addStage({ $geoNear })
  }
  maxTimeMS(ms) {
    return this._set('maxTimeMS', ms)
  }
  batchSize(n) {
    return this._set('batchSize', n)
  }

  /** The `aggregate` command this cursor runs, for explain. */
  _command(coll) {
    const { batchSize, ...rest } = serverOptions(this._options, true)
    return { aggregate: coll === '' ? 1 : coll, pipeline: this._pipeline, cursor: {}, ...rest }
  }

  /** A new, unread cursor of the same pipeline and options (not its map), as the driver's. */
  clone() {
    return new AggregationCursor(this._state.coll, this._pipeline, this._options)
  }
}

/** `collection.listIndexes()`: the index list, read in one batch (a collection has at most 64). */
class ListIndexesCursor extends BaseCursor {}

module.exports = { ListIndexesCursor, FindCursor, AggregationCursor, legacyCount }
