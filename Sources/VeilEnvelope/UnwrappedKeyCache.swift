import CoreMetrics
import NIOConcurrencyHelpers
import NIOCore
import VeilKMS

/// The decryption side's data keys: a bounded LRU of unwrapped DEKs, keyed by
/// the envelope's key section (reference plus wrapped DEK).
///
/// Fetch filters call ``lookup(_:)`` per record (synchronous, no KMS) and only
/// on a miss await ``fill(_:)``, which makes one KMS call however many callers
/// wait for the same key. Failures are remembered for a while too, so a
/// consumer without a grant does not call the KMS for every record.
public final class UnwrappedKeyCache: Sendable {
    /// What the cache knows about a key without asking the KMS.
    public enum Lookup: Sendable {
        /// The key, ready to open envelopes.
        case hit(AESGCMKey)
        /// The KMS recently refused or failed; this is its error.
        case denied(EnvelopeError)
        /// Unknown: call ``UnwrappedKeyCache/fill(_:)``.
        case miss
    }

    private typealias Fill = Task<Result<AESGCMKey, EnvelopeError>, Never>

    private enum Step {
        case ready(AESGCMKey)
        case failed(EnvelopeError)
        case wait(Fill)
    }

    private enum Slot: Sendable {
        case key(AESGCMKey)
        case denied(EnvelopeError, until: NIODeadline)
    }

    private struct State: Sendable {
        var cache: LRUCache<EnvelopeKeyID, Slot>
        var filling: [EnvelopeKeyID: Fill] = [:]
        /// The last key handed out. Consecutive records mostly share a data
        /// key, and comparing bytes is much cheaper than hashing them.
        var recent: (id: EnvelopeKeyID, key: AESGCMKey)?
    }

    private let kms: any KeyManagementService
    private let deniedTTL: TimeAmount
    private let unavailableTTL: TimeAmount
    private let clock: @Sendable () -> NIODeadline
    private let state: NIOLockedValueBox<State>
    /// `veil_dek_cache_hits_total` / `_misses_total` for `cache="decrypt"`: a hit is a
    /// counting lookup that found the key (records are looked up once to plan, uncounted, and
    /// once to open); a miss is a fill that had to ask the KMS.
    private let hits = Counter(label: "veil_dek_cache_hits_total", dimensions: [("cache", "decrypt")])
    private let misses = Counter(label: "veil_dek_cache_misses_total", dimensions: [("cache", "decrypt")])

    /// - Parameters:
    ///   - capacity: most keys (and remembered failures) kept.
    ///   - deniedTTL: how long a refusal (denied, not found, bad ciphertext) is remembered.
    ///   - unavailableTTL: how long a KMS outage is remembered; short, as it may pass.
    public init(
        kms: any KeyManagementService, capacity: Int = 1024, deniedTTL: TimeAmount = .seconds(30),
        unavailableTTL: TimeAmount = .seconds(1), clock: @escaping @Sendable () -> NIODeadline = { .now() }
    ) {
        self.kms = kms
        self.deniedTTL = deniedTTL
        self.unavailableTTL = unavailableTTL
        self.clock = clock
        state = NIOLockedValueBox(State(cache: LRUCache(capacity: capacity)))
    }

    /// Number of cached keys and failures.
    public var count: Int { state.withLockedValue { $0.cache.count } }

    /// The cached key or failure for `keyID`. Never calls the KMS.
    ///
    /// - Parameter counting: whether a hit counts in metrics; planning lookups, which are
    ///   followed by a counted one for the same record, pass `false`.
    public func lookup(_ keyID: EnvelopeKeyID, counting: Bool = true) -> Lookup {
        let slot = state.withLockedValue { state -> Slot? in
            if let recent = state.recent, recent.id == keyID { return .key(recent.key) }
            guard let entry = state.cache.entry(for: keyID) else { return nil }
            // The stored ID owns its bytes; the caller's may be a slice of a fetch response.
            if case .key(let key) = entry.value { state.recent = (entry.key, key) }
            return entry.value
        }
        let result: Lookup
        switch slot {
        case nil: result = .miss
        case .key(let key): result = .hit(key)
        case .denied(let error, let until): result = clock() < until ? .denied(error) : .miss
        }
        if counting, case .hit = result { hits.increment() }
        return result
    }

    /// Counts `n` hits of lookups made with `counting: false` (a caller that reuses one
    /// lookup for many records counts them once).
    public func countHits(_ n: Int) {
        if n > 0 { hits.increment(by: n) }
    }

    /// ``lookup(_:)``, then ``fill(_:)`` on a miss.
    public func key(for keyID: EnvelopeKeyID) async throws(EnvelopeError) -> AESGCMKey {
        switch lookup(keyID) {
        case .hit(let key): return key
        case .denied(let error): throw error
        case .miss: return try await fill(keyID)
        }
    }

    /// Unwraps the key with the KMS (once for all concurrent callers) and caches the outcome.
    public func fill(_ keyID: EnvelopeKeyID) async throws(EnvelopeError) -> AESGCMKey {
        let now = clock()
        let step = state.withLockedValue { state -> Step in
            switch state.cache.value(for: keyID) {
            case .key(let key): return .ready(key)
            case .denied(let error, let until) where now < until: return .failed(error)
            default: break
            }
            if let task = state.filling[keyID] { return .wait(task) }
            // Own copy: the caller's bytes may be a slice of a large fetch response.
            let owned = keyID.compacted()
            let task = Fill { await self.unwrap(owned) }
            state.filling[owned] = task
            misses.increment()
            return .wait(task)
        }
        switch step {
        case .ready(let key): return key
        case .failed(let error): throw error
        case .wait(let task): return try await task.value.get()
        }
    }

    private func unwrap(_ keyID: EnvelopeKeyID) async -> Result<AESGCMKey, EnvelopeError> {
        let result = await Self.unwrap(keyID, kms: kms)
        let now = clock()
        state.withLockedValue { state in
            state.filling[keyID] = nil
            switch result {
            case .success(let key):
                state.cache.set(.key(key), for: keyID)
            case .failure(let error):
                state.cache.set(.denied(error, until: now + ttl(for: error)), for: keyID)
            }
        }
        return result
    }

    private static func unwrap(_ keyID: EnvelopeKeyID, kms: any KeyManagementService) async
        -> Result<AESGCMKey, EnvelopeError>
    {
        let reference: KeyReference
        do {
            reference = try keyID.reference()
        } catch {
            return .failure(error)
        }
        let secret: SymmetricSecret
        do {
            secret = try await kms.unwrap(keyID.wrappedDataKey, for: reference)
        } catch {
            return .failure(.kms(error))
        }
        return Result { () throws(EnvelopeError) in try AESGCMKey(secret) }
    }

    private func ttl(for error: EnvelopeError) -> TimeAmount {
        if case .kms(let kmsError) = error, kmsError.kind == .unavailable { return unavailableTTL }
        return deniedTTL
    }
}
