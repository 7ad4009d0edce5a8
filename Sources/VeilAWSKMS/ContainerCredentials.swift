import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// Temporary credentials from the ECS container credentials endpoint: how an ECS task role
/// (and EKS Pod Identity) reaches a sidecar.
///
/// The endpoint is `http://169.254.170.2` plus `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, or
/// `AWS_CONTAINER_CREDENTIALS_FULL_URI`, with the token from `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`
/// (re-read on every fetch, since it is rotated) or `AWS_CONTAINER_AUTHORIZATION_TOKEN` sent as the
/// `Authorization` header. Credentials are cached and fetched again `refreshMargin` before they
/// expire; if a refresh fails while the old credentials are still valid, the old ones keep serving.
public final class ContainerCredentialProvider: AWSCredentialProvider {
    /// The ECS agent's link-local address, used with a relative URI.
    public static let ecsAgentAddress = "169.254.170.2"

    /// Where the credentials come from.
    public let endpoint: String
    private let authorizationToken: String?
    private let authorizationTokenFile: String?
    private let httpClient: HTTPClient
    private let timeout: TimeAmount
    private let cache: RefreshingCredentials

    /// - Parameters:
    ///   - endpoint: the full URL to GET.
    ///   - authorizationToken: sent as `Authorization` when `authorizationTokenFile` is nil.
    ///   - authorizationTokenFile: a file whose (trimmed) contents are sent as `Authorization`.
    ///   - refreshMargin: how long before expiry to fetch new credentials.
    ///   - now: the clock; tests move it to exercise refresh.
    public init(
        endpoint: String, authorizationToken: String? = nil, authorizationTokenFile: String? = nil,
        httpClient: HTTPClient, logger: Logger, timeout: TimeAmount = .seconds(5),
        refreshMargin: TimeInterval = 300, now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.endpoint = endpoint
        self.authorizationToken = authorizationToken
        self.authorizationTokenFile = authorizationTokenFile
        self.httpClient = httpClient
        self.timeout = timeout
        cache = RefreshingCredentials(source: "container credentials endpoint \(endpoint)", refreshMargin: refreshMargin, logger: logger, now: now)
    }

    /// The provider the environment describes, nil when neither container variable is set, or an
    /// error when a full URI is not one the SDKs accept (an https URL, or http to a loopback or
    /// ECS/EKS agent address), since credentials must not be fetched from an arbitrary host.
    public static func fromEnvironment(
        _ environment: [String: String], httpClient: HTTPClient, logger: Logger, refreshMargin: TimeInterval = 300
    ) throws(AWSCredentialError) -> ContainerCredentialProvider? {
        let endpoint: String
        if let relative = environment["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"], !relative.isEmpty {
            endpoint = "http://\(ecsAgentAddress)" + (relative.hasPrefix("/") ? relative : "/" + relative)
        } else if let full = environment["AWS_CONTAINER_CREDENTIALS_FULL_URI"], !full.isEmpty {
            guard isAllowedFullURI(full) else {
                throw AWSCredentialError(
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI must be https, or http to a loopback or container agent address")
            }
            endpoint = full
        } else {
            return nil
        }
        return ContainerCredentialProvider(
            endpoint: endpoint,
            authorizationToken: environment["AWS_CONTAINER_AUTHORIZATION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 },
            authorizationTokenFile: environment["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"].flatMap { $0.isEmpty ? nil : $0 },
            httpClient: httpClient, logger: logger, refreshMargin: refreshMargin)
    }

    static func isAllowedFullURI(_ text: String) -> Bool {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), let host = url.host?.lowercased() else {
            return false
        }
        if scheme == "https" { return true }
        guard scheme == "http" else { return false }
        let bare = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        return bare == "localhost" || bare == "::1" || bare.hasPrefix("127.")
            || bare == ecsAgentAddress || bare == "169.254.170.23" || bare == "fd00:ec2::23"
    }

    public func credentials() async throws(AWSCredentialError) -> AWSCredentials {
        try await cache.get { () async throws(AWSCredentialError) -> AWSCredentials in try await self.fetch() }
    }

    private func fetch() async throws(AWSCredentialError) -> AWSCredentials {
        var request = HTTPClientRequest(url: endpoint)
        request.method = .GET
        if let token = try authorization() { request.headers.add(name: "Authorization", value: token) }
        let body: ByteBuffer
        do {
            let response = try await httpClient.execute(request, timeout: timeout)
            body = try await response.body.collect(upTo: 64 << 10)
            guard response.status == .ok else {
                throw AWSCredentialError("\(endpoint) answered HTTP \(response.status.code)")
            }
        } catch let error as AWSCredentialError {
            throw error
        } catch {
            throw AWSCredentialError("cannot reach \(endpoint): \(error)")
        }
        return try Self.parse(body, source: endpoint)
    }

    private func authorization() throws(AWSCredentialError) -> String? {
        if let path = authorizationTokenFile {
            guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
                throw AWSCredentialError("cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE \(path)")
            }
            let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !token.isEmpty else { throw AWSCredentialError("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE \(path) is empty") }
            return token
        }
        return authorizationToken
    }

