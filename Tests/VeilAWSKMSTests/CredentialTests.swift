import AsyncHTTPClient
import Foundation
import Logging
import NIOConcurrencyHelpers
import Testing

import VeilDemo

@testable import VeilAWSKMS

/// A private temporary directory for shared-config files, removed afterwards.
struct TemporaryDirectory: ~Copyable {
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("veil-awskms-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func write(_ name: String, _ text: String) throws -> String {
        let file = "\(path)/\(name)"
        try FileManager.default.createDirectory(
            atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }
}

/// A clock tests move by hand.
final class ManualClock: Sendable {
    private let box: NIOLockedValueBox<Date>
    init(_ start: Date = Date()) { box = NIOLockedValueBox(start) }
    var now: Date { box.withLockedValue { $0 } }
    func advance(_ seconds: TimeInterval) { box.withLockedValue { $0 = $0.addingTimeInterval(seconds) } }
}

/// The JSON the ECS agent serves at its credentials URI.
func ecsCredentialsJSON(id: String, secret: String, token: String, expiration: Date) -> String {
    let formatter = ISO8601DateFormatter()
    return """
        {"RoleArn":"arn:aws:iam::111111111111:role/veil-task","AccessKeyId":"\(id)","SecretAccessKey":"\(secret)",\
        "Token":"\(token)","Expiration":"\(formatter.string(from: expiration))"}
        """
}

@Suite struct CredentialTests {
    let logs = CapturedLogs()

    // MARK: Environment

