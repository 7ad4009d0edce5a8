import CZlib
import NIOCore

/// An owned zlib stream configured for the gzip container.
///
/// The `z_stream` lives on the heap because zlib stores a back-pointer to it and rejects a stream
/// that has moved; a Swift local offers no such address stability.
final class ZlibStream: @unchecked Sendable {
    // @unchecked: only ever used by the single holder that checked it out of a ContextPool.
    let stream: UnsafeMutablePointer<z_stream>
    private let inflating: Bool
    /// The level a deflating stream is currently configured for.
    var level: Int32

    /// `windowBits` of 15 + 16 selects gzip framing (RFC 1952) with the largest window.
    private static let gzipWindowBits: Int32 = 15 + 16

    private init(inflating: Bool, level: Int32) throws {
        self.inflating = inflating
        self.level = level
        self.stream = .allocate(capacity: 1)
        self.stream.initialize(to: z_stream())
        let size = Int32(MemoryLayout<z_stream>.size)
        let rc =
            inflating
            ? inflateInit2_(self.stream, Self.gzipWindowBits, ZLIB_VERSION, size)
            : deflateInit2_(
                self.stream, level, Z_DEFLATED, Self.gzipWindowBits, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, size)
        guard rc == Z_OK else {
            self.stream.deinitialize(count: 1)
            self.stream.deallocate()
            throw CompressionError.library(.gzip, "zlib stream initialisation failed (\(rc))")
        }
    }

    static func inflater() throws -> ZlibStream { try ZlibStream(inflating: true, level: 0) }
    static func deflater() throws -> ZlibStream { try ZlibStream(inflating: false, level: Z_DEFAULT_COMPRESSION) }

    deinit {
        if self.inflating { inflateEnd(self.stream) } else { deflateEnd(self.stream) }
        self.stream.deinitialize(count: 1)
        self.stream.deallocate()
    }
}

/// gzip (RFC 1952) as Kafka uses it: one or more concatenated members.
enum GzipCodec {
    static let levels: ClosedRange<Int> = -1...9
    private static let inflaters = ContextPool { try ZlibStream.inflater() }
    private static let deflaters = ContextPool { try ZlibStream.deflater() }

    static func compress(_ input: UnsafeRawBufferPointer, level: Int?, into output: inout ByteBuffer) throws {
        let level = Int32(level ?? Int(Z_DEFAULT_COMPRESSION))
        guard input.count <= UInt32.max else {
            throw CompressionError.library(.gzip, "input of \(input.count) bytes exceeds zlib's 4 GiB call limit")
        }
        try self.deflaters.withContext { deflater in
            let stream = deflater.stream
            guard deflateReset(stream) == Z_OK else { throw CompressionError.library(.gzip, "deflateReset failed") }
            if deflater.level != level {
                // Right after a reset no data is pending, so changing parameters cannot flush anything.
                guard deflateParams(stream, level, Z_DEFAULT_STRATEGY) == Z_OK else {
                    throw CompressionError.library(.gzip, "deflateParams(\(level)) failed")
                }
                deflater.level = level
            }
            // deflateBound is the worst case for a single Z_FINISH call, so one call suffices.
            let bound = Int(deflateBound(stream, uLong(input.count)))
            try output.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { region in
                stream.pointee.next_in = UnsafeMutablePointer(
                    mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
                stream.pointee.avail_in = uInt(input.count)
                stream.pointee.next_out = region.baseAddress!.assumingMemoryBound(to: Bytef.self)
                stream.pointee.avail_out = uInt(clamping: region.count)
                let rc = deflate(stream, Z_FINISH)
                guard rc == Z_STREAM_END else {
                    throw CompressionError.library(.gzip, "deflate did not finish (\(rc))")
                }
                return Int(stream.pointee.total_out)
            }
        }
    }

    static func decompress(_ input: UnsafeRawBufferPointer, into output: inout BoundedOutput) throws {
        guard let base = input.baseAddress, input.count > 0 else {
            throw CompressionError.corrupt(.gzip, "empty input (a gzip member is at least 18 bytes)")
        }
        guard input.count <= UInt32.max else {
            throw CompressionError.corrupt(.gzip, "input of \(input.count) bytes is larger than any Kafka batch")
        }
        try self.inflaters.withContext { inflater in
            let stream = inflater.stream
            guard inflateReset(stream) == Z_OK else { throw CompressionError.library(.gzip, "inflateReset failed") }
            stream.pointee.next_in = UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: Bytef.self))
            stream.pointee.avail_in = uInt(input.count)
            while true {
                var rc = Z_OK
                try output.step { region in
                    let capacity = uInt(clamping: region.count)
                    stream.pointee.next_out = region.baseAddress!.assumingMemoryBound(to: Bytef.self)
                    stream.pointee.avail_out = capacity
                    rc = inflate(stream, Z_NO_FLUSH)
                    return Int(capacity - stream.pointee.avail_out)
                }
                switch rc {
                case Z_OK:
                    continue
                case Z_STREAM_END:
                    if stream.pointee.avail_in == 0 { return }
                    // Kafka producers may concatenate members; each starts a fresh inflate.
                    // inflateReset leaves next_in/avail_in alone, so decoding resumes at the next member.
                    guard inflateReset(stream) == Z_OK else {
                        throw CompressionError.library(.gzip, "inflateReset failed")
                    }
                case Z_BUF_ERROR:
                    // Output space was offered, so no progress means the input ran out mid-member.
                    throw CompressionError.corrupt(.gzip, "truncated: input ended inside a gzip member")
                case Z_NEED_DICT:
                    throw CompressionError.corrupt(.gzip, "stream requires a preset dictionary")
                case Z_MEM_ERROR:
                    throw CompressionError.library(.gzip, "zlib ran out of memory")
                default:
                    let detail = stream.pointee.msg.map { String(cString: $0) } ?? "zlib error \(rc)"
                    throw CompressionError.corrupt(.gzip, detail)
                }
            }
        }
    }
}
