import CoreMetrics
import NIOConcurrencyHelpers
import VeilWire

/// Connection, request and error metrics of one proxy server, as swift-metrics counters
/// (the admin endpoint exports them in Prometheus format).
public final class ProxyMetrics: Sendable {
    /// Why a connection closed abnormally, the `kind` label of `veil_errors_total`.
    public enum ErrorKind: String, Sendable {
        case upstreamUnreachable = "upstream_unreachable"
        case upstreamSetup = "upstream_setup"
        case malformedRequest = "malformed_request"
        case malformedResponse = "malformed_response"
        case clientAuthentication = "client_authentication"
        case network = "network"
        case shutdownDeadline = "shutdown_deadline"
        case configuration = "configuration"
    }

    private let connectionsOpened = Counter(label: "veil_connections_total")
    private let connectionsOpen = Gauge(label: "veil_connections_open")
    private let open = NIOLockedValueBox(0)
    private let requests = NIOLockedValueBox([ApiKey: (requests: Counter, bytes: Counter, responseBytes: Counter)]())
    private let errors = NIOLockedValueBox([ErrorKind: Counter]())

    public init() {}

    func connectionOpened() {
        connectionsOpened.increment()
        connectionsOpen.record(open.withLockedValue { $0 += 1; return $0 })
    }

    func connectionClosed() {
        connectionsOpen.record(open.withLockedValue { $0 -= 1; return $0 })
    }

    func request(_ api: ApiKey, bytes: Int) {
        let c = counters(api)
        c.requests.increment()
        c.bytes.increment(by: bytes)
    }

    func response(_ api: ApiKey, bytes: Int) {
        counters(api).responseBytes.increment(by: bytes)
    }

    func error(_ kind: ErrorKind) {
        errors.withLockedValue { map in
            if let c = map[kind] { return c }
            let c = Counter(label: "veil_errors_total", dimensions: [("kind", kind.rawValue)])
            map[kind] = c
            return c
        }.increment()
    }

    private func counters(_ api: ApiKey) -> (requests: Counter, bytes: Counter, responseBytes: Counter) {
        requests.withLockedValue { map in
            if let c = map[api] { return c }
            let dimensions = [("api", api.description)]
            let c = (Counter(label: "veil_requests_total", dimensions: dimensions),
                     Counter(label: "veil_request_bytes_total", dimensions: dimensions),
                     Counter(label: "veil_response_bytes_total", dimensions: dimensions))
            map[api] = c
            return c
        }
    }
}
