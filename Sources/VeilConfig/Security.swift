import VeilSASL

/// Where a secret comes from. Only the source is ever printed, never the value.
public enum SecretSource: Sendable, Hashable, CustomStringConvertible {
    /// An environment variable.
    case environment(String)
    /// A file; one trailing newline is dropped, as secret files usually end with one.
    case file(String)

    public var description: String {
        switch self {
        case .environment(let name): "environment variable \(name)"
        case .file(let path): "file \(path)"
        }
    }
}

/// TLS towards the brokers.
public struct UpstreamTLS: Sendable, Hashable {
    /// PEM bundle of trusted CAs; `nil` trusts the system store.
    public let caFile: String?
    /// Whether the broker certificate must name the host Veil dialled (default true).
    public let verifyHostname: Bool
    /// PEM client certificate chain and key, for brokers that require mTLS.
    public let certFile: String?
    public let keyFile: String?

    /// Creates settings; `certFile` and `keyFile` go together.
    public init(caFile: String? = nil, verifyHostname: Bool = true, certFile: String? = nil, keyFile: String? = nil) {
        self.caFile = caFile
        self.verifyHostname = verifyHostname
        self.certFile = certFile
        self.keyFile = keyFile
    }

    /// How the broker's certificate is trusted, for start-up logs.
    public var summary: String {
        var parts = [caFile.map { "CA \($0)" } ?? "system trust store"]
        parts.append(verifyHostname ? "hostname verified" : "hostname NOT verified")
        if let certFile { parts.append("client certificate \(certFile)") }
        return parts.joined(separator: ", ")
    }
}

/// SASL towards the brokers: Veil authenticates every upstream connection with its own
/// credentials before forwarding anything from the client.
public struct UpstreamSASL: Sendable, Hashable {
    public let mechanism: SaslMechanismName
    /// The user, for PLAIN and SCRAM.
    public let username: String?
    /// The password's source, for PLAIN and SCRAM.
    public let password: SecretSource?
    /// The AWS region for AWS_MSK_IAM (default: the `AWS_REGION` environment variable).
    public let region: String?

    public init(mechanism: SaslMechanismName, username: String? = nil, password: SecretSource? = nil, region: String? = nil) {
        self.mechanism = mechanism
        self.username = username
        self.password = password
        self.region = region
    }

    /// Mechanism, user and the secret's source, for start-up logs.
    public var summary: String {
        switch mechanism {
        case .awsMSKIAM: "AWS_MSK_IAM, credentials from the AWS credential chain, region \(region ?? "from AWS_REGION")"
        default: "\(mechanism) as user \(username ?? "?"), password from \(password.map(\.description) ?? "?")"
        }
    }
}

/// A TLS listener for applications.
public struct ListenerTLS: Sendable, Hashable {
    /// PEM certificate chain and key Veil presents.
    public let certFile: String
    public let keyFile: String
    /// PEM bundle of CAs whose client certificates are accepted; setting it turns on mTLS.
    public let clientCAFile: String?

    public init(certFile: String, keyFile: String, clientCAFile: String? = nil) {
        self.certFile = certFile
        self.keyFile = keyFile
        self.clientCAFile = clientCAFile
    }
}

/// Gateway mode: one Veil for many applications, each identified from its own connection
/// and given its own grants.
public struct GatewayConfiguration: Sendable {
    /// The users file (salted SCRAM secrets), for SASL at Veil.
    public let usersFile: String?
    /// Mechanisms offered to clients, in preference order.
    public let mechanisms: [SaslMechanismName]
    /// Identities by name.
    public let identities: [String: GatewayIdentity]

    /// Mechanisms a client may use at Veil.
    public static let supportedMechanisms: [SaslMechanismName] = [.scramSHA512, .scramSHA256, .plain]

    public init(usersFile: String?, mechanisms: [SaslMechanismName] = GatewayConfiguration.supportedMechanisms,
                identities: [String: GatewayIdentity]) {
        self.usersFile = usersFile
        self.mechanisms = mechanisms
        self.identities = identities
    }

    /// The identity whose `tls_subject` matches a certificate subject, if exactly one does.
    public func identity(forCertificateSubject subject: [(attribute: String, value: String)]) -> GatewayIdentity? {
        let matches = identities.values.filter { identity in
            identity.tlsSubjects.contains { $0.matches(subject) }
        }
        return matches.count == 1 ? matches[0] : nil
    }
}

