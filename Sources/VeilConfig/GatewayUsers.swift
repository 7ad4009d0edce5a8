import VeilSASL
import Yams

/// The gateway's user store: per user, the identity it acts as and its SCRAM secrets
/// (salt, iteration count, stored key and server key), never a password.
///
/// PLAIN logins are checked against the same secrets, so one store serves every mechanism.
/// Written by `veil users add`; documented in docs/CONFIGURATION.md.
public struct GatewayUsers: Sendable {
    /// One user.
    public struct User: Sendable, Equatable {
        public let name: String
        /// The gateway identity this user acts as.
        public let identity: String
        /// Secrets by digest; a user can log in with a SCRAM mechanism only if it has its secret.
        public let credentials: [SaslDigest: ScramCredential]

        public init(name: String, identity: String, credentials: [SaslDigest: ScramCredential]) {
            self.name = name
            self.identity = identity
            self.credentials = credentials
        }
    }

    public let users: [String: User]

    public init(users: [String: User]) { self.users = users }

    static let digestKeys: [(key: String, digest: SaslDigest)] = [("scram_sha_256", .sha256), ("scram_sha_512", .sha512)]

    /// Parses a users file; errors name the user and key.
    public static func parse(yaml: String) throws(ConfigurationError) -> GatewayUsers {
        let root: Node
        do {
            guard let document = try Yams.compose(yaml: yaml) else { return GatewayUsers(users: [:]) }
            root = document
        } catch {
            throw ConfigurationError(path: "", problem: "invalid YAML: \(error)")
        }
        let fields = try ConfigNode(node: root, path: "").mapping(allowed: ["users"])
        var users: [String: User] = [:]
        for (key, value) in try fields["users"]?.mapping().entries ?? [] {
            let entry = try value.mapping(allowed: ["identity"] + digestKeys.map(\.key))
            var credentials: [SaslDigest: ScramCredential] = [:]
            for (name, digest) in digestKeys {
                guard let node = entry[name] else { continue }
                let c = try node.mapping(allowed: ["salt", "iterations", "stored_key", "server_key"])
                func bytes(_ k: String, count: Int? = nil) throws(ConfigurationError) -> [UInt8] {
                    let n = try c.required(k)
                    guard let b = Base64.decode(try n.nonEmptyString()), count == nil || b.count == count! else {
                        throw n.error("expected base64\(count.map { " of \($0) bytes" } ?? "")")
                    }
                    return b
                }
                credentials[digest] = ScramCredential(
                    digest: digest, salt: try bytes("salt"),
                    iterations: try c.required("iterations").int(in: ScramCredential.minimumIterations...10_000_000),
                    storedKey: try bytes("stored_key", count: digest.byteCount), serverKey: try bytes("server_key", count: digest.byteCount))
            }
            guard !credentials.isEmpty else { throw value.error("no secrets: expected scram_sha_256 and/or scram_sha_512") }
            users[key.value] = User(name: key.value, identity: try entry["identity"]?.nonEmptyString() ?? key.value, credentials: credentials)
        }
        return GatewayUsers(users: users)
    }

    /// Checks every user names a configured identity.
    public func validate(against gateway: GatewayConfiguration, path: String) throws(ConfigurationError) {
        for user in users.values.sorted(by: { $0.name < $1.name }) where gateway.identities[user.identity] == nil {
            throw ConfigurationError(
                path: path,
                problem: "user '\(user.name)' acts as identity '\(user.identity)', which is not under gateway.identities")
        }
    }

    /// The file's text, users sorted by name.
    public func yaml() -> String {
        var out = "# Veil gateway users: salted SCRAM secrets only (see docs/CONFIGURATION.md). Keep it private.\nusers:\n"
        for user in users.values.sorted(by: { $0.name < $1.name }) {
            out += "  \(quoted(user.name)):\n    identity: \(quoted(user.identity))\n"
            for (key, digest) in Self.digestKeys {
                guard let c = user.credentials[digest] else { continue }
                out += "    \(key): { salt: \"\(Base64.encode(c.salt))\", iterations: \(c.iterations), "
                    + "stored_key: \"\(Base64.encode(c.storedKey))\", server_key: \"\(Base64.encode(c.serverKey))\" }\n"
            }
        }
        return out
    }

    private func quoted(_ s: String) -> String {
        "\"" + s.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"") + "\""
    }
}
