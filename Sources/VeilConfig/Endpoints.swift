/// Where Veil forwards traffic: the real cluster's bootstrap brokers.
public struct UpstreamConfiguration: Hashable, Sendable {
    /// Bootstrap brokers, tried in order.
    public let bootstrap: [HostPort]
    /// TLS towards the brokers; `nil` is plaintext.
    public let tls: UpstreamTLS?
    /// SASL on every upstream connection; `nil` is none.
    public let sasl: UpstreamSASL?

    /// Creates an upstream; `bootstrap` must not be empty.
    public init(bootstrap: [HostPort], tls: UpstreamTLS? = nil, sasl: UpstreamSASL? = nil) {
        self.bootstrap = bootstrap
        self.tls = tls
        self.sasl = sasl
    }
}

/// The local ports from which Veil allocates one listener per upstream broker, on demand.
///
/// Metadata responses are rewritten to point clients at these ports, so the range must be
/// reserved for Veil on the host (or network namespace) it runs in.
public struct BrokerPortRange: Hashable, Sendable {
    /// The first port of the range.
    public let first: Int
    /// How many ports, i.e. the most upstream brokers Veil can front.
    public let count: Int

    /// Creates a range; see ``VeilConfiguration`` for the validation applied.
    public init(first: Int, count: Int) {
        self.first = first
        self.count = count
    }

    /// The ports as a range.
    public var ports: ClosedRange<Int> { self.first...(self.first + self.count - 1) }

    /// The default: the `count` ports right after the client-facing listener.
    static func following(_ listen: HostPort, count: Int = 64) -> BrokerPortRange {
        BrokerPortRange(first: listen.port + 1, count: count)
    }
}

extension UpstreamConfiguration {
    /// Accepts `{ bootstrap: [HOST:PORT, …], tls: BOOL | {…}, sasl: {…} }`, or the shorthand `HOST:PORT`.
    init(_ node: ConfigNode) throws(ConfigurationError) {
        if !node.isMapping {
            let address = try node.nonEmptyString()
            self.init(bootstrap: [try node.located { () throws(ConfigurationError) in try HostPort(parsing: address) }])
            return
        }
        let fields = try node.mapping(allowed: ["bootstrap", "tls", "sasl"])
        let bootstrapNode = try fields.required("bootstrap")
        let entries: [ConfigNode]
        switch bootstrapNode.node {
        case .sequence: entries = try bootstrapNode.list()
        case .scalar: entries = [bootstrapNode]
        default: throw bootstrapNode.error("expected a list of HOST:PORT, got \(bootstrapNode.kind)")
        }
        var bootstrap: [HostPort] = []
        for entry in entries {
            let text = try entry.nonEmptyString()
            let address = try entry.located { () throws(ConfigurationError) in try HostPort(parsing: text) }
            guard address.port > 0 else { throw entry.error("upstream port must not be 0") }
            bootstrap.append(address)
        }
        guard !bootstrap.isEmpty else { throw bootstrapNode.error("expected at least one HOST:PORT") }
        self.init(
            bootstrap: bootstrap, tls: try fields["tls"].flatMap { n throws(ConfigurationError) in try UpstreamTLS.parse(n) },
            sasl: try fields["sasl"].map { n throws(ConfigurationError) in try UpstreamSASL(n) })
    }
}

extension BrokerPortRange {
    init(_ node: ConfigNode) throws(ConfigurationError) {
        let fields = try node.mapping(allowed: ["first", "count"])
        self.init(
            first: try fields.required("first").int(in: 1...65_535),
            count: try fields["count"]?.int(in: 1...65_535) ?? 64)
    }

    /// Checks the range fits in the port space and clashes with neither the client-facing
    /// listener nor an upstream broker on this host (Veil could not bind those ports).
    func validate(listen: HostPort, upstream: UpstreamConfiguration, path: String, line: Int? = nil)
        throws(ConfigurationError)
    {
        let span = "\(self.first)...\(self.first + self.count - 1)"
        guard self.first >= 1, self.count >= 1, self.first + self.count - 1 <= 65_535 else {
            throw ConfigurationError(path: path, problem: "ports \(span) do not fit in 1...65535", line: line)
        }
        if listen.port != 0 && self.ports.contains(listen.port) {
            throw ConfigurationError(
                path: path, problem: "range \(span) includes the listen port \(listen.port)", line: line)
        }
        if let broker = upstream.bootstrap.first(where: { $0.isLoopback && self.ports.contains($0.port) }) {
            throw ConfigurationError(
                path: path,
                problem: "range \(span) includes the port of upstream broker \(broker) on this host; set broker_ports",
                line: line)
        }
    }
}
