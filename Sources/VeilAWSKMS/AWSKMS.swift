import COpenSSL
import AsyncHTTPClient
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import VeilKMS

/// AWS KMS as a ``KeyManagementService``: data keys come from `GenerateDataKey` (AES_256) and
/// are unwrapped with `Decrypt`, so IAM and the key policies, not only Veil's configuration,
/// decide who can read what.
///
/// A reference's key id is passed to KMS as given: a key ARN, a key id, or an alias
/// (`alias/NAME` or its ARN). `Decrypt` names that key too, so KMS itself checks that the wrapped
/// DEK belongs to the key the envelope claims; an envelope cannot smuggle in a DEK wrapped under
/// some other key the reader can use. A consequence: a reference by alias only decrypts DEKs
/// made while the alias pointed at its current key, so reference keys by ARN if aliases move.
///
/// Requests are AWS JSON 1.1 over HTTPS (or HTTP to a custom endpoint), signed with SigV4.
/// Throttling, 5xx answers and network failures are retried with exponential backoff and full
/// jitter, up to ``Configuration/maxAttempts``. Failures become ``KMSError``s whose messages
/// carry the KMS's own error type and text, and each (key, error kind) is logged once until
/// that key works again, so an outage does not log per record.
public final class AWSKMS: KeyManagementService, CustomStringConvertible {
    /// Timeouts and retry limits.
    public struct Configuration: Sendable {
        /// Deadline for one HTTP attempt, connection included.
        public var requestTimeout: TimeAmount
        /// Attempts per operation, the first included; at least 1.
        public var maxAttempts: Int
        /// The backoff cap for the first retry; it doubles per retry up to ``maxBackoff``.
        /// The actual wait is uniformly random below the cap (full jitter).
        public var initialBackoff: TimeAmount
        /// The largest backoff cap.
        public var maxBackoff: TimeAmount

        /// Creates a configuration; the defaults suit a sidecar (KMS answers in milliseconds) and
        /// match the AWS SDKs' standard mode of three attempts.
        public init(
            requestTimeout: TimeAmount = .seconds(5), maxAttempts: Int = 3,
            initialBackoff: TimeAmount = .milliseconds(100), maxBackoff: TimeAmount = .seconds(2)
        ) {
            self.requestTimeout = requestTimeout
            self.maxAttempts = max(1, maxAttempts)
            self.initialBackoff = initialBackoff
            self.maxBackoff = maxBackoff
        }
    }

    /// The region requests are signed for.
    public let region: String
    /// The URL requests go to.
    public var endpointURL: String { endpoint.url }

    let endpoint: AWSKMSEndpoint
    private let signer: SigV4Signer
    private let credentials: any AWSCredentialProvider
    private let httpClient: HTTPClient
    private let logger: Logger
    private let configuration: Configuration
    private let reported = NIOLockedValueBox<Set<Reported>>([])

    private struct Reported: Hashable {
        let reference: KeyReference
        let kind: KMSError.Kind
    }

    /// The most KMS accepts as a `CiphertextBlob`; longer input cannot be a wrapped key.
    static let maximumCiphertextBlobSize = 6144

    /// - Parameters:
    ///   - region: the AWS region, e.g. `us-east-1`; it goes into the signature scope.
    ///   - endpoint: a custom endpoint (`https://vpce-….kms.us-east-1.vpce.amazonaws.com`, or a
    ///     test server such as `http://127.0.0.1:5000`); nil for `https://kms.REGION.amazonaws.com`.
    ///   - credentials: usually an ``AWSCredentialChain``.
    ///   - httpClient: the caller owns it and shuts it down after the last call.
    ///   - logger: receives one line per key and error kind, never key material or credentials.
    public init(
        region: String, endpoint: String? = nil, credentials: any AWSCredentialProvider, httpClient: HTTPClient,
        logger: Logger, configuration: Configuration = Configuration()
    ) throws(AWSKMSConfigurationError) {
        self.endpoint = try AWSKMSEndpoint(region: region, custom: endpoint)
        self.region = region
        signer = SigV4Signer(region: region, service: "kms")
        self.credentials = credentials
        self.httpClient = httpClient
        self.logger = logger
        self.configuration = configuration
    }

    public var description: String { "AWSKMS(region: \(region), endpoint: \(endpoint.url))" }

