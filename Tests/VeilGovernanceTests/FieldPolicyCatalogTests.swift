import Testing
import VeilConfig
import VeilGovernance

/// Field-level topic policies in a catalog: JSON fields, headers and record keys by data class,
/// rendered into sidecar configurations that `veil run` reads, and never rendered so that a
/// producer would write a part in clear.
@Suite struct FieldPolicyCatalogTests {
    static let catalog = """
        domains:
          finance: { kms: { type: local, keyring: keys/finance.keyring }, keys: [pii, notes, keys] }
          sales: { kms: { type: local, keyring: keys/sales.keyring }, keys: [pii, notes] }
        data_classes:
          finance-pii: { domain: finance, key: pii }
          finance-notes: { domain: finance, key: notes }
          finance-keys: { domain: finance, key: keys }
          sales-pii: { domain: sales, key: pii }
          sales-notes: { domain: sales, key: notes }
        applications:
          crm: { sidecar: { upstream: 127.0.0.1:19092 } }
          partial: { sidecar: { upstream: 127.0.0.1:19092 } }
          finance: { sidecar: { upstream: 127.0.0.1:19092 } }
        grants:
          - { application: crm, key: finance/pii, purpose: encrypt, approved_by: dpo }
          - { application: crm, key: finance/notes, purpose: encrypt, approved_by: dpo }
          - { application: crm, key: finance/keys, purpose: encrypt, approved_by: dpo }
          - { application: crm, key: sales/pii, purpose: encrypt, approved_by: dpo }
          - { application: crm, key: sales/notes, purpose: encrypt, approved_by: dpo }
          - { application: partial, key: finance/pii, purpose: encrypt, approved_by: dpo }
          - { application: finance, key: finance/pii, purpose: decrypt, approved_by: dpo }
          - { application: finance, key: finance/notes, purpose: decrypt, approved_by: dpo }
          - { application: finance, key: finance/keys, purpose: decrypt, approved_by: dpo }
          - { application: finance, key: sales/pii, purpose: decrypt, approved_by: dpo }
          - { application: finance, key: sales/notes, purpose: decrypt, approved_by: dpo }
        topics:
          - match: customers
            encrypt:
              key_from: { json: department }
              classes: { finance: finance-notes, sales: sales-notes }
              fields:
                - { path: payment.iban, class: finance-pii }
                - path: customer.email
                  key_from: { header: region }
                  classes: { eu: sales-pii }
                  default_class: finance-pii
                - notes
              headers:
                - { name: ssn, class: finance-pii }
              record_key: finance-keys
              on_invalid_json: plaintext
            on_denied_field: redact
        """

    func render(_ application: String, _ yaml: String = Self.catalog) throws -> VeilConfiguration {
        let catalog = try Catalog.parse(yaml: yaml)
        return try VeilConfiguration.parse(yaml: try SidecarRenderer(catalog, now: noon).render(application: application).yaml)
    }

    func ref(_ text: String) -> KeyReference { KeyReference(text)! }

    @Test func aProducerGetsEveryPartWithItsKeys() throws {
        let crm = try render("crm")
        let encrypt = try #require(crm.topics.first?.encrypt)
        let fields = try #require(encrypt.fieldRules)
        #expect(fields.map(\.path.description) == ["payment.iban", "customer.email", "notes"])
        #expect(fields[0].choice.allKeys == [ref("finance/pii")])
        #expect(fields[1].choice.keys == ["eu": ref("sales/pii")] && fields[1].choice.defaultKey == ref("finance/pii"))
        #expect(fields[1].choice.source == .header(name: "region"))
        // A bare path uses the topic's own per-record choice.
        #expect(fields[2].choice.keys == ["finance": ref("finance/notes"), "sales": ref("sales/notes")])
        #expect(encrypt.headerRules.map(\.name) == ["ssn"] && encrypt.headerRules[0].choice.allKeys == [ref("finance/pii")])
        #expect(encrypt.recordKey == ref("finance/keys"))
        #expect(encrypt.onInvalidJSON == .plaintext)
        #expect(crm.topics[0].onDeniedField == .redact)
    }

    @Test func aConsumerGetsNoEncryptBlock() throws {
        let finance = try render("finance")
        #expect(finance.topics.first?.encrypt == nil)
        #expect(finance.grants.decrypt.count == 5)
    }

    @Test func aProducerThatCannotEncryptEveryPartIsNotRendered() throws {
        let catalog = try Catalog.parse(yaml: Self.catalog)
        #expect {
            try SidecarRenderer(catalog, now: noon).render(application: "partial")
        } throws: { error in
            // payment.iban is fine (finance-pii); customer.email's choice has finance-pii as its
            // default, so it renders; `notes` has no class partial may use.
            "\(error)".contains("may not encrypt its path 'notes'")
        }
    }

    @Test func checksCoverEveryPartsClass() throws {
        let unreadable = Self.catalog.replacingOccurrences(
            of: "  - { application: finance, key: finance/keys, purpose: decrypt, approved_by: dpo }\n", with: "")
        let findings = CatalogCheck(try Catalog.parse(yaml: unreadable), now: noon).findings()
        #expect(findings.contains { $0.rule == .undecryptableClass && $0.message.contains("finance-keys") })
        let dangling = Self.catalog.replacingOccurrences(of: "{ name: ssn, class: finance-pii }", with: "{ name: ssn, class: nope }")
        #expect(CatalogCheck(try Catalog.parse(yaml: dangling), now: noon).findings().contains { $0.rule == .danglingReference && $0.message.contains("'nope'") })
    }

    @Test(arguments: [
        ("- { path: payment.iban, class: finance-pii }", "- { path: a, class: finance-pii, key_from: { json: x } }", "class and key_from/classes/default_class exclude each other"),
        ("- { path: payment.iban, class: finance-pii }", "- { path: a, classes: { x: finance-pii } }", "classes and default_class need key_from"),
        ("- { path: payment.iban, class: finance-pii }", "- { class: finance-pii }", "path: required"),
    ])
    func shapeErrorsNameTheProblem(old: String, new: String, problem: String) throws {
        #expect(throws: ConfigurationError.self) { try Catalog.parse(yaml: Self.catalog.replacingOccurrences(of: old, with: new)) }
        do {
            _ = try Catalog.parse(yaml: Self.catalog.replacingOccurrences(of: old, with: new))
        } catch {
            #expect("\(error)".contains(problem), "\(error)")
        }
    }

    @Test func aBarePartNeedsATopicSelection() throws {
        let yaml = Self.catalog
            .replacingOccurrences(of: "      key_from: { json: department }\n      classes: { finance: finance-notes, sales: sales-notes }\n", with: "")
        do {
            _ = try Catalog.parse(yaml: yaml)
            Issue.record("a bare path without a topic selection parsed")
        } catch {
            #expect(error.problem.contains("'notes' names no class"), "\(error)")
        }
    }
}
