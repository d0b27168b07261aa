// Type definitions for dual-mongo-sync: local-first MongoDB writes replicated to Atlas.
import * as BSON from 'bson'
import { EventEmitter } from 'events'

export { BSON }
export {
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
} from 'bson'

/** A MongoDB document. */
export type Document = { [key: string]: any }
/** A query filter. */
export type Filter = Document
/** An update: an operator document (`{ $set: ... }`) or an aggregation pipeline. */
export type UpdateFilter = Document | Document[]

/**
 * Settings of {@link createSync}. Each overrides its environment variable;
 * where neither is set, the default applies. Invalid values make
 * `createSync` reject with `code: 'ERR_SYNC_CONFIG'`.
 */
export interface SyncOptions {
  /** The local MongoDB, always primary. Env `MONGODB_URI`, default `mongodb://127.0.0.1:27017`. Its path names the default database (else `test`). */
  localUri?: string
  /** The Atlas cluster writes are replicated to. Env `MONGODB_ATLAS_URI`, no default; required while sync is enabled. */
  atlasUri?: string
  /** Replicate to Atlas. `false`: no Atlas connection, no journal, writes go local only. Env `SYNC_ENABLED`, default `true`. */
  enabled?: boolean
  /** Collections never replicated: `coll` (any database) or `db.coll`. Env `SYNC_EXCLUDED_COLLECTIONS` (comma list), default none. */
  excludedCollections?: string[]
  /** Folder of the durable journal. Env `SYNC_DATA_DIR`, default `./dual-mongo-sync-data`. */
  dataDir?: string
  /** Documents per Atlas write, 1 to 10000. Env `SYNC_BATCH_SIZE`, default `500`. */
  batchSize?: number
  /** Atlas writes in flight at once, 1 to 64. Env `SYNC_WORKERS`, default `4`. */
  workers?: number
  /** Attempts for errors that are neither clearly transient nor permanent, before dead-lettering, 0 to 1000. Env `SYNC_MAX_RETRIES`, default `10`. */
  maxRetries?: number
  /** First retry delay in ms, 1 to 60000. Env `SYNC_RETRY_BASE_MS`, default `100`. */
  retryBaseMs?: number
  /** Retry delay ceiling in ms, at least `retryBaseMs`, at most 3600000. Env `SYNC_RETRY_MAX_MS`, default `30000`. */
  retryMaxMs?: number
  /** Queue size at which health turns `degraded`. Env `SYNC_HEALTH_MAX_QUEUE`, default `100`. */
  healthMaxQueue?: number
  /** Success rate (0 to 1) below which health turns `degraded`. Env `SYNC_HEALTH_MIN_SUCCESS_RATE`, default `0.99`. */
  healthMinSuccessRate?: number
  /** `off`, `error`, `warn`, `info`, `debug` or `trace` (to stderr). Env `SYNC_LOG_LEVEL`, default `info`. */
  logLevel?: 'off' | 'error' | 'warn' | 'info' | 'debug' | 'trace'
  /** Bearer token for the mutating HTTP endpoints, 16+ characters. Env `SYNC_ADMIN_TOKEN`, no default. */
  adminToken?: string
  /** fsync every journal commit: survives power loss, not only process crashes; slower writes. Env `SYNC_JOURNAL_FSYNC`, default `false`. */
  journalFsync?: boolean
  /** How long a new replicator waits after the previous one's last heartbeat, in ms, 0 to 60000. Env `SYNC_TAKEOVER_GRACE_MS`, default `2000`. */
  takeoverGraceMs?: number
  /** How long one batch (local read plus Atlas write) may take before it counts as a transient failure and the Atlas client is replaced, in ms, 100 to 600000. Env `SYNC_ATLAS_TIMEOUT_MS`, default `30000`. */
  atlasTimeoutMs?: number
}

/** One check of {@link Sync.health}. */
export interface HealthCheck {
  pass: boolean
  value: unknown
  threshold?: number
}

export interface Health {
  /** `unhealthy`: local MongoDB or journal failing; `degraded`: Atlas down, queue too long or success rate too low. */
  status: 'healthy' | 'degraded' | 'unhealthy'
  checks: {
    localConnection: HealthCheck
    atlasConnection: HealthCheck
    queueSize: HealthCheck
    successRate: HealthCheck
    journal: HealthCheck
    deadLetters: HealthCheck
  }
}

export interface Metrics {
  enabled: boolean
  paused: boolean
  /** Whether this process runs the replicator of its data directory. */
  leader: boolean
  /** Document changes waiting for Atlas (all processes of the data directory). */
  queueSize: number
  oldestPendingAgeMs: number | null
  /** Document changes this process recorded in the journal. */
  captured: number
  /**
   * Whose replicator figures `synced` to `throughputPerSec` (and
   * `lastError`, when newer than this process's own) are: this process's
   * while it leads, else the ones the leader of the data directory
   * published in the last 5 s (other pm2 instances and the CLI show the
   * leader's), else this process's. They restart from 0 when the leader
   * changes.
   */
  replicationFrom: 'this process' | 'leader'
  /** Documents Atlas acknowledged. */
  synced: number
  /** Failed copy attempts (most are retried and succeed later). */
  failed: number
  /** Batches retried. */
  retried: number
  /** Documents moved to the dead-letter store by the replicator. */
  deadLettered: number
  /** Documents in the dead-letter store now. */
  deadLetterSize: number
  batches: number
  /** Share of recent documents that reached Atlas rather than the dead-letter store. */
  successRate: number
  /** Replication lag (local write recorded to Atlas acknowledged), recent samples. */
  lagMs: { p50: number | null; p99: number | null }
  throughputPerSec: number
  connections: { local: 'up' | 'down'; atlas: 'up' | 'down' | 'disabled' }
  /** The running full sync (also one another process of the data directory runs), else this process's last. */
  fullSync: FullSyncStatus
  lastError: { message: string; atMs: number } | null
}