    public func generateDataKey(for reference: KeyReference) async throws(KMSError) -> DataKey {
        let response = try await call("GenerateDataKey", ["KeyId": reference.keyId, "KeySpec": "AES_256"], for: reference)
        guard let wrapped = response.bytes("CiphertextBlob"), !wrapped.isEmpty,
            let plaintext = response.secret("Plaintext"), plaintext.count == 32
        else {
            throw failure(.unavailable, reference, "GenerateDataKey answered without a 32-byte data key and its ciphertext")
        }
        return DataKey(reference: reference, plaintext: plaintext, wrapped: wrapped)
    }

    public func unwrap(_ wrapped: [UInt8], for reference: KeyReference) async throws(KMSError) -> SymmetricSecret {
        guard !wrapped.isEmpty, wrapped.count <= Self.maximumCiphertextBlobSize else {
            throw KMSError(.invalidCiphertext, reference, "wrapped data key of \(wrapped.count) bytes is not an AWS KMS ciphertext")
        }
        let response = try await call(
            "Decrypt", ["KeyId": reference.keyId, "CiphertextBlob": Data(wrapped).base64EncodedString()], for: reference)
        guard let plaintext = response.secret("Plaintext"), plaintext.count == 32 else {
            throw failure(.invalidCiphertext, reference, "Decrypt returned something other than a 32-byte data key")
        }
        return plaintext
    }

    /// Wraps an existing DEK under `reference` with `Encrypt`, for re-wrapping a data key under
    /// another KMS key. Returns the ciphertext blob, which ``unwrap(_:for:)`` accepts.
    public func encrypt(_ dataKey: SymmetricSecret, for reference: KeyReference) async throws(KMSError) -> [UInt8] {
        let encoded = dataKey.withUnsafeBytes { Data($0).base64EncodedString() }
        let response = try await call("Encrypt", ["KeyId": reference.keyId, "Plaintext": encoded], for: reference)
        guard let wrapped = response.bytes("CiphertextBlob"), !wrapped.isEmpty else {
            throw failure(.unavailable, reference, "Encrypt answered without a ciphertext")
        }
        return wrapped
    }

    /// Sends any KMS JSON 1.1 operation (`CreateKey`, `CreateAlias`, …), signed and retried like
    /// the data-key calls, and returns the answer's JSON body. For administration such as the
    /// demo creating its keys; the sidecar's own traffic goes through the methods above.
    public func send(_ operation: String, json body: [UInt8]) async throws(AWSKMSCallError) -> [UInt8] {
        switch await perform(operation, body: body) {
        case .success(let buffer):
            return Array(buffer.readableBytesView)
        case .failure(let problem):
            let serviceType: String?
            switch problem {
            case .service(_, let type, _), .exhausted(.service(_, let type, _), _): serviceType = type
            default: serviceType = nil
            }
            throw AWSKMSCallError(message: problem.classify(operation: operation, region: region).1, errorType: serviceType)
        }
    }

    // MARK: - Calls

