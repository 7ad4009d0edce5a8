// libFuzzer target for VeilWire: frame → header → message decode for every modelled API
// and version, and RecordSet.split + RecordBatch decode.
//
// Built by scripts/fuzz, which compiles this file together with VeilWire's sources into
// one module (so it needs no `import VeilWire`) with -sanitize=fuzzer,address.
//
// Input layout: the first byte picks a mode, the rest is the payload.
//   mode 0  requests: a stream of size-prefixed frames, each a request header + body.
//   mode 1  responses: [api selector][version] then a stream of size-prefixed frames.
//   mode 2  records: [flags] then a record set (the records field of Produce/Fetch).
//   mode 3  bodies: [api selector][version][request/response] then a message body.
//
// Besides "never crash, never hang, never allocate absurdly", it checks invariants:
// every error is a WireError; whatever decodes re-encodes to bytes that decode to the
// same value, and re-encoding that is stable; peekAcks agrees with a full decode.

import NIOCore
import VeilCompression

/// The APIs VeilWire models, in selector order.
let modelledApis: [ApiKey] = [.produce, .fetch, .metadata, .findCoordinator, .apiVersions, .saslHandshake,
                              .saslAuthenticate, .describeCluster]

let fuzzFrameLimit = 1 << 20
let fuzzUncompressedLimit = 4 << 20

@_cdecl("LLVMFuzzerTestOneInput")
public func veilWireFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let input = UnsafeBufferPointer(start: data, count: size)
    let mode = input[0] & 3
    let rest = ByteBuffer(bytes: input.dropFirst())
    switch mode {
    case 0:
        fuzzFrames(rest) { frame in fuzzRequest(frame) }
    case 1:
        guard rest.readableBytes >= 2 else { return 0 }
        var stream = rest
        let api = modelledApis[Int(stream.readInteger(as: UInt8.self)!) % modelledApis.count]
        let version = Int16(stream.readInteger(as: UInt8.self)! & 0x1F)
        fuzzFrames(stream) { frame in fuzzResponse(frame, api: api, version: version) }
    case 2:
        guard rest.readableBytes >= 1 else { return 0 }
        var records = rest
        let flags = records.readInteger(as: UInt8.self)!
        fuzzRecords(records, verifyCRC: flags & 1 == 1)
    default:
        guard rest.readableBytes >= 3 else { return 0 }
        var body = rest
        let api = modelledApis[Int(body.readInteger(as: UInt8.self)!) % modelledApis.count]
        let version = Int16(body.readInteger(as: UInt8.self)! & 0x1F)
        let isRequest = body.readInteger(as: UInt8.self)! & 1 == 0
        if isRequest { fuzzRequestBody(body, api: api, version: version) } else { fuzzResponseBody(body, api: api, version: version) }
    }
    return 0
}

/// Runs `body`, requiring any error to be a WireError. Returns nil on error.
func typed<T>(_ what: @autoclosure () -> String, _ body: () throws -> T) -> T? {
    do {
        return try body()
    } catch is WireError {
        return nil
    } catch {
        fatalError("\(what()): untyped error \(error)")
    }
}

func fuzzFrames(_ stream: ByteBuffer, _ handle: (ByteBuffer) -> Void) {
    var buffer = stream
    let parser = FrameParser(maxFrameBytes: fuzzFrameLimit)
    while true {
        let before = buffer.readableBytes
        guard let next = typed("frame", { try parser.next(from: &buffer) }), let frame = next else { return }
        precondition(frame.readableBytes <= fuzzFrameLimit, "frame above the limit")
        precondition(buffer.readableBytes == before - 4 - frame.readableBytes, "frame parser consumed the wrong amount")
        handle(frame)
    }
}

func fuzzRequest(_ frame: ByteBuffer) {
    var body = frame
    guard let header = typed("request header", { try RequestHeader.read(from: &body) }) else { return }
    if let peeked = RequestHeader.peek(frame) {
        precondition(peeked.apiKey == header.apiKey && peeked.apiVersion == header.apiVersion
                     && peeked.correlationId == header.correlationId, "peek disagrees with read")
    }
    // Header round trip.
    var encoded = ByteBuffer()
    header.write(to: &encoded)
    var again = encoded
    let reread = typed("request header re-read", { try RequestHeader.read(from: &again) })
    precondition(reread == header && again.readableBytes == 0, "request header does not round-trip")
    fuzzRequestBody(body, api: header.apiKey, version: header.apiVersion)
}

func fuzzResponse(_ frame: ByteBuffer, api: ApiKey, version: Int16) {
    var body = frame
    let headerVersion = api.responseHeaderVersion(version)
    guard let header = typed("response header", { try ResponseHeader.read(from: &body, headerVersion: headerVersion) }) else { return }
    var encoded = ByteBuffer()
    header.write(to: &encoded, headerVersion: headerVersion)
    var again = encoded
    let reread = typed("response header re-read", { try ResponseHeader.read(from: &again, headerVersion: headerVersion) })
    precondition(reread == header && again.readableBytes == 0, "response header does not round-trip")
    fuzzResponseBody(body, api: api, version: version)
}

