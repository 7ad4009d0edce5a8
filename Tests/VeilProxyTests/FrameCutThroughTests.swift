import NIOCore
import NIOEmbedded
import Testing
import VeilWire

@testable import VeilProxy

/// The upstream frame reader hands a large response it may pass on unchanged to the
/// connection piece by piece as it arrives, and everything else as whole frames.
@Suite struct FrameCutThroughTests {
    /// Records what the decoder hands on; accepts or declines by `accept`.
    final class Receiver: FrameCutThrough {
        var accept: Bool
        var asked: [(correlationId: Int32, size: Int)] = []
        var pieces: [ByteBuffer] = []
        var lastFlags: [Bool] = []

        init(accept: Bool) { self.accept = accept }

        func beginCutThrough(size: Int, head: ByteBuffer) -> Bool {
            asked.append((head.getInteger(at: head.readerIndex, as: Int32.self) ?? -1, size))
            return accept
        }

        func cutThrough(_ bytes: ByteBuffer, last: Bool) {
            pieces.append(bytes)
            lastFlags.append(last)
        }

        var joined: [UInt8] { pieces.flatMap { Array($0.readableBytesView) } }
    }

    /// A size-prefixed frame: the correlation id, then `bodyBytes` bytes of a counting pattern.
    static func frame(correlationId: Int32, bodyBytes: Int) -> [UInt8] {
        var b = ByteBuffer()
        b.writeInteger(Int32(4 + bodyBytes))
        b.writeInteger(correlationId)
        b.writeBytes((0..<bodyBytes).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        return Array(b.readableBytesView)
    }

    private func channel(_ receiver: Receiver) throws -> EmbeddedChannel {
        let ch = EmbeddedChannel()
        try ch.pipeline.syncOperations.addHandler(
            ByteToMessageHandler(KafkaFrameDecoder(maxFrameBytes: 8 << 20, cutThrough: receiver)))
        return ch
    }

    private func send(_ ch: EmbeddedChannel, _ bytes: ArraySlice<UInt8>) throws {
        try ch.writeInbound(ByteBuffer(bytes: bytes))
    }

    @Test func largeAcceptedFrameIsPassedOnAsItArrivesThenWholeFramesResume() throws {
        let receiver = Receiver(accept: true)
        let ch = try channel(receiver)
        let big = Self.frame(correlationId: 42, bodyBytes: 300_000)
        let small = Self.frame(correlationId: 43, bodyBytes: 10)
        try send(ch, big[0..<6])
        // Too little to judge the frame by: not asked yet, and not declined either.
        #expect(receiver.asked.isEmpty)
        try send(ch, big[6..<2000])
        // The first 2000 bytes are on their way before the other 298,008 exist.
        #expect(receiver.asked.count == 1)
        #expect(receiver.asked.first?.correlationId == 42 && receiver.asked.first?.size == 300_004)
        #expect(receiver.joined == Array(big[0..<2000]))
        #expect(receiver.lastFlags == [false])
        try send(ch, big[2000..<200_000])
        // The rest of the large frame and a whole small frame in one read.
        try send(ch, big[200_000...] + small)
        #expect(receiver.joined == big)
        #expect(receiver.lastFlags == [false, false, true])
        #expect(receiver.asked.count == 1)
        var whole = try #require(try ch.readInbound(as: ByteBuffer.self))
        #expect(whole.readInteger(as: Int32.self) == 43)
        #expect(try ch.readInbound(as: ByteBuffer.self) == nil)
        #expect(try ch.finish().isClean)
    }

    @Test func declinedFrameIsCollectedWholeAndAskedAboutOnce() throws {
        let receiver = Receiver(accept: false)
        let ch = try channel(receiver)
        let big = Self.frame(correlationId: 7, bodyBytes: 100_000)
        for start in stride(from: 0, to: big.count, by: 9_000) {
            try send(ch, big[start..<min(start + 9_000, big.count)])
        }
        #expect(receiver.asked.count == 1)
        #expect(receiver.pieces.isEmpty)
        let whole = try #require(try ch.readInbound(as: ByteBuffer.self))
        #expect(Array(whole.readableBytesView) == Array(big[4...]))
        // The next large frame is asked about again.
        receiver.accept = true
        let next = Self.frame(correlationId: 8, bodyBytes: 100_000)
        try send(ch, next[0..<70_000])
        #expect(receiver.asked.map(\.correlationId) == [7, 8])
        #expect(receiver.joined == Array(next[0..<70_000]))
        try send(ch, next[70_000...])
        #expect(receiver.joined == next)
        #expect(try ch.finish().isClean)
    }

    @Test func smallFramesAreNeverCutThrough() throws {
        let receiver = Receiver(accept: true)
        let ch = try channel(receiver)
        let frame = Self.frame(correlationId: 1, bodyBytes: KafkaFrameDecoder.cutThroughMinimum - 100)
        for start in stride(from: 0, to: frame.count, by: 1_000) {
            try send(ch, frame[start..<min(start + 1_000, frame.count)])
        }
        #expect(receiver.asked.isEmpty)
        #expect(try ch.readInbound(as: ByteBuffer.self)?.readableBytes == frame.count - 4)
        #expect(try ch.finish().isClean)
    }

    @Test func streamEndingInsideACutThroughFrameIsATruncationError() throws {
        let receiver = Receiver(accept: true)
        let ch = try channel(receiver)
        let big = Self.frame(correlationId: 5, bodyBytes: 80_000)
        try send(ch, big[0..<50_000])
        #expect(throws: WireError.self) { try ch.finish() }
        #expect(receiver.lastFlags.allSatisfy { !$0 })
    }

    @Test func oversizedFrameIsRefusedBeforeAnyByteIsPassedOn() throws {
        let receiver = Receiver(accept: true)
        let ch = EmbeddedChannel()
        try ch.pipeline.syncOperations.addHandler(
            ByteToMessageHandler(KafkaFrameDecoder(maxFrameBytes: 100_000, cutThrough: receiver)))
        let big = Self.frame(correlationId: 5, bodyBytes: 200_000)
        #expect(throws: WireError.self) { try send(ch, big[0..<10_000]) }
        #expect(receiver.asked.isEmpty && receiver.pieces.isEmpty)
        _ = try? ch.finish()
    }
}
