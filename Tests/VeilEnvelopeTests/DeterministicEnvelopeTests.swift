import Foundation
import NIOCore
import Testing
@_spi(TestVectors) import VeilEnvelope
@_spi(TestVectors) import VeilKMS

/// Deterministic (record-key) envelopes: AES-256-SIV under a key the KMS derives.
///
/// The vectors were computed independently with Python's `cryptography` (HKDF and AESSIV);
/// docs/FORMAT.md carries them too.
@Suite struct DeterministicEnvelopeTests {
    static let kek = SymmetricSecret(copying: Array(0x00..<0x20) as [UInt8])
    static let ref = KeyReference("local/department-key")!
    static let derived = """
        bc1f639257339712ce5eb28da69322fada345bb543787f1293b0fddd8b67a2c5
        1bada44b51c50765fa84ae27326bb5ee3f6d0c4ca930a432506532653728af1e
        """
    static let recordKeyEnvelope = """
        c1564b590101056c6f63616c000e6465706172746d656e742d6b65790613193d
        af21ec75702b2139d4b1009334a51760e893a2c066d633
        """

    func sivKey(_ kek: SymmetricSecret = kek, _ ref: KeyReference = ref) async throws -> DeterministicKey {
        let kms = LocalKeyring(identity: "t", keys: [ref.keyId: kek])
        let secret = try await kms.deriveKey(
            for: ref, context: DeterministicEnvelope.derivationContext, byteCount: DeterministicEnvelope.keyByteCount)
        return try DeterministicKey(secret, reference: ref)
    }

    func seal(_ key: DeterministicKey, _ text: String, topic: String? = "department-events") throws -> ByteBuffer {
        var out = ByteBuffer()
        try Array(text.utf8).withUnsafeBytes { try key.seal($0, topic: topic, into: &out) }
        return out
    }

    func open(_ key: DeterministicKey, _ envelope: ByteBuffer, topic: String = "department-events") throws -> String {
        let header = try #require(try DeterministicHeader.parse(envelope))
        var out = ByteBuffer()
        try key.open(envelope, header: header, topic: topic, into: &out)
        return String(buffer: out)
    }

    @Test func derivationMatchesTheVector() async throws {
        let kms = LocalKeyring(identity: "t", keys: [Self.ref.keyId: Self.kek])
        let secret = try await kms.deriveKey(
            for: Self.ref, context: DeterministicEnvelope.derivationContext, byteCount: DeterministicEnvelope.keyByteCount)
        #expect(secret.withUnsafeBytes { hex($0) } == hex(hexBytes(Self.derived)))
    }

    @Test func sealingMatchesTheVectorAndOpens() async throws {
        let key = try await sivKey()
        let envelope = try seal(key, "customer-42")
        #expect(hex(envelope.readableBytesView) == hex(hexBytes(Self.recordKeyEnvelope)))
        #expect(try open(key, ByteBuffer(bytes: hexBytes(Self.recordKeyEnvelope))) == "customer-42")
    }

    @Test func equalPlaintextsGiveEqualCiphertexts() async throws {
        let key = try await sivKey()
        #expect(try seal(key, "order-1") == seal(key, "order-1"))
        #expect(try seal(key, "order-1") != seal(key, "order-2"))
        // Another process deriving from the same KEK gets the same key, hence the same bytes.
        let again = try await sivKey()
        #expect(try seal(key, "order-1") == seal(again, "order-1"))
        // The topic is bound: the same key in another topic encrypts differently and does not open.
        let other = try seal(key, "order-1", topic: "other-topic")
        #expect(other != (try seal(key, "order-1")))
        #expect(throws: EnvelopeError.authenticationFailed) { try open(key, other) }
        #expect(try open(key, other, topic: "other-topic") == "order-1")
        // Unbound, the topic does not matter.
        #expect(try open(key, seal(key, "order-1", topic: nil), topic: "anything") == "order-1")
    }

    @Test func anotherKeyOrAnyAlteredByteFails() async throws {
        let key = try await sivKey()
        let envelope = Array(try seal(key, "customer-42").readableBytesView)
        let stranger = try await sivKey(randomSecret())
        #expect(throws: EnvelopeError.authenticationFailed) { try open(stranger, ByteBuffer(bytes: envelope)) }
        for i in 0..<envelope.count {
            var altered = envelope
            altered[i] ^= 0x01
            let buffer = ByteBuffer(bytes: altered)
            // Header bytes either stop parsing, name another key, or fail authentication.
            guard let header = try? DeterministicHeader.parse(buffer), header.reference == Self.ref else { continue }
            #expect(throws: EnvelopeError.self, "byte \(i)") { try open(key, buffer) }
        }
    }

