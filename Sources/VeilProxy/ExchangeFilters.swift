import NIOCore
import VeilWire

/// What a record filter decided about a Produce request.
public enum ProduceDecision: Sendable {
    /// Forward the original bytes.
    case unchanged
    /// Forward this (re-encoded) request instead; the partitions in `rejected` were left
    /// out and get these errors merged into the upstream's response.
    case forward(ProduceRequest, rejected: [RejectedPartition])
    /// Do not forward; answer the client with this response.
    case respond(ProduceResponse)
}

/// The hook through which encryption sees records: Produce requests on the way up,
/// Fetch responses on the way down. Pass-through Veil has none.
public protocol RecordFilter: Sendable {
    /// Per-API maximum versions this filter can work with (for example, versions that
    /// still carry topic names), applied on top of the codec's own ranges.
    var versionCaps: [ApiKey: Int16] { get }

    func filterProduce(_ request: ProduceRequest, version: Int16, on loop: EventLoop) -> EventLoopFuture<ProduceDecision>

    /// Returns the response to deliver, or nil to deliver the upstream's bytes unchanged.
    func filterFetch(_ response: FetchResponse, request: FetchRequest, version: Int16, on loop: EventLoop) -> EventLoopFuture<FetchResponse?>
}

/// The filters a proxy applies to exchanges.
public struct ExchangeFilters: Sendable {
    public var records: (any RecordFilter)?

    public init(records: (any RecordFilter)? = nil) { self.records = records }

    public static let passThrough = ExchangeFilters()
}

extension ProduceRequest {
    /// Bytes of record sets in the request, to size a re-encoded request in one allocation.
    var recordByteCount: Int {
        topics.reduce(0) { sum, topic in sum + topic.partitions.reduce(0) { $0 + ($1.records?.readableBytes ?? 0) } }
    }
}
