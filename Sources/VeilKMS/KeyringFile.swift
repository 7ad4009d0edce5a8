/// Administration of keyring files for the `veil keys` commands: create a
/// keyring, create a key in it, grant a key to another identity's keyring,
/// and list key ids. Key material is never returned or printed.
///
/// Each change reads the file, edits it and replaces it atomically. Two
/// concurrent changes to one file can lose one of them; run them one at a time.
public enum KeyringFile {
    /// Creates an empty keyring for `identity`; fails if `path` exists.
    public static func create(at path: String, identity: String) throws(KeyringError) {
        let document = KeyringDocument(identity: identity, keys: [])
        try SecureFile.writeAtomically(document.encode(), to: path, exclusive: true)
    }

    /// Generates a new random 256-bit KEK named `keyId` in the keyring at `path`.
    public static func createKey(_ keyId: String, in path: String, now: Int64 = currentUnixTime())
        throws(KeyringError)
    {
        guard KeyringDocument.isValidKeyId(keyId) else { throw .invalidKeyId(keyId) }
        var document = try load(path)
        guard document.entry(keyId) == nil else { throw .keyExists(keyId: keyId, path: path) }
        let material: SymmetricSecret
        do {
            material = try SymmetricSecret(randomByteCount: 32)
        } catch {
            throw .io(path: path, operation: "RAND_bytes", errno: 0)
        }
        document.keys.append(KeyringDocument.Entry(id: keyId, material: material, created: now))
        try SecureFile.writeAtomically(document.encode(), to: path, exclusive: false)
    }

    /// Copies key `keyId` from the keyring at `source` into the one at
    /// `destination`, granting it to the destination's identity.
    ///
    /// Granting a key the destination already holds is a no-op; a different
    /// key with the same id is refused.
    /// - Returns: false if the destination already held the key.
    @discardableResult
    public static func grant(_ keyId: String, from source: String, to destination: String) throws(KeyringError)
        -> Bool
    {
        let from = try load(source)
        let versions = from.versions(keyId)
        guard !versions.isEmpty else { throw .keyNotInKeyring(keyId: keyId, path: source) }
        var to = try load(destination)
        // Every version travels, so the recipient reads records under older versions too.
        var added = false
        for entry in versions {
            if let existing = to.versions(keyId).first(where: { $0.version == entry.version }) {
                guard sameMaterial(existing.material, entry.material) else {
                    throw .keyConflict(keyId: keyId, path: destination)
                }
                continue
            }
            to.keys.append(entry)
            added = true
        }
        guard added else { return false }
        try SecureFile.writeAtomically(to.encode(), to: destination, exclusive: false)
        return true
    }

    /// Adds a new random version of key `keyId` to the keyring at `path`. Keyrings loaded from
    /// then on wrap new data keys under it; older versions stay, so older records stay readable.
    /// - Returns: the new version.
    @discardableResult
    public static func rotateKey(_ keyId: String, in path: String, now: Int64 = currentUnixTime()) throws(KeyringError) -> UInt32 {
        var document = try load(path)
        guard let latest = document.versions(keyId).last else { throw .keyNotInKeyring(keyId: keyId, path: path) }
        let material: SymmetricSecret
        do {
            material = try SymmetricSecret(randomByteCount: 32)
        } catch {
            throw .io(path: path, operation: "RAND_bytes", errno: 0)
        }
        let version = latest.version + 1
        document.keys.append(KeyringDocument.Entry(id: keyId, material: material, created: now, version: version))
        try SecureFile.writeAtomically(document.encode(), to: path, exclusive: false)
        return version
    }

    /// The versions of each key in the keyring at `path`.
    public static func versions(_ path: String) throws(KeyringError) -> [String: [UInt32]] {
        let document = try load(path)
        return Dictionary(grouping: document.keys, by: \.id).mapValues { $0.map(\.version).sorted() }
    }

    /// Removes key `keyId`, every version, from the keyring at `path` (crypto-shredding): the file is replaced
    /// by one without the key, so every DEK wrapped under it becomes unwrappable for whoever
    /// loads this keyring from then on.
    /// - Returns: false if the keyring did not hold the key.
    @discardableResult
    public static func destroyKey(_ keyId: String, in path: String) throws(KeyringError) -> Bool {
        var document = try load(path)
        guard document.entry(keyId) != nil else { return false }
        document.keys.removeAll { $0.id == keyId }
        try SecureFile.writeAtomically(document.encode(), to: path, exclusive: false)
        return true
    }

    /// The identity and key ids (sorted) in the keyring at `path`.
    public static func list(_ path: String) throws(KeyringError) -> (identity: String, keyIds: [String]) {
        let document = try load(path)
        return (document.identity, Set(document.keys.map(\.id)).sorted())
    }

    static func load(_ path: String) throws(KeyringError) -> KeyringDocument {
        var bytes = try SecureFile.readPrivate(path)
        defer { bytes.withUnsafeMutableBytes { wipe($0) } }
        return try KeyringDocument.decode(bytes, path: path)
    }

    private static func sameMaterial(_ a: SymmetricSecret, _ b: SymmetricSecret) -> Bool {
        a.withUnsafeBytes { x in b.withUnsafeBytes { y in x.count == y.count && zip(x, y).allSatisfy { $0 == $1 } } }
    }

    /// Seconds since the Unix epoch.
    public static func currentUnixTime() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
