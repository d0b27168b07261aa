'use strict'
// Errors of dual-mongo-sync. MongoDB errors keep the official driver's class
// names and fields (`code`, `codeName`, `errorLabels`, `writeErrors`), so code
// written against the driver keeps working; the engine's own errors are
// `SyncError`s with a stable string `code` (ERR_SYNC_*).

const { EJSON } = require('bson')

const PAYLOAD_MARK = '\u0001dual-mongo-sync:'

class SyncError extends Error {
  constructor(message, code, extra) {
    super(message)
    this.name = 'SyncError'
    this.code = code
    if (extra) Object.assign(this, extra)
  }
}

class MongoError extends Error {
  constructor(message, fields = {}) {
    super(message)
    this.name = 'MongoError'
    const { name, message: _m, errorLabels, ...rest } = fields
    Object.assign(this, rest)
    this.errorLabelSet = new Set(errorLabels || [])
  }

  get errorLabels() {
    return Array.from(this.errorLabelSet)
  }

  hasErrorLabel(label) {
    return this.errorLabelSet.has(label)
  }
}

class MongoServerError extends MongoError {
  constructor(message, fields) {
    super(message, fields)
    this.name = 'MongoServerError'
  }
}

/**
 * One failed operation of a bulk write, as the driver's `WriteError`: `code`,
 * `index`, `errmsg`, `errInfo`, and `getOperation()` (the document or
 * operation at `index`, where known). The server's other fields of the entry
 * (`codeName`, `keyValue`, `keyPattern`) are in `err`.
 */
class WriteError {
  constructor(err) {
    this.err = err
  }
  get code() {
    return this.err.code
  }
  get index() {
    return this.err.index
  }
  get errmsg() {
    return this.err.errmsg
  }
  get errInfo() {
    return this.err.errInfo
  }
  getOperation() {
    return this.err.op
  }
  toJSON() {
    return { code: this.err.code, index: this.err.index, errmsg: this.err.errmsg, op: this.err.op }
  }
  toString() {
    return `WriteError(${JSON.stringify(this.toJSON())})`
  }
}

/**
 * Entries of a bulk write's failures (plain, or `WriteError`s already) as
 * `WriteError`s; with `ops`, the operations they index, for getOperation().
 */
function writeErrorsOf(list, ops) {
  return (list || []).map((w) => {
    const err = w instanceof WriteError ? w.err : w
    return new WriteError(ops && err.index in ops ? { ...err, op: ops[err.index] } : { ...err })
  })
}

class MongoBulkWriteError extends MongoServerError {
  constructor(message, fields, result) {
    super(message, fields)
    this.name = 'MongoBulkWriteError'
    this.writeErrors = writeErrorsOf(fields.writeErrors)
    this.result = result
    if (result) {
      this.insertedCount = result.insertedCount
      this.matchedCount = result.matchedCount
      this.modifiedCount = result.modifiedCount
      this.deletedCount = result.deletedCount
      this.upsertedCount = result.upsertedCount
      this.insertedIds = result.insertedIds
      this.upsertedIds = result.upsertedIds
    }
  }
}

class MongoNetworkError extends MongoError {
  constructor(message, fields) {
    super(message, fields)
    this.name = 'MongoNetworkError'
  }
}

/** A call the server did not answer in time (socketTimeoutMS), as the driver's. */
class MongoNetworkTimeoutError extends MongoNetworkError {
  constructor(message, fields) {
    super(message, fields)
    this.name = 'MongoNetworkTimeoutError'
  }
}

class MongoServerSelectionError extends MongoError {
  constructor(message, fields) {
    super(message, fields)
    this.name = 'MongoServerSelectionError'
  }
}

class MongoInvalidArgumentError extends MongoError {
  constructor(message, fields) {
    super(message, fields)
    this.name = 'MongoInvalidArgumentError'
    this.code = 'ERR_SYNC_INVALID_ARGUMENT'
  }
}

