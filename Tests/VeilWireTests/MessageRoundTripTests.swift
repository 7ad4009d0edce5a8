import NIOCore
import Testing
@testable import VeilWire

/// Encodes `message` at `version`, decodes it back and requires the same value and the
/// same bytes; then requires every strict prefix of the encoding to fail with a typed
/// error (a decoder that reads past what it was given, or stops early, fails this).
func assertRoundTrip<M: KafkaMessage>(_ message: M, version: Int16, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let bytes = message.encoded(version: version)
    let decoded = try M(decoding: bytes, version: version)
    #expect(decoded == message, "\(M.self) v\(version)", sourceLocation: sourceLocation)
    #expect(decoded.encoded(version: version) == bytes, "\(M.self) v\(version) re-encoding", sourceLocation: sourceLocation)
    for cut in 0..<bytes.readableBytes {
        let prefix = bytes.getSlice(at: bytes.readerIndex, length: cut)!
        #expect(wireError { try M(decoding: prefix, version: version) } != nil,
                "\(M.self) v\(version) cut at \(cut)", sourceLocation: sourceLocation)
    }
    var trailing = bytes
    trailing.writeInteger(UInt8(0))
    #expect(wireError { try M(decoding: trailing, version: version) }?.label == "trailingBytes", sourceLocation: sourceLocation)
}

/// Unknown tags to sprinkle at every level of flexible versions.
func unknown(_ flexible: Bool, _ tag: UInt32 = 9, _ payload: [UInt8] = [0xDE, 0xAD]) -> TaggedFields {
    flexible ? tags([(tag, payload)]) : TaggedFields()
}

let topicIdA = KafkaUUID(high: 0x0123_4567_89AB_CDEF, low: 0xFEDC_BA98_7654_3210)
let topicIdB = KafkaUUID(high: 1, low: 2)

// MARK: - Sample values: every field that exists at `v` set to a non-default value, every
// field that does not exist at `v` left at the default the decoder produces for it.

enum Samples {
    static func apiVersionsRequest(_ v: Int16) -> ApiVersionsRequest {
        var m = ApiVersionsRequest()
        if v >= 3 {
            m = ApiVersionsRequest(clientSoftwareName: "veil-é", clientSoftwareVersion: "0.1.0")
            m.unknownTags = unknown(true)
        }
        return m
    }

    static func apiVersionsResponse(_ v: Int16) -> ApiVersionsResponse {
        let f = ApiKey.apiVersions.isFlexible(v)
        var keys = [ApiVersionsResponse.ApiVersion(apiKey: 0, minVersion: 3, maxVersion: 13),
                    ApiVersionsResponse.ApiVersion(apiKey: 18, minVersion: 0, maxVersion: 4)]
        keys[1].unknownTags = unknown(f)
        var m = ApiVersionsResponse(errorCode: 41, apiKeys: keys, throttleTimeMs: v >= 1 ? 250 : 0)
        // SupportedFeatures (tag 0) and FinalizedFeaturesEpoch (tag 1) kept raw.
        m.unknownTags = f ? tags([(0, [0x01]), (1, [0, 0, 0, 0, 0, 0, 0, 7])]) : TaggedFields()
        return m
    }

    static func metadataRequest(_ v: Int16) -> MetadataRequest {
        let f = ApiKey.metadata.isFlexible(v)
        var a = MetadataRequest.Topic(name: "orders")
        var b = MetadataRequest.Topic(name: "payments")
        if v >= 10 {
            a.topicId = topicIdA
            b = MetadataRequest.Topic(topicId: topicIdB, name: nil)
        }
        a.unknownTags = unknown(f)
        var m = MetadataRequest(topics: [a, b], allowAutoTopicCreation: v >= 4 ? false : true)
        m.includeClusterAuthorizedOperations = (8...10).contains(v)
        m.includeTopicAuthorizedOperations = v >= 8
        m.unknownTags = unknown(f, 3)
        return m
    }

