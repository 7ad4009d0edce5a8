import VeilConfig
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import VeilSASL
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
    ///
    /// `@unchecked Sendable` for the same reason as the connection: it is only touched on
    /// `loop`, including in the completion handlers of futures that hop back to it.
    final class Exchange: @unchecked Sendable {
        enum State {
            case filteringRequest
            case awaitingUpstream
            case filteringResponse
            /// The request is going upstream, or its response to the client, as it arrives.
            case cuttingThrough
            /// The response frame's payload, in parts sent one after the other.
            case ready([ByteBuffer])
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

        var isFilteringRequest: Bool {
            if case .filteringRequest = state { return true }
            return false
        }

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
    /// The record filters for this connection's identity: the server's in sidecar mode; in
    /// gateway mode the authenticated identity's, and none before authentication.
    private var filters: ExchangeFilters
    /// Gateway mode: the identity this connection acts as, once authenticated.
    private var identity: String?
    private var clientAuth = ClientAuthentication()
    /// Set once a client's authentication failed: its connection only waits to be closed.
    private var refusing = false
    static let failedAuthenticationDelay = TimeAmount.seconds(1)
    /// The broker the upstream connection dialled, as named in metadata or configuration.
    private var upstreamAddress: HostPort?
    /// Shutdown began: read no more requests, close once the open ones are answered.
    private var draining = false
    /// A request is being cut through to the upstream: its remaining bytes are still read
    /// during shutdown, or it could never be answered.
    private var requestInPassage = false
    /// Why the connection is closing, when something went wrong; logged once at close.
    private var closeReason: String?
    /// How an ordinary close came about, when worth saying (logged at info, not an error).
    private var closeNote: String?
    private var requestCount = 0
    private var requestBytes = 0
    private var responseBytes = 0
    private let openedAt = NIODeadline.now()

    init(server: ProxyServer, client: Channel, target: ProxyServer.Target) {
        self.server = server
        self.client = client
        self.loop = client.eventLoop
        self.target = target
        var logger = server.logger
        logger[metadataKey: "peer"] = "\(client.remoteAddress.flatMap { a in a.ipAddress.map { "\($0):\(a.port ?? 0)" } } ?? "?")"
        self.logger = logger
        self.filters = server.isGateway ? .passThrough : server.filters
        server.register(self)
    }

    private var isGateway: Bool { server.isGateway }

    /// Picks up filters a reload installed; called before each request.
    private func refreshFilters() {
        guard isGateway else {
            filters = server.filters
            return
        }
        guard let identity else { return }
        guard let found = server.gateway?.identity(named: identity) else {
            // Fail closed: without its identity's filters the connection must not forward records.
            fail("identity \(identity) is no longer configured after a reload", kind: .configuration)
            return
        }
        filters = found.1
    }
    private var authenticated: Bool { !isGateway || identity != nil }

    /// Gateway mode: the client's TLS handshake finished; a certificate whose subject maps to
    /// an identity authenticates the connection.
    func clientCertificate(_ certificate: NIOSSLCertificate?) {
        guard let gateway = server.gateway, identity == nil, let certificate else { return }
        let subject = ClientCertificateSubject.attributes(of: certificate)
        guard let match = gateway.configuration.identity(forCertificateSubject: subject) else {
            logger.info("client certificate subject \(ClientCertificateSubject.describe(subject)) maps to no identity; SASL is still possible")
            return
        }
        adopt(identity: match.name, how: "client certificate \(ClientCertificateSubject.describe(subject))")
    }

    private func adopt(identity name: String, how: String) {
        guard let found = server.gateway?.identity(named: name) else {
            fail("\(how) authenticated identity '\(name)', which is not configured")
            return
        }
        let (identity, filters) = found
        self.identity = identity.name
        self.filters = filters
        logger[metadataKey: "identity"] = "\(identity.name)"
        logger.info("client authenticated by \(how) as identity \(identity.name)")
    }

    // MARK: lifecycle

    func clientActive() {
        if let refusal = server.setupGate.check() {
            let (remaining, first) = refusal
            // A recent credential or certificate failure would only repeat: refuse without
            // touching the broker, so reconnecting clients can't hammer it.
            let message = "upstream set-up failed recently; not contacting the broker for another \(remaining.nanoseconds / 1_000_000) ms"
            if first { logger.warning("closing connection: \(message)") } else { logger.debug("closing connection: \(message)") }
            server.metrics.error(.upstreamSetup)
            closed = true
            client.close(promise: nil)
            server.unregister(self)
            return
        }
        let candidates = server.upstreamCandidates(for: target)
        connect(candidates[...], lastError: nil)
    }

    private func connect(_ candidates: ArraySlice<HostPort>, lastError: Error?) {
        guard let next = candidates.first else {
            fail("no upstream reachable for \(target)\(lastError.map { ": \($0)" } ?? "")", kind: .upstreamUnreachable)
            return
        }
        let maxFrame = server.settings.maxFrameBytes
        let security = server.security
        let exchange: (any SaslClientExchange)?
        do {
            exchange = try security.sasl?(next)
        } catch {
            fail("cannot start SASL towards broker \(next): \(error)", kind: .upstreamSetup)
            return
        }
        // Happy eyeballs may try several channels; each gets its own set-up promise, and only
        // the one that connected is waited for.
        let readiness = NIOLoopBoundBox([ObjectIdentifier: EventLoopFuture<Void>](), eventLoop: loop)
        ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(10))
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let ready = channel.eventLoop.makePromise(of: Void.self)
                    readiness.value[ObjectIdentifier(channel)] = ready.futureResult
                    let sync = channel.pipeline.syncOperations
                    if let tls = security.tls {
                        try sync.addHandler(NIOSSLClientHandler(context: tls.context, serverHostname: tls.serverName(for: next.host)))
                    }
                    try sync.addHandler(ByteToMessageHandler(KafkaFrameDecoder(maxFrameBytes: maxFrame, cutThrough: CutThroughPassage(connection: self, side: .upstream))))
                    try sync.addHandler(UpstreamSessionHandler(
                        broker: next, tls: security.tls, mechanism: security.saslMechanism, exchange: exchange, ready: ready,
                        timeout: security.setupTimeout))
                    try sync.addHandler(ProxySideHandler(connection: self, side: .upstream))
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
                    guard let ready = readiness.value[ObjectIdentifier(channel)] else {
                        channel.close(promise: nil)
                        fail("upstream connection to \(next) has no set-up state")
                        return
                    }
                    readiness.value = [:]
                    ready.whenComplete { [self] outcome in
                        switch outcome {
                        case .success:
                            server.setupGate.recordSuccess()
                            guard !closed else { channel.close(promise: nil); return }
                            upstream = channel
                            upstreamAddress = next
                            maybeResumeClientReads()
                            // Requests answered locally while upstream was not ready may be queued.
                            drainRequests()
                        case .failure(let error):
                            var reason = "\(error)"
                            if let setup = error as? UpstreamSetupError, setup.holdsOffRetries {
                                let delay = server.setupGate.recordFailure()
                                reason += "; new connections are refused for \(delay.nanoseconds / 1_000_000) ms instead of retrying"
                            }
                            fail(reason, kind: .upstreamSetup)
                        }
                    }
                case .failure(let error):
                    readiness.value = [:]
                    logger.warning("upstream \(next) unreachable: \(error)")
                    connect(candidates.dropFirst(), lastError: error)
                }
            }
    }

    /// A log line for an error on one side. A TLS alert from the broker after the handshake
    /// (TLS 1.3 servers refuse a client certificate only then) is described like a handshake
    /// failure and holds off new connections the same way.
    func describe(_ error: Error, from side: ProxySideHandler.Side, channel: Channel) -> String {
        guard side == .upstream, let tls = server.security.tls, error is NIOSSLError || error is BoringSSLError,
              let broker = upstreamAddress
        else { return "from \(side): \(error)" }
        let delay = server.setupGate.recordFailure()
        return TLSDiagnosis.describe(error, broker: broker, tls: tls, peer: nil)
            + "; new connections are refused for \(delay.nanoseconds / 1_000_000) ms instead of retrying"
    }

    /// Closes both sides; `reason` is logged once, at close, and counted by `kind`.
    func fail(_ reason: String, kind: ProxyMetrics.ErrorKind = .network) {
        guard !closed else { return }
        closeReason = reason
        server.metrics.error(kind)
        close()
    }

    /// One side's channel went inactive: the other closes too. An upstream that hangs up, or
    /// a client that leaves with requests unanswered, is said in the connection's one line.
    func sideClosed(_ side: ProxySideHandler.Side, reset: Bool = false) {
        guard !closed else { return }
        let waiting = exchanges.count
        let broker = upstreamAddress.map { "\($0)" } ?? "broker"
        switch side {
        case .upstream where waiting > 0:
            closeReason = "upstream \(broker) closed its connection with \(waiting) request(s) unanswered"
            server.metrics.error(.network)
        case .upstream:
            closeNote = "upstream \(broker) closed its idle connection"
        case .client where waiting > 0:
            closeNote = "client disconnected with \(waiting) request(s) in flight" + (reset ? " (connection reset)" : "")
        case .client:
            closeNote = reset ? "client reset its connection" : nil
        }
        close()
    }

    /// Closes both sides and logs the connection's one summary line.
    func close() {
        guard !closed else { return }
        closed = true
        client.close(promise: nil)
        upstream?.close(promise: nil)
        exchanges.removeAll()
        server.unregister(self)
        var summary: Logger.Metadata = [
            "requests": "\(requestCount)", "request_bytes": "\(requestBytes)", "response_bytes": "\(responseBytes)",
            "duration_ms": "\((NIODeadline.now() - openedAt).nanoseconds / 1_000_000)",
        ]
        if let upstreamAddress { summary["upstream"] = "\(upstreamAddress)" }
        if let closeReason {
            logger.warning("closing connection: \(closeReason)", metadata: summary)
        } else if let closeNote {
            logger.info("connection closed: \(closeNote)", metadata: summary)
        } else {
            logger.info("connection closed", metadata: summary)
        }
    }

    /// Shutdown: stop reading requests and close once every request read so far is answered.
    func drain() {
        draining = true
        closeIfDrained()
    }

    private func closeIfDrained() {
        guard draining, !closed, exchanges.isEmpty else { return }
        // The empty write completes after every response queued before it, so nothing
        // already answered is cut off by the close.
        client.writeAndFlush(ByteBuffer()).whenComplete { [self] _ in close() }
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
        if draining && !requestInPassage { return false }
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
        guard !closed, !refusing else { return }
        if let peeked = RequestHeader.peek(frame), let refusal = RequestScreen.refusal(apiKey: peeked.apiKey, version: peeked.apiVersion) {
            fail("refused request (correlation id \(peeked.correlationId)): \(refusal)")
            return
        }
        var body = frame
        let header: RequestHeader
        do {
            header = try RequestHeader.read(from: &body)
        } catch {
            fail("malformed request header: \(error)", kind: .malformedRequest)
            return
        }
        requestCount += 1
        requestBytes += frame.readableBytes
        server.metrics.request(header.apiKey, bytes: frame.readableBytes)
        refreshFilters()
        guard !closed else { return }
        let exchange = Exchange(apiKey: header.apiKey, apiVersion: header.apiVersion, correlationId: header.correlationId)
        exchanges.append(exchange)
        do {
            try route(exchange, header: header, frame: frame, body: body)
        } catch let refusal as ClientAuthFailure {
            fail(refusal.log, kind: .clientAuthentication)
        } catch {
            fail("malformed \(header.apiKey) v\(header.apiVersion) request (correlation id \(header.correlationId)): \(error)",
                 kind: .malformedRequest)
        }
    }

    private func route(_ exchange: Exchange, header: RequestHeader, frame: ByteBuffer, body: ByteBuffer) throws {
        switch header.apiKey {
        case .saslHandshake, .saslAuthenticate:
            if isGateway {
                try authenticateClient(exchange, header: header, body: body)
            } else if let mechanism = server.security.saslMechanism {
                refuseClientSasl(exchange, header: header, upstreamMechanism: mechanism)
            } else {
                // Nothing authenticates upstream for the client: its own SASL goes to the broker.
                forwardUnchanged(exchange, frame)
            }
        case let key where !authenticated && key != .apiVersions:
            // As a SASL broker does: nothing but ApiVersions and SASL before authentication.
            throw ClientAuthFailure(code: ClientAuthentication.illegalState, log: "\(key) request before authenticating to the gateway")
        case .apiVersions where !ApiVersionsRequest.versions.contains(header.apiVersion):
            // The protocol's answer to a too-new ApiVersions request: v0 layout, error 35,
            // and our own ApiVersions range so the client retries with one we support.
            logger.info("client asked for ApiVersions v\(header.apiVersion); answered UNSUPPORTED_VERSION with Veil's range v0-v\(ApiVersionsRequest.versions.upperBound)")
            let response = ApiVersionsResponse(
                errorCode: KafkaErrorCode.unsupportedVersion,
                apiKeys: [.init(apiKey: ApiKey.apiVersions.rawValue, minVersion: 0, maxVersion: ApiVersionsRequest.versions.upperBound)])
            exchange.state = .ready([encodeResponse(response, exchange: exchange, version: 0)])
            drainRequests()
        case .produce where exceedsFilterCap(header), .fetch where exceedsFilterCap(header):
            // Above the cap, topics are named by id and policies could not be applied:
            // refusing is the only fail-closed answer. Veil never advertised these versions.
            throw WireError(.unsupportedVersion(apiKey: header.apiKey.rawValue, version: header.apiVersion))
        case .produce:
            exchange.expectsResponse = try ProduceRequest.peekAcks(body: body, version: header.apiVersion) != 0
            guard let filter = filters.records else {
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
                    // Sized for the sealed records, so encoding never regrows (and recopies) the frame.
                    var out = ByteBuffer()
                    out.reserveCapacity(frame.readableBytes + replacement.recordByteCount - request.recordByteCount + 256)
                    header.write(to: &out)
                    replacement.encode(version: header.apiVersion, into: &out)
                    exchange.forward = out
                    exchange.rejectedPartitions = rejected
                    exchange.state = .awaitingUpstream
                case .success(.respond(let response)):
                    exchange.state = exchange.expectsResponse
                        ? .ready([encodeResponse(response, exchange: exchange, version: header.apiVersion)]) : .noResponse
                case .failure(let error):
                    fail("produce filter failed: \(error)")
                    return
                }
                drainRequests()
            }
        case .fetch where filters.records != nil:
            exchange.fetchRequest = try FetchRequest(decoding: body, version: header.apiVersion)
            forwardUnchanged(exchange, frame)
        default:
            forwardUnchanged(exchange, frame)
        }
    }

    private func exceedsFilterCap(_ header: RequestHeader) -> Bool {
        guard let cap = filters.records?.versionCaps[header.apiKey] else { return false }
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

    // MARK: client SASL

    /// Gateway mode: SASL terminates here, against the users file.
    private func authenticateClient(_ exchange: Exchange, header: RequestHeader, body: ByteBuffer) throws {
        guard let gateway = server.gateway else { return }
        let version = header.apiVersion
        if header.apiKey == .saslHandshake {
            guard version >= 1 else {
                // v0 is followed by unframed tokens; Veil advertises v1 only, so clients use it.
                throw ClientAuthFailure(code: ClientAuthentication.illegalState, log: "SaslHandshake v0 is not supported; Veil offers v1")
            }
            if identity != nil {
                throw ClientAuthFailure(code: ClientAuthentication.illegalState, log: "SaslHandshake after authenticating")
            }
            let request = try SaslHandshakeRequest(decoding: body, version: version)
            let (code, offered) = clientAuth.handshake(request, gateway: gateway)
            respondLocally(exchange, SaslHandshakeResponse(errorCode: code, mechanisms: offered), version: version)
            if code != 0 { fail("client asked for SASL mechanism \(request.mechanism); the gateway offers \(offered.joined(separator: ", "))") }
            return
        }
        let request = try SaslAuthenticateRequest(decoding: body, version: version)
        var authBytes = request.authBytes
        let bytes = authBytes.readBytes(length: authBytes.readableBytes) ?? []
        guard identity == nil else {
            throw ClientAuthFailure(code: ClientAuthentication.illegalState, log: "SaslAuthenticate after authenticating")
        }
        let mechanism = clientAuth.chosenMechanism
        switch clientAuth.authenticate(bytes, gateway: gateway) {
        case .success(let (reply, user)):
            respondLocally(exchange, SaslAuthenticateResponse(errorCode: 0, errorMessage: nil, authBytes: ByteBuffer(bytes: reply)), version: version)
            if let user {
                guard let record = gateway.users.users[user] else {
                    fail("user '\(user)' vanished from the users file")
                    return
                }
                adopt(identity: record.identity, how: "SASL \(mechanism?.rawValue ?? "") as user '\(user)'")
            }
        case .failure(let refusal):
            // As Kafka's connection.failed.authentication.delay.ms: the error goes out at once
            // (closing right behind it can beat the client to reading it), and the connection
            // closes after a pause during which nothing more is read from it.
            refusing = true
            logger.warning("client authentication refused: \(refusal.log)")
            let response = SaslAuthenticateResponse(errorCode: refusal.code, errorMessage: refusal.message, authBytes: ByteBuffer())
            respondLocally(exchange, response, version: version)
            loop.scheduleTask(in: Self.failedAuthenticationDelay) { [self] in close() }
        }
    }

    /// Sidecar mode with upstream SASL: Veil authenticates upstream with its own credentials,
    /// so a client's SASL can't be passed on. It is answered here, with an error that says why.
    private func refuseClientSasl(_ exchange: Exchange, header: RequestHeader, upstreamMechanism: SaslMechanismName) {
        let message = "Veil authenticates to the cluster itself (\(upstreamMechanism)); clients connect to the sidecar without SASL"
        if header.apiKey == .saslHandshake {
            respondLocally(exchange, SaslHandshakeResponse(errorCode: ClientAuthentication.unsupportedMechanism, mechanisms: []),
                           version: min(header.apiVersion, 1))
        } else {
            respondLocally(exchange, SaslAuthenticateResponse(errorCode: ClientAuthentication.illegalState, errorMessage: message, authBytes: ByteBuffer()),
                           version: min(header.apiVersion, 2))
        }
        logger.info("client sent \(header.apiKey); refused: \(message)")
    }

    private func respondLocally<M: KafkaMessage>(_ exchange: Exchange, _ message: M, version: Int16) {
        exchange.state = .ready([encodeResponse(message, exchange: exchange, version: version)])
        drainResponses()
    }

    // MARK: responses

    func upstreamFrame(_ frame: ByteBuffer) {
        guard !closed else { return }
        guard let exchange = exchanges.first(where: {
            if case .awaitingUpstream = $0.state, $0.forward == nil { return $0.expectsResponse }
            return false
        }) else {
            fail("upstream sent a response with no request waiting", kind: .malformedResponse)
            return
        }
        var body = frame
        let headerVersion = exchange.apiKey.responseHeaderVersion(exchange.apiVersion)
        let header: ResponseHeader
        do {
            header = try ResponseHeader.read(from: &body, headerVersion: headerVersion)
        } catch {
            fail("malformed response header from upstream: \(error)", kind: .malformedResponse)
            return
        }
        guard header.correlationId == exchange.correlationId else {
            fail("upstream answered correlation id \(header.correlationId), expected \(exchange.correlationId)", kind: .malformedResponse)
            return
        }
        exchange.state = .filteringResponse
        let transformed: EventLoopFuture<[ByteBuffer]?>
        do {
            transformed = try transformResponse(exchange, header: header, body: body)
        } catch {
            fail("malformed \(exchange.apiKey) v\(exchange.apiVersion) response from upstream: \(error)", kind: .malformedResponse)
            return
        }
        transformed.hop(to: loop).whenComplete { [self] result in
            guard !closed else { return }
            switch result {
            case .success(let replacement):
                exchange.state = .ready(replacement ?? [frame])
                drainResponses()
            case .failure(let error):
                fail("cannot process \(exchange.apiKey) response: \(error)")
            }
        }
    }

    /// Whether the upstream's response to `exchange` goes to the client byte for byte: nothing
    /// in it names a broker address to rewrite, a record to filter, or an error Veil adds.
    private func forwardsResponseUnchanged(_ exchange: Exchange) -> Bool {
        switch exchange.apiKey {
        case .apiVersions, .metadata, .findCoordinator, .describeCluster:
            return false
        case .produce:
            // v10 may carry broker endpoints; refused partitions are merged into the answer.
            return exchange.apiVersion < 10 && exchange.rejectedPartitions.isEmpty
        case .fetch:
            // v16 may carry broker endpoints.
            return exchange.apiVersion < 16 && filters.records == nil
        default:
            return true
        }
    }

    private func transformResponse(_ exchange: Exchange, header: ResponseHeader, body: ByteBuffer) throws -> EventLoopFuture<[ByteBuffer]?> {
        let version = exchange.apiVersion
        if forwardsResponseUnchanged(exchange) { return loop.makeSucceededFuture(nil) }
        let rewriter = AddressRewriter(server: server)
        @Sendable func encoded<M: KafkaMessage>(_ m: M, _ v: Int16) -> [ByteBuffer]? {
            // Record sets are sent as parts of their own rather than copied behind the header.
            var head = ByteBuffer()
            header.write(to: &head, headerVersion: exchange.apiKey.responseHeaderVersion(exchange.apiVersion))
            return m.encodeParts(version: v, after: head)
        }
        switch exchange.apiKey {
        case .apiVersions:
            var (response, decodedVersion) = try ApiVersionsResponse.decode(body, requestedVersion: version)
            response.apiKeys = ApiVersionsPolicy.intersect(response.apiKeys, caps: server.versionCaps)
            if isGateway { response.apiKeys = ApiVersionsPolicy.offeringSasl(response.apiKeys) }
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
        case .produce:
            // v10+ (node endpoints) or with refused partitions: the others passed unchanged above.
            var response = try ProduceResponse(decoding: body, version: version)
            response.merge(exchange.rejectedPartitions)
            // An empty endpoint list (brokers send one when nothing moved) has nothing to rewrite.
            guard let endpoints = response.nodeEndpoints, !endpoints.endpoints.isEmpty else {
                return loop.makeSucceededFuture(exchange.rejectedPartitions.isEmpty ? nil : encoded(response, version))
            }
            let merged = response
            return rewriter.rewrite(endpoints, on: loop).map { rewritten in
                var r = merged
                r.nodeEndpoints = rewritten
                return encoded(r, version)
            }
        case .fetch:
            let filter = filters.records
            let response = try FetchResponse(decoding: body, version: version)
            var rewritten: EventLoopFuture<FetchResponse?> = loop.makeSucceededFuture(nil)
            // Only a non-empty endpoint list needs rewriting; otherwise the upstream's bytes
            // go to the client untouched unless the record filter changes something.
            if let endpoints = response.nodeEndpoints, !endpoints.endpoints.isEmpty {
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
            case .ready(let parts):
                let size = parts.reduce(0) { $0 + $1.readableBytes }
                responseBytes += size
                server.metrics.response(head.apiKey, bytes: size)
                client.writeFrame(parts: parts, size: size)
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
        closeIfDrained()
    }
}

extension ProxyConnection {
    /// Only a request every earlier request has gone upstream ahead of can go as it arrives;
    /// only a Produce, the one large request, and only one Veil forwards unchanged (no record
    /// filter for this identity); and only when its header and acks have arrived to be read.
    func beginRequestCutThrough(size: Int, head: ByteBuffer) -> Bool {
        guard !closed, !refusing, !draining, authenticated, let upstream, upstream.isActive,
              let peeked = RequestHeader.peek(head), peeked.apiKey == .produce,
              RequestScreen.refusal(apiKey: peeked.apiKey, version: peeked.apiVersion) == nil,
              exchanges.allSatisfy({ $0.forward == nil && !$0.isFilteringRequest })
        else { return false }
        refreshFilters()
        guard !closed, filters.records == nil else { return false }
        var body = head
        guard let header = try? RequestHeader.read(from: &body), !exceedsFilterCap(header),
              let acks = try? ProduceRequest.peekAcks(body: body, version: header.apiVersion)
        else { return false }
        requestCount += 1
        requestBytes += size
        server.metrics.request(header.apiKey, bytes: size)
        let exchange = Exchange(apiKey: header.apiKey, apiVersion: header.apiVersion, correlationId: header.correlationId)
        exchange.expectsResponse = acks != 0
        // Until its last byte is sent it holds its place, so a shutdown does not cut it off.
        exchange.state = .cuttingThrough
        exchanges.append(exchange)
        requestInPassage = true
        return true
    }

    func requestCutThrough(_ bytes: ByteBuffer, last: Bool) {
        // Nothing joins the queue while a frame is being cut through: it is the last exchange.
        guard !closed, let upstream, let exchange = exchanges.last else { return }
        // Flushed when this round of reads ends (`readsComplete`): one write for several reads.
        upstream.write(bytes, promise: nil)
        guard last else { return }
        upstream.flush()
        requestInPassage = false
        // Its answer can only come after this, on this event loop. An acks=0 request is done.
        exchange.state = exchange.expectsResponse ? .awaitingUpstream : .noResponse
        drainResponses()
    }

    /// Only the response the client is waiting for next can go out as it arrives: one behind
    /// an earlier response still being rewritten would overtake it.
    func beginResponseCutThrough(size: Int, head: ByteBuffer) -> Bool {
        guard !closed, let correlationId = head.getInteger(at: head.readerIndex, as: Int32.self),
              let first = exchanges.first, first.correlationId == correlationId, first.expectsResponse,
              first.forward == nil, case .awaitingUpstream = first.state, forwardsResponseUnchanged(first)
        else { return false }
        first.state = .cuttingThrough
        responseBytes += size
        server.metrics.response(first.apiKey, bytes: size)
        return true
    }

    func responseCutThrough(_ bytes: ByteBuffer, last: Bool) {
        guard !closed else { return }
        client.write(bytes, promise: nil)
        guard last else { return }
        client.flush()
        exchanges.removeFirst()
        drainResponses()
    }
}

extension ProxyConnection {
    /// A round of reads on `side` ended: what was cut through from it goes out in one write.
    func readsComplete(on side: ProxySideHandler.Side) {
        guard !closed else { return }
        switch side {
        case .client where requestInPassage:
            upstream?.flush()
        case .upstream:
            if case .cuttingThrough = exchanges.first?.state { client.flush() }
        case .client:
            break
        }
    }
}

/// Hands one side's cut-through frames to its connection, on the connection's event loop.
final class CutThroughPassage: FrameCutThrough {
    let connection: ProxyConnection
    let side: ProxySideHandler.Side

    init(connection: ProxyConnection, side: ProxySideHandler.Side) {
        self.connection = connection
        self.side = side
    }

    func beginCutThrough(size: Int, head: ByteBuffer) -> Bool {
        switch side {
        case .client: connection.beginRequestCutThrough(size: size, head: head)
        case .upstream: connection.beginResponseCutThrough(size: size, head: head)
        }
    }

    func cutThrough(_ bytes: ByteBuffer, last: Bool) {
        switch side {
        case .client: connection.requestCutThrough(bytes, last: last)
        case .upstream: connection.responseCutThrough(bytes, last: last)
        }
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
        connection.sideClosed(side)
        context.fireChannelInactive()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        connection.readsComplete(on: side)
        context.fireChannelReadComplete()
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
        // A client that resets its connection has left, as one that closes it has: that is
        // its choice, not a network error of Veil's, and its line says so the same way.
        if side == .client, let io = error as? IOError, io.errnoCode == ECONNRESET || io.errnoCode == EPIPE {
            connection.sideClosed(.client, reset: true)
            return
        }
        connection.fail(connection.describe(error, from: side, channel: context.channel))
    }
}
