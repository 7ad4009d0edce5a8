import VeilConfig
import NIOConcurrencyHelpers
import NIOCore
import VeilWire

/// Maps upstream broker node ids to local listener ports, allocating a port from the
/// configured range the first time a node id is seen in any response.
///
/// No formula of node id to port is used: ids can be sparse, huge or negative-looking,
/// and a range handed out in order of first sight works for all of them.
public final class BrokerDirectory: Sendable {
    /// One upstream broker and its local listener.
    public struct Entry: Sendable {
        public var nodeId: Int32
        public var upstream: HostPort
        public var localPort: Int
    }

    /// Thrown when every port in the range is taken.
    public struct PortRangeExhausted: Error, CustomStringConvertible {
        public var nodeId: Int32
        public var range: ClosedRange<Int>
        public var description: String {
            "no free local port for broker \(nodeId): the range \(range.lowerBound)-\(range.upperBound) is exhausted"
        }
    }

    private struct State {
        var entries: [Int32: Entry] = [:]
        var nextPort: Int
        var listeners: [Int32: EventLoopFuture<Int>] = [:]
    }

    private let state: NIOLockedValueBox<State>
    private let range: ClosedRange<Int>

    public init(ports: ClosedRange<Int>) {
        range = ports
        state = NIOLockedValueBox(State(nextPort: ports.lowerBound))
    }

    /// The upstream address currently known for `nodeId`.
    public func upstream(for nodeId: Int32) -> HostPort? {
        state.withLockedValue { $0.entries[nodeId]?.upstream }
    }

    public var entries: [Entry] {
        state.withLockedValue { Array($0.entries.values) }.sorted { $0.nodeId < $1.nodeId }
    }

    /// Records `upstream` as node `nodeId`'s address and returns its local port, plus
    /// whether this call allocated it (so the caller starts its listener).
    func register(nodeId: Int32, upstream: HostPort) throws -> (port: Int, isNew: Bool) {
        try state.withLockedValue { s in
            if var existing = s.entries[nodeId] {
                existing.upstream = upstream
                s.entries[nodeId] = existing
                return (existing.localPort, false)
            }
            guard s.nextPort <= range.upperBound else { throw PortRangeExhausted(nodeId: nodeId, range: range) }
            let port = s.nextPort
            s.nextPort += 1
            s.entries[nodeId] = Entry(nodeId: nodeId, upstream: upstream, localPort: port)
            return (port, true)
        }
    }

    /// Moves node `nodeId` to the next unallocated port of the range, because another
    /// process holds the one it had, and returns the new port.
    func reassign(nodeId: Int32) throws -> Int {
        try state.withLockedValue { s in
            guard var entry = s.entries[nodeId] else { throw PortRangeExhausted(nodeId: nodeId, range: range) }
            guard s.nextPort <= range.upperBound else { throw PortRangeExhausted(nodeId: nodeId, range: range) }
            entry.localPort = s.nextPort
            s.nextPort += 1
            s.entries[nodeId] = entry
            return entry.localPort
        }
    }

    /// Stores the future that completes with node `nodeId`'s port once its listener is bound.
    func setListener(_ future: EventLoopFuture<Int>, for nodeId: Int32) {
        state.withLockedValue { $0.listeners[nodeId] = future }
    }

    func listener(for nodeId: Int32) -> EventLoopFuture<Int>? {
        state.withLockedValue { $0.listeners[nodeId] }
    }
}
