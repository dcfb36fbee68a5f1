// What the interop peers (peer.mjs, snap_peer.mjs) share: events as JSON lines on stdout, the
// hard timeout, snappy-compressed sends, and the RLPx server's error and listening events.
import { RLP } from '@ethereumjs/rlp'
import { bytesToHex } from '@ethereumjs/util'
import * as snappy from 'snappyjs'

export const HARD_TIMEOUT_MS = 20000

// Prints one event: one JSON object per line.
export const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

// Ends the process with status 2 after HARD_TIMEOUT_MS, whatever else happens.
export function exitAfterHardTimeout() {
  setTimeout(() => {
    out({ event: 'error', message: 'hard timeout' })
    process.exit(2)
  }, HARD_TIMEOUT_MS).unref()
}

// ethereumjs does not snappy-compress subprotocol messages itself; a real peer must.
export const snappySend = (send) => (code, payload) => send(code, snappy.compress(RLP.encode(payload)))

// Reports the errors of `rlpx`, and its id and port once it listens (then calls `onListening`).
export function reportServer(rlpx, onListening = () => {}) {
  rlpx.events.on('peer:error', (peer, err) => out({ event: 'peer_error', message: String(err) }))
  rlpx.events.on('error', (err) => out({ event: 'error', message: String(err) }))
  rlpx.events.on('listening', () => {
    const { port } = rlpx._server.address()
    out({ event: 'listening', id: bytesToHex(rlpx.id).slice(2), port })
    onListening()
  })
}
