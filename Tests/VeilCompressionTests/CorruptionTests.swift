import NIOCore
import Testing

@testable import VeilCompression

@Suite struct CorruptionTests {
    static let plaintext = compressibleBytes(count: 100_000)

    static func compressed(_ codec: CompressionCodec) throws -> [UInt8] {
        bytes(try Compressor.compress(buffer(plaintext), codec: codec))
    }

    static func decompress(_ input: [UInt8], _ codec: CompressionCodec, limit: Int = 1 << 20) throws -> ByteBuffer {
        try Compressor.decompress(buffer(input), codec: codec, maxOutputBytes: limit)
    }

    @Test(arguments: realCodecs)
    func truncatedInputIsCorrupt(codec: CompressionCodec) throws {
        let full = try Self.compressed(codec)
        for cut in [1, 7, full.count / 2, full.count - 1] {
            let error = expectCompressionError { try Self.decompress(Array(full.prefix(cut)), codec) }
            #expect(isCorrupt(error), "\(codec) cut at \(cut): \(String(describing: error))")
            #expect(error?.codec == codec)
        }
    }

    @Test(arguments: realCodecs)
    func emptyInputIsCorrupt(codec: CompressionCodec) throws {
        let error = expectCompressionError { try Self.decompress([], codec) }
        #expect(isCorrupt(error), "\(String(describing: error))")
    }

    @Test(arguments: realCodecs)
    func trailingGarbageIsCorrupt(codec: CompressionCodec) throws {
        let error = expectCompressionError { try Self.decompress(try Self.compressed(codec) + [0xDE, 0xAD, 0xBE, 0xEF], codec) }
        #expect(isCorrupt(error), "\(codec): \(String(describing: error))")
    }

    /// Flips at positions each format is guaranteed to notice (magic, lengths, checksums).
    @Test(arguments: [
        (CompressionCodec.gzip, "payload.gz", 0),  // gzip magic
        (.gzip, "payload.gz", 5000),  // deflate data: caught by the inflater or the CRC-32 trailer
        (.gzip, "payload.gz", -3),  // ISIZE trailer
        (.snappy, "payload.raw.snappy", 0),  // raw block's uncompressed-length varint
        (.snappy, "payload.xerial.snappy", 16),  // first chunk length: now larger than the input
        (.snappy, "payload.xerial.snappy", 20),  // chunk's raw block length varint
        (.lz4, "payload.kafka.lz4", 0),  // frame magic
        (.lz4, "payload.kafka.lz4", 4),  // frame descriptor: caught by the header checksum
        (.lz4, "payload.linked-checksums.lz4", 5000),  // block data: caught by the block checksum
        (.lz4, "payload.linked-checksums.lz4", -2),  // content checksum
        (.zstd, "payload.zst", 0),  // frame magic
        (.zstd, "payload.zst", 4),  // frame header descriptor
    ])
    func flippedBytesAreCorrupt(codec: CompressionCodec, file: String, position: Int) throws {
        var data = try fixture(file)
        let index = position >= 0 ? position : data.count + position
        data[index] ^= 0xFF
        let error = expectCompressionError { try Self.decompress(data, codec) }
        #expect(isCorrupt(error), "\(file) flipped at \(index): \(String(describing: error))")
    }

    /// Every single-byte flip and every truncation either fails with a CompressionError or yields
    /// output within the limit; none may crash or overrun.
    @Test(arguments: realCodecs)
    func exhaustiveSmallMutationsNeverCrash(codec: CompressionCodec) throws {
        let small = compressibleBytes(count: 600) + randomBytes(count: 100, seed: 9)
        let original = bytes(try Compressor.compress(buffer(small), codec: codec))
        var failures = 0
        for index in original.indices {
            for mask: UInt8 in [0x01, 0x80, 0xFF] {
                var mutated = original
                mutated[index] ^= mask
                do {
                    let out = try Self.decompress(mutated, codec, limit: 4096)
                    #expect(out.readableBytes <= 4096)
                } catch is CompressionError {
                    failures += 1
                }
            }
        }
        // Xerial framing has no end marker: a cut right after the header is an empty, valid stream.
        let undetectableCuts: Set<Int> = codec == .snappy ? [SnappyCodec.xerialHeaderSize] : []
        for cut in 0..<original.count where !undetectableCuts.contains(cut) {
            #expect(throws: CompressionError.self) { try Self.decompress(Array(original.prefix(cut)), codec) }
        }
        #expect(failures > 0)
    }

    @Test(arguments: realCodecs)
    func randomGarbageIsRejected(codec: CompressionCodec) throws {
        for seed in 0..<50 {
            let garbage = randomBytes(count: 10 + seed * 13, seed: UInt64(seed))
            do {
                let out = try Self.decompress(garbage, codec, limit: 1 << 16)
                #expect(out.readableBytes <= 1 << 16)
            } catch is CompressionError {}
        }
        // Raw snappy has no magic, so a few garbage inputs may decode; the others must not.
        if codec != .snappy {
            #expect(throws: CompressionError.self) { try Self.decompress(randomBytes(count: 64, seed: 99), codec) }
        }
    }

    @Test(arguments: realCodecs)
    func contextsRecoverAfterAnError(codec: CompressionCodec) throws {
        let good = try Self.compressed(codec)
        for _ in 0..<3 {
            #expect(throws: CompressionError.self) { try Self.decompress(Array(good.prefix(good.count / 2)), codec) }
            #expect(bytes(try Self.decompress(good, codec)) == Self.plaintext)
        }
    }

    @Test func xerialHeaderAloneIsEmptyButAShortHeaderIsCorrupt() throws {
        let header = SnappyCodec.xerialMagic + [0, 0, 0, 1, 0, 0, 0, 1]
        #expect(try Self.decompress(header, .snappy).readableBytes == 0)
        let error = expectCompressionError { try Self.decompress(Array(header.prefix(12)), .snappy) }
        #expect(error?.kind == .corrupt(reason: "truncated xerial header: 12 bytes, need 16"))
    }

    @Test func xerialNegativeChunkLengthIsCorrupt() throws {
        let data = SnappyCodec.xerialMagic + [0, 0, 0, 1, 0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xF0, 0x00]
        let error = expectCompressionError { try Self.decompress(data, .snappy) }
        #expect(isCorrupt(error))
        #expect(error?.description.contains("negative xerial chunk length") == true)
    }

    @Test func gzipErrorsCarryZlibsReason() throws {
        var data = try fixture("payload.gz")
        data[0] ^= 0xFF
        let error = expectCompressionError { try Self.decompress(data, .gzip) }
        #expect(error?.description == "gzip: corrupt compressed data: incorrect header check")
    }
}
