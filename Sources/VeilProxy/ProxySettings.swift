import VeilConfig
import VeilWire

/// What the proxy needs to run, independent of how it was configured.
public struct ProxySettings: Sendable {
    /// The bootstrap listener applications point at.
    public var listen: HostPort
    /// The upstream cluster's bootstrap servers, tried in order.
    public var upstreamBootstrap: [HostPort]
    /// The host written into rewritten broker addresses.
    public var advertisedHost: String
    /// Local ports handed out, on demand, to brokers as they are first seen.
    public var brokerPorts: ClosedRange<Int>
    public var maxFrameBytes: Int
    /// Requests in flight per connection before Veil stops reading from the client.
    public var maxInFlightPerConnection: Int

    public init(listen: HostPort, upstreamBootstrap: [HostPort], advertisedHost: String? = nil,
                brokerPorts: ClosedRange<Int>, maxFrameBytes: Int = FrameParser.defaultMaxFrameBytes,
                maxInFlightPerConnection: Int = 128) {
        self.listen = listen
        self.upstreamBootstrap = upstreamBootstrap
        self.advertisedHost = advertisedHost ?? listen.host
        self.brokerPorts = brokerPorts
        self.maxFrameBytes = maxFrameBytes
        self.maxInFlightPerConnection = maxInFlightPerConnection
    }
}
