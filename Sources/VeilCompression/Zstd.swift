import CZstd
import NIOCore

/// An owned zstd decompression context.
final class ZstdDecompressionContext: @unchecked Sendable {
    // @unchecked: only ever used by the single holder that checked it out of a ContextPool.
    let context: OpaquePointer

    init() throws {
        guard let context = ZSTD_createDCtx() else {
            throw CompressionError.library(.zstd, "cannot create decompression context")
        }
        self.context = context
    }

    deinit { ZSTD_freeDCtx(self.context) }
}

/// An owned zstd compression context.
final class ZstdCompressionContext: @unchecked Sendable {
    // @unchecked: only ever used by the single holder that checked it out of a ContextPool.
    let context: OpaquePointer

    init() throws {
        guard let context = ZSTD_createCCtx() else {
            throw CompressionError.library(.zstd, "cannot create compression context")
        }
        self.context = context
    }

    deinit { ZSTD_freeCCtx(self.context) }
}

/// zstd frames, possibly several concatenated, with or without a content size.
///
/// Decompression always streams: Java's zstd-jni writes frames without a content size, and a
/// size that is present is only a claim. The decoder's window is capped by zstd's default
/// `windowLogMax` (128 MiB, what Kafka's own brokers accept); that memory is only touched as
/// output is produced, which the output limit bounds.
enum ZstdCodec {
    static var levels: ClosedRange<Int> { Int(ZSTD_minCLevel())...Int(ZSTD_maxCLevel()) }
    private static let decompressors = ContextPool { try ZstdDecompressionContext() }
    private static let compressors = ContextPool { try ZstdCompressionContext() }

    /// zstd's "unknown" and "error" answers from `ZSTD_getFrameContentSize`.
    private static let contentSizeUnknownOrError: UInt64 = UInt64.max - 1

    static func compress(_ input: UnsafeRawBufferPointer, level: Int?, into output: inout ByteBuffer) throws {
        let level = Int32(level ?? Int(ZSTD_CLEVEL_DEFAULT))
        let bound = ZSTD_compressBound(input.count)
        try self.compressors.withContext { compressor in
            // Parameters are sticky on a reused context, so the level is set on every call.
            let rc = ZSTD_CCtx_setParameter(compressor.context, ZSTD_c_compressionLevel, level)
            try check(rc)
            try output.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { region in
                try check(
                    ZSTD_compress2(compressor.context, region.baseAddress, region.count, input.baseAddress, input.count))
            }
        }
    }

    static func contentSizeHint(_ input: UnsafeRawBufferPointer) -> Int? {
        guard let base = input.baseAddress else { return nil }
        let size = ZSTD_getFrameContentSize(base, input.count)
        guard size < contentSizeUnknownOrError, size <= UInt64(Int.max) else { return nil }
        return Int(size)
    }

    static func decompress(_ input: UnsafeRawBufferPointer, into output: inout BoundedOutput) throws {
        guard input.count > 0 else {
            throw CompressionError.corrupt(.zstd, "empty input (a zstd frame is at least 9 bytes)")
        }
        try self.decompressors.withContext { decompressor in
            try check(ZSTD_DCtx_reset(decompressor.context, ZSTD_reset_session_only))
            var source = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
            // 0 once the current frame is decoded and flushed; otherwise zstd wants more input.
            var pending = 1
            while source.pos < source.size || pending != 0 {
                let consumedBefore = source.pos
                var produced = 0
                try output.step { region in
                    var destination = ZSTD_outBuffer(dst: region.baseAddress, size: region.count, pos: 0)
                    let rc = ZSTD_decompressStream(decompressor.context, &destination, &source)
                    if ZSTD_isError(rc) != 0 {
                        throw CompressionError.corrupt(.zstd, String(cString: ZSTD_getErrorName(rc)))
                    }
                    pending = rc
                    produced = destination.pos
                    return destination.pos
                }
                // After a completed frame the context begins the next concatenated frame itself.
                if source.pos == consumedBefore && produced == 0 && pending != 0 {
                    throw CompressionError.corrupt(.zstd, "truncated: input ended inside a zstd frame")
                }
            }
        }
    }

    @discardableResult
    private static func check(_ rc: Int) throws -> Int {
        guard ZSTD_isError(rc) == 0 else {
            throw CompressionError.library(.zstd, String(cString: ZSTD_getErrorName(rc)))
        }
        return rc
    }
}
