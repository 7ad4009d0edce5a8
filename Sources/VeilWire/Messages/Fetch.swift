import NIOCore

/// Fetch request (key 1). Veil forwards it unchanged but decodes it to learn topic
/// ids and the isolation level.
public struct FetchRequest: KafkaMessage {
    public static let apiKey = ApiKey.fetch
    public static let versions: ClosedRange<Int16> = 0...17

    /// One partition to fetch. ReplicaDirectoryId (tag 0, v17) stays in `unknownTags`.
    public struct Partition: Sendable, Equatable {
        public var partition: Int32
        public var currentLeaderEpoch: Int32 = -1
        public var fetchOffset: Int64
        public var lastFetchedEpoch: Int32 = -1
        public var logStartOffset: Int64 = -1
        public var partitionMaxBytes: Int32
        public var unknownTags = TaggedFields()

        public init(partition: Int32, fetchOffset: Int64, partitionMaxBytes: Int32) {
            self.partition = partition
            self.fetchOffset = fetchOffset
            self.partitionMaxBytes = partitionMaxBytes
        }
    }

    /// One topic to fetch: by name up to v12, by id from v13.
    public struct Topic: Sendable, Equatable {
        public var topic: String
        public var topicId: KafkaUUID
        public var partitions: [Partition]
        public var unknownTags = TaggedFields()

        public init(topic: String, topicId: KafkaUUID = .zero, partitions: [Partition]) {
            self.topic = topic
            self.topicId = topicId
            self.partitions = partitions
        }
    }

    /// A topic's partitions to drop from an incremental fetch session (v7+).
    public struct ForgottenTopic: Sendable, Equatable {
        public var topic: String
        public var topicId: KafkaUUID
        public var partitions: [Int32]
        public var unknownTags = TaggedFields()
    }

    /// ClusterId (tag 0) and ReplicaState (tag 1) stay in `unknownTags`.
    public var replicaId: Int32 = -1
    public var maxWaitMs: Int32
    public var minBytes: Int32
    public var maxBytes: Int32 = .max
    public var isolationLevel: Int8 = 0
    public var sessionId: Int32 = 0
    public var sessionEpoch: Int32 = -1
    public var topics: [Topic]
    public var forgottenTopics: [ForgottenTopic] = []
    public var rackId: String = ""
    public var unknownTags = TaggedFields()

    public init(maxWaitMs: Int32, minBytes: Int32, topics: [Topic]) {
        self.maxWaitMs = maxWaitMs
        self.minBytes = minBytes
        self.topics = topics
    }

    public init(from r: inout WireReader) throws {
        replicaId = r.version <= 14 ? try r.int32("replica id") : -1
        maxWaitMs = try r.int32()
        minBytes = try r.int32()
        if r.version >= 3 { maxBytes = try r.int32() }
        if r.version >= 4 { isolationLevel = try r.int8() }
        if r.version >= 7 {
            sessionId = try r.int32()
            sessionEpoch = try r.int32()
        }
        topics = try r.array("topics") { r in
            var t = Topic(topic: "", partitions: [])
            if r.version >= 13 { t.topicId = try r.uuid() } else { t.topic = try r.string("topic") }
            t.partitions = try r.array("partitions") { r in
                var p = Partition(partition: try r.int32(), fetchOffset: 0, partitionMaxBytes: 0)
                if r.version >= 9 { p.currentLeaderEpoch = try r.int32() }
                p.fetchOffset = try r.int64()
                if r.version >= 12 { p.lastFetchedEpoch = try r.int32() }
                if r.version >= 5 { p.logStartOffset = try r.int64() }
                p.partitionMaxBytes = try r.int32()
                p.unknownTags = try r.taggedFields()
                return p
            }
            t.unknownTags = try r.taggedFields()
            return t
        }
        if r.version >= 7 {
            forgottenTopics = try r.array("forgotten topics") { r in
                var name = "", id = KafkaUUID.zero
                if r.version >= 13 { id = try r.uuid() } else { name = try r.string("topic") }
                let parts = try r.array("partitions") { try $0.int32() }
                return ForgottenTopic(topic: name, topicId: id, partitions: parts, unknownTags: try r.taggedFields())
            }
        }
        if r.version >= 11 { rackId = try r.string("rack id") }
        unknownTags = try r.taggedFields()
    }

    public func write(to w: inout WireWriter) {
        if w.version <= 14 { w.int32(replicaId) }
        w.int32(maxWaitMs)
        w.int32(minBytes)
        if w.version >= 3 { w.int32(maxBytes) }
        if w.version >= 4 { w.int8(isolationLevel) }
        if w.version >= 7 {
            w.int32(sessionId)
            w.int32(sessionEpoch)
        }
        w.array(topics) { w, t in
            if w.version >= 13 { w.uuid(t.topicId) } else { w.string(t.topic) }
            w.array(t.partitions) { w, p in
                w.int32(p.partition)
                if w.version >= 9 { w.int32(p.currentLeaderEpoch) }
                w.int64(p.fetchOffset)
                if w.version >= 12 { w.int32(p.lastFetchedEpoch) }
                if w.version >= 5 { w.int64(p.logStartOffset) }
                w.int32(p.partitionMaxBytes)
                w.taggedFields(p.unknownTags)
            }
            w.taggedFields(t.unknownTags)
        }
        if w.version >= 7 {
            w.array(forgottenTopics) { w, t in
                if w.version >= 13 { w.uuid(t.topicId) } else { w.string(t.topic) }
                w.array(t.partitions) { $0.int32($1) }
                w.taggedFields(t.unknownTags)
            }
        }
        if w.version >= 11 { w.string(rackId) }
        w.taggedFields(unknownTags)
    }
}

