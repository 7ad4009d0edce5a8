// veil-field-bench: what field-level encryption costs per record, next to whole-value
// encryption, through the real record filters.
//
//   swift run -c release veil-field-bench [--seconds S] [--records N] [--case NAME-PREFIX]
//
// Each case runs RecordEncryption.filterProduce on a Produce request of N records of about
// 1 KiB (a customer event: id, name, e-mail, IBAN, card, a ~800-byte "data" field), then
// RecordEncryption.filterFetch on what would be stored, once as a reader holding every grant
// and once as a reader holding none (denied fields become null). Times include decoding and
// re-encoding the record batch, as in the proxy; keys are cached (steady state, no KMS calls).
// Times are the calling thread's CPU time (the filters run on it once keys are cached), so
// other processes on a shared machine disturb them less than wall-clock time.
// Output: one JSON line per case and direction, then a table.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import NIOCore
import NIOPosix
import VeilConfig
import VeilKMS
import VeilProxy
import VeilBenchSupport
import VeilWire

struct Options {
    var seconds = 2.0
    var records = 512
    var only: String?
}

var options = Options()
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let arg = arguments.next() {
    switch arg {
    case "--seconds": options.seconds = Double(arguments.next() ?? "") ?? options.seconds
    case "--records": options.records = Int(arguments.next() ?? "") ?? options.records
    case "--case": options.only = arguments.next()
    default:
        print("usage: veil-field-bench [--seconds S] [--records N] [--case NAME-PREFIX]")
        exit(2)
    }
}

let topic = "customer-events"

func makeBatch(count: Int) -> ByteBuffer {
    var state: UInt64 = 0x5EED
    func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    let hex = Array("0123456789abcdef".utf8)
    let records = (0..<count).map { i -> Record in
        var data = ""
        while data.utf8.count < 800 { data += String(decoding: (0..<16).map { hex[Int((next() >> UInt64($0 * 4)) & 0xF)] }, as: UTF8.self) }
        let value = """
            {"id": \(i), "department": "\(["finance", "sales"][i % 2])", "customer": {"name": "Customer \(i)", "email": "c\(i)@example.com"}, \
            "payment": {"iban": "DE4450010517540732\(1000 + i % 9000)", "amount": \(i % 977).50}, \
            "items": [{"sku": "A\(i % 13)", "card": "4111 1111 1111 \(1000 + i % 9000)"}], "data": "\(data)"}
            """
        return Record(timestampDelta: Int64(i), offsetDelta: Int32(i), key: ByteBuffer(string: "cust-\(i)"),
                      value: ByteBuffer(string: value), headers: [RecordHeader(key: "ssn", value: ByteBuffer(string: "123-45-\(i % 10000)"))])
    }
    let batch = RecordBatch(lastOffsetDelta: Int32(count - 1), baseTimestamp: 1, maxTimestamp: 1, records: records)
    return try! batch.encoded()
}

let header = """
    upstream: 127.0.0.1:9
    kms: { finance: { type: local, keyring: unused }, sales: { type: local, keyring: unused } }

    """

let cases: [(name: String, encrypt: String)] = [
    ("whole value", "key_from: { fixed: finance/pii }"),
    ("1 field (data, 800 B)", "fields: [ { path: data, key: finance/pii } ]"),
    ("3 small fields", "fields: [ { path: customer.email, key: sales/pii }, { path: payment.iban, key: finance/pii }, { path: 'items[*].card', key: finance/pii } ]"),
    ("3 fields + header + key", "fields: [ { path: customer.email, key: sales/pii }, { path: payment.iban, key: finance/pii }, { path: 'items[*].card', key: finance/pii } ]\n      headers: [ { name: ssn, key: finance/pii } ]\n      record_key: finance/pii"),
]

let kek1 = SymmetricSecret(copying: (0..<32).map { UInt8($0) })
let kek2 = SymmetricSecret(copying: (0..<32).map { UInt8(200 - $0) })
func kms(_ grants: Bool) -> KMSRegistry {
    KMSRegistry([
        "finance": LocalKeyring(identity: "b", keys: grants ? ["pii": kek1] : [:]),
        "sales": LocalKeyring(identity: "b", keys: grants ? ["pii": kek2] : [:]),
    ])
}

