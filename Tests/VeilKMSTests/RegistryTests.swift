import Testing
import VeilKMS

@Suite struct RegistryTests {
    @Test func routesByKMSName() async throws {
        let finance = LocalKeyring(identity: "f", keys: ["k": try SymmetricSecret(randomByteCount: 32)])
        let sales = LocalKeyring(identity: "s", keys: ["k": try SymmetricSecret(randomByteCount: 32)])
        let registry = KMSRegistry(["finance": finance, "sales": sales])
        #expect(registry.names == ["finance", "sales"])
        let dataKey = try await registry.generateDataKey(for: reference("finance/k"))
        // Only the finance keyring can unwrap it: the registry sent it there.
        _ = try await finance.unwrap(dataKey.wrapped, for: reference("finance/k"))
        await #expect(throws: KMSError.self) { _ = try await sales.unwrap(dataKey.wrapped, for: reference("finance/k")) }
        let unwrapped = try await registry.unwrap(dataKey.wrapped, for: reference("finance/k"))
        #expect(bytes(of: unwrapped) == bytes(of: dataKey.plaintext))
    }

    @Test func unknownKMSIsKeyNotFound() async throws {
        let registry = KMSRegistry([:])
        let error = await #expect(throws: KMSError.self) { _ = try await registry.generateDataKey(for: reference("hr/k")) }
        #expect(error?.kind == .keyNotFound)
        #expect(error?.description.contains("no KMS named 'hr'") == true)
    }

    @Test func countingKMSCountsCallsIncludingFailures() async throws {
        let kms = CountingKMS(LocalKeyring(identity: "o", keys: ["k": try SymmetricSecret(randomByteCount: 32)]))
        let dataKey = try await kms.generateDataKey(for: reference("local/k"))
        _ = try await kms.unwrap(dataKey.wrapped, for: reference("local/k"))
        _ = try await kms.unwrap(dataKey.wrapped, for: reference("local/k"))
        await #expect(throws: KMSError.self) { _ = try await kms.unwrap(dataKey.wrapped, for: reference("local/other")) }
        #expect(kms.counts == CountingKMS.Counts(generateDataKey: 1, unwrap: 3))
        #expect(kms.counts.total == 4)
    }
}
