import NIOCore
import VeilCompression

/// A magic-2 record batch: the header fields a proxy must keep intact, and its records.
///
/// Layout (KIP-98): baseOffset int64, batchLength int32, partitionLeaderEpoch int32,
/// magic int8, crc uint32, then — covered by the CRC — attributes int16,
/// lastOffsetDelta int32, baseTimestamp int64, maxTimestamp int64, producerId int64,
/// producerEpoch int16, baseSequence int32, record count int32, records.
public struct RecordBatch: Sendable, Equatable {
    /// Bytes from the start of the batch to the first record.
    public static let headerSize = 61
    /// Bytes of header counted by `batchLength` (everything after the length field).
    static let minimumBatchLength = headerSize - 12
    static let batchLengthOffset = 8
    static let crcOffset = 17
    static let attributesOffset = 21
    static let recordCountOffset = 57

    public var baseOffset: Int64
    public var partitionLeaderEpoch: Int32
    public var attributes: Int16
    public var lastOffsetDelta: Int32
    public var baseTimestamp: Int64
    public var maxTimestamp: Int64
    public var producerId: Int64
    public var producerEpoch: Int16
    public var baseSequence: Int32
    public var records: [Record]

    public init(baseOffset: Int64 = 0, partitionLeaderEpoch: Int32 = -1, attributes: Int16 = 0, lastOffsetDelta: Int32,
                baseTimestamp: Int64, maxTimestamp: Int64, producerId: Int64 = -1, producerEpoch: Int16 = -1,
                baseSequence: Int32 = -1, records: [Record]) {
        self.baseOffset = baseOffset
        self.partitionLeaderEpoch = partitionLeaderEpoch
        self.attributes = attributes
        self.lastOffsetDelta = lastOffsetDelta
        self.baseTimestamp = baseTimestamp
        self.maxTimestamp = maxTimestamp
        self.producerId = producerId
        self.producerEpoch = producerEpoch
        self.baseSequence = baseSequence
        self.records = records
    }

    // MARK: attributes

    public var compression: CompressionCodec {
        get { CompressionCodec(rawValue: UInt8(attributes & 0x07)) ?? .none }
        set { attributes = (attributes & ~0x07) | Int16(newValue.rawValue) }
    }

    /// Timestamp type: false = CreateTime, true = LogAppendTime.
    public var isLogAppendTime: Bool { attributes & 0x08 != 0 }
    public var isTransactional: Bool { attributes & 0x10 != 0 }
    public var isControl: Bool { attributes & 0x20 != 0 }
    /// KIP-712: baseTimestamp holds the delete horizon of a compacted batch.
    public var hasDeleteHorizon: Bool { attributes & 0x40 != 0 }

    // MARK: decoding

    /// Reads the CRC and magic of one batch's bytes without decoding it.
    public static func peekMagic(_ batch: ByteBuffer) -> Int8? {
        batch.getInteger(at: batch.readerIndex + 16, as: Int8.self)
    }

