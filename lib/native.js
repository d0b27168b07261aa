'use strict'
// Loads the compiled addon (through the napi-generated loader) once.
const { SyncError } = require('./errors')

let native
function loadNative() {
  if (native) return native
  try {
    native = require('../binding.js')
  } catch (e) {
    throw new SyncError(
      `dual-mongo-sync: the native addon could not be loaded (${e.message}). ` +
        'Build it with `npm run build` (needs a Rust toolchain) or reinstall the package.',
      'ERR_SYNC_NATIVE',
    )
  }
  return native
}

module.exports = { loadNative }
