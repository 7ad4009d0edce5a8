import NIOCore

/// A request or response body that Veil decodes, written once for all its versions.
public protocol KafkaMessage: Sendable, Equatable {
    static var apiKey: ApiKey { get }
    /// The versions this codec reads and writes.
    static var versions: ClosedRange<Int16> { get }
    init(from reader: inout WireReader) throws
    func write(to writer: inout WireWriter)
}

extension KafkaMessage {
    /// Decodes a whole message body at `version`; trailing bytes are an error.
    public init(decoding body: ByteBuffer, version: Int16) throws {
        guard Self.versions.contains(version) else {
            throw WireError(.unsupportedVersion(apiKey: Self.apiKey.rawValue, version: version))
        }
        var reader = WireReader(buffer: body, version: version, flexible: Self.apiKey.isFlexible(version))
        try self.init(from: &reader)
        try reader.expectEnd("\(Self.apiKey.name) v\(version)")
    }

    /// Encodes the message body at `version` into `buffer`.
    public func encode(version: Int16, into buffer: inout ByteBuffer) {
        WireWriter.append(to: &buffer, version: version, flexible: Self.apiKey.isFlexible(version)) { write(to: &$0) }
    }

    public func encoded(version: Int16) -> ByteBuffer {
        var b = ByteBuffer()
        encode(version: version, into: &b)
        return b
    }

    /// Encodes the message after what `buffer` already holds, as parts to be sent one after
    /// the other: large byte fields (record sets) are parts of their own, not copied.
    public func encodeParts(version: Int16, after buffer: ByteBuffer) -> [ByteBuffer] {
        var writer = WireWriter(buffer: buffer, version: version, flexible: Self.apiKey.isFlexible(version))
        writer.spilled = []
        write(to: &writer)
        var parts = writer.spilled ?? []
        parts.append(writer.buffer)
        return parts.filter { $0.readableBytes > 0 }
    }
}

/// A broker's address as it appears in Metadata, FindCoordinator, DescribeCluster and
/// the KIP-951 node endpoints: the fields Veil rewrites so clients never see the upstream.
public struct BrokerEndpoint: Sendable, Equatable {
    public var nodeId: Int32
    public var host: String
    public var port: Int32
    public var rack: String?
    public var unknownTags = TaggedFields()

    public init(nodeId: Int32, host: String, port: Int32, rack: String? = nil) {
        self.nodeId = nodeId
        self.host = host
        self.port = port
        self.rack = rack
    }
}

/// KIP-951 node endpoints, carried as tagged field 0 of Produce (v10+) and Fetch (v16+) responses.
public struct NodeEndpoints: Sendable, Equatable {
    public var endpoints: [BrokerEndpoint]

    public init(endpoints: [BrokerEndpoint]) {
        self.endpoints = endpoints
    }

    init(from reader: inout WireReader) throws {
        endpoints = try reader.array("node endpoints") { r in
            var e = BrokerEndpoint(nodeId: try r.int32("node id"), host: try r.string("host"), port: try r.int32("port"),
                                   rack: try r.nullableString("rack"))
            e.unknownTags = try r.taggedFields()
            return e
        }
    }

    func write(to w: inout WireWriter) {
        w.array(endpoints) { w, e in
            w.int32(e.nodeId)
            w.string(e.host)
            w.int32(e.port)
            w.nullableString(e.rack)
            w.taggedFields(e.unknownTags)
        }
    }
}
