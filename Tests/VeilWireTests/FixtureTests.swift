import Foundation
import NIOCore
import Testing
import VeilCompression
@testable import VeilWire

/// `Fixtures/manifest.json`: frames captured between real clients (confluent-kafka,
/// kafka-python, aiokafka) and a Tansu broker by `scripts/capture_fixtures.py` on the
/// interop branch. Each `.bin` file is one frame without its size prefix.
struct FixtureManifest: Decodable, Sendable {
    struct Header: Decodable, Sendable {
        let key: String
        let value: String?
    }

    struct ExpectedRecord: Decodable, Sendable {
        let key: String?
        let value: String?
        let headers: [Header]
    }

    /// A transaction marker in a Fetch response (txn fixtures).
    struct ControlRecord: Decodable, Sendable {
        let offset: Int64
        let type: String
    }

    struct RecordSetRecords: Decodable, Sendable {
        let topics: [String]
        let records: [ExpectedRecord]
    }

    struct Fixture: Decodable, Sendable, CustomTestStringConvertible {
        let file: String
        let client: String
        let direction: String
        let apiKey: Int16
        let apiVersion: Int16
        let correlationId: Int32
        let codec: String?
        let size: Int
        let topic: String?
        let partition: Int32?
        let recordSet: String?
        let recordsStart: Int?
        let recordsCount: Int?
        let batches: Int?
        let producerId: Int64?
        let highWatermark: Int64?
        let topicId: String?
        let baseOffset: Int64?
        let transactional: Bool?
        let controlRecords: [ControlRecord]?

        var testDescription: String { file }
        var isRequest: Bool { direction == "request" }
        /// Produce requests and Fetch responses carry record batches.
        var carriesRecords: Bool { recordSet != nil }
        var compression: CompressionCodec? {
            switch codec {
            case "none": CompressionCodec.none
            case "gzip": .gzip
            case "snappy": .snappy
            case "lz4": .lz4
            case "zstd": .zstd
            default: nil
            }
        }
    }

    let recordSets: [String: RecordSetRecords]
    let fixtures: [Fixture]

    static let directory: URL = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!

    static let shared: FixtureManifest = {
        let data = try! Data(contentsOf: directory.appendingPathComponent("manifest.json"))
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try! decoder.decode(FixtureManifest.self, from: data)
    }()

    static var all: [Fixture] { shared.fixtures }

    static func frame(_ f: Fixture) throws -> ByteBuffer {
        ByteBuffer(bytes: try Data(contentsOf: directory.appendingPathComponent(f.file)))
    }

    static func expectedRecords(_ f: Fixture) -> [ExpectedRecord] {
        guard let name = f.recordSet, let set = shared.recordSets[name], let start = f.recordsStart, let count = f.recordsCount
        else { return [] }
        return Array(set.records[start..<(start + count)])
    }
}

extension KafkaUUID {
    init?(hex text: String) {
        let b = hexBytes(text)
        guard b.count == 16 else { return nil }
        self.init(high: b[0..<8].reduce(0) { $0 << 8 | UInt64($1) }, low: b[8..<16].reduce(0) { $0 << 8 | UInt64($1) })
    }
}

/// Decodes a body and requires its re-encoding to be byte for byte the original: the
/// message encodings are canonical (the records field is carried as opaque bytes).
@discardableResult
func decodeCanonical<M: KafkaMessage>(_: M.Type, _ body: ByteBuffer, _ version: Int16,
                                      sourceLocation: SourceLocation = #_sourceLocation) throws -> M {
    let m = try M(decoding: body, version: version)
    #expect(hex(m.encoded(version: version)) == hex(body), "\(M.self) v\(version) re-encoding", sourceLocation: sourceLocation)
    return m
}

