import Logging
import NIOCore
import NIOPosix
import Testing
import VeilConfig
import VeilProxy
import VeilWire

/// On-demand listeners for sparse, large node ids. Tansu runs as a single broker, so a
/// scripted upstream (ScriptedBroker, a test double) plays a multi-broker cluster here.
@Suite struct BrokerMappingTests {
    let group = MultiThreadedEventLoopGroup.singleton

    func startProxy(upstreamPort: Int) async throws -> (ProxyServer, Int, ClosedRange<Int>) {
        let ports = try freePortRange(count: 9)
        let listen = ports.lowerBound
        let settings = ProxySettings(listen: HostPort(host: "127.0.0.1", port: listen),
                                     upstreamBootstrap: [HostPort(host: "127.0.0.1", port: upstreamPort)],
                                     brokerPorts: (listen + 1)...ports.upperBound)
        let server = ProxyServer(settings: settings, group: group, logger: Logger(label: "test"))
        try await server.start()
        return (server, listen, settings.brokerPorts)
    }

    @Test func sparseAndLargeNodeIdsGetListenersOnDemand() async throws {
        let ids: [Int32] = [1, 7, 2_000_000_000]
        let (upstream, upstreamPort) = try await ScriptedBroker.start(brokers: { port in
            ids.map { BrokerEndpoint(nodeId: $0, host: "127.0.0.1", port: Int32(port), rack: "rack-\($0)") }
        }, group: group)
        let (server, listen, brokerPorts) = try await startProxy(upstreamPort: upstreamPort)
        defer { Task { await server.stop(); try? await upstream.close() } }

        for version in [Int16(0), 1, 4, 9, 12, 13] {
            let metadata = try await metadata(port: listen, version: version)
            #expect(metadata.brokers.map(\.nodeId) == ids)
            for b in metadata.brokers {
                #expect(b.host == "127.0.0.1")
                #expect(brokerPorts.contains(Int(b.port)), "port \(b.port) outside \(brokerPorts)")
                #expect(Int(b.port) != upstreamPort)
            }
            #expect(Set(metadata.brokers.map(\.port)).count == ids.count)
        }
        try await expectListenersReachUpstream(server, coordinators: ids.count, brokerPorts: brokerPorts)
    }

    /// A broker port that another process already holds is skipped for the next free one in
    /// the range, and Metadata announces the port actually bound.
    @Test func brokerPortTakenElsewhereIsSkipped() async throws {
        let ids: [Int32] = [1, 2]
        let (upstream, upstreamPort) = try await ScriptedBroker.start(brokers: { port in
            ids.map { BrokerEndpoint(nodeId: $0, host: "127.0.0.1", port: Int32(port)) }
        }, group: group)
        let (server, listen, brokerPorts) = try await startProxy(upstreamPort: upstreamPort)
        let squatter = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: brokerPorts.lowerBound).get()
        defer { Task { await server.stop(); try? await upstream.close(); try? await squatter.close() } }

