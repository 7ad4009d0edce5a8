import Logging
import NIOConcurrencyHelpers
import Synchronization

/// Counts what the record filters did, for logs, the demo and metrics.
public final class RecordCounters: Sendable {
    public let encrypted = Atomic<Int>(0)
    public let decrypted = Atomic<Int>(0)
    public let denied = Atomic<Int>(0)
    public let tampered = Atomic<Int>(0)
    public let plaintextRefused = Atomic<Int>(0)
    public let produceRejected = Atomic<Int>(0)

    public init() {}

    /// A snapshot, for printing.
    public var summary: [String: Int] {
        [
            "encrypted": encrypted.load(ordering: .relaxed), "decrypted": decrypted.load(ordering: .relaxed),
            "denied": denied.load(ordering: .relaxed), "tampered": tampered.load(ordering: .relaxed),
            "plaintext_refused": plaintextRefused.load(ordering: .relaxed),
            "produce_rejected": produceRejected.load(ordering: .relaxed),
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
