import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import VeilConfig

/// The admin HTTP endpoint: `/metrics` (Prometheus text format), `/healthz` (the process
/// answers) and `/readyz` (the ``Readiness`` checks pass).
///
/// One request per connection, answered and closed: the clients are a health check and a
/// metrics scraper, never a browser, so keep-alive would only add state.
public final class AdminServer: Sendable {
    private let registry: PrometheusCollectorRegistry
    private let readiness: Readiness
    private let group: EventLoopGroup
    private let logger: Logger
    private let channel: NIOLockedChannel

    public init(registry: PrometheusCollectorRegistry, readiness: Readiness, group: EventLoopGroup, logger: Logger) {
        self.registry = registry
        self.readiness = readiness
        self.group = group
        self.logger = logger
        channel = NIOLockedChannel()
    }

    /// Binds the endpoint and returns its bound address.
    @discardableResult
    public func start(_ address: HostPort) async throws -> HostPort {
        let routes = AdminRoutes(registry: registry, readiness: readiness)
        let bound = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { child in
                child.pipeline.configureHTTPServerPipeline(withErrorHandling: true).flatMapThrowing {
                    try child.pipeline.syncOperations.addHandler(AdminHTTPHandler(routes: routes))
                }
            }
            .bind(host: address.host, port: address.port).get()
        channel.set(bound)
        let actual = HostPort(host: address.host, port: bound.localAddress?.port ?? address.port)
        logger.info("admin endpoint on http://\(actual)/ (metrics, healthz, readyz)")
        return actual
    }

    public func stop() async {
        try? await channel.take()?.close()
    }
}

/// The listener channel, set once started and taken once at stop.
private final class NIOLockedChannel: Sendable {
    private let box = NIOLockedValueBox<Channel?>(nil)
    func set(_ channel: Channel) { box.withLockedValue { $0 = channel } }
    func take() -> Channel? { box.withLockedValue { c in defer { c = nil }; return c } }
}

/// A response: status, content type and body.
struct AdminResponse: Sendable {
    var status: HTTPResponseStatus
    var contentType: String
    var body: [UInt8]

    static func text(_ status: HTTPResponseStatus, _ text: String) -> AdminResponse {
        AdminResponse(status: status, contentType: "text/plain; charset=utf-8", body: Array(text.utf8))
    }
}

/// Maps a request to its response.
struct AdminRoutes: Sendable {
    let registry: PrometheusCollectorRegistry
    let readiness: Readiness

    func respond(method: HTTPMethod, path: String, on loop: EventLoop) -> EventLoopFuture<AdminResponse> {
        guard method == .GET || method == .HEAD else {
            return loop.makeSucceededFuture(.text(.methodNotAllowed, "only GET\n"))
        }
        switch path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? path {
        case "/metrics":
            var body: [UInt8] = []
            registry.emit(into: &body)
            return loop.makeSucceededFuture(AdminResponse(status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: body))
        case "/healthz":
            return loop.makeSucceededFuture(.text(.ok, "ok\n"))
        case "/readyz":
            return readiness.evaluate(on: loop).map { problems in
                problems.isEmpty
                    ? .text(.ok, "ready\n")
                    : .text(.serviceUnavailable, "not ready\n" + problems.map { "- \($0)\n" }.joined())
            }
        default:
            return loop.makeSucceededFuture(.text(.notFound, "not found; try /metrics, /healthz or /readyz\n"))
        }
    }
}

/// Reads one request and writes its response, then closes.
final class AdminHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let routes: AdminRoutes
    private var head: HTTPRequestHead?

    init(routes: AdminRoutes) { self.routes = routes }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break
        case .end:
            guard let head else { return }
            self.head = nil
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            routes.respond(method: head.method, path: head.uri, on: context.eventLoop)
                .hop(to: context.eventLoop)
                .whenSuccess { response in
                    let (handler, context) = bound.value
                    handler.write(response, includeBody: head.method != .HEAD, context: context)
                }
        }
    }

    private func write(_ response: AdminResponse, includeBody: Bool, context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: response.contentType)
        headers.add(name: "content-length", value: "\(response.body.count)")
        headers.add(name: "connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: response.status, headers: headers))), promise: nil)
        if includeBody {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: response.body)))), promise: nil)
        }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}
