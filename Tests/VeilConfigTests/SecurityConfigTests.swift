import Testing
import VeilSASL

@testable import VeilConfig

/// `upstream.tls`, `upstream.sasl`, `listener.tls`, `gateway` and the users file.
@Suite struct SecurityConfigTests {
    @Test func upstreamTLSAndSASL() throws {
        let config = try VeilConfiguration.parse(yaml: """
            identity: app
            upstream:
              bootstrap: [b-1.msk.example:9096]
              tls: { ca_file: /ca.pem, cert_file: /c.pem, key_file: /k.pem }
              sasl: { mechanism: SCRAM-SHA-512, username: veil, password_env: VEIL_PW }
            """)
        #expect(config.upstream.tls == UpstreamTLS(caFile: "/ca.pem", verifyHostname: true, certFile: "/c.pem", keyFile: "/k.pem"))
        #expect(config.upstream.sasl == UpstreamSASL(mechanism: .scramSHA512, username: "veil", password: .environment("VEIL_PW")))
        #expect(config.upstream.sasl?.summary == "SCRAM-SHA-512 as user veil, password from environment variable VEIL_PW")
        let overridden = try config.overriding(upstream: [HostPort(host: "x", port: 1)])
        #expect(overridden.upstream.tls == config.upstream.tls && overridden.upstream.sasl == config.upstream.sasl)

        let iam = try VeilConfiguration.parse(yaml: """
            identity: app
            upstream: { bootstrap: [b:9098], tls: true, sasl: { mechanism: AWS_MSK_IAM, region: eu-west-1 } }
            """)
        #expect(iam.upstream.sasl == UpstreamSASL(mechanism: .awsMSKIAM, region: "eu-west-1"))
    }

    @Test(arguments: [
        ("tls: { cert_file: /c.pem }", "upstream.tls: cert_file and key_file go together: give both or neither"),
        ("tls: { ca: /x }", "upstream.tls.ca: unknown key 'ca' (expected one of ca_file, verify_hostname, cert_file, key_file)"),
        ("sasl: { mechanism: GSSAPI, username: u, password_env: P }",
         "upstream.sasl.mechanism: expected one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, AWS_MSK_IAM, got 'GSSAPI'"),
        ("sasl: { mechanism: PLAIN, username: u }", "upstream.sasl: PLAIN needs password_env or password_file (passwords are never written in the file)"),
        ("sasl: { mechanism: PLAIN, username: u, password_env: A, password_file: B }", "upstream.sasl: give password_env or password_file, not both"),
        ("sasl: { mechanism: SCRAM-SHA-256, password_env: A }", "upstream.sasl.username: required for SCRAM-SHA-256"),
        ("sasl: { mechanism: PLAIN, username: u, password: hunter2 }",
         "upstream.sasl.password: unknown key 'password' (expected one of mechanism, username, password_env, password_file, region)"),
        ("sasl: { mechanism: AWS_MSK_IAM, username: u }",
         "upstream.sasl: AWS_MSK_IAM signs with AWS credentials (environment, profile or ECS task role); remove username and password_env/password_file"),
    ])
    func upstreamErrors(_ fragment: String, _ expected: String) {
        do {
            _ = try VeilConfiguration.parse(yaml: "identity: a\nupstream:\n  bootstrap: [b:1]\n  \(fragment)\n")
            Issue.record("no error for \(fragment)")
        } catch {
            #expect(error.description.hasPrefix(expected), "\(error)")
        }
    }

    static let gatewayYAML = """
        identity: gw
        upstream: b:9092
        kms: { finance: { type: local, keyring: f.keyring }, sales: { type: local, keyring: s.keyring } }
        listener:
          tls: { cert_file: /l.crt, key_file: /l.key, client_ca_file: /apps.pem }
        gateway:
          users_file: /users.yaml
          identities:
            finance: { grants: { decrypt: [finance/k] }, tls_subject: "CN=finance-app,O=Apps" }
            sales: { grants: { decrypt: [sales/k] } }
        """

