import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing
import VeilConfig
import VeilProxy
import VeilWire

/// Through a running proxy: a large response Veil passes on unchanged reaches the client as
/// the broker sends it, not after its last byte, and stays in order behind a response Veil
/// rewrites; a large Produce reaches the broker as the client sends it.
@Suite struct CutThroughTests {
    let group = MultiThreadedEventLoopGroup.singleton

    /// A test double for a broker (a real one cannot be told to stop halfway through a
    /// response): answers Metadata with itself as the only broker, and any Fetch with a large
    /// frame of which it sends `firstPart` bytes at once and the rest when `release` completes.
    final class SplitResponder: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer

        let port: PortBox
        let bodyBytes: Int
        let firstPart: Int
        let release: EventLoopFuture<Void>

        init(port: PortBox, bodyBytes: Int, firstPart: Int, release: EventLoopFuture<Void>) {
            self.port = port
            self.bodyBytes = bodyBytes
            self.firstPart = firstPart
            self.release = release
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var frame = unwrapInboundIn(data)
            guard let header = try? RequestHeader.read(from: &frame) else { context.close(promise: nil); return }
            var out = ByteBuffer()
            ResponseHeader(correlationId: header.correlationId)
                .write(to: &out, headerVersion: header.apiKey.responseHeaderVersion(header.apiVersion))
            switch header.apiKey {
            case .metadata:
                MetadataResponse(brokers: [BrokerEndpoint(nodeId: 0, host: "127.0.0.1", port: Int32(port.port))],
                                 clusterId: "split", controllerId: 0, topics: [])
                    .encode(version: header.apiVersion, into: &out)
                var framed = ByteBuffer()
                FrameParser.write(out, to: &framed)
                context.writeAndFlush(wrapOutboundOut(framed), promise: nil)
            case .fetch:
                out.writeBytes(CutThroughTests.body(bodyBytes))
                var framed = ByteBuffer()
                FrameParser.write(out, to: &framed)
                let head = framed.readSlice(length: firstPart)!
                context.writeAndFlush(wrapOutboundOut(head), promise: nil)
                let channel = context.channel
                release.whenSuccess { channel.writeAndFlush(framed, promise: nil) }
            case .produce:
                // As a broker: nothing comes back for acks=0.
                if (try? ProduceRequest.peekAcks(body: frame, version: header.apiVersion)) == 0 { return }
                // Any body will do: Veil passes a Produce v3-v9 answer on without reading it.
                out.writeBytes([1, 2, 3, 4])
                var framed = ByteBuffer()
                FrameParser.write(out, to: &framed)
                context.writeAndFlush(wrapOutboundOut(framed), promise: nil)
            default:
                context.close(promise: nil)
            }
        }
    }

    /// Counts the bytes the broker double has received, ahead of its frame decoder.
    final class ByteCounter: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        typealias InboundOut = ByteBuffer
        let seen: NIOLockedValueBox<Int>

        init(seen: NIOLockedValueBox<Int>) { self.seen = seen }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let bytes = unwrapInboundIn(data).readableBytes
            seen.withLockedValue { $0 += bytes }
            context.fireChannelRead(data)
        }
    }

    static func body(_ count: Int) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 1) } }

    private func start(bodyBytes: Int, firstPart: Int, release: EventLoopFuture<Void>,
                       seen: NIOLockedValueBox<Int> = .init(0)) async throws -> (ProxyServer, Channel, Int) {
        let portBox = PortBox()
        let upstream = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.addHandler(ByteCounter(seen: seen))
                    try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(TestFrameDecoder()))
                    try ch.pipeline.syncOperations.addHandler(
                        SplitResponder(port: portBox, bodyBytes: bodyBytes, firstPart: firstPart, release: release))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        portBox.port = upstream.localAddress!.port!
        let ports = try freePortRange(count: 4)
        let settings = ProxySettings(listen: HostPort(host: "127.0.0.1", port: ports.lowerBound),
                                     upstreamBootstrap: [HostPort(host: "127.0.0.1", port: portBox.port)],
                                     brokerPorts: (ports.lowerBound + 1)...ports.upperBound)
        let server = ProxyServer(settings: settings, group: group, logger: Logger(label: "test"))
        try await server.start()
        return (server, upstream, ports.lowerBound)
    }

    /// A client reading raw bytes, so a frame's first part is visible before its end.
    private func rawClient(port: Int) async throws -> NIOAsyncChannel<ByteBuffer, ByteBuffer> {
        try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port) { ch in
            ch.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: ch) }
        }
    }

    private static func framed<M: KafkaMessage>(_ message: M, version: Int16, correlationId: Int32) -> ByteBuffer {
        var payload = ByteBuffer()
        RequestHeader(apiKey: M.apiKey, apiVersion: version, correlationId: correlationId, clientId: "t").write(to: &payload)
        message.encode(version: version, into: &payload)
        var frame = ByteBuffer()
        FrameParser.write(payload, to: &frame)
        return frame
    }

    static let fetch = FetchRequest(maxWaitMs: 100, minBytes: 1, topics: [
        .init(topic: "t", partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 50 << 20)]),
    ])

    /// Reads until `count` bytes have arrived in all, or fails after `seconds`.
    private static func read(_ it: inout NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator, into got: inout [UInt8],
                             until count: Int, seconds: Int64) async throws {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while got.count < count {
            guard ContinuousClock.now < deadline else {
                throw TestError("received \(got.count) of \(count) bytes within \(seconds) s")
            }
            guard let next = try await it.next() else { throw TestError("connection closed after \(got.count) bytes") }
            got += next.readableBytesView
        }
    }

    @Test(.timeLimit(.minutes(1))) func largeUnchangedResponseReachesTheClientBeforeItsEnd() async throws {
        let releasePromise = group.next().makePromise(of: Void.self)
        let bodyBytes = 2 << 20
        let firstPart = 300_000
        let (server, upstream, listen) = try await start(bodyBytes: bodyBytes, firstPart: firstPart, release: releasePromise.futureResult)
        defer { releasePromise.succeed(()); Task { await server.stop(); try? await upstream.close() } }
        let client = try await rawClient(port: listen)
        try await client.executeThenClose { inbound, outbound in
            try await outbound.write(Self.framed(Self.fetch, version: 4, correlationId: 9))
            var it = inbound.makeAsyncIterator()
            var got: [UInt8] = []
            // Store-and-forward would hold all of these until the broker's last byte, which it
            // only sends once released: this read would wait until the time limit.
            try await Self.read(&it, into: &got, until: firstPart, seconds: 10)
            #expect(got.count == firstPart)
            releasePromise.succeed(())
            let total = 4 + 4 + bodyBytes
            try await Self.read(&it, into: &got, until: total, seconds: 20)
            var expected = ByteBuffer()
            expected.writeInteger(Int32(4 + bodyBytes))
            expected.writeInteger(Int32(9))
            expected.writeBytes(Self.body(bodyBytes))
            #expect(got == Array(expected.readableBytesView))
        }
    }

    @Test(.timeLimit(.minutes(1))) func cutThroughResponseStaysBehindARewrittenOne() async throws {
        let releasePromise = group.next().makePromise(of: Void.self)
        releasePromise.succeed(())
        let bodyBytes = 1 << 20
        let (server, upstream, listen) = try await start(bodyBytes: bodyBytes, firstPart: 100_000, release: releasePromise.futureResult)
        defer { Task { await server.stop(); try? await upstream.close() } }
        let client = try await TestKafkaClient.connect(port: listen, group: group)
        try await client.channel.executeThenClose { inbound, outbound in
            // Both requests in one write: the broker answers them back to back.
            var both = Self.framed(MetadataRequest(topics: nil), version: 9, correlationId: 1)
            var fetch = Self.framed(Self.fetch, version: 4, correlationId: 2)
            both.writeBuffer(&fetch)
            try await outbound.write(both)
            var it = inbound.makeAsyncIterator()
            var first = try #require(try await it.next())
            let metadataHeader = try ResponseHeader.read(from: &first, headerVersion: ApiKey.metadata.responseHeaderVersion(9))
            #expect(metadataHeader.correlationId == 1)
            let metadata = try MetadataResponse(decoding: first, version: 9)
            // Rewritten: the broker is named by the proxy's own address, not the double's port.
            #expect(metadata.brokers.first.map { Int($0.port) } != upstream.localAddress?.port)
            var second = try #require(try await it.next())
            #expect(second.readInteger(as: Int32.self) == 2)
            #expect(Array(second.readableBytesView) == Self.body(bodyBytes))
        }
    }

    /// A Produce of ~1 MiB, framed.
    private static func produce(acks: Int16, correlationId: Int32) -> ByteBuffer {
        let records = ByteBuffer(bytes: body(1 << 20))
        let request = ProduceRequest(acks: acks, timeoutMs: 5000, topics: [.init(name: "t", partitions: [.init(index: 0, records: records)])])
        return framed(request, version: 7, correlationId: correlationId)
    }

    private static func waitUntil(_ seen: NIOLockedValueBox<Int>, atLeast count: Int, seconds: Int64) async throws {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while seen.withLockedValue({ $0 }) < count {
            guard ContinuousClock.now < deadline else {
                throw TestError("the broker received \(seen.withLockedValue { $0 }) of \(count) bytes within \(seconds) s")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    @Test(.timeLimit(.minutes(1)), arguments: [Int16(1), Int16(0)])
    func largeProduceReachesTheBrokerBeforeItsEnd(acks: Int16) async throws {
        let seen = NIOLockedValueBox(0)
        let released = group.next().makeSucceededVoidFuture()
        let (server, upstream, listen) = try await start(bodyBytes: 1, firstPart: 1, release: released, seen: seen)
        defer { Task { await server.stop(); try? await upstream.close() } }
        let client = try await TestKafkaClient.connect(port: listen, group: group)
        try await client.channel.executeThenClose { inbound, outbound in
            var request = Self.produce(acks: acks, correlationId: 5)
            let whole = request.readableBytes
            let firstPart = 200_000
            try await outbound.write(request.readSlice(length: firstPart)!)
            // Store-and-forward would send the broker nothing until the client's last byte.
            try await Self.waitUntil(seen, atLeast: firstPart, seconds: 10)
            #expect(seen.withLockedValue { $0 } == firstPart)
            try await outbound.write(request)
            try await Self.waitUntil(seen, atLeast: whole, seconds: 10)
            // The next request is answered after the Produce, in order (none for acks=0).
            try await outbound.write(Self.framed(MetadataRequest(topics: nil), version: 9, correlationId: 6))
            var it = inbound.makeAsyncIterator()
            if acks != 0 {
                var answer = try #require(try await it.next())
                #expect(answer.readInteger(as: Int32.self) == 5)
                #expect(Array(answer.readableBytesView) == [1, 2, 3, 4])
            }
            var metadata = try #require(try await it.next())
            #expect(metadata.readInteger(as: Int32.self) == 6)
        }
        #expect(seen.withLockedValue { $0 } > Self.produce(acks: acks, correlationId: 5).readableBytes)
    }

    @Test(.timeLimit(.minutes(1)))
    func shutdownLetsAProduceBeingCutThroughFinish() async throws {
        let seen = NIOLockedValueBox(0)
        let (server, upstream, listen) = try await start(bodyBytes: 1, firstPart: 1, release: group.next().makeSucceededVoidFuture(), seen: seen)
        defer { Task { try? await upstream.close() } }
        let client = try await TestKafkaClient.connect(port: listen, group: group)
        try await client.channel.executeThenClose { inbound, outbound in
            var request = Self.produce(acks: 1, correlationId: 5)
            try await outbound.write(request.readSlice(length: 200_000)!)
            try await Self.waitUntil(seen, atLeast: 200_000, seconds: 10)
            // Shutdown begins while the broker holds part of the request: the rest must still
            // be read and sent, and answered, not cut off at the deadline.
            let shutdown = Task { await server.shutdown(deadline: .seconds(10)) }
            try await Task.sleep(for: .milliseconds(300))
            try await outbound.write(request)
            var it = inbound.makeAsyncIterator()
            var answer = try #require(try await it.next())
            #expect(answer.readInteger(as: Int32.self) == 5)
            #expect(await shutdown.value == 0, "no connection was left for the deadline to cut off")
        }
    }
}
