import Foundation
import NIOCore
import Testing
@_spi(TestVectors) import VeilEnvelope
@_spi(TestVectors) import VeilKMS

/// The test vectors of docs/FORMAT.md, checked in both directions. The same
/// vectors are recomputed independently by scripts/format_vectors.py.
@Suite struct FormatVectorTests {
    static let kek = SymmetricSecret(copying: Array(0x00..<0x20) as [UInt8])
    static let dek = SymmetricSecret(copying: Array(0x20..<0x40) as [UInt8])
    static let ref = KeyReference("local/department-key")!
    static let wrapNonce = Array(0xA0..<0xAC) as [UInt8]
    static let topic = "department-events"
    static let wholePlaintext = Array(#"{"department": "finance", "data": "q3 forecast"}"#.utf8)
    static let fieldPlaintext = Array(#""q3 forecast""#.utf8)

    static let wrappedDEK = """
        01a0a1a2a3a4a5a6a7a8a9aaabc6395e0e61ee24984a4cadf82b57eef1409d6b
        23a682745ba4371cbd43964b3ef5aaa88914313c0fa06e14d74bc5c09b
        """
    static let wholeValueEnvelope = """
        c156454c0101056c6f63616c000e6465706172746d656e742d6b6579003d01a0
        a1a2a3a4a5a6a7a8a9aaabc6395e0e61ee24984a4cadf82b57eef1409d6b23a6
        82745ba4371cbd43964b3ef5aaa88914313c0fa06e14d74bc5c09bc0ffee0000
        0000000000002a93bd98ea2fdf7f074332421448fbae58e6abb14b388741ba6c
        d15b41e3128547547146f01962429a4bd9793c990682b73bd90ff12c97fe4128
        8c1ba7d8847280
        """
    static let fieldEnvelope = """
        c156454c0100056c6f63616c000e6465706172746d656e742d6b6579003d01a0
        a1a2a3a4a5a6a7a8a9aaabc6395e0e61ee24984a4cadf82b57eef1409d6b23a6
        82745ba4371cbd43964b3ef5aaa88914313c0fa06e14d74bc5c09bc0ffee0000
        0000000000002bf73c606ad5fe3a728d974119567a26fbd7266e282cd0665bd8
        d0327ec8
        """

    @Test func wrapProducesTheVector() throws {
        let wrapped = try LocalKeyWrap.wrap(Self.dek, under: Self.kek, for: Self.ref, nonce: Self.wrapNonce)
        #expect(hex(wrapped) == hex(hexBytes(Self.wrappedDEK)))
    }

    @Test func unwrapOfTheVectorYieldsTheDEK() throws {
        let dek = try LocalKeyWrap.unwrap(hexBytes(Self.wrappedDEK), under: Self.kek, for: Self.ref)
        #expect(dek.withUnsafeBytes { Array($0) } == Array(0x20..<0x40))
    }

    @Test func sealProducesTheVectors() throws {
        let dataKey = DataKey(reference: Self.ref, plaintext: Self.dek, wrapped: hexBytes(Self.wrappedDEK))
        let key = try ActiveDataKey(dataKey, createdAt: .now(), noncePrefix: 0xC0FF_EE00, firstCounter: 42)
        let whole = try seal(Self.wholePlaintext, key: key, topic: Self.topic, fieldPath: Envelope.wholeValue)
        #expect(hex(whole.readableBytesView) == hex(hexBytes(Self.wholeValueEnvelope)))
        let field = try seal(Self.fieldPlaintext, key: key, topic: nil, fieldPath: "data")
        #expect(hex(field.readableBytesView) == hex(hexBytes(Self.fieldEnvelope)))
    }

    @Test func openingTheVectorsWithTheKeyringYieldsThePlaintext() async throws {
        // The full consumer path: parse, unwrap through a keyring holding the KEK, open.
        let cache = UnwrappedKeyCache(kms: LocalKeyring(identity: "finance-consumer", keys: ["department-key": Self.kek]))
        let whole = ByteBuffer(bytes: hexBytes(Self.wholeValueEnvelope))
        let wholeHeader = try #require(try EnvelopeHeader.parse(whole))
        #expect(wholeHeader.isTopicBound)
        let dek = try await cache.key(for: wholeHeader.keyID)
        #expect(try open(whole, key: dek, topic: Self.topic) == Self.wholePlaintext)

        let field = ByteBuffer(bytes: hexBytes(Self.fieldEnvelope))
        #expect(try EnvelopeHeader.parse(field)?.isTopicBound == false)
        #expect(try open(field, key: dek, topic: "any-topic", fieldPath: "data") == Self.fieldPlaintext)
    }

    @Test func formatDocumentCarriesTheseVectors() throws {
        let docs = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/FORMAT.md")
        let text = try String(contentsOf: docs, encoding: .utf8)
        for (name, value) in [
            ("wrapped-dek", Self.wrappedDEK), ("envelope-whole-value", Self.wholeValueEnvelope),
            ("envelope-field-unbound", Self.fieldEnvelope),
        ] {
            #expect(documented(name, in: text) == hex(hexBytes(value)), "\(name) in docs/FORMAT.md")
        }
    }

    /// The hex lines that follow `name:` in the document, joined.
    private func documented(_ name: String, in text: String) -> String? {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard let start = lines.firstIndex(where: { $0 == "\(name):" }) else { return nil }
        let hexLines = lines[(start + 1)...].prefix { line in
            !line.isEmpty && line.allSatisfy { $0.isHexDigit && !$0.isUppercase }
        }
        return hexLines.joined()
    }
}
