import NIOCore
import NIOPosix
import VeilConfig
import VeilProxy
import VeilWire

/// A minimal Kafka client for tests: sends one request frame, reads one response frame.
struct TestKafkaClient {
    let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>

    static func connect(port: Int, group: EventLoopGroup) async throws -> TestKafkaClient {
        let channel = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port) { ch in
            ch.eventLoop.makeCompletedFuture {
                try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(TestFrameDecoder()))
                return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: ch)
            }
        }
        return TestKafkaClient(channel: channel)
    }

    /// Sends raw bytes (no framing added).
    func sendRaw(_ bytes: [UInt8]) async throws {
        try await channel.outbound.write(ByteBuffer(bytes: bytes))
    }

    func request<M: KafkaMessage>(_ message: M, version: Int16, correlationId: Int32) async throws {
        var payload = ByteBuffer()
        RequestHeader(apiKey: M.apiKey, apiVersion: version, correlationId: correlationId, clientId: "test").write(to: &payload)
        message.encode(version: version, into: &payload)
        var frame = ByteBuffer()
        FrameParser.write(payload, to: &frame)
        try await channel.outbound.write(frame)
    }

    /// Reads the next response frame, or nil when the connection closed.
    func nextFrame(_ iterator: inout NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator) async throws -> ByteBuffer? {
        try await iterator.next()
    }
}

final class TestFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer
    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try FrameParser().next(from: &buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }
}

/// A scripted upstream standing in for a multi-broker cluster, which a single Tansu
/// broker cannot be: it answers ApiVersions, Metadata, FindCoordinator and
/// DescribeCluster with the brokers it is given, and echoes nothing else.
final class ScriptedBroker: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let brokers: [BrokerEndpoint]

    init(brokers: [BrokerEndpoint]) { self.brokers = brokers }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var frame = unwrapInboundIn(data)
        guard let header = try? RequestHeader.read(from: &frame) else { context.close(promise: nil); return }
        var out = ByteBuffer()
        ResponseHeader(correlationId: header.correlationId).write(to: &out, headerVersion: header.apiKey.responseHeaderVersion(header.apiVersion))
        switch header.apiKey {
        case .apiVersions:
            ApiVersionsResponse(errorCode: 0, apiKeys: [
                .init(apiKey: 0, minVersion: 0, maxVersion: 11), .init(apiKey: 1, minVersion: 0, maxVersion: 17),
                .init(apiKey: 3, minVersion: 0, maxVersion: 99), .init(apiKey: 10, minVersion: 0, maxVersion: 6),
                .init(apiKey: 18, minVersion: 0, maxVersion: 4), .init(apiKey: 60, minVersion: 0, maxVersion: 1),
                .init(apiKey: 19, minVersion: 2, maxVersion: 7), .init(apiKey: 999, minVersion: 0, maxVersion: 3),
            ]).encode(version: header.apiVersion, into: &out)
        case .metadata:
            MetadataResponse(brokers: brokers, clusterId: "scripted", controllerId: brokers[0].nodeId, topics: [])
                .encode(version: header.apiVersion, into: &out)
        case .findCoordinator:
            var body = ByteBuffer()
            var w = WireWriter(buffer: body, version: header.apiVersion, flexible: header.apiKey.isFlexible(header.apiVersion))
            let b = brokers.last!
            if header.apiVersion <= 3 {
                w.int32(0); w.int16(0); w.nullableString(nil); w.int32(b.nodeId); w.string(b.host); w.int32(b.port)
                w.taggedFields(TaggedFields())
            } else {
                w.int32(0)
                w.array(brokers) { w, b in
                    w.string("group-\(b.nodeId)"); w.int32(b.nodeId); w.string(b.host); w.int32(b.port); w.int16(0)
                    w.nullableString(nil); w.taggedFields(TaggedFields())
                }
                w.taggedFields(TaggedFields())
            }
            body = w.buffer
            out.writeImmutableBuffer(body)
        default:
            context.close(promise: nil)
            return
        }
        var framed = ByteBuffer()
        FrameParser.write(out, to: &framed)
        context.writeAndFlush(wrapOutboundOut(framed), promise: nil)
    }

    /// Starts a scripted broker on a free port; returns the channel and its port.
    static func start(brokers: @escaping @Sendable (Int) -> [BrokerEndpoint], group: EventLoopGroup) async throws -> (Channel, Int) {
        let portBox = PortBox()
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(TestFrameDecoder()))
                    try ch.pipeline.syncOperations.addHandler(ScriptedBroker(brokers: brokers(portBox.port)))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        portBox.port = channel.localAddress!.port!
        return (channel, portBox.port)
    }
}

final class PortBox: @unchecked Sendable {
    var port = 0
}

/// Finds a run of free loopback ports by binding and releasing them.
func freePortRange(count: Int) throws -> ClosedRange<Int> {
    for base in stride(from: 20000 + Int.random(in: 0..<20000), to: 60000, by: count + 1) {
        var ok = true
        for p in base..<(base + count) where !portIsFree(p) { ok = false; break }
        if ok { return base...(base + count - 1) }
    }
    throw TestError("no free port range")
}

func portIsFree(_ port: Int) -> Bool {
    let group = MultiThreadedEventLoopGroup.singleton
    guard let ch = try? ServerBootstrap(group: group).bind(host: "127.0.0.1", port: port).wait() else { return false }
    try? ch.close().wait()
    return true
}

struct TestError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
