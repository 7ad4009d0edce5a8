import Foundation
import NIOCore
import Testing
import VeilConfig
import VeilEnvelope
import VeilJSON
import VeilWire

@testable import VeilProxy

/// Field-level encryption through the real produce and fetch filters: one record carries data
/// for finance (IBAN, cards), sales (e-mail) and everyone (the rest).
@Suite struct FieldEncryptionTests {
    static let ownerPolicy = """
        fields:
          - { path: payment.iban, key: finance/pii }
          - { path: 'items[*].card', key: finance/pii }
          - { path: customer.email, key: sales/pii }
          - { path: shipping.address, key: sales/pii }
        headers:
          - { name: ssn, key: finance/pii }
        record_key: finance/pii
        """

    static let email = #""ada@example.com""#
    static let iban = #""DE44500105175407324931""#
    static let card = #"{"last4": "4242", "exp": [12, 2030]}"#

    enum Part: Equatable {
        case plain, null, redacted, removed
        case token(String)
    }

    /// The document as a reader sees it, with each protected field in the given state.
    static func view(email: Part, iban: Part, card: Part) -> String {
        func text(_ part: Part, _ plain: String) -> String {
            switch part {
            case .plain: plain
            case .null: "null"
            case .redacted: #""[redacted]""#
            case .token(let token): token
            case .removed: ""
            }
        }
        return "{\"id\": 17,\n \"customer\": {\"name\": \"Ada\""
            + (email == .removed ? "" : ", \"email\": " + text(email, Self.email))
            + "},\n \"payment\": {"
            + (iban == .removed ? "" : "\"iban\": " + text(iban, Self.iban) + ", ")
            + "\"amount\": 12.50},\n \"items\": [{\"sku\": \"A1\""
            + (card == .removed ? "" : ", \"card\": " + text(card, Self.card))
            + "}, {\"sku\": \"B2\"}],\n \"order_total\": 1e2}"
    }

    static let original = AppRecord(
        key: "cust-17", value: view(email: .plain, iban: .plain, card: .plain),
        headers: [("ssn", "123-45-6789"), ("trace", "t-1")])

    func storedRecord() async throws -> (owner: Sidecar, stored: ByteBuffer) {
        let owner = try Sidecar(Configs.owner(encrypt: Self.ownerPolicy), finance: true, sales: true)
        return (owner, try await owner.store([Self.original], topic: "customers"))
    }

    /// The encrypted token stored for each protected field, by location.
    func tokens(_ value: [UInt8]) throws -> [String: String] {
        var hits = EncryptedFieldHits()
        try value.withUnsafeBytes { try hits.find(prefix: EncryptedField.prefix, in: $0) }
        var out: [String: String] = [:]
        for hit in hits.hits {
            out[String(decoding: hits.locations[hit.location], as: UTF8.self)] = String(decoding: value[hit.value], as: UTF8.self)
        }
        return out
    }

