#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The decoded contents of a keyring file: whose keyring it is and the KEKs
/// granted to that identity. The JSON form is documented in docs/FORMAT.md.
struct KeyringDocument {
    static let format = "veil-keyring"
    static let version = 1

    /// One 256-bit KEK: a version of the key `id` (1 until the key is rotated).
    struct Entry {
        var id: String
        var material: SymmetricSecret
        /// Seconds since the Unix epoch; informational only.
        var created: Int64
        var version: UInt32 = 1
    }

    var identity: String
    var keys: [Entry]

    func entry(_ keyId: String) -> Entry? { keys.first { $0.id == keyId } }

    /// Every version of `keyId`, oldest first.
    func versions(_ keyId: String) -> [Entry] { keys.filter { $0.id == keyId }.sorted { $0.version < $1.version } }

    // The Codable mirror of the file. Kept private so base64 key material
    // never travels further than encode/decode.
    private struct File: Codable {
        var format: String
        var version: Int
        var identity: String
        var keys: [Key]
        struct Key: Codable {
            var id: String
            var algorithm: String
            var material: String
            var created: Int64
            /// Absent for version 1, so keyrings that were never rotated keep their exact form.
            var version: UInt32?
        }
    }

    static func decode(_ bytes: [UInt8], path: String) throws(KeyringError) -> KeyringDocument {
        let file: File
        do {
            file = try JSONDecoder().decode(File.self, from: Data(bytes))
        } catch {
            throw .malformed(path: path, reason: "not a keyring JSON document")
        }
        guard file.format == format else {
            throw .malformed(path: path, reason: "\"format\" must be \"\(format)\"")
        }
        guard file.version == version else {
            throw .malformed(path: path, reason: "unsupported version \(file.version); this build reads version \(version)")
        }
        var seen = Set<String>()
        var entries: [Entry] = []
        for key in file.keys {
            guard isValidKeyId(key.id) else { throw .malformed(path: path, reason: "invalid key id '\(key.id)'") }
            let version = key.version ?? 1
            guard version >= 1 else { throw .malformed(path: path, reason: "key '\(key.id)' has version 0; versions start at 1") }
            guard seen.insert("\(key.id)\u{0}\(version)").inserted else {
                throw .malformed(path: path, reason: version == 1 ? "key '\(key.id)' appears twice" : "key '\(key.id)' version \(version) appears twice")
            }
            guard key.algorithm == "AES-256" else {
                throw .malformed(path: path, reason: "key '\(key.id)' has unsupported algorithm '\(key.algorithm)'")
            }
            guard var material = Data(base64Encoded: key.material), material.count == 32 else {
                throw .malformed(path: path, reason: "key '\(key.id)' material is not 32 bytes of base64")
            }
            entries.append(Entry(id: key.id, material: SymmetricSecret(copying: material), created: key.created, version: version))
            material.resetBytes(in: 0..<material.count)
        }
        return KeyringDocument(identity: file.identity, keys: entries)
    }

    func encode() -> [UInt8] {
        let file = File(
            format: Self.format, version: Self.version, identity: identity,
            keys: keys.sorted { ($0.id, $0.version) < ($1.id, $1.version) }.map { entry in
                Key(
                    id: entry.id, algorithm: "AES-256",
                    material: entry.material.withUnsafeBytes { Data($0).base64EncodedString() },
                    created: entry.created, version: entry.version == 1 ? nil : entry.version)
            })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        // Encoding plain strings and integers cannot fail.
        var bytes = Array(try! encoder.encode(file))
        bytes.append(UInt8(ascii: "\n"))
        return bytes
    }

    private typealias Key = File.Key

    /// Key ids are printable (no control characters) and fit in a reference.
    static func isValidKeyId(_ id: String) -> Bool {
        let count = id.utf8.count
        return count >= 1 && count <= KeyReference.maximumKeyIdLength
            && !id.unicodeScalars.contains { $0.properties.generalCategory == .control }
    }
}
