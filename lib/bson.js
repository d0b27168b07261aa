'use strict'
// BSON across the JS/Rust boundary, with the official driver's defaults:
// undefined is written as null, keys are not checked client-side, and reads
// promote values exactly as the driver does.
const BSON = require('bson')
const { invalidArgument } = require('./errors')

const SERIALIZE = { ignoreUndefined: false, checkKeys: false, serializeFunctions: false }
const DESERIALIZE = { promoteLongs: true, promoteValues: true, promoteBuffers: false, bsonRegExp: false, useBigInt64: false }

/** bson's default internal buffer (17 MiB); calls larger than it grow it for one call. */
const DEFAULT_BUFFER = 17825792
/** MongoDB's maximum document size. */
const MAX_DOCUMENT = 16 * 1024 * 1024

/**
 * The driver's BSON options of a call that decide how its arguments are
 * encoded here (`undefined` left out instead of sent as null, functions sent
 * as Code); they never go to the server.
 */
const WRITE_OPTIONS = ['ignoreUndefined', 'serializeFunctions']

/**
 * Encodes the arguments of one call as one BSON document, as its
 * `args.options` ask (`WRITE_OPTIONS`, taken out of what is sent).
 */
function encode(method, args) {
  const options = args.options
  if (!options || !WRITE_OPTIONS.some((k) => options[k] !== undefined)) return serialize(method, args, SERIALIZE)
  const how = { ...SERIALIZE }
  const rest = { ...options }
  for (const k of WRITE_OPTIONS) {
    if (rest[k] === undefined) continue
    if (typeof rest[k] !== 'boolean') throw invalidArgument(`${method}: option '${k}' must be a boolean, got ${typeof rest[k]}`)
    how[k] = rest[k]
    delete rest[k]
  }
  return serialize(method, { ...args, options: rest }, how)
}

function serialize(method, args, how, adopted = false) {
  try {
    return BSON.serialize(args, how)
  } catch (e) {
    if (e && e.name === 'BSONVersionError' && !adopted) return serialize(method, adopt(method, args), how, true)
    if (!(e instanceof RangeError)) {
      throw invalidArgument(`${method}: the arguments cannot be encoded as BSON: ${e.message}`)
    }
  }
  // Larger than bson's buffer: a big insertMany, or a document over the limit.
  checkDocumentSizes(method, args, how)
  const size = BSON.calculateObjectSize(args, how)
  BSON.setInternalBufferSize(size + 1024)
  try {
    return BSON.serialize(args, how)
  } finally {
    BSON.setInternalBufferSize(DEFAULT_BUFFER)
  }
}

/** Rejects, before anything is sent, a document MongoDB would refuse for its size. */
function checkDocumentSizes(method, args, how) {
  const docs = [args.doc, args.replacement, args.update, ...(args.docs || [])].filter((d) => d && typeof d === 'object')
  for (const d of docs) {
    const n = BSON.calculateObjectSize(d, how)
    if (n > MAX_DOCUMENT) {
      throw invalidArgument(
        `${method}: a document is ${(n / 1048576).toFixed(1)} MiB; MongoDB's limit is 16 MiB (${MAX_DOCUMENT} bytes)`,
      )
    }
  }
}

const VERSION = Symbol.for('@@mdb.bson.version')
const OURS = new BSON.ObjectId()[VERSION]

/**
 * The arguments with every BSON value made by another major version of the
 * `bson` package (an app's `ObjectId` from `require('mongodb')` of driver 6,
 * which bson 7 refuses to encode) rebuilt as this package's class of the
 * same type and value. Only called after such a refusal; copies the objects
 * and arrays on the way, never changes the caller's.
 */
function adopt(method, args) {
  const path = new Set()
  const walk = (v) => {
    if (v === null || typeof v !== 'object') return v
    if (typeof v.toBSON === 'function' && v._bsontype === undefined) v = v.toBSON()
    if (v === null || typeof v !== 'object') return v
    if (typeof v._bsontype === 'string') return v[VERSION] === OURS ? own(v, walk) : foreign(v, walk, method)
    if (Buffer.isBuffer(v) || ArrayBuffer.isView(v) || v instanceof ArrayBuffer || v instanceof Date || v instanceof RegExp) return v
    if (path.has(v)) throw invalidArgument(`${method}: the arguments cannot be encoded as BSON: they contain a circular reference`)
    path.add(v)
    let out
    if (Array.isArray(v)) out = v.map(walk)
    else if (v instanceof Map) out = new Map([...v].map(([k, x]) => [k, walk(x)]))
    else {
      out = {}
      for (const k of Object.keys(v)) out[k] = walk(v[k])
    }
    path.delete(v)
    return out
  }
  return walk(args)
}