    @Test func headerParsing() throws {
        #expect(try DeterministicHeader.parse(ByteBuffer(string: "plain-key")) == nil)
        #expect(try DeterministicHeader.parse(ByteBuffer(bytes: Envelope.magic + [1, 0])) == nil)
        #expect(throws: EnvelopeError.self) { try DeterministicHeader.parse(ByteBuffer(bytes: DeterministicEnvelope.magic + [1])) }
        #expect(throws: EnvelopeError.self) { try DeterministicHeader.parse(ByteBuffer(bytes: DeterministicEnvelope.magic + [2, 0, 1, 0x61])) }
        var truncated = hexBytes(Self.recordKeyEnvelope)
        truncated.removeLast(12)
        #expect(throws: EnvelopeError.self) { try DeterministicHeader.parse(ByteBuffer(bytes: truncated)) }
    }

    @Test func emptyPlaintextIsRefused() async throws {
        let key = try await sivKey()
        #expect(throws: EnvelopeError.self) { try seal(key, "") }
    }

    @Test func kmsWithoutDerivationRefuses() async throws {
        await #expect(throws: KMSError.self) {
            _ = try await UnavailableKMS().deriveKey(for: Self.ref, context: [], byteCount: 64)
        }
        let cache = DeterministicKeyCache(kms: UnavailableKMS())
        await #expect(throws: EnvelopeError.self) { _ = try await cache.fill(Self.ref) }
        guard case .denied = cache.lookup(Self.ref) else {
            Issue.record("a refusal is remembered")
            return
        }
    }

    @Test func cacheDerivesOncePerReference() async throws {
        let kms = CountingKMS(LocalKeyring(identity: "t", keys: [Self.ref.keyId: Self.kek]))
        let cache = DeterministicKeyCache(kms: kms)
        guard case .miss = cache.lookup(Self.ref) else { Issue.record("empty cache"); return }
        async let a = cache.fill(Self.ref)
        async let b = cache.fill(Self.ref)
        _ = try await (a, b)
        _ = try await cache.fill(Self.ref)
        #expect(kms.counts.deriveKey == 1)
        guard case .hit = cache.lookup(Self.ref) else { Issue.record("filled"); return }
    }

    @Test func formatDocumentCarriesTheseVectors() throws {
        let docs = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/FORMAT.md")
        let text = try String(contentsOf: docs, encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        for (name, value) in [("derived-record-key-key", Self.derived), ("envelope-record-key", Self.recordKeyEnvelope)] {
            let start = lines.firstIndex { $0 == "\(name):" }
            let documented = start.map { s in
                lines[(s + 1)...].prefix { !$0.isEmpty && $0.allSatisfy { $0.isHexDigit && !$0.isUppercase } }.joined()
            }
            #expect(documented == hex(hexBytes(value)), "\(name) in docs/FORMAT.md")
        }
    }
}

@Suite struct KeyDerivationTests {
    /// RFC 5869, appendix A.1 (HKDF-SHA256, test case 1).
    @Test func rfc5869TestCase1() {
        let ikm = [UInt8](repeating: 0x0B, count: 22)
        let okm = ikm.withUnsafeBytes {
            LocalKeyDerivation.hkdf(ikm: $0, salt: Array(0x00...0x0C), info: Array(0xF0...0xF9), byteCount: 42)
        }
        #expect(okm.map(hex) == "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
    }

    @Test func derivationSeparatesReferencesAndContexts() async throws {
        let kek = randomSecret()
        let kms = LocalKeyring(identity: "t", keys: ["a": kek, "b": kek])
        func derive(_ ref: String, _ context: String) async throws -> [UInt8] {
            try await kms.deriveKey(for: KeyReference(ref)!, context: Array(context.utf8), byteCount: 64).withUnsafeBytes { Array($0) }
        }
        let base = try await derive("local/a", "x")
        #expect(try await derive("local/a", "x") == base)
        #expect(try await derive("local/b", "x") != base)
        #expect(try await derive("local/a", "y") != base)
        await #expect(throws: KMSError.self) { _ = try await derive("local/missing", "x") }
    }
}
