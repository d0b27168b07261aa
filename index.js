'use strict'
// dual-mongo-sync: local-first MongoDB writes, replicated to Atlas.
module.exports = require('./lib/index.js')
