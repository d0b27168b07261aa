'use strict'
// The options each method accepts, with the official Node driver's names.
// Anything else is refused with a clear error instead of being ignored.
const { invalidArgument, MongoInvalidArgumentError } = require('./errors')
const { READ_OPTIONS, WRITE_OPTIONS } = require('./bson')

const W = ['comment']
const ALLOWED = {
  insertOne: [...W, 'bypassDocumentValidation'],
  insertMany: [...W, 'ordered', 'bypassDocumentValidation'],
  updateOne: [...W, 'upsert', 'arrayFilters', 'collation', 'hint', 'bypassDocumentValidation', 'let', 'sort'],
  updateMany: [...W, 'upsert', 'arrayFilters', 'collation', 'hint', 'bypassDocumentValidation', 'let'],
  replaceOne: [...W, 'upsert', 'collation', 'hint', 'bypassDocumentValidation', 'let', 'sort'],
  deleteOne: [...W, 'collation', 'hint', 'let'],
  deleteMany: [...W, 'collation', 'hint', 'let'],
  findOneAndUpdate: [...W, 'upsert', 'arrayFilters', 'collation', 'hint', 'bypassDocumentValidation', 'let', 'sort',
    'projection', 'returnDocument', 'includeResultMetadata', 'maxTimeMS'],
  findOneAndReplace: [...W, 'upsert', 'collation', 'hint', 'bypassDocumentValidation', 'let', 'sort', 'projection',
    'returnDocument', 'includeResultMetadata', 'maxTimeMS'],
  findOneAndDelete: [...W, 'collation', 'hint', 'let', 'sort', 'projection', 'includeResultMetadata', 'maxTimeMS'],
  bulkWrite: [...W, 'ordered', 'bypassDocumentValidation', 'let'],
  find: [...W, 'sort', 'projection', 'limit', 'skip', 'hint', 'collation', 'maxTimeMS', 'batchSize', 'let',
    'allowDiskUse', 'min', 'max', 'returnKey', 'showRecordId', 'noCursorTimeout'],
  countDocuments: [...W, 'limit', 'skip', 'hint', 'collation', 'maxTimeMS'],
  estimatedDocumentCount: [...W, 'maxTimeMS'],
  aggregate: [...W, 'allowDiskUse', 'batchSize', 'collation', 'hint', 'let', 'maxTimeMS', 'bypassDocumentValidation'],
  distinct: [...W, 'collation', 'maxTimeMS', 'hint'],
}
// How the documents read are decoded, as the driver's BSON options.
ALLOWED.find.push(...READ_OPTIONS)
ALLOWED.aggregate.push(...READ_OPTIONS)
// How the arguments are encoded, as the driver's BSON options.
for (const m of ['insertOne', 'insertMany', 'updateOne', 'updateMany', 'replaceOne', 'deleteOne', 'deleteMany',
  'findOneAndUpdate', 'findOneAndReplace', 'findOneAndDelete', 'bulkWrite', 'find', 'aggregate', 'countDocuments', 'distinct']) {
  ALLOWED[m].push(...WRITE_OPTIONS)
}
ALLOWED.findOne = ALLOWED.find

/** What an index definition may hold besides `key` and `name`, as the driver copies them from options. */
const INDEX_FIELDS = ['background', 'unique', 'partialFilterExpression', 'sparse', 'hidden', 'expireAfterSeconds',
  'storageEngine', 'collation', 'version', 'weights', 'default_language', 'language_override', 'textIndexVersion',
  '2dsphereIndexVersion', 'bits', 'min', 'max', 'bucketSize', 'wildcardProjection']
const INDEX_COMMAND = [...W, 'maxTimeMS', 'commitQuorum']
ALLOWED.createIndex = [...INDEX_COMMAND, 'name', ...INDEX_FIELDS]
// The driver takes the index fields here too, and ignores them (they go in each index).
ALLOWED.createIndexes = [...INDEX_COMMAND, 'name', ...INDEX_FIELDS]
ALLOWED.dropIndex = [...W, 'maxTimeMS']
ALLOWED.dropIndexes = ALLOWED.dropIndex
ALLOWED.drop = [...W, 'maxTimeMS']
ALLOWED.rename = [...W, 'dropTarget']
ALLOWED.dropDatabase = [...W]
// As the driver's CreateCollectionOptions, less what the engine does not
// handle (encryptedFields, pkFactory) and the driver-side ones.
ALLOWED.createCollection = [...W, 'maxTimeMS', 'capped', 'size', 'max', 'storageEngine', 'validator', 'validationLevel',
  'validationAction', 'indexOptionDefaults', 'viewOn', 'pipeline', 'collation', 'timeseries', 'expireAfterSeconds',
  'clusteredIndex', 'changeStreamPreAndPostImages']
ALLOWED.listIndexes = [...W, 'batchSize', 'maxTimeMS']
ALLOWED.listCollections = [...W, 'nameOnly', 'authorizedCollections', 'batchSize', 'maxTimeMS']
ALLOWED.collections = [...W, 'maxTimeMS']
ALLOWED.indexes = [...ALLOWED.listIndexes, 'full']
ALLOWED.indexInformation = ALLOWED.indexes
ALLOWED.indexExists = ALLOWED.indexes

