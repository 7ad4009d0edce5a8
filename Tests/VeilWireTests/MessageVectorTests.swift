import NIOCore
import Testing
@testable import VeilWire

/// Requires `hexText` (written by hand from the protocol's message definitions) to decode to
/// `expected` at `version`, and `expected` to encode to exactly `hexText`. Round trips
/// cannot catch a field order that is wrong the same way in reader and writer; these can.
func assertVector<M: KafkaMessage>(_ hexText: String, version: Int16, _ expected: M,
                                   sourceLocation: SourceLocation = #_sourceLocation) throws {
    let bytes = hexBuf(hexText)
    let decoded = try M(decoding: bytes, version: version)
    #expect(decoded == expected, "\(M.self) v\(version) decode", sourceLocation: sourceLocation)
    #expect(hex(expected.encoded(version: version)) == hex(bytes), "\(M.self) v\(version) encode", sourceLocation: sourceLocation)
}

let idA = "0123456789abcdef fedcba9876543210"  // topicIdA

@Suite("Messages: hand-built byte vectors")
struct MessageVectorTests {
    // MARK: ApiVersions

    @Test func apiVersionsV3Request() throws {
        try assertVector("05 7665696c  04 312e30  00", version: 3,
                         ApiVersionsRequest(clientSoftwareName: "veil", clientSoftwareVersion: "1.0"))
    }

    @Test func apiVersionsV3Response() throws {
        let hexText = """
            0000                      error
            03                        api keys: 2
              0000 0003 000d 00       Produce 3-13
              0012 0000 0004 00       ApiVersions 0-4
            00000064                  throttle 100
            01 03 01 01               tagged: ZkMigrationReady(3) = true
            """
        var expected = ApiVersionsResponse(errorCode: 0, apiKeys: [.init(apiKey: 0, minVersion: 3, maxVersion: 13),
                                                                   .init(apiKey: 18, minVersion: 0, maxVersion: 4)],
                                           throttleTimeMs: 100)
        expected.unknownTags = tags([(3, [1])])
        try assertVector(stripComments(hexText), version: 3, expected)
    }

    @Test func apiVersionsUnsupportedVersionIsReadAsV0WhateverWasRequested() throws {
        // A broker that does not know the requested version answers error 35 in the v0
        // layout: error, then a classic array of the ApiVersions range it supports.
        let body = hexBuf("0023 00000001 0012 0000 0002")
        for requested in Int16(0)...4 {
            let (response, version) = try ApiVersionsResponse.decode(body, requestedVersion: requested)
            #expect(version == 0)
            #expect(response.errorCode == KafkaErrorCode.unsupportedVersion)
            #expect(response.apiKeys == [.init(apiKey: 18, minVersion: 0, maxVersion: 2)])
        }
        // Read at v3 instead, the same bytes would be garbage.
        #expect(wireError { try ApiVersionsResponse(decoding: body, version: 3) } != nil)
    }

    @Test func apiVersionsSuccessIsReadAtTheRequestedVersion() throws {
        let v3 = hexBuf("0000 02 0012 0000 0004 00 00000000 00")
        let (response, version) = try ApiVersionsResponse.decode(v3, requestedVersion: 3)
        #expect(version == 3)
        #expect(response.apiKeys.count == 1)
        let v0 = hexBuf("0000 00000001 0012 0000 0004")
        #expect(try ApiVersionsResponse.decode(v0, requestedVersion: 0).version == 0)
        // Another error is read in the requested layout.
        let v1 = hexBuf("0001 00000000 00000005")
        let (r1, ver1) = try ApiVersionsResponse.decode(v1, requestedVersion: 1)
        #expect(ver1 == 1)
        #expect(r1.throttleTimeMs == 5)
    }

    // MARK: Metadata

    @Test func metadataV1NullTopicsMeansAll() throws {
        try assertVector("ffffffff", version: 1, MetadataRequest(topics: nil))
    }

    @Test func metadataV4Request() throws {
        try assertVector("00000001 0001 61  00", version: 4,
                         MetadataRequest(topics: [.init(name: "a")], allowAutoTopicCreation: false))
    }

    @Test func metadataV10RequestByTopicId() throws {
        // v10: uuid then nullable compact name; IncludeClusterAuthorizedOperations exists only in v8-10.
        var m = MetadataRequest(topics: [.init(topicId: topicIdA, name: nil)])
        m.includeTopicAuthorizedOperations = true
        try assertVector("02 \(idA) 00 00  01 00 01  00", version: 10, m)
    }

    @Test func metadataV12Request() throws {
        try assertVector("02 \(String(repeating: "00", count: 16)) 02 61 00  01 00  00", version: 12,
                         MetadataRequest(topics: [.init(name: "a")]))
    }

