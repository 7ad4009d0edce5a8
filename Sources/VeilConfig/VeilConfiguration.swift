import Yams

/// A sidecar's complete, validated configuration: who it is, where it listens and forwards, which
/// keys it may use, and what it does per topic.
///
/// Build one with ``parse(yaml:)``; every problem is reported as a ``ConfigurationError`` naming
/// the key path. Values are immutable; ``overriding(listen:upstream:)`` applies CLI flags.
public struct VeilConfiguration: Sendable {
    /// The application identity this sidecar acts for (used in logs and metrics).
    public let identity: String
    /// Where the application's Kafka client connects (default 127.0.0.1:9092).
    public let listen: HostPort
    /// The real cluster.
    public let upstream: UpstreamConfiguration
    /// The largest Kafka frame accepted from either side, in bytes (default 100 MiB).
    public let maxFrameBytes: Int
    /// Configured KMSes by name.
    public let kms: [String: KMSConfiguration]
    /// The keys this identity may encrypt and decrypt with.
    public let grants: Grants
    /// Data-key rotation and caching limits.
    public let dek: DEKPolicy
    /// Topic policies in file order; the first match wins.
    public let topics: [TopicPolicy]
    /// TLS on the client-facing listeners; `nil` is plaintext (the sidecar default).
    public let listenerTLS: ListenerTLS?
    /// Gateway mode: identity per client connection; `nil` is sidecar mode (one identity).
    public let gateway: GatewayConfiguration?
    /// Admin endpoint, logging and shutdown settings.
    public let operations: OperationsConfiguration

    private let configuredBrokerPorts: BrokerPortRange?
    private let configuredAdvertisedHost: String?
    private let policyCache = TopicPolicyCache()

    /// The default listener.
    public static let defaultListen = HostPort(host: "127.0.0.1", port: 9092)
    /// The default ``maxFrameBytes``.
    public static let defaultMaxFrameBytes = 100 * 1024 * 1024

    /// Local ports for per-broker listeners (default: the 64 ports after the listen port).
    public var brokerPorts: BrokerPortRange {
        self.configuredBrokerPorts ?? .following(self.listen)
    }

    /// The host written into rewritten metadata (default: the listen host, or 127.0.0.1 when
    /// listening on a wildcard address, which clients cannot connect to).
    public var advertisedHost: String {
        if let host = self.configuredAdvertisedHost { return host }
        if self.listen.isWildcard { return self.listen.host == "::" ? "::1" : "127.0.0.1" }
        return self.listen.host
    }

