import NIOCore
import Testing
import VeilEnvelope
import VeilKMS
import VeilTestSupport

@Suite struct HeaderParsingTests {
    @Test(arguments: [
        "", "{", #"{"department": "finance"}"#, "[1,2]", "plain text", "\u{0}\u{0}\u{0}\u{1}avro",
        "\u{C1}", "ÁVEL",  // the UTF-8 encoding of U+00C1 starts with C3, not C1
    ])
    func plaintextIsNotAnEnvelope(_ text: String) throws {
        #expect(try EnvelopeHeader.parse(ByteBuffer(string: text)) == nil)
    }

    @Test func shortPrefixesOfTheMagicAreNotEnvelopes() throws {
        for length in 0..<4 {
            #expect(try EnvelopeHeader.parse(ByteBuffer(bytes: Envelope.magic.prefix(length))) == nil)
        }
        // The full magic claims an envelope, so what follows must be valid.
        #expect(throws: EnvelopeError.self) { try EnvelopeHeader.parse(ByteBuffer(bytes: Envelope.magic)) }
    }

    @Test func unknownVersionAndFlagsAreRejected() throws {
        let base = Envelope.magic + [1, 0, 1, 0x6B, 0, 1, 0x6B, 0, 1, 0xFF] + [UInt8](repeating: 0, count: 12 + 16)
        #expect(try EnvelopeHeader.parse(ByteBuffer(bytes: base)) != nil)
        var version = base
        version[4] = 2
        #expect(throws: EnvelopeError.unsupportedVersion(2)) { try EnvelopeHeader.parse(ByteBuffer(bytes: version)) }
        var flags = base
        flags[5] = 0x02
        #expect(throws: EnvelopeError.malformed("unknown flag bits")) { try EnvelopeHeader.parse(ByteBuffer(bytes: flags)) }
    }

    @Test func lengthFieldsAreBoundsChecked() throws {
        // K = 0, I = 0, W = 0 and lengths pointing past the end.
        let cases: [[UInt8]] = [
            Envelope.magic + [1, 0, 0],
            Envelope.magic + [1, 0, 1, 0x6B, 0, 0],
            Envelope.magic + [1, 0, 1, 0x6B, 0, 1, 0x6B, 0, 0],
            Envelope.magic + [1, 0, 200, 0x6B],
            Envelope.magic + [1, 0, 1, 0x6B, 0xFF, 0xFF] + [UInt8](repeating: 0, count: 100),
            Envelope.magic + [1, 0, 1, 0x6B, 0, 1, 0x6B, 0x10, 0x01] + [UInt8](repeating: 0, count: 5000),
            Envelope.magic + [1, 0, 1, 0x6B, 0, 1, 0x6B, 0, 1, 0xFF] + [UInt8](repeating: 0, count: 12 + 15),
        ]
        for bytes in cases {
            #expect(throws: EnvelopeError.self, "\(hex(bytes.prefix(16)))") { try EnvelopeHeader.parse(ByteBuffer(bytes: bytes)) }
        }
    }

    @Test func invalidUTF8ReferenceIsMalformedNotACrash() throws {
        let bytes = Envelope.magic + [1, 0, 1, 0xFF, 0, 1, 0x6B, 0, 1, 0xFF] + [UInt8](repeating: 0, count: 12 + 16)
        let header = try #require(try EnvelopeHeader.parse(ByteBuffer(bytes: bytes)))
        #expect(throws: EnvelopeError.self) { try header.keyID.reference() }
        #expect(header.keyID.description.contains("invalid"))
    }

    @Test func rawAndByteBufferParsingAgree() async throws {
        let key = try await activeKey(keyring("o", ["k"]), reference("local/k"))
        let envelope = try seal([1, 2, 3], key: key)
        let bytes = Array(envelope.readableBytesView)
        let fromRaw = try bytes.withUnsafeBytes { try EnvelopeHeader.parse($0) }
        let fromBuffer = try EnvelopeHeader.parse(envelope)
        #expect(fromRaw?.keyID == fromBuffer?.keyID)
        #expect(fromRaw?.byteCount == fromBuffer?.byteCount)
        #expect(fromRaw?.ciphertextByteCount == fromBuffer?.ciphertextByteCount)
    }

    /// Random and mutated inputs: parsing must return or throw, never trap, and
    /// what it accepts must be self-consistent.
    @Test func fuzzedInputsNeverCrash() async throws {
        let kms = keyring("o", ["k"])
        let key = try await activeKey(kms, reference("local/k"))
        let dek = try await decryptionKey(key, kms: kms)
        let valid = Array(try seal(Array("fuzz me".utf8), key: key).readableBytesView)
        var generator = SplitMix64(seed: 0x5EED)
        var accepted = 0
        for round in 0..<20_000 {
            var bytes: [UInt8]
            switch round % 3 {
            case 0:
                bytes = (0..<Int(generator.next() % 200)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
                if generator.next() % 2 == 0 { bytes = Envelope.magic + [1] + bytes }
            case 1:
                bytes = valid
                for _ in 0..<(1 + generator.next() % 4) {
                    bytes[Int(generator.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: generator.next())
                }
            default:
                bytes = Array(valid.prefix(Int(generator.next() % UInt64(valid.count + 1))))
                bytes += (0..<Int(generator.next() % 8)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            }
            let buffer = ByteBuffer(bytes: bytes)
            guard let header = try? EnvelopeHeader.parse(buffer) else { continue }
            accepted += 1
            #expect(header.envelopeByteCount == bytes.count)
            _ = try? header.keyID.reference()
            _ = header.keyID.wrappedDataKey
            _ = header.keyID.description
            var output = ByteBuffer()
            let opened: Void? = try? EnvelopeDecryptor().open(buffer, header: header, key: dek, topic: "department-events", fieldPath: "", into: &output)
            if opened != nil { #expect(bytes == valid) }
        }
        #expect(accepted > 0)
    }
}

