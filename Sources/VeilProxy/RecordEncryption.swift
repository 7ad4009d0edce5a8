import Logging
import NIOCore
import VeilConfig
import VeilEnvelope
import VeilKMS
import VeilWire

/// Veil's record filter: encrypts Produce records and decrypts Fetch records according
/// to this identity's topic policies and grants.
public final class RecordEncryption: RecordFilter {
    public let configuration: VeilConfiguration
    public let counters: RecordCounters
    let dataKeys: DataKeyCache
    let unwrapped: UnwrappedKeyCache
    /// Record-key (deterministic) keys, for both directions.
    let deterministic: DeterministicKeyCache
    let log: OnceLog
    let logger: Logger
    /// Decompressed size limit per batch: the frame limit, as a batch can't be bigger compressed.
    let maxUncompressedBytes: Int
    /// Where decrypt outcomes go for the audit trail, if anywhere.
    let audit: (any DecryptAuditSink)?

    /// Highest versions that still name topics (v13 of both uses topic ids); policies match names.
    public let versionCaps: [ApiKey: Int16] = [.produce: 12, .fetch: 12]

    public init(configuration: VeilConfiguration, kms: any KeyManagementService, logger: Logger, audit: (any DecryptAuditSink)? = nil) throws {
        self.configuration = configuration
        counters = RecordCounters(identity: configuration.identity, knownKMS: Set(configuration.kms.keys))
        self.audit = audit
        guard let rotation = DataKeyRotationPolicy(
            maxEncryptions: UInt64(configuration.dek.maxEncryptions), maxAge: .seconds(Int64(configuration.dek.maxAgeSeconds)))
        else {
            throw ConfigurationError(path: "dek", problem: "max_encryptions and max_age_seconds must be positive and within limits")
        }
        dataKeys = DataKeyCache(kms: kms, policy: rotation)
        unwrapped = UnwrappedKeyCache(kms: kms, capacity: configuration.dek.decryptCacheEntries)
        deterministic = DeterministicKeyCache(kms: kms)
        self.logger = logger
        log = OnceLog(logger: logger)
        maxUncompressedBytes = max(configuration.maxFrameBytes, 16 << 20) * 4
    }

    private var produce: ProduceEncryption {
        ProduceEncryption(configuration: configuration, dataKeys: dataKeys, counters: counters, log: log, maxUncompressedBytes: maxUncompressedBytes)
    }

    private var fetch: FetchDecryption {
        FetchDecryption(configuration: configuration, unwrapped: unwrapped, deterministic: deterministic, counters: counters, log: log,
                        maxUncompressedBytes: maxUncompressedBytes, audit: audit)
    }

    public func filterProduce(_ request: ProduceRequest, version: Int16, on loop: EventLoop) -> EventLoopFuture<ProduceDecision> {
        let produce = self.produce
        guard case .work(let planned, let rejected, let needed, let neededDeterministic) = produce.plan(request) else {
            return loop.makeSucceededFuture(.unchanged)
        }
        // Each key reference gets a queue of data keys with enough policy budget for this
        // request's records, so sealing never waits mid-batch; usually one cached key.
        var keys: [KeyReference: [ActiveDataKey]] = [:]
        var short: [(KeyReference, Int)] = []
        let policy = dataKeys.policy
        for (reference, count) in needed {
            if let key = dataKeys.current(for: reference), Self.budget(of: key, policy: policy) >= count {
                keys[reference] = [key]
            } else {
                short.append((reference, count))
            }
        }
        var sivKeys: [KeyReference: DeterministicKey] = [:]
        var missingDeterministic: [KeyReference] = []
        for reference in neededDeterministic {
            if case .hit(let key) = deterministic.lookup(reference) { sivKeys[reference] = key } else { missingDeterministic.append(reference) }
        }
        let counters = self.counters
        let finish: @Sendable ([KeyReference: [ActiveDataKey]], [KeyReference: DeterministicKey], [KeyReference: EnvelopeError])
            -> ProduceDecision = { keys, sivKeys, failures in
                let (sealed, failed) = produce.seal(request, planned: planned, keys: keys, failures: failures, deterministic: sivKeys)
                let all = rejected + failed
                counters.produceRejected.add(all.count, ordering: .relaxed)
                return ProduceDecision.make(sealed, rejected: all)
            }
        if short.isEmpty && missingDeterministic.isEmpty {
            return loop.makeSucceededFuture(finish(keys, sivKeys, [:]))
        }
        let dataKeys = self.dataKeys
        let deterministic = self.deterministic
        let known = keys
        let knownSIV = sivKeys
        let pending = short
        let pendingDeterministic = missingDeterministic
        return loop.makeFutureWithTask {
            var keys = known
            var sivKeys = knownSIV
            var failures: [KeyReference: EnvelopeError] = [:]
            for (reference, count) in pending {
                do {
                    var queue = [try await dataKeys.key(for: reference)]
                    var budget = Self.budget(of: queue[0], policy: policy)
                    while budget < count {
                        let next = try await dataKeys.successor(of: queue.last!)
                        queue.append(next)
                        budget += Self.budget(of: next, policy: policy)
                    }
                    keys[reference] = queue
                } catch {
                    failures[reference] = (error as? EnvelopeError) ?? .cryptoFailure("\(error)")
                }
            }
            for reference in pendingDeterministic {
                do {
                    sivKeys[reference] = try await deterministic.fill(reference)
                } catch {
                    failures[reference] = (error as? EnvelopeError) ?? .cryptoFailure("\(error)")
                }
            }
            return finish(keys, sivKeys, failures)
        }
    }

