import Testing
@_spi(TestVectors) import VeilKMS

@Suite struct LocalKeyringTests {
    let finance = reference("local/finance-key")
    let sales = reference("local/sales-key")

    func owner() throws -> LocalKeyring {
        LocalKeyring(
            identity: "owner",
            keys: [
                "finance-key": try SymmetricSecret(randomByteCount: 32),
                "sales-key": try SymmetricSecret(randomByteCount: 32),
            ])
    }

    @Test func generatedKeyUnwrapsToTheSamePlaintext() async throws {
        let kms = try owner()
        let dataKey = try await kms.generateDataKey(for: finance)
        #expect(dataKey.plaintext.count == 32)
        #expect(dataKey.wrapped.count == LocalKeyWrap.wrappedByteCount)
        #expect(dataKey.reference == finance)
        let unwrapped = try await kms.unwrap(dataKey.wrapped, for: finance)
        #expect(bytes(of: unwrapped) == bytes(of: dataKey.plaintext))
    }

    @Test func eachDataKeyIsFresh() async throws {
        let kms = try owner()
        let a = try await kms.generateDataKey(for: finance)
        let b = try await kms.generateDataKey(for: finance)
        #expect(bytes(of: a.plaintext) != bytes(of: b.plaintext))
        #expect(a.wrapped != b.wrapped)
    }

    @Test func keyringWithoutTheKeyDeniesAccess() async throws {
        let owner = try owner()
        let dataKey = try await owner.generateDataKey(for: sales)
        let financeOnly = LocalKeyring(identity: "finance-consumer", keys: ["finance-key": try SymmetricSecret(randomByteCount: 32)])
        let error = await #expect(throws: KMSError.self) {
            _ = try await financeOnly.unwrap(dataKey.wrapped, for: sales)
        }
        #expect(error?.kind == .accessDenied)
        #expect(error?.reference == sales)
        #expect(error?.description.contains("local/sales-key") == true)
        #expect(error?.description.contains("finance-consumer") == true)
        await #expect(throws: KMSError.self) { _ = try await financeOnly.generateDataKey(for: sales) }
    }

    @Test func wrappedKeyIsBoundToItsReference() async throws {
        // Two ids sharing one KEK: the AAD still keeps their wraps apart.
        let kek = try SymmetricSecret(randomByteCount: 32)
        let kms = LocalKeyring(identity: "owner", keys: ["a": kek, "b": kek])
        let dataKey = try await kms.generateDataKey(for: reference("local/a"))
        let error = await #expect(throws: KMSError.self) {
            _ = try await kms.unwrap(dataKey.wrapped, for: reference("local/b"))
        }
        #expect(error?.kind == .invalidCiphertext)
        // Same KEK, other KMS name: also bound.
        await #expect(throws: KMSError.self) { _ = try await kms.unwrap(dataKey.wrapped, for: reference("other/a")) }
    }

    @Test func alteredWrappedKeyIsInvalidCiphertext() async throws {
        let kms = try owner()
        let dataKey = try await kms.generateDataKey(for: finance)
        for index in dataKey.wrapped.indices {
            var altered = dataKey.wrapped
            altered[index] ^= 0x01
            let error = await #expect(throws: KMSError.self) { _ = try await kms.unwrap(altered, for: finance) }
            #expect(error?.kind == .invalidCiphertext)
        }
        await #expect(throws: KMSError.self) { _ = try await kms.unwrap(Array(dataKey.wrapped.dropLast()), for: finance) }
        await #expect(throws: KMSError.self) { _ = try await kms.unwrap([], for: finance) }
    }

    @Test func differentKEKUnderTheSameIdIsInvalidCiphertext() async throws {
        let first = try owner()
        let second = try owner()
        let dataKey = try await first.generateDataKey(for: finance)
        let error = await #expect(throws: KMSError.self) { _ = try await second.unwrap(dataKey.wrapped, for: finance) }
        #expect(error?.kind == .invalidCiphertext)
    }

    @Test func wrapWithFixedNonceIsDeterministicAndUnwraps() throws {
        let kek = SymmetricSecret(copying: Array(0..<32) as [UInt8])
        let dek = SymmetricSecret(copying: Array(32..<64) as [UInt8])
        let nonce = Array(0xA0...0xAB) as [UInt8]
        let ref = reference("local/department-key")
        let a = try LocalKeyWrap.wrap(dek, under: kek, for: ref, nonce: nonce)
        let b = try LocalKeyWrap.wrap(dek, under: kek, for: ref, nonce: nonce)
        #expect(a == b)
        #expect(Array(a.prefix(13)) == [0x01] + nonce)
        #expect(bytes(of: try LocalKeyWrap.unwrap(a, under: kek, for: ref)) == Array(32..<64))
    }
}
