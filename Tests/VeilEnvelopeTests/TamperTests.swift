import NIOCore
import Testing
import VeilEnvelope
import VeilKMS

@Suite struct TamperTests {
    let kms = keyring("owner", ["department-key"])
    let ref = reference("local/department-key")

    func fixture(topic: String? = "department-events") async throws -> (ByteBuffer, AESGCMKey) {
        let key = try await activeKey(kms, ref)
        let envelope = try seal(Array(#"{"department": "finance", "data": "x"}"#.utf8), key: key, topic: topic)
        return (envelope, try await decryptionKey(key, kms: kms))
    }

    @Test func wrongTopicFailsAuthentication() async throws {
        let (envelope, dek) = try await fixture()
        #expect(throws: EnvelopeError.authenticationFailed) { _ = try open(envelope, key: dek, topic: "other-events") }
        #expect(throws: EnvelopeError.authenticationFailed) { _ = try open(envelope, key: dek, topic: "") }
        // A failed open leaves the reused cipher context fit for the next record.
        #expect(try open(envelope, key: dek).count > 0)
    }

    @Test func wrongFieldPathFailsAuthentication() async throws {
        let (envelope, dek) = try await fixture()
        #expect(throws: EnvelopeError.authenticationFailed) { _ = try open(envelope, key: dek, fieldPath: "data") }
        #expect(throws: EnvelopeError.authenticationFailed) { _ = try open(envelope, key: dek, fieldPath: "$") }
    }

    @Test func unboundTopicMayBeAnyLength() async throws {
        let (envelope, dek) = try await fixture(topic: nil)
        #expect(try open(envelope, key: dek, topic: String(repeating: "t", count: 70_000)).count > 0)
    }

    @Test func wrongKeyFailsAuthentication() async throws {
        let (envelope, _) = try await fixture()
        #expect(throws: EnvelopeError.authenticationFailed) { _ = try open(envelope, key: try AESGCMKey(randomSecret())) }
    }

    @Test(arguments: [Optional("department-events"), nil])
    func everyFlippedBitIsDetected(topic: String?) async throws {
        let (envelope, dek) = try await fixture(topic: topic)
        let original = Array(envelope.readableBytesView)
        let headerCount = try #require(try EnvelopeHeader.parse(envelope)).byteCount
        for index in original.indices {
            for bit in 0..<8 {
                var bytes = original
                bytes[index] ^= 1 << bit
                let altered = ByteBuffer(bytes: bytes)
                let parsed = Result { () throws(EnvelopeError) in try EnvelopeHeader.parse(altered) }
                switch parsed {
                case .success(nil):
                    // Only a damaged magic makes the value look like plaintext.
                    #expect(index < 4, "byte \(index) bit \(bit) turned the envelope into plaintext")
                case .failure(let error):
                    // Structural damage: only possible in the header.
                    #expect(index < headerCount, "byte \(index) bit \(bit): \(error)")
                case .success(let header?):
                    var output = ByteBuffer(bytes: [0xEE])
                    let opened = Result { () throws(EnvelopeError) in
                        try EnvelopeDecryptor().open(
                            altered, header: header, key: dek, topic: "department-events", fieldPath: "", into: &output)
                    }
                    if case .failure(.authenticationFailed) = opened {} else {
                        Issue.record("byte \(index) bit \(bit): \(opened)")
                    }
                    // No partial plaintext: the output is exactly as it was.
                    #expect(Array(output.readableBytesView) == [0xEE])
                }
            }
        }
    }

    @Test func everyTruncationIsRejected() async throws {
        let (envelope, dek) = try await fixture()
        let original = Array(envelope.readableBytesView)
        for length in 0..<original.count {
            let truncated = ByteBuffer(bytes: original.prefix(length))
            let parsed = Result { () throws(EnvelopeError) in try EnvelopeHeader.parse(truncated) }
            switch parsed {
            case .success(nil): #expect(length < 4)
            case .failure: break
            case .success(let header?):
                // A cut inside the ciphertext still parses; the tag catches it.
                #expect(throws: EnvelopeError.authenticationFailed) {
                    var output = ByteBuffer()
                    try EnvelopeDecryptor().open(truncated, header: header, key: dek, topic: "department-events", fieldPath: "", into: &output)
                }
            }
        }
    }

    @Test func headerFromAnotherEnvelopeIsRefused() async throws {
        let key = try await activeKey(kms, ref)
        let dek = try await decryptionKey(key, kms: kms)
        let short = try seal([1], key: key)
        let long = try seal([1, 2, 3, 4], key: key)
        let header = try #require(try EnvelopeHeader.parse(short))
        var output = ByteBuffer()
        #expect(throws: EnvelopeError.self) {
            try EnvelopeDecryptor().open(long, header: header, key: dek, topic: "department-events", fieldPath: "", into: &output)
        }
        #expect(output.readableBytes == 0)
    }

    @Test func swappedCiphertextsBetweenRecordsFail() async throws {
        let key = try await activeKey(kms, ref)
        let dek = try await decryptionKey(key, kms: kms)
        let a = Array(try seal(Array("aaaa".utf8), key: key).readableBytesView)
        let b = Array(try seal(Array("bbbb".utf8), key: key).readableBytesView)
        let headerCount = try #require(try EnvelopeHeader.parse(ByteBuffer(bytes: a))).byteCount
        // a's header (and nonce) with b's ciphertext and tag.
        let spliced = ByteBuffer(bytes: a.prefix(headerCount) + b.dropFirst(headerCount))
        #expect(throws: EnvelopeError.authenticationFailed) { _ = try open(spliced, key: dek) }
    }
}
