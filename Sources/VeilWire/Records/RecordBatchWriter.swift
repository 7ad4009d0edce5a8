import NIOCore

/// Writes a rewritten copy of a decoded batch record by record, so a filter can put each
/// record (a decrypted value, say) straight into the outgoing bytes instead of building a
/// new `[Record]` and encoding it afterwards.
///
/// Every header field but the length, the record count and the CRC is the original batch's;
/// those three are filled in by ``finish(_:compressionLevel:)``. An uncompressed batch is
/// written in place in the output; a compressed one is staged and compressed at the end.
public struct RecordBatchWriter {
    private var header: RecordBatch
    /// Where the batch starts in the output.
    private let start: Int
    private let compressed: Bool
    /// Compressed batches only: the records before compression.
    private var staging = ByteBuffer()
    /// Records appended so far.
    public private(set) var count = 0

    /// Starts a batch with `batch`'s header in `out`; `expectedBytes` sizes the buffer.
    public init(rewriting batch: RecordBatch, into out: inout ByteBuffer, expectedBytes: Int) {
        var header = batch
        header.records = []
        self.header = header
        start = out.writerIndex
        compressed = batch.compression != .none
        if compressed {
            staging.reserveCapacity(expectedBytes)
        } else {
            out.reserveCapacity(minimumWritableBytes: RecordBatch.headerSize + expectedBytes)
            _ = header.writeHeader(recordsSize: 0, count: 0, into: &out)
        }
    }

    /// Appends `record` as it is.
    public mutating func append(_ record: Record, to out: inout ByteBuffer) {
        if compressed { record.write(to: &staging) } else { record.write(to: &out) }
        count += 1
    }

    /// Appends `record` with a value of `valueByteCount` bytes that `writeValue` appends to
    /// the buffer it is given. If `writeValue` throws, nothing of the record is kept.
    public mutating func append(_ record: Record, valueByteCount: Int, to out: inout ByteBuffer,
                                writeValue: (inout ByteBuffer) throws -> Void) rethrows {
        if compressed {
            try record.write(to: &staging, valueByteCount: valueByteCount, writeValue: writeValue)
        } else {
            try record.write(to: &out, valueByteCount: valueByteCount, writeValue: writeValue)
        }
        count += 1
    }

    /// Completes the batch: length, record count and CRC; compresses a compressed batch's
    /// records. A compressed batch left with no records is written uncompressed (librdkafka
    /// cannot read a compressed batch whose payload decompresses to nothing; an empty
    /// uncompressed batch is what log compaction leaves behind).
    public mutating func finish(_ out: inout ByteBuffer, compressionLevel: Int? = nil) throws {
        if !compressed {
            let recordsSize = out.writerIndex - start - RecordBatch.headerSize
            out.setInteger(Int32(RecordBatch.minimumBatchLength + recordsSize), at: start + RecordBatch.batchLengthOffset)
            out.setInteger(Int32(count), at: start + RecordBatch.recordCountOffset)
            RecordBatch.writeCRC(batchStart: start, in: &out)
            return
        }
        if count == 0 {
            header.compression = .none
            let at = header.writeHeader(recordsSize: 0, count: 0, into: &out)
            RecordBatch.writeCRC(batchStart: at, in: &out)
            return
        }
        try header.write(compressing: staging, count: count, into: &out, compressionLevel: compressionLevel)
    }

    /// Takes back what was written of the batch, so the caller can write the original bytes instead.
    public func abandon(_ out: inout ByteBuffer) {
        out.moveWriterIndex(to: start)
    }
}
