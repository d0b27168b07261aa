'use strict'
// npm "install" hook. The package ships its compiled addon (`*.node`) when it
// was packed with `npm pack` (prepack runs the release build). When no binary
// is present and this is not a development checkout, build it from the
// bundled Rust sources with cargo, so that `npm install <path or tarball>`
// works on a machine with a Rust toolchain.
const fs = require('node:fs')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const root = path.join(__dirname, '..')
const binary = path.join(root, `dual-mongo-sync.${process.platform}-${process.arch}-gnu.node`)

function main() {
  if (fs.existsSync(binary)) return
  // In a clone of the repository `npm test` / `npm run build` build the addon
  // with the napi CLI; building a release copy here would only cost minutes.
  if (fs.existsSync(path.join(root, '.git'))) return
  console.log('dual-mongo-sync: no prebuilt addon for this platform, building it with cargo (a few minutes)')
  const r = spawnSync('cargo', ['build', '--release', '--lib'], { cwd: root, stdio: 'inherit' })
  if (r.error || r.status !== 0) {
    console.error('dual-mongo-sync: building the addon failed. Install a Rust toolchain (https://rustup.rs) and run `npm rebuild dual-mongo-sync`.')
    process.exit(1)
  }
  fs.copyFileSync(path.join(root, 'target', 'release', 'libdual_mongo_sync.so'), binary)
}

main()
