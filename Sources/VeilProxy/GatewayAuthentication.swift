import NIOCore
import VeilConfig
import VeilSASL
import VeilWire

/// Gateway mode: who may connect, and the filters each identity gets.
///
/// Clients authenticate to Veil with SASL (PLAIN or SCRAM, checked against the users file's
/// salted secrets) or with a client certificate whose subject names an identity. Until then
/// a connection may only ask for ApiVersions and authenticate.
public final class GatewayAuthentication: Sendable {
    public let configuration: GatewayConfiguration
    let users: GatewayUsers
    let filters: [String: ExchangeFilters]

    /// `filters` holds one entry per identity in `configuration`.
    public init(configuration: GatewayConfiguration, users: GatewayUsers, filters: [String: ExchangeFilters]) {
        self.configuration = configuration
        self.users = users
        self.filters = filters
    }

    /// Where identities come from, for the start-up log (no secrets).
    public var summary: String {
        var sources: [String] = []
        if let file = configuration.usersFile {
            sources.append("SASL \(configuration.mechanisms.map(\.rawValue).joined(separator: "/")) users from \(file) (\(users.users.count) users)")
        }
        let subjects = configuration.identities.values.reduce(0) { $0 + $1.tlsSubjects.count }
        if subjects > 0 { sources.append("client certificate subjects (\(subjects) mapped)") }
        let names = configuration.identities.keys.sorted().joined(separator: ", ")
        return "gateway mode: identity from each client connection: \(sources.joined(separator: " and ")); identities: \(names)"
    }

    func identity(named name: String) -> (GatewayIdentity, ExchangeFilters)? {
        guard let identity = configuration.identities[name], let filters = filters[name] else { return nil }
        return (identity, filters)
    }
}

/// One client connection's authentication to Veil in gateway mode.
struct ClientAuthentication {
    enum Outcome {
        /// Send this response and keep going.
        case respond(ByteBuffer)
        /// Authenticated: send this response; the connection now acts as `identity`.
        case authenticated(ByteBuffer, user: String, identity: String)
        /// Refused: send this response, then close; `reason` goes to the log.
        case refuse(ByteBuffer, reason: String)
    }

    private var mechanism: SaslMechanismName?
    private var scram: ScramServer?
    /// The SCRAM user from the client-first message, for log lines about later steps.
    private var scramUser: String?

    /// Kafka's SASL_AUTHENTICATION_FAILED and UNSUPPORTED_SASL_MECHANISM, ILLEGAL_SASL_STATE.
    static let authenticationFailed: Int16 = 58
    static let unsupportedMechanism: Int16 = 33
    static let illegalState: Int16 = 34

    mutating func handshake(_ request: SaslHandshakeRequest, gateway: GatewayAuthentication) -> (errorCode: Int16, mechanisms: [String]) {
        let offered = gateway.configuration.usersFile == nil ? [] : gateway.configuration.mechanisms
        guard let chosen = offered.first(where: { $0.rawValue == request.mechanism }) else {
            return (Self.unsupportedMechanism, offered.map(\.rawValue))
        }
        mechanism = chosen
        if let digest = chosen.scramDigest {
            let users = gateway.users
            scram = ScramServer(digest: digest) { users.users[$0]?.credentials[digest] }
        }
        return (0, offered.map(\.rawValue))
    }

    /// Handles SaslAuthenticate bytes. Error texts sent to the client say only that
    /// authentication failed; the log line says why.
    mutating func authenticate(_ bytes: [UInt8], gateway: GatewayAuthentication) -> Result<(bytes: [UInt8], user: String?), ClientAuthFailure> {
        guard let mechanism else { return .failure(ClientAuthFailure(code: Self.illegalState, log: "SaslAuthenticate before SaslHandshake")) }
        let refused = "Authentication failed: invalid credentials with SASL mechanism \(mechanism)"
        switch mechanism {
        case .plain:
            guard let message = PlainMessage(bytes) else {
                return .failure(ClientAuthFailure(code: Self.authenticationFailed, log: "malformed PLAIN message", message: refused))
            }
            guard message.authorizationIdentity.isEmpty || message.authorizationIdentity == message.username else {
                return .failure(ClientAuthFailure(code: Self.authenticationFailed, log: "user '\(message.username)' asked to act as another user", message: refused))
            }
            guard let user = gateway.users.users[message.username],
                  let credential = user.credentials[.sha512] ?? user.credentials[.sha256],
                  credential.matches(password: message.password)
            else {
                return .failure(ClientAuthFailure(code: Self.authenticationFailed, log: "wrong user or password for user '\(message.username)'", message: refused))
            }
            return .success(([], message.username))
        case .scramSHA256, .scramSHA512:
            guard var server = scram else { return .failure(ClientAuthFailure(code: Self.illegalState, log: "no SCRAM state")) }
            defer { scram = server }
            if scramUser == nil { scramUser = ScramLogName.user(in: bytes) }
            do {
                switch try server.handle(bytes) {
                case .challenge(let challenge): return .success((challenge, nil))
                case .success(let username, let final): return .success((final, username))
                }
            } catch {
                let user = scramUser.map { " for user '\($0)'" } ?? ""
                return .failure(ClientAuthFailure(code: Self.authenticationFailed, log: "\(mechanism) \(error)\(user)", message: refused))
            }
        case .awsMSKIAM:
            return .failure(ClientAuthFailure(code: Self.unsupportedMechanism, log: "AWS_MSK_IAM is not accepted from clients"))
        }
    }

    var chosenMechanism: SaslMechanismName? { mechanism }
}

/// A refused client authentication: `message` goes to the client, `log` to Veil's log.
struct ClientAuthFailure: Error {
    var code: Int16
    var log: String
    var message: String = "Authentication failed"
}

/// Picks the user name out of a SCRAM client-first message for log lines.
enum ScramLogName {
    static func user(in bytes: [UInt8]) -> String? {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let range = text.firstRange(of: "n=") else { return nil }
        return String(text[range.upperBound...].prefix { $0 != "," }.prefix(64))
    }
}