/// One application identity in gateway mode.
public struct GatewayIdentity: Sendable, Hashable {
    public let name: String
    /// What this identity may encrypt and decrypt.
    public let grants: Grants
    /// Client certificate subjects that authenticate as this identity.
    public let tlsSubjects: [CertificateSubjectPattern]

    public init(name: String, grants: Grants, tlsSubjects: [CertificateSubjectPattern] = []) {
        self.name = name
        self.grants = grants
        self.tlsSubjects = tlsSubjects
    }
}

/// A certificate subject written `CN=finance-app,O=Example`: every attribute given must
/// equal the certificate's; order does not matter and attributes not given are not checked.
public struct CertificateSubjectPattern: Sendable, Hashable, CustomStringConvertible {
    public let attributes: [String: String]

    /// Attribute names accepted (those swift-nio-ssl exposes).
    public static let knownAttributes: Set<String> = ["CN", "O", "OU", "C", "ST", "L", "emailAddress", "UID"]

    /// Parses `A=v,B=w`; `\,` escapes a comma in a value.
    public init(parsing text: String) throws(ConfigurationError) {
        var attributes: [String: String] = [:]
        var parts: [String] = []
        var current = ""
        var escaped = false
        for c in text {
            if escaped { current.append(c); escaped = false } else if c == "\\" { escaped = true } else if c == "," {
                parts.append(current); current = ""
            } else { current.append(c) }
        }
        parts.append(current)
        for part in parts {
            let trimmed = part.drop { $0 == " " }
            guard let eq = trimmed.firstIndex(of: "=") else {
                throw ConfigurationError(path: "", problem: "expected ATTRIBUTE=VALUE pairs such as CN=app,O=Example, got '\(text)'")
            }
            let name = String(trimmed[..<eq])
            guard Self.knownAttributes.contains(name) else {
                throw ConfigurationError(
                    path: "", problem: "unknown attribute '\(name)' (expected one of \(Self.knownAttributes.sorted().joined(separator: ", ")))")
            }
            guard attributes[name] == nil else { throw ConfigurationError(path: "", problem: "attribute \(name) given twice") }
            attributes[name] = String(trimmed[trimmed.index(after: eq)...])
        }
        self.attributes = attributes
    }

    /// Whether a certificate subject, as (attribute, value) pairs, satisfies this pattern.
    public func matches(_ subject: [(attribute: String, value: String)]) -> Bool {
        attributes.allSatisfy { name, value in
            let values = subject.filter { $0.attribute == name }.map(\.value)
            return values.count == 1 && values[0] == value
        }
    }

    public var description: String { attributes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",") }
}

// MARK: parsing

extension SecretSource {
    /// `password_env: NAME` or `password_file: PATH`, exactly one.
    static func parse(_ fields: ConfigMapping, env: String, file: String, at node: ConfigNode) throws(ConfigurationError) -> SecretSource? {
        switch (fields[env], fields[file]) {
        case (let e?, nil): return .environment(try e.nonEmptyString())
        case (nil, let f?): return .file(try f.nonEmptyString())
        case (nil, nil): return nil
        case (_?, _?): throw node.error("give \(env) or \(file), not both")
        }
    }
}

extension UpstreamTLS {
    /// `tls: true|false` or `tls: { ca_file, verify_hostname, cert_file, key_file }`.
    static func parse(_ node: ConfigNode) throws(ConfigurationError) -> UpstreamTLS? {
        guard node.isMapping else { return try node.bool() ? UpstreamTLS() : nil }
        let fields = try node.mapping(allowed: ["ca_file", "verify_hostname", "cert_file", "key_file"])
        let cert = try fields["cert_file"]?.nonEmptyString()
        let key = try fields["key_file"]?.nonEmptyString()
        guard (cert == nil) == (key == nil) else { throw node.error("cert_file and key_file go together: give both or neither") }
        return UpstreamTLS(
            caFile: try fields["ca_file"]?.nonEmptyString(), verifyHostname: try fields["verify_hostname"]?.bool() ?? true,
            certFile: cert, keyFile: key)
    }
}

