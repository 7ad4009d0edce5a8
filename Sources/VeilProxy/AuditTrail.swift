import CoreMetrics
import NIOConcurrencyHelpers
import Synchronization
import VeilConfig
import VeilJSON

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The decrypt audit trail: a JSON-lines file with the first decrypt per (identity, key,
/// topic) and every denial, each with its time, identity, topic, partition, offset range and
/// reason.
///
/// Lines hold names, offsets, counts and reasons only; the events it is given carry no
/// payloads or keys, so the file cannot leak either. One instance per file; gateway mode
/// hands each identity a ``DecryptAuditSink`` from ``sink(identity:)``.
public final class AuditTrail: Sendable {
    /// First decrypts written (one per identity, key and topic).
    public let firstDecrypts = Atomic<Int>(0)
    /// Denial lines written.
    public let denialEvents = Atomic<Int>(0)
    /// Records those denial lines cover.
    public let deniedRecords = Atomic<Int>(0)

    /// The same three counts on /metrics, so a scrape and the file agree.
    private let firstDecryptsMetric = Counter(label: "veil_audit_first_decrypts_total")
    private let denialEventsMetric = Counter(label: "veil_audit_denial_events_total")
    private let deniedRecordsMetric = Counter(label: "veil_audit_denied_records_total")

    private let fd: Int32
    public let path: String
    private let seen = NIOLockedValueBox<Set<String>>([])
    private let clock: @Sendable () -> UTCTimestamp

    /// Opens (creating with mode 0600, appending) the trail at `path`.
    public init(path: String, clock: @escaping @Sendable () -> UTCTimestamp = { .now() }) throws(AuditTrailError) {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw AuditTrailError(path: path, errno: errno) }
        self.fd = fd
        self.path = path
        self.clock = clock
    }

    deinit { close(fd) }

    /// A sink that writes this identity's outcomes into the trail.
    public func sink(identity: String) -> any DecryptAuditSink { IdentitySink(trail: self, identity: identity) }

    /// The counts, for the shutdown summary and metrics; they match the lines written.
    public var summary: [String: Int] {
        [
            "audit_first_decrypts": firstDecrypts.load(ordering: .relaxed),
            "audit_denial_events": denialEvents.load(ordering: .relaxed),
            "audit_denied_records": deniedRecords.load(ordering: .relaxed),
        ]
    }

    func append(_ events: [DecryptAuditEvent], identity: String) {
        var lines = ""
        for event in events {
            switch event.outcome {
            case .decrypted:
                // Only the first decrypt per (identity, key, topic) is news; the rest is routine.
                let first = seen.withLockedValue { $0.insert("\(identity)\u{0}\(event.key.map(String.init(describing:)) ?? "")\u{0}\(event.topic)").inserted }
                guard first else { continue }
                firstDecrypts.add(1, ordering: .relaxed)
                firstDecryptsMetric.increment()
                lines += Self.line(event, identity: identity, time: clock(), kind: "first_decrypt", reason: nil)
            case .denied(let reason):
                denialEvents.add(1, ordering: .relaxed)
                deniedRecords.add(event.count, ordering: .relaxed)
                denialEventsMetric.increment()
                deniedRecordsMetric.increment(by: event.count)
                lines += Self.line(event, identity: identity, time: clock(), kind: "denied", reason: reason)
            }
        }
        guard !lines.isEmpty else { return }
        // One write(2) per fetched partition with O_APPEND: lines from concurrent connections
        // never interleave, and a small local append does not stall the event loop.
        var bytes = Array(lines.utf8)
        bytes.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = Self.writeBytes(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if n <= 0 { break }
                offset += n
            }
        }
    }

    private static func writeBytes(_ fd: Int32, _ pointer: UnsafeMutableRawPointer, _ count: Int) -> Int {
        write(fd, pointer, count)
    }

    static func line(_ event: DecryptAuditEvent, identity: String, time: UTCTimestamp, kind: String, reason: String?) -> String {
        var fields = [
            ("time", JSONString.literal(String(describing: time).utf8)),
            ("event", JSONString.literal(kind.utf8)),
            ("identity", JSONString.literal(identity.utf8)),
            ("topic", JSONString.literal(event.topic.utf8)),
            ("partition", String(event.partition)),
            ("first_offset", String(event.firstOffset)),
            ("last_offset", String(event.lastOffset)),
            ("records", String(event.count)),
            ("key", event.key.map { JSONString.literal(String(describing: $0).utf8) } ?? "null"),
        ]
        if let reason { fields.append(("reason", JSONString.literal(reason.utf8))) }
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}\n"
    }

    private struct IdentitySink: DecryptAuditSink {
        let trail: AuditTrail
        let identity: String
        func record(_ events: [DecryptAuditEvent]) { trail.append(events, identity: identity) }
    }
}

/// The audit trail file could not be opened.
public struct AuditTrailError: Error, CustomStringConvertible {
    public let path: String
    public let errno: Int32
    public var description: String { "cannot open the audit trail \(path): \(String(cString: strerror(errno)))" }
}
