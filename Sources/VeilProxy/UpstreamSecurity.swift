import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import VeilConfig
import VeilSASL

/// How Veil secures each upstream connection: TLS, then SASL, both before any client request
/// is forwarded.
public struct UpstreamSecurity: Sendable {
    /// TLS towards the brokers, or `nil` for plaintext.
    public var tls: UpstreamTLSContext?
    /// Starts one SASL exchange for a connection to the given broker, or `nil` for no SASL.
    public var sasl: (@Sendable (HostPort) throws(SaslError) -> any SaslClientExchange)?
    /// The SASL mechanism, for logs and for answering clients' own SASL requests.
    public var saslMechanism: SaslMechanismName?
    /// Longest a TLS handshake plus SASL exchange may take.
    public var setupTimeout: TimeAmount

    public init(tls: UpstreamTLSContext? = nil, saslMechanism: SaslMechanismName? = nil,
                sasl: (@Sendable (HostPort) throws(SaslError) -> any SaslClientExchange)? = nil,
                setupTimeout: TimeAmount = .seconds(30)) {
        self.tls = tls
        self.sasl = sasl
        self.saslMechanism = saslMechanism
        self.setupTimeout = setupTimeout
    }

    /// Plaintext, no SASL.
    public static let none = UpstreamSecurity()
}

/// A TLS client context built once at start-up (loading CAs and keys is expensive), shared
/// by every upstream connection.
public struct UpstreamTLSContext: Sendable {
    let context: NIOSSLContext
    let settings: UpstreamTLS

    /// Loads the files named in `settings`; errors name the file and what is wrong with it.
    public init(_ settings: UpstreamTLS) throws(ConfigurationError) {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = settings.verifyHostname ? .fullVerification : .noHostnameVerification
        if let ca = settings.caFile {
            let certificates = try Self.load("upstream.tls.ca_file", ca) { try NIOSSLCertificate.fromPEMFile(ca) }
            guard !certificates.isEmpty else {
                throw ConfigurationError(path: "upstream.tls.ca_file", problem: "\(ca) holds no PEM certificate")
            }
            configuration.trustRoots = .certificates(certificates)
        } else {
            configuration.trustRoots = .default
        }
        if let certFile = settings.certFile, let keyFile = settings.keyFile {
            let chain = try Self.load("upstream.tls.cert_file", certFile) { try NIOSSLCertificate.fromPEMFile(certFile) }
            let key = try Self.load("upstream.tls.key_file", keyFile) { try NIOSSLPrivateKey(file: keyFile, format: .pem) }
            configuration.certificateChain = chain.map { .certificate($0) }
            configuration.privateKey = .privateKey(key)
        }
        do {
            context = try NIOSSLContext(configuration: configuration)
        } catch {
            throw ConfigurationError(path: "upstream.tls", problem: "cannot set up TLS: \(error)")
        }
        self.settings = settings
    }

    private static func load<T>(_ path: String, _ file: String, _ body: () throws -> T) throws(ConfigurationError) -> T {
        do {
            return try body()
        } catch {
            throw ConfigurationError(path: path, problem: "cannot load \(file): \(error) (expected a readable PEM file)")
        }
    }

    /// The SNI name for a broker: its host name, or none for an IP literal (SNI forbids those;
    /// verification then matches the certificate's IP addresses instead).
    func serverName(for host: String) -> String? {
        let isIPv4 = host.split(separator: ".").count == 4 && host.allSatisfy { $0.isNumber || $0 == "." }
        return isIPv4 || host.contains(":") ? nil : host
    }

    /// Where trust comes from, for error messages.
    var trustDescription: String { settings.caFile.map { "the CAs in \($0)" } ?? "the system trust store" }
}

/// Spaces out upstream connection attempts after authentication or certificate failures,
/// so a wrong password or certificate can't turn into a storm of attempts at the broker,
/// however eagerly clients reconnect.
final class SetupFailureGate: Sendable {
    private struct State {
        var consecutiveFailures = 0
        var closedUntil: NIODeadline = .distantPast
        var refusalsLogged = false
    }

    private let state = NIOLockedValueBox(State())
    let base: TimeAmount
    let ceiling: TimeAmount

    init(base: TimeAmount = .seconds(2), ceiling: TimeAmount = .seconds(60)) {
        self.base = base
        self.ceiling = ceiling
    }

    /// `nil` if a new upstream connection may be attempted; otherwise how long until it may,
    /// and whether this refusal is the first of the period (the one worth a log line).
    func check(now: NIODeadline = .now()) -> (remaining: TimeAmount, first: Bool)? {
        state.withLockedValue { s in
            guard now < s.closedUntil else { return nil }
            defer { s.refusalsLogged = true }
            return (s.closedUntil - now, !s.refusalsLogged)
        }
    }

    /// Records a failure; returns how long new attempts are now held off.
    @discardableResult
    func recordFailure(now: NIODeadline = .now()) -> TimeAmount {
        state.withLockedValue { s in
            s.consecutiveFailures += 1
            let factor = Int64(1) << Int64(min(s.consecutiveFailures - 1, 16))
            let delay = TimeAmount.nanoseconds(min(base.nanoseconds * factor, ceiling.nanoseconds))
            s.closedUntil = now + delay
            s.refusalsLogged = false
            return delay
        }
    }

    func recordSuccess() {
        state.withLockedValue { s in
            s.consecutiveFailures = 0
            s.closedUntil = .distantPast
        }
    }
}