    /// Encryptions `key` has left under the rotation policy.
    static func budget(of key: ActiveDataKey, policy: DataKeyRotationPolicy) -> Int {
        Int(policy.maxEncryptions > key.encryptionCount ? policy.maxEncryptions - key.encryptionCount : 0)
    }

    public func filterFetch(_ response: FetchResponse, request: FetchRequest, version: Int16, on loop: EventLoop) -> EventLoopFuture<FetchResponse?> {
        let fetch = self.fetch
        let (planned, missing, missingDeterministic) = fetch.plan(response)
        guard !planned.isEmpty else { return loop.makeSucceededFuture(nil) }
        if missing.isEmpty && missingDeterministic.isEmpty {
            return loop.makeSucceededFuture(fetch.apply(planned, to: response))
        }
        let unwrapped = self.unwrapped
        let deterministic = self.deterministic
        let log = self.log
        return loop.makeFutureWithTask {
            for keyID in missing {
                do {
                    _ = try await unwrapped.fill(keyID)
                } catch {
                    log.warning("unwrap:\(keyID)", "cannot unwrap data key \(keyID): \(error); its records get the on_denied rule")
                }
            }
            for reference in missingDeterministic {
                do {
                    _ = try await deterministic.fill(reference)
                } catch {
                    log.warning("derive:\(reference)", "cannot derive the record-key key for \(reference): \(error); those keys stay encrypted")
                }
            }
            return fetch.apply(planned, to: response)
        }
    }
}

extension ProduceDecision {
    /// Forward what was sealed; refuse what wasn't. A request left with nothing to send is answered locally.
    static func make(_ request: ProduceRequest, rejected: [RejectedPartition]) -> ProduceDecision {
        guard !rejected.isEmpty else { return .forward(request, rejected: []) }
        var remaining = request
        for r in rejected {
            guard let ti = remaining.topics.firstIndex(where: { $0.name == r.topic }) else { continue }
            remaining.topics[ti].partitions.removeAll { $0.index == r.partition }
        }
        remaining.topics.removeAll { $0.partitions.isEmpty }
        if remaining.topics.isEmpty {
            var response = ProduceResponse(topics: [])
            response.merge(rejected)
            return .respond(response)
        }
        return .forward(remaining, rejected: rejected)
    }
}

extension ProduceResponse {
    /// Adds refused partitions to a response, so the producer hears about every partition it sent.
    mutating func merge(_ rejected: [RejectedPartition]) {
        for r in rejected {
            let partition = PartitionResponse(index: r.partition, errorCode: r.errorCode, baseOffset: -1, errorMessage: r.message)
            if let ti = topics.firstIndex(where: { $0.name == r.topic }) {
                topics[ti].partitions.append(partition)
            } else {
                topics.append(TopicResponse(name: r.topic, partitions: [partition]))
            }
        }
    }
}
