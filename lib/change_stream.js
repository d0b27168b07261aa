'use strict'
// collection.watch() and db.watch(): the official driver's ChangeStream, on
// the local server. The engine holds the driver's stream (which resumes by
// itself after a resumable error); each native call here is one server
// round trip, at most `maxAwaitTimeMS` (1 s by default) long. Use it as an
// iterator (`next`, `tryNext`, `hasNext`, `for await`) or as an emitter
// (`on('change', ...)`), not both, as with the driver.
const { EventEmitter } = require('node:events')
const { encode, decode } = require('./bson')
const { fromNative, MongoAPIError } = require('./errors')

const CLOSED = 'ChangeStream is closed'

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
    this._token = options.startAfter ?? options.resumeAfter ?? null
    this._mode = null
    this._streaming = false
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

  get closed() {
    return this._closed
  }

  /** The next change; waits until there is one. */
  async next() {
    this._setMode('iterator')
    return this._serial(async () => {
      for (;;) {
        if (this._buffer.length) return this._buffer.shift()
        const change = await this._step()
        if (change) return change
      }
    })
  }

  /** The next change if the server has one within one round trip, else null. */
  async tryNext() {
    this._setMode('iterator')
    return this._serial(async () => (this._buffer.length ? this._buffer.shift() : this._step()))
  }

  /** Waits until a change is there to read; resolves with true. */
  async hasNext() {
    this._setMode('iterator')
    return this._serial(async () => {
      while (!this._buffer.length) {
        const change = await this._step()
        if (change) this._buffer.push(change)
      }
      return true
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
    if (this._closed) return
    this._closed = true
    const id = this._id
    this._id = null
    if (id) {
      try {
        await this._native('changeClose', { stream: id })
      } catch {
        // The instance was closed: its streams went with it.
      }
    }
    this.emit('close')
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
    const native = this._sync._native()
    try {
      return decode(await native.read(this._db, this._coll, op, encode(op, args)))
    } catch (e) {
      throw fromNative(e)
    }
  }

  /** One round trip: opens the stream first if it is not open; a change or null. */
  async _step() {
    if (this._closed) throw new MongoAPIError(CLOSED)
    const opening = this._id === null
    const answer = opening
      ? await this._native('watch', { pipeline: this._pipeline, options: this._options })
      : await this._native('changeNext', { stream: this._id })
    if (this._closed) {
      // close() ran meanwhile; a stream this call opened is closed too.
      if (opening && answer.stream) await this._native('changeClose', { stream: answer.stream }).catch(() => {})
      throw new MongoAPIError(CLOSED)
    }
    this._id = answer.stream || null
    if (answer.resumeToken != null && !sameToken(answer.resumeToken, this._token)) {
      this._token = answer.resumeToken
      this.emit('resumeTokenChanged', this._token)
    }
    const change = answer.event ?? null
    if (!answer.stream && !opening) {
      // The server ended the stream (an invalidate event: the collection
      // was dropped or renamed): it is closed once that event is read.
      if (change) {
        this._closeSoon()
        return change
      }
      await this.close()
      throw new MongoAPIError(CLOSED)
    }
    return change
  }

  _closeSoon() {
    this._closed = true
    this._id = null
    process.nextTick(() => this.emit('close'))
  }

  /** Emitter mode: reads while someone listens for 'change'. */
  async _stream() {
    if (this._streaming) return
    this._streaming = true
    try {
      while (!this._closed && this.listenerCount('change') > 0) {
        let change
        try {
          change = await this._serial(() => this._step())
        } catch (e) {
          if (this._closed) return
          if (e && e.code === 'ERR_SYNC_CLOSED') {
            // The instance was closed: the stream ends with it, quietly.
            await this.close()
            return
          }
          // As the driver: an error the engine's stream did not resume from
          // is emitted, and the stream is closed.
          this.emit('error', e)
          await this.close()
          return
        }
        if (change) this.emit('change', change)
      }
    } finally {
      this._streaming = false
    }
  }
}

function sameToken(a, b) {
  if (a === b) return true
  if (a == null || b == null) return false
  return JSON.stringify(a) === JSON.stringify(b)
}

module.exports = { ChangeStream }
