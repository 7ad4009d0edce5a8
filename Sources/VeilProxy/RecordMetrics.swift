import CoreMetrics
import NIOConcurrencyHelpers
import NIOCore
import VeilEnvelope
import VeilKMS

/// Records encrypted, decrypted and denied by topic and key, as swift-metrics counters
/// (`veil_records_encrypted_total` etc., labelled `identity`, `topic`, `key`).
///
/// The record paths call this once per record or batch, so counters are looked up in a
/// small cache rather than made by the metrics factory each time. The `key` label is a
/// key reference (`kms:key-id`, never key material); references on a KMS this sidecar
/// does not configure, and any beyond ``maxLabelSets``, are labelled `other`, because
/// envelope headers come from producers and must not grow the metric set without bound.
final class RecordMetrics: Sendable {
    enum Event: String, Sendable {
        case encrypted = "veil_records_encrypted_total"
        case decrypted = "veil_records_decrypted_total"
        case denied = "veil_records_denied_total"
    }

    private struct LabelSet: Hashable {
        let event: Event
        let topic: String
        let key: String
    }

    /// Distinct (event, topic, key) label sets kept before new keys are labelled `other`.
    static let maxLabelSets = 1000
    static let otherKey = "other"
    static let noKey = "none"

    private let identity: String
    private let knownKMS: Set<String>
    private let counters = NIOLockedValueBox([LabelSet: Counter]())
    /// Decryption sees the same envelope key section for many records: this maps it to its
    /// label without decoding the reference each time.
    private let keyLabels = NIOLockedValueBox([EnvelopeKeyID: String]())

    init(identity: String, knownKMS: Set<String>) {
        self.identity = identity
        self.knownKMS = knownKMS
    }

    func count(_ event: Event, topic: String, reference: KeyReference?, by amount: Int = 1) {
        count(event, topic: topic, key: label(for: reference), by: amount)
    }

    func count(_ event: Event, topic: String, keyID: EnvelopeKeyID, by amount: Int = 1) {
        let known = keyLabels.withLockedValue { $0[keyID] }
        let key: String
        if let known {
            key = known
        } else {
            key = label(for: try? keyID.reference())
            keyLabels.withLockedValue { labels in
                if labels.count >= Self.maxLabelSets { labels.removeAll(keepingCapacity: true) }
                labels[keyID.compacted()] = key
            }
        }
        count(event, topic: topic, key: key, by: amount)
    }

    private func label(for reference: KeyReference?) -> String {
        guard let reference else { return Self.noKey }
        return knownKMS.contains(reference.kms) ? reference.description : Self.otherKey
    }

    private func count(_ event: Event, topic: String, key: String, by amount: Int) {
        guard amount > 0 else { return }
        let wanted = LabelSet(event: event, topic: topic, key: key)
        let counter = counters.withLockedValue { map -> Counter in
            if let existing = map[wanted] { return existing }
            let set = map.count < Self.maxLabelSets ? wanted : LabelSet(event: event, topic: Self.otherKey, key: Self.otherKey)
            if let existing = map[set] { return existing }
            let made = Counter(label: event.rawValue, dimensions: [("identity", identity), ("topic", set.topic), ("key", set.key)])
            map[set] = made
            return made
        }
        counter.increment(by: amount)
    }
}
