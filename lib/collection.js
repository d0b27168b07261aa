'use strict'
// A drop-in for the official driver's Collection: same method names,
// arguments and result shapes. Writes resolve after the local write; the
// engine replicates them to Atlas in the background.
const { ObjectId, EJSON } = require('bson')
const { encode, decode, decodeAll, readOptions, serverOptions } = require('./bson')
const { checkOptions, describe, formatSort, INDEX_FIELDS } = require('./options')
const { fromNative, invalidArgument, writeErrorsOf, MongoAPIError, MongoBulkWriteError, MongoInvalidArgumentError, MongoServerError } = require('./errors')
const { FindCursor, AggregationCursor, ListIndexesCursor, legacyCount } = require('./cursor')
const { BulkOperation } = require('./bulk')
const { ChangeStream } = require('./change_stream')

function isDocument(v) {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v) && !(v instanceof Date)
}

function needDocument(method, what, v) {
  if (!isDocument(v)) throw invalidArgument(`${method}: ${what} must be an object, got ${describe(v)}`)
  return v
}

/**
 * The filter of a read or a delete: as the driver, none given means every
 * document (`find()`, `deleteMany()`).
 */
function needFilter(method, filter) {
  if (filter === undefined) return {}
  return needDocument(method, 'filter', filter)
}

/** An ObjectId given as a find's filter means that `_id`, as the driver reads it. */
function idFilter(filter) {
  return filter && filter._bsontype === 'ObjectId' ? { _id: filter } : filter
}

/**
 * The filter of an update, a replace or a findOneAnd*: as the driver, one
 * must be given (`updateMany(undefined, ...)` would otherwise change every
 * document, here and then on Atlas).
 */
function needWriteFilter(method, filter) {
  if (!isDocument(filter)) {
    throw new MongoInvalidArgumentError(`${method}: a filter is required (use {} for every document); got ${describe(filter)}`)
  }
  return filter
}

/** As the driver: give a document without `_id` a new ObjectId (mutating it). */
function withId(doc) {
  if (doc._id == null) doc._id = new ObjectId()
  return doc
}

function hasAtomicOperators(doc) {
  if (Array.isArray(doc)) return true
  const keys = Object.keys(doc)
  return keys.length > 0 && keys[0][0] === '$'
}

function needUpdate(method, update) {
  if (Array.isArray(update)) {
    if (update.length === 0) throw new MongoInvalidArgumentError(`${method}: an update pipeline must not be empty`)
    return update
  }
  needDocument(method, 'update', update)
  if (!hasAtomicOperators(update)) throw new MongoInvalidArgumentError('Update document requires atomic operators')
  return update
}

function needReplacement(method, replacement) {
  needDocument(method, 'replacement', replacement)
  if (hasAtomicOperators(replacement)) {
    throw new MongoInvalidArgumentError('Replacement document must not contain atomic operators')
  }
  return replacement
}

/**
 * The rest of the driver's `BulkWriteResult`, which code written for the
 * legacy bulk builder reads: the raw `result` (`nInserted`, `upserted`, ...)
 * and its accessors. Not enumerable, as the driver's `result` is not.
 */
function addLegacyResult(result, r) {
  const pairs = (ids) => Object.entries(ids).map(([index, _id]) => ({ index: Number(index), _id }))
  const raw = {
    ok: 1,
    writeErrors: r.writeErrors,
    writeConcernErrors: [],
    insertedIds: pairs(r.insertedIds),
    nInserted: r.insertedCount,
    nUpserted: r.upsertedCount,
    nMatched: r.matchedCount,
    nModified: r.modifiedCount,
    nRemoved: r.deletedCount,
    upserted: pairs(r.upsertedIds),
  }
  const hidden = (value) => ({ value, enumerable: false })
  Object.defineProperties(result, {
    result: hidden(raw),
    getRawResponse: hidden(() => raw),
    getUpsertedIdAt: hidden((i) => raw.upserted[i]),
    getWriteErrorCount: hidden(() => r.writeErrors.length),
    getWriteErrorAt: hidden((i) => (i < r.writeErrors.length ? r.writeErrors[i] : undefined)),
    getWriteConcernError: hidden(() => undefined),
    toString: hidden(() => `BulkWriteResult(${EJSON.stringify(raw)})`),
  })
}

/** The checks the legacy bulk builder makes as each operation is added, as the driver's. */
const BULK_CHECKS = { needDocument, withId, needUpdate, needReplacement }

