'use strict'
// collection.watch() and db.watch(): the official driver's ChangeStream, on
// the local server. The engine holds the driver's stream (which resumes by
// itself after a resumable error); each native call here is one server
// round trip, at most `maxAwaitTimeMS` (1 s by default) long. Use it as an
// iterator (`next`, `tryNext`, `hasNext`, `for await`) or as an emitter
// (`on('change', ...)`), not both, as with the driver.
const { EventEmitter } = require('node:events')
const { Readable } = require('node:stream')
const { encode, decode } = require('./bson')
const { MongoAPIError, MongoRuntimeError } = require('./errors')

const CLOSED = 'ChangeStream is closed'

/**
 * Streams still open in the engine when their JS object is collected
 * unclosed: the engine is told to drop them (it also drops any left unread
 * for 10 minutes).
 */
const abandoned = new FinalizationRegistry(({ sync, db, id }) => {
  try {
    sync._native().read(db, '', 'changeClose', encode('changeClose', { stream: id })).catch(() => {})
  } catch {
    // The instance was closed: its streams went with it.
  }
})

class ChangeStream extends EventEmitter {
  constructor(sync, dbName, collName, pipeline, options) {
    super()
    this._sync = sync
    this._db = dbName
    this._coll = collName
    this._pipeline = pipeline
    this._options = options
    this._id = null
    this._closed = false
    this._ended = false
    this._buffer = []
    this._chain = Promise.resolve()
    // The token of the last change handed out (or the server's position
    // when none waits), and the one to resume from: the last one read,
    // which may belong to a change still buffered.
    this._token = options.startAfter ?? options.resumeAfter ?? null
    this._readToken = this._token
    this._handedOut = false
    this._endReported = false
    this._mode = null
    this._streaming = false
    this._opened = false
    this.on('newListener', (event) => {
      if (event === 'change' && !this._closed) {
        this._setMode('emitter')
        // After the listener is added: the first event has somewhere to go.
        process.nextTick(() => this._stream())
      }
    })
  }

  /** The token to resume after the last event returned (or the server's latest position). */
  get resumeToken() {
    return this._token
  }

  /** True once closed; after the server ended it, once its last change was handed out (as the driver's). */
  get closed() {
    return this._closed && this._buffer.length === 0
  }

  /**
   * The next change; waits until there is one. After the server ended the
   * stream (an invalidate event), the first call rejects with
   * `MongoRuntimeError` and later ones with `MongoAPIError`, as the driver's.
   */
  async next() {
    this._setMode('iterator')
    return this._serial(async () => {
      for (;;) {
        if (this._buffer.length && (!this._closed || this._ended)) return this._handOut(this._buffer.shift())
        if (this._ended && !this._endReported) {
          this._endReported = true
          throw new MongoRuntimeError(CLOSED)
        }
        let change
        try {
          change = await this._step()
        } catch (e) {
          if (this._ended) this._endReported = true
          throw e
        }
        if (change) return this._handOut(change)
      }
    })
  }

  /** The next change if the server has one within one round trip, else null (also once the server ended the stream). */
  async tryNext() {
    this._setMode('iterator')
    return this._serial(async () => {
      // Closed before it was ever read: nothing, as the driver's.
      if (this._closed && !this._opened) return null
      if (this._buffer.length && (!this._closed || this._ended)) return this._handOut(this._buffer.shift())
      if (this._ended) return null
      try {
        const change = await this._step()
        return change ? this._handOut(change) : null
      } catch (e) {
        if (this._ended) return null
        throw e
      }
    })
  }

  /** Waits until a change is there to read: true; false once the server ended the stream. */
  async hasNext() {
    this._setMode('iterator')
    return this._serial(async () => {
      if (this._closed && !this._opened) return false
      while (!this._buffer.length) {
        if (this._ended) return false
        try {
          const change = await this._step()
          if (change) this._buffer.push(change)
        } catch (e) {
          if (this._ended) return false
          throw e
        }
      }
      return true
    })
  }