/** Progress of the running or last full sync ({@link Sync.fullSyncStatus}). */
export interface FullSyncStatus {
  /** Id of the running or last full sync; `null` before the first. */
  id: string | null
  state: 'idle' | 'running' | 'done' | 'failed'
  /** While running: `copy` (local to Atlas), `extras` (removing Atlas-only documents) or `drain` (waiting for the replicator). */
  phase: 'copy' | 'extras' | 'drain' | null
  collectionsDone: number
  collectionsTotal: number
  documentsDone: number
  documentsTotal: number
  /** Documents copied per second. */
  ratePerSec: number
  /** Why the full sync failed, when `state` is `failed`. */
  error: string | null
  startedAtMs: number | null
  finishedAtMs: number | null
}

/** The comparison of one collection in a {@link VerifyReport}. */
export interface VerifyCollectionReport {
  /** `db.coll` */
  ns: string
  localCount: number
  atlasCount: number
  /** Digest of the local collection's documents; equal digests mean equal contents. */
  localHash: string
  atlasHash: string
  /** `_id`s of documents that are local but not on Atlas (first 1000). */
  missing: any[]
  /** `_id`s of documents that are on Atlas but not local (first 1000). */
  extra: any[]
  /** `_id`s of documents that differ between local and Atlas (first 1000). */
  different: any[]
  /** How many are missing, extra and different: more than the lists hold when `truncated`. */
  missingCount: number
  extraCount: number
  differentCount: number
  /** `true` when a list was capped at 1000 entries. */
  truncated: boolean
  /** Differences of this collection that `repair` fixed, counted by comparing again after the copies (a copy Atlas refuses, dead-lettered, is not counted). */
  repaired: number
  /** Names of local indexes Atlas lacks (an index Atlas has under another name with the same definition counts as there). */
  indexesMissing: string[]
  /** Names of indexes Atlas has with another definition than the local one. Indexes only Atlas has are no difference. */
  indexesDifferent: string[]
  /** Indexes of this collection copied again by `repair`. */
  indexesRepaired: number
  /**
   * Options the local collection was created with that Atlas's lacks or has
   * otherwise (`capped`, `collation`, `clusteredIndex`), or `type` when
   * Atlas has a view by that name or nothing.
   */
  optionsDifferent: string[]
  /** Of those, how many `repair` fixed (by creating Atlas's collection again). */
  optionsRepaired: number
}

/** What {@link Sync.verify} found. `_id`s keep their BSON types (ObjectId, string, ...). */
export interface VerifyReport {
  /** No differences found, in documents, indexes or collection options. */
  ok: boolean
  /** Documents missing, extra or different, over all collections. */
  differences: number
  /** Differences `repair: true` fixed, counted by comparing again after the copies. */
  repaired: number
  /** Indexes missing or different on Atlas, over all collections (`ok` needs none). */
  indexDifferences: number
  /** Indexes copied again by `repair: true`. */
  indexesRepaired: number
  /** Collection options that differ on Atlas, over all collections (`ok` needs none). */
  optionDifferences: number
  /** Collection options fixed by `repair: true`. */
  optionsRepaired: number
  /**
   * Whether the queue had drained before the comparison (it waits up to
   * 30 s for that): when `false`, changes still on their way to Atlas may
   * show as differences.
   */
  settled: boolean
  /** When the comparison ended (ms since the epoch). */
  checkedAtMs: number
  collections: VerifyCollectionReport[]
}

/**
 * The running or last verify of the data directory ({@link Sync.verifyStatus}):
 * this process's, or one another process of the data directory started later.
 */
export interface VerifyStatus {
  id: string | null
  state: 'idle' | 'running' | 'done' | 'failed'
  /** The report once `state` is `done`. */
  report: VerifyReport | null
  /** Why the verify failed, when `state` is `failed`. */
  error: string | null
  /** When it started (ms since the epoch); `null` before the first. */
  startedAtMs: number | null
}

/** Which collections a full sync or verify covers: `coll` (the database of `MONGODB_URI`) or `db.coll`. Default: every replicated collection of that database. */
export interface ReconcileOptions {
  collections?: string[]
}

/** Options of {@link Sync.verify}. */
export interface VerifyOptions extends ReconcileOptions {
  /** Copy the documents that differ again, from local to Atlas. Default `false`. */
  repair?: boolean
}

