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

/** Encodes the arguments of one call as one BSON document. */
function encode(method, args) {
  try {
    return BSON.serialize(args, SERIALIZE)
  } catch (e) {
    if (!(e instanceof RangeError)) {
      throw invalidArgument(`${method}: the arguments cannot be encoded as BSON: ${e.message}`)
    }
  }
  // Larger than bson's buffer: a big insertMany, or a document over the limit.
  checkDocumentSizes(method, args)
  const size = BSON.calculateObjectSize(args, SERIALIZE)
  BSON.setInternalBufferSize(size + 1024)
  try {
    return BSON.serialize(args, SERIALIZE)
  } finally {
    BSON.setInternalBufferSize(DEFAULT_BUFFER)
  }
}

/** Rejects, before anything is sent, a document MongoDB would refuse for its size. */
function checkDocumentSizes(method, args) {
  const docs = [args.doc, args.replacement, args.update, ...(args.docs || [])].filter((d) => d && typeof d === 'object')
  for (const d of docs) {
    const n = BSON.calculateObjectSize(d, SERIALIZE)
    if (n > MAX_DOCUMENT) {
      throw invalidArgument(
        `${method}: a document is ${(n / 1048576).toFixed(1)} MiB; MongoDB's limit is 16 MiB (${MAX_DOCUMENT} bytes)`,
      )
    }
  }
}

function decode(buf) {
  return BSON.deserialize(buf, DESERIALIZE)
}

/** Splits concatenated BSON documents (as the engine returns query results). */
function decodeAll(buf) {
  const out = []
  let off = 0
  while (off < buf.length) {
    const len = buf.readInt32LE(off)
    out.push(BSON.deserialize(buf.subarray(off, off + len), DESERIALIZE))
    off += len
  }
  return out
}

module.exports = { BSON, encode, decode, decodeAll }
