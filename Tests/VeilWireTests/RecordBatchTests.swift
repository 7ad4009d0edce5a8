import NIOCore
import Testing
import VeilCompression
@testable import VeilWire

extension RecordBatch {
    /// A batch of `records` with consistent offsets and timestamps, as a producer writes it.
    static func sample(_ records: [Record], attributes: Int16 = 0, baseOffset: Int64 = 0) -> RecordBatch {
        RecordBatch(baseOffset: baseOffset, partitionLeaderEpoch: 3, attributes: attributes,
                    lastOffsetDelta: Int32(max(records.count - 1, 0)), baseTimestamp: 1_700_000_000_000,
                    maxTimestamp: 1_700_000_000_000 + Int64(records.count), producerId: 4001, producerEpoch: 2,
                    baseSequence: 17, records: records)
    }
}

/// Records covering every field shape: null key, null value, empty value, headers with
/// null, empty and binary values, non-ASCII header keys, a large value.
func sampleRecords() -> [Record] {
    [
        Record(timestampDelta: 0, offsetDelta: 0, key: str("k0"), value: str("{\"department\": \"finance\"}"),
               headers: [RecordHeader(key: "h-text", value: str("hello")), RecordHeader(key: "h-bin", value: buf([0, 1, 2, 0xFE, 0xFF]))]),
        Record(timestampDelta: 1, offsetDelta: 1, key: nil, value: str("keyless")),
        Record(timestampDelta: 2, offsetDelta: 2, key: str("k2"), value: nil,
               headers: [RecordHeader(key: "null-value", value: nil), RecordHeader(key: "empty", value: ByteBuffer())]),
        Record(timestampDelta: -5, offsetDelta: 3, key: ByteBuffer(), value: ByteBuffer(), headers: [RecordHeader(key: "ключ", value: str("é"))]),
        Record(timestampDelta: 1_000_000_000, offsetDelta: 4, key: str("big"), value: buf([UInt8](repeating: 0x5A, count: 20_000))),
    ]
}

@Suite("Record batches")
struct RecordBatchTests {
    @Test func handBuiltBatchMatchesTheEncoder() throws {
        // One record, laid out field by field from KIP-98 / the protocol guide.
        let records = "18 00 00 00 04 6b31 02 76 02 02 68 01"  // length 12, attrs, ts Δ 0, offset Δ 0, key "k1", value "v", 1 header "h" = null
        let covered = hexBytes("""
            0000                      attributes
            00000000                  last offset delta
            0000018bcfe56800          base timestamp 1700000000000
            0000018bcfe56800          max timestamp
            ffffffffffffffff ffff ffffffff   producer id, epoch, base sequence
            00000001                  record count
            """.split(separator: "\n").map { stripComments(String($0)) }.joined() + records)
        let crc = referenceCRC32C(covered)
        var expected = hexBytes("0000000000000000 0000003e 00000005 02")  // base offset, length 62, leader epoch 5, magic
        expected += withUnsafeBytes(of: crc.bigEndian) { Array($0) }
        expected += covered

        let batch = RecordBatch(baseOffset: 0, partitionLeaderEpoch: 5, lastOffsetDelta: 0, baseTimestamp: 1_700_000_000_000,
                                maxTimestamp: 1_700_000_000_000,
                                records: [Record(timestampDelta: 0, offsetDelta: 0, key: str("k1"), value: str("v"),
                                                 headers: [RecordHeader(key: "h", value: nil)])])
        #expect(hex(try batch.encoded()) == hex(expected))
        #expect(try RecordBatch(decoding: buf(expected)) == batch)
    }