/** The object {@link createSync} resolves to. */
export declare class Sync {
  /** Whether writes are replicated (`SYNC_ENABLED`). */
  readonly enabled: boolean
  /** A database; without a name, the database of `MONGODB_URI`. */
  db(name?: string): Db
  /** `sync.db().collection(name)`. */
  collection<T extends Document = Document>(name: string): Collection<T>
  /** Resolves when every change captured before the call (documents, and index changes) is on Atlas; rejects with `ERR_SYNC_TIMEOUT` after `timeoutMs` (default 30000), or with `ERR_SYNC_CLOSED` when `close()` ends first. */
  flush(options?: { timeoutMs?: number }): Promise<void>
  /** Stops sending batches to Atlas; writes go on and queue up on disk. */
  pause(): void
  /** Undoes {@link Sync.pause}. */
  resume(): void
  health(): Promise<Health>
  metrics(): Promise<Metrics>
  metrics(options: { format: 'json' }): Promise<Metrics>
  /** Prometheus text exposition, metric names prefixed `dual_sync_`. */
  metrics(options: { format: 'prometheus' }): Promise<string>
  /** Puts dead-lettered documents back in the queue; resolves with how many. */
  retryDeadLetters(): Promise<number>
  /**
   * Starts a full sync in the background: copies every document of the
   * collections (`'coll'` or `'db.coll'`; default: every replicated
   * collection of the database of `MONGODB_URI`, on either server) from
   * local to Atlas and deletes Atlas documents that no longer exist locally.
   * Safe while the app keeps writing. One runs per data directory: resolves
   * with the id of the one running over the same collections (here or in
   * another pm2 instance), rejects with `ERR_SYNC_CONFLICT` if it runs over
   * others. One left unfinished by a crash is carried on by the next start
   * over its collections, or by the next process to lead replication.
   */
  startFullSync(options?: ReconcileOptions): Promise<{ id: string }>
  /**
   * {@link Sync.startFullSync} and wait until it ends; resolves with its
   * final status, rejects with `ERR_SYNC_FULL_SYNC` (the status in `status`)
   * if it failed.
   */
  fullSync(options?: ReconcileOptions): Promise<FullSyncStatus>
  /** Progress of the running full sync (also one another process of the data directory runs), else of this process's last. */
  fullSyncStatus(): Promise<FullSyncStatus>
  /**
   * Starts a verify in the background (see {@link Sync.verify}); resolves
   * with its id, or with the running one's if it was asked the same
   * (collections, repair); rejects with `ERR_SYNC_CONFLICT` if it was not.
   */
  startVerify(options?: VerifyOptions): Promise<{ id: string }>
  /**
   * Compares local and Atlas per collection (counts, hashes, then per
   * document) and resolves with the differences; with `repair: true`, copies
   * only the differing documents again.
   */
  verify(options?: VerifyOptions): Promise<VerifyReport>
  /** The running or last verify, with its report once done. */
  verifyStatus(): Promise<VerifyStatus>
  /** Refuses new calls, lets running ones finish, drains the queue for up to `timeoutMs` (default 5000), then stops. Later calls fail with `ERR_SYNC_CLOSED`. */
  close(options?: { timeoutMs?: number }): Promise<void>
}

export declare class Db {
  readonly databaseName: string
  collection<T extends Document = Document>(name: string): Collection<T>
  /** An aggregation of the database itself (`$documents`, `$currentOp`, ...), as the driver's. */
  aggregate<T = Document>(pipeline?: Document[], options?: AggregateOptions): AggregationCursor<T>
  /**
   * Creates a collection, or a view with `viewOn` and `pipeline`, on the
   * local server, as the driver's `db.createCollection`. On a replicated
   * collection Atlas's is created with the same `capped`/`size`/`max`,
   * `collation`, `clusteredIndex`, `expireAfterSeconds` and
   * `changeStreamPreAndPostImages`, or the same view definition; validators
   * and storage-engine settings stay local.
   */
  createCollection<T extends Document = Document>(name: string, options?: CreateCollectionOptions): Promise<Collection<T>>
  /** The database's name. */
  readonly namespace: string
  /** `db.collection(name).createIndex(indexSpec, options)`: resolves with the index name. */
  createIndex(name: string, indexSpec: IndexSpecification, options?: CreateIndexesOptions): Promise<string>
  /** `db.collection(name).indexInformation(options)`. */
  indexInformation(name: string, options?: IndexCommandOptions & { full?: boolean }): Promise<Record<string, [string, number | string][]> | IndexDescription[]>
  /** Drops the database locally (true, as the driver); Atlas's copies of its replicated collections follow. */
  dropDatabase(options?: { comment?: unknown }): Promise<boolean>
  /** `db.collection(from).rename(to, options)`: resolves with the renamed collection. */
  renameCollection<T extends Document = Document>(from: string, to: string, options?: { dropTarget?: boolean; comment?: unknown }): Promise<Collection<T>>
  /** `db.collection(name).drop(options)`. */
  dropCollection(name: string, options?: { maxTimeMS?: number; comment?: unknown }): Promise<boolean>
  /** The collections and views of this database on the local server, as the driver's (`{ name, type, options, info, idIndex }`). */
  listCollections(
    filter?: Filter,
    options?: { nameOnly?: boolean; authorizedCollections?: boolean; batchSize?: number; maxTimeMS?: number; comment?: unknown },
  ): ListIndexesCursor<Document>
  /** A `Collection` for each collection and view of this database (names with `$` left out, as the driver does). */
  collections(options?: { maxTimeMS?: number; comment?: unknown }): Promise<Collection[]>
  /**
   * Runs `command` on the local server's database and resolves with the
   * server's reply, as the driver's `db.command`. While writes are
   * replicated only commands that read or report run (`ping`, `hello`,
   * `buildInfo`, `serverStatus`, `dbStats`, `collStats`, `count`, `distinct`,
   * `find`, `aggregate` without `$out`/`$merge`, `explain`, `listDatabases`,
   * ...); any other rejects with a `SyncError` (`ERR_SYNC_INVALID_ARGUMENT`) before it is
   * sent, since what it changed would never reach Atlas.
   */
  command(command: Document, options?: Record<string, never>): Promise<Document>
  /** A change stream of every collection of this database on the local server, as the driver's `db.watch`. */
  watch<E = ChangeStreamDocument>(pipeline?: Document[], options?: ChangeStreamOptions): ChangeStream<E>
  /** The `dbStats` of this database on the local server, as the driver's `db.stats`. */
  stats(options?: { scale?: number }): Promise<Document>
  /** The driver's `Admin`: commands on the local server's `admin` database, read-only ones while writes are replicated. */
  admin(): Admin
}