/** A call the driver's API does not allow (as the driver's MongoAPIError). */
class MongoAPIError extends MongoError {
  constructor(message, fields) {
    super(message, fields)
    this.name = 'MongoAPIError'
  }
}

/** A state the driver reports as a runtime error (a change stream the server ended, read again). */
class MongoRuntimeError extends MongoError {
  constructor(message, fields) {
    super(message, fields)
    this.name = 'MongoRuntimeError'
  }
}

/** `next()` or `tryNext()` of a cursor closed while the server still held it (as the driver's). */
class MongoCursorExhaustedError extends MongoAPIError {
  constructor(message = 'Cursor is exhausted', fields) {
    super(message, fields)
    this.name = 'MongoCursorExhaustedError'
  }
}

/** A cursor changed after it was read (as the driver's). */
class MongoCursorInUseError extends MongoAPIError {
  constructor(message = 'Cursor is already initialized', fields) {
    super(message, fields)
    this.name = 'MongoCursorInUseError'
  }
}

const CLASSES = {
  MongoServerError,
  MongoWriteConcernError: MongoServerError,
  MongoBulkWriteError,
  MongoNetworkError,
  MongoNetworkTimeoutError,
  MongoServerSelectionError,
  MongoInvalidArgumentError,
  MongoError,
}

/** Turns an error thrown by the native addon into the right Error object. */
function fromNative(err) {
  const msg = err && typeof err.message === 'string' ? err.message : ''
  if (!msg.startsWith(PAYLOAD_MARK)) return err
  let p
  try {
    p = JSON.parse(msg.slice(PAYLOAD_MARK.length))
  } catch {
    return new SyncError('internal error: unreadable error from the native engine', 'ERR_SYNC_INTERNAL')
  }
  if (p.name === 'SyncError') return new SyncError(p.message, p.code)
  // keyValue, keyPattern, errInfo: BSON values, sent as relaxed Extended JSON.
  if (p.ejson) Object.assign(p, EJSON.deserialize(p.ejson, { relaxed: true }))
  delete p.ejson
  // The server's reply (or write error entry), as the driver's errorResponse;
  // its other fields (ok, index, operationTime, ...) are the error's too.
  if (p.errorResponse) {
    for (const [k, v] of Object.entries(p.errorResponse)) {
      if (!(k in p) && k !== 'errmsg' && k !== 'errorLabels') p[k] = v
    }
  }
  // A field the server's reply did not carry is absent, as on the driver's
  // errors (a write error has no codeName), not null.
  for (const k of ['code', 'codeName']) if (p[k] === null) delete p[k]
  if (Array.isArray(p.writeErrors)) {
    p.writeErrors = p.writeErrors.map(({ ejson, ...w }) => {
      if (w.codeName === null) delete w.codeName
      // The driver's bulk write errors carry errInfo, not keyValue/keyPattern.
      const f = ejson ? EJSON.deserialize(ejson, { relaxed: true }) : {}
      return f.errInfo === undefined ? w : { ...w, errInfo: f.errInfo }
    })
  }
  const Cls = CLASSES[p.name] || MongoError
  if (Cls === MongoBulkWriteError) return new MongoBulkWriteError(p.message, p, undefined)
  const e = new Cls(p.message, p)
  if (p.name === 'MongoWriteConcernError') e.name = 'MongoWriteConcernError'
  return e
}

function invalidArgument(message) {
  return new SyncError(message, 'ERR_SYNC_INVALID_ARGUMENT')
}

module.exports = {
  SyncError,
  MongoError,
  MongoServerError,
  MongoBulkWriteError,
  MongoNetworkError,
  MongoNetworkTimeoutError,
  MongoServerSelectionError,
  MongoInvalidArgumentError,
  MongoCursorInUseError,
  MongoCursorExhaustedError,
  MongoRuntimeError,
  MongoAPIError,
  WriteError,
  writeErrorsOf,
  fromNative,
  invalidArgument,
}
