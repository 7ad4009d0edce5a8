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

    /// Derives a secret that is the same on every call, in every process, for the same
    /// key, `context` and length: the root of deterministic encryption (record keys), where
    /// equal plaintexts must give equal ciphertexts without any shared state.
    ///
    /// Only holders of the key can derive it. A KMS that cannot derive keys refuses with
    /// ``KMSError/Kind/accessDenied`` (the default).
    func deriveKey(for reference: KeyReference, context: [UInt8], byteCount: Int) async throws(KMSError) -> SymmetricSecret
}

extension KeyManagementService {
    public func deriveKey(for reference: KeyReference, context: [UInt8], byteCount: Int) async throws(KMSError)
        -> SymmetricSecret
    {
        throw KMSError(.accessDenied, reference, "this KMS cannot derive deterministic keys")
    }
}
