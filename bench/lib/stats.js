'use strict'
// Percentiles of one run and medians (with min-max spread) over runs.

/** The q-quantile (0..1) of `values` by nearest rank; `null` when empty. */
function percentile(values, q) {
  const v = Array.from(values).filter((x) => Number.isFinite(x))
  if (v.length === 0) return null
  v.sort((a, b) => a - b)
  const rank = Math.min(v.length, Math.max(1, Math.ceil(q * v.length)))
  return v[rank - 1]
}

function median(values) {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return null
  const m = v.length >> 1
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2
}

/** `{ median, min, max, n }` of every numeric key over the runs' metric objects. */
function summarize(runs) {
  const keys = new Set()
  for (const r of runs) for (const k of Object.keys(r)) keys.add(k)
  const out = {}
  for (const k of keys) {
    const vals = runs.map((r) => r[k]).filter((x) => typeof x === 'number' && Number.isFinite(x))
    if (vals.length === 0) continue
    out[k] = { median: median(vals), min: Math.min(...vals), max: Math.max(...vals), n: vals.length }
  }
  return out
}

/** a / b, or null when either is missing or b is 0. */
function ratio(a, b) {
  if (typeof a !== 'number' || typeof b !== 'number' || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return null
  return a / b
}

module.exports = { percentile, median, summarize, ratio }
