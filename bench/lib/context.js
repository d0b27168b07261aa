'use strict'
// What every figure needs: the two servers (started here, or given by
// TEST_LOCAL_URI / TEST_ATLAS_URI), official-driver clients for both, fresh
// database names and journal folders per run, addon instances, and the
// clean-up that drops and closes all of it.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { MongoClient } = require('mongodb')
const { createSync } = require('../..')
const { startServer, ensureServerBinary } = require('../../scripts/servers')
const { makeDocs } = require('./doc')
const { now } = require('./load')

const ROOT = path.join(__dirname, '..', '..')
const MB = 1024 * 1024

/** `uri` with `db` as its default database. */
function withDb(uri, db) {
  const u = new URL(uri)
  u.pathname = `/${db}`
  return u.toString()
}

/** `uri` with `?key=value`, unless the URI sets `key` already. */
function withOption(uri, key, value) {
  const u = new URL(uri)
  if (!u.searchParams.has(key)) u.searchParams.set(key, value)
  return u.toString()
}

/** Total size in bytes of every file under `dir`. */
function dirBytes(dir) {
  let total = 0
  let entries
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true })
  } catch {
    return 0
  }
  for (const e of entries) {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) total += dirBytes(p)
    else {
      try {
        total += fs.statSync(p).size
      } catch {
        // removed meanwhile (SQLite's -shm, -journal)
      }
    }
  }
  return total
}

/** Collects garbage when node runs with --expose-gc, so RSS readings compare. */
function gc() {
  if (typeof global.gc === 'function') {
    global.gc()
    global.gc()
  }
}

/**
 * Which build the loaded addon is: 'debug' when it carries DWARF sections
 * (`napi build` without --release), 'release' when symbols are stripped (the
 * release profile strips them), else 'unknown'. Reads the ELF section names.
 */
function addonBuild() {
  const file = fs.readdirSync(ROOT).find((f) => f.endsWith('.node'))
  if (!file) return { file: null, build: 'unknown' }
  const full = path.join(ROOT, file)
  try {
    const fd = fs.openSync(full, 'r')
    try {
      const read = (off, len) => {
        const b = Buffer.alloc(len)
        fs.readSync(fd, b, 0, len, off)
        return b
      }
      const h = read(0, 64)
      if (h.toString('latin1', 0, 4) !== '\x7fELF' || h[4] !== 2) return { file, build: 'unknown' }
      const shoff = Number(h.readBigUInt64LE(0x28))
      const shentsize = h.readUInt16LE(0x3a)
      const shnum = h.readUInt16LE(0x3c)
      const shstrndx = h.readUInt16LE(0x3e)
      const sh = read(shoff, shentsize * shnum)
      const strOff = Number(sh.readBigUInt64LE(shstrndx * shentsize + 0x18))
      const strSize = Number(sh.readBigUInt64LE(shstrndx * shentsize + 0x20))
      const strtab = read(strOff, strSize)
      const names = []
      for (let k = 0; k < shnum; k++) {
        const at = sh.readUInt32LE(k * shentsize)
        names.push(strtab.toString('latin1', at, strtab.indexOf(0, at)))
      }
      const stat = fs.statSync(full)
      const build = names.includes('.debug_info') ? 'debug' : names.includes('.symtab') ? 'unknown' : 'release'
      return { file, build, bytes: stat.size, mtime: stat.mtime.toISOString() }
    } finally {
      fs.closeSync(fd)
    }
  } catch {
    return { file, build: 'unknown' }
  }
}

class Context {
  constructor({ log, syncOptions = {}, flushTimeoutMs, retryWrites = 'auto' }) {
    this.log = log
    this.retryWrites = retryWrites
    this.syncOptions = syncOptions // workers / batchSize overrides from the command line
    this.flushTimeoutMs = flushTimeoutMs
    this.servers = []
    this.counter = 0
    this.run = { dbs: [], dirs: [], syncs: [], failedChecks: [] }
    this.shared = {} // measurements reused across figures (e.g. the raw Atlas rate)
  }

