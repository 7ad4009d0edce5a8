import VeilConfig
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import VeilWire

/// The sidecar proxy: a bootstrap listener for the application, plus one listener per
/// upstream broker, created on demand as brokers appear in responses.
public final class ProxyServer: Sendable {
    public let settings: ProxySettings
    public let brokers: BrokerDirectory
    let group: EventLoopGroup
    let logger: Logger
    let filters: ExchangeFilters
    private let channels: NIOLockedValueBox<[Channel]>

    public init(settings: ProxySettings, group: EventLoopGroup, logger: Logger, filters: ExchangeFilters = .passThrough) {
        self.settings = settings
        self.group = group
        self.logger = logger
        self.filters = filters
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
        let all = channels.withLockedValue { c in defer { c.removeAll() }; return c }
        for c in all { try? await c.close() }
    }

    /// Where a listener's accepted connections go upstream.
    enum Target: Sendable {
        case bootstrap
        case broker(Int32)
    }

    private func bind(host: String, port: Int, target: Target) -> EventLoopFuture<Channel> {
        let maxFrame = settings.maxFrameBytes
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] child in
                child.eventLoop.makeCompletedFuture {
                    let connection = ProxyConnection(server: self, client: child, target: target)
                    try child.pipeline.syncOperations.addHandler(ByteToMessageHandler(KafkaFrameDecoder(maxFrameBytes: maxFrame)))
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
            let bound = bind(host: settings.listen.host, port: registration.port, target: .broker(nodeId))
                .map { [logger] _ in
                    logger.info("listening \(self.settings.listen.host):\(registration.port) (broker \(nodeId)) -> upstream \(upstream)")
                }
            bound.whenFailure { [logger] error in
                logger.error("cannot listen on \(self.settings.listen.host):\(registration.port) for broker \(nodeId): \(error)")
            }
            brokers.setListener(bound, for: nodeId)
            return bound.hop(to: loop).map { registration.port }
        }
        guard let bound = brokers.listener(for: nodeId) else { return loop.makeSucceededFuture(registration.port) }
        return bound.hop(to: loop).map { registration.port }
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
