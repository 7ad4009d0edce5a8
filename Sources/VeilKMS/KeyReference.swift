/// Names one key-encryption key: the KMS it lives in and the key's id there.
///
/// Written as `kms/keyId`. Only the first `/` separates the two parts, so a key
/// id may itself contain `/` (an AWS key ARN, for example). The reference is
/// not secret: it is stored in every envelope and appears in error messages.
public struct KeyReference: Hashable, Sendable, CustomStringConvertible, LosslessStringConvertible {
    /// Longest KMS name in UTF-8 bytes; the envelope stores its length in one byte.
    public static let maximumKMSNameLength = 255
    /// Longest key id in UTF-8 bytes; generous for ARNs, small enough to keep headers bounded.
    public static let maximumKeyIdLength = 2048

    /// The name under which the sidecar's configuration registers the KMS.
    public let kms: String
    /// The key's id inside that KMS.
    public let keyId: String

    /// Creates a reference, or returns nil if either part is empty or too long,
    /// or the KMS name contains `/` (it could not be parsed back).
    public init?(kms: String, keyId: String) {
        let kmsCount = kms.utf8.count
        let keyIdCount = keyId.utf8.count
        guard (1...Self.maximumKMSNameLength).contains(kmsCount),
              (1...Self.maximumKeyIdLength).contains(keyIdCount),
              !kms.utf8.contains(UInt8(ascii: "/"))
        else { return nil }
        self.kms = kms
        self.keyId = keyId
    }

    /// Parses `kms/keyId`, splitting on the first `/`.
    public init?(_ description: String) {
        guard let slash = description.firstIndex(of: "/") else { return nil }
        let kms = String(description[..<slash])
        let keyId = String(description[description.index(after: slash)...])
        self.init(kms: kms, keyId: keyId)
    }

    public var description: String { "\(kms)/\(keyId)" }
}
