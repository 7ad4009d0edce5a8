import CLZ4
import NIOCore

/// An owned LZ4 frame decompression context.
final class LZ4DecompressionContext: @unchecked Sendable {
    // @unchecked: only ever used by the single holder that checked it out of a ContextPool.
    let context: OpaquePointer

    init() throws {
        var context: OpaquePointer?
        let rc = LZ4F_createDecompressionContext(&context, UInt32(LZ4F_VERSION))
        guard LZ4F_isError(rc) == 0, let context else {
            throw CompressionError.library(.lz4, "cannot create decompression context")
        }
        self.context = context
    }

    deinit { LZ4F_freeDecompressionContext(self.context) }
}

/// An owned LZ4 frame compression context.
final class LZ4CompressionContext: @unchecked Sendable {
    // @unchecked: only ever used by the single holder that checked it out of a ContextPool.
    let context: OpaquePointer

    init() throws {
        var context: OpaquePointer?
        let rc = LZ4F_createCompressionContext(&context, UInt32(LZ4F_VERSION))
        guard LZ4F_isError(rc) == 0, let context else {
            throw CompressionError.library(.lz4, "cannot create compression context")
        }
        self.context = context
    }

    deinit { LZ4F_freeCompressionContext(self.context) }
}

/// The LZ4 frame format, which Kafka uses for lz4 batches since message format v2.
enum LZ4FrameCodec {
    /// liblz4's range: below 3 is the fast compressor, 3 and above is LZ4HC.
    static let levels: ClosedRange<Int> = 0...12
    private static let decompressors = ContextPool { try LZ4DecompressionContext() }
    private static let compressors = ContextPool { try LZ4CompressionContext() }

    /// Mirrors Kafka's own Java writer: 64 KiB independent blocks, no checksums, no content size.
    /// Java consumers decode with Kafka's `KafkaLZ4BlockInputStream`, which does not support linked
    /// blocks, so this is the form every client can read.
    private static func preferences(level: Int32) -> LZ4F_preferences_t {
        var preferences = LZ4F_preferences_t()
        preferences.frameInfo.blockSizeID = LZ4F_max64KB
        preferences.frameInfo.blockMode = LZ4F_blockIndependent
        preferences.frameInfo.contentChecksumFlag = LZ4F_noContentChecksum
        preferences.frameInfo.blockChecksumFlag = LZ4F_noBlockChecksum
        preferences.compressionLevel = level
        // Without autoFlush, LZ4F copies a partial block into its own buffer before compressing it.
        preferences.autoFlush = 1
        return preferences
    }

    static func compress(_ input: UnsafeRawBufferPointer, level: Int?, into output: inout ByteBuffer) throws {
        var preferences = self.preferences(level: Int32(level ?? 0))
        let bound = Int(LZ4F_HEADER_SIZE_MAX) + LZ4F_compressBound(input.count, &preferences)
        try self.compressors.withContext { compressor in
            try output.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { region in
                let out = region.baseAddress!
                var written = try check(LZ4F_compressBegin(compressor.context, out, region.count, &preferences))
                if input.count > 0 {
                    written += try check(
                        LZ4F_compressUpdate(
                            compressor.context, out + written, region.count - written,
                            input.baseAddress!, input.count, nil))
                }
                written += try check(LZ4F_compressEnd(compressor.context, out + written, region.count - written, nil))
                return written
            }
        }
    }

    static func decompress(_ input: UnsafeRawBufferPointer, into output: inout BoundedOutput) throws {
        guard let base = input.baseAddress, input.count > 0 else {
            throw CompressionError.corrupt(.lz4, "empty input (an LZ4 frame is at least 7 bytes)")
        }
        try self.decompressors.withContext { decompressor in
            LZ4F_resetDecompressionContext(decompressor.context)
            var offset = 0
            // 0 once the current frame is complete; otherwise LZ4F's hint of input still needed.
            var pending = 1
            while offset < input.count || pending != 0 {
                var consumed = 0
                var produced = 0
                try output.step { region in
                    var sourceSize = input.count - offset
                    var destinationSize = region.count
                    let rc = LZ4F_decompress(
                        decompressor.context, region.baseAddress, &destinationSize,
                        base + offset, &sourceSize, nil)
                    if LZ4F_isError(rc) != 0 {
                        throw CompressionError.corrupt(.lz4, String(cString: LZ4F_getErrorName(rc)))
                    }
                    pending = rc
                    consumed = sourceSize
                    produced = destinationSize
                    return destinationSize
                }
                offset += consumed
                // After a completed frame, any remaining input is the next concatenated frame,
                // which the context starts on by itself.
                if consumed == 0 && produced == 0 && pending != 0 {
                    throw CompressionError.corrupt(.lz4, "truncated: input ended inside an LZ4 frame")
                }
            }
        }
    }

    private static func check(_ rc: Int) throws -> Int {
        guard LZ4F_isError(rc) == 0 else {
            throw CompressionError.library(.lz4, String(cString: LZ4F_getErrorName(rc)))
        }
        return rc
    }
}