    @Test func metadataV1Response() throws {
        let hexText = """
            00000001                                  brokers: 1
              00000001 0002 6231 00002384 ffff        node 1, "b1", 9092, rack null
            00000001                                  controller 1
            00000001                                  topics: 1
              0000 0001 74 00                         error 0, "t", not internal
              00000001                                partitions: 1
                0000 00000000 00000001                error 0, index 0, leader 1
                00000001 00000001                     replicas [1]
                00000001 00000001                     isr [1]
            """
        let p = MetadataResponse.Partition(errorCode: 0, partitionIndex: 0, leaderId: 1, leaderEpoch: -1,
                                           replicaNodes: [1], isrNodes: [1], offlineReplicas: [])
        let t = MetadataResponse.Topic(errorCode: 0, name: "t", topicId: .zero, isInternal: false, partitions: [p],
                                       topicAuthorizedOperations: Int32.min)
        let m = MetadataResponse(brokers: [BrokerEndpoint(nodeId: 1, host: "b1", port: 9092)], clusterId: nil,
                                 controllerId: 1, topics: [t])
        try assertVector(stripComments(hexText), version: 1, m)
    }

    static let metadataV12Body = """
        00000000                                  throttle
        02                                        brokers: 1
          00000001 03 6231 00002384 00 00         node 1, "b1", 9092, rack null, tags
        04 636964                                 cluster id "cid"
        00000001                                  controller 1
        02                                        topics: 1
          0000 02 74 \(idA) 00                    error 0, "t", topic id, not internal
          02                                      partitions: 1
            0000 00000000 00000001 00000005       error 0, index 0, leader 1, leader epoch 5
            03 00000001 00000002  02 00000002  01  00   replicas [1, 2], isr [2], offline [], tags
          80000000 00                             topic authorized operations, tags
        """

    static func metadataV12Expected() -> MetadataResponse {
        let p = MetadataResponse.Partition(errorCode: 0, partitionIndex: 0, leaderId: 1, leaderEpoch: 5,
                                           replicaNodes: [1, 2], isrNodes: [2], offlineReplicas: [])
        let t = MetadataResponse.Topic(errorCode: 0, name: "t", topicId: topicIdA, isInternal: false, partitions: [p],
                                       topicAuthorizedOperations: Int32.min)
        return MetadataResponse(brokers: [BrokerEndpoint(nodeId: 1, host: "b1", port: 9092)], clusterId: "cid",
                                controllerId: 1, topics: [t])
    }

    @Test func metadataV12Response() throws {
        try assertVector(stripComments(Self.metadataV12Body) + "00", version: 12, Self.metadataV12Expected())
    }

    @Test func metadataV13ResponseHasATopLevelErrorCode() throws {
        // KIP-1102: v13 appends ErrorCode (e.g. 129 REBOOTSTRAP_REQUIRED) before the tags.
        var m = Self.metadataV12Expected()
        m.errorCode = 129
        try assertVector(stripComments(Self.metadataV12Body) + "0081 00", version: 13, m)
    }

    // MARK: FindCoordinator

    @Test func findCoordinatorV0Response() throws {
        try assertVector("0000 00000001 0002 6231 00002384", version: 0,
                         FindCoordinatorResponse(endpoint: BrokerEndpoint(nodeId: 1, host: "b1", port: 9092)))
    }

    @Test func findCoordinatorV3RequestAndResponse() throws {
        try assertVector("02 67 01 00", version: 3, FindCoordinatorRequest(key: "g", keyType: 1))
        try assertVector("00000000 000f 05 6e6f7065 ffffffff 01 ffffffff 00", version: 3,
                         FindCoordinatorResponse(errorCode: 15, errorMessage: "nope",
                                                 endpoint: BrokerEndpoint(nodeId: -1, host: "", port: -1)))
    }

    @Test func findCoordinatorV4BatchedForm() throws {
        try assertVector("00 03 02 67 02 68 00", version: 4, FindCoordinatorRequest(keyType: 0, coordinatorKeys: ["g", "h"]))
        let hexText = """
            00000000                                  throttle
            02                                        coordinators: 1
              02 67 00000001 03 6231 00002384         "g", node 1, "b1", 9092
              0000 00 00                              error 0, message null, tags
            00
            """
        try assertVector(stripComments(hexText), version: 4, FindCoordinatorResponse(coordinators: [
            .init(key: "g", endpoint: BrokerEndpoint(nodeId: 1, host: "b1", port: 9092)),
        ]))
    }

    // MARK: DescribeCluster