    @Test func environmentVariables() throws {
        let full = try #require(try EnvironmentCredentials.load(from: [
            "AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "env-secret", "AWS_SESSION_TOKEN": "env-token",
        ]))
        #expect(full.accessKeyId == "AKIAENV" && full.sessionToken == "env-token" && full.expiration == nil)
        #expect(try EnvironmentCredentials.load(from: ["HOME": "/root"]) == nil)
        #expect(throws: AWSCredentialError("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not")) {
            try EnvironmentCredentials.load(from: ["AWS_ACCESS_KEY_ID": "AKIAENV"])
        }
    }

    // MARK: Shared files

    @Test func profilesFromBothFiles() throws {
        let directory = try TemporaryDirectory()
        let credentials = try directory.write("credentials", """
            # comment
            [default]
            aws_access_key_id = AKIADEFAULT
            aws_secret_access_key = default-secret

            [sales]
            aws_access_key_id=AKIASALES
            aws_secret_access_key=sales-secret
            """)
        let config = try directory.write("config", """
            [default]
            region = us-east-1
            s3 =
              max_concurrent_requests = 20
            [profile sales]
            aws_session_token = sales-token
            aws_access_key_id = AKIAIGNORED
            [profile temp]
            aws_access_key_id = AKIATEMP
            aws_secret_access_key = temp-secret
            aws_session_token = temp-token
            [profile assumed]
            role_arn = arn:aws:iam::111111111111:role/x
            source_profile = default
            [profile regiononly]
            region = eu-west-1
            """)
        func load(_ name: String, required: Bool = true) throws -> AWSCredentials? {
            try ProfileCredentials.load(profile: name, credentialsFile: credentials, configFile: config, required: required)
        }
        #expect(try load("default")?.accessKeyId == "AKIADEFAULT")
        // The credentials file wins over the config file; the token comes from the config file.
        let sales = try #require(try load("sales"))
        #expect(sales.accessKeyId == "AKIASALES" && sales.sessionToken == "sales-token")
        #expect(try load("temp")?.sessionToken == "temp-token")
        #expect(try load("missing") == nil)
        #expect(try load("regiononly", required: false) == nil)
        #expect(throws: AWSCredentialError.self) { try load("regiononly") }
        #expect {
            try load("assumed")
        } throws: { error in
            (error as? AWSCredentialError)?.message.contains("role_arn, which Veil does not support") == true
        }
    }

    @Test func sharedFileLocations() {
        let defaults = ProfileCredentials.paths(environment: ["HOME": "/home/app"])
        #expect(defaults.credentials == "/home/app/.aws/credentials" && defaults.config == "/home/app/.aws/config")
        let custom = ProfileCredentials.paths(environment: [
            "HOME": "/home/app", "AWS_SHARED_CREDENTIALS_FILE": "~/creds", "AWS_CONFIG_FILE": "/etc/aws/config",
        ])
        #expect(custom.credentials == "/home/app/creds" && custom.config == "/etc/aws/config")
    }

    // MARK: Chain order

    @Test func chainOrder() async throws {
        let directory = try TemporaryDirectory()
        _ = try directory.write(".aws/credentials", """
            [default]
            aws_access_key_id = AKIADEFAULT
            aws_secret_access_key = default-secret
            [sales]
            aws_access_key_id = AKIASALES
            aws_secret_access_key = sales-secret
            """)
        let home = ["HOME": directory.path]
        let env = ["AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "env-secret"]
        func resolve(_ environment: [String: String], profile: String? = nil) async throws -> (String, String?) {
            let chain = AWSCredentialChain(profile: profile, environment: environment, httpClient: .shared, logger: logs.logger())
            let credentials = try await chain.credentials()
            return (credentials.accessKeyId, chain.source)
        }
        // Environment first, then AWS_PROFILE / default profile.
        #expect(try await resolve(home.merging(env) { $1 }.merging(["AWS_PROFILE": "sales"]) { $1 }) == ("AKIAENV", "environment variables"))
        #expect(try await resolve(home.merging(["AWS_PROFILE": "sales"]) { $1 }) == ("AKIASALES", "profile 'sales'"))
        #expect(try await resolve(home) == ("AKIADEFAULT", "profile 'default'"))
        // A profile named in Veil's configuration is used even when the environment has keys.
        #expect(try await resolve(home.merging(env) { $1 }, profile: "sales") == ("AKIASALES", "profile 'sales'"))
        // Named profiles must exist.
        await #expect(throws: AWSCredentialError.self) { try await resolve(home.merging(["AWS_PROFILE": "nope"]) { $1 }) }
        await #expect(throws: AWSCredentialError.self) { try await resolve(home, profile: "nope") }
    }

    @Test func nothingConfigured() async throws {
        let directory = try TemporaryDirectory()
        let chain = AWSCredentialChain(environment: ["HOME": directory.path], httpClient: .shared, logger: logs.logger())
        await #expect {
            try await chain.credentials()
        } throws: { error in
            let message = "\(error)"
            return message.contains("AWS_ACCESS_KEY_ID") && message.contains("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        }
    }

    // MARK: Container endpoint

    @Test func containerEndpointFromEnvironment() throws {
        // Never contacted: only the URL it would use is checked.
        let relative = try #require(try ContainerCredentialProvider.fromEnvironment(
            ["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/abc-123"], httpClient: .shared, logger: logs.logger()))
        #expect(relative.endpoint == "http://169.254.170.2/v2/credentials/abc-123")
        #expect(try ContainerCredentialProvider.fromEnvironment([:], httpClient: .shared, logger: logs.logger()) == nil)

        for allowed in ["http://127.0.0.1:8080/creds", "http://localhost/creds", "http://[::1]:9/x", "https://creds.example.com/x",
                        "http://169.254.170.23/v1/credentials", "http://[fd00:ec2::23]/v1/credentials"] {
            #expect(ContainerCredentialProvider.isAllowedFullURI(allowed), "\(allowed)")
        }
        for refused in ["http://10.0.0.5/creds", "http://example.com/creds", "ftp://127.0.0.1/x", "not a url"] {
            #expect(!ContainerCredentialProvider.isAllowedFullURI(refused), "\(refused)")
            #expect(throws: AWSCredentialError.self) {
                try ContainerCredentialProvider.fromEnvironment(["AWS_CONTAINER_CREDENTIALS_FULL_URI": refused], httpClient: .shared, logger: logs.logger())
            }
        }
    }

    /// The local server stands in for the ECS agent: it serves task-role credentials in the
    /// agent's JSON format to callers presenting the authorization token.
    @Test func containerCredentialsWithTokenFile() async throws {
        let directory = try TemporaryDirectory()
        let tokenFile = try directory.write("token", "first-token\n")
        let ecsAgent = try await LocalHTTPServer { request in
            guard request.uri == "/v1/credentials", let token = request.headers.first(name: "Authorization") else {
                return .init(status: .unauthorized)
            }
            let n = token == "first-token" ? 1 : 2
            return .json(ecsCredentialsJSON(id: "ASIAECS\(n)", secret: "ecs-secret-\(n)", token: "ecs-session-\(n)", expiration: Date().addingTimeInterval(3600)))
        }
        defer { Task { try? await ecsAgent.shutdown() } }

        let chain = AWSCredentialChain(
            environment: [
                "HOME": directory.path,
                "AWS_CONTAINER_CREDENTIALS_FULL_URI": "\(ecsAgent.url)/v1/credentials",
                "AWS_CONTAINER_AUTHORIZATION_TOKEN": "ignored-when-a-file-is-given",
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": tokenFile,
            ], httpClient: .shared, logger: logs.logger())
        let credentials = try await chain.credentials()
        #expect(credentials.accessKeyId == "ASIAECS1" && credentials.sessionToken == "ecs-session-1")
        #expect(credentials.expiration != nil)
        #expect(chain.source == "\(ecsAgent.url)/v1/credentials")
        #expect(ecsAgent.requests.map { $0.headers.first(name: "Authorization") } == ["first-token"])
        // Valid credentials are served from the cache.
        _ = try await chain.credentials()
        #expect(ecsAgent.requests.count == 1)
        #expect(!logs.allText.contains("ecs-secret") && !logs.allText.contains("ecs-session") && !logs.allText.contains("first-token"))
    }

    @Test func containerEndpointErrors() async throws {
        let agent = try await LocalHTTPServer { request in
            request.uri == "/broken" ? .json("{\"nope\": 1}") : .init(status: .forbidden, body: Array("denied".utf8))
        }
        defer { Task { try? await agent.shutdown() } }
        let forbidden = ContainerCredentialProvider(endpoint: "\(agent.url)/creds", authorizationToken: "t", httpClient: .shared, logger: logs.logger())
        await #expect(throws: AWSCredentialError("\(agent.url)/creds answered HTTP 403")) { try await forbidden.credentials() }
        let malformed = ContainerCredentialProvider(endpoint: "\(agent.url)/broken", httpClient: .shared, logger: logs.logger())
        await #expect(throws: AWSCredentialError("\(agent.url)/broken did not return credentials in the container format")) {
            try await malformed.credentials()
        }
        let closedPort = try freeLoopbackPort()
        let unreachable = ContainerCredentialProvider(
            endpoint: "http://127.0.0.1:\(closedPort)/creds", httpClient: .shared, logger: logs.logger(), timeout: .seconds(2))
        await #expect {
            try await unreachable.credentials()
        } throws: { error in
            (error as? AWSCredentialError)?.message.hasPrefix("cannot reach http://127.0.0.1:\(closedPort)/creds") == true
        }
    }

    /// Temporary credentials are fetched again 5 minutes before they expire; a failed refresh
    /// keeps the still-valid ones; expired ones are never served.
    @Test func refreshBeforeExpiry() async throws {
        let clock = ManualClock()
        let issued = NIOLockedValueBox(0)
        let failing = NIOLockedValueBox(false)
        let ecsAgent = try await LocalHTTPServer { _ in
            if failing.withLockedValue({ $0 }) { return .init(status: .serviceUnavailable) }
            let n = issued.withLockedValue { $0 += 1; return $0 }
            return .json(ecsCredentialsJSON(id: "ASIA\(n)", secret: "s\(n)", token: "t\(n)", expiration: clock.now.addingTimeInterval(15 * 60)))
        }
        defer { Task { try? await ecsAgent.shutdown() } }
        let provider = ContainerCredentialProvider(
            endpoint: "\(ecsAgent.url)/creds", httpClient: .shared, logger: logs.logger(), refreshMargin: 300, now: { clock.now })

        #expect(try await provider.credentials().accessKeyId == "ASIA1")
        clock.advance(9 * 60)  // 6 minutes left: outside the margin
        #expect(try await provider.credentials().accessKeyId == "ASIA1")
        clock.advance(2 * 60)  // 4 minutes left: inside the margin
        #expect(try await provider.credentials().accessKeyId == "ASIA2")
        #expect(ecsAgent.requests.count == 2)

        // The agent fails during the margin: the current credentials keep serving, with one warning.
        clock.advance(11 * 60)
        failing.withLockedValue { $0 = true }
        #expect(try await provider.credentials().accessKeyId == "ASIA2")
        #expect(try await provider.credentials().accessKeyId == "ASIA2")
        #expect(logs.records.filter { $0.message.contains("could not refresh AWS credentials") }.count == 1)
        // Past expiry there is nothing valid to serve.
        clock.advance(5 * 60)
        await #expect(throws: AWSCredentialError.self) { try await provider.credentials() }
        // And the agent coming back ends the episode.
        failing.withLockedValue { $0 = false }
        #expect(try await provider.credentials().accessKeyId == "ASIA3")
    }
}
