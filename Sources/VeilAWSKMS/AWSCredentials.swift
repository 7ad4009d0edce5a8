import Foundation
import VeilKMS

/// An AWS access key pair, with the session token and expiry of temporary credentials.
///
/// The secret access key lives in a ``SymmetricSecret`` (wiped on release) and neither it nor
/// the session token appears in `description` or in reflection, so a credential that ends up
/// in a log line or a test failure does not leak.
public struct AWSCredentials: Sendable, CustomStringConvertible, CustomReflectable {
    /// The access key id (not secret; it appears in every request's `Authorization` header).
    public let accessKeyId: String
    private let secretAccessKey: SymmetricSecret
    /// The session token of temporary credentials (STS, ECS task roles); nil for long-term keys.
    public let sessionToken: String?
    /// When temporary credentials stop working; nil for credentials that do not expire.
    public let expiration: Date?

    /// Creates credentials from their parts.
    public init(accessKeyId: String, secretAccessKey: String, sessionToken: String? = nil, expiration: Date? = nil) {
        self.accessKeyId = accessKeyId
        self.secretAccessKey = SymmetricSecret(copying: Array(secretAccessKey.utf8))
        self.sessionToken = sessionToken
        self.expiration = expiration
    }

    /// Lends the secret access key's UTF-8 bytes to the signer, or to what must store it
    /// (the demo writing its profiles); a copy that is wiped afterwards.
    public func withSecretBytes<R>(_ body: ([UInt8]) -> R) -> R {
        var bytes = secretAccessKey.withUnsafeBytes { Array($0) }
        defer { wipe(&bytes) }
        return body(bytes)
    }

    public var description: String {
        var text = "AWSCredentials(accessKeyId: \(accessKeyId), secret redacted"
        if sessionToken != nil { text += ", session token redacted" }
        if let expiration { text += ", expires \(expiration)" }
        return text + ")"
    }

    public var customMirror: Mirror {
        Mirror(self, children: ["accessKeyId": accessKeyId, "expiration": expiration as Any], displayStyle: .struct)
    }
}

/// Why no usable credentials could be had. Messages name sources (variables, files, URLs),
/// never credential values.
public struct AWSCredentialError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The human-readable reason.
    public let message: String

    /// Creates an error with `message`, which must not contain secrets.
    public init(_ message: String) {
        self.message = message
    }

    public var description: String { "AWS credentials unavailable: \(message)" }
}

/// A source of AWS credentials. ``AWSKMS`` asks before every request, so implementations
/// cache, and refresh temporary credentials before they expire.
public protocol AWSCredentialProvider: Sendable {
    /// Credentials that are valid now.
    func credentials() async throws(AWSCredentialError) -> AWSCredentials
}

/// Always the same credentials (tests, or keys handed over by the caller).
public struct StaticCredentialProvider: AWSCredentialProvider {
    private let value: AWSCredentials

    /// Serves `credentials` forever.
    public init(_ credentials: AWSCredentials) {
        value = credentials
    }

    public func credentials() async throws(AWSCredentialError) -> AWSCredentials { value }
}

/// Credentials from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`.
public enum EnvironmentCredentials {
    /// The credentials in `environment`; nil when neither key variable is set, an error when
    /// only one is (a half-configured environment should not silently fall through to another source).
    public static func load(from environment: [String: String]) throws(AWSCredentialError) -> AWSCredentials? {
        let id = environment["AWS_ACCESS_KEY_ID"].flatMap { $0.isEmpty ? nil : $0 }
        let secret = environment["AWS_SECRET_ACCESS_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        switch (id, secret) {
        case (nil, nil):
            return nil
        case (let id?, let secret?):
            let token = environment["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
            return AWSCredentials(accessKeyId: id, secretAccessKey: secret, sessionToken: token)
        case (nil, _):
            throw AWSCredentialError("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not")
        case (_, nil):
            throw AWSCredentialError("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not")
        }
    }
}
