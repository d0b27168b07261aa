'use strict'
// The object `createSync()` resolves to.
const { Collection, watchOf } = require('./collection')
const { decode, decodeAll, encode } = require('./bson')
const { ListIndexesCursor } = require('./cursor')
const { fromNative, SyncError, invalidArgument } = require('./errors')
const { describe, checkOptions } = require('./options')
const { loadNative } = require('./native')

class Db {
  constructor(sync, name) {
    if (typeof name !== 'string' || name.length === 0) {
      throw invalidArgument(`database name must be a non-empty string, got ${describe(name)}`)
    }
    this._sync = sync
    this.databaseName = name
  }

  collection(name) {
    return new Collection(this._sync, this.databaseName, name)
  }

  /**
   * An aggregation of the database itself (`{ aggregate: 1 }`: stages such
   * as `$documents`, `$currentOp`, `$listLocalSessions`), as the driver's
   * `db.aggregate`; `$out` and `$merge` are refused while writes are
   * replicated, as on a collection.
   */
  aggregate(pipeline, options) {
    return Collection._ofDatabase(this._sync, this.databaseName).aggregate(pipeline, options)
  }

  /**
   * Creates a collection (or a view, with `viewOn` and `pipeline`) on the
   * local server and resolves with it, as the driver's. On a replicated
   * collection Atlas's is created with the options that decide how it
   * stores documents: `capped`, `size`, `max`, `collation`, `clusteredIndex`,
   * `expireAfterSeconds`, `changeStreamPreAndPostImages`, or the view's
   * definition. Validators are not copied (see the README).
   */
  async createCollection(name, options) {
    const opts = checkOptions('createCollection', options)
    const coll = this.collection(name)
    await coll._write('create', { options: opts })
    return coll
  }

  /** The database's name, as the driver's `db.namespace`. */
  get namespace() {
    return this.databaseName
  }

  /** `db.collection(name).createIndex(indexSpec, options)`, as the driver's: resolves with the index name. */
  createIndex(name, indexSpec, options) {
    return this.collection(name).createIndex(indexSpec, options)
  }

  /** `db.collection(name).indexInformation(options)`, as the driver's. */
  indexInformation(name, options) {
    return this.collection(name).indexInformation(options)
  }

  /** `db.collection(from).rename(to, options)`, as the driver's: resolves with the renamed collection. */
  renameCollection(from, to, options) {
    return this.collection(from).rename(to, options)
  }

  /**
   * Drops the database on the local server and resolves with true, as the
   * driver's. Atlas's copies of its replicated collections and views are
   * dropped too (`flush()` waits for it); collections only Atlas has, and
   * excluded ones, stay there.
   */
  async dropDatabase(options) {
    const opts = checkOptions('dropDatabase', options)
    await this._sync._call((native) => native.write(this.databaseName, '', 'dropDatabase', encode('dropDatabase', { options: opts })))
    return true
  }

  /** `db.collection(name).drop(options)`, as the driver's. */
  dropCollection(name, options) {
    return this.collection(name).drop(options)
  }

  /**
   * The collections and views of this database on the local server, as the
   * driver's: a cursor (`toArray`, `next`, `for await`) of the server's
   * listing, filtered by `filter` (`{ name: 'orders' }`); `nameOnly` lists
   * names and types only.
   */
  listCollections(filter = {}, options = {}) {
    if (filter === null || typeof filter !== 'object' || Array.isArray(filter)) {
      throw invalidArgument(`listCollections: filter must be an object, got ${describe(filter)}`)
    }
    const opts = checkOptions('listCollections', options)
    const payload = encode('listCollections', { filter, options: opts })
    const list = () => this._sync._call((native) => native.read(this.databaseName, '', 'listCollections', payload))
    return new ListIndexesCursor(null, async () => ({ id: 0, docs: decodeAll(await list()) }))
  }

  /**
   * Runs `command` on the local server's database and resolves with the
   * server's reply, as the driver's `db.command`. While writes are
   * replicated only commands that read or report run (`ping`, `hello`,
   * `buildInfo`, `serverStatus`, `dbStats`, `collStats`, `count`, `find`,
   * `aggregate` without `$out`/`$merge`, `explain`, ...); any other is
   * refused before it is sent, since what it changed would never reach
   * Atlas: use the collection and database methods for changes.
   */
  async command(command, options) {
    if (command === null || typeof command !== 'object' || Array.isArray(command) || Object.keys(command).length === 0) {
      throw invalidArgument(`command: command must be a non-empty object such as { ping: 1 }, got ${describe(command)}`)
    }
    checkOptions('command', options)
    const payload = encode('command', { command })
    return decode(await this._sync._call((native) => native.read(this.databaseName, '', 'command', payload)))
  }

