import NIOConcurrencyHelpers

/// Wraps a KMS and counts the calls that reach it, so tests and the demo can
/// show KMS calls per record (the target is none per record in steady state).
public final class CountingKMS: KeyManagementService {
    /// Calls made so far, successful or not.
    public struct Counts: Sendable, Equatable {
        public var generateDataKey = 0
        public var unwrap = 0
        public var deriveKey = 0
        public init(generateDataKey: Int = 0, unwrap: Int = 0, deriveKey: Int = 0) {
            self.generateDataKey = generateDataKey
            self.unwrap = unwrap
            self.deriveKey = deriveKey
        }
        public var total: Int { generateDataKey + unwrap + deriveKey }
    }

    private let base: any KeyManagementService
    private let state = NIOLockedValueBox(Counts())

    public init(_ base: any KeyManagementService) {
        self.base = base
    }

    /// A snapshot of the counters.
    public var counts: Counts { state.withLockedValue { $0 } }

    public func generateDataKey(for reference: KeyReference) async throws(KMSError) -> DataKey {
        state.withLockedValue { $0.generateDataKey += 1 }
        return try await base.generateDataKey(for: reference)
    }

    public func unwrap(_ wrapped: [UInt8], for reference: KeyReference) async throws(KMSError) -> SymmetricSecret {
        state.withLockedValue { $0.unwrap += 1 }
        return try await base.unwrap(wrapped, for: reference)
    }

    public func deriveKey(for reference: KeyReference, context: [UInt8], byteCount: Int) async throws(KMSError)
        -> SymmetricSecret
    {
        state.withLockedValue { $0.deriveKey += 1 }
        return try await base.deriveKey(for: reference, context: context, byteCount: byteCount)
    }
}
