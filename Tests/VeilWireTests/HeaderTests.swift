import NIOCore
import Testing
@testable import VeilWire

@Suite("Headers")
struct HeaderTests {
    /// (api key, first flexible version or nil, max version) for every API in Apache Kafka's
    /// message definitions (`"flexibleVersions"` of each *Request.json), transcribed
    /// independently of `ApiKey.table` so a typo in either shows up here.
    static let flexibleFrom: [(Int16, Int16?)] = [
        (0, 9), (1, 12), (2, 6), (3, 9), (4, 4), (5, 2), (6, 6), (7, 3), (8, 8), (9, 6), (10, 3), (11, 6), (12, 4),
        (13, 4), (14, 4), (15, 5), (16, 3), (17, nil), (18, 3), (19, 5), (20, 4), (21, 2), (22, 2), (23, 4), (24, 3),
        (25, 3), (26, 3), (27, 1), (28, 3), (29, 2), (30, 2), (31, 2), (32, 4), (33, 2), (34, 2), (35, 2), (36, 2),
        (37, 2), (38, 2), (39, 2), (40, 2), (41, 2), (42, 2), (43, 2), (44, 1), (45, 0), (46, 0), (47, nil), (48, 1),
        (49, 1), (50, 0), (51, 0), (52, 0), (53, 1), (54, 1), (55, 0), (56, 0), (57, 0), (58, 0), (59, 0), (60, 0),
        (61, 0), (62, 0), (63, 0), (64, 0), (65, 0), (66, 0), (67, 0), (68, 0), (69, 0), (70, 0), (71, 0), (72, 0),
        (73, 0), (74, 0), (75, 0), (76, 0), (77, 0), (78, 0), (79, 0), (80, 0), (81, 0), (82, 0), (83, 0), (84, 0),
        (85, 0), (86, 0), (87, 0), (88, 0), (89, 0), (90, 0), (91, 0), (92, 0),
    ]

    @Test func flexibleVersionTableMatchesKafka() {
        #expect(ApiKey.table.count == Self.flexibleFrom.count)
        for (key, from) in Self.flexibleFrom {
            let api = ApiKey(rawValue: key)
            #expect(api.isKnown, "api key \(key)")
            #expect(ApiKey.table[key]?.flexibleFrom == from, "\(api.name)")
        }
    }

    @Test func headerVersionsAreDerivedFromTheTable() {
        for (key, from) in Self.flexibleFrom {
            let api = ApiKey(rawValue: key)
            for version in Int16(0)...20 {
                let flexible = from.map { version >= $0 } ?? false
                #expect(api.isFlexible(version) == flexible)
                let expectedRequest: Int16 = (key == 7 && version == 0) ? 0 : (flexible ? 2 : 1)
                let expectedResponse: Int16 = key == 18 ? 0 : (flexible ? 1 : 0)
                #expect(api.requestHeaderVersion(version) == expectedRequest, "\(api.name) v\(version) request")
                #expect(api.responseHeaderVersion(version) == expectedResponse, "\(api.name) v\(version) response")
            }
        }
    }