  /** A change stream of every collection of this database on the local server, as the driver's `db.watch`. */
  watch(pipeline, options) {
    return watchOf(this._sync, this.databaseName, '', pipeline, options)
  }

  /** The `dbStats` of this database on the local server, as the driver's `db.stats`. */
  async stats(options) {
    const { scale } = checkOptions('stats', options)
    return this.command(scale === undefined ? { dbStats: true } : { dbStats: true, scale })
  }

  /** The driver's `Admin` for the local server: `command`, `ping`, `buildInfo`, `serverStatus`, `listDatabases`, ... */
  admin() {
    return new Admin(this._sync)
  }

  /** A `Collection` for each collection and view of this database, as the driver's. */
  async collections(options) {
    const list = await this.listCollections({}, { ...checkOptions('collections', options), nameOnly: true }).toArray()
    return list.filter(({ name }) => !name.includes('$')).map(({ name }) => this.collection(name))
  }
}

/**
 * The official driver's `Admin` (what `db.admin()` returns): commands on the
 * local server's `admin` database, read-only ones while writes are
 * replicated (see `Db.command`).
 */
class Admin {
  constructor(sync) {
    this._db = new Db(sync, 'admin')
  }

  command(command, options) {
    return this._db.command(command, options)
  }

  buildInfo(options) {
    return this.command({ buildinfo: 1 }, options)
  }

  serverInfo(options) {
    return this.command({ buildinfo: 1 }, options)
  }

  serverStatus(options) {
    return this.command({ serverStatus: 1 }, options)
  }

  ping(options) {
    return this.command({ ping: 1 }, options)
  }

  replSetGetStatus(options) {
    return this.command({ replSetGetStatus: 1 }, options)
  }

  /** `{ databases, totalSize, ok }`; options `nameOnly`, `filter`, `authorizedDatabases` as the driver's. */
  async listDatabases(options) {
    const opts = checkOptions('listDatabases', options)
    return this.command({ listDatabases: 1, ...opts })
  }
}

function timeoutOf(method, opts, fallback) {
  if (opts === undefined || opts === null) return fallback
  if (typeof opts !== 'object') throw invalidArgument(`${method}: options must be an object, got ${describe(opts)}`)
  for (const k of Object.keys(opts)) {
    if (k !== 'timeoutMs') throw invalidArgument(`${method}: unknown option '${k}'; allowed: timeoutMs`)
  }
  const t = opts.timeoutMs ?? fallback
  if (!Number.isInteger(t) || t < 0 || t > 2 ** 31 - 1) {
    throw invalidArgument(`${method}: timeoutMs must be a whole number of milliseconds, got ${describe(t)}`)
  }
  return t
}

/** Where a Sync keeps the `adminToken` given to createSync, for syncRouter(). */
const ADMIN_TOKEN = Symbol('dual-mongo-sync.adminToken')

class Sync {
  constructor(native, adminToken) {
    this._inner = native
    // Not enumerable, so logging or serializing the Sync never shows it.
    Object.defineProperty(this, ADMIN_TOKEN, { value: adminToken, enumerable: false })
  }

  _native() {
    if (!this._inner) throw new SyncError('this dual-mongo-sync instance is closed; create a new one with createSync()', 'ERR_SYNC_CLOSED')
    return this._inner
  }

  /** Whether writes are replicated (SYNC_ENABLED). */
  get enabled() {
    return this._native().enabled
  }

  db(name) {
    return new Db(this, name ?? this._native().defaultDb)
  }

  collection(name) {
    return this.db().collection(name)
  }

  async flush(options) {
    const t = timeoutOf('flush', options, 30000)
    try {
      await this._native().flush(t)
    } catch (e) {
      throw fromNative(e)
    }
  }

  pause() {
    try {
      this._native().pause()
    } catch (e) {
      throw fromNative(e)
    }
  }

  resume() {
    try {
      this._native().resume()
    } catch (e) {
      throw fromNative(e)
    }
  }

  async health() {
    try {
      return JSON.parse(await this._native().health())
    } catch (e) {
      throw fromNative(e)
    }
  }

  async metrics(options) {
    const format = options && options.format
    if (format !== undefined && format !== 'json' && format !== 'prometheus') {
      throw invalidArgument(`metrics: format must be 'json' or 'prometheus', got ${describe(format)}`)
    }
    try {
      if (format === 'prometheus') return await this._native().metricsPrometheus()
      return JSON.parse(await this._native().metrics())
    } catch (e) {
      throw fromNative(e)
    }
  }

