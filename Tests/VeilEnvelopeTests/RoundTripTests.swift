import NIOCore
import Testing
import VeilEnvelope
import VeilKMS

@Suite struct RoundTripTests {
    let kms = keyring("owner", ["department-key"])
    let ref = reference("local/department-key")

    @Test(arguments: [0, 1, 15, 16, 17, 1024, 65_536, 1 << 20])
    func wholeValueRoundTrips(size: Int) async throws {
        let key = try await activeKey(kms, ref)
        let plaintext = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let envelope = try seal(plaintext, key: key)
        #expect(envelope.readableBytes == EnvelopeEncryptor.sealedByteCount(plaintextCount: size, key: key))
        #expect(try open(envelope, key: try await decryptionKey(key, kms: kms)) == plaintext)
    }

    @Test func fieldAndUnboundTopicRoundTrip() async throws {
        let key = try await activeKey(kms, ref)
        let dek = try await decryptionKey(key, kms: kms)
        let envelope = try seal(Array("secret".utf8), key: key, topic: nil, fieldPath: "data.card")
        #expect(try EnvelopeHeader.parse(envelope)?.isTopicBound == false)
        // An unbound topic is ignored on open: a mirrored copy still decrypts.
        #expect(try open(envelope, key: dek, topic: "mirror.department-events", fieldPath: "data.card") == Array("secret".utf8))
    }

    @Test func sealAppendsAfterExistingBytesAndOpenAppendsToo() async throws {
        let key = try await activeKey(kms, ref)
        let dek = try await decryptionKey(key, kms: kms)
        var buffer = ByteBuffer(bytes: [9, 9, 9])
        try EnvelopeEncryptor().seal(
            plaintext: ByteBuffer(bytes: [1, 2, 3]), key: key, topic: "t", fieldPath: "", into: &buffer)
        #expect(buffer.readBytes(length: 3) == [9, 9, 9])
        let header = try #require(try EnvelopeHeader.parse(buffer))
        var output = ByteBuffer(bytes: [7])
        try EnvelopeDecryptor().open(buffer, header: header, key: dek, topic: "t", fieldPath: "", into: &output)
        #expect(Array(output.readableBytesView) == [7, 1, 2, 3])
    }

    @Test func headerNamesTheKeyAndCarriesTheWrappedKey() async throws {
        let key = try await activeKey(kms, ref)
        let envelope = try seal([1, 2, 3], key: key)
        let header = try #require(try EnvelopeHeader.parse(envelope))
        #expect(header.version == 1)
        #expect(header.isTopicBound)
        #expect(try header.keyID.reference() == ref)
        #expect(header.keyID.wrappedDataKey == key.wrappedDataKey)
        #expect(header.ciphertextByteCount == 3)
        #expect(header.envelopeByteCount == envelope.readableBytes)
        #expect(Array(envelope.readableBytesView.prefix(4)) == Envelope.magic)
    }

    @Test func ciphertextDoesNotContainThePlaintext() async throws {
        let key = try await activeKey(kms, ref)
        let plaintext = Array(#"{"department": "finance", "data": "quarterly numbers"}"#.utf8)
        let envelope = Array(try seal(plaintext, key: key).readableBytesView)
        #expect(!hex(envelope).contains(hex(Array("quarterly".utf8))))
    }

    @Test func descriptionsAreRedacted() async throws {
        let material = [UInt8](repeating: 0xCD, count: 32)
        let dataKey = DataKey(reference: ref, plaintext: SymmetricSecret(copying: material), wrapped: [1, 2, 3])
        let active = try ActiveDataKey(dataKey, createdAt: .now())
        let aes = try AESGCMKey(SymmetricSecret(copying: material))
        for text in ["\(active)", "\(aes)", String(reflecting: active), String(reflecting: aes)] {
            #expect(!text.lowercased().contains("cdcd"), "leaked: \(text)")
            #expect(!text.contains("205, 205"), "leaked: \(text)")
        }
    }

    @Test func concurrentSealsAndOpensShareOneKeySafely() async throws {
        let key = try await activeKey(kms, ref)
        let dek = try await decryptionKey(key, kms: kms)
        let nonces = try await withThrowingTaskGroup(of: [[UInt8]].self) { group in
            for worker in 0..<4 {
                group.addTask {
                    var seen: [[UInt8]] = []
                    for index in 0..<2_000 {
                        let plaintext = Array("worker \(worker) record \(index)".utf8)
                        let envelope = try seal(plaintext, key: key)
                        guard try open(envelope, key: dek) == plaintext else { throw EnvelopeError.authenticationFailed }
                        seen.append(try nonce(of: envelope))
                    }
                    return seen
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(nonces.count == 8_000)
        #expect(Set(nonces).count == 8_000)
        #expect(key.encryptionCount == 8_000)
    }

    @Test func overlongFieldPathIsRejectedBeforeSealing() async throws {
        let key = try await activeKey(kms, ref)
        var buffer = ByteBuffer()
        let path = String(repeating: "f", count: 65_536)
        #expect(throws: EnvelopeError.self) {
            try EnvelopeEncryptor().seal(plaintext: ByteBuffer(bytes: [1]), key: key, topic: nil, fieldPath: path, into: &buffer)
        }
        #expect(buffer.readableBytes == 0)
        #expect(key.encryptionCount == 0)
    }
}
