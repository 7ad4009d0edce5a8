/// The keys this sidecar's identity may use, as granted by governance.
///
/// Grants are checked before any KMS call, so a misconfigured topic policy cannot make Veil
/// encrypt or decrypt under a key its identity was not given.
public struct Grants: Hashable, Sendable {
    /// Keys Veil may encrypt new records under.
    public let encrypt: Set<KeyReference>
    /// Keys whose records Veil may decrypt for its application.
    public let decrypt: Set<KeyReference>

    /// Creates grants.
    public init(encrypt: Set<KeyReference> = [], decrypt: Set<KeyReference> = []) {
        self.encrypt = encrypt
        self.decrypt = decrypt
    }

    /// Whether records may be encrypted under `key`.
    public func allowsEncryption(with key: KeyReference) -> Bool { self.encrypt.contains(key) }
    /// Whether records encrypted under `key` may be decrypted.
    public func allowsDecryption(with key: KeyReference) -> Bool { self.decrypt.contains(key) }
}

/// Limits on each data encryption key (DEK), bounding both nonce reuse risk and KMS traffic.
public struct DEKPolicy: Hashable, Sendable {
    /// Encryptions after which a DEK is retired (random 96-bit nonces stay safe well below 2^32).
    public let maxEncryptions: Int
    /// Seconds after which a DEK is retired even if little used.
    public let maxAgeSeconds: Int
    /// How many unwrapped DEKs the decrypt side keeps, so steady-state fetches need no KMS call.
    public let decryptCacheEntries: Int

    /// The largest `max_encryptions` accepted: NIST's bound for random GCM nonces under one key.
    public static let encryptionLimit = 1 << 32

    /// Creates a policy; defaults are 1,000,000 encryptions, one hour, 1024 cached keys.
    public init(maxEncryptions: Int = 1_000_000, maxAgeSeconds: Int = 3600, decryptCacheEntries: Int = 1024) {
        self.maxEncryptions = maxEncryptions
        self.maxAgeSeconds = maxAgeSeconds
        self.decryptCacheEntries = decryptCacheEntries
    }
}

extension Grants {
    init(_ node: ConfigNode, kms: [String: KMSConfiguration]) throws(ConfigurationError) {
        let fields = try node.mapping(allowed: ["encrypt", "decrypt"])
        func references(_ key: String) throws(ConfigurationError) -> Set<KeyReference> {
            guard let list = fields[key] else { return [] }
            var result: Set<KeyReference> = []
            for entry in try list.list() {
                result.insert(try KeyReference(entry, kms: kms))
            }
            return result
        }
        self.init(encrypt: try references("encrypt"), decrypt: try references("decrypt"))
    }
}

extension DEKPolicy {
    init(_ node: ConfigNode) throws(ConfigurationError) {
        let fields = try node.mapping(allowed: ["max_encryptions", "max_age_seconds", "decrypt_cache_entries"])
        let defaults = DEKPolicy()
        self.init(
            maxEncryptions: try fields["max_encryptions"]?.int(in: 1...Self.encryptionLimit) ?? defaults.maxEncryptions,
            maxAgeSeconds: try fields["max_age_seconds"]?.int(in: 1...31_536_000) ?? defaults.maxAgeSeconds,
            decryptCacheEntries: try fields["decrypt_cache_entries"]?.int(in: 0...10_000_000)
                ?? defaults.decryptCacheEntries)
    }
}

extension KeyReference {
    /// Parses a reference and checks that its KMS is configured.
    init(_ node: ConfigNode, kms: [String: KMSConfiguration]) throws(ConfigurationError) {
        let text = try node.nonEmptyString()
        self = try node.located { () throws(ConfigurationError) in try KeyReference(parsing: text) }
        guard kms[self.kms] != nil else {
            let known = kms.keys.sorted().joined(separator: ", ")
            throw node.error(
                "key \(self) names KMS '\(self.kms)', which is not configured under kms (configured: \(known.isEmpty ? "none" : known))"
            )
        }
    }
}