function updateResult(r) {
  return {
    acknowledged: true,
    matchedCount: r.matchedCount,
    modifiedCount: r.modifiedCount,
    upsertedCount: r.upsertedCount,
    upsertedId: r.upsertedId ?? null,
  }
}

/** A ChangeStream of `db` (all its collections when `coll` is ''), its arguments checked as the driver's. */
function watchOf(sync, db, coll, pipeline, options) {
  if (pipeline === undefined) pipeline = []
  if (!Array.isArray(pipeline)) throw invalidArgument(`watch: pipeline must be an array, got ${describe(pipeline)}`)
  pipeline.forEach((s, i) => needDocument('watch', `pipeline stage ${i}`, s))
  return new ChangeStream(sync, db, coll, pipeline, checkOptions('watch', options))
}

class Collection {
  constructor(sync, dbName, name) {
    if (typeof name !== 'string' || name.length === 0) {
      throw invalidArgument(`collection name must be a non-empty string, got ${describe(name)}`)
    }
    this._sync = sync
    this.dbName = dbName
    this.collectionName = name
    this.namespace = `${dbName}.${name}`
  }

  /**
   * What `db.aggregate` runs on: the database itself (`{ aggregate: 1 }`),
   * as a collection without a name; only its aggregate and cursor calls
   * are used.
   */
  static _ofDatabase(sync, dbName) {
    const c = Object.create(Collection.prototype)
    Object.assign(c, { _sync: sync, dbName, collectionName: '', namespace: `${dbName}.$cmd.aggregate` })
    return c
  }

  async _call(kind, method, args) {
    const native = this._sync._native()
    const payload = encode(method, args)
    try {
      return await native[kind](this.dbName, this.collectionName, method, payload)
    } catch (e) {
      throw fromNative(e)
    }
  }

  async _write(method, args) {
    return decode(await this._call('write', method, args))
  }

  async insertOne(doc, options) {
    needDocument('insertOne', 'document', doc)
    const opts = checkOptions('insertOne', options)
    withId(doc)
    await this._write('insertOne', { doc, options: opts })
    // The driver reports the document's own `_id` (withId gave it one).
    return { acknowledged: true, insertedId: doc._id }
  }

  async insertMany(docs, options) {
    if (!Array.isArray(docs)) throw invalidArgument(`insertMany: documents must be an array, got ${describe(docs)}`)
    if (docs.length === 0) throw new MongoInvalidArgumentError('Invalid BulkOperation, Batch cannot be empty')
    docs.forEach((d, i) => needDocument('insertMany', `document ${i}`, d))
    const opts = checkOptions('insertMany', options)
    docs.forEach(withId)
    const ids = docs.map((d) => d._id)
    try {
      const r = await this._write('insertMany', { docs, options: opts })
      return { acknowledged: true, insertedCount: r.insertedCount, insertedIds: { ...ids } }
    } catch (e) {
      if (e instanceof MongoBulkWriteError) {
        e.writeErrors = writeErrorsOf(e.writeErrors, docs)
        attachInsertResult(e, ids, opts.ordered !== false)
      }
      throw e
    }
  }

  async updateOne(filter, update, options) {
    const args = { filter: needWriteFilter('updateOne', filter), update: needUpdate('updateOne', update) }
    args.options = checkOptions('updateOne', options)
    return updateResult(await this._write('updateOne', args))
  }

  async updateMany(filter, update, options) {
    const args = { filter: needWriteFilter('updateMany', filter), update: needUpdate('updateMany', update) }
    args.options = checkOptions('updateMany', options)
    return updateResult(await this._write('updateMany', args))
  }

  async replaceOne(filter, replacement, options) {
    const args = { filter: needWriteFilter('replaceOne', filter), replacement: needReplacement('replaceOne', replacement) }
    args.options = checkOptions('replaceOne', options)
    return updateResult(await this._write('replaceOne', args))
  }

  async deleteOne(filter, options) {
    const r = await this._write('deleteOne', { filter: needFilter('deleteOne', filter), options: checkOptions('deleteOne', options) })
    return { acknowledged: true, deletedCount: r.deletedCount }
  }

  async deleteMany(filter, options) {
    const r = await this._write('deleteMany', { filter: needFilter('deleteMany', filter), options: checkOptions('deleteMany', options) })
    return { acknowledged: true, deletedCount: r.deletedCount }
  }

