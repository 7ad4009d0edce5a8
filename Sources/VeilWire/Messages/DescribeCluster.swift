import NIOCore

/// DescribeCluster request (key 60).
public struct DescribeClusterRequest: KafkaMessage {
    public static let apiKey = ApiKey.describeCluster
    public static let versions: ClosedRange<Int16> = 0...2

    public var includeClusterAuthorizedOperations: Bool
    public var endpointType: Int8
    public var includeFencedBrokers: Bool
    public var unknownTags = TaggedFields()

    public init(includeClusterAuthorizedOperations: Bool = false, endpointType: Int8 = 1, includeFencedBrokers: Bool = false) {
        self.includeClusterAuthorizedOperations = includeClusterAuthorizedOperations
        self.endpointType = endpointType
        self.includeFencedBrokers = includeFencedBrokers
    }

    public init(from r: inout WireReader) throws {
        includeClusterAuthorizedOperations = try r.bool()
        endpointType = r.version >= 1 ? try r.int8() : 1
        includeFencedBrokers = r.version >= 2 ? try r.bool() : false
        unknownTags = try r.taggedFields()
    }

    public func write(to w: inout WireWriter) {
        w.bool(includeClusterAuthorizedOperations)
        if w.version >= 1 { w.int8(endpointType) }
        if w.version >= 2 { w.bool(includeFencedBrokers) }
        w.taggedFields(unknownTags)
    }
}

/// DescribeCluster response (key 60).
public struct DescribeClusterResponse: KafkaMessage {
    public static let apiKey = ApiKey.describeCluster
    public static let versions: ClosedRange<Int16> = 0...2

    /// A broker and its fenced flag (v2+).
    public struct Broker: Sendable, Equatable {
        public var endpoint: BrokerEndpoint
        public var isFenced: Bool

        public init(endpoint: BrokerEndpoint, isFenced: Bool = false) {
            self.endpoint = endpoint
            self.isFenced = isFenced
        }
    }

    public var throttleTimeMs: Int32
    public var errorCode: Int16
    public var errorMessage: String?
    public var endpointType: Int8
    public var clusterId: String
    public var controllerId: Int32
    public var brokers: [Broker]
    public var clusterAuthorizedOperations: Int32
    public var unknownTags = TaggedFields()

    public init(throttleTimeMs: Int32 = 0, errorCode: Int16 = 0, errorMessage: String? = nil, endpointType: Int8 = 1,
                clusterId: String, controllerId: Int32, brokers: [Broker], clusterAuthorizedOperations: Int32 = Int32.min) {
        self.throttleTimeMs = throttleTimeMs
        self.errorCode = errorCode
        self.errorMessage = errorMessage
        self.endpointType = endpointType
        self.clusterId = clusterId
        self.controllerId = controllerId
        self.brokers = brokers
        self.clusterAuthorizedOperations = clusterAuthorizedOperations
    }

    public init(from r: inout WireReader) throws {
        throttleTimeMs = try r.int32()
        errorCode = try r.int16()
        errorMessage = try r.nullableString("error message")
        endpointType = r.version >= 1 ? try r.int8() : 1
        clusterId = try r.string("cluster id")
        controllerId = try r.int32()
        brokers = try r.array("brokers") { r in
            var e = BrokerEndpoint(nodeId: try r.int32(), host: try r.string("host"), port: try r.int32(),
                                   rack: try r.nullableString("rack"))
            let fenced = r.version >= 2 ? try r.bool() : false
            e.unknownTags = try r.taggedFields()
            return Broker(endpoint: e, isFenced: fenced)
        }
        clusterAuthorizedOperations = try r.int32()
        unknownTags = try r.taggedFields()
    }

    public func write(to w: inout WireWriter) {
        w.int32(throttleTimeMs)
        w.int16(errorCode)
        w.nullableString(errorMessage)
        if w.version >= 1 { w.int8(endpointType) }
        w.string(clusterId)
        w.int32(controllerId)
        w.array(brokers) { w, b in
            w.int32(b.endpoint.nodeId)
            w.string(b.endpoint.host)
            w.int32(b.endpoint.port)
            w.nullableString(b.endpoint.rack)
            if w.version >= 2 { w.bool(b.isFenced) }
            w.taggedFields(b.endpoint.unknownTags)
        }
        w.int32(clusterAuthorizedOperations)
        w.taggedFields(unknownTags)
    }
}