    /// One operation with retries, its failure turned into a KMSError (and logged once).
    private func call(_ operation: String, _ fields: [String: String], for reference: KeyReference)
        async throws(KMSError) -> Response
    {
        // Serializing a flat dictionary of strings cannot fail.
        let body = Array(try! JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]))
        switch await perform(operation, body: body) {
        case .success(var buffer):
            defer { buffer.wipeReadableBytes() }
            guard let response = Response(buffer) else {
                throw failure(.unavailable, reference, "AWS KMS (\(region)) \(operation) answered with unreadable JSON")
            }
            clearReports(for: reference)
            return response
        case .failure(let problem):
            let (kind, message) = problem.classify(operation: operation, region: region)
            throw failure(kind, reference, message)
        }
    }

    /// Sends one operation, retrying what may pass. Internal so tests can drive admin operations
    /// (CreateKey, DisableKey) through the same signing path.
    func perform(_ operation: String, body: [UInt8]) async -> Result<ByteBuffer, CallFailure> {
        var attempt = 1
        while true {
            let result = await attemptOnce(operation, body: body)
            guard case .failure(let problem) = result, problem.isRetriable, attempt < configuration.maxAttempts,
                !Task.isCancelled
            else {
                if case .failure(let problem) = result, attempt > 1 { return .failure(problem.after(attempts: attempt)) }
                return result
            }
            let cap = min(
                configuration.maxBackoff.nanoseconds,
                configuration.initialBackoff.nanoseconds << Int64(min(attempt - 1, 30)))
            let delay = Int64.random(in: 0...max(cap, 0))
            logger.debug(
                "retrying AWS KMS call",
                metadata: ["operation": "\(operation)", "attempt": "\(attempt)", "reason": "\(problem.summary)"])
            attempt += 1
            do {
                try await Task.sleep(nanoseconds: UInt64(delay))
            } catch {
                return .failure(problem.after(attempts: attempt - 1))
            }
        }
    }

    private func attemptOnce(_ operation: String, body: [UInt8]) async -> Result<ByteBuffer, CallFailure> {
        let current: AWSCredentials
        do {
            current = try await credentials.credentials()
        } catch {
            return .failure(.credentials(error))
        }
        let unsigned = SigV4Request(
            method: "POST", path: "/",
            headers: [
                (name: "Host", value: endpoint.host),
                (name: "Content-Type", value: "application/x-amz-json-1.1"),
                (name: "X-Amz-Target", value: "TrentService.\(operation)"),
            ], body: body)
        let signed = signer.sign(unsigned, credentials: current, secondsSinceEpoch: Int64(Date().timeIntervalSince1970))
        var request = HTTPClientRequest(url: endpoint.url)
        request.method = .POST
        for header in signed.headers { request.headers.add(name: header.name, value: header.value) }
        request.headers.add(name: "User-Agent", value: "veil-aws-kms")
        request.body = .bytes(ByteBuffer(bytes: body))

        do {
            let response = try await httpClient.execute(request, timeout: configuration.requestTimeout)
            var buffer = try await response.body.collect(upTo: 1 << 20)
            if response.status == .ok { return .success(buffer) }
            defer { buffer.wipeReadableBytes() }
            return .failure(.service(
                status: Int(response.status.code),
                type: ErrorBody.type(buffer, header: response.headers.first(name: "x-amzn-ErrorType")),
                message: ErrorBody.message(buffer)))
        } catch {
            return .failure(.transport(CallFailure.describe(error), timedOut: CallFailure.isTimeout(error)))
        }
    }

    // MARK: - Reporting

    private func failure(_ kind: KMSError.Kind, _ reference: KeyReference, _ message: String) -> KMSError {
        let error = KMSError(kind, reference, message)
        let first = reported.withLockedValue { $0.insert(Reported(reference: reference, kind: kind)).inserted }
        if first {
            let metadata: Logger.Metadata = ["key": "\(reference)", "region": "\(region)", "kind": "\(kind)"]
            switch kind {
            case .unavailable: logger.warning("\(error)", metadata: metadata)
            default: logger.error("\(error)", metadata: metadata)
            }
        }
        return error
    }

    /// A key that works again may log its next failure.
    private func clearReports(for reference: KeyReference) {
        reported.withLockedValue { reported in
            guard !reported.isEmpty else { return }
            reported = reported.filter { $0.reference != reference }
        }
    }
}

/// Why ``AWSKMS/send(_:json:)`` failed.
public struct AWSKMSCallError: Error, Sendable, CustomStringConvertible {
    /// Which KMS and operation, and what KMS said (or why it could not be reached).
    public let message: String
    /// The KMS error type (`NotFoundException`, …); nil when no answer came.
    public let errorType: String?

    public var description: String { message }
}

/// A successful JSON answer, with base64 fields decoded on demand.
struct Response {
    private let object: [String: Any]

    init?(_ buffer: ByteBuffer) {
        var data = Data(buffer.readableBytesView)
        defer { data.resetBytes(in: 0..<data.count) }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return nil }
        self.object = object
    }

    func string(_ field: String) -> String? { object[field] as? String }

    func bytes(_ field: String) -> [UInt8]? {
        guard let text = object[field] as? String, let data = Data(base64Encoded: text) else { return nil }
        return Array(data)
    }

    /// Decodes straight into wiped-on-release storage. (Foundation's JSON strings holding the
    /// base64 form cannot be wiped; they are released when the call returns.)
    func secret(_ field: String) -> SymmetricSecret? {
        guard let text = object[field] as? String, var data = Data(base64Encoded: text) else { return nil }
        defer { data.resetBytes(in: 0..<data.count) }
        return SymmetricSecret(copying: data)
    }
}

/// Reads AWS JSON error answers: `{"__type": "com.amazonaws.kms#NotFoundException", "message": "…"}`.
enum ErrorBody {
    static func object(_ buffer: ByteBuffer) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(buffer.readableBytesView))) as? [String: Any]
    }

    /// The error's short name: the part after `#` (and before `:`), from the body or the header.
    static func type(_ buffer: ByteBuffer, header: String?) -> String? {
        guard let raw = (object(buffer)?["__type"] as? String) ?? header, !raw.isEmpty else { return nil }
        let afterHash = raw.split(separator: "#").last.map(String.init) ?? raw
        return afterHash.split(separator: ":").first.map(String.init) ?? afterHash
    }

    static func message(_ buffer: ByteBuffer) -> String? {
        guard let object = object(buffer) else { return nil }
        let text = (object["message"] as? String) ?? (object["Message"] as? String)
        // Bounded: this text ends up in logs and error messages.
        return text.map { String($0.prefix(500)) }
    }
}

