'use strict'
// The driver's legacy bulk builder, `collection.initializeOrderedBulkOp()`
// and `initializeUnorderedBulkOp()`, still in driver 7 and in code written
// before `bulkWrite`: `bulk.insert(doc)`, `bulk.find(q).upsert().updateOne(u)`,
// ..., `await bulk.execute()`. Each call adds one `bulkWrite` operation;
// `execute` runs them as one `bulkWrite`, so they are pinned, journaled and
// replicated as every write is, and the result and errors are bulkWrite's.
const { MongoError, MongoInvalidArgumentError } = require('./errors')
const { checkOptions } = require('./options')

/** Executing a bulk twice, as the driver's MongoBatchReExecutionError. */
class MongoBatchReExecutionError extends MongoError {
  constructor() {
    super('This batch has already been executed, create new batch to execute')
    this.name = 'MongoBatchReExecutionError'
  }
}

class BulkOperation {
  constructor(collection, ordered, options, checks) {
    this._coll = collection
    this._ordered = ordered
    // Checked now, not at execute: a refused option would spend the bulk.
    this._options = checkOptions('bulkWrite', options)
    this._checks = checks
    this._ops = []
    this._executed = false
  }

  /** How many operations were added. */
  get length() {
    return this._ops.length
  }

  /** Adds an insert; gives the document an `_id` now, as the driver does. */
  insert(document) {
    this._checks.needDocument('insert', 'document', document)
    this._checks.withId(document)
    return this._add({ insertOne: { document } })
  }

  /** Starts an update, replace or delete of the documents `selector` matches. */
  find(selector) {
    if (!selector) throw new MongoInvalidArgumentError('Bulk find operation must specify a selector')
    return new FindOperators(this, selector)
  }

  /** Adds an operation in `bulkWrite`'s form (`{ updateOne: { filter, update } }`). */
  raw(op) {
    if (op == null || typeof op !== 'object') {
      throw new MongoInvalidArgumentError('Operation must be an object with an operation key')
    }
    for (const k of ['updateOne', 'updateMany', 'replaceOne', 'deleteOne', 'deleteMany']) {
      if (op[k] && typeof op[k] === 'object' && 'q' in op[k]) throw new MongoInvalidArgumentError('Raw operations are not allowed')
    }
    if (op.insertOne) this._checks.withId(op.insertOne.document ?? op.insertOne)
    return this._add(op.insertOne && op.insertOne.document == null ? { insertOne: { document: op.insertOne } } : op)
  }

  /** Runs every added operation as one `bulkWrite`; once only. */
  async execute(options) {
    if (this._executed) throw new MongoBatchReExecutionError()
    if (this._ops.length === 0) throw new MongoInvalidArgumentError('Invalid BulkOperation, Batch cannot be empty')
    const opts = { ...this._options, ...checkOptions('bulkWrite', options), ordered: this._ordered }
    this._executed = true
    return this._coll.bulkWrite(this._ops, opts)
  }

  _add(op) {
    if (this._executed) throw new MongoBatchReExecutionError()
    this._ops.push(op)
    return this
  }
}

/** What `bulk.find(selector)` returns: the operation for those documents. */
class FindOperators {
  constructor(bulk, selector) {
    this._bulk = bulk
    this._op = { filter: selector }
  }

  /** Makes the update or replace an upsert. */
  upsert() {
    return this._with('upsert', true)
  }
  collation(collation) {
    return this._with('collation', collation)
  }
  arrayFilters(arrayFilters) {
    return this._with('arrayFilters', arrayFilters)
  }
  hint(hint) {
    return this._with('hint', hint)
  }

  _with(k, v) {
    this._op[k] = v
    return this
  }

  /** Updates every matching document (`updateMany`). */
  update(update) {
    return this._bulk._add({ updateMany: { ...this._op, update: this._bulk._checks.needUpdate('update', update) } })
  }
  updateOne(update) {
    return this._bulk._add({ updateOne: { ...this._op, update: this._bulk._checks.needUpdate('updateOne', update) } })
  }
  replaceOne(replacement) {
    const { arrayFilters: _a, ...op } = this._op
    return this._bulk._add({ replaceOne: { ...op, replacement: this._bulk._checks.needReplacement('replaceOne', replacement) } })
  }
  deleteOne() {
    return this._bulk._add({ deleteOne: this._deleteOp() })
  }
  /** Deletes every matching document (`deleteMany`). */
  delete() {
    return this._bulk._add({ deleteMany: this._deleteOp() })
  }

  _deleteOp() {
    const { upsert: _u, arrayFilters: _a, ...op } = this._op
    return op
  }
}

module.exports = { BulkOperation, FindOperators, MongoBatchReExecutionError }