  /** A change given to the app: its token becomes the stream's `resumeToken`. */
  _handOut(change) {
    this._handedOut = true
    this._noteToken(change._id)
    return change
  }

  /**
   * The changes as an object-mode Node `Readable`, as the driver's
   * `stream()`: it ends when the stream closes, and destroying it closes the
   * stream. Reading it uses the stream as an iterator.
   */
  stream() {
    if (this._closed) throw new MongoAPIError(CLOSED)
    const changes = this
    return new Readable({
      objectMode: true,
      highWaterMark: 1,
      read() {
        changes.next().then(
          (change) => this.push(change),
          (e) => (changes._closed && e && e.message === CLOSED ? this.push(null) : this.destroy(e)),
        )
      },
      destroy(err, done) {
        changes.close().then(() => done(err), () => done(err))
      },
    })
  }

  async *[Symbol.asyncIterator]() {
    if (this._closed) return
    try {
      for (;;) yield await this.next()
    } finally {
      await this.close().catch(() => {})
    }
  }

  /** Stops the stream (its server cursor is killed); emits 'close'. */
  async close() {
    this._buffer = []
    if (this._closed) return
    this._closed = true
    const id = this._setId(null)
    if (id) {
      try {
        await this._native('changeClose', { stream: id })
      } catch {
        // The instance was closed: its streams went with it.
      }
    }
    this.emit('close')
  }

  /** Records the engine's stream id (null: none); returns the previous one. */
  _setId(id) {
    const old = this._id
    if (old) abandoned.unregister(this)
    this._id = id || null
    if (this._id) abandoned.register(this, { sync: this._sync, db: this._db, id: this._id }, this)
    return old
  }

  _setMode(mode) {
    if (this._mode && this._mode !== mode) {
      throw new MongoAPIError(mode === 'emitter'
        ? 'ChangeStream cannot be used as an EventEmitter after being used as an iterator'
        : 'ChangeStream cannot be used as an iterator after being used as an EventEmitter')
    }
    this._mode = mode
  }

  /** Runs `fn` after the calls before it: one read of the stream at a time. */
  _serial(fn) {
    const run = this._chain.then(fn)
    this._chain = run.catch(() => {})
    return run
  }

  async _native(op, args) {
    return decode(await this._sync._call((native) => native.read(this._db, this._coll, op, encode(op, args))))
  }

  /**
   * One read: opens the stream first if it is not open (then reads once
   * more, as the driver's first `tryNext` runs the aggregate and one
   * `getMore`); a change or null. A stream the engine no longer holds (left
   * unread for 10 minutes, or its last read cut short by `socketTimeoutMS`)
   * is opened again after its last resume token, as the driver resumes one;
   * any other error closes the stream, as the driver's does.
   */
  async _step() {
    if (this._closed) throw new MongoAPIError(CLOSED)
    let opened = false
    if (this._id === null) {
      const answer = await this._call('watch', { pipeline: this._pipeline, options: this._resumeOptions() })
      if (this._closed) {
        // close() ran meanwhile: the stream this call opened goes too.
        if (answer.stream) await this._native('changeClose', { stream: answer.stream }).catch(() => {})
        throw new MongoAPIError(CLOSED)
      }
      this._setId(answer.stream)
      this._read(answer.resumeToken, false)
      this._opened = opened = true
    }
    let answer
    try {
      answer = await this._call('changeNext', { stream: this._id })
    } catch (e) {
      if (e && e.name === 'MongoNetworkTimeoutError' && !this._closed) {
        // Cut short by socketTimeoutMS: the engine dropped the stream; the
        // next read resumes it.
        this._setId(null)
        return null
      }
      throw e
    }
    if (this._closed) throw new MongoAPIError(CLOSED)
    if (answer.gone) {
      this._setId(null)
      // Opened just now and gone already: something is wrong, not a resume.
      if (opened) throw new MongoAPIError('ChangeStream could not be read after it was opened')
      return null
    }
    const change = answer.event ?? null
    this._read(answer.resumeToken, change !== null)
    const invalidated = change !== null && change.operationType === 'invalidate'
    if (!answer.stream || invalidated) {
      // The server ended the stream, or ends it after this invalidate event
      // (the collection was dropped or renamed): closed, as the driver's is
      // once it returned the invalidate event.
      const id = this._setId(null)
      if (answer.stream && id) this._native('changeClose', { stream: id }).catch(() => {})
      this._closed = true
      this._ended = true
      process.nextTick(() => {
        this.emit('end')
        this.emit('close')
      })
      if (change) return change
      throw new MongoRuntimeError(CLOSED)
    }
    return change
  }

