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
    /// Key id to its versions (1 until rotated); new data keys are wrapped under the latest.
    private let keys: [String: [UInt32: SymmetricSecret]]

    /// Loads the keyring at `path`, refusing files that group or others can access.
    public convenience init(contentsOf path: String) throws(KeyringError) {
        let document = try KeyringFile.load(path)
        var keys: [String: [UInt32: SymmetricSecret]] = [:]
        for entry in document.keys { keys[entry.id, default: [:]][entry.version] = entry.material }
        self.init(identity: document.identity, versionedKeys: keys, path: path)
    }

    /// An in-memory keyring (tests, demos). Every key must be 32 bytes.
    public convenience init(identity: String, keys: [String: SymmetricSecret], path: String? = nil) {
        self.init(identity: identity, versionedKeys: keys.mapValues { [1: $0] }, path: path)
    }

    /// An in-memory keyring whose keys may have several versions.
    public init(identity: String, versionedKeys: [String: [UInt32: SymmetricSecret]], path: String? = nil) {
        precondition(versionedKeys.values.allSatisfy { $0.values.allSatisfy { $0.count == 32 } }, "local keyring keys are 256-bit")
        self.identity = identity
        self.keys = versionedKeys
        self.path = path
    }

    /// The ids of the keys this identity holds, sorted.
    public var keyIds: [String] { keys.keys.sorted() }

    public var description: String {
        "LocalKeyring(identity: \(identity), keys: \(keyIds), material redacted)"
    }

    public func generateDataKey(for reference: KeyReference) async throws(KMSError) -> DataKey {
        let versions = try kekVersions(for: reference)
        let latest = versions.keys.max()!
        let kek = versions[latest]!
        let dek: SymmetricSecret
        do {
            dek = try SymmetricSecret(randomByteCount: 32)
        } catch {
            throw KMSError(.unavailable, reference, "random number generator failed")
        }
        let wrapped = try LocalKeyWrap.wrap(dek, under: kek, kekVersion: latest, for: reference)
        return DataKey(reference: reference, plaintext: dek, wrapped: wrapped)
    }

    public func unwrap(_ wrapped: [UInt8], for reference: KeyReference) async throws(KMSError) -> SymmetricSecret {
        let version = LocalKeyWrap.kekVersion(of: wrapped) ?? 1
        guard let kek = try kekVersions(for: reference)[version] else {
            let location = path.map { " (keyring \($0))" } ?? ""
            throw KMSError(
                .accessDenied, reference,
                "identity '\(identity)' holds key '\(reference.keyId)' but not its version \(version)\(location); grant it again after rotation")
        }
        return try LocalKeyWrap.unwrap(wrapped, under: kek, for: reference)
    }

    /// HKDF-SHA256 from the KEK (see ``LocalKeyDerivation``): every holder of the key derives
    /// the same secret, and nothing else can. Always from the key's oldest version, since
    /// deterministic (record-key) ciphertexts must stay equal across rotation.
    public func deriveKey(for reference: KeyReference, context: [UInt8], byteCount: Int) async throws(KMSError)
        -> SymmetricSecret
    {
        let versions = try kekVersions(for: reference)
        return try LocalKeyDerivation.derive(from: versions[versions.keys.min()!]!, for: reference, context: context, byteCount: byteCount)
    }

    private func kekVersions(for reference: KeyReference) throws(KMSError) -> [UInt32: SymmetricSecret] {
        guard let kek = keys[reference.keyId], !kek.isEmpty else {
            let location = path.map { " (keyring \($0))" } ?? ""
            throw KMSError(
                .accessDenied, reference,
                "identity '\(identity)' holds no grant for key '\(reference.keyId)'\(location)")
        }
        return kek
    }
}