    static func metadataResponse(_ v: Int16) -> MetadataResponse {
        let f = ApiKey.metadata.isFlexible(v)
        var b1 = BrokerEndpoint(nodeId: 1, host: "b-1.kafka.internal", port: 9092, rack: v >= 1 ? "use1-az1" : nil)
        b1.unknownTags = unknown(f)
        let b2 = BrokerEndpoint(nodeId: 2, host: "b-2", port: 9094, rack: nil)
        let p0 = MetadataResponse.Partition(
            errorCode: 0, partitionIndex: 0, leaderId: 1, leaderEpoch: v >= 7 ? 17 : -1, replicaNodes: [1, 2],
            isrNodes: [1], offlineReplicas: v >= 5 ? [2] : [], unknownTags: unknown(f))
        let p1 = MetadataResponse.Partition(
            errorCode: 9, partitionIndex: 1, leaderId: -1, leaderEpoch: -1, replicaNodes: [], isrNodes: [],
            offlineReplicas: [])
        let t0 = MetadataResponse.Topic(
            errorCode: 0, name: "orders", topicId: v >= 10 ? topicIdA : .zero, isInternal: false, partitions: [p0, p1],
            topicAuthorizedOperations: v >= 8 ? 0x0F8 : Int32.min, unknownTags: unknown(f))
        let t1 = MetadataResponse.Topic(
            errorCode: 3, name: v >= 12 ? nil : "__consumer_offsets", topicId: v >= 10 ? topicIdB : .zero,
            isInternal: v >= 1, partitions: [], topicAuthorizedOperations: Int32.min)
        var m = MetadataResponse(brokers: [b1, b2], clusterId: v >= 2 ? "cluster-Ω" : nil, controllerId: v >= 1 ? 2 : -1,
                                 topics: [t0, t1])
        m.throttleTimeMs = v >= 3 ? 1500 : 0
        m.clusterAuthorizedOperations = (8...10).contains(v) ? 0x1234 : Int32.min
        m.errorCode = v >= 13 ? 129 : 0
        m.unknownTags = unknown(f, 4)
        return m
    }

    static func findCoordinatorRequest(_ v: Int16) -> FindCoordinatorRequest {
        var m = FindCoordinatorRequest(key: v <= 3 ? "group-a" : "", keyType: v >= 1 ? 1 : 0,
                                       coordinatorKeys: v >= 4 ? ["group-a", "txn-b", ""] : [])
        m.unknownTags = unknown(ApiKey.findCoordinator.isFlexible(v))
        return m
    }

    static func findCoordinatorResponse(_ v: Int16) -> FindCoordinatorResponse {
        let f = ApiKey.findCoordinator.isFlexible(v)
        var m: FindCoordinatorResponse
        if v <= 3 {
            m = FindCoordinatorResponse(throttleTimeMs: v >= 1 ? 20 : 0, errorCode: 15, errorMessage: v >= 1 ? "not yet" : nil,
                                        endpoint: BrokerEndpoint(nodeId: 3, host: "coord", port: 9093))
        } else {
            var e = BrokerEndpoint(nodeId: 3, host: "coord", port: 9093)
            e.unknownTags = unknown(f)
            m = FindCoordinatorResponse(throttleTimeMs: 20, coordinators: [
                .init(key: "group-a", endpoint: e, errorCode: 0, errorMessage: nil),
                .init(key: "txn-b", endpoint: BrokerEndpoint(nodeId: -1, host: "", port: -1), errorCode: 15, errorMessage: "loading"),
            ])
        }
        m.unknownTags = unknown(f, 2)
        return m
    }

    static func describeClusterRequest(_ v: Int16) -> DescribeClusterRequest {
        var m = DescribeClusterRequest(includeClusterAuthorizedOperations: true, endpointType: v >= 1 ? 2 : 1,
                                       includeFencedBrokers: v >= 2)
        m.unknownTags = unknown(true)
        return m
    }

