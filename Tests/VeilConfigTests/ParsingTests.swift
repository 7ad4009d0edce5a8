import Foundation
import Testing

@testable import VeilConfig

let fullExample = """
    identity: finance-consumer
    listen: 127.0.0.1:7000
    upstream: { bootstrap: [b-1.msk.example:9094, "b-2.msk.example:9094"], tls: true }
    broker_ports: { first: 7100, count: 8 }
    advertised_host: veil.local
    max_frame_bytes: 1048576
    kms:
      finance: { type: local, keyring: /run/secrets/finance.keyring }
      sales: { type: local, keyring: keys/sales.keyring }
    grants:
      encrypt: [finance/department-key]
      decrypt: [finance/department-key, sales/department-key]
    dek: { max_encryptions: 5000, max_age_seconds: 60, decrypt_cache_entries: 16 }
    topics:
      - match: department-events
        encrypt:
          key_from: { json: department }
          keys: { finance: finance/department-key, sales: sales/department-key }
          default_key: finance/department-key
          on_unmatched: plaintext
          bind_topic: false
          fields: [data]
        on_denied: redact
        redact_placeholder: "{}"
        require_encrypted: false
      - match: { prefix: "audit-" }
        encrypt: { key_from: { fixed: sales/department-key } }
      - match: { regex: "metrics\\\\.[a-z]+" }
        on_denied: ciphertext
    """

@Suite struct ParsingTests {
    @Test func parsesEveryField() throws {
        let config = try VeilConfiguration.parse(yaml: fullExample)
        #expect(config.identity == "finance-consumer")
        #expect(config.listen == HostPort(host: "127.0.0.1", port: 7000))
        #expect(config.upstream.bootstrap.map(\.description) == ["b-1.msk.example:9094", "b-2.msk.example:9094"])
        #expect(config.upstream.tls == UpstreamTLS())
        #expect(config.brokerPorts == BrokerPortRange(first: 7100, count: 8))
        #expect(config.advertisedHost == "veil.local")
        #expect(config.maxFrameBytes == 1_048_576)
        #expect(config.kms["finance"]?.backend == .local(keyring: "/run/secrets/finance.keyring"))
        #expect(config.kms["sales"]?.backend == .local(keyring: "keys/sales.keyring"))
        let finance = KeyReference(kms: "finance", keyId: "department-key")!
        let sales = KeyReference(kms: "sales", keyId: "department-key")!
        #expect(config.grants.encrypt == [finance])
        #expect(config.grants.decrypt == [finance, sales])
        #expect(config.grants.allowsDecryption(with: sales) && !config.grants.allowsEncryption(with: sales))
        #expect(config.dek == DEKPolicy(maxEncryptions: 5000, maxAgeSeconds: 60, decryptCacheEntries: 16))
        #expect(config.topics.count == 3)

        let events = config.topics[0]
        #expect(events.match.description == "department-events")
        #expect(events.onDenied == .redact)
        #expect(events.redactPlaceholder == "{}")
        #expect(!events.requireEncrypted)
        let encrypt = try #require(events.encrypt)
        #expect(encrypt.keySource == .json(field: "department"))
        #expect(encrypt.keys == ["finance": finance, "sales": sales])
        #expect(encrypt.defaultKey == finance)
        #expect(encrypt.onUnmatched == .plaintext)
        #expect(!encrypt.bindTopic)
        #expect(encrypt.fields == ["data"])

        #expect(config.topics[1].match.description == "prefix audit-")
        #expect(config.topics[1].encrypt?.keySource == .fixed(sales))
        #expect(config.topics[2].match.description == #"regex metrics\.[a-z]+"#)
        #expect(config.topics[2].onDenied == .ciphertext)
    }