    @Test func describeClusterV1() throws {
        try assertVector("01 01 00", version: 1, DescribeClusterRequest(includeClusterAuthorizedOperations: true, endpointType: 1))
        let hexText = """
            00000000 0000 00 02                       throttle, error, message null, endpoint type 2 (controller)
            04 636964 00000001                        cluster "cid", controller 1
            02 00000001 02 68 00002384 00 00          brokers: node 1 "h" 9092 rack null, tags
            80000000 00
            """
        try assertVector(stripComments(hexText), version: 1, DescribeClusterResponse(
            endpointType: 2, clusterId: "cid", controllerId: 1,
            brokers: [.init(endpoint: BrokerEndpoint(nodeId: 1, host: "h", port: 9092))]))
    }

    @Test func describeClusterV2IsFenced() throws {
        try assertVector("00 01 01 00", version: 2, DescribeClusterRequest(endpointType: 1, includeFencedBrokers: true))
        try assertVector("00000000 0000 00 01 04 636964 00000001 02 00000001 02 68 00002384 00 01 00 80000000 00", version: 2,
                         DescribeClusterResponse(clusterId: "cid", controllerId: 1,
                                                 brokers: [.init(endpoint: BrokerEndpoint(nodeId: 1, host: "h", port: 9092), isFenced: true)]))
    }

    // MARK: Produce

    @Test func produceV3Request() throws {
        let hexText = """
            ffff 0001 00007530                        transactional id null, acks 1, timeout 30000
            00000001 0001 74                          topics: "t"
            00000001 00000000 00000003 010203         partitions: 0, records 3 bytes
            """
        try assertVector(stripComments(hexText), version: 3, ProduceRequest(
            acks: 1, timeoutMs: 30000, topics: [.init(name: "t", partitions: [.init(index: 0, records: buf([1, 2, 3]))])]))
    }

    @Test func produceV9Request() throws {
        let hexText = """
            00 ffff 00001388                          transactional id null, acks -1, timeout 5000
            02 02 74                                  topics: "t"
            02 00000000 04 010203 00                  partitions: 0, records, tags
            00 00                                     topic tags, tags
            """
        try assertVector(stripComments(hexText), version: 9, ProduceRequest(
            acks: -1, timeoutMs: 5000, topics: [.init(name: "t", partitions: [.init(index: 0, records: buf([1, 2, 3]))])]))
    }

    @Test func produceV13RequestNamesTopicsById() throws {
        let hexText = "03 7478 0000 00001388  02 \(idA)  02 00000001 00 00  00 00"
        try assertVector(hexText, version: 13, ProduceRequest(
            transactionalId: "tx", acks: 0, timeoutMs: 5000,
            topics: [.init(name: "", topicId: topicIdA, partitions: [.init(index: 1, records: nil)])]))
    }

    @Test func produceV10ResponseWithNodeEndpoints() throws {
        let hexText = """
            02 02 74                                  topics: "t"
            02 00000000 0000 0000000000000064         partitions: 0, error 0, base offset 100
            ffffffffffffffff 0000000000000000         log append time -1, log start 0
            01 00 00                                  record errors [], error message null, tags
            00                                        topic tags
            00000000                                  throttle
            01 00 0d                                  tags: 1, tag 0 (NodeEndpoints), 13 bytes
              02 00000001 02 68 00002384 00 00        node 1, "h", 9092, rack null, tags
            """
        var p = ProduceResponse.PartitionResponse(index: 0, errorCode: 0, baseOffset: 100)
        p.logStartOffset = 0
        var m = ProduceResponse(topics: [.init(name: "t", partitions: [p])])
        m.nodeEndpoints = NodeEndpoints(endpoints: [BrokerEndpoint(nodeId: 1, host: "h", port: 9092)])
        try assertVector(stripComments(hexText), version: 10, m)
    }

    @Test func produceV0Response() throws {
        try assertVector("00000001 0001 74 00000001 00000002 0006 00000000000000ff", version: 0,
                         ProduceResponse(topics: [.init(name: "t", partitions: [.init(index: 2, errorCode: 6, baseOffset: 255)])]))
    }

    // MARK: Fetch

    @Test func fetchV4Request() throws {
        let hexText = """
            ffffffff 000001f4 00000001 7fffffff 01    replica -1, max wait 500, min bytes 1, max bytes, read_committed
            00000001 0001 74                          topics: "t"
            00000001 00000000 000000000000000a 00100000   partition 0, offset 10, max bytes 1 MiB
            """
        var m = FetchRequest(maxWaitMs: 500, minBytes: 1, topics: [.init(topic: "t", partitions: [
            .init(partition: 0, fetchOffset: 10, partitionMaxBytes: 1_048_576)])])
        m.isolationLevel = 1
        try assertVector(stripComments(hexText), version: 4, m)
    }

