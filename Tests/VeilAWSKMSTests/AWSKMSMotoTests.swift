import AsyncHTTPClient
import Foundation
import Logging
import NIOConcurrencyHelpers
import Testing
import VeilKMS

import VeilDemo

@testable import VeilAWSKMS

/// AWSKMS against a real moto_server: the KMS API, SigV4 and per-account key stores are moto's,
/// nothing here is mocked. Serialized because each test owns a moto process and the machine is small.
@Suite(.serialized) struct AWSKMSMotoTests {
    static let financeAccount = "111111111111"
    static let salesAccount = "222222222222"

    /// Finance and sales each own `alias/department-key` in their own AWS account. Each side
    /// round-trips its own data keys; the other side's credentials are refused by KMS itself.
    @Test func federatedKeysAcrossAccounts() async throws {
        let moto = try MotoServer()
        defer { moto.stop() }
        let logs = CapturedLogs()
        let financeCredentials = try await MotoAdmin.assumeRole(account: Self.financeAccount, role: "finance-veil", endpoint: moto.endpoint)
        let salesCredentials = try await MotoAdmin.assumeRole(account: Self.salesAccount, role: "sales-veil", endpoint: moto.endpoint)
        #expect(financeCredentials.sessionToken != nil)  // temporary credentials: the token is signed too

        // Each sidecar names the finance KMS "finance", but signs with its own identity.
        let financeKMS = try makeKMS(moto, credentials: financeCredentials, logger: logs.logger("finance"))
        let salesKMS = try makeKMS(moto, credentials: salesCredentials, logger: logs.logger("sales"))
        let financeArn = try await MotoAdmin.createKey(financeKMS, description: "finance department key", alias: "alias/department-key")
        let salesArn = try await MotoAdmin.createKey(salesKMS, description: "sales department key", alias: "alias/department-key")
        #expect(financeArn.hasPrefix("arn:aws:kms:us-east-1:\(Self.financeAccount):key/"))
        #expect(salesArn.hasPrefix("arn:aws:kms:us-east-1:\(Self.salesAccount):key/"))

        let financeByArn = KeyReference(kms: "finance", keyId: financeArn)!
        let financeByAlias = KeyReference(kms: "finance", keyId: "alias/department-key")!
        let salesByAlias = KeyReference(kms: "sales", keyId: "alias/department-key")!

        // Round trips, by ARN and by alias; a DEK made through the alias unwraps through the ARN too.
        let byArn = try await financeKMS.generateDataKey(for: financeByArn)
        #expect(byArn.plaintext.count == 32 && !byArn.wrapped.isEmpty && byArn.reference == financeByArn)
        #expect(bytes(try await financeKMS.unwrap(byArn.wrapped, for: financeByArn)) == bytes(byArn.plaintext))
        let byAlias = try await financeKMS.generateDataKey(for: financeByAlias)
        #expect(bytes(try await financeKMS.unwrap(byAlias.wrapped, for: financeByAlias)) == bytes(byAlias.plaintext))
        #expect(bytes(try await financeKMS.unwrap(byAlias.wrapped, for: financeByArn)) == bytes(byAlias.plaintext))
        #expect(bytes(byArn.plaintext) != bytes(byAlias.plaintext))
        let salesKey = try await salesKMS.generateDataKey(for: salesByAlias)
        #expect(bytes(try await salesKMS.unwrap(salesKey.wrapped, for: salesByAlias)) == bytes(salesKey.plaintext))

        // Sales cannot unwrap finance's DEK. Through the alias, sales' account resolves its own
        // key and KMS refuses the ciphertext as AccessDeniedException (moto's answer carries only
        // the type; AWS adds "The ciphertext refers to a customer master key that does not exist,
        // does not exist in this region, or you are not allowed to access.", which would follow).
        let deniedByAlias = try #require(await kmsError { () async throws(KMSError) in try await salesKMS.unwrap(byAlias.wrapped, for: financeByAlias) })
        #expect(deniedByAlias.kind == .accessDenied)
        #expect(deniedByAlias.reference == financeByAlias)
        #expect(deniedByAlias.message == "AWS KMS (us-east-1) Decrypt refused by KMS: AccessDeniedException")
        #expect(deniedByAlias.description == "access denied for key \(financeByAlias): AWS KMS (us-east-1) Decrypt refused by KMS: AccessDeniedException")
        // Through the ARN, finance's key does not exist for sales' account.
        let deniedByArn = try #require(await kmsError { () async throws(KMSError) in try await salesKMS.unwrap(byArn.wrapped, for: financeByArn) })
        #expect(deniedByArn.kind == .keyNotFound)
        #expect(deniedByArn.message == "AWS KMS (us-east-1) Decrypt refused by KMS: NotFoundException: Key '\(financeArn)' does not exist")
        // Nor can sales make DEKs under finance's key, and the same holds the other way round.
        #expect(await kmsError { () async throws(KMSError) in try await salesKMS.generateDataKey(for: financeByArn) }?.kind == .keyNotFound)
        let financeReadsSales = await kmsError { () async throws(KMSError) in try await financeKMS.unwrap(salesKey.wrapped, for: salesByAlias) }
        #expect(financeReadsSales?.kind == .accessDenied)

        // Refusals are logged once per key and kind, however many records hit them.
        for _ in 0..<5 { _ = await kmsError { () async throws(KMSError) in try await salesKMS.unwrap(byAlias.wrapped, for: financeByAlias) } }
        let aliasDenials = logs.records.filter { $0.level == .error && $0.metadata.contains("key=\(financeByAlias)") && $0.metadata.contains("kind=accessDenied") }
        #expect(aliasDenials.count == 1)
        #expect(aliasDenials.first?.message.contains("AccessDeniedException") == true)

        // Nothing secret reached the logs: no data key, no secret access key, no session token.
        for dataKey in [byArn, byAlias, salesKey] {
            let encoded = dataKey.plaintext.withUnsafeBytes { Data($0).base64EncodedString() }
            #expect(!logs.allText.contains(encoded))
        }
        for credentials in [financeCredentials, salesCredentials] {
            credentials.withSecretBytes { secret in #expect(!logs.allText.contains(String(decoding: secret, as: UTF8.self))) }
            #expect(!logs.allText.contains(credentials.sessionToken!))
        }
    }

    /// Keys live in one region: the same credentials in another region find nothing; other
    /// KMS refusals map to their kinds; Encrypt re-wraps an existing DEK.
    @Test func regionsErrorsAndRewrap() async throws {
        let moto = try MotoServer()
        defer { moto.stop() }
        let logs = CapturedLogs()
        let credentials = try await MotoAdmin.assumeRole(account: Self.financeAccount, role: "finance-veil", endpoint: moto.endpoint)
        let east = try makeKMS(moto, credentials: credentials, logger: logs.logger())
        let west = try makeKMS(moto, region: "eu-west-1", credentials: credentials, logger: logs.logger())
        let arn = try await MotoAdmin.createKey(east, description: "finance", alias: "alias/finance")
        let reference = KeyReference(kms: "finance", keyId: arn)!
        let dataKey = try await east.generateDataKey(for: reference)

        let otherRegion = await kmsError { () async throws(KMSError) in try await west.unwrap(dataKey.wrapped, for: reference) }
        #expect(otherRegion?.kind == .keyNotFound)
        #expect(otherRegion?.message.hasPrefix("AWS KMS (eu-west-1) Decrypt refused by KMS: NotFoundException:") == true)

        let missingAlias = KeyReference(kms: "finance", keyId: "alias/nope")!
        let notFound = await kmsError { () async throws(KMSError) in try await east.generateDataKey(for: missingAlias) }
        #expect(notFound?.kind == .keyNotFound)
        #expect(notFound?.message.contains("NotFoundException") == true)

        // A wrapped DEK altered in storage fails KMS's authentication of the blob.
        var tampered = dataKey.wrapped
        tampered[tampered.count - 1] ^= 0x01
        let altered = await kmsError { () async throws(KMSError) in try await east.unwrap(tampered, for: reference) }
        #expect(altered?.kind == .invalidCiphertext)
        #expect(altered?.message.hasPrefix("AWS KMS (us-east-1) Decrypt refused by KMS, the wrapped data key does not belong to this key: InvalidCiphertextException") == true)
        let empty = await kmsError { () async throws(KMSError) in try await east.unwrap([], for: reference) }
        #expect(empty?.kind == .invalidCiphertext)

        // Re-wrap under the alias with Encrypt; the new blob unwraps to the same DEK.
        let rewrapped = try await east.encrypt(dataKey.plaintext, for: KeyReference(kms: "finance", keyId: "alias/finance")!)
        #expect(rewrapped != dataKey.wrapped)
        #expect(bytes(try await east.unwrap(rewrapped, for: reference)) == bytes(dataKey.plaintext))
    }

    /// One sidecar, several KMSs at once: finance's AWS account and a local development keyring,
    /// found by the name each envelope's key reference carries.
    @Test func registryMixesAWSAndLocalKeyring() async throws {
        let moto = try MotoServer()
        defer { moto.stop() }
        let credentials = try await MotoAdmin.assumeRole(account: Self.financeAccount, role: "finance-veil", endpoint: moto.endpoint)
        let aws = try makeKMS(moto, credentials: credentials, logger: CapturedLogs().logger())
        let arn = try await MotoAdmin.createKey(aws, description: "finance")
        let local = LocalKeyring(identity: "dev", keys: ["dev-key": try SymmetricSecret(randomByteCount: 32)])
        let registry = KMSRegistry(["finance": CountingKMS(aws), "dev": local])

        for reference in [KeyReference(kms: "finance", keyId: arn)!, KeyReference(kms: "dev", keyId: "dev-key")!] {
            let dataKey = try await registry.generateDataKey(for: reference)
            #expect(bytes(try await registry.unwrap(dataKey.wrapped, for: reference)) == bytes(dataKey.plaintext))
        }
        // A local keyring's wrapped DEK sent to AWS under an AWS reference is refused by KMS.
        let localKey = try await local.generateDataKey(for: KeyReference(kms: "dev", keyId: "dev-key")!)
        let refused = await kmsError { () async throws(KMSError) in
            try await registry.unwrap(localKey.wrapped, for: KeyReference(kms: "finance", keyId: arn)!)
        }
        #expect(refused?.kind == .invalidCiphertext)
    }

    /// The ECS credentials endpoint feeding a real KMS: the local server stands in for the ECS
    /// agent, handing out moto-issued task-role credentials in the agent's format. They are
    /// fetched again before they expire, and KMS calls keep working across the switch.
    @Test func containerCredentialsRefreshAgainstKMS() async throws {
        let moto = try MotoServer()
        defer { moto.stop() }
        let logs = CapturedLogs()
        let first = try await MotoAdmin.assumeRole(account: Self.financeAccount, role: "veil-task", endpoint: moto.endpoint)
        let second = try await MotoAdmin.assumeRole(account: Self.financeAccount, role: "veil-task", endpoint: moto.endpoint)
        #expect(first.accessKeyId != second.accessKeyId)
        let clock = ManualClock()
        let served = NIOLockedValueBox(0)
        let ecsAgent = try await LocalHTTPServer { request in
            guard request.headers.first(name: "Authorization") == "task-token" else { return .init(status: .unauthorized) }
            let credentials = served.withLockedValue { $0 += 1; return $0 } == 1 ? first : second
            return .json(credentials.withSecretBytes { secret in
                ecsCredentialsJSON(
                    id: credentials.accessKeyId, secret: String(decoding: secret, as: UTF8.self), token: credentials.sessionToken!,
                    expiration: clock.now.addingTimeInterval(15 * 60))
            })
        }
        defer { Task { try? await ecsAgent.shutdown() } }
        let provider = ContainerCredentialProvider(
            endpoint: "\(ecsAgent.url)/v2/credentials/task", authorizationToken: "task-token", httpClient: .shared,
            logger: logs.logger(), refreshMargin: 300, now: { clock.now })
        let kms = try AWSKMS(region: "us-east-1", endpoint: moto.endpoint, credentials: provider, httpClient: .shared, logger: logs.logger())

        // The key lives in the task role's account, so success proves which account signed.
        let arn = try await MotoAdmin.createKey(kms, description: "task key")
        let reference = KeyReference(kms: "finance", keyId: arn)!
        let dataKey = try await kms.generateDataKey(for: reference)
        #expect(ecsAgent.requests.count == 1)

        clock.advance(11 * 60)  // 4 minutes before expiry
        #expect(bytes(try await kms.unwrap(dataKey.wrapped, for: reference)) == bytes(dataKey.plaintext))
        #expect(ecsAgent.requests.count == 2)
        _ = try await kms.generateDataKey(for: reference)
        #expect(ecsAgent.requests.count == 2)
    }

    /// moto hung, then killed, then restarted: calls fail closed as `unavailable` (logged once),
    /// and the same AWSKMS and HTTP client work again once KMS is back.
    @Test func outageAndRecovery() async throws {
        let moto = try MotoServer()
        defer { moto.stop() }
        let logs = CapturedLogs()
        let credentials = try await MotoAdmin.assumeRole(account: Self.financeAccount, role: "finance-veil", endpoint: moto.endpoint)
        let kms = try makeKMS(
            moto, credentials: credentials, logger: logs.logger(),
            configuration: AWSKMS.Configuration(requestTimeout: .seconds(1), maxAttempts: 2, initialBackoff: .milliseconds(20), maxBackoff: .milliseconds(50)))
        // Setup through a patient client: moto's first KMS call is slow on a loaded machine, and
        // only the calls under test should run against the short deadline.
        let arn = try await MotoAdmin.createKey(try makeKMS(moto, credentials: credentials, logger: logs.logger()), description: "finance")
        let reference = KeyReference(kms: "finance", keyId: arn)!
        let before = try await kms.generateDataKey(for: reference)

        // Hung: connections open but nothing answers.
        moto.pause()
        let hung = await kmsError { () async throws(KMSError) in try await kms.generateDataKey(for: reference) }
        #expect(hung?.kind == .unavailable)
        #expect(hung?.message.hasPrefix("AWS KMS (us-east-1) GenerateDataKey timed out") == true, "\(String(describing: hung))")
        #expect(hung?.message.hasSuffix("(after 2 attempts)") == true)
        moto.resume()
        #expect(bytes(try await kms.unwrap(before.wrapped, for: reference)) == bytes(before.plaintext))

        // Gone: nothing listens on the port. (The success above ended the hang's episode, so
        // this outage gets its own single log line.)
        let logged = logs.records.count
        moto.stop()
        for _ in 0..<3 {
            let down = await kmsError { () async throws(KMSError) in try await kms.unwrap(before.wrapped, for: reference) }
            #expect(down?.kind == .unavailable)
            #expect(down?.message.hasPrefix("AWS KMS (us-east-1) Decrypt ") == true)
        }
        let outageLines = logs.records.dropFirst(logged).filter { $0.level == .warning && $0.metadata.contains("kind=unavailable") }
        #expect(outageLines.count == 1, "\(logs.allText)")

        // Back on the same port. moto keeps keys in memory, so the restarted one has none of the
        // old keys: KMS now says so, and a key created in it works through the same client.
        try moto.start()
        let forgotten = await kmsError { () async throws(KMSError) in try await kms.unwrap(before.wrapped, for: reference) }
        #expect(forgotten?.kind == .keyNotFound)
        let newArn = try await MotoAdmin.createKey(kms, description: "finance after restart")
        let newReference = KeyReference(kms: "finance", keyId: newArn)!
        let after = try await kms.generateDataKey(for: newReference)
        #expect(bytes(try await kms.unwrap(after.wrapped, for: newReference)) == bytes(after.plaintext))
    }
}
