import Testing
import VeilKMS

@Suite struct SecretTests {
    @Test func descriptionsNeverShowKeyMaterial() throws {
        let material = [UInt8](repeating: 0xAB, count: 32)
        let secret = SymmetricSecret(copying: material)
        let dataKey = DataKey(reference: reference("local/k"), plaintext: secret, wrapped: [1, 2, 3])
        let keyring = LocalKeyring(identity: "owner", keys: ["k": secret])
        for text in [
            "\(secret)", String(reflecting: secret), "\(dataKey)", String(reflecting: dataKey), "\(keyring)",
        ] {
            #expect(!text.lowercased().contains("abab"), "leaked: \(text)")
            #expect(!text.contains("171, 171"), "leaked: \(text)")
        }
        #expect("\(secret)".contains("redacted"))
    }

    @Test func randomSecretsDiffer() throws {
        let a = try SymmetricSecret(randomByteCount: 32)
        let b = try SymmetricSecret(randomByteCount: 32)
        #expect(a.count == 32)
        #expect(bytes(of: a) != bytes(of: b))
        #expect(bytes(of: a) != [UInt8](repeating: 0, count: 32))
    }
}