    @Test func roundTripIsByteExact() throws {
        let batch = RecordBatch.sample(sampleRecords(), baseOffset: 1234)
        let bytes = try batch.encoded()
        #expect(bytes.readableBytes == 61 + bytes.getInteger(at: 8, as: Int32.self).map { Int($0) - 49 }!)
        let decoded = try RecordBatch(decoding: bytes)
        #expect(decoded == batch)
        #expect(decoded.records.count == 5)
        #expect(decoded.records[1].key == nil)
        #expect(decoded.records[2].value == nil)
        #expect(decoded.records[2].headers[0].value == nil)
        #expect(decoded.records[2].headers[1].value == ByteBuffer())
        #expect(decoded.records[3].headers[0].key == "ключ")
        #expect(try decoded.encoded() == bytes)
        #expect(RecordBatch.peekMagic(bytes) == 2)
    }

    @Test func emptyBatchRoundTrips() throws {
        let batch = RecordBatch.sample([])
        let bytes = try batch.encoded()
        #expect(bytes.readableBytes == RecordBatch.headerSize)
        #expect(try RecordBatch(decoding: bytes) == batch)
    }

    @Test func encodeAppendsAfterExistingBytes() throws {
        // The CRC must be computed over this batch's bytes, not from the buffer's start.
        var out = ByteBuffer(bytes: [0xAA, 0xBB, 0xCC])
        out.moveReaderIndex(forwardBy: 1)
        let batch = RecordBatch.sample(sampleRecords())
        try batch.encode(into: &out)
        let alone = try batch.encoded()
        #expect(out.getSlice(at: 3, length: alone.readableBytes) == alone)
    }

    @Test func decodeFromASliceAtAnOffset() throws {
        var big = ByteBuffer(bytes: [1, 2, 3])
        let bytes = try RecordBatch.sample(sampleRecords()).encoded()
        big.writeImmutableBuffer(bytes)
        let slice = big.getSlice(at: 3, length: bytes.readableBytes)!
        #expect(try RecordBatch(decoding: slice).records.count == 5)
        var moved = big
        moved.moveReaderIndex(forwardBy: 3)
        #expect(try RecordBatch(decoding: moved).records.count == 5)
    }

    // MARK: CRC

    @Test func badStoredCRCIsACRCMismatch() throws {
        var bytes = try RecordBatch.sample(sampleRecords()).encoded()
        let stored = bytes.getInteger(at: 17, as: UInt32.self)!
        bytes.setInteger(stored ^ 1, at: 17)
        #expect(wireError { try RecordBatch(decoding: bytes) } == .crcMismatch(stored: stored ^ 1, computed: stored))
        #expect(wireError { try RecordBatch.verifyCRC(bytes) } == .crcMismatch(stored: stored ^ 1, computed: stored))
        // Not verifying lets it through (for callers that verified already).
        #expect(try RecordBatch(decoding: bytes, verifyCRC: false).records.count == 5)
    }

    @Test func everyByteFromAttributesToTheEndIsCovered() throws {
        let bytes = try RecordBatch.sample(Array(sampleRecords().prefix(3))).encoded()
        for i in 21..<bytes.readableBytes {
            var corrupt = bytes
            corrupt.setInteger(bytes.getInteger(at: i, as: UInt8.self)! ^ 0x10, at: i)
            #expect(wireError { try RecordBatch.verifyCRC(corrupt) }?.label == "crcMismatch", "byte \(i)")
        }
        // Base offset, length, leader epoch and magic come before the CRC and are not covered:
        // brokers rewrite base offset and leader epoch without recomputing it.
        var rebased = bytes
        rebased.setInteger(Int64(999), at: 0)
        rebased.setInteger(Int32(77), at: 12)
        let decoded = try RecordBatch(decoding: rebased)
        #expect(decoded.baseOffset == 999)
        #expect(decoded.partitionLeaderEpoch == 77)
    }

    // MARK: attributes