  async _findOneAnd(method, args, options) {
    const opts = checkOptions(method, options)
    const r = await this._write(method, { ...args, options: opts })
    return opts.includeResultMetadata ? { value: r.value, ok: 1, lastErrorObject: r.lastErrorObject } : r.value
  }

  async findOneAndUpdate(filter, update, options) {
    const args = { filter: needWriteFilter('findOneAndUpdate', filter), update: needUpdate('findOneAndUpdate', update) }
    return this._findOneAnd('findOneAndUpdate', args, options)
  }

  async findOneAndReplace(filter, replacement, options) {
    const args = {
      filter: needWriteFilter('findOneAndReplace', filter),
      replacement: needReplacement('findOneAndReplace', replacement),
    }
    return this._findOneAnd('findOneAndReplace', args, options)
  }

  async findOneAndDelete(filter, options) {
    return this._findOneAnd('findOneAndDelete', { filter: needWriteFilter('findOneAndDelete', filter) }, options)
  }

  async bulkWrite(operations, options) {
    if (!Array.isArray(operations)) {
      throw invalidArgument(`bulkWrite: operations must be an array, got ${describe(operations)}`)
    }
    if (operations.length === 0) throw new MongoInvalidArgumentError('Invalid BulkOperation, Batch cannot be empty')
    const opts = checkOptions('bulkWrite', options)
    const ops = operations.map((op, i) => checkBulkOp(op, i))
    const r = await this._write('bulkWrite', { ops, options: opts })
    // As the driver's: WriteErrors whose getOperation() is the document of
    // an insertOne, or the operation.
    r.writeErrors = writeErrorsOf(r.writeErrors, ops.map((op, i) => (op.insertOne ? op.insertOne.document : operations[i])))
    const result = {
      insertedCount: r.insertedCount,
      matchedCount: r.matchedCount,
      modifiedCount: r.modifiedCount,
      deletedCount: r.deletedCount,
      upsertedCount: r.upsertedCount,
      insertedIds: numericKeys(r.insertedIds),
      upsertedIds: numericKeys(r.upsertedIds),
      // The command's ok, as the driver's: write errors do not change it.
      isOk: () => true,
      hasWriteErrors: () => r.writeErrors.length > 0,
      getWriteErrors: () => r.writeErrors,
    }
    // As the driver's, where `ok` is a getter: read, but not an own field.
    Object.defineProperty(result, 'ok', { value: 1, enumerable: false })
    addLegacyResult(result, r)
    if (r.writeErrors.length > 0) {
      const first = r.writeErrors[0]
      throw new MongoBulkWriteError(first.errmsg, { code: first.code, writeErrors: r.writeErrors }, result)
    }
    return result
  }

  /** The collection's options on the local server, as the driver's (`MongoAPIError` if it does not exist). */
  async options(options) {
    const opts = checkOptions('collections', options)
    const [spec] = await this._sync.db(this.dbName).listCollections({ name: this.collectionName }, opts).toArray()
    if (spec == null || spec.options == null) throw new MongoAPIError(`collection ${this.namespace} not found`)
    return spec.options
  }

  /** Whether the collection is capped on the local server, as the driver's. */
  async isCapped(options) {
    const { capped } = await this.options(options)
    return Boolean(capped)
  }

  /** The driver's legacy bulk builder, run in order, stopping at the first error (see lib/bulk.js). */
  initializeOrderedBulkOp(options) {
    return new BulkOperation(this, true, options, BULK_CHECKS)
  }

  /** The driver's legacy bulk builder, running every operation whatever fails (see lib/bulk.js). */
  initializeUnorderedBulkOp(options) {
    return new BulkOperation(this, false, options, BULK_CHECKS)
  }

  find(filter, options) {
    return new FindCursor(this, needFilter('find', idFilter(filter)), checkOptions('find', options))
  }

  /** The first batch of a find: `{ id, docs }` (id 0: nothing more). */
  async _find(filter, options) {
    const opts = checkOptions('find', options)
    const read = readOptions('find', opts)
    // A negative batch size is the limit of the results, as the driver sends it.
    if (typeof opts.batchSize === 'number' && opts.batchSize < 0) {
      opts.limit = -opts.batchSize
      delete opts.batchSize
    }
    return batchOf(await this._call('read', 'find', { filter, options: serverOptions(opts) }), read)
  }

  /** The next batch of an engine cursor. */
  async _getMore(id, batchSize, read) {
    return batchOf(await this._call('read', 'getMore', batchSize === undefined ? { cursor: id } : { cursor: id, batchSize }), read)
  }