    static func describeClusterResponse(_ v: Int16) -> DescribeClusterResponse {
        var e = BrokerEndpoint(nodeId: 7, host: "controller-7", port: 9097, rack: "r2")
        e.unknownTags = unknown(true)
        var m = DescribeClusterResponse(
            throttleTimeMs: 5, errorCode: 0, errorMessage: "ok?", endpointType: v >= 1 ? 2 : 1, clusterId: "cid",
            controllerId: 7,
            brokers: [.init(endpoint: e, isFenced: v >= 2), .init(endpoint: BrokerEndpoint(nodeId: 8, host: "h8", port: 1))],
            clusterAuthorizedOperations: 0x55)
        m.unknownTags = unknown(true, 1)
        return m
    }

    static func produceRequest(_ v: Int16) -> ProduceRequest {
        let f = ApiKey.produce.isFlexible(v)
        var p0 = ProduceRequest.PartitionData(index: 0, records: buf([1, 2, 3, 4, 5]))
        p0.unknownTags = unknown(f)
        let p1 = ProduceRequest.PartitionData(index: 7, records: nil)
        var t0 = ProduceRequest.TopicData(name: v <= 12 ? "department-events" : "", topicId: v >= 13 ? topicIdA : .zero,
                                          partitions: [p0, p1])
        t0.unknownTags = unknown(f)
        let t1 = ProduceRequest.TopicData(name: v <= 12 ? "t2" : "", topicId: v >= 13 ? topicIdB : .zero, partitions: [])
        var m = ProduceRequest(transactionalId: v >= 3 ? "txn-1" : nil, acks: -1, timeoutMs: 30000, topics: [t0, t1])
        m.unknownTags = unknown(f, 1)
        return m
    }

    static func produceResponse(_ v: Int16) -> ProduceResponse {
        let f = ApiKey.produce.isFlexible(v)
        var p = ProduceResponse.PartitionResponse(index: 2, errorCode: v >= 8 ? 87 : 0, baseOffset: 1_234_567,
                                                  errorMessage: v >= 8 ? "bad record" : nil)
        if v >= 2 { p.logAppendTimeMs = 1_700_000_000_123 }
        if v >= 5 { p.logStartOffset = 42 }
        if v >= 8 {
            var e = ProduceResponse.RecordError(batchIndex: 3, message: "record 3")
            e.unknownTags = unknown(f)
            p.recordErrors = [e, ProduceResponse.RecordError(batchIndex: 4, message: nil)]
        }
        // CurrentLeader (tag 0, v10+) stays raw.
        p.unknownTags = f ? tags([(0, [0, 0, 0, 1, 0, 0, 0, 5, 0])]) : TaggedFields()
        var t = ProduceResponse.TopicResponse(name: v <= 12 ? "department-events" : "",
                                              topicId: v >= 13 ? topicIdA : .zero, partitions: [p])
        t.unknownTags = unknown(f)
        var m = ProduceResponse(topics: [t], throttleTimeMs: v >= 1 ? 77 : 0)
        if v >= 10 {
            var e = BrokerEndpoint(nodeId: 1, host: "b-1", port: 9092, rack: "a")
            e.unknownTags = unknown(true)
            m.nodeEndpoints = NodeEndpoints(endpoints: [e, BrokerEndpoint(nodeId: 2, host: "b-2", port: 9093)])
        }
        m.unknownTags = unknown(f, 5)
        return m
    }

