import NIOCore
import Testing
import VeilCompression
@testable import VeilWire

// Compressed record batches, one test per codec: `compressedBatch_<codec>`.
//
// These need the real VeilCompression module (gzip, snappy, lz4, zstd from Debian's C
// libraries). Against the temporary stub, where only codec `none` works, they fail; they
// are expected to pass once the compression branch is merged.

enum CompressedBatchCheck {
    static func run(_ codec: CompressionCodec) throws {
        try syntheticRoundTrip(codec)
        try decompressionIsBounded(codec)
        try corruptPayloadIsATypedError(codec)
        try FixtureCheck.compressedFixtures(codec)
    }

    /// Compress, decode, recompress; and the same batch written uncompressed matches an
    /// uncompressed encoding byte for byte.
    static func syntheticRoundTrip(_ codec: CompressionCodec) throws {
        let records = sampleRecords()
        let batch = RecordBatch.sample(records, attributes: Int16(codec.rawValue) | 0x10)
        let bytes = try batch.encoded()
        try RecordBatch.verifyCRC(bytes)
        let decoded = try RecordBatch(decoding: bytes)
        #expect(decoded == batch)
        #expect(decoded.compression == codec)
        #expect(decoded.isTransactional)
        #expect(try RecordBatch.sample(records).encoded().readableBytes > bytes.readableBytes, "\(codec) compresses")
        #expect(try RecordBatch(decoding: try decoded.encoded()) == batch)

        var plain = decoded
        plain.compression = .none
        #expect(try plain.encoded() == RecordBatch.sample(records, attributes: 0x10).encoded())

        // Compression levels are accepted.
        #expect(try RecordBatch(decoding: try batch.encoded(compressionLevel: 1)) == batch)

        // In a record set, split and decode like any other batch.
        var set = ByteBuffer()
        set.writeImmutableBuffer(bytes)
        set.writeImmutableBuffer(try RecordBatch.sample(Array(records.prefix(2)), attributes: Int16(codec.rawValue), baseOffset: 5).encoded())
        let entries = try RecordSet.split(set)
        #expect(entries.count == 2)
        for case .batch(let b) in entries { #expect(try RecordBatch(decoding: b).compression == codec) }
    }

    /// A batch that inflates past the bound is a typed error, not an allocation.
    static func decompressionIsBounded(_ codec: CompressionCodec) throws {
        let bomb = RecordBatch.sample([Record(timestampDelta: 0, offsetDelta: 0, key: nil,
                                              value: ByteBuffer(repeating: 0, count: 8 * 1024 * 1024))],
                                      attributes: Int16(codec.rawValue))
        let bytes = try bomb.encoded()
        #expect(bytes.readableBytes < 1024 * 1024, "\(codec): 8 MiB of zeros compresses well")
        #expect(wireError { try RecordBatch(decoding: bytes, maxUncompressedBytes: 1024 * 1024) }?.label == "compression")
        #expect(try RecordBatch(decoding: bytes).records[0].value?.readableBytes == 8 * 1024 * 1024)
    }

    /// Garbage where the compressed records should be is a typed error.
    static func corruptPayloadIsATypedError(_ codec: CompressionCodec) throws {
        var bytes = try RecordBatch.sample(sampleRecords(), attributes: Int16(codec.rawValue)).encoded()
        for i in stride(from: RecordBatch.headerSize, to: bytes.readableBytes, by: 3) {
            bytes.setInteger(UInt8(truncatingIfNeeded: i &* 131), at: i)
        }
        #expect(wireError { try RecordBatch(decoding: bytes, verifyCRC: false) } != nil)
        // A batch announcing compressed records but holding none.
        var empty = try RecordBatch.sample([]).encoded()
        empty.setInteger(Int16(codec.rawValue), at: RecordBatch.attributesOffset)
        empty.setInteger(Int32(1), at: 57)
        #expect(wireError { try RecordBatch(decoding: empty, verifyCRC: false) } != nil)
    }
}

@Suite("Compressed record batches (need the real VeilCompression)")
struct CompressedBatchTests {
    @Test func compressedBatch_gzip() throws { try CompressedBatchCheck.run(.gzip) }
    @Test func compressedBatch_snappy() throws { try CompressedBatchCheck.run(.snappy) }
    @Test func compressedBatch_lz4() throws { try CompressedBatchCheck.run(.lz4) }
    @Test func compressedBatch_zstd() throws { try CompressedBatchCheck.run(.zstd) }

    /// The stub and the real module agree on codec none; this passes either way.
    @Test func uncompressedBatchNeedsNoCodec() throws {
        let batch = RecordBatch.sample(sampleRecords())
        #expect(try RecordBatch(decoding: try batch.encoded()) == batch)
    }
}
