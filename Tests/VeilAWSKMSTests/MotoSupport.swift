import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import VeilKMS

import VeilDemo

@testable import VeilAWSKMS

/// One AWSKMS per identity, all against the same moto.
func makeKMS(
    _ moto: MotoServer, region: String = "us-east-1", credentials: AWSCredentials, logger: Logger,
    configuration: AWSKMS.Configuration = AWSKMS.Configuration(requestTimeout: .seconds(5), maxAttempts: 3, initialBackoff: .milliseconds(50), maxBackoff: .milliseconds(200))
) throws -> AWSKMS {
    try AWSKMS(
        region: region, endpoint: moto.endpoint, credentials: StaticCredentialProvider(credentials), httpClient: .shared,
        logger: logger, configuration: configuration)
}

func bytes(_ secret: SymmetricSecret) -> [UInt8] {
    secret.withUnsafeBytes { Array($0) }
}

/// Runs `body` and returns the KMSError it throws, or nil if it succeeded.
func kmsError<T>(_ body: () async throws(KMSError) -> T) async -> KMSError? {
    do {
        _ = try await body()
        return nil
    } catch {
        return error
    }
}
