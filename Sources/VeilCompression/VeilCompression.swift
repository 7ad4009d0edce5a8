// Temporary interface stub until the compression branch lands; replaced by the real module.
import NIOCore

public enum CompressionCodec: UInt8, Sendable, CaseIterable { case none = 0, gzip = 1, snappy = 2, lz4 = 3, zstd = 4 }

public struct CompressionError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

public enum Compressor {
    public static func compress(_ input: ByteBuffer, codec: CompressionCodec, level: Int? = nil, allocator: ByteBufferAllocator = .init()) throws -> ByteBuffer {
        guard codec == .none else { throw CompressionError(description: "codec \(codec) not available yet") }
        return input
    }
    public static func decompress(_ input: ByteBuffer, codec: CompressionCodec, maxOutputBytes: Int, allocator: ByteBufferAllocator = .init()) throws -> ByteBuffer {
        guard codec == .none else { throw CompressionError(description: "codec \(codec) not available yet") }
        return input
    }
}