// db.command's own options are the driver's session, read preference and
// BSON ones, none of which has an effect here.
ALLOWED.command = []
ALLOWED.stats = ['scale']
ALLOWED.listDatabases = ['nameOnly', 'filter', 'authorizedDatabases']
ALLOWED.watch = [...W, 'fullDocument', 'fullDocumentBeforeChange', 'resumeAfter', 'startAfter', 'startAtOperationTime',
  'maxAwaitTimeMS', 'batchSize', 'collation', 'showExpandedEvents']

const WHY_NOT = {
  session: 'sessions and transactions are not replicated by dual-mongo-sync; write without a session',
  writeConcern: 'the local write concern comes from MONGODB_URI (e.g. ?w=majority)',
  w: 'the local write concern comes from MONGODB_URI (e.g. ?w=majority)',
  j: 'the local write concern comes from MONGODB_URI (e.g. ?journal=true)',
  journal: 'the local write concern comes from MONGODB_URI (e.g. ?journal=true)',
  fsync: 'the local write concern comes from MONGODB_URI (e.g. ?journal=true)',
  wtimeout: 'the local write concern comes from MONGODB_URI (e.g. ?wtimeoutMS=5000)',
  wtimeoutMS: 'the local write concern comes from MONGODB_URI (e.g. ?wtimeoutMS=5000)',
  readPreference: 'reads always go to the local MongoDB',
  timeoutMS: 'use maxTimeMS where the method supports it',
}

/** Validates `options` for `method`; returns a plain copy without undefined values. */
function checkOptions(method, options) {
  if (options === undefined || options === null) return {}
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw invalidArgument(`${method}: options must be an object, got ${describe(options)}`)
  }
  const allowed = ALLOWED[method]
  const out = {}
  for (const [k, v] of Object.entries(options)) {
    if (v === undefined) continue
    if (!allowed.includes(k)) {
      const why = WHY_NOT[k] ? ` (${WHY_NOT[k]})` : ''
      throw invalidArgument(`${method}: unknown option '${k}'${why}; allowed: ${allowed.join(', ')}`)
    }
    out[k] = v
  }
  if ('returnDocument' in out && out.returnDocument !== 'before' && out.returnDocument !== 'after') {
    throw invalidArgument(`${method}: returnDocument must be 'before' or 'after', got ${describe(out.returnDocument)}`)
  }
  for (const k of ['upsert', 'ordered', 'bypassDocumentValidation', 'includeResultMetadata', 'dropTarget']) {
    if (k in out && typeof out[k] !== 'boolean') {
      throw invalidArgument(`${method}: option '${k}' must be a boolean, got ${describe(out[k])}`)
    }
  }
  if ('maxTimeMS' in out && !(Number.isSafeInteger(out.maxTimeMS) && out.maxTimeMS >= 0)) {
    throw invalidArgument(`${method}: option 'maxTimeMS' must be a whole number of milliseconds >= 0, got ${describe(out.maxTimeMS)}`)
  }
  if ('sort' in out) {
    out.sort = formatSort(out.sort)
    if (out.sort === undefined) delete out.sort
  }
  return out
}

/**
 * A sort as the driver's `formatSort` reads it: a field name (with
 * `direction`), `{ field: dir }`, a Map, `[field, dir]`, `[[field, dir], ...]`
 * or `[field, ...]`; a direction is 1, -1, 'asc', 'desc', 'ascending',
 * 'descending' (any case, also as strings '1' and '-1') or `{ $meta }`.
 * Returns a Map, which keeps the fields in the given order where an object
 * would put integer-like names first; `undefined` for no sort (an empty one).
 */
function formatSort(sort, direction) {
  if (sort === undefined || sort === null) return undefined
  if (typeof sort === 'string') return new Map([[sort, sortDirection(direction)]])
  if (typeof sort !== 'object') {
    throw new MongoInvalidArgumentError(`Invalid sort format: ${JSON.stringify(sort)} Sort must be a valid object`)
  }
  const entries = (list) => new Map(list.map(([k, v]) => [`${k}`, sortDirection(v)]))
  if (!Array.isArray(sort)) {
    if (sort instanceof Map) return sort.size ? entries([...sort]) : undefined
    return Object.keys(sort).length ? entries(Object.entries(sort)) : undefined
  }
  if (!sort.length) return undefined
  if (Array.isArray(sort[0])) return entries(sort)
  if (sort.length === 2 && isSortDirection(sort[1])) return entries([sort])
  return new Map(sort.map((k) => [`${k}`, 1]))
}

function sortDirection(d = 1) {
  if (typeof d === 'object' && d !== null && typeof d.$meta === 'string') return d
  switch (`${d}`.toLowerCase()) {
    case '1': case 'asc': case 'ascending': return 1
    case '-1': case 'desc': case 'descending': return -1
    default: throw new MongoInvalidArgumentError(`Invalid sort direction: ${JSON.stringify(d)}`)
  }
}

function isSortDirection(d) {
  try {
    sortDirection(d)
    return true
  } catch {
    return false
  }
}

function describe(v) {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`
  return typeof v === 'object' ? `an object (${v.constructor ? v.constructor.name : 'Object'})` : `${typeof v} ${String(v)}`
}

module.exports = { checkOptions, describe, formatSort, ALLOWED, INDEX_FIELDS }