    static func fetchRequest(_ v: Int16) -> FetchRequest {
        let f = ApiKey.fetch.isFlexible(v)
        var p0 = FetchRequest.Partition(partition: 0, fetchOffset: 100, partitionMaxBytes: 1_048_576)
        if v >= 9 { p0.currentLeaderEpoch = 12 }
        if v >= 12 { p0.lastFetchedEpoch = 11 }
        if v >= 5 { p0.logStartOffset = 3 }
        // ReplicaDirectoryId (tag 0, v17) stays raw.
        p0.unknownTags = f ? tags([(0, [UInt8](repeating: 0xAA, count: 16))]) : TaggedFields()
        let p1 = FetchRequest.Partition(partition: 1, fetchOffset: 0, partitionMaxBytes: 65536)
        var t0 = FetchRequest.Topic(topic: v <= 12 ? "department-events" : "", topicId: v >= 13 ? topicIdA : .zero,
                                    partitions: [p0, p1])
        t0.unknownTags = unknown(f)
        var m = FetchRequest(maxWaitMs: 500, minBytes: 1, topics: [t0])
        m.replicaId = v <= 14 ? 5 : -1
        if v >= 3 { m.maxBytes = 52_428_800 }
        if v >= 4 { m.isolationLevel = 1 }
        if v >= 7 {
            m.sessionId = 1_234
            m.sessionEpoch = 9
            m.forgottenTopics = [FetchRequest.ForgottenTopic(
                topic: v <= 12 ? "old" : "", topicId: v >= 13 ? topicIdB : .zero, partitions: [4, 5], unknownTags: unknown(f))]
        }
        if v >= 11 { m.rackId = "use1-az2" }
        // ClusterId (tag 0) and ReplicaState (tag 1) stay raw.
        m.unknownTags = f ? tags([(0, [0x04, 0x63, 0x69, 0x64]), (1, [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0])]) : TaggedFields()
        return m
    }

    static func fetchResponse(_ v: Int16) -> FetchResponse {
        let f = ApiKey.fetch.isFlexible(v)
        var p0 = FetchResponse.PartitionData(partitionIndex: 0, errorCode: 0, highWatermark: 1000, records: buf([9, 8, 7, 6]))
        if v >= 4 {
            p0.lastStableOffset = 990
            p0.abortedTransactions = [FetchResponse.AbortedTransaction(producerId: 77, firstOffset: 900, unknownTags: unknown(f))]
        }
        if v >= 5 { p0.logStartOffset = 10 }
        if v >= 11 { p0.preferredReadReplica = 3 }
        // DivergingEpoch (tag 0) and CurrentLeader (tag 1) stay raw.
        p0.unknownTags = f ? tags([(0, [0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 9, 0]), (1, [0, 0, 0, 2, 0, 0, 0, 4, 0])]) : TaggedFields()
        var p1 = FetchResponse.PartitionData(partitionIndex: 1, errorCode: 1, highWatermark: -1, records: nil)
        if v >= 4 { p1.abortedTransactions = nil }
        var t = FetchResponse.TopicResponse(topic: v <= 12 ? "department-events" : "", topicId: v >= 13 ? topicIdA : .zero,
                                            partitions: [p0, p1])
        t.unknownTags = unknown(f)
        var m = FetchResponse(topics: [t])
        if v >= 1 { m.throttleTimeMs = 8 }
        if v >= 7 {
            m.errorCode = 0
            m.sessionId = 99
        }
        if v >= 16 {
            m.nodeEndpoints = NodeEndpoints(endpoints: [BrokerEndpoint(nodeId: 2, host: "b-2.internal", port: 9092, rack: nil)])
        }
        m.unknownTags = unknown(f, 7)
        return m
    }

    static func saslAuthenticateRequest(_ v: Int16) -> SaslAuthenticateRequest {
        var m = SaslAuthenticateRequest(authBytes: buf([0, 0x75, 0x73, 0x65, 0x72, 0, 0x70, 0x77]))
        m.unknownTags = unknown(ApiKey.saslAuthenticate.isFlexible(v))
        return m
    }

    static func saslAuthenticateResponse(_ v: Int16) -> SaslAuthenticateResponse {
        var m = SaslAuthenticateResponse(errorCode: 58, errorMessage: "denied", authBytes: buf([1, 2]),
                                         sessionLifetimeMs: v >= 1 ? 3_600_000 : 0)
        m.unknownTags = unknown(ApiKey.saslAuthenticate.isFlexible(v))
        return m
    }
}