func filter(_ yaml: String, grants: Bool) -> RecordEncryption {
    var logger = Logger(label: "bench")
    logger.logLevel = .error
    return try! RecordEncryption(configuration: try! VeilConfiguration.parse(yaml: header + yaml), kms: kms(grants), logger: logger)
}

/// The best round's CPU nanoseconds per call of `body` (see ``ThreadCPUClock``).
func measure(seconds: Double, _ body: () -> Void) -> Double {
    ThreadCPUClock.bestSecondsPerCall(over: seconds, body) * 1e9
}

// As `veil run` does: keep freed buffers mapped, so each call does not fault pages in again.
AllocatorTuning.keepBuffersMapped()
let loop = MultiThreadedEventLoopGroup.singleton.next()
let batch = makeBatch(count: options.records)
let recordBytes = batch.readableBytes / options.records
var rows: [(String, Double, Double, Double, Int)] = []
for (name, encrypt) in cases where options.only.map({ name.hasPrefix($0) }) ?? true {
    let owner = filter("identity: owner\ngrants: { encrypt: [finance/pii, sales/pii] }\ntopics:\n  - match: \(topic)\n    encrypt:\n      \(encrypt)\n", grants: true)
    let reader = filter("identity: reader\ngrants: { decrypt: [finance/pii, sales/pii] }\ntopics:\n  - { match: \(topic), on_denied_field: \"null\", on_denied: redact }\n", grants: true)
    let stranger = filter("identity: stranger\ntopics:\n  - { match: \(topic), on_denied_field: \"null\", on_denied: redact }\n", grants: false)
    let request = ProduceRequest(acks: -1, timeoutMs: 1000, topics: [.init(name: topic, partitions: [.init(index: 0, records: batch)])])
    var stored = ByteBuffer()
    let produceNs = measure(seconds: options.seconds) {
        guard case .forward(let out, _) = try! owner.filterProduce(request, version: 9, on: loop).wait() else { fatalError("not encrypted") }
        stored = out.topics[0].partitions[0].records!
    }
    let response = FetchResponse(topics: [.init(topic: topic, partitions: [.init(partitionIndex: 0, errorCode: 0, highWatermark: 1, records: stored)])])
    let fetchRequest = FetchRequest(maxWaitMs: 0, minBytes: 0, topics: [])
    let readNs = measure(seconds: options.seconds) { _ = try! reader.filterFetch(response, request: fetchRequest, version: 12, on: loop).wait() }
    let deniedNs = measure(seconds: options.seconds) { _ = try! stranger.filterFetch(response, request: fetchRequest, version: 12, on: loop).wait() }
    let perRecord = (produceNs / Double(options.records), readNs / Double(options.records), deniedNs / Double(options.records))
    let storedBytes = stored.readableBytes / options.records
    print("{\"case\": \"\(name)\", \"record_bytes\": \(recordBytes), \"stored_bytes\": \(storedBytes), \"produce_ns_per_record\": \(Int(perRecord.0)), \"fetch_authorized_ns_per_record\": \(Int(perRecord.1)), \"fetch_denied_ns_per_record\": \(Int(perRecord.2))}")
    rows.append((name, perRecord.0, perRecord.1, perRecord.2, storedBytes))
}
print("")
print("CPU time per record (\(options.records) records of \(recordBytes) B per batch, filter only, best of 5 rounds):")
print("case                             produce   fetch (all grants)    fetch (no grants)   stored bytes")
for (name, p, r, d, s) in rows {
    func f(_ ns: Double) -> String {
        let digits = String(Int(ns))
        return String(repeating: " ", count: max(0, 8 - digits.count)) + digits + " ns"
    }
    let label = name + String(repeating: " ", count: max(0, 26 - name.count))
    let columns: [String] = [f(p), f(r), f(d)]
    print(label + "  " + columns.joined(separator: "          ") + "        " + String(s))
}