    @Test func theBrokerSeesValidJSONWithoutProtectedPlaintext() async throws {
        let (owner, stored) = try await storedRecord()
        let record = try #require(Sidecar.records(stored).first)
        let text = try #require(record.valueText)
        #expect(json(text) != nil, "stored value is valid JSON: \(text)")
        for secret in ["ada@example.com", "DE44500105175407324931", "4242", "2030", "123-45-6789", "cust-17"] {
            #expect(!contains(record.value, secret) && !contains(record.key, secret), "\(secret) leaked")
            #expect(!record.headers.contains { contains($0.1, secret) }, "\(secret) leaked in a header")
        }
        // Untouched parts are byte for byte what the producer wrote.
        for kept in ["{\"id\": 17,\n \"customer\": {\"name\": \"Ada\", \"email\": \"veil:1:", "\"amount\": 12.50},\n \"items\": [{\"sku\": \"A1\", \"card\": \"veil:1:",
                     "}, {\"sku\": \"B2\"}],\n \"order_total\": 1e2}"] {
            #expect(text.contains(kept), "\(kept) kept")
        }
        #expect(try tokens(try #require(record.value)).keys.sorted()
            == [#"$["customer"]["email"]"#, #"$["items"][0]["card"]"#, #"$["payment"]["iban"]"#])
        #expect(record.header("trace") == .some(Array("t-1".utf8)))
        #expect(record.header("ssn")??.starts(with: Envelope.magic) == true)
        #expect(record.key?.starts(with: DeterministicEnvelope.magic) == true)
        #expect(record.header(RecordMarker.name)??.count == RecordMarker.byteCount)
        // A path the record lacks is counted, not refused.
        #expect(owner.filter.counters.fieldsMissing.load(ordering: .relaxed) == 1)
        #expect(owner.filter.counters.fieldsEncrypted.load(ordering: .relaxed) == 3)
    }

    @Test(arguments: ["remove", "null", "redact"])
    func eachAudienceSeesExactlyItsFields(rule: String) async throws {
        let (_, stored) = try await storedRecord()
        let denied: Part = rule == "remove" ? .removed : rule == "null" ? .null : .redacted
        let finance = try Sidecar(Configs.consumer("finance", decrypt: ["finance/pii"], rule: rule), finance: true)
        let sales = try Sidecar(Configs.consumer("sales", decrypt: ["sales/pii"], rule: rule), sales: true)
        let analytics = try Sidecar(Configs.consumer("analytics", decrypt: [], rule: rule))
        let storedKey = try #require(Sidecar.records(stored).first?.key)

        let f = try #require(try await finance.fetch(stored, topic: "customers").records.first)
        #expect(f.valueText == Self.view(email: denied, iban: .plain, card: .plain))
        #expect(f.keyText == "cust-17")
        #expect(f.header("ssn") == .some(Array("123-45-6789".utf8)))

        let s = try #require(try await sales.fetch(stored, topic: "customers").records.first)
        #expect(s.valueText == Self.view(email: .plain, iban: denied, card: denied))
        #expect(s.key == storedKey, "a denied record key stays ciphertext")

        let a = try #require(try await analytics.fetch(stored, topic: "customers").records.first)
        #expect(a.valueText == Self.view(email: denied, iban: denied, card: denied))
        #expect(a.key == storedKey)

        for (reader, record) in [("sales", s), ("analytics", a)] {
            switch rule {
            case "remove": #expect(record.header("ssn") == nil, "\(reader)")
            case "null": #expect(record.header("ssn") == .some(nil), "\(reader)")
            default: #expect(record.header("ssn") == .some(Array(#""[redacted]""#.utf8)), "\(reader)")
            }
        }
        for record in [f, s, a] {
            #expect(json(record.valueText) != nil)
            #expect(record.header("trace") == .some(Array("t-1".utf8)))
            // Nothing left to decrypt later, so Veil's marker is gone: the application sees its own headers.
            #expect(record.header(RecordMarker.name) == nil)
        }
    }

    @Test func anAuthorizedReaderGetsTheProducedRecordBack() async throws {
        let (_, stored) = try await storedRecord()
        let both = try Sidecar(Configs.consumer("both", decrypt: ["finance/pii", "sales/pii"], rule: "remove"), finance: true, sales: true)
        let got = try #require(try await both.fetch(stored, topic: "customers").records.first)
        #expect(got == Self.original)
        #expect(both.filter.counters.partsDecrypted.load(ordering: .relaxed) == 5)
    }

    @Test func ciphertextRuleLeavesTheEncryptedStringsAndTheMarker() async throws {
        let (_, stored) = try await storedRecord()
        let storedRecord = try #require(Sidecar.records(stored).first)
        let tokens = try tokens(try #require(storedRecord.value))
        let sales = try Sidecar(Configs.consumer("sales", decrypt: ["sales/pii"], rule: "ciphertext"), sales: true)
        let s = try #require(try await sales.fetch(stored, topic: "customers").records.first)
        #expect(s.valueText == Self.view(
            email: .plain, iban: .token(tokens[#"$["payment"]["iban"]"#]!), card: .token(tokens[#"$["items"][0]["card"]"#]!)))
        #expect(s.header("ssn") == storedRecord.header("ssn"))
        // The ciphertext still needs its record id, so the marker stays for a later reader.
        #expect(s.header(RecordMarker.name) == storedRecord.header(RecordMarker.name))
        // Such a record, passed on, still opens for finance.
        let finance = try Sidecar(Configs.consumer("finance", decrypt: ["finance/pii"], rule: "remove"), finance: true)
        let passedOn = Sidecar.batch([s])
        let f = try #require(try await finance.fetch(passedOn, topic: "customers").records.first)
        #expect(f.valueText == Self.view(email: .plain, iban: .plain, card: .plain))
    }

    @Test func errorRuleFailsThePartition() async throws {
        let (_, stored) = try await storedRecord()
        let analytics = try Sidecar(Configs.consumer("analytics", decrypt: [], rule: "error"))
        let result = try await analytics.fetch(stored, topic: "customers")
        #expect(result.errorCode == KafkaErrorCode.topicAuthorizationFailed)
        #expect(result.records.isEmpty)
        // A reader who may decrypt everything is not failed by the same rule.
        let both = try Sidecar(Configs.consumer("both", decrypt: ["finance/pii", "sales/pii"], rule: "error"), finance: true, sales: true)
        #expect(try await both.fetch(stored, topic: "customers").errorCode == 0)
    }

    @Test func defaultRuleFollowsOnDenied() throws {
        let config = try VeilConfiguration.parse(yaml: Configs.header + """
            identity: c
            topics:
              - { match: a, on_denied: drop }
              - { match: b, on_denied: redact }
              - { match: c, on_denied: ciphertext, on_denied_field: "null", field_placeholder: '"***"' }
            """)
        #expect(config.topics.map(\.onDeniedField) == [.remove, .redact, .null])
        #expect(config.topics[2].fieldPlaceholder == #""***""#)
        #expect(throws: ConfigurationError.self) {
            try VeilConfiguration.parse(yaml: Configs.header + "identity: c\ntopics:\n  - { match: a, field_placeholder: '***' }")
        }
    }

    @Test func placeholderIsConfigurable() async throws {
        let (_, stored) = try await storedRecord()
        let analytics = try Sidecar(Configs.consumer("analytics", decrypt: [], rule: "redact", extra: "    field_placeholder: '{\"hidden\": true}'"))
        let a = try #require(try await analytics.fetch(stored, topic: "customers").records.first)
        let hidden = #"{"hidden": true}"#
        #expect(a.valueText == Self.view(email: .token(hidden), iban: .token(hidden), card: .token(hidden)))
    }
}

/// The AAD binds each field's record, location and topic: moved ciphertext does not open.
@Suite struct FieldBindingTests {
    let finance: Sidecar

    init() throws {
        finance = try Sidecar(Configs.consumer("finance", decrypt: ["finance/pii", "sales/pii"], rule: "null"), finance: true, sales: true)
    }

    func owner() throws -> Sidecar {
        try Sidecar(Configs.owner(encrypt: """
            fields:
              - { path: a, key: finance/pii }
              - { path: b, key: finance/pii }
              - { path: 'list[*]', key: finance/pii }
            """), finance: true, sales: true)
    }

    /// Replaces the token at `from` in `value` by `token`.
    func replacing(_ value: String, _ old: String, with new: String) -> String {
        value.replacingOccurrences(of: old, with: new)
    }

    func tokens(_ record: AppRecord) throws -> [String] {
        var hits = EncryptedFieldHits()
        let value = try #require(record.value)
        try value.withUnsafeBytes { try hits.find(prefix: EncryptedField.prefix, in: $0) }
        return hits.hits.map { String(decoding: value[$0.value], as: UTF8.self) }
    }

    @Test func swappedFieldsInOneRecordDoNotOpen() async throws {
        let stored = try await owner().store([AppRecord(value: #"{"a": 1, "b": 2, "list": [3, 4]}"#)], topic: "customers")
        let record = try #require(Sidecar.records(stored).first)
        let t = try tokens(record)
        #expect(t.count == 4)
        // Control: untouched, everything opens.
        #expect(try await finance.fetch(stored, topic: "customers").records.first?.valueText == #"{"a": 1, "b": 2, "list": [3, 4]}"#)
        let swapped = Sidecar.rewrite(stored) { records in
            let v = records[0].valueText!
            let placeholder = "SWAP"
            records[0].value = Array(self.replacing(self.replacing(self.replacing(v, t[0], with: placeholder), t[1], with: t[0]), placeholder, with: t[1]).utf8)
        }
        let before = finance.filter.counters.tampered.load(ordering: .relaxed)
        #expect(try await finance.fetch(swapped, topic: "customers").records.first?.valueText == #"{"a": null, "b": null, "list": [3, 4]}"#)
        #expect(finance.filter.counters.tampered.load(ordering: .relaxed) == before + 2)
        // Array elements are bound to their index too.
        let reordered = Sidecar.rewrite(stored) { records in
            let v = records[0].valueText!
            records[0].value = Array(self.replacing(v, "[" + t[2] + ", " + t[3] + "]", with: "[" + t[3] + ", " + t[2] + "]").utf8)
        }
        #expect(try await finance.fetch(reordered, topic: "customers").records.first?.valueText == #"{"a": 1, "b": 2, "list": [null, null]}"#)
    }

    @Test func aFieldMovedToAnotherRecordDoesNotOpen() async throws {
        let stored = try await owner().store(
            [AppRecord(value: #"{"a": "alice-secret"}"#), AppRecord(value: #"{"a": "mallory"}"#)], topic: "customers")
        let records = Sidecar.records(stored)
        let alice = try tokens(records[0])[0]
        let mallory = try tokens(records[1])[0]
        let moved = Sidecar.rewrite(stored) { records in
            records[1].value = Array(self.replacing(records[1].valueText!, mallory, with: alice).utf8)
        }
        let got = try await finance.fetch(moved, topic: "customers").records
        #expect(got.map(\.valueText) == [#"{"a": "alice-secret"}"#, #"{"a": null}"#])
        // Moving the marker along makes the receiving record's own fields fail instead.
        let markerMoved = Sidecar.rewrite(stored) { records in
            let marker = records[0].headers.last { $0.0 == RecordMarker.name }!
            records[1].headers = [marker]
        }
        #expect(try await finance.fetch(markerMoved, topic: "customers").records.map(\.valueText)
            == [#"{"a": "alice-secret"}"#, #"{"a": null}"#])
    }

    @Test func anotherTopicOrABrokenMarkerDoesNotOpen() async throws {
        let stored = try await owner().store([AppRecord(value: #"{"a": "x"}"#)], topic: "customers")
        let elsewhere = try Sidecar(
            Configs.consumer("finance", decrypt: ["finance/pii"], rule: "null", topic: "copies"), finance: true)
        #expect(try await elsewhere.fetch(stored, topic: "copies").records.first?.valueText == #"{"a": null}"#)
        let broken = Sidecar.rewrite(stored) { records in
            for i in records[0].headers.indices where records[0].headers[i].0 == RecordMarker.name {
                records[0].headers[i].1![5] ^= 1
            }
        }
        #expect(try await finance.fetch(broken, topic: "customers").records.first?.valueText == #"{"a": null}"#)
    }

    @Test func aFieldLevelRecordThatIsNoLongerJSONIsDenied() async throws {
        let stored = try await owner().store([AppRecord(value: #"{"a": "x"}"#)], topic: "customers")
        let broken = Sidecar.rewrite(stored) { records in records[0].value!.removeLast() }
        let dropper = try Sidecar(Configs.consumer("finance", decrypt: ["finance/pii"], rule: "null"), finance: true)
        #expect(try await dropper.fetch(broken, topic: "customers").records.isEmpty)
    }

    @Test func plaintextWithoutTheMarkerIsStillRefused() async throws {
        // An injected plaintext record on the topic: no marker, not an envelope.
        let injected = Sidecar.batch([AppRecord(value: #"{"a": "forged"}"#)])
        #expect(try await finance.fetch(injected, topic: "customers").records.isEmpty)
    }
}

/// Producer-side rules: non-JSON values, missing paths, grants, per-field key selection.
@Suite struct FieldProduceRuleTests {
    @Test func nonJSONIsRefusedNamingTopicAndReason() async throws {
        let owner = try Sidecar(Configs.owner(encrypt: "fields: [ { path: a, key: finance/pii } ]"), finance: true)
        switch try await owner.produce([AppRecord(value: "not json at all")], topic: "customers") {
        case .stored: Issue.record("a non-JSON value must be refused")
        case .rejected(let code, let message):
            #expect(code == KafkaErrorCode.invalidRecord)
            #expect(message.contains("customers") && message.contains("not valid JSON") && message.contains("byte 0"), "\(message)")
            #expect(!message.contains("not json at all"), "the message must not quote the value")
        }
        // Tombstones stay null and are fine.
        #expect(try await owner.store([AppRecord(key: "k", value: nil)], topic: "customers").readableBytes > 0)
    }

    @Test func nonJSONPassesOnlyWhenConfigured() async throws {
        let owner = try Sidecar(
            Configs.owner(encrypt: "fields: [ { path: a, key: finance/pii } ]\non_invalid_json: plaintext"), finance: true)
        let stored = try await owner.store([AppRecord(value: "not json")], topic: "customers")
        #expect(Sidecar.records(stored).first?.valueText == "not json")
        #expect(owner.filter.counters.fieldsInvalidJSON.load(ordering: .relaxed) == 1)
    }

    @Test func missingPathsAreCounted() async throws {
        let owner = try Sidecar(Configs.owner(encrypt: "fields: [ a, b.c ]\nkey_from: { fixed: finance/pii }"), finance: true)
        let stored = try await owner.store([AppRecord(value: #"{"x": 1}"#), AppRecord(value: #"{"b": {"c": 2}}"#)], topic: "customers")
        #expect(owner.filter.counters.fieldsMissing.load(ordering: .relaxed) == 3)
        let records = Sidecar.records(stored)
        #expect(records[0].valueText == #"{"x": 1}"#)
        #expect(records[1].valueText?.hasPrefix(#"{"b": {"c": "veil:1:"#) == true)
    }

    @Test func aKeyWithoutAGrantIsRefused() async throws {
        let yaml = Configs.owner(encrypt: "fields: [ { path: a, key: sales/pii } ]").replacingOccurrences(of: "[finance/pii, sales/pii]", with: "[finance/pii]")
        let owner = try Sidecar(yaml, finance: true, sales: true)
        guard case .rejected(let code, let message) = try await owner.produce([AppRecord(value: #"{"a": 1}"#)], topic: "customers") else {
            Issue.record("must be refused")
            return
        }
        #expect(code == KafkaErrorCode.topicAuthorizationFailed)
        #expect(message.contains("sales/pii"))
    }

    @Test func keysChosenFromAnotherFieldOfTheRecord() async throws {
        let owner = try Sidecar(Configs.owner(encrypt: """
            fields:
              - path: data
                key_from: { json: department }
                keys: { finance: finance/pii, sales: sales/pii }
              - { path: meta.audit, key_from: { json: meta.owner }, keys: { sales: sales/pii } }
            """), finance: true, sales: true)
        let stored = try await owner.store([
            AppRecord(value: #"{"department": "finance", "data": {"q3": 1.5}, "meta": {"owner": "sales", "audit": [1]}}"#),
            AppRecord(value: #"{"department": "sales", "data": "pipeline"}"#),
        ], topic: "customers")
        let finance = try Sidecar(Configs.consumer("finance", decrypt: ["finance/pii"], rule: "null"), finance: true)
        let sales = try Sidecar(Configs.consumer("sales", decrypt: ["sales/pii"], rule: "null"), sales: true)
        #expect(try await finance.fetch(stored, topic: "customers").records.map(\.valueText) == [
            #"{"department": "finance", "data": {"q3": 1.5}, "meta": {"owner": "sales", "audit": null}}"#,
            #"{"department": "sales", "data": null}"#,
        ])
        #expect(try await sales.fetch(stored, topic: "customers").records.map(\.valueText) == [
            #"{"department": "finance", "data": null, "meta": {"owner": "sales", "audit": [1]}}"#,
            #"{"department": "sales", "data": "pipeline"}"#,
        ])
        // A selector that maps to no key is refused (on_unmatched defaults to reject).
        guard case .rejected(let code, _) = try await owner.produce(
            [AppRecord(value: #"{"department": "ops", "data": 1}"#)], topic: "customers")
        else {
            Issue.record("unmatched selector must be refused")
            return
        }
        #expect(code == KafkaErrorCode.invalidRecord)
    }

    @Test func overlappingPathsAreAConfigurationError() {
        #expect(throws: ConfigurationError.self) {
            try VeilConfiguration.parse(yaml: Configs.owner(encrypt: "fields: [ { path: a, key: finance/pii }, { path: a.b, key: sales/pii } ]"))
        }
        #expect(throws: ConfigurationError.self) {
            try VeilConfiguration.parse(yaml: Configs.owner(encrypt: "fields: [ a ]"))  // no key for a bare path
        }
        #expect(throws: ConfigurationError.self) {
            try VeilConfiguration.parse(yaml: Configs.owner(encrypt: "fields: [ { path: 'a[', key: finance/pii } ]"))
        }
    }

    @Test func everyFieldCountsTowardsDataKeyRotation() async throws {
        // Two encryptions per data key: three records of two fields and a header need five keys.
        let yaml = Configs.owner(encrypt: "fields: [ { path: a, key: finance/pii }, { path: b, key: finance/pii } ]\nheaders: [ { name: h, key: finance/pii } ]")
            + "\ndek: { max_encryptions: 2 }\n"
        let owner = try Sidecar(yaml, finance: true)
        let records = (0..<3).map { AppRecord(value: #"{"a": \#($0), "b": "x\#($0)"}"#, headers: [("h", "v\($0)")]) }
        let stored = try await owner.store(records, topic: "customers")
        var wrappedKeys = Set<[UInt8]>()
        // magic, version, flags | 1 + "finance" | 2 + "pii" | 2, then the 61-byte wrapped DEK.
        let wrappedStart = 6 + 1 + 7 + 2 + 3 + 2
        for record in Sidecar.records(stored) {
            var hits = EncryptedFieldHits()
            let value = try #require(record.value)
            try value.withUnsafeBytes { try hits.find(prefix: EncryptedField.prefix, in: $0) }
            for hit in hits.hits {
                let payload = Array(value[hit.payload])
                var envelope = [UInt8](repeating: 0, count: Base64URL.decodedCount(payload.count)!)
                #expect(payload.withUnsafeBytes { p in envelope.withUnsafeMutableBytes { Base64URL.decode(p, into: $0) } })
                wrappedKeys.insert(Array(envelope[wrappedStart..<(wrappedStart + 61)]))
            }
            let header: [UInt8] = try #require(record.header("h") ?? nil)
            wrappedKeys.insert(Array(header[wrappedStart..<(wrappedStart + 61)]))
        }
        #expect(wrappedKeys.count == 5, "9 encryptions at 2 per data key")
        let reader = try Sidecar(Configs.consumer("finance", decrypt: ["finance/pii"], rule: "null"), finance: true)
        #expect(try await reader.fetch(stored, topic: "customers").records == records)
    }

    @Test func wholeValueTopicsAreUnchanged() async throws {
        let owner = try Sidecar(Configs.owner(encrypt: "key_from: { fixed: finance/pii }"), finance: true)
        let stored = try await owner.store([AppRecord(value: #"{"a": 1}"#)], topic: "customers")
        let record = try #require(Sidecar.records(stored).first)
        #expect(record.value?.starts(with: Envelope.magic) == true)
        #expect(record.headers.isEmpty, "no marker on whole-value records")
    }
}

/// Record keys: equal plaintext keys give equal stored keys.
@Suite struct RecordKeyEncryptionTests {
    @Test func equalKeysStayEqualAndDecrypt() async throws {
        let owner = try Sidecar(Configs.owner(encrypt: "key_from: { fixed: finance/pii }\nrecord_key: finance/pii"), finance: true)
        let stored = try await owner.store([
            AppRecord(key: "cust-1", value: "v1"), AppRecord(key: "cust-2", value: "v2"), AppRecord(key: "cust-1", value: "v3"),
            AppRecord(key: nil, value: "v4"), AppRecord(key: "", value: "v5"),
        ], topic: "customers")
        let keys = Sidecar.records(stored).map(\.key)
        #expect(keys[0] == keys[2] && keys[0] != keys[1])
        #expect(keys[0]?.starts(with: DeterministicEnvelope.magic) == true)
        #expect(keys[3] == nil && keys[4] == [])
        // Another producer sidecar (another process) derives the same key.
        let again = try await Sidecar(Configs.owner(encrypt: "key_from: { fixed: finance/pii }\nrecord_key: finance/pii"), finance: true)
            .store([AppRecord(key: "cust-1", value: "other")], topic: "customers")
        #expect(Sidecar.records(again).first?.key == keys[0])
        let finance = try Sidecar(Configs.consumer("finance", decrypt: ["finance/pii"], rule: "remove"), finance: true)
        #expect(try await finance.fetch(stored, topic: "customers").records.map(\.keyText) == ["cust-1", "cust-2", "cust-1", nil, ""])
    }
}
