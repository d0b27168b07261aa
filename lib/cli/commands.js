'use strict'
// The operations commands: status, verify and full. Each takes the open Sync,
// the Output and the parsed flags, prints its result and resolves with the
// exit code (0 success, 1 failure or differences).
const { EJSON } = require('bson')
const { whileRunning } = require('./output')

const ATLAS_PING_WAIT_MS = 3000
const SHOWN_IDS = 10

/**
 * Health, once the first Atlas ping had time to answer: right after opening,
 * the engine reports Atlas down until its first ping succeeds.
 */
async function settledHealth(sync) {
  const deadline = Date.now() + ATLAS_PING_WAIT_MS
  for (;;) {
    const health = await sync.health()
    if (health.checks.atlasConnection.pass || Date.now() > deadline) return health
    await new Promise((r) => setTimeout(r, 100))
  }
}

function checkLine(name, check) {
  const threshold = check.threshold === undefined ? '' : ` (threshold ${check.threshold})`
  return `  ${check.pass ? 'ok  ' : 'FAIL'} ${name.padEnd(16)} ${check.value}${threshold}`
}

function statusLines(health, m) {
  const age = m.oldestPendingAgeMs === null ? '' : `, oldest ${Math.round(m.oldestPendingAgeMs / 1000)} s`
  const fs = m.fullSync
  return [
    `status: ${health.status}`,
    ...Object.entries(health.checks).map(([name, check]) => checkLine(name, check)),
    `replication: ${m.enabled ? 'enabled' : 'disabled'}${m.paused ? ', paused' : ''}`,
    `queue: ${m.queueSize} change(s) waiting${age}; dead letters: ${m.deadLetterSize}`,
    `full sync: ${fs.state}${fs.id ? ` (${fs.id}, ${fs.documentsDone}/${fs.documentsTotal} documents)` : ''}`,
    `last error: ${m.lastError ? m.lastError.message : 'none'}`,
  ]
}

/** `status`: health and the journal-wide metrics; exit 0 only when healthy. */
async function status(sync, out) {
  const health = await settledHealth(sync)
  const metrics = await sync.metrics()
  out.result({ health, metrics }, statusLines(health, metrics))
  return health.status === 'healthy' ? 0 : 1
}

function idList(ids, count) {
  const shown = ids.slice(0, SHOWN_IDS).map((id) => EJSON.stringify(id, { relaxed: true }))
  const more = count - shown.length
  return shown.join(', ') + (more > 0 ? ` and ${more} more` : '')
}

function collectionLines(c) {
  const head = `${c.ns}: local ${c.localCount}, atlas ${c.atlasCount}`
  const kinds = ['missing', 'extra', 'different'].map((k) => [k, c[`${k}Count`] ?? c[k].length, c[k]])
  const diffs = kinds.filter(([, n]) => n > 0)
  const indexes = [
    ['indexes missing', c.indexesMissing || []],
    ['indexes different', c.indexesDifferent || []],
    ['collection options different', c.optionsDifferent || []],
  ].filter(([, names]) => names.length > 0)
  if (diffs.length === 0 && indexes.length === 0) return [`  same      ${head}`]
  const repaired = c.repaired ? `, ${c.repaired} repaired` : ''
  const idxRepaired = (c.indexesRepaired ? `, ${c.indexesRepaired} index(es) repaired` : '') +
    (c.optionsRepaired ? `, ${c.optionsRepaired} option(s) repaired` : '')
  return [
    `  DIFFERENT ${head}${repaired}${idxRepaired}`,
    ...diffs.map(([k, n, ids]) => `            ${k} on Atlas (${n}): ${idList(ids, n)}`),
    ...indexes.map(([k, names]) => `            ${k} on Atlas (${names.length}): ${names.join(', ')}`),
  ]
}

function verifyLines(report) {
  const summary = report.ok
    ? `verify: local and Atlas are the same (${report.collections.length} collection(s))`
    : `verify: ${report.differences} difference(s), ${report.repaired} repaired` +
      (report.indexDifferences ? `; ${report.indexDifferences} index difference(s), ${report.indexesRepaired} repaired` : '') +
      (report.optionDifferences ? `; ${report.optionDifferences} collection option difference(s), ${report.optionsRepaired} repaired` : '')
  return [summary, ...report.collections.flatMap(collectionLines)]
}

/** Whether a verify run succeeded: no differences, or (with --repair) all repaired. */
function verifyPassed(report, repair) {
  const indexesFixed = (report.indexesRepaired ?? 0) === (report.indexDifferences ?? 0) &&
    (report.optionsRepaired ?? 0) === (report.optionDifferences ?? 0)
  return report.ok || (repair && report.repaired === report.differences && indexesFixed)
}

function scopeOf(flags) {
  return flags.collections ? { collections: flags.collections } : {}
}

/** `verify [--repair] [--collections a,b]`: exit 1 when differences remain. */
async function verify(sync, out, flags) {
  const options = { ...scopeOf(flags), repair: Boolean(flags.repair) }
  const progress = out.progress(options.repair ? 'verify --repair' : 'verify')
  const report = await whileRunning(sync.verify(options), async () => progress.update(0, null)).finally(() => progress.end())
  out.result(report, verifyLines(report))
  return verifyPassed(report, options.repair) ? 0 : 1
}

function fullLines(s) {
  const took = s.finishedAtMs && s.startedAtMs ? `, ${((s.finishedAtMs - s.startedAtMs) / 1000).toFixed(1)} s` : ''
  const head = `full sync ${s.id}: ${s.state}${took}`
  const counts = `  ${s.collectionsDone}/${s.collectionsTotal} collection(s), ${s.documentsDone}/${s.documentsTotal} document(s)`
  return s.error ? [head, counts, `  error: ${s.error}`] : [head, counts]
}

/** `full [--collections a,b]`: runs (or joins) a full sync to its end; exit 1 if it failed. */
async function full(sync, out, flags) {
  const progress = out.progress('full sync')
  const tick = async () => {
    const s = await sync.fullSyncStatus()
    progress.update(s.documentsDone, s.documentsTotal || null, `${s.collectionsDone}/${s.collectionsTotal} collections`)
  }
  const final = await whileRunning(sync.fullSync(scopeOf(flags)), tick).finally(() => progress.end())
  out.result(final, fullLines(final))
  return final.state === 'done' ? 0 : 1
}

module.exports = { status, verify, full, settledHealth, verifyPassed }
