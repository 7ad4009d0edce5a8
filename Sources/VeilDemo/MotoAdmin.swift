import AsyncHTTPClient
import Foundation
import NIOCore
import VeilAWSKMS

/// Setup calls against a moto_server that Veil itself never makes: assuming roles in an
/// account, creating keys and aliases. They go through Veil's own SigV4 signer and AWSKMS
/// client, so they double as checks of both. Used by `veil demo --kms aws` and the AWS tests.
public enum MotoAdmin {
    /// A setup call moto refused or answered in a shape it never uses.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Credentials for `role` in `account`: moto files the access keys STS AssumeRole issues
    /// under the role's account, and serves every later request signed with them from that
    /// account's KMS. That is what keeps one department's keys out of another's reach.
    public static func assumeRole(account: String, role: String, endpoint: String) async throws -> AWSCredentials {
        let body = "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A\(account)%3Arole%2F\(role)"
            + "&RoleSessionName=veil&DurationSeconds=3600"
        guard let url = URL(string: endpoint), let hostName = url.host else {
            throw Failure(description: "not an endpoint URL: \(endpoint)")
        }
        let host = url.port.map { "\(hostName):\($0)" } ?? hostName
        // Any access key signs an AssumeRole at moto; the answer's keys are what count.
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
            guard let start = text.range(of: "<\(name)>"),
                let end = text.range(of: "</\(name)>", range: start.upperBound..<text.endIndex)
            else {
                throw Failure(description: "AssumeRole answer has no \(name)")
            }
            return String(text[start.upperBound..<end.lowerBound])
        }
        return AWSCredentials(
            accessKeyId: try element("AccessKeyId"), secretAccessKey: try element("SecretAccessKey"),
            sessionToken: try element("SessionToken"))
    }

    /// Sends a KMS operation through ``AWSKMS/send(_:json:)`` and returns the JSON answer.
    public static func call(_ kms: AWSKMS, _ operation: String, _ fields: [String: Any]) async throws -> [String: Any] {
        let answer = try await kms.send(operation, json: Array(try JSONSerialization.data(withJSONObject: fields)))
        // Some operations (CreateAlias) answer with an empty body.
        guard !answer.isEmpty else { return [:] }
        guard let object = try? JSONSerialization.jsonObject(with: Data(answer), options: .fragmentsAllowed) else {
            throw Failure(description: "\(operation) answered with non-JSON: \(String(decoding: answer.prefix(200), as: UTF8.self))")
        }
        return object as? [String: Any] ?? [:]
    }

    /// Creates a symmetric key and returns its ARN; with `alias`, also points `alias/NAME` at it.
    public static func createKey(_ kms: AWSKMS, description: String, alias: String? = nil) async throws -> String {
        let answer = try await call(
            kms, "CreateKey", ["Description": description, "KeyUsage": "ENCRYPT_DECRYPT", "KeySpec": "SYMMETRIC_DEFAULT"])
        guard let metadata = answer["KeyMetadata"] as? [String: Any], let arn = metadata["Arn"] as? String,
            let id = metadata["KeyId"] as? String
        else {
            throw Failure(description: "CreateKey answered without KeyMetadata")
        }
        if let alias {
            _ = try await call(kms, "CreateAlias", ["AliasName": alias, "TargetKeyId": id])
        }
        return arn
    }
}
