import Logging
import NIOCore
import NIOPosix
import Testing
import VeilConfig
import VeilProxy
import VeilWire

/// When the upstream fails, the application's connection closes so its client retries;
/// it never hangs waiting for an answer that cannot come.
@Suite struct UpstreamFailureTests {
    let group = MultiThreadedEventLoopGroup.singleton

    private func proxy(upstreamPort: Int) async throws -> (ProxyServer, Int) {
        let ports = try freePortRange(count: 5)
        let settings = ProxySettings(listen: HostPort(host: "127.0.0.1", port: ports.lowerBound),
                                     upstreamBootstrap: [HostPort(host: "127.0.0.1", port: upstreamPort)],
                                     brokerPorts: (ports.lowerBound + 1)...ports.upperBound)
        let server = ProxyServer(settings: settings, group: group, logger: Logger(label: "test"))
        try await server.start()
        return (server, ports.lowerBound)
    }

    /// Sends one request and returns whether the proxy closed the connection without answering.
    private func closesWithoutAnswer(port: Int) async throws -> Bool {
        let client = try await TestKafkaClient.connect(port: port, group: group)
        return try await client.channel.executeThenClose { inbound, outbound in
            var payload = ByteBuffer()
            RequestHeader(apiKey: .produce, apiVersion: 9, correlationId: 7, clientId: "t").write(to: &payload)
            ProduceRequest(acks: -1, timeoutMs: 1000, topics: []).encode(version: 9, into: &payload)
            var frame = ByteBuffer()
            FrameParser.write(payload, to: &frame)
            do {
                try await outbound.write(frame)
            } catch ChannelError.ioOnClosedChannel {
                // The proxy may close before the request is even written: that counts too.
                return true
            }
            // A hang here fails the test through its time limit.
            var it = inbound.makeAsyncIterator()
            return (try? await it.next()) == nil
        }
    }

    @Test(.timeLimit(.minutes(1))) func upstreamClosingMidRequestClosesTheClient() async throws {
        // The scripted broker (a test double) drops the connection on any API it does not script, here Produce.
        let (upstream, upstreamPort) = try await ScriptedBroker.start(brokers: { port in
            [BrokerEndpoint(nodeId: 0, host: "127.0.0.1", port: Int32(port))]
        }, group: group)
        let (server, listen) = try await proxy(upstreamPort: upstreamPort)
        defer { Task { await server.stop(); try? await upstream.close() } }
        #expect(try await closesWithoutAnswer(port: listen))
    }

    @Test(.timeLimit(.minutes(1))) func unreachableUpstreamClosesTheClient() async throws {
        let deadPort = try freePortRange(count: 1).lowerBound
        let (server, listen) = try await proxy(upstreamPort: deadPort)
        defer { Task { await server.stop() } }
        #expect(try await closesWithoutAnswer(port: listen))
    }
}
