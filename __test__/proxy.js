'use strict'
// A TCP proxy for fault injection between the engine and "Atlas". Modes:
// - 'pass': forward everything;
// - 'cut': drop every open connection and refuse new ones (server down);
// - 'blackhole': open and new connections stay up but nothing is forwarded
//   or answered (a hung network);
// - 'latency': forward, delaying each chunk by `ms`;
// - 'reset': forward, but reset a connection once `afterBytes` bytes went
//   from client to server on it (a reset in the middle of a batch).
// With `state.tap` set to an array, every chunk from client to server is
// also pushed there (to check what a command carried).
const net = require('node:net')

async function startProxy(targetPort, targetHost = '127.0.0.1') {
  const conns = new Set()
  const state = { mode: 'pass', ms: 0, afterBytes: 0, resets: 0, accepted: 0, tap: null }
  const server = net.createServer((client) => {
    state.accepted += 1
    if (state.mode === 'cut') return client.destroy()
    const conn = { client, upstream: null, sent: 0, held: state.mode === 'blackhole' }
    conns.add(conn)
    client.on('error', () => {})
    const drop = () => {
      conns.delete(conn)
      client.destroy()
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
    /** Switches mode; 'cut' and 'blackhole' also drop what is open now. */
    set(mode, opts = {}) {
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
