'use strict'
// BSON across the JS/Rust boundary, with the official driver's defaults:
// undefined is written as null, keys are not checked client-side, and reads
// promote values exactly as the driver does.
const BSON = require('bson')
const { invalidArgument } = require('./errors')

const SERIALIZE = { ignoreUndefined: false, checkKeys: false, serializeFunctions: false }
const DESERIALIZE = { promoteLongs: true, promoteValues: true, promoteBuffers: false, bsonRegExp: false, useBigInt64: false }

/** Encodes the arguments of one call as one BSON document. */
function encode(method, args) {
  try {
    return BSON.serialize(args, SERIALIZE)
  } catch (e) {
    if (e instanceof RangeError) {
      // Larger than bson's internal buffer (~17 MB): size it exactly.
      const buf = Buffer.alloc(BSON.calculateObjectSize(args, SERIALIZE))
      BSON.serializeWithBufferAndIndex(args, buf, SERIALIZE)
      return buf
    }
    throw invalidArgument(`${method}: the arguments cannot be encoded as BSON: ${e.message}`)
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
