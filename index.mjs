// ESM entry: the same API as the CommonJS one.
import cjs from './index.js'

export const {
  createSync,
  Sync,
  Db,
  Collection,
  FindCursor,
  AggregationCursor,
  syncRouter,
  SyncError,
  MongoError,
  MongoServerError,
  MongoBulkWriteError,
  MongoNetworkError,
  MongoServerSelectionError,
  MongoInvalidArgumentError,
  MongoAPIError,
  BSON,
  ObjectId,
  Decimal128,
  Long,
  Int32,
  Double,
  Binary,
  UUID,
  Timestamp,
  BSONRegExp,
  MinKey,
  MaxKey,
  Code,
} = cjs
export default cjs
