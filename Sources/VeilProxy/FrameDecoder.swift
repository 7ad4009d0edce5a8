import NIOCore
import VeilWire

/// Takes a frame's bytes as they arrive, instead of after the whole frame, when the frame
/// goes to the other side unchanged.
///
/// A store-and-forward proxy adds the time to receive a whole frame to every round trip
/// before the other side sees its first byte: a consumer with one Fetch in flight per broker
/// (librdkafka's way) pays it on every multi-megabyte Fetch, and every large Produce pays it
/// once more, after the client has paid it sending to Veil. Passed on as read, the bytes are
/// also never copied into a frame buffer.
protocol FrameCutThrough: AnyObject {
    /// Whether the frame of `size` bytes (after its size prefix) may be passed on as it
    /// arrives; `head` is what has arrived of it so far. When this returns true, every byte
    /// of the frame, size prefix included, goes to `cutThrough(_:last:)`.
    func beginCutThrough(size: Int, head: ByteBuffer) -> Bool
    /// The next bytes of the frame being passed on; `last` once the frame is complete.
    func cutThrough(_ bytes: ByteBuffer, last: Bool)
}

/// Cuts the inbound byte stream into Kafka frames; a bad size prefix is an error
/// that closes this connection only.
///
/// With a `cutThrough` receiver, a large frame that receiver accepts is handed on in pieces
/// as its bytes arrive rather than collected first.
final class KafkaFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    private let parser: FrameParser
    private let receiver: FrameCutThrough?
    /// Bytes of the frame being cut through that have not arrived yet.
    private var cutThroughRemaining = 0
    /// The receiver declined the frame now being collected; not asked again for it.
    private var declined = false
    /// Largest frame remainder reserved ahead of its bytes arriving.
    static let largestReservation = 16 << 20
    /// Frames smaller than this are collected whole: they mostly arrive in one read anyway,
    /// and their parsing is cheaper than the bookkeeping of cutting them through.
    static let cutThroughMinimum = 64 << 10
    /// Bytes of a frame that must have arrived before the receiver is asked: enough for any
    /// header it reads to decide, so a first read that happens to end early does not get the
    /// frame declined for good.
    static let cutThroughHead = 1024

    init(maxFrameBytes: Int, cutThrough receiver: FrameCutThrough? = nil) {
        parser = FrameParser(maxFrameBytes: maxFrameBytes)
        self.receiver = receiver
    }

    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if cutThroughRemaining > 0 {
            return passOn(&buffer)
        }
        guard let frame = try parser.next(from: &buffer) else {
            if try startCutThrough(&buffer) { return passOn(&buffer) }
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
        declined = false
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    /// Asks the receiver, once per frame, whether the incomplete frame at the reader index
    /// may be cut through; the size prefix has already been validated by the parser.
    private func startCutThrough(_ buffer: inout ByteBuffer) throws -> Bool {
        guard let receiver, !declined,
              let size = buffer.getInteger(at: buffer.readerIndex, as: Int32.self), Int(size) >= Self.cutThroughMinimum,
              buffer.readableBytes >= 4 + Self.cutThroughHead,
              let head = buffer.getSlice(at: buffer.readerIndex + 4, length: buffer.readableBytes - 4)
        else { return false }
        guard receiver.beginCutThrough(size: Int(size), head: head) else {
            declined = true
            return false
        }
        cutThroughRemaining = 4 + Int(size)
        return true
    }

    private func passOn(_ buffer: inout ByteBuffer) -> DecodingState {
        let count = min(cutThroughRemaining, buffer.readableBytes)
        guard count > 0, let bytes = buffer.readSlice(length: count) else { return .needMoreData }
        cutThroughRemaining -= count
        receiver?.cutThrough(bytes, last: cutThroughRemaining == 0)
        return .continue
    }

    func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        if cutThroughRemaining > 0 {
            throw WireError(.truncated(what: "frame at end of stream", needed: cutThroughRemaining, available: 0))
        }
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

    /// Writes one Kafka frame whose payload is `parts` one after the other (`size` bytes in all).
    func writeFrame(parts: [ByteBuffer], size: Int) {
        var prefix = allocator.buffer(capacity: 4)
        prefix.writeInteger(Int32(size))
        write(prefix, promise: nil)
        for part in parts { write(part, promise: nil) }
    }
}
