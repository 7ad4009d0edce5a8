import NIOCore

/// Produce request (key 0). Record sets stay as bytes here; `RecordBatch` reads them.
public struct ProduceRequest: KafkaMessage {
    public static let apiKey = ApiKey.produce
    public static let versions: ClosedRange<Int16> = 0...13

    /// One partition's records.
    public struct PartitionData: Sendable, Equatable {
        public var index: Int32
        public var records: ByteBuffer?
        public var unknownTags = TaggedFields()

        public init(index: Int32, records: ByteBuffer?) {
            self.index = index
            self.records = records
        }
    }

    /// One topic, named up to v12 and by id from v13 (KIP-516).
    public struct TopicData: Sendable, Equatable {
        public var name: String
        public var topicId: KafkaUUID
        public var partitions: [PartitionData]
        public var unknownTags = TaggedFields()

        public init(name: String, topicId: KafkaUUID = .zero, partitions: [PartitionData]) {
            self.name = name
            self.topicId = topicId
            self.partitions = partitions
        }
    }

    public var transactionalId: String?
    public var acks: Int16
    public var timeoutMs: Int32
    public var topics: [TopicData]
    public var unknownTags = TaggedFields()

    public init(transactionalId: String? = nil, acks: Int16, timeoutMs: Int32, topics: [TopicData]) {
        self.transactionalId = transactionalId
        self.acks = acks
        self.timeoutMs = timeoutMs
        self.topics = topics
    }

    public init(from r: inout WireReader) throws {
        transactionalId = r.version >= 3 ? try r.nullableString("transactional id") : nil
        acks = try r.int16("acks")
        timeoutMs = try r.int32("timeout")
        topics = try r.array("topic data") { r in
            var t = TopicData(name: "", partitions: [])
            if r.version >= 13 { t.topicId = try r.uuid("topic id") } else { t.name = try r.string("topic name") }
            t.partitions = try r.array("partition data") { r in
                var p = PartitionData(index: try r.int32("partition"), records: try r.nullableBytes("records"))
                p.unknownTags = try r.taggedFields()
                return p
            }
            t.unknownTags = try r.taggedFields()
            return t
        }
        unknownTags = try r.taggedFields()
    }

    public func write(to w: inout WireWriter) {
        if w.version >= 3 { w.nullableString(transactionalId) }
        w.int16(acks)
        w.int32(timeoutMs)
        w.array(topics) { w, t in
            if w.version >= 13 { w.uuid(t.topicId) } else { w.string(t.name) }
            w.array(t.partitions) { w, p in
                w.int32(p.index)
                w.nullableBytes(p.records)
                w.taggedFields(p.unknownTags)
            }
            w.taggedFields(t.unknownTags)
        }
        w.taggedFields(unknownTags)
    }

    /// Reads `acks` without decoding the request, so the proxy knows whether a
    /// response will come (acks=0 gets none) at the cost of a few bytes.
    public static func peekAcks(body: ByteBuffer, version: Int16) throws -> Int16 {
        var r = WireReader(buffer: body, version: version, flexible: ApiKey.produce.isFlexible(version))
        if version >= 3 { _ = try r.nullableString("transactional id") }
        return try r.int16("acks")
    }
}

/// Produce response (key 0).
public struct ProduceResponse: KafkaMessage {
    public static let apiKey = ApiKey.produce
    public static let versions: ClosedRange<Int16> = 0...13

    /// A per-record error (v8+).
    public struct RecordError: Sendable, Equatable {
        public var batchIndex: Int32
        public var message: String?
        public var unknownTags = TaggedFields()

        public init(batchIndex: Int32, message: String?) {
            self.batchIndex = batchIndex
            self.message = message
        }
    }

    /// One partition's outcome. CurrentLeader (tag 0, v10+) stays in `unknownTags`.
    public struct PartitionResponse: Sendable, Equatable {
        public var index: Int32
        public var errorCode: Int16
        public var baseOffset: Int64
        public var logAppendTimeMs: Int64 = -1
        public var logStartOffset: Int64 = -1
        public var recordErrors: [RecordError] = []
        public var errorMessage: String?
        public var unknownTags = TaggedFields()

        public init(index: Int32, errorCode: Int16, baseOffset: Int64, errorMessage: String? = nil) {
            self.index = index
            self.errorCode = errorCode
            self.baseOffset = baseOffset
            self.errorMessage = errorMessage
        }
    }

    /// One topic's outcomes.
    public struct TopicResponse: Sendable, Equatable {
        public var name: String
        public var topicId: KafkaUUID
        public var partitions: [PartitionResponse]
        public var unknownTags = TaggedFields()

        public init(name: String, topicId: KafkaUUID = .zero, partitions: [PartitionResponse]) {
            self.name = name
            self.topicId = topicId
            self.partitions = partitions
        }
    }

    public var topics: [TopicResponse]
    public var throttleTimeMs: Int32
    /// KIP-951 leader endpoints (tag 0, v10+): broker addresses Veil must rewrite.
    public var nodeEndpoints: NodeEndpoints?
    public var unknownTags = TaggedFields()

    public init(topics: [TopicResponse], throttleTimeMs: Int32 = 0) {
        self.topics = topics
        self.throttleTimeMs = throttleTimeMs
    }

    public init(from r: inout WireReader) throws {
        topics = try r.array("responses") { r in
            var t = TopicResponse(name: "", partitions: [])
            if r.version >= 13 { t.topicId = try r.uuid("topic id") } else { t.name = try r.string("topic name") }
            t.partitions = try r.array("partition responses") { r in
                var p = PartitionResponse(index: try r.int32(), errorCode: try r.int16(), baseOffset: try r.int64())
                if r.version >= 2 { p.logAppendTimeMs = try r.int64() }
                if r.version >= 5 { p.logStartOffset = try r.int64() }
                if r.version >= 8 {
                    p.recordErrors = try r.array("record errors") { r in
                        var e = RecordError(batchIndex: try r.int32(), message: try r.nullableString("batch index error message"))
                        e.unknownTags = try r.taggedFields()
                        return e
                    }
                    p.errorMessage = try r.nullableString("error message")
                }
                p.unknownTags = try r.taggedFields()
                return p
            }
            t.unknownTags = try r.taggedFields()
            return t
        }
        throttleTimeMs = r.version >= 1 ? try r.int32() : 0
        unknownTags = try r.taggedFields()
        if r.version >= 10, let raw = unknownTags.take(0) {
            nodeEndpoints = try r.nested(raw) { try NodeEndpoints(from: &$0) }
        }
    }

    public func write(to w: inout WireWriter) {
        w.array(topics) { w, t in
            if w.version >= 13 { w.uuid(t.topicId) } else { w.string(t.name) }
            w.array(t.partitions) { w, p in
                w.int32(p.index)
                w.int16(p.errorCode)
                w.int64(p.baseOffset)
                if w.version >= 2 { w.int64(p.logAppendTimeMs) }
                if w.version >= 5 { w.int64(p.logStartOffset) }
                if w.version >= 8 {
                    w.array(p.recordErrors) { w, e in
                        w.int32(e.batchIndex)
                        w.nullableString(e.message)
                        w.taggedFields(e.unknownTags)
                    }
                    w.nullableString(p.errorMessage)
                }
                w.taggedFields(p.unknownTags)
            }
            w.taggedFields(t.unknownTags)
        }
        if w.version >= 1 { w.int32(throttleTimeMs) }
        var tags = unknownTags
        if w.version >= 10, let nodeEndpoints {
            tags.set(0, w.nested { nodeEndpoints.write(to: &$0) })
        }
        w.taggedFields(tags)
    }
}
