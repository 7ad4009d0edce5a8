// veil-wire-bench: decode and re-encode a 1 MiB Produce request of 1 KiB records, per codec.
//
//   swift run -c release veil-wire-bench [--seconds S] [--records N] [--value-bytes B]
//
// One iteration is what the proxy does to a Produce request on its way upstream:
// frame parse → request header → ProduceRequest body → RecordSet.split → RecordBatch
// decode (CRC check, decompression, records) → RecordBatch encode (compression, CRC) →
// ProduceRequest with the new records → request header + body → size-prefixed frame.
// Throughput is reported over the uncompressed record bytes (the 1 MiB) and over the
// bytes on the wire. Codecs the linked VeilCompression cannot do are skipped, with the
// reason.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import VeilCompression
import VeilWire

struct Options {
    var seconds = 3.0
    var records = 1024
    var valueBytes = 1024
}

var options = Options()
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let arg = arguments.next() {
    switch arg {
    case "--seconds": options.seconds = Double(arguments.next() ?? "") ?? options.seconds
    case "--records": options.records = Int(arguments.next() ?? "") ?? options.records
    case "--value-bytes": options.valueBytes = Int(arguments.next() ?? "") ?? options.valueBytes
    default:
        print("usage: veil-wire-bench [--seconds S] [--records N] [--value-bytes B]")
        exit(2)
    }
}

/// Deterministic, moderately compressible values: JSON like the demo's records, with a
/// pseudo-random hex payload (so the codecs have something, but not everything, to squeeze).
func makeRecords(count: Int, valueBytes: Int) -> [Record] {
    var state: UInt64 = 0x5EED
    func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    let departments = ["finance", "sales", "engineering", "legal"]
    let hexDigits = Array("0123456789abcdef".utf8)
    return (0..<count).map { i in
        var value = ByteBuffer()
        value.writeString("{\"department\": \"\(departments[i % 4])\", \"seq\": \(i), \"data\": \"")
        while value.readableBytes < valueBytes - 2 {
            let r = next()
            for shift in stride(from: 0, to: 64, by: 4) where value.readableBytes < valueBytes - 2 {
                value.writeInteger(hexDigits[Int((r >> UInt64(shift)) & 0xF)])
            }
        }
        value.writeString("\"}")
        var key = ByteBuffer()
        key.writeString("key-\(i)")
        var h = ByteBuffer()
        h.writeString("trace-\(i)")
        return Record(timestampDelta: Int64(i), offsetDelta: Int32(i), key: key, value: value,
                      headers: [RecordHeader(key: "trace-id", value: h)])
    }
}

func produceFrame(records: ByteBuffer, version: Int16) -> ByteBuffer {
    let request = ProduceRequest(acks: -1, timeoutMs: 30000, topics: [
        .init(name: "department-events", partitions: [.init(index: 0, records: records)]),
    ])
    let header = RequestHeader(apiKey: .produce, apiVersion: version, correlationId: 1, clientId: "veil-wire-bench")
    var payload = ByteBuffer()
    header.write(to: &payload)
    request.encode(version: version, into: &payload)
    var frame = ByteBuffer()
    FrameParser.write(payload, to: &frame)
    return frame
}

/// The proxy's path for one Produce request, returning the re-encoded frame.
func decodeAndReencode(_ wire: ByteBuffer) throws -> ByteBuffer {
    var stream = wire
    guard var payload = try FrameParser().next(from: &stream) else { fatalError("incomplete frame") }
    let header = try RequestHeader.read(from: &payload)
    var request = try ProduceRequest(decoding: payload, version: header.apiVersion)
    for t in request.topics.indices {
        for p in request.topics[t].partitions.indices {
            guard let records = request.topics[t].partitions[p].records else { continue }
            var out = ByteBuffer()
            out.reserveCapacity(records.readableBytes)
            for entry in try RecordSet.split(records) {
                guard case .batch(let bytes) = entry else {
                    out.writeImmutableBuffer(entry.bytes)
                    continue
                }
                let batch = try RecordBatch(decoding: bytes)
                try batch.encode(into: &out)
            }
            request.topics[t].partitions[p].records = out
        }
    }
    var body = ByteBuffer()
    body.reserveCapacity(wire.readableBytes + 256)
    header.write(to: &body)
    request.encode(version: header.apiVersion, into: &body)
    var frame = ByteBuffer()
    frame.reserveCapacity(body.readableBytes + 4)
    FrameParser.write(body, to: &frame)
    return frame
}