    @Test func fetchV15RequestHasNoReplicaIdAndNamesTopicsById() throws {
        let hexText = """
            000001f4 00000001 7fffffff 00             max wait, min bytes, max bytes, isolation
            00000000 ffffffff                         session 0, epoch -1
            02 \(idA)                                 topics: by id
            02 00000000 00000007 0000000000000001     partition 0, current leader epoch 7, offset 1
               00000006 0000000000000005 00010000 00  last fetched epoch 6, log start 5, max bytes, tags
            00                                        topic tags
            01 01 00                                  forgotten [], rack "", tags
            """
        var p = FetchRequest.Partition(partition: 0, fetchOffset: 1, partitionMaxBytes: 65536)
        p.currentLeaderEpoch = 7
        p.lastFetchedEpoch = 6
        p.logStartOffset = 5
        let m = FetchRequest(maxWaitMs: 500, minBytes: 1, topics: [.init(topic: "", topicId: topicIdA, partitions: [p])])
        try assertVector(stripComments(hexText), version: 15, m)
    }

    @Test func fetchV0Response() throws {
        try assertVector("00000001 0001 74 00000001 00000000 0000 0000000000000004 ffffffff", version: 0,
                         FetchResponse(topics: [.init(topic: "t", partitions: [
                            .init(partitionIndex: 0, errorCode: 0, highWatermark: 4, records: nil)])]))
    }

    @Test func fetchV16ResponseWithRecordsAndNodeEndpoints() throws {
        let hexText = """
            00000000 0000 00000000                    throttle, error, session
            02 \(idA)                                 topics: by id
            02 00000000 0000 0000000000000004         partition 0, error 0, high watermark 4
               0000000000000003 0000000000000000      last stable 3, log start 0
               00 ffffffff 03 aabb 00                 aborted null, preferred replica -1, records, tags
            00                                        topic tags
            01 00 0d 02 00000002 02 68 00002385 00 00 tags: NodeEndpoints [2 "h" 9093]
            """
        var p = FetchResponse.PartitionData(partitionIndex: 0, errorCode: 0, highWatermark: 4, records: buf([0xAA, 0xBB]))
        p.lastStableOffset = 3
        p.logStartOffset = 0
        var m = FetchResponse(topics: [.init(topic: "", topicId: topicIdA, partitions: [p])])
        m.nodeEndpoints = NodeEndpoints(endpoints: [BrokerEndpoint(nodeId: 2, host: "h", port: 9093)])
        try assertVector(stripComments(hexText), version: 16, m)
    }

    @Test func fetchV11ResponseWithAbortedTransactions() throws {
        let hexText = """
            00000000 0000 00000007                    throttle, error, session 7
            00000001 0001 74                          topics: "t"
            00000001 00000000 0000 0000000000000009   partition 0, error 0, high watermark 9
               0000000000000005 0000000000000000      last stable 5, log start 0
               00000001 0000000000000063 0000000000000006   aborted: producer 99 from offset 6
               00000002 00000000                      preferred replica 2, records (empty)
            """
        var p = FetchResponse.PartitionData(partitionIndex: 0, errorCode: 0, highWatermark: 9, records: ByteBuffer())
        p.lastStableOffset = 5
        p.logStartOffset = 0
        p.abortedTransactions = [.init(producerId: 99, firstOffset: 6)]
        p.preferredReadReplica = 2
        var m = FetchResponse(topics: [.init(topic: "t", partitions: [p])])
        m.sessionId = 7
        try assertVector(stripComments(hexText), version: 11, m)
    }

    // MARK: SASL

    @Test func saslHandshakeV1() throws {
        try assertVector("0005 504c41494e", version: 1, SaslHandshakeRequest(mechanism: "PLAIN"))
        try assertVector("0000 00000001 0005 504c41494e", version: 1, SaslHandshakeResponse(errorCode: 0, mechanisms: ["PLAIN"]))
    }

    @Test func saslAuthenticate() throws {
        try assertVector("00000002 0102", version: 0, SaslAuthenticateRequest(authBytes: buf([1, 2])))
        try assertVector("03 0102 00", version: 2, SaslAuthenticateRequest(authBytes: buf([1, 2])))
        try assertVector("0000 ffff 00000000 000000000036ee80", version: 1,
                         SaslAuthenticateResponse(errorCode: 0, errorMessage: nil, authBytes: ByteBuffer(), sessionLifetimeMs: 3_600_000))
        try assertVector("003a 03 6e6f 01 0000000000000000 00", version: 2,
                         SaslAuthenticateResponse(errorCode: 58, errorMessage: "no", authBytes: ByteBuffer()))
    }