    @Test func appliesDefaults() throws {
        let config = try VeilConfiguration.parse(
            yaml: """
                identity: app
                upstream: { bootstrap: [broker:9092] }
                topics:
                  - match: t
                    encrypt: { key_from: { record_key: true }, keys: { a: k/1 } }
                kms: { k: { type: local, keyring: k.keyring } }
                """)
        #expect(config.listen == HostPort(host: "127.0.0.1", port: 9092))
        #expect(config.upstream.tls == nil)
        #expect(config.brokerPorts == BrokerPortRange(first: 9093, count: 64))
        #expect(config.advertisedHost == "127.0.0.1")
        #expect(config.maxFrameBytes == 100 * 1024 * 1024)
        #expect(config.grants == Grants())
        #expect(config.dek == DEKPolicy(maxEncryptions: 1_000_000, maxAgeSeconds: 3600, decryptCacheEntries: 1024))
        let topic = config.topics[0]
        #expect(topic.onDenied == .drop)
        #expect(topic.redactPlaceholder == #"{"redacted":true}"#)
        #expect(topic.requireEncrypted)
        #expect(topic.encrypt?.keySource == .recordKey)
        #expect(topic.encrypt?.onUnmatched == .reject)
        #expect(topic.encrypt?.bindTopic == true)
        #expect(topic.encrypt?.fields == nil)
        #expect(topic.encrypt?.defaultKey == nil)
    }

    @Test func upstreamShorthandsAndIPv6() throws {
        let config = try VeilConfiguration.parse(
            yaml: """
                identity: app
                listen: "[::1]:9000"
                upstream: "[2001:db8::1]:9094"
                """)
        #expect(config.listen == HostPort(host: "::1", port: 9000))
        #expect(config.listen.description == "[::1]:9000")
        #expect(config.upstream.bootstrap == [HostPort(host: "2001:db8::1", port: 9094)])
        #expect(config.advertisedHost == "::1")
        let single = try VeilConfiguration.parse(yaml: "identity: a\nupstream: { bootstrap: broker:1 }")
        #expect(single.upstream.bootstrap == [HostPort(host: "broker", port: 1)])
    }

    @Test func wildcardListenAdvertisesLoopback() throws {
        let config = try VeilConfiguration.parse(yaml: "identity: a\nlisten: 0.0.0.0:9092\nupstream: b:9092")
        #expect(config.advertisedHost == "127.0.0.1")
    }

    @Test func overridingReplacesListenAndUpstreamAndMovesDefaultedPorts() throws {
        let config = try VeilConfiguration.parse(yaml: "identity: a\nupstream: { bootstrap: [b:9092], tls: true }")
        let overridden = try config.overriding(
            listen: HostPort(host: "127.0.0.2", port: 8000), upstream: [HostPort(host: "c", port: 1)])
        #expect(overridden.listen == HostPort(host: "127.0.0.2", port: 8000))
        #expect(overridden.upstream == UpstreamConfiguration(bootstrap: [HostPort(host: "c", port: 1)], tls: UpstreamTLS()))
        #expect(overridden.brokerPorts == BrokerPortRange(first: 8001, count: 64))
        #expect(overridden.advertisedHost == "127.0.0.2")
        #expect(overridden.identity == "a")
        let unchanged = try config.overriding()
        #expect(unchanged.listen == config.listen && unchanged.upstream == config.upstream)
    }

