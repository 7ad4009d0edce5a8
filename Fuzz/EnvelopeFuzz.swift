// libFuzzer target for VeilEnvelope: parsing and opening envelopes (AES-GCM, docs/FORMAT.md
// section 1) and record-key envelopes (AES-SIV), and tamper detection.
//
// Built by scripts/fuzz (target `envelope`), compiled into one module with VeilEnvelope's sources.
//
// Input: [mode] then a payload.
//   mode 0  the payload is an envelope as read from a record: both header parsers run on it,
//           and whatever parses is opened with a fixed key. Nothing may open: the fuzzer has
//           no key, so an open that succeeds is a forgery.
//   mode 1  [flip index u16][bit][flags] then a plaintext: sealed with a data key (topic-bound
//           per flags), one bit flipped at the index (if it is inside the envelope), then
//           parsed and opened. Untouched, it must open to the same plaintext; flipped, or
//           opened under another topic or field, it must not open.
//   mode 2  as mode 1 with the deterministic (record-key) envelope.

import NIOCore
import VeilKMS

let reference = KeyReference(kms: "fuzz", keyId: "k")!
let dekSecret = SymmetricSecret(copying: (0..<32).map { UInt8($0) })
let openingKey = try! AESGCMKey(dekSecret)
let sealingKey = try! ActiveDataKey(DataKey(reference: reference, plaintext: dekSecret, wrapped: [UInt8](repeating: 0xAB, count: 40)),
                                    createdAt: .now())
let recordKeyKey = try! DeterministicKey(SymmetricSecret(copying: (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }),
                                         reference: reference)

@_cdecl("LLVMFuzzerTestOneInput")
public func veilEnvelopeFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let input = UnsafeBufferPointer(start: data + 1, count: size - 1)
    switch data[0] % 3 {
    case 0: openArbitrary(ByteBuffer(bytes: input))
    case 1: sealFlipOpen(input, deterministic: false)
    default: sealFlipOpen(input, deterministic: true)
    }
    return 0
}

func openArbitrary(_ bytes: ByteBuffer) {
    if let header = try? EnvelopeHeader.parse(bytes) {
        precondition(header.byteCount <= bytes.readableBytes, "header longer than the input")
        var out = ByteBuffer()
        let opened = (try? EnvelopeDecryptor().open(bytes, header: header, key: openingKey, topic: "t", fieldPath: Envelope.wholeValue,
                                                     into: &out)) != nil
        precondition(!opened, "arbitrary bytes opened as an envelope")
        precondition(out.readableBytes == 0, "a failed open left output behind")
    }
    if let header = try? DeterministicHeader.parse(bytes) {
        precondition(header.byteCount <= bytes.readableBytes, "record-key header longer than the input")
        var out = ByteBuffer()
        precondition((try? recordKeyKey.open(bytes, header: header, topic: "t", into: &out)) == nil,
                     "arbitrary bytes opened as a record-key envelope")
    }
}

func sealFlipOpen(_ input: UnsafeBufferPointer<UInt8>, deterministic: Bool) {
    guard input.count >= 4 else { return }
    let flipAt = Int(input[0]) << 8 | Int(input[1])
    let bit = input[2] & 7
    let bound = input[3] & 1 == 1
    let plaintext = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(input)[4...])
    // AES-SIV needs a byte of plaintext; Veil leaves empty record keys as they are.
    if deterministic && plaintext.isEmpty { return }
    var sealed = ByteBuffer()
    do {
        if deterministic {
            try recordKeyKey.seal(plaintext, topic: bound ? "orders" : nil, into: &sealed)
        } else {
            try EnvelopeEncryptor().seal(plaintext: plaintext, key: sealingKey, topic: bound ? "orders" : nil,
                                         fieldPath: Envelope.wholeValue, into: &sealed)
        }
    } catch {
        fatalError("sealing \(plaintext.count) bytes failed: \(error)")
    }
    let flipped = flipAt < sealed.readableBytes
    if flipped {
        let byte = sealed.getInteger(at: sealed.readerIndex + flipAt, as: UInt8.self)!
        sealed.setInteger(byte ^ (1 << bit), at: sealed.readerIndex + flipAt)
    }
    let expected = Array(plaintext)
    func open(topic: String, field: String) -> [UInt8]? {
        var out = ByteBuffer()
        if deterministic {
            guard let header = try? DeterministicHeader.parse(sealed) else { return nil }
            guard (try? recordKeyKey.open(sealed, header: header, topic: topic, into: &out)) != nil else { return nil }
        } else {
            guard let header = try? EnvelopeHeader.parse(sealed) else { return nil }
            guard (try? EnvelopeDecryptor().open(sealed, header: header, key: openingKey, topic: topic, fieldPath: field, into: &out)) != nil
            else { return nil }
        }
        return out.readBytes(length: out.readableBytes)
    }
    let result = open(topic: "orders", field: Envelope.wholeValue)
    if flipped {
        precondition(result == nil, "a flipped bit at \(flipAt) went undetected")
    } else {
        precondition(result == expected, "an untouched envelope did not open to its plaintext")
        if bound { precondition(open(topic: "payments", field: Envelope.wholeValue) == nil, "a topic-bound envelope opened under another topic") }
        if !deterministic { precondition(open(topic: "orders", field: "card.number") == nil, "a whole-value envelope opened as a field") }
    }
}
