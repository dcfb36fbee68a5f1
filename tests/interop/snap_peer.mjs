// An independent devp2p peer for crates/serve/tests/snap_interop_ethereumjs.rs: @ethereumjs/devp2p
// offering eth/69, leaf/1 and snap/1, to check that Hello negotiates the three capabilities and
// their offsets as our stack does, and that eth/69 Status and snap/1 GetAccountRange travel at
// those offsets.
//
// Usage: node snap_peer.mjs <state-root-hex>   (listens on 127.0.0.1:0 and waits to be dialled)
//
// Events, one JSON object per line: {"event":"listening","id","port"}; {"event":"hello","caps",
// "offsets":{name: offset}}; for every message received {"event":"message","proto","code",
// "items": top-level item count, "count": length of item 1 when it is a list}. Once Hello is
// done the peer sends an eth/69 Status (code 0) and a snap/1 GetAccountRange (code 0) from the
// zero hash with a 1000-byte budget at the given root; it exits after the leafsync side
// disconnects, or after HARD_TIMEOUT_MS.
import { RLPx } from '@ethereumjs/devp2p'
import { RLP } from '@ethereumjs/rlp'
import { hexToBytes } from '@ethereumjs/util'
import { secp256k1 } from 'ethereum-cryptography/secp256k1.js'
import { exitAfterHardTimeout, out, reportServer, snappySend } from './common.mjs'

exitAfterHardTimeout()

const root = hexToBytes(process.argv[2])
const MAINNET_GENESIS = hexToBytes('0xd4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3')

function protocol(name) {
  return class {
    constructor(version, peer, send) {
      this.name = name
      this.version = version
      this.peer = peer
      this.send = snappySend(send)
    }
    _handleMessage(code, data) {
      const msg = RLP.decode(data)
      const items = Array.isArray(msg) ? msg.length : -1
      const count = items > 1 && Array.isArray(msg[1]) ? msg[1].length : -1
      out({ event: 'message', proto: name, code, items, count })
    }
  }
}

const rlpx = new RLPx(secp256k1.utils.randomPrivateKey(), {
  maxPeers: 4,
  clientId: new TextEncoder().encode('ethereumjs-devp2p-snap-interop'),
  capabilities: [
    { name: 'eth', version: 69, length: 18, constructor: protocol('eth') },
    { name: 'leaf', version: 1, length: 10, constructor: protocol('leaf') },
    { name: 'snap', version: 1, length: 8, constructor: protocol('snap') },
  ],
})

rlpx.events.on('peer:added', (peer) => {
  const hello = peer.getHelloMessage()
  const offsets = Object.fromEntries(peer._protocols.map((p) => [p.protocol.name, p.offset]))
  out({ event: 'hello', caps: hello.capabilities.map((c) => `${c.name}/${c.version}`), offsets })
  const byName = Object.fromEntries(peer.getProtocols().map((p) => [p.name, p]))
  // eth/69 Status: [69, 1, genesis, [forkHash, forkNext], earliest, latest, latestHash]
  byName.eth.send(0, [
    69,
    1,
    MAINNET_GENESIS,
    [hexToBytes('0xc376cf8b'), new Uint8Array()],
    0,
    22431084,
    new Uint8Array(32).fill(1),
  ])
  // snap/1 GetAccountRange: [id, root, origin, limit, bytes]
  byName.snap.send(0, [9, root, new Uint8Array(32), new Uint8Array(32).fill(0xff), 1000])
})

rlpx.events.on('peer:removed', (peer, reason) => {
  out({ event: 'disconnect', reason: reason ?? null })
  setTimeout(() => process.exit(0), 100)
})
reportServer(rlpx)
rlpx.listen(0, '127.0.0.1')
