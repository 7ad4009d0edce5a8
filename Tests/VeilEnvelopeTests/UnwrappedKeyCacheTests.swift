import NIOCore
import Testing
import VeilEnvelope
import VeilKMS

@Suite struct UnwrappedKeyCacheTests {
    let ref = reference("local/department-key")

    func envelopes(_ count: Int, kms: any KeyManagementService) async throws -> [ByteBuffer] {
        var result: [ByteBuffer] = []
        for index in 0..<count {
            let key = try await activeKey(kms, ref)
            result.append(try seal(Array("record \(index)".utf8), key: key))
        }
        return result
    }

    func keyID(_ envelope: ByteBuffer) throws -> EnvelopeKeyID {
        try EnvelopeHeader.parse(envelope)!.keyID
    }

    @Test func oneUnwrapServesEveryRecordOfADataKey() async throws {
        let owner = keyring("owner", ["department-key"])
        let kms = CountingKMS(owner)
        let cache = UnwrappedKeyCache(kms: kms)
        let key = try await activeKey(owner, ref)
        for index in 0..<1_000 {
            let plaintext = Array("record \(index)".utf8)
            let envelope = try seal(plaintext, key: key)
            let id = try keyID(envelope)
            let dek: AESGCMKey
            if case .hit(let cached) = cache.lookup(id) { dek = cached } else { dek = try await cache.fill(id) }
            #expect(try open(envelope, key: dek) == plaintext)
        }
        #expect(kms.counts == CountingKMS.Counts(generateDataKey: 0, unwrap: 1))
    }

    @Test func lruKeepsAtMostCapacityKeysAndEvictsTheOldest() async throws {
        let owner = keyring("owner", ["department-key"])
        let kms = CountingKMS(owner)
        let cache = UnwrappedKeyCache(kms: kms, capacity: 3)
        let records = try await envelopes(5, kms: owner)
        for record in records { _ = try await cache.key(for: try keyID(record)) }
        #expect(cache.count == 3)
        #expect(kms.counts.unwrap == 5)
        guard case .miss = cache.lookup(try keyID(records[0])) else {
            Issue.record("the least recently used key should have been evicted")
            return
        }
        guard case .hit(let newest) = cache.lookup(try keyID(records[4])) else {
            Issue.record("the newest key should be cached")
            return
        }
        #expect(try open(records[4], key: newest) == Array("record 4".utf8))
        // Touch record 2 so record 3 becomes the oldest, then add record 0 back.
        _ = cache.lookup(try keyID(records[2]))
        _ = try await cache.key(for: try keyID(records[0]))
        #expect(cache.count == 3)
        if case .miss = cache.lookup(try keyID(records[3])) {} else { Issue.record("record 3 should be evicted") }
        if case .hit = cache.lookup(try keyID(records[2])) {} else { Issue.record("record 2 should be kept") }
    }

    @Test func deniedConsumerCallsTheKMSOncePerTTL() async throws {
        let owner = keyring("owner", ["department-key"])
        let kms = CountingKMS(keyring("sales-consumer", ["sales-key"]))
        let clock = ManualClock()
        let cache = UnwrappedKeyCache(kms: kms, deniedTTL: .seconds(30), clock: clock.function)
        let key = try await activeKey(owner, ref)
        for index in 0..<500 {
            let id = try keyID(try seal(Array("r\(index)".utf8), key: key))
            let error = await #expect(throws: EnvelopeError.self) { _ = try await cache.key(for: id) }
            guard case .kms(let kmsError) = error else {
                Issue.record("expected a KMS error, got \(String(describing: error))")
                return
            }
            #expect(kmsError.kind == .accessDenied)
        }
        #expect(kms.counts.unwrap == 1)
        let id = try keyID(try seal([1], key: key))
        guard case .denied = cache.lookup(id) else {
            Issue.record("the refusal should be cached")
            return
        }
        clock.advance(.seconds(30))
        guard case .miss = cache.lookup(id) else {
            Issue.record("the refusal should have expired")
            return
        }
        await #expect(throws: EnvelopeError.self) { _ = try await cache.key(for: id) }
        #expect(kms.counts.unwrap == 2)
    }

    @Test func outagesAreRememberedBriefly() async throws {
        let owner = keyring("owner", ["department-key"])
        let kms = CountingKMS(UnavailableKMS())
        let clock = ManualClock()
        let cache = UnwrappedKeyCache(kms: kms, deniedTTL: .seconds(30), unavailableTTL: .seconds(1), clock: clock.function)
        let id = try keyID(try seal([1], key: try await activeKey(owner, ref)))
        await #expect(throws: EnvelopeError.self) { _ = try await cache.key(for: id) }
        await #expect(throws: EnvelopeError.self) { _ = try await cache.key(for: id) }
        #expect(kms.counts.unwrap == 1)
        clock.advance(.seconds(1))
        await #expect(throws: EnvelopeError.self) { _ = try await cache.key(for: id) }
        #expect(kms.counts.unwrap == 2)
    }

    @Test func concurrentFillsMakeOneKMSCall() async throws {
        let owner = keyring("owner", ["department-key"])
        let kms = CountingKMS(SlowKMS(base: owner))
        let cache = UnwrappedKeyCache(kms: kms)
        let envelope = try seal([1, 2, 3], key: try await activeKey(owner, ref))
        let id = try keyID(envelope)
        let keys = try await withThrowingTaskGroup(of: AESGCMKey.self) { group in
            for _ in 0..<20 { group.addTask { try await cache.key(for: id) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(kms.counts.unwrap == 1)
        #expect(keys.allSatisfy { $0 === keys[0] })
        #expect(try open(envelope, key: keys[0]) == [1, 2, 3])
    }

    @Test func malformedReferenceFailsWithoutCallingTheKMS() async throws {
        let kms = CountingKMS(keyring("o", ["k"]))
        let cache = UnwrappedKeyCache(kms: kms)
        let bytes = Envelope.magic + [1, 0, 1, 0xFF, 0, 1, 0x6B, 0, 1, 0xFF] + [UInt8](repeating: 0, count: 12 + 16)
        let id = try keyID(ByteBuffer(bytes: bytes))
        let error = await #expect(throws: EnvelopeError.self) { _ = try await cache.key(for: id) }
        if case .malformed = error {} else { Issue.record("expected malformed, got \(String(describing: error))") }
        #expect(kms.counts.unwrap == 0)
    }

    @Test func alteredWrappedKeyIsInvalidCiphertext() async throws {
        let owner = keyring("owner", ["department-key"])
        let cache = UnwrappedKeyCache(kms: owner)
        var bytes = Array(try seal([1], key: try await activeKey(owner, ref)).readableBytesView)
        // Last byte of the wrapped DEK: the header ends with wrapped (61 bytes) then the nonce.
        let header = try #require(try EnvelopeHeader.parse(ByteBuffer(bytes: bytes)))
        bytes[header.byteCount - 13] ^= 0x80
        let error = await #expect(throws: EnvelopeError.self) { _ = try await cache.key(for: try keyID(ByteBuffer(bytes: bytes))) }
        guard case .kms(let kmsError) = error else {
            Issue.record("expected a KMS error, got \(String(describing: error))")
            return
        }
        #expect(kmsError.kind == .invalidCiphertext)
    }
}
