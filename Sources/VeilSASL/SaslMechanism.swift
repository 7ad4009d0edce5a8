/// A SASL mechanism Veil can use towards a broker or accept from a client.
public enum SaslMechanismName: String, Sendable, CaseIterable, CustomStringConvertible {
    case plain = "PLAIN"
    case scramSHA256 = "SCRAM-SHA-256"
    case scramSHA512 = "SCRAM-SHA-512"
    case awsMSKIAM = "AWS_MSK_IAM"

    /// The SCRAM hash, for the SCRAM mechanisms.
    public var scramDigest: SaslDigest? {
        switch self {
        case .scramSHA256: .sha256
        case .scramSHA512: .sha512
        default: nil
        }
    }

    public var description: String { rawValue }
}

/// Why a SASL exchange failed. Messages never contain passwords, proofs or keys.
public struct SaslError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The client side of one SASL exchange, as carried in Kafka SaslAuthenticate requests.
///
/// Each exchange is used for one connection only: SCRAM keeps its nonce and the
/// messages so far, so that it can check the server's final signature.
public protocol SaslClientExchange: Sendable {
    /// The mechanism name sent in SaslHandshake.
    var mechanism: SaslMechanismName { get }
    /// The first message, sent without waiting for a challenge.
    mutating func initialResponse() throws(SaslError) -> [UInt8]
    /// The next message for the server's answer, or `nil` when the exchange is complete
    /// (and, for SCRAM, the server has proven it knows the password too).
    mutating func respond(to serverMessage: [UInt8]) throws(SaslError) -> [UInt8]?
}

/// SASL PLAIN (RFC 4616): the password is sent as is, so only ever over TLS or loopback.
public struct PlainClient: SaslClientExchange {
    public let mechanism = SaslMechanismName.plain
    let username: String
    let password: String

    /// Creates an exchange for one connection.
    public init(username: String, password: String) {
        self.username = username
        self.password = password
    }

    public mutating func initialResponse() throws(SaslError) -> [UInt8] {
        // Empty authorization identity: act as the authenticated user.
        [0] + Array(username.utf8) + [0] + Array(password.utf8)
    }

    public mutating func respond(to serverMessage: [UInt8]) throws(SaslError) -> [UInt8]? { nil }
}

/// The parts of a SASL PLAIN message, as a server reads it.
public struct PlainMessage: Sendable {
    public var authorizationIdentity: String
    public var username: String
    public var password: String

    /// Splits `authzid NUL authcid NUL passwd`; `nil` if it is not that shape.
    public init?(_ bytes: [UInt8]) {
        let parts = bytes.split(separator: 0, maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[1].isEmpty,
              let authz = String(validating: parts[0], as: UTF8.self),
              let user = String(validating: parts[1], as: UTF8.self),
              let pass = String(validating: parts[2], as: UTF8.self)
        else { return nil }
        authorizationIdentity = authz
        username = user
        password = pass
    }
}
