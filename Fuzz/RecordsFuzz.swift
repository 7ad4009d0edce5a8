// libFuzzer target for record batch decoding with each compression codec.
//
// Built by scripts/fuzz (target `records`), compiled into one module with VeilWire's sources.
//
// Input: [selector][count] then a payload. selector & 7 picks the codec (5, 6 and 7 are the
// codecs Kafka does not define); bit 3 picks how the payload is used:
//   0  the payload is the batch's *uncompressed* records: it is compressed with the codec
//      (so the decompressors see valid streams and the record parser sees arbitrary records);
//   1  the payload is the compressed records as they would arrive, corrupt or not.
// Either way the batch around it is well formed (lengths, magic, CRC), so every input reaches
// the decompressor and the record parser rather than stopping at the batch header.
//
// Invariants: every error is a WireError; a batch that decodes re-encodes (recompressed with
// its codec) to a batch that decodes to the same records; decompression never exceeds its limit.

import NIOCore
import VeilCompression

let fuzzUncompressedLimit = 1 << 20

@_cdecl("LLVMFuzzerTestOneInput")
public func veilRecordsFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 2 else { return 0 }
    let selector = data[0]
    let count = Int32(data[1])
    let codecBits = selector & 7
    var payload = ByteBuffer(bytes: UnsafeBufferPointer(start: data + 2, count: size - 2))
    if selector & 8 == 0, let codec = CompressionCodec(rawValue: codecBits), codec != .none {
        guard let compressed = try? Compressor.compress(payload, codec: codec) else {
            fatalError("compressing \(payload.readableBytes) bytes with \(codec) failed")
        }
        payload = compressed
    }
    let bytes = batchBytes(records: payload, count: count, attributes: Int16(codecBits))
    let decoded: RecordBatch
    do {
        decoded = try RecordBatch(decoding: bytes, maxUncompressedBytes: fuzzUncompressedLimit)
    } catch is WireError {
        return 0
    } catch {
        fatalError("untyped error \(error)")
    }
    precondition(decoded.records.count == Int(count), "decoded \(decoded.records.count) records, header says \(count)")
    guard let encoded = try? decoded.encoded() else { fatalError("a decoded batch does not re-encode") }
    guard let again = try? RecordBatch(decoding: encoded, maxUncompressedBytes: Int.max) else {
        fatalError("a re-encoded batch does not decode")
    }
    precondition(again == decoded, "decode(encode(batch)) != batch")
    return 0
}

/// A v2 batch header (base offset 0, one producer-less batch) around `records`, CRC included.
func batchBytes(records: ByteBuffer, count: Int32, attributes: Int16) -> ByteBuffer {
    var body = ByteBuffer()
    body.writeInteger(attributes)
    body.writeInteger(max(count - 1, 0))  // last offset delta
    body.writeInteger(Int64(1_700_000_000_000))
    body.writeInteger(Int64(1_700_000_000_000))
    body.writeInteger(Int64(-1))  // producer id
    body.writeInteger(Int16(-1))  // producer epoch
    body.writeInteger(Int32(-1))  // base sequence
    body.writeInteger(count)
    body.writeImmutableBuffer(records)
    var out = ByteBuffer()
    out.writeInteger(Int64(0))
    out.writeInteger(Int32(4 + 1 + 4 + body.readableBytes))
    out.writeInteger(Int32(-1))  // partition leader epoch
    out.writeInteger(Int8(2))
    out.writeInteger(CRC32C.checksum(body.readableBytesView))
    out.writeImmutableBuffer(body)
    return out
}