  async _killCursor(id) {
    await this._call('read', 'killCursor', { cursor: id })
  }

  async findOne(filter, options) {
    const opts = checkOptions('findOne', options)
    const read = readOptions('findOne', opts)
    const buf = await this._call('read', 'findOne', { filter: needFilter('findOne', idFilter(filter)), options: serverOptions(opts) })
    return buf.length ? decode(buf, read) : null
  }

  async countDocuments(filter, options) {
    const buf = await this._call('read', 'countDocuments', {
      filter: needFilter('countDocuments', filter),
      options: checkOptions('countDocuments', options),
    })
    return decode(buf).n
  }

  /**
   * The driver's deprecated `count(filter, options)`, kept for code written
   * against it (see `legacyCount` in lib/cursor.js).
   */
  async count(filter = {}, options = {}) {
    return legacyCount(this, filter, options)
  }

  /** The number of documents from the collection's metadata, as the driver's. */
  async estimatedDocumentCount(options) {
    const buf = await this._call('read', 'estimatedDocumentCount', {
      options: checkOptions('estimatedDocumentCount', options),
    })
    return decode(buf).n
  }

  async distinct(key, filter, options) {
    if (typeof key !== 'string') throw invalidArgument(`distinct: key must be a string, got ${describe(key)}`)
    const buf = await this._call('read', 'distinct', {
      key,
      filter: needFilter('distinct', filter),
      options: checkOptions('distinct', options),
    })
    return decode(buf).values
  }

  aggregate(pipeline, options) {
    if (pipeline === undefined) pipeline = []
    if (!Array.isArray(pipeline)) throw invalidArgument(`aggregate: pipeline must be an array, got ${describe(pipeline)}`)
    pipeline.forEach((s, i) => needDocument('aggregate', `pipeline stage ${i}`, s))
    return new AggregationCursor(this, pipeline, checkOptions('aggregate', options))
  }

  /**
   * A change stream of this collection on the local server, as the driver's
   * `watch`: iterate it (`next`, `tryNext`, `for await`) or listen for
   * 'change'. Changes are the local server's, whichever process made them.
   */
  watch(pipeline, options) {
    return watchOf(this._sync, this.dbName, this.collectionName, pipeline, options)
  }

  async _aggregate(pipeline, options) {
    const read = readOptions('aggregate', options)
    return batchOf(await this._call('read', 'aggregate', { pipeline, options: serverOptions(options) }), read)
  }

  // Indexes: made on the local server; on a replicated collection the engine
  // then makes Atlas's indexes of the collection match (see the README).

  /**
   * Drops the collection locally; resolves with true, or false if it did
   * not exist, as the driver. On a replicated collection Atlas's follows:
   * dropped there too, or, if the collection was created again locally
   * before that, emptied of the documents local no longer has.
   */
  async drop(options) {
    const opts = checkOptions('drop', options)
    try {
      await this._write('drop', { options: opts })
      return true
    } catch (e) {
      if (e instanceof MongoServerError && e.code === 26) return false
      throw e
    }
  }

  /**
   * Renames the collection on the local server, within its database, and
   * resolves with the collection of the new name, as the driver's. On a
   * replicated collection Atlas follows: the old name is dropped there, and
   * the new one made to hold exactly the local documents (copied again in
   * the background, as after a drop and re-creation).
   */
  async rename(newName, options) {
    if (typeof newName !== 'string' || newName.length === 0) {
      throw invalidArgument(`rename: the new name must be a non-empty string, got ${describe(newName)}`)
    }
    const opts = checkOptions('rename', options)
    await this._write('rename', { to: newName, options: opts })
    return new Collection(this._sync, this.dbName, newName)
  }

  /** Creates one index; resolves with its name, as the driver. */
  async createIndex(indexSpec, options) {
    const opts = checkOptions('createIndex', options)
    const def = { key: indexKeys('createIndex', indexSpec) }
    for (const f of INDEX_FIELDS) if (f in opts) def[f === 'version' ? 'v' : f] = opts[f]
    def.name = opts.name ?? indexName(def.key)
    await this._write('createIndexes', { indexes: [def], options: commandOptions(opts) })
    return def.name
  }

