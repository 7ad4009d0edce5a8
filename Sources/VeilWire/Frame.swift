import NIOCore

/// Splits a byte stream into Kafka frames (an int32 size, then that many bytes).
///
/// A hostile or confused peer can announce any size, so the size is checked before
/// anything is allocated or buffered for it.
public struct FrameParser: Sendable {
    /// The default largest frame accepted: 100 MiB.
    public static let defaultMaxFrameBytes = 100 * 1024 * 1024

    public var maxFrameBytes: Int

    public init(maxFrameBytes: Int = FrameParser.defaultMaxFrameBytes) {
        self.maxFrameBytes = maxFrameBytes
    }

    /// Validates a size prefix; throws a typed error naming the size.
    public func validate(size: Int32) throws {
        if size < 0 { throw WireError(.negativeFrameSize(size)) }
        // A TLS record header is 0x16 (handshake), 0x03 (major), 0x0X (minor), then a length:
        // read as an int32 that is 0x1603_0XYY, far above any sane limit.
        if UInt32(bitPattern: size) & 0xFFFF_F000 == 0x1603_0000 && Int(size) > maxFrameBytes {
            throw WireError(.tlsOnPlaintextPort(size: Int(size)))
        }
        if Int(size) > maxFrameBytes { throw WireError(.frameTooLarge(size: Int(size), limit: maxFrameBytes)) }
    }

    /// Returns the next complete frame's payload (without its size prefix), or nil if
    /// more bytes are needed. `buffer` is advanced past a returned frame only.
    public func next(from buffer: inout ByteBuffer) throws -> ByteBuffer? {
        guard let size = buffer.getInteger(at: buffer.readerIndex, as: Int32.self) else { return nil }
        try validate(size: size)
        guard buffer.readableBytes >= 4 + Int(size) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        return buffer.readSlice(length: Int(size))
    }

    /// Writes a frame: the payload's size, then the payload.
    public static func write(_ payload: ByteBuffer, to buffer: inout ByteBuffer) {
        buffer.writeInteger(Int32(payload.readableBytes))
        buffer.writeImmutableBuffer(payload)
    }
}