    /// The ECS format: `AccessKeyId`, `SecretAccessKey`, `Token`, `Expiration` (ISO 8601).
    static func parse(_ body: ByteBuffer, source: String) throws(AWSCredentialError) -> AWSCredentials {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any],
            let id = object["AccessKeyId"] as? String, !id.isEmpty,
            let secret = object["SecretAccessKey"] as? String, !secret.isEmpty
        else {
            throw AWSCredentialError("\(source) did not return credentials in the container format")
        }
        var expiration: Date?
        if let text = object["Expiration"] as? String {
            guard let date = parseTimestamp(text) else {
                throw AWSCredentialError("\(source) returned an unreadable Expiration")
            }
            expiration = date
        }
        return AWSCredentials(
            accessKeyId: id, secretAccessKey: secret, sessionToken: object["Token"] as? String, expiration: expiration)
    }

    static func parseTimestamp(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text)
    }
}

/// Caches temporary credentials and fetches new ones shortly before they expire, one fetch at a
/// time however many requests are waiting.
actor RefreshingCredentials {
    private let source: String
    private let refreshMargin: TimeInterval
    private let logger: Logger
    private let now: @Sendable () -> Date
    private var cached: AWSCredentials?
    private var inFlight: (id: Int, task: Task<Result<AWSCredentials, AWSCredentialError>, Never>)?
    private var nextId = 0
    /// After a failed refresh, the still-valid credentials serve until then without asking again,
    /// so an endpoint outage costs one request per interval, not one per KMS call.
    private var quietUntil: Date?
    private static let retryInterval: TimeInterval = 10

    init(source: String, refreshMargin: TimeInterval, logger: Logger, now: @escaping @Sendable () -> Date) {
        self.source = source
        self.refreshMargin = refreshMargin
        self.logger = logger
        self.now = now
    }

    func get(
        _ fetch: @escaping @Sendable () async throws(AWSCredentialError) -> AWSCredentials
    ) async throws(AWSCredentialError) -> AWSCredentials {
        let time = now()
        if let cached, !needsRefresh(cached, at: time) { return cached }
        if let cached, let quietUntil, time < quietUntil, let expiration = cached.expiration, time < expiration {
            return cached
        }

        let flight: (id: Int, task: Task<Result<AWSCredentials, AWSCredentialError>, Never>)
        if let inFlight {
            flight = inFlight
        } else {
            nextId += 1
            flight = (nextId, Task { () -> Result<AWSCredentials, AWSCredentialError> in
                do throws(AWSCredentialError) { return .success(try await fetch()) } catch { return .failure(error) }
            })
            inFlight = flight
        }
        let result = await flight.task.value
        if inFlight?.id == flight.id { inFlight = nil }

        switch result {
        case .success(let fresh):
            if cached == nil || cached?.accessKeyId != fresh.accessKeyId || cached?.expiration != fresh.expiration {
                logger.debug(
                    "fetched AWS credentials",
                    metadata: ["source": "\(source)", "expires": "\(fresh.expiration.map { "\($0)" } ?? "never")"])
            }
            cached = fresh
            quietUntil = nil
            return fresh
        case .failure(let error):
            // Still-valid credentials beat none: the endpoint may be back before they lapse.
            if let cached, let expiration = cached.expiration, expiration > now() {
                if quietUntil == nil {
                    logger.warning(
                        "could not refresh AWS credentials; using the current ones until they expire",
                        metadata: ["source": "\(source)", "expires": "\(expiration)", "error": "\(error.message)"])
                }
                quietUntil = now().addingTimeInterval(Self.retryInterval)
                return cached
            }
            throw error
        }
    }

    private func needsRefresh(_ credentials: AWSCredentials, at time: Date) -> Bool {
        guard let expiration = credentials.expiration else { return false }
        return time >= expiration.addingTimeInterval(-refreshMargin)
    }
}
