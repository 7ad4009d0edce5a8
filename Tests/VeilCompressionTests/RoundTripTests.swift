import NIOCore
import Testing

@testable import VeilCompression

@Suite struct RoundTripTests {
    static let inputs: [(name: String, bytes: [UInt8])] = [
        ("empty", []),
        ("one byte", [0x2A]),
        ("1 MiB compressible", compressibleBytes(count: 1 << 20)),
        ("1 MiB random", randomBytes(count: 1 << 20, seed: 7)),
        ("3 bytes over a block", compressibleBytes(count: 64 * 1024 + 3)),
    ]

    @Test(arguments: CompressionCodec.allCases)
    func roundTripsEverySize(codec: CompressionCodec) throws {
        for input in Self.inputs {
            let compressed = try Compressor.compress(buffer(input.bytes), codec: codec)
            let restored = try Compressor.decompress(compressed, codec: codec, maxOutputBytes: input.bytes.count)
            #expect(bytes(restored) == input.bytes, "\(codec) \(input.name)")
        }
    }

    @Test(arguments: realCodecs)
    func compressibleInputShrinks(codec: CompressionCodec) throws {
        let input = compressibleBytes(count: 1 << 20)
        let compressed = try Compressor.compress(buffer(input), codec: codec)
        #expect(compressed.readableBytes < input.count / 3, "\(codec): \(compressed.readableBytes) bytes")
    }

    @Test(arguments: [
        (CompressionCodec.gzip, [-1, 0, 1, 9]),
        (.lz4, [0, 1, 3, 9, 12]),
        (.zstd, [-5, 1, 3, 10]),
    ])
    func roundTripsAtEveryLevel(codec: CompressionCodec, levels: [Int]) throws {
        let input = compressibleBytes(count: 200_000)
        var sizes: [Int] = []
        for level in levels {
            let compressed = try Compressor.compress(buffer(input), codec: codec, level: level)
            sizes.append(compressed.readableBytes)
            let restored = try Compressor.decompress(compressed, codec: codec, maxOutputBytes: input.count)
            #expect(bytes(restored) == input, "\(codec) level \(level)")
        }
        // Levels must reach the library: the strongest level beats the weakest.
        #expect(sizes.last! < sizes.first!, "\(codec) sizes by level: \(sizes)")
    }

    @Test func gzipLevelChangesOnAReusedContext() throws {
        // The pooled deflate stream is reconfigured per call; a stale level would show as equal sizes.
        let input = buffer(compressibleBytes(count: 300_000))
        let fast1 = try Compressor.compress(input, codec: .gzip, level: 1)
        let best = try Compressor.compress(input, codec: .gzip, level: 9)
        let fast2 = try Compressor.compress(input, codec: .gzip, level: 1)
        #expect(best.readableBytes < fast1.readableBytes)
        #expect(fast1 == fast2)
    }

    @Test(arguments: realCodecs)
    func onlyReadableBytesAreUsed(codec: CompressionCodec) throws {
        var input = buffer(Array("HEADER".utf8) + compressibleBytes(count: 5000))
        input.moveReaderIndex(forwardBy: 6)
        let compressed = try Compressor.compress(input, codec: codec)
        var framed = buffer(Array("junk".utf8))
        framed.writeImmutableBuffer(compressed)
        framed.moveReaderIndex(forwardBy: 4)
        let restored = try Compressor.decompress(framed, codec: codec, maxOutputBytes: 1 << 20)
        #expect(bytes(restored) == compressibleBytes(count: 5000))
    }

    @Test func noneCodecPassesBytesThroughButStillHonoursTheLimit() throws {
        let input = buffer(randomBytes(count: 100, seed: 1))
        #expect(try Compressor.compress(input, codec: .none) == input)
        #expect(try Compressor.decompress(input, codec: .none, maxOutputBytes: 100) == input)
        let error = expectCompressionError { try Compressor.decompress(input, codec: .none, maxOutputBytes: 99) }
        #expect(isLimitExceeded(error, limit: 99))
    }

    @Test func snappyOutputIsXerialFramedInThirtyTwoKiBBlocks() throws {
        let input = compressibleBytes(count: 70_000)
        let out = bytes(try Compressor.compress(buffer(input), codec: .snappy))
        #expect(Array(out.prefix(16)) == [0x82, 0x53, 0x4E, 0x41, 0x50, 0x50, 0x59, 0x00, 0, 0, 0, 1, 0, 0, 0, 1])
        // Walk the chunks: 70,000 bytes in 32 KiB blocks is three chunks.
        var offset = 16
        var chunks = 0
        while offset < out.count {
            let length = out[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) }
            offset += 4 + length
            chunks += 1
        }
        #expect(offset == out.count)
        #expect(chunks == 3)
    }

    @Test func lz4OutputUsesKafkasFrameSettings() throws {
        let out = bytes(try Compressor.compress(buffer(compressibleBytes(count: 1000)), codec: .lz4))
        #expect(Array(out.prefix(4)) == [0x04, 0x22, 0x4D, 0x18])
        // FLG: version 01, block independence set, no checksums, no content size.
        #expect(out[4] == 0b0110_0000)
        // BD: 64 KiB maximum block size.
        #expect(out[5] == 0x40)
    }

    @Test func concurrentUseOfPooledContextsIsIsolated() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<16 {
                group.addTask {
                    let codec = realCodecs[task % realCodecs.count]
                    for round in 0..<20 {
                        let input = randomBytes(count: 1000 + round * 37, seed: UInt64(task * 100 + round))
                            + compressibleBytes(count: 3000)
                        let compressed = try Compressor.compress(buffer(input), codec: codec)
                        let restored = try Compressor.decompress(compressed, codec: codec, maxOutputBytes: input.count)
                        #expect(bytes(restored) == input)
                    }
                }
            }
            try await group.waitForAll()
        }
    }
}