    // MARK: acks, tags

    @Test(arguments: ProduceRequest.versions)
    func peekAcksAtEveryVersion(_ v: Int16) throws {
        for acks in [Int16(-1), 0, 1] {
            for txn in [nil, "transactional-id"] as [String?] {
                var m = Samples.produceRequest(v)
                m.acks = acks
                if v >= 3 { m.transactionalId = txn }
                let body = m.encoded(version: v)
                #expect(try ProduceRequest.peekAcks(body: body, version: v) == acks, "v\(v) acks \(acks)")
            }
        }
        #expect(wireError { try ProduceRequest.peekAcks(body: hexBuf("00"), version: v) }?.label == "truncated")
    }

    @Test func peekAcksReadsOnlyAFewBytes() throws {
        // Only the transactional id and acks need to be present.
        #expect(try ProduceRequest.peekAcks(body: hexBuf("0000"), version: 0) == 0)
        #expect(try ProduceRequest.peekAcks(body: hexBuf("ffff 0001"), version: 8) == 1)
        #expect(try ProduceRequest.peekAcks(body: hexBuf("03 6162 ffff"), version: 9) == -1)
    }

    @Test func unknownTaggedFieldsArePreservedAtEveryLevel() throws {
        // Metadata v12 request with tags on the topic and at the top level that this codec
        // does not know; they must come back byte for byte.
        let hexText = "02 \(idA) 02 61 02 00 01 ff 7b 03 010203  01 00  02 05 00 b960 02 cafe"
        let bytes = hexBuf(hexText)
        let m = try MetadataRequest(decoding: bytes, version: 12)
        #expect(m.topics?[0].unknownTags == tags([(0, [0xFF]), (123, [1, 2, 3])]))
        #expect(m.unknownTags == tags([(5, []), (12345, [0xCA, 0xFE])]))
        #expect(hex(m.encoded(version: 12)) == hex(bytes))
    }

    @Test func nodeEndpointsTagIsDecodedAndOtherTopLevelTagsKept() throws {
        // Fetch v16 response with top-level tags 0 (NodeEndpoints) and 1 (unknown).
        let hexText = "00000000 0000 00000000 01  02 00 0d 02 00000002 02 68 00002385 00 00 01 01 ee"
        let bytes = hexBuf(hexText)
        var m = try FetchResponse(decoding: bytes, version: 16)
        #expect(m.nodeEndpoints?.endpoints == [BrokerEndpoint(nodeId: 2, host: "h", port: 9093)])
        #expect(m.unknownTags == tags([(1, [0xEE])]))
        #expect(hex(m.encoded(version: 16)) == hex(bytes))
        // Rewriting an address (what the proxy does) changes only that tag.
        m.nodeEndpoints?.endpoints[0].host = "localhost"
        let rewritten = try FetchResponse(decoding: m.encoded(version: 16), version: 16)
        #expect(rewritten.nodeEndpoints?.endpoints[0].host == "localhost")
        #expect(rewritten.unknownTags == tags([(1, [0xEE])]))
    }

    @Test func nodeEndpointsWithTrailingBytesInTheTagAreRejected() {
        // The tag says 14 bytes but the struct ends after 13: the extra byte would be lost.
        let hexText = "00000000 0000 00000000 01  01 00 0e 02 00000002 02 68 00002385 00 00 ff"
        #expect(wireError { try FetchResponse(decoding: hexBuf(hexText), version: 16) }?.label == "trailingBytes")
    }

    @Test func produceV9KeepsTagZeroRawBecauseNodeEndpointsStartAtV10() throws {
        let hexText = "01 00000000 01 00 02 abcd"
        let m = try ProduceResponse(decoding: hexBuf(hexText), version: 9)
        #expect(m.nodeEndpoints == nil)
        #expect(m.unknownTags == tags([(0, [0xAB, 0xCD])]))
        #expect(hex(m.encoded(version: 9)) == hex(hexBuf(hexText)))
    }
}

/// Drops the prose after the hex on each line of a commented vector.
func stripComments(_ text: String) -> String {
    text.split(separator: "\n").map { line -> String in
        // Hex groups come first; a comment starts at the first word with a non-hex character.
        var kept: [Substring] = []
        for word in line.split(separator: " ", omittingEmptySubsequences: true) {
            if word.allSatisfy(\.isHexDigit) { kept.append(word) } else { break }
        }
        return kept.joined(separator: " ")
    }.joined(separator: " ")
}