  /** Starts the two servers (or takes TEST_LOCAL_URI / TEST_ATLAS_URI) and connects the drivers. */
  async start() {
    const { TEST_LOCAL_URI, TEST_ATLAS_URI } = process.env
    if (TEST_LOCAL_URI && TEST_ATLAS_URI) {
      this.localUri = TEST_LOCAL_URI
      this.atlasUri = TEST_ATLAS_URI
      this.serverKind = 'given (TEST_LOCAL_URI / TEST_ATLAS_URI)'
      this.log(`bench: using local ${redact(this.localUri)} and atlas ${redact(this.atlasUri)}`)
    } else {
      const { kind, bin } = ensureServerBinary({ log: this.log })
      this.serverKind = kind === 'rs' ? `secantusd-rs (${bin})` : 'Python SecantusDB (secantusd-py)'
      this.log(`bench: starting two servers: ${this.serverKind}`)
      const [local, atlas] = await Promise.all([startServer({ name: 'local' }), startServer({ name: 'atlas' })])
      this.servers.push(local, atlas)
      this.localUri = local.uri
      this.atlasUri = atlas.uri
      this.log(`bench: local ${local.uri}, atlas ${atlas.uri}`)
    }
    const opts = { serverSelectionTimeoutMS: 30000, maxPoolSize: 100 }
    this.serverInfo = {}
    for (const side of ['local', 'atlas']) {
      const c = await new MongoClient(side === 'local' ? this.localUri : this.atlasUri, opts).connect()
      try {
        const bi = await c.db('admin').command({ buildInfo: 1 })
        const ss = await c.db('admin').command({ serverStatus: 1 }).catch(() => ({}))
        this.serverInfo[side] = { version: bi.version, secantus: ss.secantus || null }
      } finally {
        await c.close()
      }
    }
    this.serverVersion = this.serverInfo.local.version
    const sec = this.serverInfo.local.secantus
    if (sec) this.serverKind += `, SecantusDB ${sec.server} ${sec.version}`
    // Retryable writes: 'auto' turns them off on every connection (driver
    // and addon, both servers, so both sides of each comparison are alike)
    // when a server is the Python SecantusDB: it keeps a record per
    // retryable write and, past 10,000 of them, sorts the whole record map
    // on every write (secantus/transactions.py, _RETRYABLE_RECORD_MAX), so
    // every later write gets ~10x slower and would swamp the figures.
    const python = Object.values(this.serverInfo).some((i) => i.secantus && i.secantus.server === 'python')
    this.retryWritesOff = this.retryWrites === 'off' || (this.retryWrites === 'auto' && python)
    if (this.retryWritesOff) {
      this.localUri = withOption(this.localUri, 'retryWrites', 'false')
      this.atlasUri = withOption(this.atlasUri, 'retryWrites', 'false')
      this.log('bench: retryable writes off on every connection' + (python ? ' (Python SecantusDB, see BENCHMARKS.md)' : ''))
    }
    this.local = await new MongoClient(this.localUri, opts).connect()
    this.atlas = await new MongoClient(this.atlasUri, opts).connect()
  }

  /** A database name used nowhere before; dropped on both servers at the end of the run. */
  dbName(tag) {
    this.counter += 1
    const name = `bench_${tag}_${process.pid}_${Date.now().toString(36)}_${this.counter}`
    this.run.dbs.push(name)
    return name
  }

