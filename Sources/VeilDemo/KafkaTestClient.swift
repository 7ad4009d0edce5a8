import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import VeilWire

/// A small Kafka client built on Veil's own codec, used by `veil demo` to create the
/// topic, produce and fetch. It speaks to a single broker (or sidecar) address.
public final class MiniKafkaClient: Sendable {
    private let channel: Channel
    private let pending: NIOLockedValueBox<[Int32: EventLoopPromise<ByteBuffer>]>
    private let nextCorrelation = NIOLockedValueBox<Int32>(1)

    /// A Kafka error code returned by the broker (or by a sidecar on its behalf).
    public struct BrokerError: Error, CustomStringConvertible {
        public var code: Int16
        public var context: String
        public var description: String { "\(context): Kafka error \(code)" }
    }

    public static func connect(host: String, port: Int, group: EventLoopGroup) async throws -> MiniKafkaClient {
        let pending = NIOLockedValueBox<[Int32: EventLoopPromise<ByteBuffer>]>([:])
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(MiniFrameDecoder()))
                    try ch.pipeline.syncOperations.addHandler(ResponseRouter(pending: pending))
                }
            }
            .connect(host: host, port: port).get()
        return MiniKafkaClient(channel: channel, pending: pending)
    }

    private init(channel: Channel, pending: NIOLockedValueBox<[Int32: EventLoopPromise<ByteBuffer>]>) {
        self.channel = channel
        self.pending = pending
    }

    public func close() async {
        try? await channel.close()
    }

    /// Sends a request and returns the response body (header removed).
    public func send(apiKey: ApiKey, version: Int16, body: ByteBuffer) async throws -> ByteBuffer {
        let correlation = nextCorrelation.withLockedValue { v in defer { v += 1 }; return v }
        let promise = channel.eventLoop.makePromise(of: ByteBuffer.self)
        pending.withLockedValue { $0[correlation] = promise }
        var payload = ByteBuffer()
        RequestHeader(apiKey: apiKey, apiVersion: version, correlationId: correlation, clientId: "veil-demo").write(to: &payload)
        payload.writeImmutableBuffer(body)
        var frame = ByteBuffer()
        FrameParser.write(payload, to: &frame)
        try await channel.writeAndFlush(frame)
        var response = try await promise.futureResult.get()
        _ = try ResponseHeader.read(from: &response, headerVersion: apiKey.responseHeaderVersion(version))
        return response
    }

    public func send<M: KafkaMessage>(_ message: M, version: Int16) async throws -> ByteBuffer {
        try await send(apiKey: M.apiKey, version: version, body: message.encoded(version: version))
    }

    /// Creates a topic (CreateTopics v4); an existing topic is not an error.
    public func createTopic(_ name: String, partitions: Int32) async throws {
        var w = WireWriter(buffer: ByteBuffer(), version: 4, flexible: false)
        w.int32(1)
        w.string(name)
        w.int32(partitions)
        w.int16(1)
        w.int32(0)  // assignments
        w.int32(0)  // configs
        w.int32(30_000)
        w.bool(false)
        var r = WireReader(buffer: try await send(apiKey: ApiKey(rawValue: 19), version: 4, body: w.buffer), version: 4, flexible: false)
        _ = try r.int32()
        let topics = try r.array { r in (try r.string(), try r.int16(), try r.nullableString()) }
        for (topic, code, message) in topics where code != 0 && code != 36 {
            throw BrokerError(code: code, context: "create topic \(topic)\(message.map { " (\($0))" } ?? "")")
        }
    }

    /// Produces one batch to a partition with acks=all; returns the base offset.
    public func produce(topic: String, partition: Int32, batch: RecordBatch) async throws -> Int64 {
        let request = ProduceRequest(acks: -1, timeoutMs: 30_000, topics: [
            .init(name: topic, partitions: [.init(index: partition, records: try batch.encoded())]),
        ])
        let body = try await send(request, version: 8)
        let response = try ProduceResponse(decoding: body, version: 8)
        guard let p = response.topics.first?.partitions.first else { throw BrokerError(code: -1, context: "empty produce response") }
        guard p.errorCode == 0 else {
            throw BrokerError(code: p.errorCode, context: "produce to \(topic)/\(partition)\(p.errorMessage.map { " (\($0))" } ?? "")")
        }
        return p.baseOffset
    }

    /// Fetches every record of a partition from `offset` to the high watermark.
    public func fetchAll(topic: String, partition: Int32, from offset: Int64 = 0) async throws -> [(offset: Int64, record: Record)] {
        var next = offset
        var out: [(Int64, Record)] = []
        while true {
            var fetch = FetchRequest(maxWaitMs: 100, minBytes: 1, topics: [
                .init(topic: topic, partitions: [.init(partition: partition, fetchOffset: next, partitionMaxBytes: 8 << 20)]),
            ])
            fetch.maxBytes = 16 << 20
            let body = try await send(fetch, version: 11)
            let response = try FetchResponse(decoding: body, version: 11)
            guard let p = response.topics.first?.partitions.first else { return out }
            guard p.errorCode == 0 else { throw BrokerError(code: p.errorCode, context: "fetch \(topic)/\(partition)") }
            var advanced = false
            for entry in try RecordSet.split(p.records ?? ByteBuffer()) {
                guard case .batch(let bytes) = entry else { continue }
                let batch = try RecordBatch(decoding: bytes)
                for r in batch.records where batch.baseOffset + Int64(r.offsetDelta) >= next {
                    out.append((batch.baseOffset + Int64(r.offsetDelta), r))
                }
                next = max(next, batch.baseOffset + Int64(batch.lastOffsetDelta) + 1)
                advanced = true
            }
            if !advanced || next >= p.highWatermark { return out }
        }
    }
}

private final class MiniFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer
    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try FrameParser().next(from: &buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }
}

private final class ResponseRouter: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let pending: NIOLockedValueBox<[Int32: EventLoopPromise<ByteBuffer>]>

    init(pending: NIOLockedValueBox<[Int32: EventLoopPromise<ByteBuffer>]>) { self.pending = pending }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard let correlation = frame.getInteger(at: frame.readerIndex, as: Int32.self),
              let promise = pending.withLockedValue({ $0.removeValue(forKey: correlation) }) else { return }
        promise.succeed(frame)
    }

    func channelInactive(context: ChannelHandlerContext) {
        let all = pending.withLockedValue { p in defer { p.removeAll() }; return p }
        for (_, promise) in all { promise.fail(ChannelError.ioOnClosedChannel) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
