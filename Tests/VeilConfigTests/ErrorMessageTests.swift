import Testing

@testable import VeilConfig

/// Every class of configuration error names the key path and the problem precisely.
@Suite struct ErrorMessageTests {
    static let base = """
        identity: app
        upstream: { bootstrap: [broker:9092] }
        kms: { finance: { type: local, keyring: f.keyring } }

        """

    func error(_ yaml: String) -> ConfigurationError? {
        do {
            _ = try VeilConfiguration.parse(yaml: yaml)
            Issue.record("expected a ConfigurationError for:\n\(yaml)")
            return nil
        } catch {
            return error
        }
    }

    func topicError(_ topic: String) -> ConfigurationError? {
        self.error(Self.base + "topics:\n" + topic)
    }

    @Test(arguments: [
        // Document-level
        ("", "the configuration is empty; identity and upstream are required"),
        ("- a\n- b", "expected a mapping, got a list (line 1)"),
        ("identity: [", "invalid YAML"),
        // Required and unknown keys
        ("upstream: b:1", "identity: required (line 1)"),
        ("identity: a", "upstream: required (line 1)"),
        ("identity: a\nupstream: b:1\nlisten_on: x", "listen_on: unknown key 'listen_on' (expected one of identity, listen, upstream, broker_ports, advertised_host, max_frame_bytes, kms, grants, dek, topics, listener, gateway, admin, logging, shutdown) (line 3)"),
        ("identity: a\nupstream: { bootstrap: [b:1], tsl: true }", "upstream.tsl: unknown key 'tsl' (did you mean 'tls'? expected one of bootstrap, tls, sasl) (line 2)"),
        // Types
        ("identity: [a]\nupstream: b:1", "identity: expected a string, got a list (line 1)"),
        ("identity: \"\"\nupstream: b:1", "identity: must not be empty (line 1)"),
        ("identity: a\nupstream: { bootstrap: [b:1], tls: maybe }", "upstream.tls: expected true or false, got 'maybe' (line 2)"),
        ("identity: a\nupstream: b:1\nmax_frame_bytes: lots", "max_frame_bytes: expected an integer, got 'lots' (line 3)"),
        ("identity: a\nupstream: b:1\nmax_frame_bytes: 10", "max_frame_bytes: must be between 1024 and 2147483647, got 10 (line 3)"),
        ("identity: a\nupstream: { bootstrap: {a: b} }", "upstream.bootstrap: expected a list of HOST:PORT, got a mapping (line 2)"),
        ("identity: a\nupstream: { bootstrap: [] }", "upstream.bootstrap: expected at least one HOST:PORT (line 2)"),
        // Addresses and ports
        ("identity: a\nupstream: b:1\nlisten: localhost", "listen: expected HOST:PORT, got 'localhost' (line 3)"),
        ("identity: a\nupstream: b:1\nlisten: localhost:99999", "listen: port must be a number from 0 to 65535, got '99999' (line 3)"),
        ("identity: a\nupstream: ::1:9092", "upstream: IPv6 hosts must be bracketed, as in [::1]:9092; got '::1:9092' (line 2)"),
        ("identity: a\nupstream: { bootstrap: [b:0] }", "upstream.bootstrap[0]: upstream port must not be 0 (line 2)"),
        ("identity: a\nupstream: b:1\nbroker_ports: { first: 9000, count: 200 }", "broker_ports: range 9000...9199 includes the listen port 9092 (line 3)"),
        ("identity: a\nupstream: b:1\nbroker_ports: { first: 65500, count: 100 }", "broker_ports: ports 65500...65599 do not fit in 1...65535 (line 3)"),
        ("identity: a\nupstream: 127.0.0.1:9093", "broker_ports: range 9093...9156 includes the port of upstream broker 127.0.0.1:9093 on this host; set broker_ports"),
        ("identity: a\nupstream: b:1\nbroker_ports: { count: 3 }", "broker_ports.first: required (line 3)"),
        // KMS and key references
        ("identity: a\nupstream: b:1\nkms: { f: { type: vault } }", "kms.f.type: unknown KMS type 'vault' (supported: local, aws-kms) (line 3)"),
        ("identity: a\nupstream: b:1\nkms: { f: { keyring: x } }", "kms.f.type: required (line 3)"),
        ("identity: a\nupstream: b:1\nkms: { f: { type: local } }", "kms.f.keyring: required (line 3)"),
        ("identity: a\nupstream: b:1\nkms: { f: { type: local, keyring: x, region: y } }", "kms.f.region: unknown key 'region' (expected one of type, keyring) (line 3)"),
        ("identity: a\nupstream: b:1\nkms: { f: { type: aws-kms } }", "kms.f.region: required (line 3)"),
        ("identity: a\nupstream: b:1\nkms: { f: { type: aws-kms, region: \"\" } }", "kms.f.region: must not be empty (line 3)"),
        ("identity: a\nupstream: b:1\nkms: { f: { type: aws-kms, region: US East } }", "kms.f.region: expected an AWS region name like us-east-1, got 'US East' (line 3)"),
        ("identity: a\nupstream: b:1\nkms: { f: { type: aws-kms, region: us-east-1, endpoint: 127.0.0.1:5000 } }", "kms.f.endpoint: expected an http:// or https:// URL, got '127.0.0.1:5000' (line 3)"),
        ("identity: a\nupstream: b:1\nkms: { f: { type: aws-kms, region: us-east-1, keyring: x } }", "kms.f.keyring: unknown key 'keyring' (expected one of type, region, endpoint, profile) (line 3)"),
        ("identity: a\nupstream: b:1\nkms: { \"f/g\": { type: local, keyring: x } }", "kms.f/g: KMS names may contain only letters, digits, '-', '_' and '.', got 'f/g' (line 3)"),
        ("identity: a\nupstream: b:1\ngrants: { decrypt: [sales/k] }", "grants.decrypt[0]: key sales/k names KMS 'sales', which is not configured under kms (configured: none) (line 3)"),
        ("identity: a\nupstream: b:1\ngrants: { encrypt: [nokey] }", "grants.encrypt[0]: expected a key reference KMS/KEY_ID, got 'nokey' (line 3)"),
        ("identity: a\nupstream: b:1\ngrants: { encrypt: finance/k }", "grants.encrypt: expected a list, got a scalar (line 3)"),
        // DEK
        ("identity: a\nupstream: b:1\ndek: { max_encryptions: 0 }", "dek.max_encryptions: must be between 1 and 4294967296, got 0 (line 3)"),
        ("identity: a\nupstream: b:1\ndek: { max_encryptions: 5000000000 }", "dek.max_encryptions: must be between 1 and 4294967296, got 5000000000 (line 3)"),
    ])
    func documentErrors(yaml: String, expected: String) {
        let error = self.error(yaml)
        if expected == "invalid YAML" {
            #expect(error?.problem.hasPrefix("invalid YAML: ") == true, "\(String(describing: error))")
        } else {
            #expect(error?.description == expected)
        }
    }