/** What `db.admin()` returns, as the driver's `Admin`, on the local server. */
export declare class Admin {
  command(command: Document, options?: Record<string, never>): Promise<Document>
  buildInfo(): Promise<Document>
  serverInfo(): Promise<Document>
  serverStatus(): Promise<Document>
  ping(): Promise<Document>
  replSetGetStatus(): Promise<Document>
  listDatabases(options?: { nameOnly?: boolean; filter?: Document; authorizedDatabases?: boolean }): Promise<Document>
}

export interface CreateCollectionOptions {
  capped?: boolean
  size?: number
  max?: number
  collation?: Document
  clusteredIndex?: { key: Document; unique: boolean; name?: string }
  expireAfterSeconds?: number
  changeStreamPreAndPostImages?: { enabled: boolean }
  validator?: Document
  validationLevel?: 'off' | 'strict' | 'moderate'
  validationAction?: 'error' | 'warn' | 'errorAndLog'
  viewOn?: string
  pipeline?: Document[]
  timeseries?: { timeField: string; metaField?: string; granularity?: string; bucketMaxSpanSeconds?: number; bucketRoundingSeconds?: number }
  storageEngine?: Document
  indexOptionDefaults?: Document
  comment?: unknown
}

export interface InsertOneResult {
  acknowledged: true
  insertedId: any
}
export interface InsertManyResult {
  acknowledged: true
  insertedCount: number
  insertedIds: { [index: number]: any }
}
export interface UpdateResult {
  acknowledged: true
  matchedCount: number
  modifiedCount: number
  upsertedCount: number
  upsertedId: any | null
}
export interface DeleteResult {
  acknowledged: true
  deletedCount: number
}
export interface ModifyResult<T> {
  value: T | null
  ok: 1
  lastErrorObject?: Document
}
export interface BulkWriteResult {
  ok: 1
  insertedCount: number
  matchedCount: number
  modifiedCount: number
  deletedCount: number
  upsertedCount: number
  insertedIds: { [index: number]: any }
  upsertedIds: { [index: number]: any }
  isOk(): boolean
  hasWriteErrors(): boolean
  getWriteErrors(): Array<{ index: number; code: number; errmsg: string }>
  /** The driver's raw result, read by code written for the legacy bulk builder (not enumerable). */
  readonly result: {
    ok: 1
    nInserted: number
    nUpserted: number
    nMatched: number
    nModified: number
    nRemoved: number
    insertedIds: Array<{ index: number; _id: any }>
    upserted: Array<{ index: number; _id: any }>
    writeErrors: Array<{ index: number; code: number; errmsg: string }>
    writeConcernErrors: never[]
  }
  getRawResponse(): BulkWriteResult['result']
  getUpsertedIdAt(index: number): { index: number; _id: any } | undefined
  getWriteErrorCount(): number
  getWriteErrorAt(index: number): { index: number; code: number; errmsg: string } | undefined
  /** Always undefined: a write concern error rejects the call. */
  getWriteConcernError(): undefined
}

export type AnyBulkWriteOperation =
  | { insertOne: { document: Document } }
  | { updateOne: { filter: Filter; update: UpdateFilter; upsert?: boolean; arrayFilters?: Document[]; collation?: Document; hint?: string | Document; sort?: Sort } }
  | { updateMany: { filter: Filter; update: UpdateFilter; upsert?: boolean; arrayFilters?: Document[]; collation?: Document; hint?: string | Document } }
  | { replaceOne: { filter: Filter; replacement: Document; upsert?: boolean; collation?: Document; hint?: string | Document; sort?: Sort } }
  | { deleteOne: { filter: Filter; collation?: Document; hint?: string | Document } }
  | { deleteMany: { filter: Filter; collation?: Document; hint?: string | Document } }

/** How a call's arguments are encoded, as the driver's BSON options. */
export interface BSONSerializeOptions {
  /** Leave out fields whose value is `undefined` (default: stored as null). */
  ignoreUndefined?: boolean
  /** Store functions as Code (default: left out). */
  serializeFunctions?: boolean
}
/** How the documents read are decoded, as the driver's BSON options. */
export interface BSONReadOptions {
  promoteLongs?: boolean
  promoteValues?: boolean
  promoteBuffers?: boolean
  bsonRegExp?: boolean
  useBigInt64?: boolean
  /** Each document as a Buffer of its BSON bytes. */
  raw?: boolean
  enableUtf8Validation?: boolean
  fieldsAsRaw?: Document
}
export type SortDirection = 1 | -1 | 'asc' | 'desc' | 'ascending' | 'descending' | { $meta: string }
/** A sort as the driver takes it; read in the order given. */
export type Sort =
  | string
  | Document
  | Map<string, SortDirection>
  | [string, SortDirection]
  | Array<[string, SortDirection]>
  | string[]
