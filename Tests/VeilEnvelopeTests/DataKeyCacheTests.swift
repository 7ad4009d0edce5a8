import NIOCore
import Testing
@_spi(TestVectors) import VeilEnvelope
import VeilKMS

@Suite struct DataKeyCacheTests {
    let ref = reference("local/department-key")

    @Test func oneGenerateCallServesManyRecords() async throws {
        let kms = CountingKMS(keyring("owner", ["department-key"]))
        let cache = DataKeyCache(kms: kms)
        #expect(cache.current(for: ref) == nil)
        var buffer = ByteBuffer()
        let plaintext = ByteBuffer(bytes: [UInt8](repeating: 0x42, count: 64))
        for _ in 0..<100_000 {
            // What a produce filter does per record.
            let key: ActiveDataKey
            if let current = cache.current(for: ref) { key = current } else { key = try await cache.refresh(for: ref) }
            buffer.clear()
            try EnvelopeEncryptor().seal(plaintext: plaintext, key: key, topic: "t", fieldPath: "", into: &buffer)
        }
        #expect(kms.counts == CountingKMS.Counts(generateDataKey: 1, unwrap: 0))
        #expect(cache.current(for: ref)?.encryptionCount == 100_000)
    }

    @Test func rotatesAfterMaxEncryptions() async throws {
        let kms = CountingKMS(keyring("owner", ["department-key"]))
        let cache = DataKeyCache(kms: kms, policy: DataKeyRotationPolicy(maxEncryptions: 3)!)
        let first = try await cache.key(for: ref)
        for _ in 0..<3 {
            #expect(cache.current(for: ref) === first)
            _ = try seal([1], key: first)
        }
        #expect(cache.current(for: ref) == nil)
        let second = try await cache.refresh(for: ref)
        #expect(second !== first)
        #expect(second.wrappedDataKey != first.wrappedDataKey)
        #expect(cache.current(for: ref) === second)
        #expect(kms.counts.generateDataKey == 2)
    }

    @Test func rotatesAfterMaxAge() async throws {
        let kms = CountingKMS(keyring("owner", ["department-key"]))
        let clock = ManualClock()
        let cache = DataKeyCache(
            kms: kms, policy: DataKeyRotationPolicy(maxAge: .seconds(3600))!, clock: clock.function)
        let first = try await cache.key(for: ref)
        clock.advance(.seconds(3599))
        #expect(cache.current(for: ref) === first)
        clock.advance(.seconds(1))
        #expect(cache.current(for: ref) == nil)
        let second = try await cache.key(for: ref)
        #expect(second !== first)
        #expect(second.createdAt == clock.read())
        #expect(kms.counts.generateDataKey == 2)
    }

