import NIOCore
import Testing

@testable import VeilCompression

@Suite struct BombTests {
    static let hundredMegabytesOfZeros = ByteBuffer(repeating: 0, count: 100_000_000)
    static let oneMiB = 1 << 20

    @Test(arguments: realCodecs)
    func hundredMegabytesOfZerosStopsAtTheLimit(codec: CompressionCodec) throws {
        let bomb = try Compressor.compress(Self.hundredMegabytesOfZeros, codec: codec)
        #expect(bomb.readableBytes < 5_000_000)
        let error = expectCompressionError {
            try Compressor.decompress(bomb, codec: codec, maxOutputBytes: Self.oneMiB)
        }
        #expect(isLimitExceeded(error, limit: Self.oneMiB), "\(codec): \(String(describing: error))")
        #expect(error?.description == "\(codec): decompressed data exceeds the limit of 1048576 bytes (possible decompression bomb)")
    }

    /// The limit is inclusive: exactly `limit` bytes decode, one more is refused. Streaming
    /// decoders reach the limit before they have read the trailer, so this also checks the trailer
    /// is still consumed once the buffer is full.
    @Test(arguments: realCodecs)
    func limitIsExact(codec: CompressionCodec) throws {
        let expected = try fixture("payload.txt")
        let compressed = try Compressor.compress(buffer(expected), codec: codec)
        let restored = try Compressor.decompress(compressed, codec: codec, maxOutputBytes: expected.count)
        #expect(bytes(restored) == expected)
        let error = expectCompressionError {
            try Compressor.decompress(compressed, codec: codec, maxOutputBytes: expected.count - 1)
        }
        #expect(isLimitExceeded(error, limit: expected.count - 1))
        let zero = expectCompressionError { try Compressor.decompress(compressed, codec: codec, maxOutputBytes: 0) }
        #expect(isLimitExceeded(zero, limit: 0))
    }

    @Test(arguments: [("payload.multi.gz", CompressionCodec.gzip), ("payload.multi.zst", .zstd)])
    func limitCountsEveryConcatenatedMember(file: String, codec: CompressionCodec) throws {
        let expected = try fixture("payload.txt")
        let error = expectCompressionError {
            try Compressor.decompress(buffer(try fixture(file)), codec: codec, maxOutputBytes: expected.count - 1)
        }
        #expect(isLimitExceeded(error, limit: expected.count - 1))
    }

    @Test func rawSnappyBombIsRefusedBeforeDecoding() throws {
        let bomb = buffer(Self.rawSnappyZeros(count: 100_000_000))
        let error = expectCompressionError {
            try Compressor.decompress(bomb, codec: .snappy, maxOutputBytes: Self.oneMiB)
        }
        #expect(isLimitExceeded(error, limit: Self.oneMiB))
        // The hand-built block is valid: with room it decodes to the zeros it claims.
        let small = try Compressor.decompress(
            buffer(Self.rawSnappyZeros(count: 3_000_000)), codec: .snappy, maxOutputBytes: 3_000_000)
        #expect(small.readableBytesView.allSatisfy { $0 == 0 })
        #expect(small.readableBytes == 3_000_000)
    }

    @Test func snappyLengthThatCannotBeHonestIsCorruptNotAnAllocation() throws {
        // 10 bytes cannot encode 100 MB; the claim is rejected without trusting it for allocation.
        let liar = Self.varint(100_000_000) + [0x00, 0x00, 0xFE, 0x01, 0x00]
        let error = expectCompressionError {
            try Compressor.decompress(buffer(liar), codec: .snappy, maxOutputBytes: 200_000_000)
        }
        #expect(isCorrupt(error), "\(String(describing: error))")
    }

    @Test(arguments: [UInt64(1) << 40, 50_000_000])
    func zstdContentSizeClaimIsNotTrustedForAllocation(claimed: UInt64) throws {
        // A single-segment frame claiming `claimed` bytes but holding one 100-byte RLE block. With
        // a limit far above the claim, trusting it for the first reservation would try to allocate
        // a terabyte; instead the mismatch must surface as corruption.
        let sizeField = (0..<8).map { UInt8(truncatingIfNeeded: claimed >> (8 * UInt64($0))) }
        let frame: [UInt8] = [0x28, 0xB5, 0x2F, 0xFD, 0xE0] + sizeField + [0x23, 0x03, 0x00, 0x41]
        #expect(frame.withUnsafeBytes { ZstdCodec.contentSizeHint($0) } == Int(claimed))
        let error = expectCompressionError {
            try Compressor.decompress(buffer(frame), codec: .zstd, maxOutputBytes: 1 << 41)
        }
        #expect(isCorrupt(error), "\(String(describing: error))")
    }

    // MARK: helpers

    static func varint(_ value: Int) -> [UInt8] {
        var value = value
        var out: [UInt8] = []
        while value >= 0x80 {
            out.append(UInt8(value & 0x7F) | 0x80)
            value >>= 7
        }
        out.append(UInt8(value))
        return out
    }

    /// A raw snappy block of `count` zeros: one literal zero, then 64-byte copies at offset 1,
    /// the densest encoding the format allows (about 21x).
    static func rawSnappyZeros(count: Int) -> [UInt8] {
        var out = varint(count) + [0x00, 0x00]  // literal tag (length 1), the byte 0
        var remaining = count - 1
        out.reserveCapacity(out.count + remaining / 64 * 3 + 3)
        while remaining > 0 {
            let length = min(64, remaining)
            if length >= 4 {
                out += [UInt8((length - 1) << 2 | 2), 0x01, 0x00]
            } else {
                out += [UInt8((length - 1) << 2), 0x00]  // literal zeros for a short tail
                out += Array(repeating: 0, count: length - 1)
            }
            remaining -= length
        }
        return out
    }
}
