import CoreMetrics
import NIOConcurrencyHelpers

/// Wraps a KMS and counts the calls that reach it, so tests and the demo can
/// show KMS calls per record (the target is none per record in steady state).
///
/// Each call also goes to swift-metrics (`veil_kms_calls_total` by KMS, operation and
/// outcome; `veil_kms_call_duration_seconds`), and the last outcome per KMS is kept for
/// readiness: a KMS whose last call failed as unavailable makes the sidecar not ready.
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
    /// KMS name → the last call's failure when it was an outage; absent after a success.
    private let outages = NIOLockedValueBox([String: KMSError]())

    public init(_ base: any KeyManagementService) {
        self.base = base
    }

    /// A snapshot of the counters.
    public var counts: Counts { state.withLockedValue { $0 } }

    /// KMSes whose most recent call failed as unavailable, with that failure.
    public var unavailable: [String: KMSError] { outages.withLockedValue { $0 } }

    /// Times `body`, and records its outcome by KMS name and operation.
    private func measured<T>(_ operation: String, _ reference: KeyReference, _ body: () async throws(KMSError) -> T)
        async throws(KMSError) -> T
    {
        let start = ContinuousClock.now
        let outcome: String
        defer {
            let elapsed = ContinuousClock.now - start
            let dimensions = [("kms", reference.kms), ("operation", operation)]
            let nanoseconds = elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000
            CoreMetrics.Timer(label: "veil_kms_call_duration_seconds", dimensions: dimensions).recordNanoseconds(nanoseconds)
            Counter(label: "veil_kms_calls_total", dimensions: dimensions + [("outcome", outcome)]).increment()
        }
        do {
            let value = try await body()
            outcome = "ok"
            _ = outages.withLockedValue { $0.removeValue(forKey: reference.kms) }
            return value
        } catch {
            outcome = Self.outcome(error.kind)
            if error.kind == .unavailable { outages.withLockedValue { $0[reference.kms] = error } }
            throw error
        }
    }

    private static func outcome(_ kind: KMSError.Kind) -> String {
        switch kind {
        case .accessDenied: "access_denied"
        case .keyNotFound: "key_not_found"
        case .unavailable: "unavailable"
        case .invalidCiphertext: "invalid_ciphertext"
        }
    }

    public func generateDataKey(for reference: KeyReference) async throws(KMSError) -> DataKey {
        state.withLockedValue { $0.generateDataKey += 1 }
        return try await measured("generate_data_key", reference) { () async throws(KMSError) in
            try await base.generateDataKey(for: reference)
        }
    }

    public func unwrap(_ wrapped: [UInt8], for reference: KeyReference) async throws(KMSError) -> SymmetricSecret {
        state.withLockedValue { $0.unwrap += 1 }
        return try await measured("unwrap", reference) { () async throws(KMSError) in
            try await base.unwrap(wrapped, for: reference)
        }
    }

    public func deriveKey(for reference: KeyReference, context: [UInt8], byteCount: Int) async throws(KMSError)
        -> SymmetricSecret
    {
        state.withLockedValue { $0.deriveKey += 1 }
        return try await measured("derive_key", reference) { () async throws(KMSError) in
            try await base.deriveKey(for: reference, context: context, byteCount: byteCount)
        }
    }
}
