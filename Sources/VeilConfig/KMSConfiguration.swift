/// One named KMS that key references can point into (`kms: { NAME: { type: …, … } }`).
public struct KMSConfiguration: Hashable, Sendable {
    /// The name used before the `/` in key references.
    public let name: String
    /// Which backend, with its settings.
    public let backend: KMSBackend

    /// Creates a KMS entry.
    public init(name: String, backend: KMSBackend) {
        self.name = name
        self.backend = backend
    }
}

/// A KMS backend and its settings. New backends add a case here and a branch in the parser.
public enum KMSBackend: Hashable, Sendable {
    /// Keys held in a local keyring file, the embedded default. A relative path is resolved
    /// against the process's working directory.
    case local(keyring: String)
    /// AWS KMS in `region`, at `endpoint` when given (a VPC endpoint, a test server) and otherwise
    /// the region's public endpoint, with credentials from `profile` when given and otherwise from
    /// the default chain (environment, shared profile, ECS task role).
    case awsKMS(region: String, endpoint: String?, profile: String?)

    /// The `type:` values the parser accepts, for error messages.
    static let typeNames = ["local", "aws-kms"]
}

extension KMSConfiguration {
    init(name: String, _ node: ConfigNode) throws(ConfigurationError) {
        let typeNode = try node.mapping().required("type")
        let type = try typeNode.string()
        switch type {
        case "local":
            let fields = try node.mapping(allowed: ["type", "keyring"])
            self.init(name: name, backend: .local(keyring: try fields.required("keyring").nonEmptyString()))
        case "aws-kms":
            let fields = try node.mapping(allowed: ["type", "region", "endpoint", "profile"])
            let regionNode = try fields.required("region")
            let region = try regionNode.nonEmptyString()
            // Region names end up in a host name and the request signature; reject typos here.
            guard region.utf8.allSatisfy({ (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == UInt8(ascii: "-") }) else {
                throw regionNode.error("expected an AWS region name like us-east-1, got '\(region)'")
            }
            var endpoint: String?
            if let endpointNode = fields["endpoint"] {
                let value = try endpointNode.nonEmptyString()
                guard value.hasPrefix("https://") || value.hasPrefix("http://") else {
                    throw endpointNode.error("expected an http:// or https:// URL, got '\(value)'")
                }
                endpoint = value
            }
            let profile = try fields["profile"].map { node throws(ConfigurationError) in try node.nonEmptyString() }
            self.init(name: name, backend: .awsKMS(region: region, endpoint: endpoint, profile: profile))
        default:
            throw ConfigurationError(
                path: "\(node.path).type",
                problem: "unknown KMS type '\(type)' (supported: \(KMSBackend.typeNames.joined(separator: ", ")))",
                line: typeNode.line)
        }
    }

    /// KMS names appear in key references before the `/`, so they are kept to a simple alphabet.
    static func validate(name: String, at node: ConfigNode) throws(ConfigurationError) {
        let allowed = name.utf8.allSatisfy { byte in
            (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
        }
        guard !name.isEmpty, allowed else {
            throw node.error("KMS names may contain only letters, digits, '-', '_' and '.', got '\(name)'")
        }
    }
}