@Suite("Messages: round trip of every version")
struct MessageRoundTripTests {
    @Test func versionRangesMatchKafka41() {
        #expect(ApiVersionsRequest.versions == 0...4)
        #expect(ApiVersionsResponse.versions == 0...4)
        #expect(MetadataRequest.versions == 0...13)
        #expect(MetadataResponse.versions == 0...13)
        #expect(FindCoordinatorRequest.versions == 0...6)
        #expect(FindCoordinatorResponse.versions == 0...6)
        #expect(DescribeClusterRequest.versions == 0...2)
        #expect(DescribeClusterResponse.versions == 0...2)
        #expect(ProduceRequest.versions == 0...13)
        #expect(ProduceResponse.versions == 0...13)
        #expect(FetchRequest.versions == 0...17)
        #expect(FetchResponse.versions == 0...17)
        #expect(SaslHandshakeRequest.versions == 0...1)
        #expect(SaslHandshakeResponse.versions == 0...1)
        #expect(SaslAuthenticateRequest.versions == 0...2)
        #expect(SaslAuthenticateResponse.versions == 0...2)
    }

    @Test(arguments: ApiVersionsRequest.versions)
    func apiVersions(_ v: Int16) throws {
        try assertRoundTrip(Samples.apiVersionsRequest(v), version: v)
        try assertRoundTrip(Samples.apiVersionsResponse(v), version: v)
    }

    @Test(arguments: MetadataRequest.versions)
    func metadata(_ v: Int16) throws {
        try assertRoundTrip(Samples.metadataRequest(v), version: v)
        try assertRoundTrip(Samples.metadataResponse(v), version: v)
        if v >= 1 {
            // A null topic list asks for every topic.
            var all = Samples.metadataRequest(v)
            all.topics = nil
            try assertRoundTrip(all, version: v)
        }
        var empty = Samples.metadataRequest(v)
        empty.topics = []
        try assertRoundTrip(empty, version: v)
    }

    @Test(arguments: FindCoordinatorRequest.versions)
    func findCoordinator(_ v: Int16) throws {
        try assertRoundTrip(Samples.findCoordinatorRequest(v), version: v)
        try assertRoundTrip(Samples.findCoordinatorResponse(v), version: v)
    }

    @Test(arguments: DescribeClusterRequest.versions)
    func describeCluster(_ v: Int16) throws {
        try assertRoundTrip(Samples.describeClusterRequest(v), version: v)
        try assertRoundTrip(Samples.describeClusterResponse(v), version: v)
    }

    @Test(arguments: ProduceRequest.versions)
    func produce(_ v: Int16) throws {
        try assertRoundTrip(Samples.produceRequest(v), version: v)
        try assertRoundTrip(Samples.produceResponse(v), version: v)
    }

    @Test(arguments: FetchRequest.versions)
    func fetch(_ v: Int16) throws {
        try assertRoundTrip(Samples.fetchRequest(v), version: v)
        try assertRoundTrip(Samples.fetchResponse(v), version: v)
    }

    @Test(arguments: SaslHandshakeRequest.versions)
    func saslHandshake(_ v: Int16) throws {
        try assertRoundTrip(SaslHandshakeRequest(mechanism: "SCRAM-SHA-512"), version: v)
        try assertRoundTrip(SaslHandshakeResponse(errorCode: 33, mechanisms: ["PLAIN", "SCRAM-SHA-256"]), version: v)
    }

    @Test(arguments: SaslAuthenticateRequest.versions)
    func saslAuthenticate(_ v: Int16) throws {
        try assertRoundTrip(Samples.saslAuthenticateRequest(v), version: v)
        try assertRoundTrip(Samples.saslAuthenticateResponse(v), version: v)
    }

    @Test func versionsOutsideTheRangeAreTypedErrors() {
        #expect(wireError { try ProduceRequest(decoding: ByteBuffer(), version: 14) } == .unsupportedVersion(apiKey: 0, version: 14))
        #expect(wireError { try FetchResponse(decoding: ByteBuffer(), version: -1) } == .unsupportedVersion(apiKey: 1, version: -1))
        #expect(wireError { try MetadataRequest(decoding: ByteBuffer(), version: 14) }?.label == "unsupportedVersion")
        #expect(wireError { try DescribeClusterResponse(decoding: ByteBuffer(), version: 3) }?.label == "unsupportedVersion")
    }