extension UpstreamSASL {
    static let mechanisms: KeyValuePairs<String, SaslMechanismName> = [
        "PLAIN": .plain, "SCRAM-SHA-256": .scramSHA256, "SCRAM-SHA-512": .scramSHA512, "AWS_MSK_IAM": .awsMSKIAM,
    ]

    init(_ node: ConfigNode) throws(ConfigurationError) {
        let fields = try node.mapping(allowed: ["mechanism", "username", "password_env", "password_file", "region"])
        let mechanism = try fields.required("mechanism").choice(Self.mechanisms)
        let username = try fields["username"]?.nonEmptyString()
        let password = try SecretSource.parse(fields, env: "password_env", file: "password_file", at: node)
        let region = try fields["region"]?.nonEmptyString()
        if mechanism == .awsMSKIAM {
            if username != nil || password != nil {
                throw node.error("AWS_MSK_IAM signs with AWS credentials (environment, profile or ECS task role); remove username and password_env/password_file")
            }
        } else {
            guard username != nil else { throw ConfigurationError(path: "\(node.path).username", problem: "required for \(mechanism)", line: node.line) }
            guard password != nil else { throw node.error("\(mechanism) needs password_env or password_file (passwords are never written in the file)") }
            if region != nil { throw ConfigurationError(path: "\(node.path).region", problem: "only used with AWS_MSK_IAM", line: node.line) }
        }
        self.init(mechanism: mechanism, username: username, password: password, region: region)
    }
}

extension ListenerTLS {
    init(_ node: ConfigNode) throws(ConfigurationError) {
        let fields = try node.mapping(allowed: ["cert_file", "key_file", "client_ca_file"])
        self.init(
            certFile: try fields.required("cert_file").nonEmptyString(), keyFile: try fields.required("key_file").nonEmptyString(),
            clientCAFile: try fields["client_ca_file"]?.nonEmptyString())
    }
}

extension GatewayConfiguration {
    init(_ node: ConfigNode, kms: [String: KMSConfiguration], listenerTLS: ListenerTLS?) throws(ConfigurationError) {
        let fields = try node.mapping(allowed: ["users_file", "mechanisms", "identities"])
        var mechanisms = Self.supportedMechanisms
        if let list = fields["mechanisms"] {
            let choices: KeyValuePairs<String, SaslMechanismName> = ["PLAIN": .plain, "SCRAM-SHA-256": .scramSHA256, "SCRAM-SHA-512": .scramSHA512]
            mechanisms = []
            for entry in try list.list() { mechanisms.append(try entry.choice(choices)) }
            guard !mechanisms.isEmpty else { throw list.error("expected at least one mechanism") }
        }
        var identities: [String: GatewayIdentity] = [:]
        let identitiesNode = try fields.required("identities")
        for (key, value) in try identitiesNode.mapping().entries {
            let entry = try value.mapping(allowed: ["grants", "tls_subject"])
            var subjects: [CertificateSubjectPattern] = []
            if let subjectNode = entry["tls_subject"] {
                let nodes: [ConfigNode] = try (subjectNode.isSequence ? subjectNode.list() : [subjectNode])
                for n in nodes {
                    let text = try n.nonEmptyString()
                    subjects.append(try n.located { () throws(ConfigurationError) in try CertificateSubjectPattern(parsing: text) })
                }
                guard listenerTLS?.clientCAFile != nil else {
                    throw subjectNode.error("tls_subject needs client certificates: set listener.tls.client_ca_file")
                }
            }
            let grants = try entry["grants"].map { n throws(ConfigurationError) in try Grants(n, kms: kms) } ?? Grants()
            identities[key.value] = GatewayIdentity(name: key.value, grants: grants, tlsSubjects: subjects)
        }
        guard !identities.isEmpty else { throw identitiesNode.error("expected at least one identity") }
        let usersFile = try fields["users_file"]?.nonEmptyString()
        if usersFile == nil && !identities.values.contains(where: { !$0.tlsSubjects.isEmpty }) {
            throw node.error("clients could not authenticate: give users_file (SASL at Veil) or a tls_subject per identity (mTLS)")
        }
        self.init(usersFile: usersFile, mechanisms: mechanisms, identities: identities)
    }
}