    @Test func overridingKeepsExplicitSettingsAndRevalidates() throws {
        let config = try VeilConfiguration.parse(
            yaml: "identity: a\nupstream: b:1\nbroker_ports: { first: 7100, count: 10 }\nadvertised_host: h")
        let moved = try config.overriding(listen: HostPort(host: "0.0.0.0", port: 7000))
        #expect(moved.brokerPorts == BrokerPortRange(first: 7100, count: 10))
        #expect(moved.advertisedHost == "h")
        let error = #expect(throws: ConfigurationError.self) {
            try config.overriding(listen: HostPort(host: "127.0.0.1", port: 7105))
        }
        #expect(error?.description.contains("includes the listen port 7105") == true)
        let clash = #expect(throws: ConfigurationError.self) {
            try config.overriding(upstream: [HostPort(host: "localhost", port: 7101)])
        }
        #expect(clash?.description.contains("upstream broker localhost:7101") == true)
        #expect(throws: ConfigurationError.self) { try config.overriding(upstream: []) }
    }

    @Test func programmaticInitAppliesCrossChecks() throws {
        let upstream = UpstreamConfiguration(bootstrap: [HostPort(host: "b", port: 9092)])
        let reference = KeyReference(kms: "missing", keyId: "k")!
        let error = #expect(throws: ConfigurationError.self) {
            try VeilConfiguration(identity: "a", upstream: upstream, grants: Grants(decrypt: [reference]))
        }
        #expect(error?.description == "grants.decrypt: key missing/k names KMS 'missing', which is not configured")
        let topic = TopicPolicy(match: .exact("t"), encrypt: EncryptionPolicy(keySource: .fixed(reference)))
        #expect(throws: ConfigurationError.self) {
            try VeilConfiguration(identity: "a", upstream: upstream, topics: [topic])
        }
        let ok = try VeilConfiguration(
            identity: "a", upstream: upstream,
            kms: [KMSConfiguration(name: "missing", backend: .local(keyring: "x"))], topics: [topic])
        #expect(ok.policy(forTopic: "t") != nil)
    }

    /// The shipped example configs must stay valid and mean what the scenario needs.
    @Test func shippedConfigsParse() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("config")
        func load(_ name: String) throws -> VeilConfiguration {
            try VeilConfiguration.parse(yaml: String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8))
        }
        let finance = KeyReference(kms: "finance", keyId: "department-key")!
        let sales = KeyReference(kms: "sales", keyId: "department-key")!

        let passthrough = try load("passthrough.yaml")
        #expect(passthrough.topics.isEmpty)
        #expect(passthrough.listen.description == "127.0.0.1:9092")
        #expect(passthrough.upstream.bootstrap.map(\.description) == ["127.0.0.1:9093"])

        let owner = try load("owner.yaml")
        #expect(owner.grants.encrypt == [finance, sales] && owner.grants.decrypt.isEmpty)
        let policy = try #require(owner.policy(forTopic: "department-events")?.encrypt)
        #expect(policy.keySource == .json(field: "department"))
        #expect(policy.keys == ["finance": finance, "sales": sales])

        let financeConfig = try load("finance.yaml")
        #expect(financeConfig.grants.decrypt == [finance] && financeConfig.grants.encrypt.isEmpty)
        #expect(financeConfig.kms["finance"]?.backend == .local(keyring: "keys/finance.keyring"))
        #expect(financeConfig.policy(forTopic: "department-events")?.requireEncrypted == true)

        let salesConfig = try load("sales.yaml")
        #expect(salesConfig.grants.decrypt == [sales])

        // One host runs all three sidecars in the demo: their ports must not collide.
        var used: Set<Int> = []
        for config in [owner, financeConfig, salesConfig] {
            let ports = Set([config.listen.port]).union(config.brokerPorts.ports)
            #expect(used.isDisjoint(with: ports))
            used.formUnion(ports)
        }
    }

    /// Federated keys: AWS KMS in two regions (one through a custom endpoint and profile) beside a local keyring.
    @Test func parsesAWSKMSBackends() throws {
        let config = try VeilConfiguration.parse(yaml: """
            identity: finance-consumer
            upstream: { bootstrap: [broker:9092] }
            kms:
              finance: { type: aws-kms, region: us-east-1 }
              sales: { type: aws-kms, region: eu-west-1, endpoint: "http://127.0.0.1:5000", profile: sales }
              dev: { type: local, keyring: dev.keyring }
            grants:
              decrypt: ["finance/arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", sales/alias/department-key]
            """)
        #expect(config.kms["finance"]?.backend == .awsKMS(region: "us-east-1", endpoint: nil, profile: nil))
        #expect(config.kms["sales"]?.backend == .awsKMS(region: "eu-west-1", endpoint: "http://127.0.0.1:5000", profile: "sales"))
        #expect(config.kms["dev"]?.backend == .local(keyring: "dev.keyring"))
        #expect(Set(config.grants.decrypt.map(\.keyId)) == [
            "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", "alias/department-key",
        ])
    }

    @Test func keyReferenceAndHostPortParsing() throws {
        let arn = try KeyReference(parsing: "aws/arn:aws:kms:us-east-1:1:key/abcd")
        #expect(arn.kms == "aws" && arn.keyId == "arn:aws:kms:us-east-1:1:key/abcd")
        #expect(arn.description == "aws/arn:aws:kms:us-east-1:1:key/abcd")
        for bad in ["finance", "/k", "finance/", "a b/c"] {
            #expect(throws: ConfigurationError.self, "\(bad)") { try KeyReference(parsing: bad) }
        }
        #expect(try HostPort(parsing: "localhost:0").port == 0)
        for bad in ["host", "host:", ":9092", "host:65536", "host:-1", "::1:9092", "[::1:9092", "host:90x", "[]:1"] {
            #expect(throws: ConfigurationError.self, "\(bad)") { try HostPort(parsing: bad) }
        }
    }
}