    @Test func fieldsAbsentFromAVersionAreDropped() throws {
        // A v13 value written at v12 loses its topic id and keeps its name, and the reverse.
        let v13 = Samples.produceRequest(13)
        let asV12 = try ProduceRequest(decoding: v13.encoded(version: 12), version: 12)
        #expect(asV12.topics[0].topicId == .zero)
        #expect(asV12.topics[0].name == "")
        let v12 = Samples.produceRequest(12)
        let asV13 = try ProduceRequest(decoding: v12.encoded(version: 13), version: 13)
        #expect(asV13.topics[0].topicId == .zero)
        #expect(asV13.topics[0].name == "")
        // Node endpoints exist from Fetch v16 only.
        let f16 = Samples.fetchResponse(16)
        #expect(try FetchResponse(decoding: f16.encoded(version: 15), version: 15).nodeEndpoints == nil)
    }
}

@Suite("Messages: encoding appends in place")
struct EncodeInPlaceTests {
    /// Writing a header and a body into a buffer with reserved capacity must not copy
    /// the buffer (a writer built on a copy of it did, losing the reservation, so every
    /// encode copied all bytes already written and the records were copied again on growth).
    @Test func headerAndBodyKeepTheReservedStorage() {
        var b = ByteBuffer()
        b.reserveCapacity(1 << 20)
        b.writeBytes([1, 2, 3])
        let capacity = b.capacity
        let start = b.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
        RequestHeader(apiKey: .produce, apiVersion: 9, correlationId: 1, clientId: "c", taggedFields: tags([(1, [1])])).write(to: &b)
        Samples.produceRequest(9).encode(version: 9, into: &b)
        ResponseHeader(correlationId: 1).write(to: &b, headerVersion: 1)
        Samples.fetchResponse(16).encode(version: 16, into: &b)
        #expect(b.capacity == capacity)
        #expect(b.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) } == start)
        #expect(b.getSlice(at: 0, length: 3)?.bytes == [1, 2, 3])
    }
}

@Suite("Messages: encoding in parts")
struct EncodePartsTests {
    /// A Fetch response with one large and one small record set, in parts, is byte for byte
    /// the single-buffer encoding behind the same header, at every version; the large record
    /// set is a part of its own (the same storage, not a copy) and the small one is inline.
    @Test(arguments: FetchResponse.versions)
    func partsJoinToTheSingleBufferEncoding(version: Int16) throws {
        let large = ByteBuffer(bytes: (0..<(WireWriter.spillMinimum + 5)).map { UInt8(truncatingIfNeeded: $0) })
        let small = ByteBuffer(bytes: [9, 8, 7])
        let partitions = [
            FetchResponse.PartitionData(partitionIndex: 0, errorCode: 0, highWatermark: 10, records: large),
            FetchResponse.PartitionData(partitionIndex: 1, errorCode: 0, highWatermark: 3, records: small),
        ]
        var message = FetchResponse(topics: [.init(topic: "t", topicId: KafkaUUID(high: 1, low: 2), partitions: partitions)])
        if version >= 16 {
            message.nodeEndpoints = NodeEndpoints(endpoints: [BrokerEndpoint(nodeId: 2, host: "b-2", port: 9092, rack: nil)])
        }
        let head = ByteBuffer(bytes: [0, 0, 0, 42])
        var whole = head
        message.encode(version: version, into: &whole)
        let parts = message.encodeParts(version: version, after: head)
        var joined = ByteBuffer()
        for var part in parts { joined.writeBuffer(&part) }
        #expect(joined == whole)
        #expect(parts.count == 3)
        let spilled = parts[1]
        #expect(spilled == large)
        spilled.withUnsafeReadableBytes { a in
            large.withUnsafeReadableBytes { b in #expect(a.baseAddress == b.baseAddress) }
        }
    }
}
