import NIOCore
import Testing
import VeilCompression
@testable import VeilWire

/// A value writer that always fails, to check that a failed record leaves nothing behind.
private struct Refused: Error {}

@Suite("Record batch writer")
struct RecordBatchWriterTests {
    /// Writes `batch`'s records through the writer, replacing every value by its reverse
    /// (written through the value closure) and dropping records whose offset delta is in `drop`.
    private func rewritten(_ batch: RecordBatch, drop: Set<Int32> = [], prefix: [UInt8] = [0xAB, 0xCD]) throws -> ByteBuffer {
        var out = ByteBuffer(bytes: prefix)
        var writer = RecordBatchWriter(rewriting: batch, into: &out, expectedBytes: 64)
        for record in batch.records where !drop.contains(record.offsetDelta) {
            guard let value = record.value else {
                writer.append(record, to: &out)
                continue
            }
            let reversed = Array(value.readableBytesView.reversed())
            writer.append(record, valueByteCount: reversed.count, to: &out) { $0.writeBytes(reversed) }
        }
        try writer.finish(&out)
        return out
    }

    /// What the writer should produce: the same header, the kept records with reversed values.
    private func expected(_ batch: RecordBatch, drop: Set<Int32> = []) throws -> RecordBatch {
        var want = batch
        want.records = batch.records.filter { !drop.contains($0.offsetDelta) }.map { r in
            var r = r
            r.value = r.value.map { ByteBuffer(bytes: Array($0.readableBytesView.reversed())) }
            return r
        }
        if want.records.isEmpty { want.compression = .none }
        return want
    }

    @Test(arguments: [CompressionCodec.none, .gzip, .snappy, .lz4, .zstd])
    func rewrittenBatchEqualsEncodingTheRewrittenRecords(_ codec: CompressionCodec) throws {
        var batch = RecordBatch.sample(sampleRecords())
        batch.compression = codec
        for drop in [Set<Int32>(), [1, 3], Set(batch.records.map(\.offsetDelta))] {
            var out = try rewritten(batch, drop: drop)
            #expect(out.readBytes(length: 2) == [0xAB, 0xCD], "bytes before the batch are kept")
            let decoded = try RecordBatch(decoding: out)
            #expect(decoded == (try expected(batch, drop: drop)))
            if codec == .none {
                // Byte for byte what the encoder writes, CRC included.
                #expect(Array(out.readableBytesView) == Array(try expected(batch, drop: drop).encoded().readableBytesView))
            }
        }
    }

    @Test func failedValueLeavesNoTrace() throws {
        let batch = RecordBatch.sample(sampleRecords())
        var out = ByteBuffer()
        var writer = RecordBatchWriter(rewriting: batch, into: &out, expectedBytes: 0)
        writer.append(batch.records[0], to: &out)
        let before = out.writerIndex
        #expect(throws: Refused.self) {
            try writer.append(batch.records[1], valueByteCount: 5, to: &out) { (buffer) throws(Refused) in
                buffer.writeBytes([1, 2, 3])
                throw Refused()
            }
        }
        #expect(out.writerIndex == before)
        #expect(writer.count == 1)
        try writer.finish(&out)
        let decoded = try RecordBatch(decoding: out)
        #expect(decoded.records == [batch.records[0]])
    }

    @Test func abandonRestoresTheOutput() {
        let batch = RecordBatch.sample(sampleRecords())
        var out = ByteBuffer(bytes: [7, 7, 7])
        var writer = RecordBatchWriter(rewriting: batch, into: &out, expectedBytes: 0)
        for r in batch.records { writer.append(r, to: &out) }
        writer.abandon(&out)
        #expect(Array(out.readableBytesView) == [7, 7, 7])
    }
}
