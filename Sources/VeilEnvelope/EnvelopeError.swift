import VeilKMS

/// Why sealing or opening an envelope failed. Descriptions never contain key
/// material, plaintext or ciphertext bytes.
public enum EnvelopeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The bytes start with the envelope magic but are not a well-formed envelope.
    case malformed(String)
    /// The envelope is of a format version this build does not read.
    case unsupportedVersion(UInt8)
    /// The tag did not verify: wrong key, topic or field path, or altered bytes.
    /// No plaintext is released.
    case authenticationFailed
    /// The data key reached its hard encryption limit; get a fresh one.
    case dataKeyExhausted(KeyReference)
    /// An argument is out of range (for example a field path over 65,535 bytes).
    case invalidArgument(String)
    /// The KMS refused or failed to provide the data key.
    case kms(KMSError)
    /// OpenSSL failed for a reason other than authentication.
    case cryptoFailure(String)

    public var description: String {
        switch self {
        case .malformed(let reason): return "malformed envelope: \(reason)"
        case .unsupportedVersion(let version): return "unsupported envelope version \(version)"
        case .authenticationFailed:
            return "envelope failed authentication (wrong key, topic or field path, or the record was altered)"
        case .dataKeyExhausted(let reference): return "data key for \(reference) reached its encryption limit"
        case .invalidArgument(let reason): return "invalid argument: \(reason)"
        case .kms(let error): return error.description
        case .cryptoFailure(let reason): return "cryptographic failure: \(reason)"
        }
    }
}
