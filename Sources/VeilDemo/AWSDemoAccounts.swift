import AsyncHTTPClient
import Foundation
import Logging
import VeilAWSKMS
import VeilKMS

/// Where `veil demo` keeps its department keys.
public enum DemoKeyStore: Sendable {
    /// One local keyring file per identity and domain (no network, nothing to install).
    case local
    /// AWS KMS, one account per department, as in the seed. With no endpoint the demo starts
    /// a moto_server of its own; an endpoint must be moto-compatible, because the demo creates
    /// its accounts' roles and keys there.
    case aws(endpoint: String?, region: String)
}

/// The seed's federated AWS layout on a moto_server: finance and sales each own
/// `alias/department-key` in their own account. Each consumer sidecar holds credentials
/// of its own department's account only; the owner's producer holds one role per
/// department account, granted to it by that department. The KMS itself, not Veil's
/// configuration, is what keeps sales from finance's data keys.
public struct AWSDemoAccounts: Sendable {
    public static let accountIds = ["finance": "111111111111", "sales": "222222222222"]

    public let endpoint: String
    public let region: String
    /// Key ARN per department.
    public let keyArns: [String: String]
    /// The shared credentials file holding the sidecars' profiles.
    public let credentialsFile: String
    /// Credentials per profile name, for the refusal check.
    let credentials: [String: AWSCredentials]

    /// The profile a sidecar of `role` uses for `department`'s KMS.
    public static func profile(role: String, department: String) -> String {
        role == "owner" ? "owner-\(department)" : department
    }

    /// Assumes the demo's roles, creates each department's key and alias, and writes the
    /// profiles to `directory/credentials` (mode 600).
    public static func provision(endpoint: String, region: String, directory: String) async throws -> AWSDemoAccounts {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var arns: [String: String] = [:]
        var credentials: [String: AWSCredentials] = [:]
        for (department, account) in accountIds.sorted(by: { $0.key < $1.key }) {
            let admin = try await MotoAdmin.assumeRole(account: account, role: "\(department)-key-admin", endpoint: endpoint)
            arns[department] = try await MotoAdmin.createKey(
                kms(endpoint: endpoint, region: region, credentials: admin),
                description: "\(department) department key (veil demo)", alias: "alias/department-key")
            credentials[profile(role: department, department: department)] =
                try await MotoAdmin.assumeRole(account: account, role: "\(department)-consumer-veil", endpoint: endpoint)
            credentials[profile(role: "owner", department: department)] =
                try await MotoAdmin.assumeRole(account: account, role: "owner-producer-veil", endpoint: endpoint)
        }
        let path = directory + "/credentials"
        var text = "# veil demo: one profile per sidecar identity and department account (moto-issued)\n"
        for (name, c) in credentials.sorted(by: { $0.key < $1.key }) {
            text += "[\(name)]\naws_access_key_id = \(c.accessKeyId)\n"
            c.withSecretBytes { text += "aws_secret_access_key = \(String(decoding: $0, as: UTF8.self))\n" }
            if let token = c.sessionToken { text += "aws_session_token = \(token)\n" }
            text += "\n"
        }
        guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
        }
        return AWSDemoAccounts(endpoint: endpoint, region: region, keyArns: arns, credentialsFile: path, credentials: credentials)
    }

    private static func kms(endpoint: String, region: String, credentials: AWSCredentials) throws -> AWSKMS {
        // The refusals these clients provoke are the point of the check, reported by the demo
        // itself; they are not errors to log.
        var logger = Logger(label: "veil-demo-aws")
        logger.logLevel = .critical
        return try AWSKMS(
            region: region, endpoint: endpoint, credentials: StaticCredentialProvider(credentials),
            httpClient: .shared, logger: logger)
    }

    /// The KMS answer when `department`'s consumer credentials ask to decrypt a data key of
    /// every other department's key: nil if KMS (wrongly) handed one over.
    public func crossDepartmentRefusals() async throws -> [(consumer: String, owner: String, refusal: KMSError?)] {
        var outcomes: [(consumer: String, owner: String, refusal: KMSError?)] = []
        for owner in keyArns.keys.sorted() {
            guard let ownerCredentials = credentials[Self.profile(role: "owner", department: owner)],
                let arn = keyArns[owner], let reference = KeyReference(kms: owner, keyId: arn)
            else { continue }
            let dataKey = try await Self.kms(endpoint: endpoint, region: region, credentials: ownerCredentials)
                .generateDataKey(for: reference)
            for consumer in keyArns.keys.sorted() where consumer != owner {
                guard let consumerCredentials = credentials[Self.profile(role: consumer, department: consumer)] else { continue }
                let kms = try Self.kms(endpoint: endpoint, region: region, credentials: consumerCredentials)
                do {
                    _ = try await kms.unwrap(dataKey.wrapped, for: reference)
                    outcomes.append((consumer, owner, nil))
                } catch {
                    outcomes.append((consumer, owner, error))
                }
            }
        }
        return outcomes
    }
}
