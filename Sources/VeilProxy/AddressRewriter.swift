import VeilConfig
import NIOCore
import VeilWire

/// Rewrites every broker address in a response to Veil's own listeners, binding a
/// listener first for any broker seen for the first time.
struct AddressRewriter {
    let server: ProxyServer

    /// Maps one upstream endpoint to its local listener, once that listener is bound.
    private func local(_ endpoint: BrokerEndpoint, on loop: EventLoop) -> EventLoopFuture<BrokerEndpoint> {
        // Error responses carry node id -1 and an empty host: nothing to map.
        guard endpoint.nodeId >= 0, !endpoint.host.isEmpty, endpoint.port > 0 else { return loop.makeSucceededFuture(endpoint) }
        return server.ensureListener(nodeId: endpoint.nodeId, upstream: HostPort(host: endpoint.host, port: Int(endpoint.port)), on: loop)
            .map { port in
                var e = endpoint
                e.host = server.settings.advertisedHost
                e.port = Int32(port)
                return e
            }
    }

    private func localAll(_ endpoints: [BrokerEndpoint], on loop: EventLoop) -> EventLoopFuture<[BrokerEndpoint]> {
        EventLoopFuture.whenAllSucceed(endpoints.map { local($0, on: loop) }, on: loop)
    }

    func rewrite(_ response: MetadataResponse, on loop: EventLoop) -> EventLoopFuture<MetadataResponse> {
        localAll(response.brokers, on: loop).map { brokers in
            var r = response
            r.brokers = brokers
            return r
        }
    }

    func rewrite(_ response: FindCoordinatorResponse, version: Int16, on loop: EventLoop) -> EventLoopFuture<FindCoordinatorResponse> {
        if version <= 3 {
            return local(response.endpoint, on: loop).map { e in
                var r = response
                r.endpoint = e
                return r
            }
        }
        return localAll(response.coordinators.map(\.endpoint), on: loop).map { endpoints in
            var r = response
            for i in r.coordinators.indices { r.coordinators[i].endpoint = endpoints[i] }
            return r
        }
    }

    func rewrite(_ response: DescribeClusterResponse, on loop: EventLoop) -> EventLoopFuture<DescribeClusterResponse> {
        localAll(response.brokers.map(\.endpoint), on: loop).map { endpoints in
            var r = response
            for i in r.brokers.indices { r.brokers[i].endpoint = endpoints[i] }
            return r
        }
    }

    func rewrite(_ endpoints: NodeEndpoints, on loop: EventLoop) -> EventLoopFuture<NodeEndpoints> {
        localAll(endpoints.endpoints, on: loop).map { NodeEndpoints(endpoints: $0) }
    }
}
