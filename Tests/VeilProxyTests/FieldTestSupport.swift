import Foundation
import Logging
import NIOCore
import NIOPosix
import Testing
import VeilConfig
import VeilKMS
import VeilWire

@testable import VeilProxy

/// Key-encryption keys shared by the test "governance": finance and sales own one each.
enum TestKeys {
    static let finance = SymmetricSecret(copying: (0..<32).map { UInt8($0) })
    static let sales = SymmetricSecret(copying: (0..<32).map { UInt8(100 + $0) })

    /// What an identity holding these grants can ask its KMS for.
    static func kms(finance: Bool, sales: Bool) -> KMSRegistry {
        KMSRegistry([
            "finance": LocalKeyring(identity: "t", keys: finance ? ["pii": Self.finance] : [:]),
            "sales": LocalKeyring(identity: "t", keys: sales ? ["pii": Self.sales] : [:]),
        ])
    }
}

/// A record as an application writes or reads it.
struct AppRecord: Equatable, CustomStringConvertible {
    var key: [UInt8]?
    var value: [UInt8]?
    var headers: [(String, [UInt8]?)] = []

    init(key: String? = nil, value: String?, headers: [(String, String?)] = []) {
        self.key = key.map { Array($0.utf8) }
        self.value = value.map { Array($0.utf8) }
        self.headers = headers.map { ($0.0, $0.1.map { Array($0.utf8) }) }
    }

    init(_ record: Record) {
        key = record.key.map { Array($0.readableBytesView) }
        value = record.value.map { Array($0.readableBytesView) }
        headers = record.headers.map { ($0.key, $0.value.map { Array($0.readableBytesView) }) }
    }

    var valueText: String? { value.map { String(decoding: $0, as: UTF8.self) } }
    var keyText: String? { key.map { String(decoding: $0, as: UTF8.self) } }
    func header(_ name: String) -> [UInt8]?? { headers.last { $0.0 == name }.map(\.1) }

    static func == (a: AppRecord, b: AppRecord) -> Bool {
        a.key == b.key && a.value == b.value && a.headers.map(\.0) == b.headers.map(\.0) && a.headers.map(\.1) == b.headers.map(\.1)
    }

    var description: String {
        "key=\(keyText ?? "nil") value=\(valueText ?? "nil") headers=\(headers.map { "\($0.0)=\($0.1.map { String(decoding: $0, as: UTF8.self) } ?? "nil")" })"
    }
}

/// One sidecar's record filter, driven directly with Produce requests and Fetch responses.
struct Sidecar {
    let filter: RecordEncryption

    init(_ yaml: String, finance: Bool = false, sales: Bool = false) throws {
        let configuration = try VeilConfiguration.parse(yaml: yaml)
        filter = try RecordEncryption(
            configuration: configuration, kms: TestKeys.kms(finance: finance, sales: sales), logger: Logger(label: "test"))
    }

    var loop: EventLoop { MultiThreadedEventLoopGroup.singleton.next() }

    enum Produced {
        case stored(ByteBuffer)
        case rejected(code: Int16, message: String)
    }

