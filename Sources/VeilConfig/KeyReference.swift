/// Names a key encryption key: which configured KMS holds it, and its id within that KMS.
///
/// Written `KMS/KEY_ID`, e.g. `finance/department-key`. Only the first `/` separates, so AWS key
/// ARNs (`aws/arn:aws:kms:…:key/1234`) keep their own slashes in ``keyId``.
public struct KeyReference: Hashable, Sendable, CustomStringConvertible {
    /// The name of a KMS entry in the `kms:` section.
    public let kms: String
    /// The key's id inside that KMS.
    public let keyId: String

    /// Creates a reference from its parts.
    public init(kms: String, keyId: String) {
        self.kms = kms
        self.keyId = keyId
    }

    /// Parses `KMS/KEY_ID`.
    public init(parsing text: String) throws(ConfigurationError) {
        guard let slash = text.firstIndex(of: "/") else {
            throw ConfigurationError(path: "", problem: "expected a key reference KMS/KEY_ID, got '\(text)'")
        }
        let kms = text[..<slash]
        let keyId = text[text.index(after: slash)...]
        guard !kms.isEmpty, !keyId.isEmpty, !text.contains(where: \.isWhitespace) else {
            throw ConfigurationError(path: "", problem: "expected a key reference KMS/KEY_ID, got '\(text)'")
        }
        self.kms = String(kms)
        self.keyId = String(keyId)
    }

    public var description: String { "\(self.kms)/\(self.keyId)" }
}
