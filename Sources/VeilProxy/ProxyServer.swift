import VeilConfig
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import VeilWire

/// The sidecar proxy: a bootstrap listener for the application, plus one listener per
/// upstream broker, created on demand as brokers appear in responses.
public final class ProxyServer: Sendable {
    public let settings: ProxySettings
    public let brokers: BrokerDirectory
    let group: EventLoopGroup
    let logger: Logger
    /// Connection, request and error counts for `/metrics`.
    public let metrics = ProxyMetrics()
    /// TLS and SASL towards the brokers.
    let security: UpstreamSecurity
    /// The record filters and gateway identities in force; ``replacePolicies(filters:gateway:)`` swaps them.
    private let policies: NIOLockedValueBox<(filters: ExchangeFilters, gateway: GatewayAuthentication?)>
    /// The record filters of sidecar mode; connections read them per request, so a reload
    /// applies to open connections.
    var filters: ExchangeFilters { policies.withLockedValue { $0.filters } }
    /// Gateway mode's identities and their filters; `nil` in sidecar mode.
    var gateway: GatewayAuthentication? { policies.withLockedValue { $0.gateway } }
    /// Whether the server is a gateway; fixed for its life (a reload cannot switch modes).
    let isGateway: Bool
    /// TLS for the client-facing listeners; `nil` is plaintext.
    let listenerTLS: NIOSSLContext?
    /// Holds off new upstream connections after credential or certificate failures.
    let setupGate = SetupFailureGate()
    /// Version caps every identity's filters can work with, advertised before a gateway
    /// client has authenticated (so before its own filters are known).
    let versionCaps: [ApiKey: Int16]
    /// Fetch v16 responses may name brokers (KIP-951 node endpoints) in their very last bytes,
    /// so Veil could not pass one on before its end had arrived and been checked for addresses
    /// to rewrite: at v15 a large unchanged Fetch response goes to the client as it arrives
    /// (see `FrameCutThrough`). Clients lose only the leader hint KIP-951 adds to an error
    /// answer and refresh metadata instead, as before v16. Sidecars that filter records are
    /// capped lower already (topic names), so this only changes pass-through.
    static let cutThroughCaps: [ApiKey: Int16] = [.fetch: 15]
    private let channels: NIOLockedValueBox<[Channel]>
    /// Open client connections, for draining at shutdown.
    private let connections = NIOLockedValueBox([ObjectIdentifier: ProxyConnection]())
    /// False once shutdown began: no new listeners are bound.
    private let accepting = NIOLockedValueBox(true)

    public init(settings: ProxySettings, group: EventLoopGroup, logger: Logger, filters: ExchangeFilters = .passThrough,
                security: UpstreamSecurity = .none, listenerTLS: NIOSSLContext? = nil, gateway: GatewayAuthentication? = nil) {
        self.settings = settings
        self.group = group
        self.logger = logger
        self.policies = NIOLockedValueBox((filters, gateway))
        self.isGateway = gateway != nil
        self.security = security
        self.listenerTLS = listenerTLS
        var caps = filters.records?.versionCaps ?? [:]
        for f in gateway.map({ Array($0.filters.values) }) ?? [] {
            caps.merge(f.records?.versionCaps ?? [:]) { min($0, $1) }
        }
        caps.merge(Self.cutThroughCaps) { min($0, $1) }
        versionCaps = caps
        brokers = BrokerDirectory(ports: settings.brokerPorts)
        channels = NIOLockedValueBox([])
    }

    /// Binds the bootstrap listener. Returns its bound address.
    @discardableResult
    public func start() async throws -> HostPort {
        let channel = try await bind(host: settings.listen.host, port: settings.listen.port, target: .bootstrap).get()
        let port = channel.localAddress?.port ?? settings.listen.port
        let address = HostPort(host: settings.listen.host, port: port)
        logger.info("listening \(address) (bootstrap) -> upstream \(settings.upstreamBootstrap.map(\.description).joined(separator: ","))")
        return address
    }

    /// Closes every listener. Open connections close with their peers.
    public func stop() async {
        accepting.withLockedValue { $0 = false }
        let all = channels.withLockedValue { c in defer { c.removeAll() }; return c }
        for c in all { try? await c.close() }
    }

    /// Replaces the record filters (sidecar mode) or the gateway's identities. Open
    /// connections pick the new ones up at their next request.
    public func replacePolicies(filters: ExchangeFilters, gateway: GatewayAuthentication?) throws(ConfigurationError) {
        guard (gateway != nil) == isGateway else {
            throw ConfigurationError(path: "gateway", problem: "a reload cannot switch between sidecar and gateway mode; restart instead")
        }
        policies.withLockedValue { $0 = (filters, gateway) }
    }

