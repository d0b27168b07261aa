'use strict'
// Starts the example app: opens dual-mongo-sync (settings from the env:
// MONGODB_URI, MONGODB_ATLAS_URI, SYNC_*), listens on PORT (default 3000),
// and on SIGINT/SIGTERM stops taking requests, then closes the sync so that
// what is queued drains to Atlas (whatever does not drain in time stays in
// the journal and is sent by the next start).
//
//   node examples/bomba-server/server.js
//   pm2 start examples/bomba-server/ecosystem.config.js
const http = require('node:http')
const { createSync } = require('../..')
const { createApp } = require('./app')

/** How long close() may drain the queue; keep below pm2's kill_timeout. */
const CLOSE_TIMEOUT_MS = 10000

function listen(server, port, host) {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve(server.address().port)
    })
  })
}

/**
 * Opens the sync and serves the app. Resolves with `{ app, sync, server, port,
 * url, stop }`; `stop()` closes the HTTP server (running requests finish),
 * then `sync.close()`. It is safe to call more than once.
 * - `port`: default env PORT, else 3000; `0` picks a free port.
 * - `host`: default all interfaces.
 * - `syncOptions`: passed to `createSync()`, overriding the env.
 * - `adminToken`, `dbName`: passed to `createApp()`.
 */
async function start({ port, host, syncOptions, adminToken, dbName, closeTimeoutMs = CLOSE_TIMEOUT_MS } = {}) {
  port = port ?? (process.env.PORT ? Number(process.env.PORT) : 3000)
  const sync = await createSync(syncOptions)
  let server
  try {
    const app = createApp(sync, { adminToken, dbName })
    server = http.createServer(app)
    const actual = await listen(server, port, host)
    let stopping = null
    const stop = () => {
      stopping ??= (async () => {
        await new Promise((resolve) => server.close(() => resolve()))
        await sync.close({ timeoutMs: closeTimeoutMs })
      })()
      return stopping
    }
    const shownHost = !host || host === '0.0.0.0' || host === '::' ? 'localhost' : host
    return { app, sync, server, port: actual, url: `http://${shownHost}:${actual}`, stop }
  } catch (e) {
    await sync.close({ timeoutMs: 1000 }).catch(() => {})
    throw e
  }
}

/** Runs the server until SIGINT or SIGTERM (pm2 sends SIGINT, then SIGKILL after kill_timeout). */
async function main() {
  const { url, stop, sync } = await start()
  console.log(`bomba example listening on ${url} (replication ${sync.enabled ? 'on' : 'off'})`)
  if (process.send) process.send('ready') // pm2 wait_ready
  const onSignal = (signal) => {
    console.log(`${signal}: closing the HTTP server, then draining the sync queue`)
    process.once(signal, () => process.exit(1)) // a second signal: stop waiting
    stop().then(
      () => process.exit(0),
      (e) => {
        console.error(`shutdown failed: ${e.message}`)
        process.exit(1)
      },
    )
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
}

if (require.main === module) {
  main().catch((e) => {
    console.error(`bomba example failed to start: ${e.message}`)
    process.exit(1)
  })
}

module.exports = { start, createApp }
