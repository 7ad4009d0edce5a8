import Foundation
import Logging
import NIOSSL
import VeilConfig
import VeilGovernance
import VeilKMS
import VeilProxy
import VeilSASL

/// The configuration file and flags, turned into what the proxy runs with.
struct LoadedConfiguration: Sendable {
    var configuration: VeilConfiguration
    var settings: ProxySettings
    var filters: ExchangeFilters
    var security: UpstreamSecurity = .none
    var listenerTLS: NIOSSLContext?
    var gateway: GatewayAuthentication?
    /// Present when topic policies are configured (sidecar mode): for the counts logged at shutdown.
    var encryption: (filter: RecordEncryption, kms: CountingKMS)?
    /// The decrypt audit trail, when `--audit-log` names one.
    var audit: AuditTrail?
    /// Where AWS_MSK_IAM logins get their credentials; primed by `veil run` before it listens.
    var mskIAMCredentials: MSKIAMCredentials?
    /// The KMSes every filter uses, when topic policies are configured: readiness asks it for outages.
    var kms: CountingKMS?

    /// Parses the file only, without loading keyrings or checking a signature: for settings
    /// needed before logging starts. ``load(path:listen:upstream:logger:trustedKey:audit:)``
    /// does the full, checked load.
    static func parse(path: String) throws -> VeilConfiguration {
        try parse(contents: read(path: path))
    }

    private static func read(path: String) throws -> Data {
        Data(try file(path, for: path))
    }

    /// Configuration, users and password files are far below this; a larger one is a mistake.
    static let fileLimit = 16 << 20

    /// Reads a file the configuration names; a FIFO or directory there is refused, not waited on.
    static func file(_ file: String, for key: String, limit: Int = fileLimit) throws(ConfigurationError) -> [UInt8] {
        do {
            return try BoundedFile.contents(of: file, limit: limit)
        } catch {
            throw ConfigurationError(path: key, problem: "cannot read \(file): \(error.reason)")
        }
    }

    private static func parse(contents: Data) throws -> VeilConfiguration {
        try VeilConfiguration.parse(yaml: String(decoding: contents, as: UTF8.self), environment: ProcessInfo.processInfo.environment)
    }

    /// - Parameters:
    ///   - trustedKey: a governance public key file; the configuration must then carry a valid
    ///     signature by it (`FILE.sig`), checked on the very bytes that are parsed (before
    ///     `${NAME}` substitution, which only fills in values the signed file asks for).
    ///   - audit: where decrypt outcomes go; one trail for the process, kept across reloads.
    static func load(
        path: String?, listen: String?, upstream: String?, logger: Logger, trustedKey: String? = nil, audit: AuditTrail? = nil
    ) throws -> LoadedConfiguration {
        var configuration: VeilConfiguration
        if let path {
            let data = try read(path: path)
            if let trustedKey {
                let signature = (try? BoundedFile.contents(of: GovernanceSignature.signaturePath(for: path), limit: 64 << 10))
                    .map { String(decoding: $0, as: UTF8.self) }
                do {
                    try GovernanceSignature.verify(
                        Array(data), path: path, signature: signature, trustedKey: try GovernanceSignature.loadPublicKey(trustedKey))
                } catch {
                    throw ConfigurationError(path: path, problem: "refused, a configuration signed by the governance key is required: \(error)")
                }
            }
            configuration = try parse(contents: data)
        } else {
            guard let upstream else {
                throw ConfigurationError(path: "--config", problem: "give a configuration file, or at least --upstream HOST:PORT")
            }
            if trustedKey != nil {
                throw ConfigurationError(path: "--governance-key", problem: "requires --config: only a configuration file can be signed")
            }
            configuration = try VeilConfiguration(identity: "veil", upstream: UpstreamConfiguration(bootstrap: [HostPort(parsing: upstream)]))
        }
        configuration = try configuration.overriding(
            listen: try listen.map { try HostPort(parsing: $0) },
            upstream: try upstream.map { [try HostPort(parsing: $0)] })
        let settings = ProxySettings(
            listen: configuration.listen, upstreamBootstrap: configuration.upstream.bootstrap,
            advertisedHost: configuration.advertisedHost, brokerPorts: configuration.brokerPorts.ports,
            maxFrameBytes: configuration.maxFrameBytes)
        var loaded = LoadedConfiguration(configuration: configuration, settings: settings, filters: .passThrough)
        loaded.audit = audit
        let kms = configuration.topics.isEmpty ? nil : CountingKMS(try KMSSet.registry(for: configuration, logger: logger))
        loaded.kms = kms
        if let gateway = configuration.gateway {
            // One record filter per identity: same topic policies and KMSes, its own grants.
            var filters: [String: ExchangeFilters] = [:]
            for (name, identity) in gateway.identities {
                let acting = configuration.acting(as: identity)
                if let kms {
                    filters[name] = ExchangeFilters(
                        records: try RecordEncryption(configuration: acting, kms: kms, logger: logger, audit: loaded.audit?.sink(identity: acting.identity)))
                } else {
                    filters[name] = .passThrough
                }
            }
            var users = GatewayUsers(users: [:])
            if let file = gateway.usersFile {
                let data = try Self.file(file, for: "gateway.users_file")
                do {
                    users = try GatewayUsers.parse(yaml: String(decoding: data, as: UTF8.self))
                } catch {
                    throw ConfigurationError(path: "gateway.users_file", problem: "\(file): \(error)")
                }
                try users.validate(against: gateway, path: "gateway.users_file")
            }
            loaded.gateway = GatewayAuthentication(configuration: gateway, users: users, filters: filters)
        } else if let kms {
            let filter = try RecordEncryption(
                configuration: configuration, kms: kms, logger: logger, audit: loaded.audit?.sink(identity: configuration.identity))
            loaded.filters = ExchangeFilters(records: filter)
            loaded.encryption = (filter, kms)
        }
        if let tls = configuration.listenerTLS {
            loaded.listenerTLS = try ListenerTLSContext.make(tls, requireClientCertificate: configuration.gateway?.usersFile == nil)
        }
        if configuration.upstream.sasl?.mechanism == .awsMSKIAM {
            loaded.mskIAMCredentials = MSKIAMCredentials(logger: logger)
        }
        loaded.security = try upstreamSecurity(configuration.upstream, mskIAMCredentials: loaded.mskIAMCredentials)
        return loaded
    }