    /// Graceful shutdown: stops accepting, lets every connection finish the requests it has
    /// already read, and closes those still busy after `deadline`. Returns how many were
    /// cut off at the deadline.
    @discardableResult
    public func shutdown(deadline: Duration) async -> Int {
        await stop()
        let open = connections.withLockedValue { Array($0.values) }
        logger.info("draining \(open.count) connection(s), deadline \(deadline)")
        for connection in open { connection.loop.execute { connection.drain() } }
        let end = ContinuousClock.now + deadline
        while ContinuousClock.now < end, connections.withLockedValue({ !$0.isEmpty }) {
            try? await Task.sleep(for: .milliseconds(20))
        }
        let left = connections.withLockedValue { Array($0.values) }
        for connection in left {
            connection.loop.execute { connection.fail("shutdown deadline reached with requests in flight", kind: .shutdownDeadline) }
        }
        return left.count
    }

    func register(_ connection: ProxyConnection) {
        connections.withLockedValue { $0[ObjectIdentifier(connection)] = connection }
        metrics.connectionOpened()
    }

    func unregister(_ connection: ProxyConnection) {
        let removed = connections.withLockedValue { $0.removeValue(forKey: ObjectIdentifier(connection)) != nil }
        if removed { metrics.connectionClosed() }
    }

    /// Where a listener's accepted connections go upstream.
    enum Target: Sendable {
        case bootstrap
        case broker(Int32)
    }

    private func bind(host: String, port: Int, target: Target) -> EventLoopFuture<Channel> {
        let maxFrame = settings.maxFrameBytes
        let tls = listenerTLS
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] child in
                child.eventLoop.makeCompletedFuture {
                    let connection = ProxyConnection(server: self, client: child, target: target)
                    if let tls {
                        try child.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
                        try child.pipeline.syncOperations.addHandler(ClientTLSHandler(connection: connection))
                    }
                    try child.pipeline.syncOperations.addHandler(ByteToMessageHandler(KafkaFrameDecoder(
                        maxFrameBytes: maxFrame, cutThrough: CutThroughPassage(connection: connection, side: .client))))
                    try child.pipeline.syncOperations.addHandler(ProxySideHandler(connection: connection, side: .client))
                }
            }
            .bind(host: host, port: port)
            .map { [channels] channel in
                channels.withLockedValue { $0.append(channel) }
                return channel
            }
    }

    /// Returns the local port for node `nodeId`, binding its listener if this is the
    /// first time the node is seen.
    func ensureListener(nodeId: Int32, upstream: HostPort, on loop: EventLoop) -> EventLoopFuture<Int> {
        let registration: (port: Int, isNew: Bool)
        do {
            registration = try brokers.register(nodeId: nodeId, upstream: upstream)
        } catch {
            logger.error("\(error)")
            return loop.makeFailedFuture(error)
        }
        if registration.isNew {
            guard accepting.withLockedValue({ $0 }) else {
                return loop.makeFailedFuture(ChannelError.ioOnClosedChannel)
            }
            let bound = bindBrokerListener(nodeId: nodeId, port: registration.port)
                .map { [logger] port in
                    logger.info("listening \(self.settings.listen.host):\(port) (broker \(nodeId)) -> upstream \(upstream)")
                    return port
                }
            bound.whenFailure { [logger] error in
                logger.error("cannot listen for broker \(nodeId) on \(self.settings.listen.host): \(error)")
            }
            brokers.setListener(bound, for: nodeId)
            return bound.hop(to: loop)
        }
        guard let bound = brokers.listener(for: nodeId) else { return loop.makeSucceededFuture(registration.port) }
        return bound.hop(to: loop)
    }

    /// Binds node `nodeId`'s listener on `port`. A port another process already holds is
    /// skipped for the next one in the range: a client must reach every broker, and which
    /// local port it uses is announced in Metadata anyway.
    private func bindBrokerListener(nodeId: Int32, port: Int) -> EventLoopFuture<Int> {
        bind(host: settings.listen.host, port: port, target: .broker(nodeId))
            .map { _ in port }
            .flatMapError { [self] error in
                guard let io = error as? IOError, io.errnoCode == EADDRINUSE else {
                    return group.next().makeFailedFuture(error)
                }
                let next: Int
                do {
                    next = try brokers.reassign(nodeId: nodeId)
                } catch {
                    return group.next().makeFailedFuture(error)
                }
                logger.warning("port \(port) for broker \(nodeId) is in use by another process; trying \(next)")
                return bindBrokerListener(nodeId: nodeId, port: next)
            }
    }

    /// Upstream addresses to try for a new connection on a listener, in order.
    func upstreamCandidates(for target: Target) -> [HostPort] {
        switch target {
        case .bootstrap:
            return settings.upstreamBootstrap
        case .broker(let id):
            return brokers.upstream(for: id).map { [$0] } ?? []
        }
    }
}
