/// Routes each key reference to the KMS its `kms` name designates, so a
/// consumer finds the right service from the reference stored in an envelope.
///
/// The registry is itself a ``KeyManagementService``: callers hand it to the
/// caches as the single KMS.
public struct KMSRegistry: KeyManagementService {
    private let services: [String: any KeyManagementService]

    /// - Parameter services: KMS name (the part before `/` in a reference) to service.
    public init(_ services: [String: any KeyManagementService]) {
        self.services = services
    }

    /// Names of the registered services, sorted.
    public var names: [String] { services.keys.sorted() }

    /// The service for `reference`, or `keyNotFound` if its KMS is not configured.
    public func service(for reference: KeyReference) throws(KMSError) -> any KeyManagementService {
        guard let service = services[reference.kms] else {
            throw KMSError(.keyNotFound, reference, "no KMS named '\(reference.kms)' is configured")
        }
        return service
    }

    public func generateDataKey(for reference: KeyReference) async throws(KMSError) -> DataKey {
        try await service(for: reference).generateDataKey(for: reference)
    }

    public func unwrap(_ wrapped: [UInt8], for reference: KeyReference) async throws(KMSError) -> SymmetricSecret {
        try await service(for: reference).unwrap(wrapped, for: reference)
    }

    public func deriveKey(for reference: KeyReference, context: [UInt8], byteCount: Int) async throws(KMSError)
        -> SymmetricSecret
    {
        try await service(for: reference).deriveKey(for: reference, context: context, byteCount: byteCount)
    }
}
