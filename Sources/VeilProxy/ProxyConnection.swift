import VeilConfig
import Logging
import NIOCore
import NIOPosix
import VeilWire

/// One application connection and its upstream connection, both on one event loop.
///
/// Requests may need asynchronous work (a KMS call for a data key) and responses may
/// too, yet Kafka requires answers in request order. So every request becomes an
/// `Exchange` in a FIFO: requests go upstream in order as their filtering completes,
/// and responses go back to the client in order as theirs completes.
///
/// `@unchecked Sendable`: every method runs on `loop`; futures hop back to it.
final class ProxyConnection: @unchecked Sendable {
    /// One request and its response's progress.
    final class Exchange {
        enum State {
            case filteringRequest
            case awaitingUpstream
            case filteringResponse
            case ready(ByteBuffer)
            case noResponse
        }

        let apiKey: ApiKey
        let apiVersion: Int16
        let correlationId: Int32
        var state: State = .filteringRequest
        var forward: ByteBuffer?
        /// Kept for Fetch so the response filter knows what was asked.
        var fetchRequest: FetchRequest?
        /// Produce partitions Veil refused; their errors join the upstream's response.
        var rejectedPartitions: [RejectedPartition] = []
        var expectsResponse = true

        init(apiKey: ApiKey, apiVersion: Int16, correlationId: Int32) {
            self.apiKey = apiKey
            self.apiVersion = apiVersion
            self.correlationId = correlationId
        }
    }

    let server: ProxyServer
    let client: Channel
    let loop: EventLoop
    let target: ProxyServer.Target
    var upstream: Channel?
    private var exchanges = CircularBuffer<Exchange>()
    private var closed = false
    private var logger: Logger

    init(server: ProxyServer, client: Channel, target: ProxyServer.Target) {
        self.server = server
        self.client = client
        self.loop = client.eventLoop
        self.target = target
        var logger = server.logger
        logger[metadataKey: "peer"] = "\(client.remoteAddress.flatMap { a in a.ipAddress.map { "\($0):\(a.port ?? 0)" } } ?? "?")"
        self.logger = logger
    }

    // MARK: lifecycle

    func clientActive() {
        let candidates = server.upstreamCandidates(for: target)
        connect(candidates[...], lastError: nil)
    }

