import AsyncHTTPClient
import Foundation
import Logging
import NIOHTTP1
import NIOConcurrencyHelpers
import Testing
import VeilKMS

@testable import VeilAWSKMS

/// Error answers moto never gives (throttling, 5xx, KMSInvalidStateException, AWS's
/// `com.amazonaws.kms#` type prefix), scripted by a local server, to check the mapping to
/// KMSError kinds, the retry policy and the log-once rule. Also checks the wire format of requests.
@Suite struct ErrorHandlingTests {
    static let reference = KeyReference(kms: "finance", keyId: "arn:aws:kms:us-east-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab")!
    static let plaintext = Data((0..<32).map { UInt8($0) }).base64EncodedString()
    static let dataKeyAnswer = LocalHTTPServer.Response.json(
        "{\"CiphertextBlob\":\"\(Data("wrapped-by-kms".utf8).base64EncodedString())\",\"Plaintext\":\"\(plaintext)\",\"KeyId\":\"\(reference.keyId)\"}")

    static func error(_ type: String, _ message: String, status: Int = 400) -> LocalHTTPServer.Response {
        .json("{\"__type\":\"\(type)\",\"message\":\"\(message)\"}", status: HTTPResponseStatus(statusCode: status))
    }

    /// A fake KMS answering from `script` in order (the last answer repeats).
    func fakeKMS(_ script: [LocalHTTPServer.Response], logs: CapturedLogs, attempts: Int = 3) async throws -> (LocalHTTPServer, AWSKMS) {
        let index = NIOLockedValueBox(0)
        let server = try await LocalHTTPServer { _ in
            let i = index.withLockedValue { i in defer { i += 1 }; return i }
            return script[min(i, script.count - 1)]
        }
        let kms = try AWSKMS(
            region: "us-east-1", endpoint: server.url,
            credentials: StaticCredentialProvider(AWSCredentials(accessKeyId: "AKIATEST", secretAccessKey: "test-secret", sessionToken: "test-token")),
            httpClient: .shared, logger: logs.logger(),
            configuration: AWSKMS.Configuration(requestTimeout: .seconds(5), maxAttempts: attempts, initialBackoff: .milliseconds(10), maxBackoff: .milliseconds(40)))
        return (server, kms)
    }

    @Test func requestWireFormat() async throws {
        let logs = CapturedLogs()
        let decryptAnswer = LocalHTTPServer.Response.json("{\"Plaintext\":\"\(Self.plaintext)\",\"KeyId\":\"\(Self.reference.keyId)\"}")
        let (server, kms) = try await fakeKMS([Self.dataKeyAnswer, decryptAnswer], logs: logs)
        defer { Task { try? await server.shutdown() } }

        let dataKey = try await kms.generateDataKey(for: Self.reference)
        #expect(dataKey.wrapped == Array("wrapped-by-kms".utf8))
        #expect(bytes(dataKey.plaintext) == (0..<32).map { UInt8($0) })
        _ = try await kms.unwrap(dataKey.wrapped, for: Self.reference)

        let requests = server.requests
        #expect(requests.count == 2)
        for (request, operation) in zip(requests, ["GenerateDataKey", "Decrypt"]) {
            #expect(request.method == .POST && request.uri == "/")
            #expect(request.headers.first(name: "X-Amz-Target") == "TrentService.\(operation)")
            #expect(request.headers.first(name: "Content-Type") == "application/x-amz-json-1.1")
            #expect(request.headers.first(name: "Host") == "127.0.0.1:\(server.port)")
            #expect(request.headers.first(name: "X-Amz-Security-Token") == "test-token")
            let authorization = try #require(request.headers.first(name: "Authorization"))
            #expect(authorization.hasPrefix("AWS4-HMAC-SHA256 Credential=AKIATEST/"))
            #expect(authorization.contains("/us-east-1/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, Signature="))
        }
        let generate = try JSONSerialization.jsonObject(with: Data(requests[0].body)) as? [String: String]
        #expect(generate == ["KeyId": Self.reference.keyId, "KeySpec": "AES_256"])
        let decrypt = try JSONSerialization.jsonObject(with: Data(requests[1].body)) as? [String: String]
        #expect(decrypt == ["KeyId": Self.reference.keyId, "CiphertextBlob": Data("wrapped-by-kms".utf8).base64EncodedString()])
        #expect(!logs.allText.contains(Self.plaintext) && !logs.allText.contains("test-secret") && !logs.allText.contains("test-token"))
    }

