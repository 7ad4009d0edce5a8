import NIOCore

/// Metadata request (key 3).
public struct MetadataRequest: KafkaMessage {
    public static let apiKey = ApiKey.metadata
    public static let versions: ClosedRange<Int16> = 0...13

    /// One requested topic: by name, or by id from v10.
    public struct Topic: Sendable, Equatable {
        public var topicId: KafkaUUID
        public var name: String?
        public var unknownTags = TaggedFields()

        public init(topicId: KafkaUUID = .zero, name: String?) {
            self.topicId = topicId
            self.name = name
        }
    }

    /// nil asks for all topics (v1+); v0 uses an empty list for that.
    public var topics: [Topic]?
    public var allowAutoTopicCreation: Bool
    public var includeClusterAuthorizedOperations: Bool
    public var includeTopicAuthorizedOperations: Bool
    public var unknownTags = TaggedFields()

    public init(topics: [Topic]?, allowAutoTopicCreation: Bool = true) {
        self.topics = topics
        self.allowAutoTopicCreation = allowAutoTopicCreation
        includeClusterAuthorizedOperations = false
        includeTopicAuthorizedOperations = false
    }

    public init(from r: inout WireReader) throws {
        topics = try r.nullableArray("topics") { r in
            var t = Topic(name: nil)
            if r.version >= 10 { t.topicId = try r.uuid("topic id") }
            t.name = r.version >= 10 ? try r.nullableString("topic name") : try r.string("topic name")
            t.unknownTags = try r.taggedFields()
            return t
        }
        allowAutoTopicCreation = r.version >= 4 ? try r.bool() : true
        includeClusterAuthorizedOperations = (8...10).contains(r.version) ? try r.bool() : false
        includeTopicAuthorizedOperations = r.version >= 8 ? try r.bool() : false
        unknownTags = try r.taggedFields()
    }

    public func write(to w: inout WireWriter) {
        w.nullableArray(topics) { w, t in
            if w.version >= 10 { w.uuid(t.topicId) }
            w.nullableString(t.name)
            w.taggedFields(t.unknownTags)
        }
        if w.version >= 4 { w.bool(allowAutoTopicCreation) }
        if (8...10).contains(w.version) { w.bool(includeClusterAuthorizedOperations) }
        if w.version >= 8 { w.bool(includeTopicAuthorizedOperations) }
        w.taggedFields(unknownTags)
    }
}

/// Metadata response (key 3): brokers are decoded for rewriting; topics are decoded
/// fully so the response can be re-encoded at any version.
public struct MetadataResponse: KafkaMessage {
    public static let apiKey = ApiKey.metadata
    public static let versions: ClosedRange<Int16> = 0...13

    /// One partition's leadership.
    public struct Partition: Sendable, Equatable {
        public var errorCode: Int16
        public var partitionIndex: Int32
        public var leaderId: Int32
        public var leaderEpoch: Int32
        public var replicaNodes: [Int32]
        public var isrNodes: [Int32]
        public var offlineReplicas: [Int32]
        public var unknownTags = TaggedFields()
    }

    /// One topic's metadata.
    public struct Topic: Sendable, Equatable {
        public var errorCode: Int16
        public var name: String?
        public var topicId: KafkaUUID
        public var isInternal: Bool
        public var partitions: [Partition]
        public var topicAuthorizedOperations: Int32
        public var unknownTags = TaggedFields()
    }

    public var throttleTimeMs: Int32
    public var brokers: [BrokerEndpoint]
    public var clusterId: String?
    public var controllerId: Int32
    public var topics: [Topic]
    public var clusterAuthorizedOperations: Int32
    /// Top-level error (v13+, KIP-1102), e.g. REBOOTSTRAP_REQUIRED.
    public var errorCode: Int16 = 0
    public var unknownTags = TaggedFields()

    public init(brokers: [BrokerEndpoint], clusterId: String?, controllerId: Int32, topics: [Topic]) {
        throttleTimeMs = 0
        self.brokers = brokers
        self.clusterId = clusterId
        self.controllerId = controllerId
        self.topics = topics
        clusterAuthorizedOperations = Int32.min
    }

    public init(from r: inout WireReader) throws {
        throttleTimeMs = r.version >= 3 ? try r.int32() : 0
        brokers = try r.array("brokers") { r in
            var e = BrokerEndpoint(nodeId: try r.int32("node id"), host: try r.string("host"), port: try r.int32("port"),
                                   rack: r.version >= 1 ? try r.nullableString("rack") : nil)
            e.unknownTags = try r.taggedFields()
            return e
        }
        clusterId = r.version >= 2 ? try r.nullableString("cluster id") : nil
        controllerId = r.version >= 1 ? try r.int32() : -1
        topics = try r.array("topics") { r in
            let error = try r.int16()
            let name = r.version >= 12 ? try r.nullableString("topic name") : try r.string("topic name")
            let id = r.version >= 10 ? try r.uuid() : .zero
            let isInternal = r.version >= 1 ? try r.bool() : false
            let partitions = try r.array("partitions") { r in
                Partition(
                    errorCode: try r.int16(), partitionIndex: try r.int32(), leaderId: try r.int32(),
                    leaderEpoch: r.version >= 7 ? try r.int32() : -1,
                    replicaNodes: try r.array("replicas") { try $0.int32() },
                    isrNodes: try r.array("isr") { try $0.int32() },
                    offlineReplicas: r.version >= 5 ? try r.array("offline replicas") { try $0.int32() } : [],
                    unknownTags: try r.taggedFields())
            }
            let ops = r.version >= 8 ? try r.int32() : Int32.min
            return Topic(errorCode: error, name: name, topicId: id, isInternal: isInternal, partitions: partitions,
                         topicAuthorizedOperations: ops, unknownTags: try r.taggedFields())
        }
        clusterAuthorizedOperations = (8...10).contains(r.version) ? try r.int32() : Int32.min
        if r.version >= 13 { errorCode = try r.int16("error code") }
        unknownTags = try r.taggedFields()
    }

    public func write(to w: inout WireWriter) {
        if w.version >= 3 { w.int32(throttleTimeMs) }
        w.array(brokers) { w, e in
            w.int32(e.nodeId)
            w.string(e.host)
            w.int32(e.port)
            if w.version >= 1 { w.nullableString(e.rack) }
            w.taggedFields(e.unknownTags)
        }
        if w.version >= 2 { w.nullableString(clusterId) }
        if w.version >= 1 { w.int32(controllerId) }
        w.array(topics) { w, t in
            w.int16(t.errorCode)
            w.nullableString(t.name)
            if w.version >= 10 { w.uuid(t.topicId) }
            if w.version >= 1 { w.bool(t.isInternal) }
            w.array(t.partitions) { w, p in
                w.int16(p.errorCode)
                w.int32(p.partitionIndex)
                w.int32(p.leaderId)
                if w.version >= 7 { w.int32(p.leaderEpoch) }
                w.array(p.replicaNodes) { $0.int32($1) }
                w.array(p.isrNodes) { $0.int32($1) }
                if w.version >= 5 { w.array(p.offlineReplicas) { $0.int32($1) } }
                w.taggedFields(p.unknownTags)
            }
            if w.version >= 8 { w.int32(t.topicAuthorizedOperations) }
            w.taggedFields(t.unknownTags)
        }
        if (8...10).contains(w.version) { w.int32(clusterAuthorizedOperations) }
        if w.version >= 13 { w.int16(errorCode) }
        w.taggedFields(unknownTags)
    }
}
