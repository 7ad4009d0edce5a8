import Logging
import NIOConcurrencyHelpers
import NIOCore
import Synchronization
import VeilEnvelope
import VeilKMS

/// Counts what the record filters did, for logs, the demo and metrics.
public final class RecordCounters: Sendable {
    public let encrypted = Atomic<Int>(0)
    public let decrypted = Atomic<Int>(0)
    public let denied = Atomic<Int>(0)
    public let tampered = Atomic<Int>(0)
    public let plaintextRefused = Atomic<Int>(0)
    public let produceRejected = Atomic<Int>(0)
    /// JSON fields sealed on produce.
    public let fieldsEncrypted = Atomic<Int>(0)
    /// Field paths a produced record did not contain (not an error: the record goes on).
    public let fieldsMissing = Atomic<Int>(0)
    /// Fields left in plaintext because no key matched and `on_unmatched` is plaintext.
    public let fieldsUnmatched = Atomic<Int>(0)
    /// Values on a field-level topic that were not JSON and passed through (`on_invalid_json: plaintext`).
    public let fieldsInvalidJSON = Atomic<Int>(0)
    /// Header values sealed on produce.
    public let headersEncrypted = Atomic<Int>(0)
    /// Record keys sealed (deterministically) on produce.
    public let recordKeysEncrypted = Atomic<Int>(0)
    /// Fields, headers and record keys decrypted on fetch.
    public let partsDecrypted = Atomic<Int>(0)
    /// Fields, headers and record keys this identity could not decrypt on fetch.
    public let partsDenied = Atomic<Int>(0)

    /// The same counts by topic and key, for `/metrics`.
    let metrics: RecordMetrics

    /// - Parameters:
    ///   - identity: the identity label on this filter's metrics.
    ///   - knownKMS: KMS names the configuration has; other key references are labelled `other`.
    public init(identity: String = "veil", knownKMS: Set<String> = []) {
        metrics = RecordMetrics(identity: identity, knownKMS: knownKMS)
    }

    /// Counts a sealed batch: `keys` holds each record's key reference, `nil` for records left alone.
    func countEncrypted(topic: String, keys: [KeyReference?]) {
        var total = 0
        // Runs of equal keys (a batch uses one or a few): comparing with the last few is
        // cheaper than hashing the reference's strings per record.
        var byKey: [(key: KeyReference, count: Int)] = []
        for case let key? in keys {
            total += 1
            if let i = byKey.indices.suffix(4).last(where: { byKey[$0].key == key }) {
                byKey[i].count += 1
            } else {
                byKey.append((key, 1))
            }
        }
        encrypted.add(total, ordering: .relaxed)
        for (key, n) in byKey { metrics.count(.encrypted, topic: topic, reference: key, by: n) }
    }

    /// Counts what a ``RecordTally`` collected for `topic`: per key, one metrics update
    /// instead of one per record.
    func count(_ tally: RecordTally, topic: String) {
        for run in tally.runs {
            switch run.event {
            case .decrypted: decrypted.add(run.count, ordering: .relaxed)
            case .denied: denied.add(run.count, ordering: .relaxed)
            case .encrypted: encrypted.add(run.count, ordering: .relaxed)
            }
            if let keyID = run.keyID {
                metrics.count(run.event, topic: topic, keyID: keyID, by: run.count)
            } else {
                metrics.count(run.event, topic: topic, reference: nil, by: run.count)
            }
        }
    }

    /// A snapshot, for printing.
    public var summary: [String: Int] {
        [
            "encrypted": encrypted.load(ordering: .relaxed), "decrypted": decrypted.load(ordering: .relaxed),
            "denied": denied.load(ordering: .relaxed), "tampered": tampered.load(ordering: .relaxed),
            "plaintext_refused": plaintextRefused.load(ordering: .relaxed),
            "produce_rejected": produceRejected.load(ordering: .relaxed),
            "fields_encrypted": fieldsEncrypted.load(ordering: .relaxed),
            "fields_missing": fieldsMissing.load(ordering: .relaxed),
            "fields_unmatched": fieldsUnmatched.load(ordering: .relaxed),
            "fields_invalid_json": fieldsInvalidJSON.load(ordering: .relaxed),
            "headers_encrypted": headersEncrypted.load(ordering: .relaxed),
            "record_keys_encrypted": recordKeysEncrypted.load(ordering: .relaxed),
            "parts_decrypted": partsDecrypted.load(ordering: .relaxed),
            "parts_denied": partsDenied.load(ordering: .relaxed),
        ]
    }
}

/// Logs a message once per key, so a denied key or a tampered topic costs one log line,
/// not one per record.
final class OnceLog: Sendable {
    private let seen = NIOLockedValueBox<Set<String>>([])
    private let logger: Logger

    init(logger: Logger) { self.logger = logger }

    func warning(_ key: String, _ message: @autoclosure () -> String) {
        let first = seen.withLockedValue { set -> Bool in
            guard set.count < 10_000 else { return false }
            return set.insert(key).inserted
        }
        if first { logger.warning("\(message())") }
    }
}

/// Decrypted and denied records of one topic, collected per run of records with the same
/// event and data key and handed to ``RecordCounters/count(_:topic:)`` once: the metrics
/// behind the counts take a lock and two dictionary lookups per update.
struct RecordTally {
    fileprivate private(set) var runs: [(event: RecordMetrics.Event, keyID: EnvelopeKeyID?, count: Int)] = []

    /// A record decrypted with `keyID`'s data key.
    mutating func decrypted(_ keyID: EnvelopeKeyID) {
        add(.decrypted, keyID)
    }

    /// A record not delivered as plaintext; its key comes from its envelope header, if it has one.
    mutating func denied(value: ByteBuffer?) {
        add(.denied, value.flatMap { try? EnvelopeHeader.parse($0) }?.keyID)
    }

    private mutating func add(_ event: RecordMetrics.Event, _ keyID: EnvelopeKeyID?) {
        // Records of a few audiences often alternate: look a few runs back, not just one.
        if let i = runs.indices.suffix(4).last(where: { runs[$0].event == event && runs[$0].keyID == keyID }) {
            runs[i].count += 1
        } else {
            runs.append((event, keyID, 1))
        }
    }
}
