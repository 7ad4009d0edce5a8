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
        var byKey: [KeyReference: Int] = [:]
        for case let key? in keys {
            total += 1
            byKey[key, default: 0] += 1
        }
        encrypted.add(total, ordering: .relaxed)
        for (key, n) in byKey { metrics.count(.encrypted, topic: topic, reference: key, by: n) }
    }

    func countDecrypted(topic: String, keyID: EnvelopeKeyID) {
        decrypted.add(1, ordering: .relaxed)
        metrics.count(.decrypted, topic: topic, keyID: keyID)
    }

    /// Counts a record not delivered as plaintext; its key comes from its envelope header, if it has one.
    func countDenied(topic: String, value: ByteBuffer?) {
        denied.add(1, ordering: .relaxed)
        let header = value.flatMap { try? EnvelopeHeader.parse($0) }
        if let header {
            metrics.count(.denied, topic: topic, keyID: header.keyID)
        } else {
            metrics.count(.denied, topic: topic, reference: nil)
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
