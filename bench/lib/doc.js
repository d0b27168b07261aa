'use strict'
// The benchmark document: about 1 KB of BSON with the types an app writes
// (ObjectId, Date, Decimal128, Long, Int32, Double, nested document, array,
// strings). Every figure uses the same shape, for the addon and the driver.
const { ObjectId, Decimal128, Long, Int32, Double, calculateObjectSize } = require('bson')

const TARGET_BYTES = 1024
const CITIES = ['Cairo', 'Riyadh', 'Dubai', 'Amman', 'Casablanca', 'Tunis', 'Doha', 'Beirut']
const WORDS = 'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua'.split(' ')

function text(i, n) {
  const out = []
  for (let k = 0; out.join(' ').length < n; k++) out.push(WORDS[(i * 7 + k * 3) % WORDS.length])
  return out.join(' ').slice(0, n)
}

function base(i, padLen) {
  return {
    _id: new ObjectId(),
    seq: new Int32(i),
    createdAt: new Date(),
    orderNo: Long.fromNumber(9_000_000_000 + i),
    total: Decimal128.fromString(`${(i % 100000) + 19}.95`),
    qty: new Int32((i % 50) + 1),
    weight: new Double(0.5 + (i % 997) / 13),
    status: ['new', 'paid', 'shipped', 'done'][i % 4],
    customer: {
      name: `Customer ${i}`,
      email: `customer${i}@example.com`,
      phone: `+20-100-${String(i % 10000000).padStart(7, '0')}`,
      address: { street: `${(i % 300) + 1} Nile Street`, city: CITIES[i % CITIES.length], zip: String(10000 + (i % 89999)), country: 'EG' },
      vip: i % 10 === 0,
    },
    items: [0, 1, 2].map((k) => ({
      sku: `SKU-${(i + k) % 5000}`,
      qty: new Int32(k + 1),
      price: Decimal128.fromString(`${(k + 1) * 3}.50`),
      addedAt: new Date(1_700_000_000_000 + i * 1000 + k),
    })),
    tags: ['bench', `t${i % 17}`, `g${i % 5}`],
    counter: new Int32(0),
    note: text(i, padLen),
  }
}

// Pad once so that a document is TARGET_BYTES of BSON.
const PAD = (() => {
  const probe = base(123456, 0)
  return Math.max(0, TARGET_BYTES - calculateObjectSize(probe) - 2)
})()

/** A fresh ~1 KB document (new ObjectId) numbered `i`. */
function makeDoc(i) {
  return base(i, PAD)
}

/** `n` fresh documents numbered from `from`. */
function makeDocs(n, from = 0) {
  const out = new Array(n)
  for (let k = 0; k < n; k++) out[k] = makeDoc(from + k)
  return out
}

/** The update every updateOne of the benchmark sends. */
function makeUpdate(i) {
  return { $inc: { counter: 1 }, $set: { updatedAt: new Date(), status: ['new', 'paid', 'shipped', 'done'][(i + 1) % 4] } }
}

module.exports = { makeDoc, makeDocs, makeUpdate, DOC_BYTES: calculateObjectSize(makeDoc(123456)) }
