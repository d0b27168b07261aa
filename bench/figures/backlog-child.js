'use strict'
// The process of figure 4 (see backlog.js): opens the addon, pauses it,
// captures N inserts, reads RSS and the journal size, resumes, waits for the
// drain, and prints one JSON line with the figures. Progress on stderr.
const { createSync } = require('../..')
const { makeDocs } = require('../lib/doc')
const { now } = require('../lib/load')
const fs = require('node:fs')
const { dirBytes, gc, MB } = require('../lib/context')
const { median } = require('../lib/stats')

/** Resident memory split as Linux reports it: anonymous (heaps) and file-backed (mapped files), in MB. */
function rssParts() {
  const out = { anon: null, file: null, heap: process.memoryUsage().heapUsed / MB }
  try {
    const st = fs.readFileSync('/proc/self/status', 'utf8')
    const kb = (k) => {
      const m = st.match(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm'))
      return m ? Number(m[1]) / 1024 : null
    }
    out.anon = kb('RssAnon')
    out.file = kb('RssFile')
  } catch {
    // not Linux
  }
  return out
}

/** Theil-Sen slope of `[x, y]` points: the median of the pairwise slopes. */
function medianSlope(points) {
  const slopes = []
  for (let i = 0; i < points.length; i++) {
    for (let j = i + 1; j < points.length; j++) {
      slopes.push((points[j][1] - points[i][1]) / (points[j][0] - points[i][0]))
    }
  }
  return median(slopes)
}

async function main() {
  const a = JSON.parse(process.argv[2])
  const { n, batch } = a
  const sync = await createSync({ localUri: a.localUri, atlasUri: a.atlasUri, dataDir: a.dataDir, logLevel: 'warn', ...a.syncOptions })
  const coll = sync.collection('backlog')
  sync.pause()
  makeDocs(batch) // warm the generator
  gc()
  const rss0 = process.memoryUsage.rss()
  const parts0 = rssParts()
  const bytes0 = dirBytes(a.dataDir)
  // RSS after a GC at 11 points of the second half (every twentieth of n),
  // for the slope projected to 1M operations. The GCs' time is not capture
  // time.
  const marks = new Set(
    Array.from({ length: 10 }, (_, e) => Math.floor((n * (10 + e)) / 20 / batch) * batch).filter((k) => k > 0),
  )
  const samples = []
  let gcMs = 0
  let peak = rss0
  const t0 = now()
  let lastLog = t0
  for (let k = 0; k < n; k += batch) {
    if (marks.has(k)) {
      const g = now()
      gc()
      samples.push([k, process.memoryUsage.rss()])
      gcMs += now() - g
    }
    await coll.insertMany(makeDocs(Math.min(batch, n - k), k))
    peak = Math.max(peak, process.memoryUsage.rss())
    if (now() - lastLog > 10000) {
      lastLog = now()
      console.error(`captured ${k + batch}/${n}`)
    }
  }
  const captureMs = now() - t0 - gcMs
  gc()
  const rss1 = process.memoryUsage.rss()
  samples.push([n, rss1])
  console.error(`rss after GC (MB over the start) at [ops, MB]: ${JSON.stringify(samples.map(([k, r]) => [k, +((r - rss0) / MB).toFixed(1)]))}`)
  const parts1 = rssParts()
  const bytes1 = dirBytes(a.dataDir)
  const { queueSize } = await sync.metrics()
  console.error(`${queueSize} pending, journal ${((bytes1 - bytes0) / MB).toFixed(1)} MB, RSS +${((rss1 - rss0) / MB).toFixed(1)} MB; resuming`)
  const t1 = now()
  sync.resume()
  await sync.flush({ timeoutMs: a.flushTimeoutMs })
  const drainMs = now() - t1
  gc()
  const rss2 = process.memoryUsage.rss()
  await sync.close({ timeoutMs: 5000 })
  const growth = (rss1 - rss0) / MB
  const out = {
    n,
    captureRate: (n / captureMs) * 1000,
    pending: queueSize,
    rssBaseMB: rss0 / MB,
    rssGrowthMB: growth,
    rssAnonGrowthMB: parts1.anon === null ? null : parts1.anon - parts0.anon,
    rssFileGrowthMB: parts1.file === null ? null : parts1.file - parts0.file,
    heapUsedGrowthMB: parts1.heap - parts0.heap,
    rssPeakGrowthMB: (peak - rss0) / MB,
    rssAfterDrainGrowthMB: (rss2 - rss0) / MB,
    // 1M ops: the growth so far plus the second half's slope for the rest
    // (the first half also pays one-off costs: pools, SQLite cache, arenas).
    // The slope is the median of the slopes between every two samples
    // (Theil-Sen): RSS wanders by a few MB between samples (heap segments
    // come and go), which a two-point slope multiplied by 18.
    rssGrowth1M: samples.length < 2 ? null : growth + (Math.max(0, medianSlope(samples)) / MB) * (1e6 - n),
    journalBytesPerOp: (bytes1 - bytes0) / n,
    journalMB: (bytes1 - bytes0) / MB,
    drainRate: (n / drainMs) * 1000,
  }
  process.stdout.write(`${JSON.stringify(out)}\n`)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