    @Test(arguments: [
        ("  - encrypt: { key_from: { fixed: finance/k } }", "topics[0].match: required (line 5)"),
        ("  - match: t\n    encrypt: { key_from: department }", "topics[0].encrypt.key_from: expected one of json, header, record_key, fixed, as in { json: department } (line 6)"),
        ("  - match: t\n    encrypt: { key_from: { jsn: department } }", "topics[0].encrypt.key_from.jsn: unknown key 'jsn' (did you mean 'json'? expected one of json, header, record_key, fixed) (line 6)"),
        ("  - match: t\n    encrypt: { key_from: { json: a, header: b }, keys: { x: finance/k } }", "topics[0].encrypt.key_from: expected exactly one of json, header, record_key, fixed (line 6)"),
        ("  - match: t\n    encrypt: { key_from: { record_key: false }, keys: { x: finance/k } }", "topics[0].encrypt.key_from.record_key: must be true (omit key_from.record_key otherwise) (line 6)"),
        ("  - match: t\n    encrypt: { key_from: { json: department } }", "topics[0].encrypt.keys: required: map selector values to keys, or set default_key (line 6)"),
        ("  - match: t\n    encrypt: { key_from: { fixed: finance/k }, keys: { a: finance/k } }", "topics[0].encrypt.keys: not used with key_from fixed; remove it (line 6)"),
        ("  - match: t\n    encrypt: { key_from: { json: d }, keys: { sales: sales/k } }", "topics[0].encrypt.keys.sales: key sales/k names KMS 'sales', which is not configured under kms (configured: finance) (line 6)"),
        ("  - match: t\n    encrypt: { key_from: { json: d }, default_key: nope }", "topics[0].encrypt.default_key: expected a key reference KMS/KEY_ID, got 'nope' (line 6)"),
        ("  - match: t\n    encrypt: { key_from: { json: d }, keys: { a: finance/k }, on_unmatched: ignore }", "topics[0].encrypt.on_unmatched: expected one of reject, plaintext, got 'ignore' (line 6)"),
        ("  - match: t\n    encrypt: { key_from: { json: d }, keys: { a: finance/k }, fields: [] }", "topics[0].encrypt.fields: must list at least one field, or be omitted (line 6)"),
        ("  - match: t\n    on_denied: hide", "topics[0].on_denied: expected one of drop, redact, ciphertext, error, got 'hide' (line 6)"),
        ("  - match: t\n    require_encrypted: 1", "topics[0].require_encrypted: expected true or false, got '1' (line 6)"),
        ("  - match: t\n    ondenied: drop", "topics[0].ondenied: unknown key 'ondenied' (did you mean 'on_denied'? expected one of match, encrypt, on_denied, redact_placeholder, require_encrypted, on_denied_field, field_placeholder) (line 6)"),
        ("  - match: { prefix: a, regex: b }", "topics[0].match: expected exactly one of exact, prefix, regex (line 5)"),
        ("  - match: { suffix: a }", "topics[0].match.suffix: unknown key 'suffix' (expected one of exact, prefix, regex) (line 5)"),
        ("  - match: a\n  - match: { regex: \"dept-(\" }", "topics[1].match.regex: invalid regular expression 'dept-(':"),
    ])
    func topicErrors(topic: String, expected: String) {
        let error = self.topicError(topic)
        if expected.hasSuffix(":") {
            #expect(error?.description.hasPrefix(expected) == true, "\(String(describing: error))")
        } else {
            #expect(error?.description == expected)
        }
    }
}