  /** A fresh, empty SYNC_DATA_DIR; removed at the end of the run. */
  dataDir() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dms-bench-'))
    this.run.dirs.push(dir)
    return dir
  }

  /** An addon instance on `db` with a fresh journal folder; returns `{ sync, dataDir }`. */
  async openSync(db, extra = {}) {
    const dataDir = this.dataDir()
    const sync = await createSync({
      localUri: withDb(this.localUri, db),
      atlasUri: this.atlasUri,
      dataDir,
      logLevel: 'warn',
      ...this.syncOptions,
      ...extra,
    })
    this.run.syncs.push(sync)
    return { sync, dataDir }
  }

  async flush(sync) {
    await sync.flush({ timeoutMs: this.flushTimeoutMs })
  }

  /**
   * A correctness check of the run (Atlas holds what was written): when
   * `ok` is false, `what` is logged and kept; the run's figures still
   * count, but the table names the failure and `npm run bench` exits 1.
   */
  check(ok, what) {
    if (ok) return
    this.run.failedChecks.push(what)
    this.log(`  CHECK FAILED: ${what}`)
  }

  /**
   * `sync.verify()` of `collections` (after a flush: every write is on
   * Atlas), as a check named `what`.
   */
  async checkVerify(sync, collections, what) {
    const report = await sync.verify({ collections })
    this.checkReport(report, what)
    return report
  }

  /** A `sync.verify()` report already taken, as a check named `what`. */
  checkReport(report, what) {
    this.check(
      report.ok,
      `${what}: verify found ${report.differences} document, ${report.indexDifferences} index and ${report.optionDifferences} option difference(s)`,
    )
  }

  /**
   * Closes the run's addon instances, drops its databases on both servers,
   * removes its journals. Returns the run's failed checks.
   */
  async endRun() {
    const { dbs, dirs, syncs, failedChecks } = this.run
    this.run = { dbs: [], dirs: [], syncs: [], failedChecks: [] }
    for (const s of syncs) {
      try {
        await s.close({ timeoutMs: 1000 })
      } catch (e) {
        this.log(`bench: close: ${e.message}`)
      }
    }
    for (const db of dbs) {
      for (const c of [this.local, this.atlas]) {
        try {
          await c.db(db).dropDatabase()
        } catch (e) {
          this.log(`bench: dropDatabase ${db}: ${e.message}`)
        }
      }
    }
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true })
    return failedChecks
  }

  /**
   * The raw Atlas bulk rate: `n` benchmark documents inserted with the
   * official driver's insertMany in batches of 1000 into a fresh database
   * on the Atlas server. Returns docs/s.
   */
  async rawAtlasInsertRate(n) {
    const db = this.dbName('raw')
    const coll = this.atlas.db(db).collection('raw')
    await coll.insertOne({ warm: true })
    let ms = 0
    for (let k = 0; k < n; k += 1000) {
      const docs = makeDocs(Math.min(1000, n - k), k)
      const t = now()
      await coll.insertMany(docs)
      ms += now() - t
    }
    return (n / ms) * 1000
  }

  /**
   * What the replicator's own two steps cost on these servers, by the
   * official driver: reading `batch` documents by `_id: { $in }` from local,
   * and writing them to Atlas as replace-with-upsert statements of one
   * unordered bulkWrite (the command the replicator sends). `n` documents,
   * fresh collections. Returns `{ localInReadRate, atlasUpsertRate }` in docs/s.
   */
  async rawReplicatorSteps(n, batch = 500) {
    const db = this.dbName('rawsteps')
    const local = this.local.db(db).collection('steps')
    const atlas = this.atlas.db(db).collection('steps')
    await atlas.insertOne({ warm: true })
    let readMs = 0
    let upsertMs = 0
    for (let k = 0; k < n; k += batch) {
      const docs = makeDocs(Math.min(batch, n - k), k)
      await local.insertMany(docs)
      let t = now()
      const found = await local.find({ _id: { $in: docs.map((d) => d._id) } }).toArray()
      readMs += now() - t
      t = now()
      await atlas.bulkWrite(
        found.map((d) => ({ replaceOne: { filter: { _id: d._id }, replacement: d, upsert: true } })),
        { ordered: false },
      )
      upsertMs += now() - t
    }
    return { localInReadRate: (n / readMs) * 1000, atlasUpsertRate: (n / upsertMs) * 1000 }
  }

  async close() {
    await this.endRun()
    await Promise.all([this.local && this.local.close(), this.atlas && this.atlas.close()])
    this.log(this.servers.length ? 'bench: stopping the servers' : 'bench: done')
    await Promise.all(this.servers.map((s) => s.remove()))
    this.servers = []
  }
}

function redact(uri) {
  return uri.replace(/\/\/[^@/]*@/, '//***@')
}

module.exports = { Context, withDb, dirBytes, gc, addonBuild, MB }