    @Test func gateway() throws {
        let config = try VeilConfiguration.parse(yaml: Self.gatewayYAML)
        let gateway = try #require(config.gateway)
        #expect(config.listenerTLS == ListenerTLS(certFile: "/l.crt", keyFile: "/l.key", clientCAFile: "/apps.pem"))
        #expect(gateway.usersFile == "/users.yaml")
        #expect(gateway.mechanisms == [.scramSHA512, .scramSHA256, .plain])
        #expect(gateway.identities.keys.sorted() == ["finance", "sales"])
        let finance = try #require(gateway.identities["finance"])
        #expect(finance.grants.decrypt == [KeyReference(kms: "finance", keyId: "k")!])
        #expect(gateway.identity(forCertificateSubject: [("O", "Apps"), ("CN", "finance-app")])?.name == "finance")
        #expect(gateway.identity(forCertificateSubject: [("CN", "finance-app")]) == nil)
        #expect(gateway.identity(forCertificateSubject: [("CN", "sales-app"), ("O", "Apps")]) == nil)
        let acting = config.acting(as: finance)
        #expect(acting.identity == "finance" && acting.grants == finance.grants)
    }

    @Test(arguments: [
        ("gateway:\n  identities: { a: { grants: { decrypt: [nokms/k] } } }\n  users_file: /u", "gateway.identities.a.grants.decrypt[0]: key nokms/k names KMS 'nokms'"),
        ("gateway:\n  identities: { a: {} }", "gateway: clients could not authenticate: give users_file"),
        ("gateway:\n  users_file: /u\n  identities: { a: { tls_subject: 'CN=x' } }", "gateway.identities.a.tls_subject: tls_subject needs client certificates"),
        ("gateway:\n  users_file: /u\n  identities: {}", "gateway.identities: expected at least one identity"),
        ("gateway:\n  users_file: /u\n  mechanisms: [AWS_MSK_IAM]\n  identities: { a: {} }", "gateway.mechanisms[0]: expected one of PLAIN"),
        ("grants: { decrypt: [] }\ngateway:\n  users_file: /u\n  identities: { a: {} }", "grants: in gateway mode grants are per identity"),
    ])
    func gatewayErrors(_ fragment: String, _ expected: String) {
        do {
            _ = try VeilConfiguration.parse(yaml: "identity: a\nupstream: b:1\nkms: { k: { type: local, keyring: k } }\n\(fragment)\n")
            Issue.record("no error for \(fragment)")
        } catch {
            #expect(error.description.hasPrefix(expected), "\(error)")
        }
    }

    @Test func subjectPatterns() throws {
        let p = try CertificateSubjectPattern(parsing: "CN=a\\,b, O=Org")
        #expect(p.attributes == ["CN": "a,b", "O": "Org"])
        #expect(p.matches([("CN", "a,b"), ("O", "Org"), ("C", "DE")]))
        #expect(!p.matches([("CN", "a,b")]))
        #expect(throws: ConfigurationError.self) { try CertificateSubjectPattern(parsing: "XX=1") }
        #expect(throws: ConfigurationError.self) { try CertificateSubjectPattern(parsing: "CN") }
    }

    @Test func usersFileRoundTripsAndChecksPasswords() throws {
        let credentials = Dictionary(uniqueKeysWithValues: SaslDigest.allCases.map {
            ($0, ScramCredential(digest: $0, password: "pw", iterations: 4096))
        })
        let users = GatewayUsers(users: ["finance-app": .init(name: "finance-app", identity: "finance", credentials: credentials)])
        let text = users.yaml()
        #expect(!text.contains("pw\""))
        let parsed = try GatewayUsers.parse(yaml: text)
        #expect(parsed.users == users.users)
        #expect(parsed.users["finance-app"]?.credentials[.sha512]?.matches(password: "pw") == true)
        let gateway = try #require(try VeilConfiguration.parse(yaml: Self.gatewayYAML).gateway)
        try parsed.validate(against: gateway, path: "gateway.users_file")
        let stray = GatewayUsers(users: ["x": .init(name: "x", identity: "nobody", credentials: credentials)])
        #expect(throws: ConfigurationError.self) { try stray.validate(against: gateway, path: "gateway.users_file") }
        #expect(throws: ConfigurationError.self) {
            try GatewayUsers.parse(yaml: "users:\n  u: { scram_sha_256: { salt: AA==, iterations: 10, stored_key: AA==, server_key: AA== } }")
        }
    }
}
