@_exported import struct VeilKMS.KeyReference

extension KeyReference {
    /// Parses `KMS/KEY_ID` from configuration, with a configuration error on bad input.
    /// The type itself lives in VeilKMS, because envelopes and KMS backends name keys too.
    public init(parsing text: String) throws(ConfigurationError) {
        guard !text.contains(where: \.isWhitespace), let parsed = KeyReference(text) else {
            throw ConfigurationError(path: "", problem: "expected a key reference KMS/KEY_ID, got '\(text)'")
        }
        self = parsed
    }
}