  /**
   * A token the server sent (a change's, or its position after an empty
   * read): where a resume starts. It becomes the public `resumeToken` only
   * when it is a position and no change waits unread; a change's becomes
   * public when the change is handed out.
   */
  _read(token, ofChange) {
    if (token == null) return
    this._readToken = token
    if (!ofChange && this._buffer.length === 0) this._noteToken(token)
  }

  /**
   * A native call. An error other than the instance being closed (or a
   * read cut short, which resumes) closes an iterator's stream first, as
   * the driver closes a stream on an error it does not resume from; in
   * emitter mode `_stream` emits the error, then closes.
   */
  async _call(op, args) {
    try {
      return await this._native(op, args)
    } catch (e) {
      if (e && (e.code === 'ERR_SYNC_CLOSED' || e.name === 'MongoNetworkTimeoutError')) throw e
      if (this._mode !== 'emitter') await this.close()
      this._failedOp = op
      throw e
    }
  }

  /**
   * The options to open the stream with; to open it again (a resume), from
   * the last token read: `startAfter` while the stream began with one and
   * has handed out no change yet (it may be an invalidate event's token),
   * else `resumeAfter`, as the driver resumes.
   */
  _resumeOptions() {
    if (!this._opened || this._readToken == null) return this._options
    const { resumeAfter, startAfter, startAtOperationTime, ...rest } = this._options
    if (startAfter !== undefined && !this._handedOut) return { ...rest, startAfter: this._readToken }
    return { ...rest, resumeAfter: this._readToken }
  }

  _noteToken(token) {
    if (token != null && !sameToken(token, this._token)) {
      this._token = token
      this.emit('resumeTokenChanged', token)
    }
  }

  /** Emitter mode: reads while someone listens for 'change'. Never rejects. */
  async _stream() {
    if (this._streaming) return
    this._streaming = true
    try {
      while (!this._closed && this.listenerCount('change') > 0) {
        let change
        try {
          change = await this._serial(() => this._step())
        } catch (e) {
          if (e && (e.code === 'ERR_SYNC_CLOSED' || e.message === CLOSED)) {
            // Closed: by close(), by the server (after an invalidate
            // event), or with the instance. It ends quietly.
            await this.close()
            return
          }
          // As the driver: an error the engine's stream did not resume from
          // is emitted and the stream closed; one that kept it from opening
          // closes it first (the driver's cursor closes, then it emits).
          if (this._failedOp === 'watch') {
            await this.close()
            this._emitError(e)
          } else {
            this._emitError(e)
            await this.close()
          }
          return
        }
        if (!change) continue
        try {
          this.emit('change', this._handOut(change))
        } catch (e) {
          // A listener that throws: 'error', as with the driver, and the
          // stream goes on.
          this._emitError(e)
        }
      }
    } finally {
      this._streaming = false
    }
  }

  /**
   * 'error' to its listeners; with none, a process warning instead of the
   * exception an EventEmitter would throw here, which nothing could catch
   * and would end the process.
   */
  _emitError(e) {
    if (this.listenerCount('error') > 0) this.emit('error', e)
    else process.emitWarning(`dual-mongo-sync: a change stream error with no 'error' listener: ${e && e.stack ? e.stack : e}`, 'ChangeStreamWarning')
  }
}

function sameToken(a, b) {
  if (a === b) return true
  if (a == null || b == null) return false
  return JSON.stringify(a) === JSON.stringify(b)
}

module.exports = { ChangeStream }
