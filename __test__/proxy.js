'use strict'
// A TCP proxy for fault injection between the engine and "Atlas". Modes:
// - 'pass': forward everything;
// - 'cut': drop every open connection and refuse new ones (server down);
// - 'blackhole': open and new connections stay up but nothing is forwarded
//   or answered (a hung network);
// - 'latency': forward, delaying each chunk by `ms`;
// - 'reset': forward, but reset a connection once `afterBytes` bytes went
//   from client to server on it (a reset in the middle of a batch).
// - 'hold': what clients send on the connections open now or opened while
//   holding is kept back, not forwarded, and those connections stay held
//   after the mode changes; `release()` then delivers it to the server even
//   if the client has gone (a command that stalled on the way and lands
//   late).
// With `state.tap` set to an array, every chunk from client to server is
// also pushed there (to check what a command carried). With `state.holdIf`
// set to a Buffer, a connection whose client sends a chunk holding those
// bytes is held from that chunk on, as in 'hold' (one command stalls,
// the others pass).
const net = require('node:net')

async function startProxy(targetPort, targetHost = '127.0.0.1') {
  const conns = new Set()
  const state = { mode: 'pass', ms: 0, afterBytes: 0, resets: 0, accepted: 0, tap: null, holdIf: null }
  const server = net.createServer((client) => {
    state.accepted += 1
    if (state.mode === 'cut') return client.destroy()
    const conn = { client, upstream: null, sent: 0, held: state.mode === 'blackhole', kept: state.mode === 'hold' ? [] : null }
    conns.add(conn)
    client.on('error', () => {})
    const drop = () => {
      client.destroy()
      if (conn.kept && conn.kept.length) return // its upstream waits for release()
      conns.delete(conn)
      if (conn.upstream) conn.upstream.destroy()
    }
    client.on('close', drop)
    if (conn.held) return // never forwarded, never answered
    const upstream = net.connect(targetPort, targetHost)
    conn.upstream = upstream
    upstream.on('error', drop)
    upstream.on('close', drop)
    const relay = (from, to, counts) =>
      from.on('data', (chunk) => {
        if (state.mode === 'blackhole') return // swallowed: the peer waits forever
        if (counts && state.tap) state.tap.push(chunk)
        if (counts && state.holdIf && !conn.kept && chunk.includes(state.holdIf)) conn.kept = []
        if (counts && conn.kept) return void conn.kept.push(chunk)
        if (counts && state.mode === 'reset') {
          conn.sent += chunk.length
          if (conn.sent > state.afterBytes) {
            state.resets += 1
            client.resetAndDestroy()
            upstream.resetAndDestroy()
            return
          }
        }
        if (state.mode === 'latency' && state.ms > 0) setTimeout(() => to.writable && to.write(chunk), state.ms)
        else if (to.writable) to.write(chunk)
      })
    relay(client, upstream, true)
    relay(upstream, client, false)
  })
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  const port = server.address().port
  return {
    port,
    uri: `mongodb://127.0.0.1:${port}/?directConnection=true`,
    state,
    /** Bytes kept back by 'hold', not yet released. */
    keptBytes() {
      let n = 0
      for (const c of conns) for (const k of c.kept || []) n += k.length
      return n
    },
    /** Delivers what 'hold' kept back, then closes those connections. */
    async release() {
      for (const c of conns) {
        if (!c.kept) continue
        const chunks = c.kept
        c.kept = null
        if (c.upstream && c.upstream.writable) for (const k of chunks) c.upstream.write(k)
        setTimeout(() => {
          conns.delete(c)
          c.client.destroy()
          if (c.upstream) c.upstream.end()
        }, 500)
      }
    },
    /** Switches mode; 'cut' and 'blackhole' also drop what is open now. */
    set(mode, opts = {}) {
      if (mode === 'hold') for (const c of conns) c.kept ??= []
      state.mode = mode
      state.ms = opts.ms || 0
      state.afterBytes = opts.afterBytes || 0
      if (mode === 'cut') {
        for (const c of conns) {
          c.client.destroy()
          if (c.upstream) c.upstream.destroy()
        }
        conns.clear()
      }
    },
    async close() {
      this.set('cut')
      await new Promise((r) => server.close(r))
    },
  }
}

module.exports = { startProxy }
