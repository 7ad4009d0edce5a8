/// The embedded default KMS: the KEKs granted to one identity, loaded from
/// that identity's keyring file.
///
/// DEKs are generated locally with `RAND_bytes` and wrapped with AES-256-GCM
/// under the KEK (see ``LocalKeyWrap``). A keyring that lacks a key denies
/// access to it, which is how a consumer without a grant is refused.
/// The file is read once at init; restart (or build a new instance) to pick
/// up new grants.
public final class LocalKeyring: KeyManagementService, CustomStringConvertible {
    /// The identity the keyring belongs to.
    public let identity: String
    /// Where the keys came from, for messages; nil for an in-memory keyring.
    public let path: String?
    private let keys: [String: SymmetricSecret]

    /// Loads the keyring at `path`, refusing files that group or others can access.
    public convenience init(contentsOf path: String) throws(KeyringError) {
        let document = try KeyringFile.load(path)
        self.init(
            identity: document.identity,
            keys: Dictionary(document.keys.map { ($0.id, $0.material) }, uniquingKeysWith: { first, _ in first }),
            path: path)
    }

    /// An in-memory keyring (tests, demos). Every key must be 32 bytes.
    public init(identity: String, keys: [String: SymmetricSecret], path: String? = nil) {
        precondition(keys.values.allSatisfy { $0.count == 32 }, "local keyring keys are 256-bit")
        self.identity = identity
        self.keys = keys
        self.path = path
    }

    /// The ids of the keys this identity holds, sorted.
    public var keyIds: [String] { keys.keys.sorted() }

    public var description: String {
        "LocalKeyring(identity: \(identity), keys: \(keyIds), material redacted)"
    }

    public func generateDataKey(for reference: KeyReference) async throws(KMSError) -> DataKey {
        let kek = try kek(for: reference)
        let dek: SymmetricSecret
        do {
            dek = try SymmetricSecret(randomByteCount: 32)
        } catch {
            throw KMSError(.unavailable, reference, "random number generator failed")
        }
        let wrapped = try LocalKeyWrap.wrap(dek, under: kek, for: reference)
        return DataKey(reference: reference, plaintext: dek, wrapped: wrapped)
    }

    public func unwrap(_ wrapped: [UInt8], for reference: KeyReference) async throws(KMSError) -> SymmetricSecret {
        try LocalKeyWrap.unwrap(wrapped, under: kek(for: reference), for: reference)
    }

    /// HKDF-SHA256 from the KEK (see ``LocalKeyDerivation``): every holder of the key derives
    /// the same secret, and nothing else can.
    public func deriveKey(for reference: KeyReference, context: [UInt8], byteCount: Int) async throws(KMSError)
        -> SymmetricSecret
    {
        try LocalKeyDerivation.derive(from: kek(for: reference), for: reference, context: context, byteCount: byteCount)
    }

    private func kek(for reference: KeyReference) throws(KMSError) -> SymmetricSecret {
        guard let kek = keys[reference.keyId] else {
            let location = path.map { " (keyring \($0))" } ?? ""
            throw KMSError(
                .accessDenied, reference,
                "identity '\(identity)' holds no grant for key '\(reference.keyId)'\(location)")
        }
        return kek
    }
}
