/// The keys this sidecar's identity may use, as granted by governance.
///
/// Grants are checked before any KMS call, so a misconfigured topic policy cannot make Veil
/// encrypt or decrypt under a key its identity was not given. A grant may carry an expiry: from
/// that second on it no longer allows anything, without a restart, because every check reads
/// the clock.
public struct Grants: Hashable, Sendable {
    /// Keys Veil may encrypt new records under.
    public let encrypt: Set<KeyReference>
    /// Keys whose records Veil may decrypt for its application.
    public let decrypt: Set<KeyReference>
    /// When an encrypt grant stops allowing encryption; keys not listed never expire.
    public let encryptExpiry: [KeyReference: UTCTimestamp]
    /// When a decrypt grant stops allowing decryption; keys not listed never expire.
    public let decryptExpiry: [KeyReference: UTCTimestamp]

    /// Creates grants.
    public init(
        encrypt: Set<KeyReference> = [], decrypt: Set<KeyReference> = [],
        encryptExpiry: [KeyReference: UTCTimestamp] = [:], decryptExpiry: [KeyReference: UTCTimestamp] = [:]
    ) {
        self.encrypt = encrypt
        self.decrypt = decrypt
        self.encryptExpiry = encryptExpiry
        self.decryptExpiry = decryptExpiry
    }

    /// Whether records may be encrypted under `key` now.
    public func allowsEncryption(with key: KeyReference) -> Bool {
        self.encrypt.contains(key) && Self.live(key, self.encryptExpiry)
    }

    /// Whether records encrypted under `key` may be decrypted now.
    public func allowsDecryption(with key: KeyReference) -> Bool {
        self.decrypt.contains(key) && Self.live(key, self.decryptExpiry)
    }

    /// Why decryption under `key` is refused now, or `nil` when it is allowed.
    public func decryptionDenial(for key: KeyReference, now: UTCTimestamp = .now()) -> String? {
        guard self.decrypt.contains(key) else { return "no grant for \(key)" }
        if let until = self.decryptExpiry[key], now >= until { return "grant for \(key) expired at \(until)" }
        return nil
    }

    // The common case has no expiries at all and reads no clock.
    private static func live(_ key: KeyReference, _ expiry: [KeyReference: UTCTimestamp]) -> Bool {
        guard !expiry.isEmpty, let until = expiry[key] else { return true }
        return UTCTimestamp.now() < until
    }
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
        // Each entry is a key reference, or `{ key: REF, expires: RFC3339 }` for a grant that lapses.
        func references(_ key: String) throws(ConfigurationError) -> (Set<KeyReference>, [KeyReference: UTCTimestamp]) {
            guard let list = fields[key] else { return ([], [:]) }
            var result: Set<KeyReference> = []
            var expiry: [KeyReference: UTCTimestamp] = [:]
            for entry in try list.list() {
                guard entry.isMapping else {
                    result.insert(try KeyReference(entry, kms: kms))
                    continue
                }
                let grant = try entry.mapping(allowed: ["key", "expires"])
                let reference = try KeyReference(grant.required("key"), kms: kms)
                result.insert(reference)
                if let node = grant["expires"] {
                    let text = try node.nonEmptyString()
                    guard let until = UTCTimestamp(parsing: text) else {
                        throw node.error("expected a UTC time such as 2026-11-30T21:00:00Z, got '\(text)'")
                    }
                    // The same key granted twice keeps the earlier expiry: the stricter reading.
                    expiry[reference] = min(until, expiry[reference] ?? until)
                }
            }
            return (result, expiry)
        }
        let (encrypt, encryptExpiry) = try references("encrypt")
        let (decrypt, decryptExpiry) = try references("decrypt")
        self.init(encrypt: encrypt, decrypt: decrypt, encryptExpiry: encryptExpiry, decryptExpiry: decryptExpiry)
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