    /// Creates a configuration in code, applying the same cross-checks as the parser: key
    /// references must name configured KMSes and the broker ports must not clash with `listen`.
    public init(
        identity: String,
        listen: HostPort = VeilConfiguration.defaultListen,
        upstream: UpstreamConfiguration,
        brokerPorts: BrokerPortRange? = nil,
        advertisedHost: String? = nil,
        maxFrameBytes: Int = VeilConfiguration.defaultMaxFrameBytes,
        kms: [KMSConfiguration] = [],
        grants: Grants = Grants(),
        dek: DEKPolicy = DEKPolicy(),
        topics: [TopicPolicy] = [],
        listenerTLS: ListenerTLS? = nil,
        gateway: GatewayConfiguration? = nil,
        operations: OperationsConfiguration = OperationsConfiguration()
    ) throws(ConfigurationError) {
        let kmsByName = Dictionary(kms.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        func check(_ references: some Sequence<KeyReference>, _ path: String) throws(ConfigurationError) {
            for reference in references where kmsByName[reference.kms] == nil {
                throw ConfigurationError(path: path, problem: "key \(reference) names KMS '\(reference.kms)', which is not configured")
            }
        }
        guard !identity.isEmpty else { throw ConfigurationError(path: "identity", problem: "must not be empty") }
        guard !upstream.bootstrap.isEmpty else {
            throw ConfigurationError(path: "upstream.bootstrap", problem: "expected at least one HOST:PORT")
        }
        try check(grants.encrypt, "grants.encrypt")
        try check(grants.decrypt, "grants.decrypt")
        for (name, identity) in gateway?.identities ?? [:] {
            try check(identity.grants.encrypt, "gateway.identities.\(name).grants.encrypt")
            try check(identity.grants.decrypt, "gateway.identities.\(name).grants.decrypt")
        }
        for (index, topic) in topics.enumerated() {
            try check(topic.encrypt?.allKeys ?? [], "topics[\(index)].encrypt")
        }
        try (brokerPorts ?? .following(listen)).validate(listen: listen, upstream: upstream, path: "broker_ports")
        self.init(
            identity: identity, listen: listen, upstream: upstream, brokerPorts: brokerPorts,
            advertisedHost: advertisedHost, maxFrameBytes: maxFrameBytes, kms: kmsByName, grants: grants, dek: dek,
            topics: topics, listenerTLS: listenerTLS, gateway: gateway, operations: operations)
    }

    private init(
        identity: String, listen: HostPort, upstream: UpstreamConfiguration, brokerPorts: BrokerPortRange?,
        advertisedHost: String?, maxFrameBytes: Int, kms: [String: KMSConfiguration], grants: Grants,
        dek: DEKPolicy, topics: [TopicPolicy], listenerTLS: ListenerTLS?, gateway: GatewayConfiguration?,
        operations: OperationsConfiguration
    ) {
        self.identity = identity
        self.listen = listen
        self.upstream = upstream
        self.configuredBrokerPorts = brokerPorts
        self.configuredAdvertisedHost = advertisedHost
        self.maxFrameBytes = maxFrameBytes
        self.kms = kms
        self.grants = grants
        self.dek = dek
        self.topics = topics
        self.listenerTLS = listenerTLS
        self.gateway = gateway
        self.operations = operations
    }

    /// This configuration acting for one gateway identity: its name and grants replace the
    /// file's, everything else (KMSes, topic policies) is shared.
    public func acting(as identity: GatewayIdentity) -> VeilConfiguration {
        VeilConfiguration(
            identity: identity.name, listen: self.listen, upstream: self.upstream, brokerPorts: self.configuredBrokerPorts,
            advertisedHost: self.configuredAdvertisedHost, maxFrameBytes: self.maxFrameBytes, kms: self.kms,
            grants: identity.grants, dek: self.dek, topics: self.topics, listenerTLS: self.listenerTLS, gateway: self.gateway,
            operations: self.operations)
    }

    /// The policy for `topic`: the first entry whose `match` selects it, or `nil`.
    ///
    /// Results are cached per topic name, so regexes run once per topic rather than per request.
    public func policy(forTopic topic: String) -> TopicPolicy? {
        let index = self.policyCache.index(forTopic: topic) { topic in
            self.topics.firstIndex { $0.match.matches(topic) } ?? TopicPolicyCache.noPolicy
        }
        return index == TopicPolicyCache.noPolicy ? nil : self.topics[index]
    }

    /// This configuration with the CLI's `--listen` / `--upstream` flags applied; `nil` keeps the
    /// file's value. Upstream TLS is kept from the file.
    ///
    /// Broker ports and the advertised host that were defaulted follow the new listener.
    public func overriding(listen: HostPort? = nil, upstream: [HostPort]? = nil) throws(ConfigurationError)
        -> VeilConfiguration
    {
        let listen = listen ?? self.listen
        if let upstream, upstream.isEmpty {
            throw ConfigurationError(path: "--upstream", problem: "expected at least one HOST:PORT")
        }
        let newUpstream = upstream.map { UpstreamConfiguration(bootstrap: $0, tls: self.upstream.tls, sasl: self.upstream.sasl) } ?? self.upstream
        try (self.configuredBrokerPorts ?? .following(listen)).validate(
            listen: listen, upstream: newUpstream, path: "broker_ports (after applying --listen/--upstream)")
        return VeilConfiguration(
            identity: self.identity, listen: listen,
            upstream: newUpstream,
            brokerPorts: self.configuredBrokerPorts, advertisedHost: self.configuredAdvertisedHost,
            maxFrameBytes: self.maxFrameBytes, kms: self.kms, grants: self.grants, dek: self.dek, topics: self.topics,
            listenerTLS: self.listenerTLS, gateway: self.gateway, operations: self.operations)
    }
}

extension VeilConfiguration {
    /// Parses and validates a YAML configuration; `${NAME}` in string values is replaced by
    /// `environment[NAME]` (see ``EnvironmentSubstitution``).
    public static func parse(yaml: String, environment: [String: String] = [:]) throws(ConfigurationError) -> VeilConfiguration {
        let root = try ConfigNode.root(yaml: yaml, emptyProblem: "the configuration is empty; identity and upstream are required")
        return try self.parse(ConfigNode(node: EnvironmentSubstitution.apply(root.node, path: "", environment: environment), path: ""))
    }