interface CommonWriteOptions extends BSONSerializeOptions {
  comment?: unknown
}
export interface InsertOneOptions extends CommonWriteOptions {
  bypassDocumentValidation?: boolean
}
/** `collection.initializeOrderedBulkOp()` / `initializeUnorderedBulkOp()`, as the driver's. */
export declare class BulkOperation {
  readonly length: number
  insert(document: Document): this
  find(selector: Filter): FindOperators
  raw(op: AnyBulkWriteOperation): this
  execute(options?: BulkWriteOptions): Promise<BulkWriteResult>
}
export declare class FindOperators {
  upsert(): this
  collation(collation: Document): this
  arrayFilters(arrayFilters: Document[]): this
  hint(hint: string | Document): this
  update(update: Document | Document[]): BulkOperation
  updateOne(update: Document | Document[]): BulkOperation
  replaceOne(replacement: Document): BulkOperation
  deleteOne(): BulkOperation
  delete(): BulkOperation
}
/** `execute()` called a second time on one bulk builder. */
export declare class MongoBatchReExecutionError extends MongoError {}
export interface BulkWriteOptions extends InsertOneOptions {
  /** Stop at the first error (default `true`). */
  ordered?: boolean
  let?: Document
}
export interface UpdateOptions extends CommonWriteOptions {
  upsert?: boolean
  arrayFilters?: Document[]
  collation?: Document
  hint?: string | Document
  bypassDocumentValidation?: boolean
  let?: Document
  sort?: Sort
}
export interface ReplaceOptions extends Omit<UpdateOptions, 'arrayFilters'> {}
export interface DeleteOptions extends CommonWriteOptions {
  collation?: Document
  hint?: string | Document
  let?: Document
}
export interface FindOneAndUpdateOptions extends UpdateOptions {
  projection?: Document
  /** `'before'` (default) or `'after'` the change. */
  returnDocument?: 'before' | 'after'
  /** Resolve with `{ value, ok, lastErrorObject }` instead of the document. */
  includeResultMetadata?: boolean
  maxTimeMS?: number
}
export interface FindOneAndReplaceOptions extends Omit<FindOneAndUpdateOptions, 'arrayFilters'> {}
export interface FindOneAndDeleteOptions extends DeleteOptions {
  sort?: Sort
  projection?: Document
  includeResultMetadata?: boolean
  maxTimeMS?: number
}
export interface FindOptions extends BSONReadOptions, BSONSerializeOptions {
  sort?: Sort
  projection?: Document
  limit?: number
  skip?: number
  hint?: string | Document
  collation?: Document
  maxTimeMS?: number
  batchSize?: number
  comment?: unknown
  let?: Document
  allowDiskUse?: boolean
  min?: Document
  max?: Document
  returnKey?: boolean
  showRecordId?: boolean
  noCursorTimeout?: boolean
}
export interface CountDocumentsOptions extends BSONSerializeOptions {
  limit?: number
  skip?: number
  hint?: string | Document
  collation?: Document
  maxTimeMS?: number
  comment?: unknown
}
export interface AggregateOptions extends BSONReadOptions, BSONSerializeOptions {
  allowDiskUse?: boolean
  batchSize?: number
  collation?: Document
  hint?: string | Document
  let?: Document
  maxTimeMS?: number
  comment?: unknown
  bypassDocumentValidation?: boolean
}

/** Results of a query, read from the local MongoDB when first needed. */
export declare class FindCursor<T = Document> implements AsyncIterable<T> {
  sort(sort: Sort, direction?: SortDirection): this
  limit(n: number): this
  skip(n: number): this
  project<P = Document>(projection: Document): FindCursor<P>
  batchSize(n: number): this
  hint(hint: string | Document): this
  collation(collation: Document): this
  comment(comment: unknown): this
  maxTimeMS(ms: number): this
  map<U>(fn: (doc: T) => U): FindCursor<U>
  toArray(): Promise<T[]>
  hasNext(): Promise<boolean>
  next(): Promise<T | null>
  tryNext(): Promise<T | null>
  forEach(fn: (doc: T) => boolean | void | Promise<boolean | void>): Promise<void>
  rewind(): void
  close(): Promise<void>
  /** @deprecated as in the driver (use `countDocuments`): how many documents the query matches within its skip and limit. */
  count(options?: CountDocumentsOptions): Promise<number>
  /** A new, unread cursor of the same query and options (without `map`). */
  clone(): FindCursor<Document>
  min(min: Document): this
  max(max: Document): this
  returnKey(value: boolean): this
  showRecordId(value: boolean): this
  allowDiskUse(value?: boolean): this
  /** Only `noCursorTimeout` is taken; tailable, awaitData, exhaust, partial and oplogReplay are refused. */
  addCursorFlag(flag: 'noCursorTimeout' | 'tailable' | 'oplogReplay' | 'awaitData' | 'exhaust' | 'partial', value: boolean): this
  /** True once closed or read to the end with nothing left buffered. */
  readonly closed: boolean
  /** How many documents were read from the server and not yet returned. */
  bufferedCount(): number
  /** Takes up to `n` (default all) buffered documents, without the map. */
  readBufferedDocuments(n?: number): Document[]
  /** The cursor as an object-mode Node `Readable`; destroying it closes the cursor. */
  stream(): import('stream').Readable & AsyncIterable<T>
  /** The server's explain of the query (default 'allPlansExecution'; `false`: 'queryPlanner'); the cursor is not read. */
  explain(verbosity?: boolean | 'queryPlanner' | 'executionStats' | 'allPlansExecution' | { verbosity?: string; maxTimeMS?: number }): Promise<Document>
  [Symbol.asyncIterator](): AsyncIterator<T>
}

/** A change event as the server sends it (`operationType`, `documentKey`, `fullDocument`, `updateDescription`, `ns`, `_id`, ...). */
export type ChangeStreamDocument = Document

export interface ChangeStreamOptions {
  fullDocument?: 'default' | 'updateLookup' | 'whenAvailable' | 'required'
  fullDocumentBeforeChange?: 'off' | 'whenAvailable' | 'required'
  resumeAfter?: Document
  startAfter?: Document
  startAtOperationTime?: import('bson').Timestamp
  maxAwaitTimeMS?: number
  batchSize?: number
  collation?: Document
  showExpandedEvents?: boolean
  comment?: unknown
}

