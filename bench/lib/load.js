'use strict'
// Load generators: closed loop (N operations, C at a time, as fast as the
// server answers) and open loop (operations started on a fixed schedule).

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const now = () => performance.now()

/** CPU time (user + system, µs) of this whole process, tokio threads included. */
function cpuNow() {
  const u = process.cpuUsage()
  return u.user + u.system
}

/**
 * Runs `fn(i)` for i in 0..n with `concurrency` calls in flight.
 * Returns `{ n, lat (ms per op, Float64Array), wallMs, cpuUs }`.
 */
async function closedLoop(n, concurrency, fn) {
  const lat = new Float64Array(n)
  let next = 0
  const cpu0 = cpuNow()
  const t0 = now()
  async function worker() {
    for (;;) {
      const i = next++
      if (i >= n) return
      const s = now()
      await fn(i)
      lat[i] = now() - s
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, n)) }, worker))
  const wallMs = now() - t0
  return { n, lat, wallMs, cpuUs: cpuNow() - cpu0 }
}

/**
 * Starts `fn(i)` for i in 0..n at `rate` calls per second (open loop: a
 * slow call does not delay the next start), at most `maxInFlight` at once.
 * `fn` resolves with anything; the start time of call i is `t0 + i/rate`.
 * Returns `{ n, lat, wallMs, behindMs }` (behindMs: how late the last start was).
 */
async function openLoop(n, rate, fn, { maxInFlight = 512 } = {}) {
  const lat = new Float64Array(n)
  const inflight = new Set()
  const errors = []
  const t0 = now()
  let i = 0
  let behindMs = 0
  while (i < n) {
    const due = t0 + (i * 1000) / rate
    const t = now()
    if (due > t + 0.5) {
      await sleep(due - t)
      continue
    }
    if (inflight.size >= maxInFlight) {
      await Promise.race(inflight)
      continue
    }
    behindMs = Math.max(0, t - due)
    const k = i++
    const s = now()
    const p = Promise.resolve()
      .then(() => fn(k))
      .then(
        () => {
          lat[k] = now() - s
        },
        (e) => errors.push(e),
      )
      .finally(() => inflight.delete(p))
    inflight.add(p)
  }
  await Promise.all(inflight)
  if (errors.length) throw errors[0]
  return { n, lat, wallMs: now() - t0, behindMs }
}

module.exports = { sleep, now, cpuNow, closedLoop, openLoop }
