import Testing

@testable import VeilConfig

/// `admin:`, `logging:` and `shutdown:`, and `${NAME}` substitution from the environment.
@Suite struct OperationsConfigTests {
    static let base = "identity: app\nupstream: { bootstrap: [broker:9092] }\n"

    @Test func defaults() throws {
        let ops = try VeilConfiguration.parse(yaml: Self.base).operations
        #expect(ops.adminListen == HostPort(host: "127.0.0.1", port: 9644))
        #expect(!ops.adminListenConfigured)
        #expect(ops.logLevel == "info" && ops.logFormat == .text)
        #expect(ops.shutdownDeadlineSeconds == 25)
    }

    @Test func everyField() throws {
        let ops = try VeilConfiguration.parse(yaml: Self.base + """
            admin: { listen: "0.0.0.0:9900" }
            logging: { level: debug, format: json }
            shutdown: { deadline_seconds: 5 }
            """).operations
        #expect(ops.adminListen == HostPort(host: "0.0.0.0", port: 9900) && ops.adminListenConfigured)
        #expect(ops.logLevel == "debug" && ops.logFormat == .json)
        #expect(ops.shutdownDeadlineSeconds == 5)
        #expect(try VeilConfiguration.parse(yaml: Self.base + "admin: { enabled: false }").operations.adminListen == nil)
    }

    @Test(arguments: [
        ("admin: { port: 9 }", "admin.port: unknown key 'port' (expected one of listen, enabled) (line 3)"),
        ("admin: { listen: 9644 }", "admin.listen: expected HOST:PORT, got '9644' (line 3)"),
        ("admin: { listen: \"127.0.0.1:1\", enabled: false }", "admin.enabled: admin.listen is set but enabled is false: remove one of them (line 3)"),
        ("admin: { enabled: no-thanks }", "admin.enabled: expected true or false, got 'no-thanks' (line 3)"),
        ("logging: { level: verbose }", "logging.level: expected one of trace, debug, info, notice, warning, error, critical, got 'verbose' (line 3)"),
        ("logging: { format: xml }", "logging.format: expected one of text, json, got 'xml' (line 3)"),
        ("logging: json", "logging: expected a mapping, got a scalar (line 3)"),
        ("shutdown: { deadline_seconds: -1 }", "shutdown.deadline_seconds: must be between 0 and 3600, got -1 (line 3)"),
        ("shutdown: { deadline: 5 }", "shutdown.deadline: unknown key 'deadline' (expected one of deadline_seconds) (line 3)"),
        ("advertised_host: ${UNSET_FOR_TEST}", "advertised_host: environment variable UNSET_FOR_TEST is not set: set it (in ECS, the task definition's environment or secrets) or replace ${UNSET_FOR_TEST} (line 3)"),
        ("advertised_host: \"${1X}\"", "advertised_host: '${1X}' is not an environment variable name (letters, digits and _, not starting with a digit) (line 3)"),
        ("advertised_host: \"a${HOST\"", "advertised_host: '${' without a closing '}': write ${NAME}, or $${ for a literal ${ (line 3)"),
    ])
    func errors(yaml: String, expected: String) {
        do {
            _ = try VeilConfiguration.parse(yaml: Self.base + yaml, environment: ["HOST": "h"])
            Issue.record("expected an error for \(yaml)")
        } catch {
            #expect(error.description == expected)
        }
    }

    @Test func substitutesStringValuesFromTheEnvironment() throws {
        let config = try VeilConfiguration.parse(
            yaml: """
                identity: ${APP}-consumer
                upstream: { bootstrap: ["${BROKER}:9094"] }
                advertised_host: "$${literal}"
                # ${NOT_SET} in a comment is ignored
                kms: { finance: { type: aws-kms, region: "${AWS_REGION}" } }
                """,
            environment: ["APP": "finance", "BROKER": "b-1.msk.example", "AWS_REGION": "eu-west-1"])
        #expect(config.identity == "finance-consumer")
        #expect(config.upstream.bootstrap == [HostPort(host: "b-1.msk.example", port: 9094)])
        #expect(config.advertisedHost == "${literal}")
    }
}
