import AsyncHTTPClient
import Logging
import VeilAWSKMS
import VeilConfig
import VeilKMS

/// Builds the KMS backends a configuration names, keyed by name, so an envelope's key
/// reference finds its KMS. One sidecar can hold several at once: AWS KMS in two
/// accounts and a local keyring, say.
enum KMSSet {
    static func registry(for configuration: VeilConfiguration, logger: Logger) throws -> KMSRegistry {
        var services: [String: any KeyManagementService] = [:]
        var keyrings: [String: LocalKeyring] = [:]
        for (name, entry) in configuration.kms {
            switch entry.backend {
            case .local(let path):
                // Several KMS names may share one keyring file; load it once.
                if keyrings[path] == nil { keyrings[path] = try LocalKeyring(contentsOf: path) }
                services[name] = keyrings[path]
            case .awsKMS(let region, let endpoint, let profile):
                var kmsLogger = logger
                kmsLogger[metadataKey: "kms"] = "\(name)"
                let client = HTTPClient.shared
                services[name] = try AWSKMS(
                    region: region, endpoint: endpoint,
                    credentials: AWSCredentialChain(profile: profile, httpClient: client, logger: kmsLogger),
                    httpClient: client, logger: kmsLogger)
            }
        }
        return KMSRegistry(services)
    }
}