        let metadata = try await metadata(port: listen, version: 12)
        let ports = metadata.brokers.map { Int($0.port) }
        #expect(ports.count == 2 && !ports.contains(brokerPorts.lowerBound), "announced \(ports); \(brokerPorts.lowerBound) is taken")
        #expect(ports.allSatisfy(brokerPorts.contains) && Set(ports).count == 2)
        #expect(Set(server.brokers.entries.map(\.localPort)) == Set(ports))
        try await expectListenersReachUpstream(server, coordinators: ids.count, brokerPorts: brokerPorts)
    }

    /// One Metadata request of `version` through the listener on `port`.
    func metadata(port: Int, version: Int16) async throws -> MetadataResponse {
        let client = try await TestKafkaClient.connect(port: port, group: group)
        return try await client.channel.executeThenClose { inbound, outbound in
            var it = inbound.makeAsyncIterator()
            var payload = ByteBuffer()
            RequestHeader(apiKey: .metadata, apiVersion: version, correlationId: Int32(version), clientId: "t").write(to: &payload)
            MetadataRequest(topics: version == 0 ? [] : nil).encode(version: version, into: &payload)
            var frame = ByteBuffer()
            FrameParser.write(payload, to: &frame)
            try await outbound.write(frame)
            var response = try #require(try await it.next())
            let header = try ResponseHeader.read(from: &response, headerVersion: ApiKey.metadata.responseHeaderVersion(version))
            #expect(header.correlationId == Int32(version))
            return try MetadataResponse(decoding: response, version: version)
        }
    }

    /// Every advertised listener accepts connections and leads to the right upstream.
    func expectListenersReachUpstream(_ server: ProxyServer, coordinators: Int, brokerPorts: ClosedRange<Int>) async throws {
        for entry in server.brokers.entries {
            let c = try await TestKafkaClient.connect(port: entry.localPort, group: group)
            try await c.channel.executeThenClose { inbound, outbound in
                var it = inbound.makeAsyncIterator()
                var payload = ByteBuffer()
                RequestHeader(apiKey: .findCoordinator, apiVersion: 4, correlationId: 42, clientId: "t").write(to: &payload)
                FindCoordinatorRequest(keyType: 0, coordinatorKeys: ["g"]).encode(version: 4, into: &payload)
                var frame = ByteBuffer()
                FrameParser.write(payload, to: &frame)
                try await outbound.write(frame)
                var response = try #require(try await it.next())
                _ = try ResponseHeader.read(from: &response, headerVersion: 1)
                let fc = try FindCoordinatorResponse(decoding: response, version: 4)
                #expect(fc.coordinators.count == coordinators)
                #expect(fc.coordinators.allSatisfy { brokerPorts.contains(Int($0.endpoint.port)) && $0.endpoint.host == "127.0.0.1" })
            }
        }
    }

    @Test func apiVersionsIsIntersected() async throws {
        let (upstream, upstreamPort) = try await ScriptedBroker.start(brokers: { port in
            [BrokerEndpoint(nodeId: 0, host: "127.0.0.1", port: Int32(port))]
        }, group: group)
        let (server, listen, _) = try await startProxy(upstreamPort: upstreamPort)
        defer { Task { await server.stop(); try? await upstream.close() } }
        let client = try await TestKafkaClient.connect(port: listen, group: group)
        try await client.channel.executeThenClose { inbound, outbound in
            var it = inbound.makeAsyncIterator()
            var payload = ByteBuffer()
            RequestHeader(apiKey: .apiVersions, apiVersion: 3, correlationId: 1, clientId: "t").write(to: &payload)
            ApiVersionsRequest(clientSoftwareName: "t", clientSoftwareVersion: "1").encode(version: 3, into: &payload)
            var frame = ByteBuffer()
            FrameParser.write(payload, to: &frame)
            try await outbound.write(frame)
            var response = try #require(try await it.next())
            _ = try ResponseHeader.read(from: &response, headerVersion: 0)
            let av = try ApiVersionsResponse(decoding: response, version: 3)
            let byKey = Dictionary(uniqueKeysWithValues: av.apiKeys.map { ($0.apiKey, $0) })
            #expect(byKey[0]?.minVersion == 0, "Produce keeps v0 as its minimum")
            #expect(byKey[0]?.maxVersion == 11)
            #expect(byKey[3]?.maxVersion == MetadataResponse.versions.upperBound, "Metadata capped at what Veil decodes")
            #expect(byKey[1]?.maxVersion == 15, "Fetch capped below v16, whose node endpoints would stop cut-through")
            #expect(byKey[60]?.maxVersion == 1)
            #expect(byKey[19]?.minVersion == 2 && byKey[19]?.maxVersion == 7, "opaque APIs keep the upstream's range")
            #expect(byKey[999]?.maxVersion == 3, "unknown APIs are forwarded opaquely with the upstream's range")

            // Above Veil's own ApiVersions range: the protocol's v0 answer with error 35.
            payload.clear()
            RequestHeader(apiKey: .apiVersions, apiVersion: 77, correlationId: 2, clientId: "t").write(to: &payload)
            frame.clear()
            FrameParser.write(payload, to: &frame)
            try await outbound.write(frame)
            var tooNew = try #require(try await it.next())
            let header = try ResponseHeader.read(from: &tooNew, headerVersion: 0)
            #expect(header.correlationId == 2)
            let (answer, decodedAs) = try ApiVersionsResponse.decode(tooNew, requestedVersion: 77)
            #expect(decodedAs == 0)
            #expect(answer.errorCode == 35)
            #expect(answer.apiKeys.first { $0.apiKey == 18 }?.maxVersion == ApiVersionsRequest.versions.upperBound)
        }
    }

    @Test func malformedFrameClosesOnlyThatConnection() async throws {
        let (upstream, upstreamPort) = try await ScriptedBroker.start(brokers: { port in
            [BrokerEndpoint(nodeId: 0, host: "127.0.0.1", port: Int32(port))]
        }, group: group)
        let (server, listen, _) = try await startProxy(upstreamPort: upstreamPort)
        defer { Task { await server.stop(); try? await upstream.close() } }

        let healthy = try await TestKafkaClient.connect(port: listen, group: group)
        try await healthy.channel.executeThenClose { inbound, outbound in
            var it = inbound.makeAsyncIterator()
            func metadataRoundTrip(_ id: Int32) async throws {
                var payload = ByteBuffer()
                RequestHeader(apiKey: .metadata, apiVersion: 12, correlationId: id, clientId: "t").write(to: &payload)
                MetadataRequest(topics: nil).encode(version: 12, into: &payload)
                var frame = ByteBuffer()
                FrameParser.write(payload, to: &frame)
                try await outbound.write(frame)
                var response = try #require(try await it.next())
                let header = try ResponseHeader.read(from: &response, headerVersion: 1)
                #expect(header.correlationId == id)
            }
            try await metadataRoundTrip(1)
            for bad in [[0xFF, 0xFF, 0xFF, 0xFF], [0x16, 0x03, 0x01, 0x02, 0x00, 0x01], [0x00, 0x00, 0x00, 0x02, 0x00, 0x01]] as [[UInt8]] {
                let attacker = try await TestKafkaClient.connect(port: listen, group: group)
                try await attacker.channel.executeThenClose { badInbound, badOutbound in
                    try await badOutbound.write(ByteBuffer(bytes: bad))
                    var badIt = badInbound.makeAsyncIterator()
                    // The proxy closes the connection without answering.
                    let next = try? await badIt.next()
                    #expect(next == nil)
                }
                try await metadataRoundTrip(Int32(bad.count + 10))
            }
        }
    }
}