/** One of our BSON values, with the values it holds (a DBRef's, a Code's scope) adopted too. */
function own(v, walk) {
  if (v._bsontype === 'DBRef') return new BSON.DBRef(v.collection, walk(v.oid), v.db, walk(v.fields))
  if (v._bsontype === 'Code' && v.scope != null) return new BSON.Code(v.code, walk(v.scope))
  return v
}

/** One BSON value of another `bson` major version (4, 5, 6, ...) as ours. */
function foreign(v, walk, method) {
  switch (v._bsontype) {
    case 'ObjectId':
    case 'ObjectID':
      return new BSON.ObjectId(v.toHexString())
    case 'Decimal128':
      return BSON.Decimal128.fromString(v.toString())
    case 'Long':
      return new BSON.Long(v.low, v.high, v.unsigned)
    case 'Int32':
      return new BSON.Int32(v.value)
    case 'Double':
      return new BSON.Double(v.value)
    case 'Binary':
      return new BSON.Binary(Uint8Array.prototype.slice.call(v.buffer, 0, v.position), v.sub_type)
    case 'Timestamp':
      return new BSON.Timestamp({ t: v.high >>> 0, i: v.low >>> 0 })
    case 'MinKey':
      return new BSON.MinKey()
    case 'MaxKey':
      return new BSON.MaxKey()
    case 'BSONRegExp':
      return new BSON.BSONRegExp(v.pattern, v.options)
    case 'BSONSymbol':
    case 'Symbol':
      return new BSON.BSONSymbol(v.value)
    case 'Code':
      return new BSON.Code(v.code, v.scope == null ? undefined : walk(v.scope))
    case 'DBRef':
      return new BSON.DBRef(v.collection, walk(v.oid), v.db, walk(v.fields))
    default:
      throw invalidArgument(
        `${method}: the arguments cannot be encoded as BSON: a ${v._bsontype} value from another version of the bson package`,
      )
  }
}

/**
 * The driver's BSON options of a read, which decide how the documents it
 * returns are decoded here and never go to the server.
 */
const READ_OPTIONS = ['promoteLongs', 'promoteValues', 'promoteBuffers', 'bsonRegExp', 'useBigInt64', 'raw',
  'enableUtf8Validation', 'fieldsAsRaw']

/**
 * How to decode the documents of a read with `options` (as checked by
 * `checkOptions`): `{ raw, deserialize }`, the driver's defaults where an
 * option is not given. Refuses a value of the wrong type, naming it.
 */
function readOptions(method, options = {}) {
  const deserialize = { ...DESERIALIZE }
  for (const k of READ_OPTIONS) {
    const v = options[k]
    if (v === undefined) continue
    if (k === 'fieldsAsRaw') {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) {
        throw invalidArgument(`${method}: option 'fieldsAsRaw' must be an object of field names, got ${typeof v}`)
      }
    } else if (typeof v !== 'boolean') {
      throw invalidArgument(`${method}: option '${k}' must be a boolean, got ${typeof v}`)
    }
    if (k === 'enableUtf8Validation') deserialize.validation = { utf8: v }
    else if (k !== 'raw') deserialize[k] = v
  }
  return { raw: options.raw === true, deserialize }
}

/**
 * `options` without the BSON options of a read (`READ_OPTIONS`): what goes
 * to the engine; with `encoded`, without those `encode` takes out too
 * (`WRITE_OPTIONS`), for a command built here (explain).
 */
function serverOptions(options = {}, encoded = false) {
  const out = { ...options }
  for (const k of READ_OPTIONS) delete out[k]
  if (encoded) for (const k of WRITE_OPTIONS) delete out[k]
  return out
}

const DEFAULT_READ = { raw: false, deserialize: DESERIALIZE }

/** One document as `read` (see `readOptions`) asks: a Buffer of its bytes if raw. */
function decode(buf, read = DEFAULT_READ) {
  return read.raw ? Buffer.from(buf) : BSON.deserialize(buf, read.deserialize)
}

/** Splits concatenated BSON documents (as the engine returns query results). */
function decodeAll(buf, read = DEFAULT_READ) {
  const out = []
  let off = 0
  while (off < buf.length) {
    const len = buf.readInt32LE(off)
    out.push(decode(buf.subarray(off, off + len), read))
    off += len
  }
  return out
}

module.exports = { BSON, encode, decode, decodeAll, readOptions, serverOptions, READ_OPTIONS, WRITE_OPTIONS }