    @Test func attributeBits() {
        var b = RecordBatch.sample([])
        #expect(b.compression == .none)
        #expect(!b.isLogAppendTime && !b.isTransactional && !b.isControl && !b.hasDeleteHorizon)
        b.attributes = 0x08
        #expect(b.isLogAppendTime)
        b.attributes = 0x10
        #expect(b.isTransactional)
        b.attributes = 0x20
        #expect(b.isControl)
        b.attributes = 0x40
        #expect(b.hasDeleteHorizon)
        for (raw, codec) in [(Int16(0), CompressionCodec.none), (1, .gzip), (2, .snappy), (3, .lz4), (4, .zstd)] {
            b.attributes = 0x78 | raw
            #expect(b.compression == codec)
        }
        b.attributes = 0x7F
        b.compression = .snappy
        #expect(b.attributes == 0x7A)
        b.compression = .none
        #expect(b.attributes == 0x78)
    }

    @Test func attributesSurviveARoundTrip() throws {
        for attributes: Int16 in [0x08, 0x10, 0x18, 0x40, 0x58] {
            let batch = RecordBatch.sample(sampleRecords(), attributes: attributes)
            let decoded = try RecordBatch(decoding: try batch.encoded())
            #expect(decoded.attributes == attributes)
            #expect(decoded == batch)
        }
    }

    @Test(arguments: [Int16(5), 6, 7])
    func unknownCodecIsATypedError(_ codec: Int16) throws {
        var bytes = try RecordBatch.sample([]).encoded()
        bytes.setInteger(codec, at: 21)
        #expect(wireError { try RecordBatch(decoding: bytes, verifyCRC: false) }?.label == "compression")
    }

    @Test func controlBatchDecodesAndPassesThroughUntouched() throws {
        // A transaction COMMIT marker: attributes transactional|control, one record whose
        // key is (version 0, type 1 = commit) and value (version 0, coordinator epoch 5).
        let marker = Record(timestampDelta: 0, offsetDelta: 0, key: hexBuf("0000 0001"), value: hexBuf("0000 00000005"))
        let batch = RecordBatch(baseOffset: 42, partitionLeaderEpoch: 0, attributes: 0x30, lastOffsetDelta: 0,
                                baseTimestamp: 1_700_000_000_000, maxTimestamp: 1_700_000_000_000, producerId: 9,
                                producerEpoch: 0, baseSequence: -1, records: [marker])
        let bytes = try batch.encoded()
        let decoded = try RecordBatch(decoding: bytes)
        #expect(decoded.isControl && decoded.isTransactional)
        #expect(decoded.records[0].key?.getInteger(at: decoded.records[0].key!.readerIndex + 2, as: Int16.self) == 1)
        #expect(try decoded.encoded() == bytes)
        #expect(try RecordSet.split(bytes) == [.batch(bytes)])
    }

    // MARK: hostile input