    private static func parse(_ root: ConfigNode) throws(ConfigurationError) -> VeilConfiguration {
        let fields = try root.mapping(allowed: [
            "identity", "listen", "upstream", "broker_ports", "advertised_host", "max_frame_bytes", "kms", "grants",
            "dek", "topics", "listener", "gateway", "admin", "logging", "shutdown",
        ])
        let identity = try fields.required("identity").nonEmptyString()
        let listen: HostPort
        if let node = fields["listen"] {
            let text = try node.nonEmptyString()
            listen = try node.located { () throws(ConfigurationError) in try HostPort(parsing: text) }
        } else {
            listen = Self.defaultListen
        }
        var kms: [String: KMSConfiguration] = [:]
        if let node = fields["kms"] {
            for (key, value) in try node.mapping().entries {
                try KMSConfiguration.validate(name: key.value, at: key.node)
                kms[key.value] = try KMSConfiguration(name: key.value, value)
            }
        }
        let upstream = try UpstreamConfiguration(fields.required("upstream"))
        var brokerPorts: BrokerPortRange?
        if let node = fields["broker_ports"] {
            let range = try BrokerPortRange(node)
            try range.validate(listen: listen, upstream: upstream, path: node.path, line: node.line)
            brokerPorts = range
        } else {
            try BrokerPortRange.following(listen).validate(listen: listen, upstream: upstream, path: "broker_ports")
        }
        var listenerTLS: ListenerTLS?
        if let node = fields["listener"] {
            let listener = try node.mapping(allowed: ["tls"])
            listenerTLS = try listener["tls"].map { n throws(ConfigurationError) in try ListenerTLS(n) }
        }
        var gateway: GatewayConfiguration?
        if let node = fields["gateway"] {
            gateway = try GatewayConfiguration(node, kms: kms, listenerTLS: listenerTLS)
            if let grants = fields["grants"] {
                throw grants.error("in gateway mode grants are per identity: move them under gateway.identities.NAME.grants")
            }
        }
        var topics: [TopicPolicy] = []
        if let node = fields["topics"] {
            for entry in try node.list() { topics.append(try TopicPolicy(entry, kms: kms)) }
        }
        return VeilConfiguration(
            identity: identity,
            listen: listen,
            upstream: upstream,
            brokerPorts: brokerPorts,
            advertisedHost: try fields["advertised_host"]?.nonEmptyString(),
            maxFrameBytes: try fields["max_frame_bytes"]?.int(in: 1024...Int(Int32.max)) ?? Self.defaultMaxFrameBytes,
            kms: kms,
            grants: try fields["grants"].map { node throws(ConfigurationError) in try Grants(node, kms: kms) } ?? Grants(),
            dek: try fields["dek"].map { node throws(ConfigurationError) in try DEKPolicy(node) } ?? DEKPolicy(),
            topics: topics, listenerTLS: listenerTLS, gateway: gateway,
            operations: try OperationsConfiguration(admin: fields["admin"], logging: fields["logging"], shutdown: fields["shutdown"]))
    }
}
