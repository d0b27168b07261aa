'use strict'
const BSON = require('bson')
const errors = require('./errors')
const { createSync, Sync, Db, Admin } = require('./sync')
const { Collection } = require('./collection')
const { FindCursor, AggregationCursor } = require('./cursor')
const { syncRouter } = require('./router')
const { MongoBatchReExecutionError } = require('./bulk')
const { ChangeStream } = require('./change_stream')

module.exports = {
  createSync,
  Sync,
  Db,
  Admin,
  Collection,
  FindCursor,
  AggregationCursor,
  ChangeStream,
  syncRouter,
  ...errors,
  MongoBatchReExecutionError,
  BSON,
  ObjectId: BSON.ObjectId,
  Decimal128: BSON.Decimal128,
  Long: BSON.Long,
  Int32: BSON.Int32,
  Double: BSON.Double,
  Binary: BSON.Binary,
  UUID: BSON.UUID,
  Timestamp: BSON.Timestamp,
  BSONRegExp: BSON.BSONRegExp,
  MinKey: BSON.MinKey,
  MaxKey: BSON.MaxKey,
  Code: BSON.Code,
}
delete module.exports.fromNative
delete module.exports.invalidArgument
delete module.exports.writeErrorsOf
