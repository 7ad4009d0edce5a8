import Testing

@testable import VeilConfig

@Suite struct KeySelectionTests {
    let finance = KeyReference(kms: "finance", keyId: "department-key")!
    let sales = KeyReference(kms: "sales", keyId: "department-key")!
    let fallback = KeyReference(kms: "finance", keyId: "default")!

    func select(
        _ policy: EncryptionPolicy, value: String?, key: String? = nil, headers: [(String, [UInt8]?)] = []
    ) -> KeySelection {
        func withOptionalBytes<R>(_ text: String?, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
            guard let text else { return body(nil) }
            return Array(text.utf8).withUnsafeBytes { body($0) }
        }
        return withOptionalBytes(value) { value in
            withOptionalBytes(key) { key in policy.selectKey(value: value, key: key, headers: headers) }
        }
    }

    var byDepartment: EncryptionPolicy {
        EncryptionPolicy(keySource: .json(field: "department"), keys: ["finance": finance, "sales": sales])
    }

    @Test func jsonFieldSelectsTheMappedKey() {
        #expect(self.select(self.byDepartment, value: #"{"department": "finance", "data": "..."}"#) == .key(finance))
        #expect(self.select(self.byDepartment, value: #"{"data": {"department": "finance"}, "department": "sales"}"#) == .key(sales))
        #expect(self.select(self.byDepartment, value: #"{"department": "\u0073ales"}"#) == .key(sales))
    }

    @Test func jsonSelectorThatMatchesNothingIsReported() {
        #expect(self.select(self.byDepartment, value: #"{"department": "ops"}"#) == .unmatched(selector: "ops"))
        #expect(self.select(self.byDepartment, value: #"{"department": "Finance"}"#) == .unmatched(selector: "Finance"))
        #expect(self.select(self.byDepartment, value: #"{"dept": "finance"}"#) == .unmatched(selector: nil))
        #expect(self.select(self.byDepartment, value: #"{"department": 7}"#) == .unmatched(selector: nil))
        #expect(self.select(self.byDepartment, value: "finance") == .unmatched(selector: nil))
        #expect(self.select(self.byDepartment, value: #"{"department": "finance""#) == .unmatched(selector: nil))
        #expect(self.select(self.byDepartment, value: nil) == .unmatched(selector: nil))
        // Ambiguous: parsers disagree on which value counts, so neither key is chosen.
        let ambiguous = #"{"department": "sales", "department": "finance"}"#
        #expect(self.select(self.byDepartment, value: ambiguous) == .unmatched(selector: nil))
    }

    @Test func defaultKeyCatchesEverythingUnmatched() {
        let policy = EncryptionPolicy(
            keySource: .json(field: "department"), keys: ["finance": finance], defaultKey: fallback)
        #expect(self.select(policy, value: #"{"department":"finance"}"#) == .key(finance))
        #expect(self.select(policy, value: #"{"department":"ops"}"#) == .key(fallback))
        #expect(self.select(policy, value: "not json") == .key(fallback))
        #expect(self.select(policy, value: nil) == .key(fallback))
    }

    @Test func headerSelectsByValueAndLastHeaderWins() {
        let policy = EncryptionPolicy(keySource: .header(name: "dept"), keys: ["finance": finance, "sales": sales])
        #expect(self.select(policy, value: "x", headers: [("dept", Array("sales".utf8))]) == .key(sales))
        #expect(
            self.select(policy, value: "x", headers: [("dept", Array("sales".utf8)), ("dept", Array("finance".utf8))])
                == .key(finance))
        #expect(self.select(policy, value: "x", headers: [("Dept", Array("sales".utf8))]) == .unmatched(selector: nil))
        #expect(self.select(policy, value: "x", headers: [("dept", nil)]) == .unmatched(selector: nil))
        #expect(self.select(policy, value: "x", headers: [("dept", Array("ops".utf8))]) == .unmatched(selector: "ops"))
    }

    @Test func recordKeySelectsByKeyBytes() {
        let policy = EncryptionPolicy(keySource: .recordKey, keys: ["finance": finance])
        #expect(self.select(policy, value: "{}", key: "finance") == .key(finance))
        #expect(self.select(policy, value: "{}", key: "financ") == .unmatched(selector: "financ"))
        #expect(self.select(policy, value: "{}", key: nil) == .unmatched(selector: nil))
    }

    @Test func fixedKeyIgnoresTheRecord() {
        let policy = EncryptionPolicy(keySource: .fixed(sales))
        #expect(self.select(policy, value: nil) == .key(sales))
        #expect(self.select(policy, value: #"{"department":"finance"}"#) == .key(sales))
    }

    @Test func largeKeyMapsUseTheDictionaryPath() {
        var keys: [String: KeyReference] = [:]
        for i in 0..<100 { keys["tenant-\(i)"] = KeyReference(kms: "k", keyId: "key-\(i)")! }
        let policy = EncryptionPolicy(keySource: .header(name: "tenant"), keys: keys)
        for i in [0, 17, 99] {
            #expect(
                self.select(policy, value: nil, headers: [("tenant", Array("tenant-\(i)".utf8))])
                    == .key(KeyReference(kms: "k", keyId: "key-\(i)")!))
        }
        #expect(self.select(policy, value: nil, headers: [("tenant", Array("tenant-100".utf8))]) == .unmatched(selector: "tenant-100"))
    }

    @Test func keysOfEqualLengthAreTellApart() {
        let policy = EncryptionPolicy(keySource: .recordKey, keys: ["aaaa": finance, "aaab": sales])
        #expect(self.select(policy, value: nil, key: "aaab") == .key(sales))
        #expect(self.select(policy, value: nil, key: "aaaa") == .key(finance))
    }

    @Test func allKeysListsEverySelectableKey() {
        let policy = EncryptionPolicy(keySource: .json(field: "d"), keys: ["f": finance], defaultKey: fallback)
        #expect(policy.allKeys == [finance, fallback])
        #expect(EncryptionPolicy(keySource: .fixed(sales)).allKeys == [sales])
    }
}
