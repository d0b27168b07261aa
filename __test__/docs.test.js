'use strict'
// The documentation tells the truth: every environment variable the code
// reads is in docs/CONFIGURATION.md, the README's quick-start snippet runs,
// and every command, npm script, HTTP endpoint and relative link named in
// README.md and docs/*.md exists.
const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const http = require('node:http')
const path = require('node:path')
const { spawnSync, spawn } = require('node:child_process')
const { createSync } = require('..')
const { createApp } = require('../examples/bomba-server/app')
const { LOCAL, ATLAS, uniqueDb, withDb, tempDir, driver, closeDrivers, assertSame, syncOptions } = require('./helpers')

const root = path.join(__dirname, '..')
const read = (rel) => fs.readFileSync(path.join(root, rel), 'utf8')
const DOCS = ['README.md', 'examples/bomba-server/README.md', ...fs.readdirSync(path.join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)]
const TOKEN = 'docs-test-admin-token-0123456789'

after(closeDrivers)

/** Files under `dir` (relative to the repo) whose names end with one of `exts`. */
function walk(dir, exts) {
  const abs = path.join(root, dir)
  if (!fs.existsSync(abs)) return []
  return fs.readdirSync(abs, { withFileTypes: true }).flatMap((e) => {
    const rel = path.join(dir, e.name)
    if (e.isDirectory()) return e.name === 'node_modules' ? [] : walk(rel, exts)
    return exts.some((x) => e.name.endsWith(x)) ? [rel] : []
  })
}

/** `[env var, JS option]` of every setting, from `SETTINGS` in src/config.rs. */
function settings() {
  const src = read('src/config.rs')
  const block = /pub const SETTINGS[^=]*=\s*&\[([\s\S]*?)\];/.exec(src)
  assert.ok(block, 'SETTINGS not found in src/config.rs')
  const pairs = [...block[1].matchAll(/\("([A-Z0-9_]+)",\s*"(\w+)"\)/g)].map((m) => [m[1], m[2]])
  assert.ok(pairs.length >= 10, 'SETTINGS looks empty')
  return pairs
}

