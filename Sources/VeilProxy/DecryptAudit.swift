import VeilConfig

/// One run of records in one partition that met the same decrypt outcome: what the audit
/// trail is told. Never carries plaintext, ciphertext or key material; only names and offsets.
public struct DecryptAuditEvent: Sendable, Hashable {
    /// Whether the records were opened or refused, and why they were refused.
    public enum Outcome: Sendable, Hashable {
        case decrypted
        case denied(reason: String)
    }

    public var topic: String
    public var partition: Int32
    /// The key the records were encrypted under, when the envelope named one that parsed.
    public var key: KeyReference?
    public var outcome: Outcome
    public var firstOffset: Int64
    public var lastOffset: Int64
    /// How many records the run holds (offsets in between may belong to other runs).
    public var count: Int

    public init(topic: String, partition: Int32, key: KeyReference?, outcome: Outcome, firstOffset: Int64, lastOffset: Int64, count: Int) {
        self.topic = topic
        self.partition = partition
        self.key = key
        self.outcome = outcome
        self.firstOffset = firstOffset
        self.lastOffset = lastOffset
        self.count = count
    }
}

/// Where the decrypt path reports its outcomes, once per fetched partition. Implementations
/// decide what to keep (the file trail keeps first decrypts and every denial) and must be
/// cheap: they run on the event loop.
public protocol DecryptAuditSink: Sendable {
    func record(_ events: [DecryptAuditEvent])
}

/// Collects one partition's outcomes while its records are judged, merging neighbours with
/// the same outcome and key into one event, so a fetch costs a handful of events, not one
/// per record.
struct DecryptAuditRun {
    let topic: String
    let partition: Int32
    private(set) var events: [DecryptAuditEvent] = []

    init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    mutating func note(_ outcome: DecryptAuditEvent.Outcome, key: KeyReference?, offset: Int64) {
        if var last = events.last, last.outcome == outcome, last.key == key {
            last.lastOffset = offset
            last.count += 1
            events[events.count - 1] = last
            return
        }
        events.append(DecryptAuditEvent(topic: topic, partition: partition, key: key, outcome: outcome, firstOffset: offset, lastOffset: offset, count: 1))
    }
}
