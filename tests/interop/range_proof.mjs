// Verifies snap/1 range proofs produced by leafsync's server with @ethereumjs/mpt's
// verifyMerkleRangeProof (a port of go-ethereum's trie.VerifyRangeProof), an implementation
// independent of ours. Used by crates/serve/tests/snap_mpt_interop.rs.
//
// Input: a JSON file (argv[2]) holding a list of cases
//   { name, root, first, last, keys: [hex], values: [hex], proof: [hex] }
// with `last` null for a zero-element proof. Output: one JSON line per case,
//   { name, ok: true, more } or { name, ok: false, error }.
import { readFileSync } from 'node:fs'
import { verifyMerkleRangeProof } from '@ethereumjs/mpt'
import { hexToBytes } from '@ethereumjs/util'

const cases = JSON.parse(readFileSync(process.argv[2], 'utf8'))
for (const c of cases) {
  try {
    const more = await verifyMerkleRangeProof(
      hexToBytes(c.root),
      hexToBytes(c.first),
      c.last === null ? null : hexToBytes(c.last),
      c.keys.map(hexToBytes),
      c.values.map(hexToBytes),
      c.proof.map(hexToBytes),
    )
    console.log(JSON.stringify({ name: c.name, ok: true, more }))
  } catch (e) {
    console.log(JSON.stringify({ name: c.name, ok: false, error: String(e && e.message ? e.message : e) }))
  }
}