/// Why one operation failed, before it becomes a ``KMSError``.
enum CallFailure: Error, Sendable {
    /// KMS answered with an error.
    case service(status: Int, type: String?, message: String?)
    /// No answer: connection refused or reset, timeout.
    case transport(String, timedOut: Bool)
    /// No credentials to sign with.
    case credentials(AWSCredentialError)
    /// A retriable failure that persisted through every attempt.
    indirect case exhausted(CallFailure, attempts: Int)

    static let throttlingTypes: Set<String> = [
        "ThrottlingException", "ThrottledException", "TooManyRequestsException", "RequestLimitExceeded",
        "SlowDown", "RequestThrottled", "RequestThrottledException",
    ]

    var isRetriable: Bool {
        switch self {
        case .service(let status, let type, _):
            return status >= 500 || status == 429 || type.map(Self.throttlingTypes.contains) == true
        case .transport: return true
        case .credentials, .exhausted: return false
        }
    }

    func after(attempts: Int) -> CallFailure { isRetriable ? .exhausted(self, attempts: attempts) : self }

    var summary: String {
        switch self {
        case .service(let status, let type, let message):
            return "\(type ?? "HTTP \(status)")" + (message.map { ": \($0)" } ?? "")
        case .transport(let text, _): return text
        case .credentials(let error): return error.description
        case .exhausted(let inner, let attempts): return "\(inner.summary) (after \(attempts) attempts)"
        }
    }

    /// The KMSError kind and a message that says which KMS, which operation and what it said.
    func classify(operation: String, region: String) -> (KMSError.Kind, String) {
        let prefix = "AWS KMS (\(region)) \(operation)"
        switch self {
        case .exhausted(let inner, let attempts):
            let (kind, message) = inner.classify(operation: operation, region: region)
            return (kind, "\(message) (after \(attempts) attempts)")
        case .credentials(let error):
            return (.unavailable, "\(prefix) not sent: \(error)")
        case .transport(let text, let timedOut):
            return (.unavailable, timedOut ? "\(prefix) timed out: \(text)" : "\(prefix) unreachable: \(text)")
        case .service(let status, let type, _):
            let said = summary
            switch type {
            case "AccessDeniedException":
                return (.accessDenied, "\(prefix) refused by KMS: \(said)")
            case "NotFoundException":
                return (.keyNotFound, "\(prefix) refused by KMS: \(said)")
            case "DisabledException", "KMSInvalidStateException":
                return (.accessDenied, "\(prefix) refused by KMS, the key is not usable in its current state: \(said)")
            case "InvalidKeyUsageException":
                return (.accessDenied, "\(prefix) refused by KMS, the key is not a symmetric encryption key: \(said)")
            case "InvalidCiphertextException", "IncorrectKeyException":
                return (.invalidCiphertext, "\(prefix) refused by KMS, the wrapped data key does not belong to this key: \(said)")
            case "UnrecognizedClientException", "InvalidClientTokenId", "InvalidSignatureException",
                "IncompleteSignature", "MissingAuthenticationToken", "ExpiredTokenException", "SignatureDoesNotMatch":
                return (.accessDenied, "\(prefix) refused by AWS, the credentials were not accepted: \(said)")
            default:
                if isRetriable {
                    let what = status >= 500 ? "failed (HTTP \(status))" : "throttled"
                    return (.unavailable, "\(prefix) \(what): \(said)")
                }
                return (.unavailable, "\(prefix) failed (HTTP \(status)): \(said)")
            }
        }
    }

    static func isTimeout(_ error: any Error) -> Bool {
        if let error = error as? HTTPClientError {
            return error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout
                || error == .writeTimeout
        }
        return false
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError { return error.shortDescription }
        return "\(error)"
    }
}

extension ByteBuffer {
    /// Zeroes the readable bytes in place (answers may hold a plaintext data key).
    mutating func wipeReadableBytes() {
        withUnsafeMutableReadableBytes { bytes in
            if let base = bytes.baseAddress { OPENSSL_cleanse(base, bytes.count) }
        }
    }
}