    /// Reads secrets now, so a missing one stops start-up rather than every connection.
    static func upstreamSecurity(
        _ upstream: UpstreamConfiguration, mskIAMCredentials: MSKIAMCredentials? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> UpstreamSecurity {
        var security = UpstreamSecurity()
        if let tls = upstream.tls { security.tls = try UpstreamTLSContext(tls) }
        guard let sasl = upstream.sasl else { return security }
        security.saslMechanism = sasl.mechanism
        switch sasl.mechanism {
        case .plain, .scramSHA256, .scramSHA512:
            let username = sasl.username ?? ""
            let password = try readSecret(sasl.password!, environment: environment, path: "upstream.sasl")
            let mechanism = sasl.mechanism
            security.sasl = { _ in
                if mechanism == .plain { return PlainClient(username: username, password: password) }
                return ScramClient(mechanism: mechanism, username: username, password: password)
            }
        case .awsMSKIAM:
            guard let region = sasl.region ?? environment["AWS_REGION"] ?? environment["AWS_DEFAULT_REGION"] else {
                throw ConfigurationError(path: "upstream.sasl.region", problem: "AWS_MSK_IAM needs a region: set region or AWS_REGION")
            }
            guard let mskIAMCredentials else {
                throw ConfigurationError(path: "upstream.sasl", problem: "AWS_MSK_IAM needs the AWS credential chain")
            }
            // The latest credentials from the chain, so renewed temporary ones are picked up.
            security.sasl = { broker throws(SaslError) in
                let credentials = try mskIAMCredentials.current()
                return MSKIAMClient(credentials: credentials, region: region, host: broker.host,
                                    epochSeconds: Int64(Date().timeIntervalSince1970))
            }
        }
        return security
    }

    static func readSecret(_ source: SecretSource, environment: [String: String], path: String) throws -> String {
        switch source {
        case .environment(let name):
            guard let value = environment[name], !value.isEmpty else {
                throw ConfigurationError(path: path, problem: "the password's \(source) is not set")
            }
            return value
        case .file(let file):
            let data = try Self.file(file, for: path, limit: 64 << 10)
            var text = String(decoding: data, as: UTF8.self)
            if text.hasSuffix("\n") { text.removeLast() }
            if text.hasSuffix("\r") { text.removeLast() }
            guard !text.isEmpty else { throw ConfigurationError(path: path, problem: "the password's \(source) is empty") }
            return text
        }
    }

    /// Start-up lines saying where identity and upstream trust come from, never secrets.
    var securitySummary: [String] {
        var lines: [String] = []
        if let gateway {
            lines.append(gateway.summary)
        } else {
            lines.append("sidecar mode: identity '\(configuration.identity)' from the configuration file")
        }
        if let tls = configuration.listenerTLS {
            lines.append("client listener TLS: certificate \(tls.certFile)" + (tls.clientCAFile.map { ", client certificates verified against \($0)" } ?? ""))
        }
        lines.append("upstream TLS: " + (configuration.upstream.tls?.summary ?? "off (plaintext)"))
        lines.append("upstream SASL: " + (configuration.upstream.sasl?.summary ?? "off"))
        return lines
    }
}