/**
 * The driver's `ChangeStream`, on the local server: use it as an iterator
 * (`next`, `tryNext`, `hasNext`, `for await`) or as an emitter
 * (`on('change', ...)`), not both. It opens on its first read; the engine's
 * driver resumes it after resumable errors. `sync.close()` ends it (an
 * emitter gets 'close', an iterator's next call rejects with
 * `ERR_SYNC_CLOSED`).
 */
export declare class ChangeStream<E = ChangeStreamDocument> extends EventEmitter implements AsyncIterable<E> {
  readonly resumeToken: Document | null
  readonly closed: boolean
  next(): Promise<E>
  tryNext(): Promise<E | null>
  hasNext(): Promise<boolean>
  close(): Promise<void>
  on(event: 'change', listener: (change: E) => void): this
  on(event: 'resumeTokenChanged', listener: (token: Document) => void): this
  on(event: 'error', listener: (error: Error) => void): this
  on(event: 'close', listener: () => void): this
  on(event: string | symbol, listener: (...args: any[]) => void): this
  /** The changes as an object-mode Node `Readable`; it ends when the stream closes, and destroying it closes the stream. */
  stream(): import('stream').Readable & AsyncIterable<E>
  [Symbol.asyncIterator](): AsyncGenerator<E, void, void>
}

export declare class AggregationCursor<T = Document> implements AsyncIterable<T> {
  map<U>(fn: (doc: T) => U): AggregationCursor<U>
  toArray(): Promise<T[]>
  hasNext(): Promise<boolean>
  next(): Promise<T | null>
  forEach(fn: (doc: T) => boolean | void | Promise<boolean | void>): Promise<void>
  close(): Promise<void>
  /** A new, unread cursor of the same pipeline and options (without `map`). */
  clone(): AggregationCursor<Document>
  /** Adds a stage before the cursor is read; the named ones add `{ $<name>: value }`. */
  addStage(stage: Document): this
  match(filter: Document): this
  project(projection: Document): this
  sort(sort: Document): this
  skip(n: number): this
  limit(n: number): this
  group(group: Document): this
  unwind(field: string | Document): this
  lookup(lookup: Document): this
  redact(expr: Document): this
  geoNear(options: Document): this
  /** `$out`: refused when the cursor is read while writes are replicated (it would write behind the journal's back). */
  out(target: string | Document): this
  maxTimeMS(ms: number): this
  batchSize(n: number): this
  /** True once closed or read to the end with nothing left buffered. */
  readonly closed: boolean
  /** How many documents were read from the server and not yet returned. */
  bufferedCount(): number
  /** Takes up to `n` (default all) buffered documents, without the map. */
  readBufferedDocuments(n?: number): Document[]
  /** The cursor as an object-mode Node `Readable`; destroying it closes the cursor. */
  stream(): import('stream').Readable & AsyncIterable<T>
  /** The server's explain of the query (default 'allPlansExecution'; `false`: 'queryPlanner'); the cursor is not read. */
  explain(verbosity?: boolean | 'queryPlanner' | 'executionStats' | 'allPlansExecution' | { verbosity?: string; maxTimeMS?: number }): Promise<Document>
  [Symbol.asyncIterator](): AsyncIterator<T>
}

/** `collection.listIndexes()` and `db.listCollections()`: the list (read in one batch). */
export declare class ListIndexesCursor<T = IndexDescription> implements AsyncIterable<T> {
  map<U>(fn: (doc: T) => U): ListIndexesCursor<U>
  toArray(): Promise<T[]>
  hasNext(): Promise<boolean>
  next(): Promise<T | null>
  forEach(fn: (doc: T) => boolean | void | Promise<boolean | void>): Promise<void>
  close(): Promise<void>
  [Symbol.asyncIterator](): AsyncIterator<T>
}

/**
 * A drop-in for the official driver's `Collection`. Writes resolve after the
 * local write and are replicated to Atlas in the background; reads are local.
 */