  /** Creates several indexes (`[{ key, name?, unique?, ... }]`); resolves with their names. */
  async createIndexes(indexSpecs, options) {
    if (!Array.isArray(indexSpecs) || indexSpecs.length === 0) {
      throw invalidArgument(`createIndexes: indexSpecs must be a non-empty array, got ${describe(indexSpecs)}`)
    }
    const opts = checkOptions('createIndexes', options)
    const defs = indexSpecs.map((spec, i) => {
      needDocument('createIndexes', `index ${i}`, spec)
      // As the driver: the index fields it knows, `version` as `v`; the rest
      // (an `ns` or `v` listed by indexes(), say) is left out.
      const def = { key: indexKeys(`createIndexes: index ${i}`, spec.key) }
      for (const f of INDEX_FIELDS) if (spec[f] !== undefined) def[f === 'version' ? 'v' : f] = spec[f]
      def.name = spec.name ?? indexName(def.key)
      return def
    })
    await this._write('createIndexes', { indexes: defs, options: commandOptions(opts) })
    return defs.map((d) => d.name)
  }

  /**
   * Drops an index by name, by its key document, or several by an array of
   * names (as the server's dropIndexes takes them); resolves with the
   * server's reply.
   */
  async dropIndex(indexName, options) {
    const names = Array.isArray(indexName) && indexName.length > 0 && indexName.every((n) => typeof n === 'string')
    if (typeof indexName !== 'string' && !isDocument(indexName) && !names) {
      throw invalidArgument(`dropIndex: indexName must be a name, an array of names or a key document, got ${describe(indexName)}`)
    }
    const opts = checkOptions('dropIndex', options)
    return this._write('dropIndexes', { index: indexName, options: opts })
  }

  /**
   * Drops every index but `_id`'s; resolves with true, or false when the
   * server refused (a missing collection, say), as the driver. Errors of
   * this library (bad options, a closed instance) still reject.
   */
  async dropIndexes(options) {
    const opts = checkOptions('dropIndexes', options)
    try {
      await this._write('dropIndexes', { index: '*', options: opts })
      return true
    } catch (e) {
      if (e instanceof MongoServerError) return false
      throw e
    }
  }

  /** The indexes of the collection, as the server lists them. */
  listIndexes(options) {
    const opts = checkOptions('listIndexes', options)
    return new ListIndexesCursor(this, async () => ({ id: 0, docs: await this._listIndexes(opts) }))
  }

  async _listIndexes(opts) {
    const options = {}
    for (const k of ['maxTimeMS', 'comment']) if (k in opts) options[k] = opts[k]
    return decodeAll(await this._call('read', 'listIndexes', { options }))
  }

  /** Every index definition; with `{ full: false }`, `{ name: [[field, direction], ...] }` as `indexInformation`. */
  async indexes(options) {
    const opts = checkOptions('indexes', options)
    const list = await this._listIndexes(opts)
    return opts.full === false ? compactIndexes(list) : list
  }

  /** `{ name: [[field, direction], ...] }`; with `{ full: true }`, every definition. */
  async indexInformation(options) {
    const opts = checkOptions('indexInformation', options)
    const list = await this._listIndexes(opts)
    return opts.full === true ? list : compactIndexes(list)
  }

  /** Whether every index named exists. */
  async indexExists(indexes, options) {
    const names = Array.isArray(indexes) ? indexes : [indexes]
    if (!names.every((n) => typeof n === 'string')) {
      throw invalidArgument(`indexExists: indexes must be a name or an array of names, got ${describe(indexes)}`)
    }
    const have = new Set((await this._listIndexes(checkOptions('indexExists', options))).map((d) => d.name))
    return names.every((n) => have.has(n))
  }
}

const INDEX_TYPES = ['2d', '2dsphere', 'text', 'geoHaystack', 'hashed']

/** A direction or index type, as the driver recognizes them. */
function isDirection(d) {
  return typeof d === 'number' || INDEX_TYPES.includes(d)
}

/**
 * An index's keys, from any form the driver takes: `'a'`, `{ a: 1 }`,
 * `['a', -1]` (one field and its direction), `['a', ['b', -1]]`,
 * `[{ a: 1 }, 'b']`, a Map.
 */
