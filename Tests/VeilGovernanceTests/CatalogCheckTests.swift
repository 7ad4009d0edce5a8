import Testing
import VeilConfig
import VeilGovernance

@Suite struct CatalogCheckTests {
    @Test func seedCatalogIsConsistent() throws {
        let findings = CatalogCheck(try seedCatalog(), now: noon).findings()
        #expect(findings.isEmpty, "\(findings)")
    }

    private func findings(_ yaml: String) throws -> [Finding] {
        CatalogCheck(try Catalog.parse(yaml: yaml), now: noon).findings()
    }

    private let base = """
        domains:
          finance: { kms: { type: local, keyring: f.keyring }, keys: [k1] }
        data_classes:
          fin: { domain: finance, key: k1 }
        applications:
          app: {}
        """

    @Test func danglingReferencesAreErrors() throws {
        let found = try findings(base + """

            grants:
              - { application: ghost, key: finance/k1, purpose: decrypt, approved_by: x }
              - { application: app, key: nowhere/k1, purpose: decrypt, approved_by: x }
              - { application: app, key: finance/k1, purpose: decrypt, approved_by: x }
            topics:
              - { match: t, encrypt: { fixed_class: unknown-class } }
            """)
        let dangling = found.filter { $0.rule == .danglingReference }
        #expect(dangling.map(\.path) == ["grants[0].application", "grants[1].key", "topics[0].encrypt"])
        #expect(dangling.allSatisfy { $0.severity == .error })
        #expect(dangling[0].message.contains("ghost"))
        #expect(dangling[2].message.contains("unknown-class"))
    }

    @Test func grantOnAKeyTheDomainDoesNotOwn() throws {
        let found = try findings(base + """

            grants:
              - { application: app, key: finance/k2, purpose: decrypt, approved_by: x }
              - { application: app, key: finance/k1, purpose: decrypt, approved_by: x }
            """)
        #expect(found.map(\.rule) == [.keyNotOwned])
        #expect(found[0].path == "grants[0].key")
        #expect(found[0].message.contains("does not own"))
    }

    @Test func topicWhoseClassNobodyMayDecrypt() throws {
        let found = try findings(base + """

            grants:
              - { application: app, key: finance/k1, purpose: encrypt, approved_by: x }
            topics:
              - { match: t, encrypt: { fixed_class: fin } }
            """)
        #expect(found.map(\.rule) == [.undecryptableClass])
        #expect(found[0].message.contains("no application may decrypt"))
    }

    @Test func expiredGrantsAreErrorsAndExpiringOnesWarnings() throws {
        let found = try findings(base + """

            grants:
              - { application: app, key: finance/k1, purpose: decrypt, expires: "2026-11-30T11:59:59Z", approved_by: x }
              - { application: app, key: finance/k1, purpose: decrypt, expires: "2026-12-02T00:00:00Z", approved_by: x }
            topics:
              - { match: t, encrypt: { fixed_class: fin } }
            """)
        #expect(found.map(\.rule) == [.expiredGrant, .expiringGrant])
        #expect(found.map(\.severity) == [.error, .warning])
        #expect(found[0].message.contains("expired at 2026-11-30T11:59:59Z"))
    }

    @Test func onlyAnExpiredReaderLeavesTheClassUnreadable() throws {
        let found = try findings(base + """

            grants:
              - { application: app, key: finance/k1, purpose: decrypt, expires: "2026-01-01T00:00:00Z", approved_by: x }
            topics:
              - { match: t, encrypt: { fixed_class: fin } }
            """)
        #expect(Set(found.map(\.rule)) == [.expiredGrant, .undecryptableClass])
    }

    @Test func shapeErrorsNameThePath() throws {
        #expect(throws: ConfigurationError.self) { try Catalog.parse(yaml: "domains: {}\ngrants: [{ application: a, key: f/k, purpose: decrypt }]") }
        do {
            _ = try Catalog.parse(yaml: "domains: {}\ngrants: [{ application: a, key: f/k, purpose: decrypt }]")
        } catch {
            #expect("\(error)".contains("grants[0].approved_by: required"))
        }
        do {
            _ = try Catalog.parse(yaml: "domains: {}\ngrants: [{ application: a, key: f/k, purpose: read, approved_by: x }]")
        } catch {
            #expect("\(error)".contains("grants[0].purpose"))
        }
    }
}