  async retryDeadLetters() {
    try {
      return await this._native().retryDeadLetters()
    } catch (e) {
      throw fromNative(e)
    }
  }

  /** Starts a full sync in the background; resolves with `{ id }` (the running one's, if any). */
  async startFullSync(options) {
    const json = JSON.stringify(reconcileOptions('startFullSync', options, false))
    return { id: await this._call((n) => n.startFullSync(json)) }
  }

  /** Runs a full sync and resolves with its final status when it ends. */
  async fullSync(options) {
    const { id } = await this.startFullSync(options)
    const status = JSON.parse(await this._call((n) => n.waitFullSync(id)))
    if (status.id === id && status.state === 'failed') {
      throw new SyncError(`full sync ${id} failed: ${status.error}`, 'ERR_SYNC_FULL_SYNC', { status })
    }
    return status
  }

  /** Progress of the running (or last) full sync. */
  async fullSyncStatus() {
    return JSON.parse(await this._call((n) => n.fullSyncStatus()))
  }

  /** Compares local and Atlas; with `repair: true`, re-syncs only what differs. */
  async verify(options) {
    const json = JSON.stringify(reconcileOptions('verify', options, true))
    return decode(await this._call((n) => n.verify(json)))
  }

  /** Starts a verify in the background; resolves with `{ id }`. */
  async startVerify(options) {
    const json = JSON.stringify(reconcileOptions('startVerify', options, true))
    return { id: await this._call((n) => n.startVerify(json)) }
  }

  /** `{ id, state, report, error }` of the running (or last) verify. */
  async verifyStatus() {
    return decode(await this._call((n) => n.verifyStatus()))
  }

  async _call(fn) {
    try {
      return await fn(this._native())
    } catch (e) {
      throw fromNative(e)
    }
  }

  async close(options) {
    const t = timeoutOf('close', options, 5000)
    const native = this._inner
    if (!native) return
    this._inner = null
    try {
      await native.close(t)
    } catch (e) {
      throw fromNative(e)
    }
  }
}

function reconcileOptions(method, options, withRepair) {
  if (options === undefined || options === null) return {}
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw invalidArgument(`${method}: options must be an object, got ${describe(options)}`)
  }
  const allowed = withRepair ? ['collections', 'repair'] : ['collections']
  const out = {}
  for (const [k, v] of Object.entries(options)) {
    if (v === undefined) continue
    if (!allowed.includes(k)) throw invalidArgument(`${method}: unknown option '${k}'; allowed: ${allowed.join(', ')}`)
    if (k === 'collections' && (!Array.isArray(v) || v.some((c) => typeof c !== 'string' || !c))) {
      throw invalidArgument(`${method}: collections must be an array of 'coll' or 'db.coll' names, got ${describe(v)}`)
    }
    if (k === 'repair' && typeof v !== 'boolean') throw invalidArgument(`${method}: repair must be a boolean, got ${describe(v)}`)
    out[k] = v
  }
  return out
}

function stringifyOptions(options) {
  if (options === undefined || options === null) return {}
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw invalidArgument(`createSync: options must be an object, got ${describe(options)}`)
  }
  const out = {}
  for (const [k, v] of Object.entries(options)) {
    if (v === undefined || v === null) continue
    const scalar = (x) => typeof x === 'string' || (typeof x === 'number' && Number.isFinite(x)) || typeof x === 'boolean'
    // An object would become '[object Object]' (a journal folder of that name, say).
    if (Array.isArray(v) ? !v.every((x) => typeof x === 'string') : !scalar(v)) {
      throw new SyncError(
        `invalid configuration: option '${k}'=${describe(v)} is not allowed; expected a string, a number or a boolean` +
          (Array.isArray(v) ? ' (a list: an array of strings)' : ''),
        'ERR_SYNC_CONFIG',
      )
    }
    out[k] = Array.isArray(v) ? v.join(',') : String(v)
  }
  return out
}

/**
 * Opens the local connection, the journal and the replicator. Settings come
 * from the environment; `options` override them.
 */
async function createSync(options) {
  const native = loadNative()
  const settings = stringifyOptions(options)
  const json = JSON.stringify(settings)
  try {
    // The engine has checked the token by then (16+ characters, no spaces).
    return new Sync(await native.open(json), settings.adminToken)
  } catch (e) {
    throw fromNative(e)
  }
}

module.exports = { createSync, Sync, Db, Admin, ADMIN_TOKEN }