    /// Verifies the stored CRC-32C of one batch's bytes against its contents.
    public static func verifyCRC(_ batch: ByteBuffer) throws {
        guard batch.readableBytes >= headerSize else {
            throw WireError.truncated("record batch header", needed: headerSize, available: batch.readableBytes)
        }
        let stored = batch.getInteger(at: batch.readerIndex + crcOffset, as: UInt32.self)!
        let computed = batch.withUnsafeReadableBytes {
            CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[attributesOffset...]))
        }
        guard stored == computed else { throw WireError(.crcMismatch(stored: stored, computed: computed)) }
    }

    /// Decodes one batch (exactly one batch's bytes, as `RecordSet` splits them).
    /// - Parameter maxUncompressedBytes: bound on decompressed size, against bombs.
    public init(decoding bytes: ByteBuffer, verifyCRC: Bool = true, maxUncompressedBytes: Int = 256 * 1024 * 1024) throws {
        var buffer = bytes
        guard buffer.readableBytes >= Self.headerSize else {
            throw WireError.truncated("record batch header", needed: Self.headerSize, available: buffer.readableBytes)
        }
        baseOffset = buffer.readInteger()!
        let batchLength: Int32 = buffer.readInteger()!
        guard batchLength >= Self.minimumBatchLength, Int(batchLength) == buffer.readableBytes else {
            throw WireError(.invalidRecordBatch("batch length \(batchLength) does not match the \(buffer.readableBytes) bytes present"))
        }
        partitionLeaderEpoch = buffer.readInteger()!
        let magic: Int8 = buffer.readInteger()!
        guard magic == 2 else { throw WireError(.invalidRecordBatch("magic \(magic) is not a v2 record batch")) }
        if verifyCRC { try Self.verifyCRC(bytes) }
        buffer.moveReaderIndex(forwardBy: 4)
        attributes = buffer.readInteger()!
        lastOffsetDelta = buffer.readInteger()!
        baseTimestamp = buffer.readInteger()!
        maxTimestamp = buffer.readInteger()!
        producerId = buffer.readInteger()!
        producerEpoch = buffer.readInteger()!
        baseSequence = buffer.readInteger()!
        let count: Int32 = buffer.readInteger()!
        guard count >= 0 else { throw WireError(.invalidLength(what: "record count", length: Int(count))) }
        guard attributes & 0x07 <= 4 else {
            throw WireError(.compression("unknown compression codec \(attributes & 0x07)"))
        }
        let codec = CompressionCodec(rawValue: UInt8(attributes & 0x07))!
        var recordBytes: ByteBuffer
        if codec == .none {
            recordBytes = buffer
        } else {
            do {
                recordBytes = try Compressor.decompress(buffer, codec: codec, maxOutputBytes: maxUncompressedBytes)
            } catch let error as CompressionError {
                throw WireError(error)
            }
        }
        // Every record takes at least 7 bytes (length, attributes, timestamp delta, offset
        // delta, key, value, header count), which bounds a hostile count.
        guard Int(count) <= recordBytes.readableBytes / 7 else {
            throw WireError(.invalidLength(what: "record count", length: Int(count)))
        }
        var records: [Record] = []
        // A record is ~100 bytes in memory for 7 on the wire: reserve modestly, grow as needed.
        records.reserveCapacity(min(Int(count), 4096))
        for _ in 0..<count { records.append(try Record.read(from: &recordBytes)) }
        guard recordBytes.readableBytes == 0 else {
            throw WireError(.trailingBytes(what: "records of batch at offset \(baseOffset)", count: recordBytes.readableBytes))
        }
        self.records = records
    }

    // MARK: encoding

    /// Encodes the batch, compressing its records with `compression` and computing
    /// length and CRC.
    public func encode(into buffer: inout ByteBuffer, compressionLevel: Int? = nil) throws {
        guard compression != .none else {
            // Uncompressed records go straight into `buffer` behind the header, whose length
            // is known from the records' sizes: no intermediate buffer, no second copy.
            var sizes: [Int] = []
            sizes.reserveCapacity(records.count)
            var recordsSize = 0
            for r in records {
                let body = r.bodySize
                sizes.append(body)
                recordsSize += varintSize(Int64(body)) + body
            }
            buffer.reserveCapacity(minimumWritableBytes: Self.headerSize + recordsSize)
            let start = writeHeader(recordsSize: recordsSize, count: records.count, into: &buffer)
            for (r, body) in zip(records, sizes) { r.write(to: &buffer, bodySize: body) }
            Self.writeCRC(batchStart: start, in: &buffer)
            return
        }
        var recordBytes = ByteBuffer()
        recordBytes.reserveCapacity(records.reduce(0) { $0 + ($1.value?.readableBytes ?? 0) + ($1.key?.readableBytes ?? 0) + 16 })
        for r in records { r.write(to: &recordBytes) }
        try write(compressing: recordBytes, count: records.count, into: &buffer, compressionLevel: compressionLevel)
    }

    /// Writes the batch with `recordBytes` (`count` encoded records) compressed as its payload.
    func write(compressing recordBytes: ByteBuffer, count: Int, into buffer: inout ByteBuffer, compressionLevel: Int?) throws {
        let payload: ByteBuffer
        do {
            payload = try Compressor.compress(recordBytes, codec: compression, level: compressionLevel)
        } catch let error as CompressionError {
            throw WireError(error)
        }
        buffer.reserveCapacity(minimumWritableBytes: Self.headerSize + payload.readableBytes)
        let start = writeHeader(recordsSize: payload.readableBytes, count: count, into: &buffer)
        buffer.writeImmutableBuffer(payload)
        Self.writeCRC(batchStart: start, in: &buffer)
    }

    /// Writes the header with a zero CRC; returns where the batch starts in `buffer`.
    func writeHeader(recordsSize: Int, count: Int, into buffer: inout ByteBuffer) -> Int {
        let start = buffer.writerIndex
        buffer.writeInteger(baseOffset)
        buffer.writeInteger(Int32(Self.minimumBatchLength + recordsSize))
        buffer.writeInteger(partitionLeaderEpoch)
        buffer.writeInteger(Int8(2))
        buffer.writeInteger(UInt32(0))
        buffer.writeInteger(attributes)
        buffer.writeInteger(lastOffsetDelta)
        buffer.writeInteger(baseTimestamp)
        buffer.writeInteger(maxTimestamp)
        buffer.writeInteger(producerId)
        buffer.writeInteger(producerEpoch)
        buffer.writeInteger(baseSequence)
        buffer.writeInteger(Int32(count))
        return start
    }

    /// Computes the CRC over everything from the attributes to the end of `buffer` and stores it.
    static func writeCRC(batchStart start: Int, in buffer: inout ByteBuffer) {
        let crc = buffer.withUnsafeReadableBytes {
            CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[(start - buffer.readerIndex + Self.attributesOffset)...]))
        }
        buffer.setInteger(crc, at: start + Self.crcOffset)
    }

    public func encoded(compressionLevel: Int? = nil) throws -> ByteBuffer {
        var b = ByteBuffer()
        try encode(into: &b, compressionLevel: compressionLevel)
        return b
    }
}