enum FixtureCheck {
    /// The records field of the fixture's topic-partition, after checking the frame, its
    /// header and its body. Returns nil for fixtures that carry no records.
    static func frameHeaderAndBody(_ f: FixtureManifest.Fixture) throws -> ByteBuffer? {
        let frame = try FixtureManifest.frame(f)
        #expect(frame.readableBytes == f.size)

        // The frame as it arrives on a socket: size prefix, then the frame.
        var stream = ByteBuffer()
        FrameParser.write(frame, to: &stream)
        #expect(try FrameParser().next(from: &stream) == frame)
        #expect(stream.readableBytes == 0)

        let api = ApiKey(rawValue: f.apiKey)
        var body = frame
        if f.isRequest {
            let header = try RequestHeader.read(from: &body)
            #expect(header.apiKey == api)
            #expect(header.apiVersion == f.apiVersion)
            #expect(header.correlationId == f.correlationId)
            #expect(RequestHeader.peek(frame)! == (api, f.apiVersion, f.correlationId))
            var again = ByteBuffer()
            header.write(to: &again)
            #expect(again == frame.getSlice(at: frame.readerIndex, length: frame.readableBytes - body.readableBytes))
        } else {
            // A response's api key and version come from the request it answers.
            let headerVersion = api.responseHeaderVersion(f.apiVersion)
            let header = try ResponseHeader.read(from: &body, headerVersion: headerVersion)
            #expect(header.correlationId == f.correlationId)
            var again = ByteBuffer()
            header.write(to: &again, headerVersion: headerVersion)
            #expect(again == frame.getSlice(at: frame.readerIndex, length: frame.readableBytes - body.readableBytes))
        }

        let v = f.apiVersion
        switch (api, f.isRequest) {
        case (.apiVersions, true):
            try decodeCanonical(ApiVersionsRequest.self, body, v)
        case (.apiVersions, false):
            let (response, version) = try ApiVersionsResponse.decode(body, requestedVersion: v)
            #expect(response.errorCode == 0)
            #expect(response.apiKeys.contains { $0.apiKey == ApiKey.produce.rawValue })
            #expect(hex(response.encoded(version: version)) == hex(body))
        case (.metadata, true):
            try decodeCanonical(MetadataRequest.self, body, v)
        case (.metadata, false):
            let m = try decodeCanonical(MetadataResponse.self, body, v)
            #expect(!m.brokers.isEmpty)
        case (.findCoordinator, true):
            try decodeCanonical(FindCoordinatorRequest.self, body, v)
        case (.findCoordinator, false):
            let m = try decodeCanonical(FindCoordinatorResponse.self, body, v)
            #expect(v >= 4 ? m.coordinators.first?.endpoint.port ?? 0 > 0 : m.endpoint.port > 0)
        case (.describeCluster, true):
            try decodeCanonical(DescribeClusterRequest.self, body, v)
        case (.describeCluster, false):
            try decodeCanonical(DescribeClusterResponse.self, body, v)
        case (.saslHandshake, true):
            try decodeCanonical(SaslHandshakeRequest.self, body, v)
        case (.saslHandshake, false):
            try decodeCanonical(SaslHandshakeResponse.self, body, v)
        case (.saslAuthenticate, true):
            try decodeCanonical(SaslAuthenticateRequest.self, body, v)
        case (.saslAuthenticate, false):
            try decodeCanonical(SaslAuthenticateResponse.self, body, v)
        case (.produce, true):
            let m = try decodeCanonical(ProduceRequest.self, body, v)
            #expect(try ProduceRequest.peekAcks(body: body, version: v) == m.acks)
            let topic = try #require(m.topics.first { $0.name == f.topic })
            let partition = try #require(topic.partitions.first { $0.index == f.partition })
            let records: ByteBuffer = try #require(partition.records)
            return records
        case (.produce, false):
            let m = try decodeCanonical(ProduceResponse.self, body, v)
            let partition = try #require(m.topics.first { $0.name == f.topic }?.partitions.first { $0.index == f.partition })
            #expect(partition.errorCode == 0)
            #expect(partition.baseOffset == f.baseOffset)
        case (.fetch, true):
            try decodeCanonical(FetchRequest.self, body, v)
        case (.fetch, false):
            let m = try decodeCanonical(FetchResponse.self, body, v)
            #expect(m.errorCode == 0)
            let topic: FetchResponse.TopicResponse
            if v >= 13 {
                let id = try #require(f.topicId.flatMap { KafkaUUID(hex: $0) })
                topic = try #require(m.topics.first { $0.topicId == id })
            } else {
                topic = try #require(m.topics.first { $0.topic == f.topic })
            }
            let partition = try #require(topic.partitions.first { $0.partitionIndex == f.partition })
            #expect(partition.errorCode == 0)
            #expect(partition.highWatermark == f.highWatermark)
            let records: ByteBuffer = try #require(partition.records)
            return records
        default:
            // An API Veil does not model stays an opaque frame; its header was checked above.
            #expect(!api.isKnown || ![ApiKey.produce, .fetch, .metadata, .findCoordinator, .apiVersions,
                                      .saslHandshake, .saslAuthenticate, .describeCluster].contains(api))
        }
        return nil
    }

    /// Splits the records, verifies every CRC, checks the codec and producer id from the
    /// batch header (of data batches; control batches are never compressed). Returns the
    /// batches' bytes.
    static func recordSet(_ f: FixtureManifest.Fixture, _ records: ByteBuffer) throws -> [ByteBuffer] {
        let entries = try RecordSet.split(records)
        var batches: [ByteBuffer] = []
        for entry in entries {
            guard case .batch(let bytes) = entry else {
                Issue.record("\(f.file): unexpected record set entry \(entry)")
                continue
            }
            batches.append(bytes)
        }
        #expect(batches.count == f.batches)
        var joined = ByteBuffer()
        for e in entries { joined.writeImmutableBuffer(e.bytes) }
        #expect(joined == records)
        for bytes in batches {
            #expect(RecordBatch.peekMagic(bytes) == 2)
            try RecordBatch.verifyCRC(bytes)
            let attributes = bytes.getInteger(at: bytes.readerIndex + RecordBatch.attributesOffset, as: Int16.self)!
            let isControl = attributes & 0x20 != 0
            #expect(CompressionCodec(rawValue: UInt8(attributes & 7)) == (isControl ? CompressionCodec.none : f.compression))
            let transactional = (f.transactional ?? false) || f.controlRecords != nil
            #expect((attributes & 0x10 != 0) == transactional, "\(f.file): transactional bit")
            if let producerId = f.producerId {
                #expect(bytes.getInteger(at: bytes.readerIndex + 43, as: Int64.self) == producerId)
            }
        }
        return batches
    }

    /// Decodes the batches, compares their records (and transaction markers) with the
    /// manifest's, and re-encodes them: byte for byte when uncompressed; to the same
    /// records when compressed. With `dataBatches: false` only control batches (never
    /// compressed) are decoded.
    static func batchesAndRecords(_ f: FixtureManifest.Fixture, _ batches: [ByteBuffer], dataBatches: Bool = true) throws {
        var decoded: [Record] = []
        var markers: [(offset: Int64, type: String)] = []
        for bytes in batches {
            let isControl = bytes.getInteger(at: bytes.readerIndex + RecordBatch.attributesOffset, as: Int16.self)! & 0x20 != 0
            if !isControl && !dataBatches { continue }
            let batch = try RecordBatch(decoding: bytes)
            if batch.isControl {
                // A control record's key is (version int16, type int16): 0 abort, 1 commit.
                #expect(batch.isTransactional)
                for r in batch.records {
                    let key = try #require(r.key)
                    #expect(key.readableBytes == 4)
                    let type = key.getInteger(at: key.readerIndex + 2, as: Int16.self)
                    markers.append((batch.baseOffset + Int64(r.offsetDelta), type == 1 ? "commit" : type == 0 ? "abort" : "?"))
                }
                #expect(hex(try batch.encoded()) == hex(bytes), "\(f.file): control batch re-encoding")
                continue
            }
            #expect(batch.compression == f.compression)
            decoded += batch.records
            if batch.compression == .none {
                #expect(hex(try batch.encoded()) == hex(bytes), "\(f.file): batch re-encoding")
            } else {
                let recompressed = try RecordBatch(decoding: try batch.encoded())
                #expect(recompressed == batch, "\(f.file): recompressed batch")
                var plain = batch
                plain.compression = .none
                let uncompressed = try RecordBatch(decoding: try plain.encoded())
                #expect(uncompressed.records == batch.records)
                #expect(uncompressed.compression == CompressionCodec.none)
            }
        }
        let expectedMarkers = f.controlRecords ?? []
        #expect(markers.map(\.offset) == expectedMarkers.map(\.offset), "\(f.file): control record offsets")
        #expect(markers.map(\.type) == expectedMarkers.map(\.type), "\(f.file): control record types")
        guard dataBatches else { return }
        let expected = FixtureManifest.expectedRecords(f)
        #expect(decoded.count == expected.count, "\(f.file): record count")
        for (i, (got, want)) in zip(decoded, expected).enumerated() {
            #expect(got.key.map(hex) == want.key, "\(f.file) record \(i) key")
            #expect(got.value.map(hex) == want.value, "\(f.file) record \(i) value")
            #expect(got.headers.map(\.key) == want.headers.map(\.key), "\(f.file) record \(i) header keys")
            #expect(got.headers.map { $0.value.map(hex) } == want.headers.map(\.value), "\(f.file) record \(i) header values")
            #expect(got.offsetDelta == Int32(i) || batches.count > 1, "\(f.file) record \(i) offset delta")
        }
    }

    /// Every step, for fixtures with batches compressed with `codec`.
    static func compressedFixtures(_ codec: CompressionCodec) throws {
        let fixtures = FixtureManifest.all.filter { $0.carriesRecords && $0.compression == codec }
        #expect(fixtures.count >= 5, "fixtures for \(codec)")
        for f in fixtures {
            let records = try #require(try frameHeaderAndBody(f))
            try batchesAndRecords(f, try recordSet(f, records))
        }
    }
}

