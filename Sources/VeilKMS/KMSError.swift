/// Why a KMS operation failed. Messages name the key reference, never key
/// material or plaintext.
public struct KMSError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The failure classes that callers act on differently.
    public enum Kind: Sendable, Hashable {
        /// This identity may not use the key (not granted, or refused by the KMS).
        case accessDenied
        /// No such key, or no KMS with that name is configured.
        case keyNotFound
        /// The KMS could not be reached or failed; retrying later may succeed.
        case unavailable
        /// The wrapped DEK is malformed or failed authentication under the key.
        case invalidCiphertext
    }

    public let kind: Kind
    public let reference: KeyReference
    /// Human-readable detail; must not contain secrets.
    public let message: String

    public init(_ kind: Kind, _ reference: KeyReference, _ message: String) {
        self.kind = kind
        self.reference = reference
        self.message = message
    }

    public var description: String {
        let label: String
        switch kind {
        case .accessDenied: label = "access denied"
        case .keyNotFound: label = "key not found"
        case .unavailable: label = "KMS unavailable"
        case .invalidCiphertext: label = "invalid wrapped data key"
        }
        return "\(label) for key \(reference): \(message)"
    }
}