export declare class Collection<T extends Document = Document> {
  readonly dbName: string
  readonly collectionName: string
  /** `db.collection` */
  readonly namespace: string
  /** Inserts a document; one without `_id` is given a new ObjectId (the object is changed, as with the driver). */
  insertOne(doc: T, options?: InsertOneOptions): Promise<InsertOneResult>
  insertMany(docs: T[], options?: BulkWriteOptions): Promise<InsertManyResult>
  updateOne(filter: Filter, update: UpdateFilter, options?: UpdateOptions): Promise<UpdateResult>
  updateMany(filter: Filter, update: UpdateFilter, options?: Omit<UpdateOptions, 'sort'>): Promise<UpdateResult>
  replaceOne(filter: Filter, replacement: T, options?: ReplaceOptions): Promise<UpdateResult>
  deleteOne(filter?: Filter, options?: DeleteOptions): Promise<DeleteResult>
  deleteMany(filter?: Filter, options?: DeleteOptions): Promise<DeleteResult>
  findOneAndUpdate(filter: Filter, update: UpdateFilter, options: FindOneAndUpdateOptions & { includeResultMetadata: true }): Promise<ModifyResult<T>>
  findOneAndUpdate(filter: Filter, update: UpdateFilter, options?: FindOneAndUpdateOptions): Promise<T | null>
  findOneAndReplace(filter: Filter, replacement: T, options: FindOneAndReplaceOptions & { includeResultMetadata: true }): Promise<ModifyResult<T>>
  findOneAndReplace(filter: Filter, replacement: T, options?: FindOneAndReplaceOptions): Promise<T | null>
  findOneAndDelete(filter: Filter, options: FindOneAndDeleteOptions & { includeResultMetadata: true }): Promise<ModifyResult<T>>
  findOneAndDelete(filter: Filter, options?: FindOneAndDeleteOptions): Promise<T | null>
  /** Runs the operations in order (`ordered: false`: all, errors collected); rejects with `MongoBulkWriteError` on write errors. */
  bulkWrite(operations: AnyBulkWriteOperation[], options?: BulkWriteOptions): Promise<BulkWriteResult>
  /** The collection's options on the local server (`MongoAPIError` if it does not exist). */
  options(options?: { maxTimeMS?: number; comment?: unknown }): Promise<Document>
  /** Whether the collection is capped on the local server. */
  isCapped(options?: { maxTimeMS?: number; comment?: unknown }): Promise<boolean>
  /** The driver's legacy bulk builder; `execute()` runs the operations as one ordered `bulkWrite`. */
  initializeOrderedBulkOp(options?: BulkWriteOptions): BulkOperation
  /** The driver's legacy bulk builder; `execute()` runs the operations as one unordered `bulkWrite`. */
  initializeUnorderedBulkOp(options?: BulkWriteOptions): BulkOperation
  find(filter?: Filter, options?: FindOptions): FindCursor<T>
  findOne(filter?: Filter, options?: FindOptions): Promise<T | null>
  countDocuments(filter?: Filter, options?: CountDocumentsOptions): Promise<number>
  /** @deprecated as in the driver (use `countDocuments`): its `count` command (an empty filter: the collection's metadata). */
  count(filter?: Filter, options?: CountDocumentsOptions): Promise<number>
  /** The number of documents from the collection's metadata (fast; may be off after an unclean shutdown), as the driver's. */
  estimatedDocumentCount(options?: { maxTimeMS?: number; comment?: unknown }): Promise<number>
  distinct(key: string, filter?: Filter, options?: { collation?: Document; maxTimeMS?: number; comment?: unknown; hint?: string | Document }): Promise<any[]>
  /** Pipelines with `$out` or `$merge` are refused while sync is enabled (their writes would bypass replication). */
  aggregate<R = Document>(pipeline?: Document[], options?: AggregateOptions): AggregationCursor<R>
  /**
   * A change stream of this collection on the local server, as the driver's
   * `watch`: the local server's changes, whichever process made them.
   */
  watch<E = ChangeStreamDocument>(pipeline?: Document[], options?: ChangeStreamOptions): ChangeStream<E>
  /**
   * Drops the collection locally; `false` if it did not exist, as the
   * driver. On a replicated collection Atlas's is dropped too (or, if the
   * collection was created again locally before that, emptied of what local
   * no longer has); `flush()` waits for it.
   */
  drop(options?: { maxTimeMS?: number; comment?: unknown }): Promise<boolean>
  /**
   * Renames the collection within its database, as the driver's; resolves
   * with the collection of the new name. On a replicated collection Atlas
   * follows: the old name is dropped there and the new one made to hold
   * exactly the local documents (copied again in the background).
   */
  rename<U extends Document = T>(newName: string, options?: { dropTarget?: boolean; comment?: unknown }): Promise<Collection<U>>
  /**
   * Creates an index on the local server; resolves with its name. On a
   * replicated collection the engine then creates it on Atlas too (the
   * leader makes Atlas's indexes of the collection match the local ones).
   */
  createIndex(indexSpec: IndexSpecification, options?: CreateIndexesOptions): Promise<string>
  createIndexes(indexSpecs: IndexDescription[], options?: CreateIndexesOptions): Promise<string[]>
  /** Drops an index locally, then on Atlas. Indexes made on Atlas by hand are dropped there only by name (or `dropIndexes()`). */
  dropIndex(indexName: string | string[] | Document, options?: IndexCommandOptions): Promise<Document>
  /** Drops every index but `_id`'s, locally and then on Atlas. Resolves `false` when the server refused (a missing collection), as the driver. */
  dropIndexes(options?: IndexCommandOptions): Promise<boolean>
  listIndexes(options?: IndexCommandOptions): ListIndexesCursor<IndexDescription>
  indexes(options?: IndexCommandOptions & { full?: true }): Promise<IndexDescription[]>
  indexes(options: IndexCommandOptions & { full: false }): Promise<Record<string, [string, number | string][]>>
  indexInformation(options?: IndexCommandOptions & { full?: boolean }): Promise<Record<string, [string, number | string][]> | IndexDescription[]>
  indexExists(indexes: string | string[], options?: IndexCommandOptions): Promise<boolean>
}

/** `'a'`, `{ a: 1, b: -1 }`, `['a', ['b', -1]]` or a Map, as the driver takes it. */
export type IndexSpecification = string | Document | Map<string, number | string> | Array<string | [string, number | string] | Document>

export interface IndexCommandOptions {
  maxTimeMS?: number
  comment?: unknown
}

export interface CreateIndexesOptions extends IndexCommandOptions {
  name?: string
  unique?: boolean
  sparse?: boolean
  hidden?: boolean
  expireAfterSeconds?: number
  partialFilterExpression?: Document
  collation?: Document
  weights?: Document
  default_language?: string
  language_override?: string
  wildcardProjection?: Document
  commitQuorum?: number | string
  [option: string]: unknown
}

export interface IndexDescription {
  key: Document
  name?: string
  v?: number
  [option: string]: unknown
}

/**
 * Opens the local connection (and fails if it is unreachable), the journal
 * and the replicator. Settings come from the environment; `options` override
 * them.
 */
