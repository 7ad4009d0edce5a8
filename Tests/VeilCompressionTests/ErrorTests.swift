import NIOCore
import Testing

@testable import VeilCompression

@Suite struct ErrorTests {
    @Test func codecComesFromTheLowThreeAttributeBits() throws {
        #expect(try CompressionCodec(batchAttributes: 0) == CompressionCodec.none)
        #expect(try CompressionCodec(batchAttributes: 0x0011) == .gzip)  // bit 4 (transactional) ignored
        #expect(try CompressionCodec(batchAttributes: 0x0032) == .snappy)
        #expect(try CompressionCodec(batchAttributes: 3) == .lz4)
        #expect(try CompressionCodec(batchAttributes: 0x7FFC) == .zstd)
    }

    @Test(arguments: [5, 6, 7] as [Int16])
    func unassignedCodecBitsAreUnsupported(raw: Int16) {
        let error = expectCompressionError { try CompressionCodec(batchAttributes: raw | 0x0010) }
        #expect(error?.kind == .unsupportedCodec(raw: UInt8(raw)))
        #expect(error?.codec == nil)
        #expect(error?.description == "unsupported compression codec \(raw) in record batch attributes (known: 0-4)")
    }

    @Test(arguments: [(CompressionCodec.gzip, 10), (.gzip, -2), (.lz4, 13), (.lz4, -1), (.zstd, 23)])
    func levelsOutsideTheCodecsRangeAreRefused(codec: CompressionCodec, level: Int) {
        let error = expectCompressionError { try Compressor.compress(buffer([1, 2, 3]), codec: codec, level: level) }
        guard case .invalidLevel(let reported, let range) = error?.kind else {
            Issue.record("expected invalidLevel, got \(String(describing: error))")
            return
        }
        #expect(reported == level)
        #expect(!range.contains(level))
        #expect(error?.description.hasPrefix("\(codec): compression level \(level) is outside the valid range") == true)
    }

    @Test func snappyAndNoneIgnoreLevels() throws {
        let input = buffer(compressibleBytes(count: 1000))
        #expect(try Compressor.compress(input, codec: .snappy, level: 99) == Compressor.compress(input, codec: .snappy))
        #expect(try Compressor.compress(input, codec: .none, level: 99) == input)
    }

    @Test func descriptionsNameCodecAndProblem() {
        #expect(
            CompressionError(codec: .lz4, kind: .corrupt(reason: "ERROR_frameType_unknown")).description
                == "lz4: corrupt compressed data: ERROR_frameType_unknown")
        #expect(
            CompressionError(codec: .zstd, kind: .libraryFailure("out of memory")).description
                == "zstd: native library failure: out of memory")
    }

    @Test func codecNamesMatchKafkaCompressionType() {
        #expect(CompressionCodec.allCases.map(\.description) == ["none", "gzip", "snappy", "lz4", "zstd"])
        #expect(CompressionCodec.allCases.map(\.rawValue) == [0, 1, 2, 3, 4])
    }
}
