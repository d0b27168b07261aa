'use strict'
// A forwarder for the benchmark's reference rows: what an application could
// do with the official driver alone to copy its writes to Atlas, with none
// of the addon's guarantees (nothing captured or journaled, nothing read
// back, lost on a crash). Items pushed after each local write are sent in
// chunks of up to `max`, one chunk at a time, each after `lingerMs`.

const { sleep } = require('./load')

class Forwarder {
  /** `send(chunk)` writes one chunk to Atlas and resolves when acknowledged. */
  constructor(send, { max = 1000, lingerMs = 0 } = {}) {
    this.send = send
    this.max = max
    this.lingerMs = lingerMs
    this.queue = []
    this.loop = null
    this.sent = 0
    this.error = null
  }

  push(...items) {
    for (const x of items) this.queue.push(x)
    if (!this.loop) this.loop = this._run()
  }

  async _run() {
    try {
      while (this.queue.length) {
        if (this.lingerMs) await sleep(this.lingerMs)
        const chunk = this.queue.splice(0, this.max)
        await this.send(chunk)
        this.sent += chunk.length
      }
    } catch (e) {
      this.error = this.error || e
      this.queue.length = 0
    }
    // Cleared in the same tick as the last empty-queue check, so a push
    // cannot land between them and be left unsent.
    this.loop = null
  }

  /** Resolves when everything pushed so far is acknowledged; throws a send's error. */
  async idle() {
    while (this.loop) await this.loop
    if (this.error) throw this.error
  }
}

module.exports = { Forwarder }
