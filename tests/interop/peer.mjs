// An independent devp2p peer for leafsync's interop test (crates/p2p/tests/interop_ethereumjs.rs):
// @ethereumjs/devp2p's RLPx stack speaking a minimal `leaf/1` (GetCodes/Codes only).
//
// Usage:
//   node peer.mjs listen               listen on 127.0.0.1:0 and wait for leafsync to dial
//   node peer.mjs dial <id-hex> <port> dial leafsync at 127.0.0.1:<port>
//
// Every event is one JSON object per line on stdout; the first is
// {"event":"listening","id":"<hex>","port":N}. Scenario, once Hello is done:
//   1. we send GetCodes [7, [keccak(c1), keccak(c2)], 1048576] and expect Codes [7, [c1, c2]];
//   2. we answer leafsync's GetCodes from the same table;
//   3. we ping (expect a Pong) and answer leafsync's Ping;
//   4. `listen` mode: we wait for leafsync's Disconnect and print its reason;
//      `dial` mode: when 1-3 are done we disconnect with reason 0x03 (useless peer).
// The process exits by itself after the disconnect, or after HARD_TIMEOUT_MS.
import { RLPx } from '@ethereumjs/devp2p'
import { RLP } from '@ethereumjs/rlp'
import { bytesToHex, hexToBytes, bytesToBigInt, equalsBytes } from '@ethereumjs/util'
import { keccak256 } from 'ethereum-cryptography/keccak.js'
import { secp256k1 } from 'ethereum-cryptography/secp256k1.js'
import { exitAfterHardTimeout, out, reportServer, snappySend } from './common.mjs'

const CODES = [hexToBytes('0x6001600101'), hexToBytes('0x00'), hexToBytes('0x60fe60005260206000f3')]
const BY_HASH = new Map(CODES.map((c) => [bytesToHex(keccak256(c)), c]))
const GET_CODES = 0x08
const CODES_MSG = 0x09

exitAfterHardTimeout()

const [mode, targetId, targetPort] = process.argv.slice(2)
const state = { gotCodes: false, answered: false, gotPong: false, answeredPing: false, done: false }

class Leaf {
  constructor(version, peer, send) {
    this.version = version
    this.peer = peer
    this.send = snappySend(send)
  }
  _handleMessage(code, data) {
    const msg = RLP.decode(data)
    if (code === GET_CODES) {
      const [reqId, hashes] = msg
      const codes = hashes.map((h) => BY_HASH.get(bytesToHex(h)) ?? new Uint8Array())
      out({ event: 'get_codes', request_id: Number(bytesToBigInt(reqId)), hashes: hashes.length })
      this.send(CODES_MSG, [reqId, codes])
      state.answered = true
    } else if (code === CODES_MSG) {
      const [reqId, codes] = msg
      const ok =
        Number(bytesToBigInt(reqId)) === 7 &&
        codes.length === 2 &&
        equalsBytes(codes[0], CODES[0]) &&
        equalsBytes(codes[1], CODES[1])
      out({ event: 'codes', request_id: Number(bytesToBigInt(reqId)), ok })
      state.gotCodes = ok
      this.peer._sendPing()
    } else {
      out({ event: 'unexpected', code })
    }
    maybeFinish(this.peer)
  }
}

function maybeFinish(peer) {
  if (mode !== 'dial' || state.done) return
  if (state.gotCodes && state.answered && state.gotPong && state.answeredPing) {
    state.done = true
    out({ event: 'disconnecting', reason: 3 })
    peer.disconnect(3)
  }
}

const privateKey = secp256k1.utils.randomPrivateKey()
const rlpx = new RLPx(privateKey, {
  maxPeers: 4,
  clientId: new TextEncoder().encode('ethereumjs-devp2p-interop'),
  capabilities: [{ name: 'leaf', version: 1, length: 10, constructor: Leaf }],
})

rlpx.events.on('peer:added', (peer) => {
  const hello = peer.getHelloMessage()
  out({
    event: 'hello',
    client: hello.clientId,
    protocol_version: hello.protocolVersion,
    caps: hello.capabilities.map((c) => `${c.name}/${c.version}`),
  })
  // After ethereumjs handles a Pong (or answers a Ping): note it, report it, maybe finish.
  for (const [handler, flag, event] of [
    ['_handlePong', 'gotPong', 'pong'],
    ['_handlePing', 'answeredPing', 'ping_answered'],
  ]) {
    const orig = peer[handler].bind(peer)
    peer[handler] = () => {
      orig()
      state[flag] = true
      out({ event })
      maybeFinish(peer)
    }
  }
  const leaf = peer.getProtocols()[0]
  leaf.send(GET_CODES, [7, [keccak256(CODES[0]), keccak256(CODES[1])], 1048576])
})

rlpx.events.on('peer:removed', (peer, reason, disconnectWe) => {
  out({ event: 'disconnect', reason: reason ?? null, by_us: disconnectWe === true })
  setTimeout(() => process.exit(0), 100)
})
reportServer(rlpx, () => {
  if (mode === 'dial') {
    rlpx
      .connect({ id: hexToBytes('0x' + targetId), address: '127.0.0.1', tcpPort: Number(targetPort) })
      .catch((err) => out({ event: 'error', message: String(err) }))
  }
})
rlpx.listen(0, '127.0.0.1')
