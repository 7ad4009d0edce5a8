import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import VeilKMS

@testable import VeilAWSKMS

/// Setup calls against moto that Veil itself never makes (creating keys and aliases, assuming
/// roles), sent through the same signer so they double as signing checks.
enum MotoAdmin {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// Credentials for `account`: moto files the access keys STS AssumeRole issues under the
    /// role's account, and serves every later request signed with them from that account's
    /// KMS. This is what separates finance's keys from sales' keys here.
    static func assumeRole(account: String, role: String, endpoint: String) async throws -> AWSCredentials {
        let body = "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A\(account)%3Arole%2F\(role)&RoleSessionName=veil-test&DurationSeconds=3600"
        let host = URL(string: endpoint)!.host! + ":" + String(URL(string: endpoint)!.port!)
        let signed = SigV4Signer(region: "us-east-1", service: "sts").sign(
            SigV4Request(
                method: "POST",
                headers: [("Host", host), ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")],
                body: Array(body.utf8)),
            credentials: AWSCredentials(accessKeyId: "AKIAMOTOSETUP", secretAccessKey: "setup-secret"),
            secondsSinceEpoch: Int64(Date().timeIntervalSince1970))
        var request = HTTPClientRequest(url: endpoint + "/")
        request.method = .POST
        for header in signed.headers { request.headers.add(name: header.name, value: header.value) }
        request.body = .bytes(ByteBuffer(string: body))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
        guard response.status == .ok else { throw Failure(description: "AssumeRole answered \(response.status): \(text)") }
        func element(_ name: String) throws -> String {
            guard let start = text.range(of: "<\(name)>"), let end = text.range(of: "</\(name)>", range: start.upperBound..<text.endIndex) else {
                throw Failure(description: "AssumeRole answer has no \(name)")
            }
            return String(text[start.upperBound..<end.lowerBound])
        }
        return AWSCredentials(
            accessKeyId: try element("AccessKeyId"), secretAccessKey: try element("SecretAccessKey"),
            sessionToken: try element("SessionToken"))
    }

    /// Sends a KMS admin operation through ``AWSKMS/send(_:json:)`` and returns the JSON answer.
    static func call(_ kms: AWSKMS, _ operation: String, _ fields: [String: Any]) async throws -> [String: Any] {
        let answer = try await kms.send(operation, json: Array(try JSONSerialization.data(withJSONObject: fields)))
        // Some operations (CreateAlias) answer with an empty body or a bare JSON value.
        guard !answer.isEmpty else { return [:] }
        guard let object = try? JSONSerialization.jsonObject(with: Data(answer), options: .fragmentsAllowed) else {
            throw Failure(description: "\(operation) answered with non-JSON: \(String(decoding: answer.prefix(200), as: UTF8.self))")
        }
        return object as? [String: Any] ?? [:]
    }

    /// Creates a symmetric key and returns its ARN; with `alias`, also points `alias/NAME` at it.
    static func createKey(_ kms: AWSKMS, description: String, alias: String? = nil) async throws -> String {
        let answer = try await call(kms, "CreateKey", ["Description": description, "KeyUsage": "ENCRYPT_DECRYPT", "KeySpec": "SYMMETRIC_DEFAULT"])
        guard let metadata = answer["KeyMetadata"] as? [String: Any], let arn = metadata["Arn"] as? String, let id = metadata["KeyId"] as? String else {
            throw Failure(description: "CreateKey answered without KeyMetadata")
        }
        if let alias {
            _ = try await call(kms, "CreateAlias", ["AliasName": alias, "TargetKeyId": id])
        }
        return arn
    }
}

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
