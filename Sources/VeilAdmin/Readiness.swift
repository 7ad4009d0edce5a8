import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import VeilConfig

/// What `/readyz` checks: the configuration is loaded, the keys' KMSes are reachable and
/// the upstream cluster accepts connections. Each check returns its problems; none is ready.
public final class Readiness: Sendable {
    /// A check's problems, empty when it passes.
    public typealias Check = @Sendable (EventLoop) -> EventLoopFuture<[String]>

    private let checks = NIOLockedValueBox<[Check]>([])
    private let stopping = NIOLockedValueBox(false)

    public init() {}

    /// Adds a check; every `/readyz` runs all of them.
    public func add(_ check: @escaping Check) { checks.withLockedValue { $0.append(check) } }

    /// From now on `/readyz` answers not ready, so a load balancer stops sending work.
    public func markStopping() { stopping.withLockedValue { $0 = true } }

    func evaluate(on loop: EventLoop) -> EventLoopFuture<[String]> {
        if stopping.withLockedValue({ $0 }) { return loop.makeSucceededFuture(["shutting down"]) }
        let all = checks.withLockedValue { $0 }
        return EventLoopFuture.whenAllSucceed(all.map { $0(loop) }, on: loop).map { $0.flatMap { $0 } }
    }

    /// A check that some upstream bootstrap server accepts a TCP connection within `timeout`.
    ///
    /// Only TCP: TLS and SASL failures show in connection errors and metrics, and a probe
    /// that authenticated would need the sidecar's credentials on every scrape.
    public static func upstreamReachable(_ servers: @escaping @Sendable () -> [HostPort], timeout: TimeAmount = .seconds(2)) -> Check {
        { loop in
            let candidates = servers()
            @Sendable func attempt(_ index: Int, _ failures: [String]) -> EventLoopFuture<[String]> {
                guard index < candidates.count else {
                    return loop.makeSucceededFuture(["upstream unreachable: " + failures.joined(separator: "; ")])
                }
                let server = candidates[index]
                return ClientBootstrap(group: loop).connectTimeout(timeout)
                    .connect(host: server.host, port: server.port)
                    .flatMap { channel in channel.close().map { [String]() } }
                    .flatMapError { error in attempt(index + 1, failures + ["\(server): \(error)"]) }
            }
            return attempt(0, [])
        }
    }
}