    static func batchBytes(count: Int32, records: String, padding: Int = 0) -> ByteBuffer {
        // A header with the given record count and raw record bytes, with a valid length and CRC.
        var b = try! RecordBatch.sample([]).encoded()
        b.setInteger(count, at: 57)
        b.writeBytes(hexBytes(records))
        b.writeBytes([UInt8](repeating: 0, count: padding))
        b.setInteger(Int32(b.readableBytes - 12), at: 8)
        let crc = b.withUnsafeReadableBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[21...])) }
        b.setInteger(crc, at: 17)
        return b
    }

    static let minimalRecord = "0c 00 00 00 01 01 00"  // length 6, attrs, ts Δ, offset Δ, key null, value null, 0 headers

    @Test func minimalRecordsDecode() throws {
        let b = Self.batchBytes(count: 2, records: Self.minimalRecord + Self.minimalRecord)
        let batch = try RecordBatch(decoding: b)
        #expect(batch.records == [Record(timestampDelta: 0, offsetDelta: 0, key: nil, value: nil),
                                  Record(timestampDelta: 0, offsetDelta: 0, key: nil, value: nil)])
        #expect(try batch.encoded() == b)
    }

    @Test(arguments: [Int32.max, 1_000_000, 3, -1, Int32.min])
    func hostileRecordCountsAreTypedErrors(_ count: Int32) {
        let b = Self.batchBytes(count: count, records: Self.minimalRecord + Self.minimalRecord)
        let kind = wireError { try RecordBatch(decoding: b) }
        #expect(kind != nil)
        if count < 0 || count > 2 { #expect(kind?.label == "invalidLength" || kind?.label == "invalidRecordBatch" || kind?.label == "truncated") }
    }

    @Test func fewerRecordsThanTheBytesHoldIsTrailingBytes() {
        let b = Self.batchBytes(count: 1, records: Self.minimalRecord + Self.minimalRecord)
        #expect(wireError { try RecordBatch(decoding: b) }?.label == "trailingBytes")
    }

    @Test(arguments: [
        ("ffffffff1f", "varintTooLong"),  // record length overflows 32 bits
        ("80808080808001", "varintTooLong"),
        ("01", "invalidRecordBatch"),  // record length -1
        ("7e 00", "invalidRecordBatch"),  // record length 63, 1 byte present
        ("0e 00 00 00 03 61 01 00", "invalidLength"),  // key length -2
        ("0e 00 00 00 7e 61 01 00", "truncated"),  // key length 63, 1 byte present
        ("1e 00 ffffffffffffffffff7f 00 01 01 00", "varintTooLong"),  // timestamp delta overflows 64 bits
        ("14 00 00 00 01 01 feffffff0f", "invalidLength"),  // 2^31-1 headers
        ("12 00 00 00 01 01 02 01 01 00", "invalidRecordBatch"),  // header key null
        ("0e 00 00 00 01 01 00 ff", "trailingBytes"),  // record body longer than its fields
        ("0c 00 00 00 01 01 02", "invalidLength"),  // one header announced, no bytes for it
    ])
    func malformedRecordsAreTypedErrors(_ record: String, _ label: String) {
        // Padding keeps the 7-bytes-per-record bound from rejecting the batch before the record is read.
        let b = Self.batchBytes(count: 1, records: record, padding: 7)
        #expect(wireError { try RecordBatch(decoding: b) }?.label == label, "\(record)")
    }

    @Test func batchLengthMustMatchTheBytesGiven() throws {
        var b = try RecordBatch.sample(sampleRecords()).encoded()
        let good = b.getInteger(at: 8, as: Int32.self)!
        for bad in [good - 1, good + 1, 0, -1, 48, Int32.max] {
            b.setInteger(bad, at: 8)
            #expect(wireError { try RecordBatch(decoding: b) }?.label == "invalidRecordBatch", "length \(bad)")
        }
        let short = hexBuf("0000000000000000 00000031 00000000 02")
        #expect(wireError { try RecordBatch(decoding: short) }?.label == "truncated")
        #expect(wireError { try RecordBatch.verifyCRC(short) }?.label == "truncated")
    }

    @Test(arguments: [Int8(0), 1, 3, -1])
    func nonV2MagicIsNotDecodedAsABatch(_ magic: Int8) throws {
        var b = try RecordBatch.sample([]).encoded()
        b.setInteger(magic, at: 16)
        #expect(wireError { try RecordBatch(decoding: b) }?.label == "invalidRecordBatch")
    }
}

@Suite("Record sets")
struct RecordSetTests {
    /// A legacy message (magic 0 or 1) with its offset and size prefix.
    static func legacyMessage(magic: Int8, offset: Int64, key: [UInt8]?, value: [UInt8]?) -> ByteBuffer {
        var body = ByteBuffer()
        body.writeInteger(magic)
        body.writeInteger(Int8(0))  // attributes
        if magic == 1 { body.writeInteger(Int64(1_600_000_000_000)) }
        for field in [key, value] {
            if let field {
                body.writeInteger(Int32(field.count))
                body.writeBytes(field)
            } else {
                body.writeInteger(Int32(-1))
            }
        }
        var out = ByteBuffer()
        out.writeInteger(offset)
        out.writeInteger(Int32(4 + body.readableBytes))
        out.writeInteger(UInt32(0xDEAD_BEEF))  // CRC-32 (IEEE): not checked, passed through
        out.writeImmutableBuffer(body)
        return out
    }