    @Test func throttlingIsRetriedThenSucceeds() async throws {
        let logs = CapturedLogs()
        let throttled = Self.error("ThrottlingException", "Rate exceeded")
        let (server, kms) = try await fakeKMS([throttled, throttled, Self.dataKeyAnswer], logs: logs)
        defer { Task { try? await server.shutdown() } }
        _ = try await kms.generateDataKey(for: Self.reference)
        #expect(server.requests.count == 3)
        // Retries that end well are not worth a warning.
        #expect(logs.records.allSatisfy { $0.level < .warning })
    }

    @Test func persistentFailuresAreBoundedAndUnavailable() async throws {
        let logs = CapturedLogs()
        let (server, kms) = try await fakeKMS([Self.error("KMSInternalException", "internal", status: 500)], logs: logs, attempts: 3)
        defer { Task { try? await server.shutdown() } }
        let failed = await kmsError { () async throws(KMSError) in try await kms.generateDataKey(for: Self.reference) }
        #expect(failed?.kind == .unavailable)
        #expect(failed?.message == "AWS KMS (us-east-1) GenerateDataKey failed (HTTP 500): KMSInternalException: internal (after 3 attempts)")
        #expect(server.requests.count == 3)

        let (throttledServer, throttledKMS) = try await fakeKMS(
            [.init(status: .serviceUnavailable, headers: [("x-amzn-ErrorType", "ThrottlingException:http://internal.amazon.com/")])],
            logs: logs, attempts: 2)
        defer { Task { try? await throttledServer.shutdown() } }
        let throttled = await kmsError { () async throws(KMSError) in try await throttledKMS.unwrap([1, 2, 3], for: Self.reference) }
        #expect(throttled?.kind == .unavailable)
        #expect(throttled?.message == "AWS KMS (us-east-1) Decrypt failed (HTTP 503): ThrottlingException (after 2 attempts)")
        #expect(throttledServer.requests.count == 2)
    }

    @Test(arguments: [
        ("KMSInvalidStateException", "arn:aws:kms:us-east-1:111111111111:key/x is pending deletion.", KMSError.Kind.accessDenied,
         "AWS KMS (us-east-1) Decrypt refused by KMS, the key is not usable in its current state: KMSInvalidStateException: arn:aws:kms:us-east-1:111111111111:key/x is pending deletion."),
        ("DisabledException", "key is disabled", .accessDenied,
         "AWS KMS (us-east-1) Decrypt refused by KMS, the key is not usable in its current state: DisabledException: key is disabled"),
        ("com.amazonaws.kms#AccessDeniedException", "User is not authorized to perform kms:Decrypt", .accessDenied,
         "AWS KMS (us-east-1) Decrypt refused by KMS: AccessDeniedException: User is not authorized to perform kms:Decrypt"),
        ("com.amazonaws.kms#NotFoundException", "Key does not exist", .keyNotFound,
         "AWS KMS (us-east-1) Decrypt refused by KMS: NotFoundException: Key does not exist"),
        ("IncorrectKeyException", "The key ID in the request does not identify a KMS key that can perform this operation.", .invalidCiphertext,
         "AWS KMS (us-east-1) Decrypt refused by KMS, the wrapped data key does not belong to this key: IncorrectKeyException: The key ID in the request does not identify a KMS key that can perform this operation."),
        ("UnrecognizedClientException", "The security token included in the request is invalid.", .accessDenied,
         "AWS KMS (us-east-1) Decrypt refused by AWS, the credentials were not accepted: UnrecognizedClientException: The security token included in the request is invalid."),
    ])
    func refusalsMapToKindsWithoutRetry(type: String, message: String, kind: KMSError.Kind, expected: String) async throws {
        let logs = CapturedLogs()
        let (server, kms) = try await fakeKMS([Self.error(type, message)], logs: logs)
        defer { Task { try? await server.shutdown() } }
        let error = await kmsError { () async throws(KMSError) in try await kms.unwrap([9, 9, 9], for: Self.reference) }
        #expect(error?.kind == kind)
        #expect(error?.message == expected)
        #expect(error?.reference == Self.reference)
        #expect(server.requests.count == 1)
    }