export declare function createSync(options?: SyncOptions): Promise<Sync>

/** An error of the engine itself. */
export declare class SyncError extends Error {
  name: 'SyncError'
  /** `ERR_SYNC_CONFIG`, `ERR_SYNC_CONNECT`, `ERR_SYNC_CLOSED`, `ERR_SYNC_INVALID_ARGUMENT`, `ERR_SYNC_TIMEOUT`, `ERR_SYNC_CONFLICT` (a full sync or verify runs already), `ERR_SYNC_FULL_SYNC` (`fullSync()` ended failed), `ERR_SYNC_JOURNAL`, `ERR_SYNC_NATIVE` or `ERR_SYNC_INTERNAL`. */
  code: string
}

/** A MongoDB error, with the official driver's fields. */
export declare class MongoError extends Error {
  code?: number | string
  codeName?: string
  errmsg?: string
  readonly errorLabels: string[]
  hasErrorLabel(label: string): boolean
}
export declare class MongoServerError extends MongoError {
  code: number
}
/** One failed operation of a bulk write, as the driver's. */
export declare class WriteError {
  readonly code: number
  readonly index: number
  readonly errmsg: string
  readonly errInfo?: Document
  /** The document (insert) or operation at `index`. */
  getOperation(): Document | undefined
  toJSON(): { code: number; index: number; errmsg: string; op: Document | undefined }
}
export declare class MongoBulkWriteError extends MongoServerError {
  writeErrors: WriteError[]
  result?: Partial<BulkWriteResult>
  insertedCount?: number
  insertedIds?: { [index: number]: any }
}
export declare class MongoNetworkError extends MongoError {}
/** A call the local server did not answer within `socketTimeoutMS`; a write it carried may still be applied. */
export declare class MongoNetworkTimeoutError extends MongoNetworkError {}
export declare class MongoServerSelectionError extends MongoError {}
export declare class MongoInvalidArgumentError extends MongoError {}
/** A cursor changed (sort, limit, a stage, ...) after it was read, as the driver's. */
export declare class MongoCursorInUseError extends MongoAPIError {}
/** `next()` or `tryNext()` of a cursor closed before it was read to the end, as the driver's. */
export declare class MongoCursorExhaustedError extends MongoAPIError {}
/** A change stream the server ended (after its invalidate event), read again, as the driver's. */
export declare class MongoRuntimeError extends MongoError {}
/** A use of the API the driver does not allow (a cursor `map` that returns `null`). */
export declare class MongoAPIError extends MongoError {}

/** The parts of an HTTP request the router reads (Node's `IncomingMessage` and Express's `Request` fit). */
export interface SyncRouterRequest {
  method?: string
  url?: string
  headers: { [name: string]: string | string[] | undefined }
  /** Set by a body parser such as `express.json()`; used instead of reading the stream. */
  body?: unknown
}

/** The parts of an HTTP response the router writes (Node's `ServerResponse` and Express's `Response` fit). */
export interface SyncRouterResponse {
  statusCode: number
  setHeader(name: string, value: string | number | readonly string[]): unknown
  end(chunk?: any): unknown
}

/** Options of {@link syncRouter}. */
export interface SyncRouterOptions<Req extends SyncRouterRequest = SyncRouterRequest> {
  /**
   * Token the POST routes require as `Authorization: Bearer <token>`
   * (16+ characters, compared in constant time). Default: the `adminToken`
   * given to `createSync()`, else env `SYNC_ADMIN_TOKEN`.
   */
  adminToken?: string
  /**
   * Your own check for the POST routes (a session, a role): truthy allows.
   * A valid admin token is accepted too. Without a token and a hook, every
   * POST route answers 403.
   */
  authorize?: (req: Req) => boolean | Promise<boolean>
  /** Path prefix stripped when present, for use without a mount (`http.createServer`). Default `'/api/sync'`; `''` for none. */
  prefix?: string
}

/** A `(req, res, next)` middleware; unknown paths call `next()`. */
export type SyncRouter<Req extends SyncRouterRequest = SyncRouterRequest> = (
  req: Req,
  res: SyncRouterResponse,
  next: (err?: unknown) => void,
) => Promise<void>

/**
 * The sync operations over HTTP, for Express (`app.use('/api/sync',
 * syncRouter(sync))`) or `http.createServer`. Answers are relaxed Extended
 * JSON; errors are `{ error: { code, message } }` (400 invalid argument or
 * body, 401 wrong or missing token, 403 no token configured or refused by
 * `authorize`, 405 wrong method, 409 a full sync or verify runs already
 * and stands in the way, 413 body over 64 KiB, 503 closed, 504 timeout,
 * else 500).
 *
 * - `GET /health`: {@link Health}; 200 when healthy, 503 when degraded or unhealthy.
 * - `GET /metrics`: {@link Metrics}; Prometheus text with `?format=prometheus` or `Accept: text/plain`.
 * - `POST /full` `{ collections? }`: starts a full sync; 202 `{ id }`. `GET /full`: {@link FullSyncStatus}.
 * - `POST /verify` `{ collections?, repair? }`: starts a verify; 202 `{ id }`. `GET /verify`: {@link VerifyStatus}.
 * - `POST /pause`, `POST /resume`, `POST /flush` `{ timeoutMs? }`.
 *
 * POST routes need the admin token or the `authorize` hook.
 */
export declare function syncRouter<Req extends SyncRouterRequest = SyncRouterRequest>(
  sync: Sync,
  options?: SyncRouterOptions<Req>,
): SyncRouter<Req>
