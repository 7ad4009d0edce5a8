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

    /// The `type:` values the parser accepts, for error messages.
    static let typeNames = ["local"]
}

extension KMSConfiguration {
    init(name: String, _ node: ConfigNode) throws(ConfigurationError) {
        let typeNode = try node.mapping().required("type")
        let type = try typeNode.string()
        switch type {
        case "local":
            let fields = try node.mapping(allowed: ["type", "keyring"])
            self.init(name: name, backend: .local(keyring: try fields.required("keyring").nonEmptyString()))
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
