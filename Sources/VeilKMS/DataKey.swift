/// A freshly generated data-encryption key: the plaintext DEK for local use and
/// the same DEK wrapped by the KMS, to be stored beside the data.
public struct DataKey: Sendable, CustomStringConvertible {
    /// The key-encryption key that wrapped ``wrapped``.
    public let reference: KeyReference
    /// The 32-byte AES-256 DEK. Never log it; its description is redacted.
    public let plaintext: SymmetricSecret
    /// The DEK wrapped by the KMS; opaque outside the KMS that made it.
    public let wrapped: [UInt8]

    public init(reference: KeyReference, plaintext: SymmetricSecret, wrapped: [UInt8]) {
        self.reference = reference
        self.plaintext = plaintext
        self.wrapped = wrapped
    }

    public var description: String {
        "DataKey(\(reference), plaintext redacted, wrapped \(wrapped.count) bytes)"
    }
}