    private func connect(_ candidates: ArraySlice<HostPort>, lastError: Error?) {
        guard let next = candidates.first else {
            fail("no upstream reachable for \(target)\(lastError.map { ": \($0)" } ?? "")")
            return
        }
        let maxFrame = server.settings.maxFrameBytes
        ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(10))
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(KafkaFrameDecoder(maxFrameBytes: maxFrame)))
                    try channel.pipeline.syncOperations.addHandler(ProxySideHandler(connection: self, side: .upstream))
                }
            }
            .connect(host: next.host, port: next.port)
            .whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    if closed {
                        channel.close(promise: nil)
                        return
                    }
                    upstream = channel
                    maybeResumeClientReads()
                case .failure(let error):
                    logger.warning("upstream \(next) unreachable: \(error)")
                    connect(candidates.dropFirst(), lastError: error)
                }
            }
    }

    /// Closes both sides, logging `reason` once.
    func fail(_ reason: String) {
        guard !closed else { return }
        logger.warning("closing connection: \(reason)")
        close()
    }

    func close() {
        guard !closed else { return }
        closed = true
        client.close(promise: nil)
        upstream?.close(promise: nil)
        exchanges.removeAll()
    }

    // MARK: back-pressure

    /// Client reads pause while too many exchanges are open or upstream can't take more.
    var clientReadAllowed: Bool {
        guard let upstream else { return false }
        return upstream.isWritable && exchanges.count < server.settings.maxInFlightPerConnection
    }

    var upstreamReadAllowed: Bool { client.isWritable }

    private var clientReadPending = false

    func clientWantsRead() -> Bool {
        if clientReadAllowed { return true }
        clientReadPending = true
        return false
    }

    func maybeResumeClientReads() {
        if clientReadPending && clientReadAllowed {
            clientReadPending = false
            client.read()
        }
    }

    // MARK: requests

    func clientFrame(_ frame: ByteBuffer) {
        guard !closed else { return }
        var body = frame
        let header: RequestHeader
        do {
            header = try RequestHeader.read(from: &body)
        } catch {
            fail("malformed request header: \(error)")
            return
        }
        let exchange = Exchange(apiKey: header.apiKey, apiVersion: header.apiVersion, correlationId: header.correlationId)
        exchanges.append(exchange)
        do {
            try route(exchange, header: header, frame: frame, body: body)
        } catch {
            fail("malformed \(header.apiKey) v\(header.apiVersion) request (correlation id \(header.correlationId)): \(error)")
        }
    }

    private func route(_ exchange: Exchange, header: RequestHeader, frame: ByteBuffer, body: ByteBuffer) throws {
        switch header.apiKey {
        case .apiVersions where !ApiVersionsRequest.versions.contains(header.apiVersion):
            // The protocol's answer to a too-new ApiVersions request: v0 layout, error 35,
            // and our own ApiVersions range so the client retries with one we support.
            let response = ApiVersionsResponse(
                errorCode: KafkaErrorCode.unsupportedVersion,
                apiKeys: [.init(apiKey: ApiKey.apiVersions.rawValue, minVersion: 0, maxVersion: ApiVersionsRequest.versions.upperBound)])
            exchange.state = .ready(encodeResponse(response, exchange: exchange, version: 0))
            drainRequests()
        case .produce where exceedsFilterCap(header), .fetch where exceedsFilterCap(header):
            // Above the cap, topics are named by id and policies could not be applied:
            // refusing is the only fail-closed answer. Veil never advertised these versions.
            throw WireError(.unsupportedVersion(apiKey: header.apiKey.rawValue, version: header.apiVersion))
        case .produce:
            exchange.expectsResponse = try ProduceRequest.peekAcks(body: body, version: header.apiVersion) != 0
            guard let filter = server.filters.records else {
                forwardUnchanged(exchange, frame)
                return
            }
            let request = try ProduceRequest(decoding: body, version: header.apiVersion)
            filter.filterProduce(request, version: header.apiVersion, on: loop).hop(to: loop).whenComplete { [self] result in
                guard !closed else { return }
                switch result {
                case .success(.unchanged):
                    exchange.forward = frame
                    exchange.state = .awaitingUpstream
                case .success(.forward(let replacement, let rejected)):
                    var out = ByteBuffer()
                    header.write(to: &out)
                    replacement.encode(version: header.apiVersion, into: &out)
                    exchange.forward = out
                    exchange.rejectedPartitions = rejected
                    exchange.state = .awaitingUpstream
                case .success(.respond(let response)):
                    exchange.state = exchange.expectsResponse
                        ? .ready(encodeResponse(response, exchange: exchange, version: header.apiVersion)) : .noResponse
                case .failure(let error):
                    fail("produce filter failed: \(error)")
                    return
                }
                drainRequests()
            }
        case .fetch where server.filters.records != nil:
            exchange.fetchRequest = try FetchRequest(decoding: body, version: header.apiVersion)
            forwardUnchanged(exchange, frame)
        default:
            forwardUnchanged(exchange, frame)
        }
    }

    private func exceedsFilterCap(_ header: RequestHeader) -> Bool {
        guard let cap = server.filters.records?.versionCaps[header.apiKey] else { return false }
        return header.apiVersion > cap
    }

    private func forwardUnchanged(_ exchange: Exchange, _ frame: ByteBuffer) {
        exchange.forward = frame
        exchange.state = .awaitingUpstream
        drainRequests()
    }

    /// Sends, in order, every request whose filtering is done.
    private func drainRequests() {
        guard let upstream else { return }
        var wrote = false
        for exchange in exchanges {
            if case .filteringRequest = exchange.state { break }
            guard let frame = exchange.forward else { continue }
            exchange.forward = nil
            upstream.writeFrame(frame)
            wrote = true
            if !exchange.expectsResponse { exchange.state = .noResponse }
        }
        if wrote { upstream.flush() }
        drainResponses()
    }

    // MARK: responses

    func upstreamFrame(_ frame: ByteBuffer) {
        guard !closed else { return }
        guard let exchange = exchanges.first(where: {
            if case .awaitingUpstream = $0.state, $0.forward == nil { return $0.expectsResponse }
            return false
        }) else {
            fail("upstream sent a response with no request waiting")
            return
        }
        var body = frame
        let headerVersion = exchange.apiKey.responseHeaderVersion(exchange.apiVersion)
        let header: ResponseHeader
        do {
            header = try ResponseHeader.read(from: &body, headerVersion: headerVersion)
        } catch {
            fail("malformed response header from upstream: \(error)")
            return
        }
        guard header.correlationId == exchange.correlationId else {
            fail("upstream answered correlation id \(header.correlationId), expected \(exchange.correlationId)")
            return
        }
        exchange.state = .filteringResponse
        let transformed: EventLoopFuture<ByteBuffer?>
        do {
            transformed = try transformResponse(exchange, header: header, body: body)
        } catch {
            fail("malformed \(exchange.apiKey) v\(exchange.apiVersion) response from upstream: \(error)")
            return
        }
        transformed.hop(to: loop).whenComplete { [self] result in
            guard !closed else { return }
            switch result {
            case .success(let replacement):
                exchange.state = .ready(replacement ?? frame)
                drainResponses()
            case .failure(let error):
                fail("cannot process \(exchange.apiKey) response: \(error)")
            }
        }
    }

    private func transformResponse(_ exchange: Exchange, header: ResponseHeader, body: ByteBuffer) throws -> EventLoopFuture<ByteBuffer?> {
        let version = exchange.apiVersion
        let rewriter = AddressRewriter(server: server)
        func encoded<M: KafkaMessage>(_ m: M, _ v: Int16) -> ByteBuffer? {
            var out = ByteBuffer()
            header.write(to: &out, headerVersion: exchange.apiKey.responseHeaderVersion(exchange.apiVersion))
            m.encode(version: v, into: &out)
            return out
        }
        switch exchange.apiKey {
        case .apiVersions:
            var (response, decodedVersion) = try ApiVersionsResponse.decode(body, requestedVersion: version)
            response.apiKeys = ApiVersionsPolicy.intersect(response.apiKeys, caps: server.filters.records?.versionCaps ?? [:])
            return loop.makeSucceededFuture(encoded(response, decodedVersion))
        case .metadata:
            let response = try MetadataResponse(decoding: body, version: version)
            return rewriter.rewrite(response, on: loop).map { encoded($0, version) }
        case .findCoordinator:
            let response = try FindCoordinatorResponse(decoding: body, version: version)
            return rewriter.rewrite(response, version: version, on: loop).map { encoded($0, version) }
        case .describeCluster:
            let response = try DescribeClusterResponse(decoding: body, version: version)
            return rewriter.rewrite(response, on: loop).map { encoded($0, version) }
        case .produce where version >= 10 || !exchange.rejectedPartitions.isEmpty:
            var response = try ProduceResponse(decoding: body, version: version)
            response.merge(exchange.rejectedPartitions)
            guard let endpoints = response.nodeEndpoints else {
                return loop.makeSucceededFuture(exchange.rejectedPartitions.isEmpty ? nil : encoded(response, version))
            }
            return rewriter.rewrite(endpoints, on: loop).map { rewritten in
                var r = response
                r.nodeEndpoints = rewritten
                return encoded(r, version)
            }
        case .fetch:
            let filter = server.filters.records
            guard version >= 16 || filter != nil else { return loop.makeSucceededFuture(nil) }
            let response = try FetchResponse(decoding: body, version: version)
            var rewritten: EventLoopFuture<FetchResponse?> = loop.makeSucceededFuture(nil)
            if let endpoints = response.nodeEndpoints {
                rewritten = rewriter.rewrite(endpoints, on: loop).map { e in
                    var r = response
                    r.nodeEndpoints = e
                    return r
                }
            }
            guard let filter, let request = exchange.fetchRequest else {
                return rewritten.map { $0.flatMap { encoded($0, version) } }
            }
            return rewritten.flatMap { [loop] changed in
                filter.filterFetch(changed ?? response, request: request, version: version, on: loop).hop(to: loop).map { filtered in
                    (filtered ?? changed).flatMap { encoded($0, version) }
                }
            }
        default:
            return loop.makeSucceededFuture(nil)
        }
    }

    private func encodeResponse<M: KafkaMessage>(_ message: M, exchange: Exchange, version: Int16) -> ByteBuffer {
        var out = ByteBuffer()
        ResponseHeader(correlationId: exchange.correlationId)
            .write(to: &out, headerVersion: exchange.apiKey.responseHeaderVersion(exchange.apiVersion))
        message.encode(version: version, into: &out)
        return out
    }

    /// Sends, in order, every response that is ready.
    private func drainResponses() {
        var wrote = false
        while let head = exchanges.first {
            switch head.state {
            case .ready(let frame):
                client.writeFrame(frame)
                wrote = true
                exchanges.removeFirst()
            case .noResponse where head.forward == nil:
                exchanges.removeFirst()
            default:
                if wrote { client.flush() }
                maybeResumeClientReads()
                return
            }
        }
        if wrote { client.flush() }
        maybeResumeClientReads()
    }
}

/// One side of a proxied connection: it hands frames to the connection and lets the
/// connection decide when this side may read, so a slow peer pauses its partner.
final class ProxySideHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Which peer this handler's channel talks to.
    enum Side {
        case client
        case upstream
    }

    let connection: ProxyConnection
    let side: Side

    init(connection: ProxyConnection, side: Side) {
        self.connection = connection
        self.side = side
    }

    func channelActive(context: ChannelHandlerContext) {
        if side == .client { connection.clientActive() }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch side {
        case .client: connection.clientFrame(unwrapInboundIn(data))
        case .upstream: connection.upstreamFrame(unwrapInboundIn(data))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.close()
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            // This side can take more, so its partner may read again.
            switch side {
            case .client: connection.upstream?.read()
            case .upstream: connection.maybeResumeClientReads()
            }
        }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        switch side {
        case .client: if connection.clientWantsRead() { context.read() }
        case .upstream: if connection.upstreamReadAllowed { context.read() }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        connection.fail("from \(side): \(error)")
    }
}
