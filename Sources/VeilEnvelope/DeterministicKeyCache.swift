import NIOConcurrencyHelpers
import NIOCore
import VeilKMS

/// Deterministic (record-key) keys by reference: derived by the KMS once, then kept.
///
/// Used on both sides: the same reference always derives the same key, so producer and
/// consumer sidecars need no shared state. Filters call ``lookup(_:)`` per record
/// (synchronous) and await ``fill(_:)`` only on a miss; a refusal is remembered for a while so
/// a consumer without a grant does not ask the KMS per record.
public final class DeterministicKeyCache: Sendable {
    /// What the cache knows without asking the KMS.
    public enum Lookup: Sendable {
        case hit(DeterministicKey)
        case denied(EnvelopeError)
        case miss
    }

    private typealias Fill = Task<Result<DeterministicKey, EnvelopeError>, Never>

    private enum Slot: Sendable {
        case key(DeterministicKey)
        case denied(EnvelopeError, until: NIODeadline)
    }

    private struct State: Sendable {
        var slots: [KeyReference: Slot] = [:]
        var filling: [KeyReference: Fill] = [:]
    }

    private let kms: any KeyManagementService
    private let deniedTTL: TimeAmount
    private let clock: @Sendable () -> NIODeadline
    private let state = NIOLockedValueBox(State())

    /// Holds every key for the sidecar's lifetime: a topic policy names a handful of them.
    public init(kms: any KeyManagementService, deniedTTL: TimeAmount = .seconds(30),
                clock: @escaping @Sendable () -> NIODeadline = { .now() }) {
        self.kms = kms
        self.deniedTTL = deniedTTL
        self.clock = clock
    }

    /// The cached key or failure. Never calls the KMS.
    public func lookup(_ reference: KeyReference) -> Lookup {
        let slot = state.withLockedValue { $0.slots[reference] }
        switch slot {
        case nil: return .miss
        case .key(let key): return .hit(key)
        case .denied(let error, let until): return clock() < until ? .denied(error) : .miss
        }
    }

    /// Derives the key with the KMS (once for all concurrent callers) and caches the outcome.
    public func fill(_ reference: KeyReference) async throws(EnvelopeError) -> DeterministicKey {
        let now = clock()
        let task = state.withLockedValue { state -> Result<DeterministicKey, EnvelopeError>? in
            switch state.slots[reference] {
            case .key(let key): return .success(key)
            case .denied(let error, let until) where now < until: return .failure(error)
            default: return nil
            }
        }
        if let task { return try task.get() }
        let fill = state.withLockedValue { state -> Fill in
            if let running = state.filling[reference] { return running }
            let created = Fill { await self.derive(reference) }
            state.filling[reference] = created
            return created
        }
        return try await fill.value.get()
    }

    private func derive(_ reference: KeyReference) async -> Result<DeterministicKey, EnvelopeError> {
        let result: Result<DeterministicKey, EnvelopeError>
        do {
            let secret = try await kms.deriveKey(
                for: reference, context: DeterministicEnvelope.derivationContext, byteCount: DeterministicEnvelope.keyByteCount)
            result = Result { () throws(EnvelopeError) in try DeterministicKey(secret, reference: reference) }
        } catch {
            result = .failure(.kms(error))
        }
        let now = clock()
        state.withLockedValue { state in
            state.filling[reference] = nil
            switch result {
            case .success(let key): state.slots[reference] = .key(key)
            case .failure(let error): state.slots[reference] = .denied(error, until: now + deniedTTL)
            }
        }
        return result
    }
}