func decodeOnly(_ wire: ByteBuffer) throws -> Int {
    var stream = wire
    guard var payload = try FrameParser().next(from: &stream) else { fatalError("incomplete frame") }
    let header = try RequestHeader.read(from: &payload)
    let request = try ProduceRequest(decoding: payload, version: header.apiVersion)
    var n = 0
    for t in request.topics {
        for p in t.partitions {
            for case .batch(let bytes) in try RecordSet.split(p.records ?? ByteBuffer()) {
                n += try RecordBatch(decoding: bytes).records.count
            }
        }
    }
    return n
}

func measure(seconds: Double, _ body: () throws -> Void) rethrows -> (perOp: Duration, iterations: Int) {
    for _ in 0..<3 { try body() }  // warm up
    let clock = ContinuousClock()
    var best = Duration.seconds(1_000_000)
    var total = 0
    let deadline = clock.now.advanced(by: .seconds(seconds))
    // Rounds of a few iterations; report the best round (least disturbed by other load).
    while clock.now < deadline || total < 10 {
        let n = 5
        let start = clock.now
        for _ in 0..<n { try body() }
        let elapsed = (clock.now - start) / n
        best = min(best, elapsed)
        total += n
    }
    return (best, total)
}

func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

func pad(_ s: String, _ width: Int) -> String { s + String(repeating: " ", count: max(1, width - s.count)) }

func fmt(_ x: Double, _ digits: Int = 1) -> String {
    let p = pow(10.0, Double(digits))
    let r = (x * p).rounded() / p
    return String(r)
}

let records = makeRecords(count: options.records, valueBytes: options.valueBytes)
let uncompressedRecords = try RecordBatch(lastOffsetDelta: Int32(records.count - 1), baseTimestamp: 1_700_000_000_000,
                                          maxTimestamp: 1_700_000_000_000 + Int64(records.count), records: records).encoded()
let version: Int16 = 9
print("veil-wire-bench: Produce v\(version), \(records.count) records of \(options.valueBytes) B values, "
      + "one batch of \(uncompressedRecords.readableBytes) B uncompressed (\(fmt(Double(uncompressedRecords.readableBytes) / 1_048_576, 3)) MiB); "
      + "CRC-32C \(CRC32C.usesHardware ? "SSE4.2" : "portable"); best of rounds over \(options.seconds) s per codec")
print("MB = 10^6 bytes; 'records MB/s' is uncompressed record-batch bytes per second.")
print("")
print("codec   wire bytes   decode+re-encode   records MB/s   wire MB/s   decode only   records MB/s")

for codec in CompressionCodec.allCases {
    let batch = RecordBatch(attributes: Int16(codec.rawValue), lastOffsetDelta: Int32(records.count - 1),
                            baseTimestamp: 1_700_000_000_000, maxTimestamp: 1_700_000_000_000 + Int64(records.count),
                            records: records)
    let name = pad("\(codec)", 7)
    let wire: ByteBuffer
    do {
        wire = produceFrame(records: try batch.encoded(), version: version)
        // Check the path before timing it.
        let out = try decodeAndReencode(wire)
        var s = out
        var payload = try FrameParser().next(from: &s)!
        let h = try RequestHeader.read(from: &payload)
        let req = try ProduceRequest(decoding: payload, version: h.apiVersion)
        let entries = try RecordSet.split(req.topics[0].partitions[0].records!)
        guard case .batch(let b) = entries[0], try RecordBatch(decoding: b).records == records else {
            fatalError("\(codec): re-encoded records differ")
        }
    } catch {
        print("\(name) skipped: \(error)")
        continue
    }
    let full = try measure(seconds: options.seconds) { _ = try decodeAndReencode(wire) }
    let decode = try measure(seconds: options.seconds / 2) { _ = try decodeOnly(wire) }
    let raw = Double(uncompressedRecords.readableBytes)
    let fullS = seconds(full.perOp), decodeS = seconds(decode.perOp)
    print(name
          + pad(String(wire.readableBytes), 13)
          + pad("\(fmt(fullS * 1000, 3)) ms", 19)
          + pad(fmt(raw / fullS / 1e6), 15)
          + pad(fmt(Double(wire.readableBytes) / fullS / 1e6), 12)
          + pad("\(fmt(decodeS * 1000, 3)) ms", 14)
          + fmt(raw / decodeS / 1e6))
}
