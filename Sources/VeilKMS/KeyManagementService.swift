/// A key management service that holds key-encryption keys and wraps and
/// unwraps data keys under them.
///
/// Calls may be slow (network round trips), so Veil calls them once per data
/// key, never per record; the envelope layer caches the results.
/// Implementations must be safe to call concurrently.
public protocol KeyManagementService: Sendable {
    /// Creates a new random 256-bit DEK and returns it both in plaintext and
    /// wrapped under the key `reference` names.
    func generateDataKey(for reference: KeyReference) async throws(KMSError) -> DataKey

    /// Recovers the plaintext DEK from bytes that `generateDataKey(for:)` of a
    /// KMS holding the same key produced.
    func unwrap(_ wrapped: [UInt8], for reference: KeyReference) async throws(KMSError) -> SymmetricSecret
}
