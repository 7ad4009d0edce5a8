import Foundation
import Testing
import VeilKMS

@Suite struct RotationTests {
    private let ref = reference("finance/department-key")

    @Test func rotatedKeysWrapUnderTheNewVersionAndStillUnwrapOldDataKeys() async throws {
        let dir = try TemporaryDirectory()
        let owner = dir.file("finance.keyring")
        try KeyringFile.create(at: owner, identity: "finance")
        try KeyringFile.createKey("department-key", in: owner)
        let beforeBytes = try String(contentsOfFile: owner, encoding: .utf8)
        #expect(!beforeBytes.contains("\"version\" : 2") && beforeBytes.components(separatedBy: "\"version\"").count == 2)

        let before = try LocalKeyring(contentsOf: owner)
        let old = try await before.generateDataKey(for: ref)
        #expect(old.wrapped.count == 61 && old.wrapped[0] == 1)
        #expect(try KeyringFile.rotateKey("department-key", in: owner) == 2)
        #expect(try KeyringFile.versions(owner) == ["department-key": [1, 2]])
        #expect(try KeyringFile.list(owner).keyIds == ["department-key"])

        let after = try LocalKeyring(contentsOf: owner)
        let new = try await after.generateDataKey(for: ref)
        #expect(new.wrapped.count == 65 && Array(new.wrapped[0..<5]) == [2, 0, 0, 0, 2])
        #expect(bytes(of: try await after.unwrap(old.wrapped, for: ref)) == bytes(of: old.plaintext))
        #expect(bytes(of: try await after.unwrap(new.wrapped, for: ref)) == bytes(of: new.plaintext))

        // A keyring loaded before the rotation holds version 1 only: it says what is missing.
        do {
            _ = try await before.unwrap(new.wrapped, for: ref)
            Issue.record("a keyring without version 2 unwrapped a version-2 data key")
        } catch {
            #expect(error.kind == .accessDenied)
            #expect("\(error)".contains("not its version 2"))
        }

        // Granting copies every version; granting again after another rotation adds the new one.
        let consumer = dir.file("consumer.keyring")
        try KeyringFile.create(at: consumer, identity: "consumer")
        #expect(try KeyringFile.grant("department-key", from: owner, to: consumer))
        #expect(try KeyringFile.versions(consumer) == ["department-key": [1, 2]])
        #expect(!(try KeyringFile.grant("department-key", from: owner, to: consumer)))
        try KeyringFile.rotateKey("department-key", in: owner)
        #expect(try KeyringFile.grant("department-key", from: owner, to: consumer))
        let reader = try LocalKeyring(contentsOf: consumer)
        #expect(bytes(of: try await reader.unwrap(old.wrapped, for: ref)) == bytes(of: old.plaintext))
        #expect(bytes(of: try await reader.unwrap(new.wrapped, for: ref)) == bytes(of: new.plaintext))

        // Deterministic (record-key) secrets come from version 1, so they survive rotation.
        let derivedBefore = try await before.deriveKey(for: ref, context: [1, 2, 3], byteCount: 64)
        let derivedAfter = try await reader.deriveKey(for: ref, context: [1, 2, 3], byteCount: 64)
        #expect(bytes(of: derivedBefore) == bytes(of: derivedAfter))

        // Destroying removes every version.
        #expect(try KeyringFile.destroyKey("department-key", in: consumer))
        #expect(try KeyringFile.versions(consumer).isEmpty)
        await #expect(throws: KMSError.self) { try await LocalKeyring(contentsOf: consumer).unwrap(old.wrapped, for: ref) }
    }

    @Test func theWrappedVersionIsAuthenticated() async throws {
        let v1 = try SymmetricSecret(randomByteCount: 32), v2 = try SymmetricSecret(randomByteCount: 32)
        // Version 3 has version 2's material: only the authenticated version number tells them apart.
        let keyring = LocalKeyring(identity: "f", versionedKeys: ["department-key": [1: v1, 2: v2, 3: v2]])
        let dataKey = try await keyring.generateDataKey(for: ref)
        #expect(LocalKeyWrap.kekVersion(of: dataKey.wrapped) == 3)
        var wrapped = dataKey.wrapped
        wrapped[4] = 2
        await #expect(throws: KMSError.self) { try await keyring.unwrap(wrapped, for: ref) }
        wrapped[4] = 1  // format 2 never carries version 1
        #expect(LocalKeyWrap.kekVersion(of: wrapped) == nil)
        #expect(bytes(of: try await keyring.unwrap(dataKey.wrapped, for: ref)) == bytes(of: dataKey.plaintext))
    }
}