@Suite("Fixtures from real clients")
struct FixtureTests {
    @Test func manifestCoversEveryClientCodecAndDirection() throws {
        let all = FixtureManifest.all
        #expect(all.count >= 120)
        for client in ["confluent", "kafkapython", "aiokafka"] {
            for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
                #expect(all.contains { $0.client == client && $0.apiKey == 0 && $0.isRequest && $0.codec == codec }, "\(client) produce \(codec)")
                #expect(all.contains { $0.client == client && $0.apiKey == 1 && !$0.isRequest && $0.codec == codec }, "\(client) fetch \(codec)")
            }
        }
        // Every frame file on disk is in the manifest.
        var onDisk: Set<String> = []
        for client in ["confluent", "kafkapython", "aiokafka"] {
            let dir = FixtureManifest.directory.appendingPathComponent(client)
            for name in try FileManager.default.contentsOfDirectory(atPath: dir.path) where name.hasSuffix(".bin") {
                onDisk.insert("\(client)/\(name)")
            }
        }
        #expect(onDisk == Set(all.map(\.file)))
    }

    /// Frame, header, message decode and canonical re-encoding of every fixture; record
    /// set split and CRC of every batch, compressed or not; batch decode, record contents
    /// and byte-exact batch re-encoding of every uncompressed batch. Compressed batches
    /// are decoded by the `compressedBatch_<codec>` tests.
    @Test(arguments: FixtureManifest.all)
    func fixture(_ f: FixtureManifest.Fixture) throws {
        guard let records = try FixtureCheck.frameHeaderAndBody(f) else { return }
        let batches = try FixtureCheck.recordSet(f, records)
        // Compressed data batches are left to compressedBatch_<codec>; control batches
        // (transaction markers) are uncompressed and decoded here whatever the codec.
        try FixtureCheck.batchesAndRecords(f, batches, dataBatches: f.compression == CompressionCodec.none)
    }

    @Test func bulkFixtureIsAboutFiftyKiB() throws {
        let f = try #require(FixtureManifest.all.first { $0.file == "confluent/confluent-produce-v10-none-bulk-request.bin" })
        let records = try #require(try FixtureCheck.frameHeaderAndBody(f))
        let batches = try FixtureCheck.recordSet(f, records)
        let batch = try RecordBatch(decoding: batches[0])
        #expect(batch.records.count == 50)
        #expect(records.readableBytes > 50_000)
    }
}
