import VeilConfig
import VeilKMS

/// Builds the KMS backends a configuration names, keyed by name, so an envelope's key
/// reference finds its KMS.
enum KMSSet {
    static func registry(for configuration: VeilConfiguration) throws -> KMSRegistry {
        var services: [String: any KeyManagementService] = [:]
        var keyrings: [String: LocalKeyring] = [:]
        for (name, entry) in configuration.kms {
            switch entry.backend {
            case .local(let path):
                // Several KMS names may share one keyring file; load it once.
                if keyrings[path] == nil { keyrings[path] = try LocalKeyring(contentsOf: path) }
                services[name] = keyrings[path]
            case .awsKMS:
                // Placeholder so the merged tree builds: main parses aws-kms, but nothing in the
                // CLI constructs VeilAWSKMS yet (that wiring belongs to the awskms work).
                throw KMSSetError(message: "kms.\(name): type aws-kms is not wired into this command yet")
            }
        }
        return KMSRegistry(services)
    }
}

/// A KMS this command cannot build.
struct KMSSetError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
