import NIOCore

/// Compresses and decompresses Kafka record-batch payloads with any of Kafka's codecs.
///
/// All output is written straight into `ByteBuffer` capacity, native contexts are pooled, and
/// decompression never produces or allocates more than the caller's `maxOutputBytes`.
/// Every thrown error is a ``CompressionError``.
public enum Compressor {
    /// Compresses `input`'s readable bytes in the form Kafka clients expect for `codec`.
    ///
    /// - gzip: one gzip member; `level` -1 (zlib default, 6) or 0...9.
    /// - snappy: xerial framing with 32 KiB blocks, readable by Java and librdkafka; `level` ignored.
    /// - lz4: one LZ4 frame with 64 KiB independent blocks; `level` 0...12 (3+ selects LZ4HC),
    ///   default 0 (fast).
    /// - zstd: one zstd frame with its content size; `level` `ZSTD_minCLevel()...ZSTD_maxCLevel()`,
    ///   default 3.
    /// - none: returns `input` unchanged.
    public static func compress(
        _ input: ByteBuffer,
        codec: CompressionCodec,
        level: Int? = nil,
        allocator: ByteBufferAllocator = .init()
    ) throws -> ByteBuffer {
        switch codec {
        case .none:
            return input
        case .gzip:
            try self.validate(level, GzipCodec.levels, codec)
        case .lz4:
            try self.validate(level, LZ4FrameCodec.levels, codec)
        case .zstd:
            try self.validate(level, ZstdCodec.levels, codec)
        case .snappy:
            break
        }
        var output = allocator.buffer(capacity: 0)
        try input.withUnsafeReadableBytes { bytes in
            switch codec {
            case .none: break
            case .gzip: try GzipCodec.compress(bytes, level: level, into: &output)
            case .snappy: try SnappyCodec.compress(bytes, into: &output)
            case .lz4: try LZ4FrameCodec.compress(bytes, level: level, into: &output)
            case .zstd: try ZstdCodec.compress(bytes, level: level, into: &output)
            }
        }
        return output
    }

    /// Decompresses `input`'s readable bytes, refusing to produce more than `maxOutputBytes`.
    ///
    /// Accepts what Kafka clients write: concatenated gzip members; xerial-framed or raw snappy
    /// (told apart by the xerial magic); concatenated LZ4 frames; concatenated zstd frames with or
    /// without content size. Trailing bytes that are not another member or frame are corrupt.
    ///
    /// - Throws: ``CompressionError`` with ``CompressionError/Kind/outputLimitExceeded(limit:)``
    ///   when the output would exceed `maxOutputBytes`, or ``CompressionError/Kind/corrupt(reason:)``
    ///   for malformed or truncated input.
    public static func decompress(
        _ input: ByteBuffer,
        codec: CompressionCodec,
        maxOutputBytes: Int,
        allocator: ByteBufferAllocator = .init()
    ) throws -> ByteBuffer {
        if codec == .none {
            guard input.readableBytes <= maxOutputBytes else {
                throw CompressionError(codec: codec, kind: .outputLimitExceeded(limit: max(0, maxOutputBytes)))
            }
            return input
        }
        return try input.withUnsafeReadableBytes { bytes in
            let hint = codec == .zstd ? ZstdCodec.contentSizeHint(bytes) : nil
            var output = BoundedOutput(
                codec: codec, limit: maxOutputBytes, inputBytes: bytes.count, sizeHint: hint, allocator: allocator)
            switch codec {
            case .none: break
            case .gzip: try GzipCodec.decompress(bytes, into: &output)
            case .snappy: try SnappyCodec.decompress(bytes, into: &output)
            case .lz4: try LZ4FrameCodec.decompress(bytes, into: &output)
            case .zstd: try ZstdCodec.decompress(bytes, into: &output)
            }
            return output.buffer
        }
    }

    private static func validate(_ level: Int?, _ range: ClosedRange<Int>, _ codec: CompressionCodec) throws {
        if let level, !range.contains(level) {
            throw CompressionError(codec: codec, kind: .invalidLevel(level, validRange: range))
        }
    }
}
