import NIOCore
import VeilWire

/// Cuts the inbound byte stream into Kafka frames; a bad size prefix is an error
/// that closes this connection only.
final class KafkaFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    private let parser: FrameParser
    /// Largest frame remainder reserved ahead of its bytes arriving.
    static let largestReservation = 16 << 20

    init(maxFrameBytes: Int) {
        parser = FrameParser(maxFrameBytes: maxFrameBytes)
    }

    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try parser.next(from: &buffer) else {
            // A large frame arrives in many reads, each appended to this buffer; growing it
            // by doubling copies what is already there every time. Once the size prefix is
            // known (and validated by `next`), make room for the whole frame at once.
            // The reservation is capped so a peer announcing a huge frame without sending it
            // does not get that much memory set aside for four bytes.
            if let size = buffer.getInteger(at: buffer.readerIndex, as: Int32.self) {
                let missing = 4 + Int(size) - buffer.readableBytes
                buffer.reserveCapacity(minimumWritableBytes: min(missing, Self.largestReservation))
            }
            return .needMoreData
        }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        if buffer.readableBytes > 0 {
            throw WireError(.truncated(what: "frame at end of stream", needed: 4, available: buffer.readableBytes))
        }
        return .needMoreData
    }
}

extension Channel {
    /// Writes one Kafka frame: a size prefix and the payload, gathered into one write.
    func writeFrame(_ payload: ByteBuffer) {
        var size = allocator.buffer(capacity: 4)
        size.writeInteger(Int32(payload.readableBytes))
        write(size, promise: nil)
        write(payload, promise: nil)
    }
}