/// Decodes `body`; if it decodes, checks that its encoding decodes to the same value and
/// that re-encoding is stable.
@discardableResult
func roundTrip<M: KafkaMessage>(_: M.Type, _ body: ByteBuffer, _ version: Int16) -> M? {
    guard let message = typed("\(M.self) v\(version)", { try M(decoding: body, version: version) }) else { return nil }
    let once = message.encoded(version: version)
    guard let again = typed("\(M.self) v\(version) re-decode", { try M(decoding: once, version: version) }) else {
        fatalError("\(M.self) v\(version): its own encoding does not decode")
    }
    precondition(again == message, "\(M.self) v\(version): decode(encode(m)) != m")
    precondition(again.encoded(version: version) == once, "\(M.self) v\(version): re-encoding is not stable")
    return message
}

func fuzzRequestBody(_ body: ByteBuffer, api: ApiKey, version: Int16) {
    switch api {
    case .produce:
        let acks = typed("peekAcks", { try ProduceRequest.peekAcks(body: body, version: version) })
        if let m = roundTrip(ProduceRequest.self, body, version) {
            precondition(acks == m.acks, "peekAcks disagrees with the decoded request")
            for t in m.topics { for p in t.partitions { if let r = p.records { fuzzRecords(r, verifyCRC: true) } } }
        }
    case .fetch: roundTrip(FetchRequest.self, body, version)
    case .metadata: roundTrip(MetadataRequest.self, body, version)
    case .findCoordinator: roundTrip(FindCoordinatorRequest.self, body, version)
    case .apiVersions: roundTrip(ApiVersionsRequest.self, body, version)
    case .saslHandshake: roundTrip(SaslHandshakeRequest.self, body, version)
    case .saslAuthenticate: roundTrip(SaslAuthenticateRequest.self, body, version)
    case .describeCluster: roundTrip(DescribeClusterRequest.self, body, version)
    default: break  // stays an opaque frame
    }
}

func fuzzResponseBody(_ body: ByteBuffer, api: ApiKey, version: Int16) {
    switch api {
    case .produce: roundTrip(ProduceResponse.self, body, version)
    case .fetch:
        if let m = roundTrip(FetchResponse.self, body, version) {
            for t in m.topics { for p in t.partitions { if let r = p.records { fuzzRecords(r, verifyCRC: true) } } }
        }
    case .metadata: roundTrip(MetadataResponse.self, body, version)
    case .findCoordinator: roundTrip(FindCoordinatorResponse.self, body, version)
    case .apiVersions:
        if let (m, v) = typed("ApiVersions decode", { try ApiVersionsResponse.decode(body, requestedVersion: version) }) {
            let again = typed("ApiVersions re-decode", { try ApiVersionsResponse(decoding: m.encoded(version: v), version: v) })
            precondition(again == m, "ApiVersionsResponse does not round-trip")
        }
        roundTrip(ApiVersionsResponse.self, body, version)
    case .saslHandshake: roundTrip(SaslHandshakeResponse.self, body, version)
    case .saslAuthenticate: roundTrip(SaslAuthenticateResponse.self, body, version)
    case .describeCluster: roundTrip(DescribeClusterResponse.self, body, version)
    default: break
    }
}

func fuzzRecords(_ records: ByteBuffer, verifyCRC: Bool) {
    guard let entries = typed("RecordSet.split", { try RecordSet.split(records) }) else { return }
    var joined = ByteBuffer()
    for entry in entries { joined.writeImmutableBuffer(entry.bytes) }
    precondition(joined == records, "record set entries do not rejoin to the input")
    for (i, entry) in entries.enumerated() {
        switch entry {
        case .truncated:
            precondition(i == entries.count - 1, "a truncated entry that is not the last")
        case .legacy(let bytes):
            let magic = RecordBatch.peekMagic(bytes)
            precondition(magic == 0 || magic == 1, "legacy entry with magic \(String(describing: magic))")
        case .batch(let bytes):
            fuzzBatch(bytes, verifyCRC: verifyCRC)
        }
    }
}

func fuzzBatch(_ bytes: ByteBuffer, verifyCRC: Bool) {
    _ = typed("verifyCRC", { try RecordBatch.verifyCRC(bytes) })
    guard let batch = typed("RecordBatch", { try RecordBatch(decoding: bytes, verifyCRC: verifyCRC, maxUncompressedBytes: fuzzUncompressedLimit) })
    else { return }
    // Re-encode (recompressing with the batch's codec) and decode: same batch, valid CRC.
    guard let encoded = typed("RecordBatch encode", { try batch.encoded() }) else { return }
    precondition(typed("re-encoded CRC", { try RecordBatch.verifyCRC(encoded) }) != nil, "re-encoded batch has a bad CRC")
    guard let again = typed("RecordBatch re-decode", { try RecordBatch(decoding: encoded, maxUncompressedBytes: Int.max) }) else {
        fatalError("a re-encoded batch does not decode")
    }
    precondition(again == batch, "decode(encode(batch)) != batch")
    if batch.compression == .none {
        precondition(typed("stable", { try again.encoded() }) == encoded, "batch re-encoding is not stable")
    }
    precondition(typed("split re-encoded", { try RecordSet.split(encoded) }) == [.batch(encoded)], "re-encoded batch does not split as one batch")
}
