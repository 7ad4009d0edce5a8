// veil-crypto-bench: Veil's envelope encryption and decryption of whole record values,
// in GB/s per core, to set next to `openssl speed -evp aes-256-gcm` (the limit).
//
//   swift run -c release veil-crypto-bench [--seconds S] [--value-bytes B ...]
//
// Each round seals a batch of values with EnvelopeEncryptor into one reused buffer, then
// parses and opens every envelope with EnvelopeDecryptor into another: the per-record work
// of the record filters without the Kafka codec. The data key comes from a local keyring,
// so the header and AAD are the size they are in production. Times are the calling
// thread's CPU time, best of five rounds (other processes on a shared machine disturb the
// best round least). Throughput counts plaintext bytes.
// Output: one JSON line per value size, then a line per size with GB/s.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import VeilBenchSupport
import VeilEnvelope
import VeilKMS

var seconds = 2.0
var sizes: [Int] = []
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let arg = arguments.next() {
    switch arg {
    case "--seconds": seconds = Double(arguments.next() ?? "") ?? seconds
    case "--value-bytes": if let n = Int(arguments.next() ?? ""), n > 0 { sizes.append(n) }
    default:
        print("usage: veil-crypto-bench [--seconds S] [--value-bytes B ...]")
        exit(2)
    }
}
if sizes.isEmpty { sizes = [1024, 16384] }

let reference = KeyReference(kms: "bench", keyId: "k1")!
let keyring = LocalKeyring(identity: "bench", keys: ["k1": SymmetricSecret(copying: (0..<32).map { UInt8($0) })])
let dataKey = try await keyring.generateDataKey(for: reference)
let topic = "bench-topic"

for size in sizes {
    // A fresh key per size, far from its nonce limit for any run length.
    let sealingKey = try ActiveDataKey(dataKey, createdAt: .now())
    let openingKey = try AESGCMKey(dataKey.plaintext)
    let count = max(1, (1 << 20) / size)
    let value = ByteBuffer(bytes: (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
    let encryptor = EnvelopeEncryptor()
    let decryptor = EnvelopeDecryptor()
    let envelopeBytes = EnvelopeEncryptor.sealedByteCount(plaintextCount: size, key: sealingKey)
    var sealed = ByteBuffer()
    sealed.reserveCapacity(envelopeBytes * count)
    var opened = ByteBuffer()
    opened.reserveCapacity(size * count)

    let sealSeconds = ThreadCPUClock.bestSecondsPerCall(over: seconds) {
        sealed.clear()
        for _ in 0..<count {
            try! encryptor.seal(plaintext: value, key: sealingKey, topic: topic, fieldPath: Envelope.wholeValue, into: &sealed)
        }
    }
    let envelopes = (0..<count).map { sealed.getSlice(at: $0 * envelopeBytes, length: envelopeBytes)! }
    let openSeconds = ThreadCPUClock.bestSecondsPerCall(over: seconds) {
        opened.clear()
        for envelope in envelopes {
            let header = try! EnvelopeHeader.parse(envelope)!
            try! decryptor.open(envelope, header: header, key: openingKey, topic: topic, fieldPath: Envelope.wholeValue, into: &opened)
        }
    }
    precondition(opened.readableBytes == size * count && opened.getSlice(at: 0, length: size) == value, "round trip failed")
    let sealGBs = Double(size * count) / sealSeconds / 1e9
    let openGBs = Double(size * count) / openSeconds / 1e9
    print("{\"value_bytes\": \(size), \"envelope_bytes\": \(envelopeBytes), \"records_per_round\": \(count), "
          + "\"encrypt_gb_per_s\": \(sealGBs), \"decrypt_gb_per_s\": \(openGBs), "
          + "\"encrypt_ns_per_record\": \(Int(sealSeconds * 1e9 / Double(count))), \"decrypt_ns_per_record\": \(Int(openSeconds * 1e9 / Double(count)))}")
}