    @Test func splitsBatchesAndRejoinsByteExact() throws {
        var all = ByteBuffer()
        let a = try RecordBatch.sample(sampleRecords(), baseOffset: 0).encoded()
        let b = try RecordBatch.sample([], baseOffset: 5).encoded()
        let c = try RecordBatch.sample(Array(sampleRecords().prefix(2)), baseOffset: 6).encoded()
        for x in [a, b, c] { all.writeImmutableBuffer(x) }
        let entries = try RecordSet.split(all)
        #expect(entries == [.batch(a), .batch(b), .batch(c)])
        var joined = ByteBuffer()
        for e in entries { joined.writeImmutableBuffer(e.bytes) }
        #expect(joined == all)
        #expect(try RecordSet.split(ByteBuffer()).isEmpty)
    }

    @Test func legacyMagic0And1AreRecognisedAndPassedThrough() throws {
        let m0 = Self.legacyMessage(magic: 0, offset: 0, key: nil, value: Array("v0".utf8))
        let m1 = Self.legacyMessage(magic: 1, offset: 1, key: Array("k".utf8), value: nil)
        let v2 = try RecordBatch.sample(sampleRecords(), baseOffset: 2).encoded()
        var all = ByteBuffer()
        for x in [m0, m1, v2] { all.writeImmutableBuffer(x) }
        let entries = try RecordSet.split(all)
        #expect(entries == [.legacy(m0), .legacy(m1), .batch(v2)])
        #expect(RecordBatch.peekMagic(m1) == 1)
        // The smallest legacy message (v0, null key and value) is 14 bytes after the size.
        let smallest = Self.legacyMessage(magic: 0, offset: 0, key: nil, value: nil)
        #expect(smallest.getInteger(at: 8, as: Int32.self) == 14)
        #expect(try RecordSet.split(smallest) == [.legacy(smallest)])
    }

    @Test func truncatedTrailingEntryIsPreserved() throws {
        let a = try RecordBatch.sample(sampleRecords(), baseOffset: 0).encoded()
        let b = try RecordBatch.sample(sampleRecords(), baseOffset: 5).encoded()
        // Cut the second batch at every length: inside its offset, its size, its header, its records.
        for cut in [1, 8, 11, 12, 16, 17, 40, 61, 62, b.readableBytes - 1] {
            var all = a
            all.writeImmutableBuffer(b.getSlice(at: 0, length: cut)!)
            let entries = try RecordSet.split(all)
            #expect(entries.count == 2, "cut \(cut)")
            #expect(entries.first == .batch(a))
            #expect(entries.last == .truncated(b.getSlice(at: 0, length: cut)!), "cut \(cut)")
            var joined = ByteBuffer()
            for e in entries { joined.writeImmutableBuffer(e.bytes) }
            #expect(joined == all)
        }
    }

    @Test func onlyATruncatedEntry() throws {
        let b = try RecordBatch.sample(sampleRecords()).encoded()
        let part = b.getSlice(at: 0, length: 30)!
        #expect(try RecordSet.split(part) == [.truncated(part)])
    }

    @Test(arguments: [Int32(-1), Int32.min, 0, 4, 13])
    func entrySizesBelowTheSmallestMessageAreErrors(_ size: Int32) {
        // Followed by enough bytes that the old code read a "magic" from beyond the entry.
        var b = ByteBuffer()
        b.writeInteger(Int64(0))
        b.writeInteger(size)
        b.writeBytes([UInt8](repeating: 2, count: 40))
        #expect(wireError { try RecordSet.split(b) } == .invalidLength(what: "record batch length", length: Int(size)))
    }

    @Test func unknownMagicInACompleteEntryIsAnError() throws {
        var b = try RecordBatch.sample([]).encoded()
        b.setInteger(Int8(3), at: 16)
        #expect(wireError { try RecordSet.split(b) } == .invalidRecordBatch("unknown magic 3"))
    }
}