    /// Produces `records` as one batch to partition 0 of `topic`; returns what would reach the broker.
    func produce(_ records: [AppRecord], topic: String) async throws -> Produced {
        let batch = Self.batch(records)
        let request = ProduceRequest(
            acks: -1, timeoutMs: 1000, topics: [.init(name: topic, partitions: [.init(index: 0, records: batch)])])
        switch try await filter.filterProduce(request, version: 9, on: loop).get() {
        case .unchanged:
            return .stored(batch)
        case .forward(let forwarded, let rejected):
            if let r = rejected.first { return .rejected(code: r.errorCode, message: r.message) }
            return .stored(try #require(forwarded.topics.first?.partitions.first?.records))
        case .respond(let response):
            let p = try #require(response.topics.first?.partitions.first)
            return .rejected(code: p.errorCode, message: p.errorMessage ?? "")
        }
    }

    /// Produces and requires success.
    func store(_ records: [AppRecord], topic: String) async throws -> ByteBuffer {
        switch try await produce(records, topic: topic) {
        case .stored(let bytes): return bytes
        case .rejected(let code, let message):
            throw TestError("produce rejected (\(code)): \(message)")
        }
    }

    /// Fetches `stored` from partition 0 of `topic` through this sidecar.
    func fetch(_ stored: ByteBuffer, topic: String) async throws -> (records: [AppRecord], errorCode: Int16) {
        let response = FetchResponse(topics: [
            .init(topic: topic, partitions: [.init(partitionIndex: 0, errorCode: 0, highWatermark: 100, records: stored)])
        ])
        let request = FetchRequest(maxWaitMs: 0, minBytes: 0, topics: [])
        let filtered = try await filter.filterFetch(response, request: request, version: 12, on: loop).get() ?? response
        let partition = try #require(filtered.topics.first?.partitions.first)
        return (Self.records(partition.records ?? ByteBuffer()), partition.errorCode)
    }

    static func batch(_ records: [AppRecord]) -> ByteBuffer {
        let wire = records.enumerated().map { i, r in
            Record(
                timestampDelta: 0, offsetDelta: Int32(i), key: r.key.map { ByteBuffer(bytes: $0) },
                value: r.value.map { ByteBuffer(bytes: $0) },
                headers: r.headers.map { RecordHeader(key: $0.0, value: $0.1.map { ByteBuffer(bytes: $0) }) })
        }
        let batch = RecordBatch(lastOffsetDelta: Int32(records.count - 1), baseTimestamp: 1, maxTimestamp: 1, records: wire)
        return try! batch.encoded()
    }

    static func records(_ bytes: ByteBuffer) -> [AppRecord] {
        guard bytes.readableBytes > 0 else { return [] }
        var out: [AppRecord] = []
        for entry in try! RecordSet.split(bytes) {
            guard case .batch(let b) = entry else { continue }
            out += try! RecordBatch(decoding: b).records.map(AppRecord.init)
        }
        return out
    }

    /// Rewrites the stored batch's records (tampering, as an attacker with broker access would).
    static func rewrite(_ stored: ByteBuffer, _ edit: (inout [AppRecord]) -> Void) -> ByteBuffer {
        var records = Self.records(stored)
        edit(&records)
        return batch(records)
    }
}

/// Sidecar configurations: an owner that encrypts, and consumers with given grants and rule.
enum Configs {
    static let header = """
        upstream: 127.0.0.1:9
        kms:
          finance: { type: local, keyring: finance.keyring }
          sales: { type: local, keyring: sales.keyring }

        """

    static func owner(topic: String = "customers", encrypt: String) -> String {
        header + """
            identity: owner
            grants:
              encrypt: [finance/pii, sales/pii]
            topics:
              - match: \(topic)
                encrypt:
            \(encrypt.split(separator: "\n", omittingEmptySubsequences: false).map { "      " + $0 }.joined(separator: "\n"))
            """
    }

    static func consumer(_ identity: String, decrypt: [String], rule: String, topic: String = "customers", extra: String = "") -> String {
        header + """
            identity: \(identity)
            grants:
              decrypt: [\(decrypt.joined(separator: ", "))]
            topics:
              - match: \(topic)
                on_denied_field: \(rule)
            \(extra)
            """
    }
}

func json(_ text: String?) -> Any? {
    guard let text else { return nil }
    return try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
}

func contains(_ haystack: [UInt8]?, _ needle: String) -> Bool {
    guard let haystack else { return false }
    let n = Array(needle.utf8)
    guard !n.isEmpty, haystack.count >= n.count else { return false }
    for i in 0...(haystack.count - n.count) where haystack[i] == n[0] && Array(haystack[i..<(i + n.count)]) == n { return true }
    return false
}