/** Every environment variable the code reads, with where it is read. */
function envVarsReadByCode() {
  const found = new Map()
  const add = (name, file) => found.set(name, found.get(name) || file)
  for (const file of walk('src', ['.rs'])) {
    for (const m of read(file).matchAll(/env::var(?:_os)?\(\s*"([A-Za-z0-9_]+)"\s*\)/g)) add(m[1], file)
  }
  const js = [...['lib', 'bin', 'scripts', 'examples'].flatMap((d) => walk(d, ['.js', '.mjs', '.cjs'])), '__test__/helpers.js']
  for (const file of js) {
    const text = read(file)
    for (const m of text.matchAll(/process\.env\.([A-Z][A-Z0-9_]*)/g)) add(m[1], file)
    for (const m of text.matchAll(/process\.env\[\s*['"]([A-Z][A-Z0-9_]*)['"]\s*\]/g)) add(m[1], file)
    for (const m of text.matchAll(/\{([^{}]*)\}\s*=\s*process\.env\b/g)) {
      for (const name of m[1].split(',').map((s) => s.split(':')[0].trim())) if (/^[A-Z][A-Z0-9_]*$/.test(name)) add(name, file)
    }
  }
  return found
}

test('docs/CONFIGURATION.md documents every environment variable the code reads', () => {
  const doc = read('docs/CONFIGURATION.md')
  const documented = (name) => doc.includes('`' + name + '`')
  for (const [name, option] of settings()) {
    assert.ok(new RegExp('^### `' + name + '`$', 'm').test(doc), `${name} (src/config.rs SETTINGS) has no "### \`${name}\`" section in docs/CONFIGURATION.md`)
    assert.ok(documented(option), `the JS option '${option}' of ${name} is not in docs/CONFIGURATION.md`)
  }
  const dts = /export interface SyncOptions \{([\s\S]*?)\n\}/.exec(read('index.d.ts'))
  assert.ok(dts, 'SyncOptions not found in index.d.ts')
  for (const [name, option] of settings()) {
    assert.ok(new RegExp(`^\\s*${option}\\?:`, 'm').test(dts[1]), `the JS option '${option}' of ${name} is not in SyncOptions of index.d.ts`)
  }
  const used = envVarsReadByCode()
  for (const name of ['NODE_APP_INSTANCE', 'SYNC_ADMIN_TOKEN', 'TEST_LOCAL_URI', 'TEST_ATLAS_URI']) {
    assert.ok(used.has(name), `the scan missed ${name}: the patterns of this test need updating`)
  }
  const missing = [...used].filter(([name]) => !documented(name)).map(([name, file]) => `${name} (read in ${file})`)
  assert.deepEqual(missing, [], 'environment variables read by the code but not documented in docs/CONFIGURATION.md')
})

/** The first ```js block of README.md. */
function readmeSnippet() {
  const m = /```js\n([\s\S]*?)```/.exec(read('README.md'))
  assert.ok(m, 'README.md has no ```js block')
  return m[1]
}

test("the README's quick-start snippet runs against the test servers and exits 0", async () => {
  const db = uniqueDb('readme')
  // Inside the repository, so that require('dual-mongo-sync') resolves to it
  // (a package may require itself by name through its "exports").
  const dir = path.join(root, '.test-data')
  fs.mkdirSync(dir, { recursive: true })
  const file = path.join(dir, `readme-snippet-${process.pid}.js`)
  const body = readmeSnippet().split('\n').map((l) => '  ' + l).join('\n')
  fs.writeFileSync(file, `'use strict'\n;(async () => {\n${body}\n})().catch((e) => {\n  console.error(e)\n  process.exit(1)\n})\n`)
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SYNC_') && !k.startsWith('MONGODB_')))
  Object.assign(env, { MONGODB_URI: withDb(LOCAL, db), MONGODB_ATLAS_URI: ATLAS, SYNC_DATA_DIR: tempDir(), SYNC_LOG_LEVEL: 'warn' })
  try {
    const r = await new Promise((resolve) => {
      const child = spawn(process.execPath, [file], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] })
      let out = ''
      child.stdout.on('data', (d) => (out += d))
      child.stderr.on('data', (d) => (out += d))
      const timer = setTimeout(() => child.kill('SIGKILL'), 60000)
      child.once('exit', (code, signal) => {
        clearTimeout(timer)
        resolve({ code, signal, out })
      })
    })
    assert.equal(r.code, 0, `the snippet failed (signal ${r.signal}):\n${r.out}`)
  } finally {
    fs.rmSync(file, { force: true })
  }
  const [local, atlas] = await Promise.all([driver(LOCAL), driver(ATLAS)])
  const colls = (await local.db(db).listCollections().toArray()).map((c) => c.name)
  assert.ok(colls.length > 0, 'the snippet wrote nothing')
  await assertSame(local, atlas, db, colls)
})

/** Every `npx dual-mongo-sync <command> [--flags]`, `npm run <script>`, `npm test|start` and `/api/sync/<route>` in the docs. */
function namedInDocs() {
  const cli = new Map()
  const scripts = new Map()
  const routes = new Map()
  for (const file of DOCS) {
    for (const line of read(file).split('\n')) {
      for (const m of line.matchAll(/npx dual-mongo-sync\s+([a-z][a-z-]*)([^`|\n]*)/g)) {
        const flags = [...m[2].matchAll(/(?:^|[\s[])--([a-z][a-z-]*)/g)].map((f) => f[1])
        const key = [m[1], ...flags].join(' ')
        if (!cli.has(key)) cli.set(key, file)
      }
      for (const m of line.matchAll(/npm run ([a-z][\w:-]*)/g)) if (!scripts.has(m[1])) scripts.set(m[1], file)
      for (const m of line.matchAll(/npm (test|start)\b/g)) if (!scripts.has(m[1])) scripts.set(m[1], file)
      for (const m of line.matchAll(/\/api\/sync\/([a-z]+)/g)) {
        const before = line.slice(0, m.index)
        const method = /\b(GET|POST)\s+(?:\S*?)$/.exec(before) || /-X\s+(GET|POST)\b/.exec(line)
        const key = `${method ? method[1] : 'ANY'} /${m[1]}`
        if (!routes.has(key)) routes.set(key, file)
      }
    }
  }
  return { cli, scripts, routes }
}

test('every `npx dual-mongo-sync` command and flag named in the docs is in the CLI help', () => {
  const pkg = JSON.parse(read('package.json'))
  assert.equal(pkg.bin && pkg.bin['dual-mongo-sync'], 'bin/dual-mongo-sync.js', 'package.json needs "bin": { "dual-mongo-sync": ... } for npx')
  const r = spawnSync(process.execPath, [path.join(root, 'bin', 'dual-mongo-sync.js'), '--help'], { encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
  const { cli } = namedInDocs()
  assert.ok(cli.size >= 5, `expected the docs to name the CLI commands, found ${[...cli.keys()]}`)
  for (const [key, file] of cli) {
    const [command, ...flags] = key.split(' ')
    assert.match(r.stdout, new RegExp(`^  ${command}\\s`, 'm'), `${file}: 'npx dual-mongo-sync ${command}' is not a command of the CLI`)
    for (const flag of flags) assert.ok(r.stdout.includes(`--${flag}`), `${file}: flag --${flag} (of ${command}) is not in the CLI help`)
  }
})

test('every `npm run` script named in the docs is in package.json', () => {
  const pkg = JSON.parse(read('package.json'))
  const { scripts } = namedInDocs()
  assert.ok(scripts.has('demo'), 'the docs should name npm run demo')
  for (const [name, file] of scripts) assert.ok(pkg.scripts[name], `${file}: npm script '${name}' does not exist in package.json`)
})

test('every relative link in the docs points to an existing file', () => {
  for (const file of DOCS) {
    for (const m of read(file).matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1].split('#')[0]
      if (!target || /^[a-z]+:/i.test(target)) continue
      assert.ok(fs.existsSync(path.join(root, path.dirname(file), target)), `${file}: broken link ${m[1]}`)
    }
  }
})

test('every /api/sync endpoint named in the docs is answered by the router (not 404)', async () => {
  const db = uniqueDb('docsroutes')
  const sync = await createSync(syncOptions(db))
  const server = http.createServer(createApp(sync, { adminToken: TOKEN }))
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  const base = `http://127.0.0.1:${server.address().port}/api/sync`
  try {
    const { routes } = namedInDocs()
    assert.ok(routes.size >= 5, `expected the docs to name the endpoints, found ${[...routes.keys()]}`)
    for (const [key, file] of routes) {
      const [method, route] = key.split(' ')
      // POSTs go without the token: a 401 proves the route and method exist, without side effects.
      const res = await fetch(base + route, { method: method === 'ANY' ? 'GET' : method })
      await res.arrayBuffer()
      assert.notEqual(res.status, 404, `${file}: ${key} answered 404`)
      if (method !== 'ANY') assert.notEqual(res.status, 405, `${file}: ${key}: the route exists but not with ${method}`)
    }
  } finally {
    await new Promise((r) => server.close(r))
    await sync.close()
  }
})