function indexKeys(method, spec) {
  const pairs = []
  const add = (field, dir) => {
    if (typeof field !== 'string' || field === '') throw invalidArgument(`${method}: index field names must be non-empty strings`)
    if (!(typeof dir === 'number' || typeof dir === 'string')) {
      throw invalidArgument(`${method}: index direction of '${field}' must be a number or a string, got ${describe(dir)}`)
    }
    pairs.push([field, dir])
  }
  const single = Array.isArray(spec) && spec.length === 2 && typeof spec[0] === 'string' && isDirection(spec[1])
  const entries = single ? [spec] : Array.isArray(spec) ? spec : [spec]
  for (const e of entries) {
    if (typeof e === 'string') add(e, 1)
    else if (Array.isArray(e) && (e.length === 1 || e.length === 2)) add(e[0], e[1] ?? 1)
    else if (e instanceof Map) for (const [f, d] of e) add(f, d)
    else if (isDocument(e)) for (const [f, d] of Object.entries(e)) add(f, d)
    else throw invalidArgument(`${method}: index spec must be a field name, an object, a Map or an array of those, got ${describe(e)}`)
  }
  if (pairs.length === 0) throw invalidArgument(`${method}: index spec names no field`)
  // A Map keeps the order of keys that look like numbers (a plain object would not).
  return new Map(pairs)
}

/** The driver's default index name: `a_1_b_-1`. */
function indexName(key) {
  return [...key].map(([f, d]) => `${f}_${d}`).join('_')
}

function commandOptions(opts) {
  const out = {}
  for (const k of ['comment', 'maxTimeMS', 'commitQuorum']) if (k in opts) out[k] = opts[k]
  return out
}

function compactIndexes(list) {
  const out = {}
  for (const d of list) out[d.name] = Object.entries(d.key)
  return out
}

/** A batch as the engine sends it: `{cursor: id}`, then the documents. */
/** A batch as the engine returns it: `{ cursor }`, then the documents, decoded as `read` asks. */
function batchOf(buf, read) {
  const head = buf.readInt32LE(0)
  const { cursor } = decode(buf.subarray(0, head))
  return { id: Number(cursor), docs: decodeAll(buf.subarray(head), read) }
}

const BULK_OPS = ['insertOne', 'updateOne', 'updateMany', 'replaceOne', 'deleteOne', 'deleteMany']

function checkBulkOp(op, i) {
  const keys = isDocument(op) ? Object.keys(op) : []
  if (keys.length !== 1 || !BULK_OPS.includes(keys[0]) || !isDocument(op[keys[0]])) {
    throw invalidArgument(`bulkWrite: operation ${i} must be one of { ${BULK_OPS.join(' | ')}: {...} }, got ${describe(op)}`)
  }
  const name = keys[0]
  const body = op[name]
  const where = `bulkWrite operation ${i} (${name})`
  if (name === 'insertOne') {
    // The driver still takes the document itself in place of { document }
    // (its legacy form); so does this.
    const document = body.document == null ? body : body.document
    needDocument(where, 'document', document)
    withId(document)
    return { insertOne: { document } }
  }
  // Every operation but an insert names its documents: the driver refuses
  // an update or replace without a filter, and the server a delete without one.
  const filter = needWriteFilter(where, body.filter)
  const known = ['filter', 'collation', 'hint']
  if (name === 'updateOne' || name === 'updateMany') known.push('update', 'upsert', 'arrayFilters')
  if (name === 'replaceOne') known.push('replacement', 'upsert')
  // Which document a single update or replace picks (MongoDB 8.0).
  if (name === 'updateOne' || name === 'replaceOne') known.push('sort')
  for (const k of Object.keys(body)) {
    if (!known.includes(k)) throw invalidArgument(`${where}: unknown field '${k}'; allowed: ${known.join(', ')}`)
  }
  const out = { ...body, filter }
  if ('sort' in out) {
    out.sort = formatSort(out.sort)
    if (out.sort === undefined) delete out.sort
  }
  if (name === 'updateOne' || name === 'updateMany') needUpdate(where, body.update)
  if (name === 'replaceOne') needReplacement(where, body.replacement)
  return { [name]: out }
}

function numericKeys(obj) {
  const out = {}
  for (const [k, v] of Object.entries(obj || {})) out[Number(k)] = v
  return out
}

/** Adds the driver's `insertedCount`/`insertedIds` to a failed insertMany. */
function attachInsertResult(e, ids, ordered) {
  const failed = new Set(e.writeErrors.map((w) => w.index))
  const firstFailed = failed.size ? Math.min(...failed) : ids.length
  const insertedIds = {}
  ids.forEach((id, i) => {
    if (failed.has(i)) return
    if (ordered && i > firstFailed) return
    insertedIds[i] = id
  })
  e.insertedIds = insertedIds
  e.insertedCount = Object.keys(insertedIds).length
  e.result = { insertedCount: e.insertedCount, insertedIds }
}

module.exports = { Collection, watchOf }