    /// One log line per key and error kind; a new kind, another key, or the same kind after the
    /// key worked again each get their own line.
    @Test func logsOncePerKeyAndKind() async throws {
        let logs = CapturedLogs()
        let answers = NIOLockedValueBox<[LocalHTTPServer.Response]>([])
        let server = try await LocalHTTPServer { _ in
            answers.withLockedValue { $0.count > 1 ? $0.removeFirst() : $0[0] }
        }
        defer { Task { try? await server.shutdown() } }
        let kms = try AWSKMS(
            region: "us-east-1", endpoint: server.url,
            credentials: StaticCredentialProvider(AWSCredentials(accessKeyId: "AKIATEST", secretAccessKey: "test-secret")),
            httpClient: .shared, logger: logs.logger(), configuration: AWSKMS.Configuration(maxAttempts: 1))
        let other = KeyReference(kms: "sales", keyId: "alias/department-key")!
        func run(_ answer: LocalHTTPServer.Response, _ reference: KeyReference = Self.reference, times: Int = 1) async {
            answers.withLockedValue { $0 = [answer] }
            for _ in 0..<times { _ = await kmsError { () async throws(KMSError) in try await kms.generateDataKey(for: reference) } }
        }
        func lines() -> [String] { logs.records.filter { $0.level >= .warning }.map { "\($0.level) \($0.metadata)" } }

        await run(Self.error("AccessDeniedException", "no"), times: 4)
        #expect(lines().count == 1)
        await run(Self.error("KMSInternalException", "boom", status: 500), times: 3)
        #expect(lines().count == 2)
        await run(Self.error("AccessDeniedException", "no"), other, times: 2)
        #expect(lines().count == 3)
        await run(Self.dataKeyAnswer)
        await run(Self.error("AccessDeniedException", "no"), times: 2)
        #expect(lines().count == 4)
        #expect(lines()[1].hasPrefix("warning") && lines()[0].hasPrefix("error"))
    }

    @Test func administrativeSendReportsKMSErrors() async throws {
        let logs = CapturedLogs()
        let (server, kms) = try await fakeKMS([.json("{\"KeyMetadata\":{}}"), Self.error("NotFoundException", "Alias alias/x is not found.")], logs: logs)
        defer { Task { try? await server.shutdown() } }
        #expect(try await kms.send("DescribeKey", json: Array("{}".utf8)) == Array("{\"KeyMetadata\":{}}".utf8))
        do {
            _ = try await kms.send("DescribeKey", json: Array("{\"KeyId\":\"alias/x\"}".utf8))
            Issue.record("expected a KMS error")
        } catch {
            #expect(error.errorType == "NotFoundException")
            #expect(error.message == "AWS KMS (us-east-1) DescribeKey refused by KMS: NotFoundException: Alias alias/x is not found.")
        }
        #expect(server.requests.last?.headers.first(name: "X-Amz-Target") == "TrentService.DescribeKey")
    }

    @Test func endpoints() throws {
        let standard = try AWSKMSEndpoint(region: "us-east-1", custom: nil)
        #expect(standard.url == "https://kms.us-east-1.amazonaws.com/" && standard.host == "kms.us-east-1.amazonaws.com")
        #expect(try AWSKMSEndpoint(region: "cn-north-1", custom: nil).host == "kms.cn-north-1.amazonaws.com.cn")
        let local = try AWSKMSEndpoint(region: "us-east-1", custom: "http://127.0.0.1:5000")
        #expect(local.url == "http://127.0.0.1:5000/" && local.host == "127.0.0.1:5000")
        let vpce = try AWSKMSEndpoint(region: "eu-west-1", custom: "https://vpce-0abc.kms.eu-west-1.vpce.amazonaws.com:443/")
        #expect(vpce.host == "vpce-0abc.kms.eu-west-1.vpce.amazonaws.com")
        for (region, custom) in [("US-EAST-1", nil), ("", nil), ("us-east-1", "127.0.0.1:5000"), ("us-east-1", "ftp://host"),
                                 ("us-east-1", "http://host/path"), ("us-east-1", "http://user@host")] as [(String, String?)] {
            #expect(throws: AWSKMSConfigurationError.self, "\(region) \(custom ?? "nil")") { try AWSKMSEndpoint(region: region, custom: custom) }
        }
    }
}