    @Test func concurrentRefreshesMakeOneKMSCall() async throws {
        let kms = CountingKMS(SlowKMS(base: keyring("owner", ["department-key"])))
        let cache = DataKeyCache(kms: kms)
        let keys = try await withThrowingTaskGroup(of: ActiveDataKey.self) { group in
            for _ in 0..<20 { group.addTask { try await cache.refresh(for: ref) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(kms.counts.generateDataKey == 1)
        #expect(keys.allSatisfy { $0 === keys[0] })
    }

    @Test func refreshWithAUsableKeyDoesNotCallTheKMS() async throws {
        let kms = CountingKMS(keyring("owner", ["department-key"]))
        let cache = DataKeyCache(kms: kms)
        let first = try await cache.refresh(for: ref)
        #expect(try await cache.refresh(for: ref) === first)
        #expect(kms.counts.generateDataKey == 1)
    }

    @Test func failuresAreRememberedForTheirTTL() async throws {
        let kms = CountingKMS(keyring("owner", ["other-key"]))
        let clock = ManualClock()
        let cache = DataKeyCache(kms: kms, failureTTL: .seconds(5), clock: clock.function)
        for _ in 0..<10 {
            let error = await #expect(throws: EnvelopeError.self) { _ = try await cache.refresh(for: ref) }
            guard case .kms(let kmsError) = error else {
                Issue.record("expected a KMS error, got \(String(describing: error))")
                return
            }
            #expect(kmsError.kind == .accessDenied)
        }
        #expect(kms.counts.generateDataKey == 1)
        clock.advance(.seconds(5))
        await #expect(throws: EnvelopeError.self) { _ = try await cache.refresh(for: ref) }
        #expect(kms.counts.generateDataKey == 2)
    }

    @Test func rotationPolicyRejectsOutOfRangeSettings() {
        #expect(DataKeyRotationPolicy(maxEncryptions: 0) == nil)
        #expect(DataKeyRotationPolicy(maxEncryptions: DataKeyRotationPolicy.maximumEncryptionsLimit + 1) == nil)
        #expect(DataKeyRotationPolicy(maxAge: .zero) == nil)
        #expect(DataKeyRotationPolicy.default.maxEncryptions == 1_000_000)
        #expect(DataKeyRotationPolicy.default.maxAge == .seconds(3600))
    }

    @Test func keysAreIndependentPerReference() async throws {
        let kms = CountingKMS(keyring("owner", ["finance-key", "sales-key"]))
        let cache = DataKeyCache(kms: kms)
        let finance = try await cache.key(for: reference("local/finance-key"))
        let sales = try await cache.key(for: reference("local/sales-key"))
        #expect(finance !== sales)
        #expect(finance.reference == reference("local/finance-key"))
        #expect(sales.reference == reference("local/sales-key"))
        #expect(kms.counts.generateDataKey == 2)
    }
}

@Suite struct NonceTests {
    let kms = keyring("owner", ["k"])
    let ref = reference("local/k")

    @Test func noncesNeverRepeatUnderOneKey() async throws {
        let key = try await activeKey(kms, ref)
        var seen = Set<[UInt8]>()
        var buffer = ByteBuffer()
        let plaintext = ByteBuffer(bytes: [1, 2, 3])
        for _ in 0..<100_000 {
            buffer.clear()
            try EnvelopeEncryptor().seal(plaintext: plaintext, key: key, topic: "t", fieldPath: "", into: &buffer)
            seen.insert(try nonce(of: buffer))
        }
        #expect(seen.count == 100_000)
    }

    @Test func nonceIsPrefixThenBigEndianCounter() async throws {
        let dataKey = try await kms.generateDataKey(for: ref)
        let key = try ActiveDataKey(dataKey, createdAt: .now(), noncePrefix: 0x0102_0304, firstCounter: 0xFF)
        #expect(try nonce(of: try seal([0], key: key)) == [1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0xFF])
        #expect(try nonce(of: try seal([0], key: key)) == [1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 1, 0x00])
    }

    @Test func instancesOfOneDataKeyUseDifferentPrefixes() async throws {
        let dataKey = try await kms.generateDataKey(for: ref)
        let prefixes = try (0..<8).map { _ in
            Array(try nonce(of: try seal([0], key: try ActiveDataKey(dataKey, createdAt: .now()))).prefix(4))
        }
        #expect(Set(prefixes).count == 8)
    }

    @Test func sealingStopsAtTheHardLimit() async throws {
        let dataKey = try await kms.generateDataKey(for: ref)
        let key = try ActiveDataKey(
            dataKey, createdAt: .now(), noncePrefix: 7, firstCounter: ActiveDataKey.hardEncryptionLimit - 1)
        _ = try seal([1], key: key)
        var buffer = ByteBuffer()
        #expect(throws: EnvelopeError.dataKeyExhausted(ref)) {
            try EnvelopeEncryptor().seal(plaintext: ByteBuffer(bytes: [1]), key: key, topic: "t", fieldPath: "", into: &buffer)
        }
        #expect(buffer.readableBytes == 0)
        #expect(!key.isUsable(at: .now(), policy: DataKeyRotationPolicy(maxEncryptions: DataKeyRotationPolicy.maximumEncryptionsLimit)!))
    }
}