    @Test func headerVersionSpotChecks() {
        #expect(ApiKey.produce.requestHeaderVersion(8) == 1)
        #expect(ApiKey.produce.requestHeaderVersion(9) == 2)
        #expect(ApiKey.produce.responseHeaderVersion(8) == 0)
        #expect(ApiKey.produce.responseHeaderVersion(13) == 1)
        #expect(ApiKey.fetch.requestHeaderVersion(11) == 1)
        #expect(ApiKey.fetch.requestHeaderVersion(12) == 2)
        #expect(ApiKey.fetch.responseHeaderVersion(17) == 1)
        #expect(ApiKey.metadata.requestHeaderVersion(0) == 1)
        // ApiVersions: the request header follows the table; the response header is always v0.
        #expect(ApiKey.apiVersions.requestHeaderVersion(2) == 1)
        #expect(ApiKey.apiVersions.requestHeaderVersion(3) == 2)
        for v in Int16(0)...4 { #expect(ApiKey.apiVersions.responseHeaderVersion(v) == 0) }
        // ControlledShutdown v0 predates the client id.
        #expect(ApiKey.controlledShutdown.requestHeaderVersion(0) == 0)
        #expect(ApiKey.controlledShutdown.requestHeaderVersion(1) == 1)
        #expect(ApiKey.controlledShutdown.requestHeaderVersion(3) == 2)
        #expect(ApiKey.controlledShutdown.responseHeaderVersion(0) == 0)
        // SaslHandshake is never flexible.
        #expect(ApiKey.saslHandshake.requestHeaderVersion(1) == 1)
        #expect(ApiKey.saslAuthenticate.requestHeaderVersion(2) == 2)
        #expect(ApiKey.describeCluster.requestHeaderVersion(0) == 2)
        #expect(ApiKey.describeCluster.responseHeaderVersion(0) == 1)
        #expect(ApiKey.findCoordinator.requestHeaderVersion(2) == 1)
        #expect(ApiKey.findCoordinator.requestHeaderVersion(3) == 2)
    }

    @Test func unknownApisAreAssumedFlexible() {
        let future = ApiKey(rawValue: 500)
        #expect(!future.isKnown)
        #expect(future.name == "ApiKey(500)")
        #expect(future.requestHeaderVersion(0) == 2)
        #expect(future.responseHeaderVersion(0) == 1)
    }

    @Test func requestHeaderV1Bytes() throws {
        // Metadata v5, correlation 7, client id "ab".
        var b = hexBuf("0003 0005 00000007 0002 6162 ffff")
        let h = try RequestHeader.read(from: &b)
        #expect(h == RequestHeader(apiKey: .metadata, apiVersion: 5, correlationId: 7, clientId: "ab"))
        #expect(h.headerVersion == 1)
        #expect(hex(b) == "ffff")  // the body is left in place
        var out = ByteBuffer()
        h.write(to: &out)
        #expect(hex(out) == "00030005000000070002" + "6162")
    }

    @Test func requestHeaderV1NullClientId() throws {
        var b = hexBuf("0011 0001 00000001 ffff")
        let h = try RequestHeader.read(from: &b)
        #expect(h.apiKey == .saslHandshake)
        #expect(h.clientId == nil)
        var out = ByteBuffer()
        h.write(to: &out)
        #expect(hex(out) == "0011000100000001ffff")
    }

    @Test func requestHeaderV2KeepsAClassicClientIdAndReadsTags() throws {
        // Produce v9, correlation 258, client id "rdkafka" as an int16-length string, then
        // a tagged section holding one unknown tag.
        let encoding = "0000 0009 00000102 0007 72646b61666b61 01 03 02 abcd"
        var b = hexBuf(encoding + "ee")
        let h = try RequestHeader.read(from: &b)
        #expect(h.headerVersion == 2)
        #expect(h.clientId == "rdkafka")
        #expect(h.taggedFields == tags([(3, [0xAB, 0xCD])]))
        #expect(hex(b) == "ee")
        var out = ByteBuffer()
        h.write(to: &out)
        #expect(hex(out) == hex(hexBuf(encoding)))
    }

    @Test func controlledShutdownV0HeaderHasNoClientId() throws {
        var b = hexBuf("0007 0000 0000002a 00000001")
        let h = try RequestHeader.read(from: &b)
        #expect(h.headerVersion == 0)
        #expect(h.clientId == nil)
        #expect(h.correlationId == 42)
        #expect(hex(b) == "00000001")  // body: broker id 1
        var out = ByteBuffer()
        h.write(to: &out)
        #expect(hex(out) == "000700000000002a")
    }

    @Test func apiVersionsV3RequestUsesHeaderV2() throws {
        var b = hexBuf("0012 0003 00000001 0004 74657374 00")
        let h = try RequestHeader.read(from: &b)
        #expect(h.headerVersion == 2)
        #expect(h.clientId == "test")
        #expect(b.readableBytes == 0)
    }

    @Test func peekReadsFixedFieldsOfAnyHeaderVersion() {
        #expect(RequestHeader.peek(hexBuf("0001 000c 00000063 ffff 00"))! == (ApiKey.fetch, 12, 99))
        #expect(RequestHeader.peek(hexBuf("0001 000c 000000")) == nil)
    }

    @Test func truncatedRequestHeaderIsTyped() {
        for encoding in ["", "0003", "0003 0005 0000", "0003 0005 00000007 00", "0003 0005 00000007 0005 6162",
                         "0000 0009 00000001 ffff", "0000 0009 00000001 ffff 01 00"] {
            var b = hexBuf(encoding)
            #expect(wireError { try RequestHeader.read(from: &b) }?.label == "truncated", "\(encoding)")
        }
    }

    @Test(arguments: [Int16(0), 1, 2, 3, 4, 5, 8, 9, 12, 13])
    func requestHeaderRoundTripsAtEveryHeaderVersion(_ version: Int16) throws {
        for api in [ApiKey.produce, .fetch, .metadata, .apiVersions, .controlledShutdown, .saslHandshake, .describeCluster] {
            let hv = api.requestHeaderVersion(version)
            let h = RequestHeader(apiKey: api, apiVersion: version, correlationId: -12345,
                                  clientId: hv >= 1 ? "client-é" : nil,
                                  taggedFields: hv >= 2 ? tags([(0, [1, 2]), (9, [])]) : TaggedFields())
            var out = ByteBuffer()
            h.write(to: &out)
            out.writeBytes([0x5A])
            var again = out
            let decoded = try RequestHeader.read(from: &again)
            #expect(decoded == h, "\(api.name) v\(version)")
            #expect(again.bytes == [0x5A])
        }
    }

    @Test func responseHeaderV0AndV1() throws {
        var v0 = hexBuf("00000007 aa")
        #expect(try ResponseHeader.read(from: &v0, headerVersion: 0) == ResponseHeader(correlationId: 7))
        #expect(hex(v0) == "aa")

        var v1 = hexBuf("00000007 01 00 01 ff aa")
        let h = try ResponseHeader.read(from: &v1, headerVersion: 1)
        #expect(h.correlationId == 7)
        #expect(h.taggedFields == tags([(0, [0xFF])]))
        #expect(hex(v1) == "aa")

        var out0 = ByteBuffer()
        ResponseHeader(correlationId: -1).write(to: &out0, headerVersion: 0)
        #expect(hex(out0) == "ffffffff")
        var out1 = ByteBuffer()
        h.write(to: &out1, headerVersion: 1)
        #expect(hex(out1) == "00000007010001ff")
        var empty1 = ByteBuffer()
        ResponseHeader(correlationId: 1).write(to: &empty1, headerVersion: 1)
        #expect(hex(empty1) == "0000000100")
    }

    @Test func truncatedResponseHeaderIsTyped() {
        var b = hexBuf("000000")
        #expect(wireError { try ResponseHeader.read(from: &b, headerVersion: 0) }?.label == "truncated")
        var c = hexBuf("00000001")
        #expect(wireError { try ResponseHeader.read(from: &c, headerVersion: 1) }?.label == "truncated")
    }
}
