import AsyncHTTPClient
import Foundation
import Logging
import NIOConcurrencyHelpers

/// The default credential sources, first found wins:
///
/// 1. environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`;
/// 2. the shared files' profile: `AWS_PROFILE` or `default`, in `~/.aws/credentials` and
///    `~/.aws/config` (or `AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`);
/// 3. the container credentials endpoint (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` or `_FULL_URI`).
///
/// A profile named in Veil's configuration is used on its own, like the AWS CLI's `--profile`:
/// whoever wrote it meant that identity, not whatever the environment holds. A profile named by
/// `AWS_PROFILE` or the configuration must exist. The source is chosen on first use and kept.
public final class AWSCredentialChain: AWSCredentialProvider, CustomStringConvertible {
    private let profile: String?
    private let environment: [String: String]
    private let httpClient: HTTPClient
    private let logger: Logger
    private let refreshMargin: TimeInterval
    private let chosen = NIOLockedValueBox<(provider: any AWSCredentialProvider, source: String)?>(nil)

    /// - Parameters:
    ///   - profile: a profile from Veil's configuration; nil to follow the chain.
    ///   - environment: the variables to read; the process environment by default.
    ///   - httpClient: used only for the container credentials endpoint.
    ///   - refreshMargin: how long before expiry temporary credentials are fetched again.
    public init(
        profile: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment,
        httpClient: HTTPClient, logger: Logger, refreshMargin: TimeInterval = 300
    ) {
        self.profile = profile
        self.environment = environment
        self.httpClient = httpClient
        self.logger = logger
        self.refreshMargin = refreshMargin
    }

    /// Which source supplies the credentials, once resolved (for logs; never a secret).
    public var source: String? { chosen.withLockedValue { $0?.source } }

    public var description: String { "AWSCredentialChain(\(source ?? "unresolved"))" }

    public func credentials() async throws(AWSCredentialError) -> AWSCredentials {
        if let provider = chosen.withLockedValue({ $0?.provider }) {
            return try await provider.credentials()
        }
        // Resolution only reads variables and small files, so racing callers at worst do it twice
        // and agree; the first to finish wins.
        let resolved = try resolve()
        let (winner, won) = chosen.withLockedValue { slot in
            if let slot { return (slot.provider, false) }
            slot = resolved
            return (resolved.provider, true)
        }
        if won { logger.info("AWS credentials source chosen", metadata: ["source": "\(resolved.source)"]) }
        return try await winner.credentials()
    }

    private func resolve() throws(AWSCredentialError) -> (provider: any AWSCredentialProvider, source: String) {
        let paths = ProfileCredentials.paths(environment: environment)
        if let profile {
            guard let credentials = try ProfileCredentials.load(profile: profile, credentialsFile: paths.credentials, configFile: paths.config) else {
                throw AWSCredentialError("profile '\(profile)' is in neither \(paths.credentials) nor \(paths.config)")
            }
            return (StaticCredentialProvider(credentials), "profile '\(profile)'")
        }

        if let credentials = try EnvironmentCredentials.load(from: environment) {
            return (StaticCredentialProvider(credentials), "environment variables")
        }

        let named = environment["AWS_PROFILE"].flatMap { $0.isEmpty ? nil : $0 }
        let profileName = named ?? "default"
        if let credentials = try ProfileCredentials.load(
            profile: profileName, credentialsFile: paths.credentials, configFile: paths.config, required: named != nil)
        {
            return (StaticCredentialProvider(credentials), "profile '\(profileName)'")
        }
        if named != nil {
            throw AWSCredentialError("AWS_PROFILE names '\(profileName)', which is in neither \(paths.credentials) nor \(paths.config)")
        }

        if let container = try ContainerCredentialProvider.fromEnvironment(
            environment, httpClient: httpClient, logger: logger, refreshMargin: refreshMargin)
        {
            return (container, container.endpoint)
        }

        throw AWSCredentialError(
            "none found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile in \(paths.credentials) or \(paths.config), "
                + "or run with an ECS task role (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI)")
    }
}