/// Fetch response (key 1): records stay as bytes; `RecordSet` reads them.
public struct FetchResponse: KafkaMessage {
    public static let apiKey = ApiKey.fetch
    public static let versions: ClosedRange<Int16> = 0...17

    /// An aborted transaction's range (v4+).
    public struct AbortedTransaction: Sendable, Equatable {
        public var producerId: Int64
        public var firstOffset: Int64
        public var unknownTags = TaggedFields()
    }

    /// One partition's data. DivergingEpoch, CurrentLeader and SnapshotId (tags 0–2)
    /// stay in `unknownTags`: they carry no addresses.
    public struct PartitionData: Sendable, Equatable {
        public var partitionIndex: Int32
        public var errorCode: Int16
        public var highWatermark: Int64
        public var lastStableOffset: Int64 = -1
        public var logStartOffset: Int64 = -1
        public var abortedTransactions: [AbortedTransaction]?
        public var preferredReadReplica: Int32 = -1
        public var records: ByteBuffer?
        public var unknownTags = TaggedFields()

        public init(partitionIndex: Int32, errorCode: Int16, highWatermark: Int64, records: ByteBuffer?) {
            self.partitionIndex = partitionIndex
            self.errorCode = errorCode
            self.highWatermark = highWatermark
            self.records = records
        }
    }

    /// One topic's partitions: named up to v12, by id from v13.
    public struct TopicResponse: Sendable, Equatable {
        public var topic: String
        public var topicId: KafkaUUID
        public var partitions: [PartitionData]
        public var unknownTags = TaggedFields()

        public init(topic: String, topicId: KafkaUUID = .zero, partitions: [PartitionData]) {
            self.topic = topic
            self.topicId = topicId
            self.partitions = partitions
        }
    }

    public var throttleTimeMs: Int32 = 0
    public var errorCode: Int16 = 0
    public var sessionId: Int32 = 0
    public var topics: [TopicResponse]
    /// KIP-951 leader endpoints (tag 0, v16+): broker addresses Veil must rewrite.
    public var nodeEndpoints: NodeEndpoints?
    public var unknownTags = TaggedFields()

    public init(topics: [TopicResponse]) { self.topics = topics }

    public init(from r: inout WireReader) throws {
        if r.version >= 1 { throttleTimeMs = try r.int32() }
        if r.version >= 7 {
            errorCode = try r.int16()
            sessionId = try r.int32()
        }
        topics = try r.array("responses") { r in
            var t = TopicResponse(topic: "", partitions: [])
            if r.version >= 13 { t.topicId = try r.uuid() } else { t.topic = try r.string("topic") }
            t.partitions = try r.array("partitions") { r in
                var p = PartitionData(partitionIndex: try r.int32(), errorCode: try r.int16(), highWatermark: try r.int64(), records: nil)
                if r.version >= 4 { p.lastStableOffset = try r.int64() }
                if r.version >= 5 { p.logStartOffset = try r.int64() }
                if r.version >= 4 {
                    p.abortedTransactions = try r.nullableArray("aborted transactions") { r in
                        AbortedTransaction(producerId: try r.int64(), firstOffset: try r.int64(), unknownTags: try r.taggedFields())
                    }
                }
                if r.version >= 11 { p.preferredReadReplica = try r.int32() }
                p.records = try r.nullableBytes("records")
                p.unknownTags = try r.taggedFields()
                return p
            }
            t.unknownTags = try r.taggedFields()
            return t
        }
        unknownTags = try r.taggedFields()
        if r.version >= 16, let raw = unknownTags.take(0) {
            nodeEndpoints = try r.nested(raw) { try NodeEndpoints(from: &$0) }
        }
    }

    public func write(to w: inout WireWriter) {
        if w.version >= 1 { w.int32(throttleTimeMs) }
        if w.version >= 7 {
            w.int16(errorCode)
            w.int32(sessionId)
        }
        w.array(topics) { w, t in
            if w.version >= 13 { w.uuid(t.topicId) } else { w.string(t.topic) }
            w.array(t.partitions) { w, p in
                w.int32(p.partitionIndex)
                w.int16(p.errorCode)
                w.int64(p.highWatermark)
                if w.version >= 4 { w.int64(p.lastStableOffset) }
                if w.version >= 5 { w.int64(p.logStartOffset) }
                if w.version >= 4 {
                    w.nullableArray(p.abortedTransactions) { w, a in
                        w.int64(a.producerId)
                        w.int64(a.firstOffset)
                        w.taggedFields(a.unknownTags)
                    }
                }
                if w.version >= 11 { w.int32(p.preferredReadReplica) }
                w.nullableBytes(p.records)
                w.taggedFields(p.unknownTags)
            }
            w.taggedFields(t.unknownTags)
        }
        var tags = unknownTags
        if w.version >= 16, let nodeEndpoints {
            tags.set(0, w.nested { nodeEndpoints.write(to: &$0) })
        }
        w.taggedFields(tags)
    }
}
