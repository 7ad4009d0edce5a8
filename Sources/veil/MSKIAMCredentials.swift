import AsyncHTTPClient
import Logging
import NIOConcurrencyHelpers
import VeilAWSKMS
import VeilSASL

/// AWS credentials for AWS_MSK_IAM, from the same chain as the AWS KMS backend (environment,
/// profile, ECS task role), so MSK and KMS see one principal.
///
/// The upstream SASL factory runs synchronously for each new connection, while the chain is
/// async (the ECS endpoint is an HTTP call), so this keeps the latest credentials at hand: they
/// are fetched once before Veil accepts connections and then refreshed in the background. The
/// chain itself renews temporary credentials before they expire.
final class MSKIAMCredentials: Sendable {
    private let chain: AWSCredentialChain
    private let latest = NIOLockedValueBox<SigningCredentials?>(nil)
    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
        chain = AWSCredentialChain(httpClient: .shared, logger: logger)
    }

    /// Fetches credentials now; throws when the chain has none, so start-up fails with the reason.
    func refresh() async throws(AWSCredentialError) {
        let credentials = try await chain.credentials()
        let signing = credentials.withSecretBytes { secret in
            SigningCredentials(
                accessKeyId: credentials.accessKeyId, secretAccessKey: String(decoding: secret, as: UTF8.self),
                sessionToken: credentials.sessionToken)
        }
        latest.withLockedValue { $0 = signing }
    }

    /// Refreshes every `interval` until the task is cancelled. A failed refresh keeps the
    /// previous credentials (they may still be valid) and is logged.
    func keepFresh(every interval: Duration = .seconds(60)) -> Task<Void, Never> {
        Task { [self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                do {
                    try await refresh()
                } catch {
                    logger.warning("AWS_MSK_IAM: could not refresh AWS credentials, keeping the previous ones: \(error)")
                }
            }
        }
    }

    /// The credentials to sign the next connection's login with.
    func current() throws(SaslError) -> SigningCredentials {
        guard let credentials = latest.withLockedValue({ $0 }) else {
            throw SaslError("AWS_MSK_IAM: no AWS credentials yet (environment, profile or ECS task role)")
        }
        return credentials
    }
}
