import Testing
import VeilConfig
import VeilGovernance

@Suite struct ExpiryTests {
    @Test func timestampsRoundTrip() throws {
        for text in ["1970-01-01T00:00:00Z", "2026-11-30T21:05:09Z", "2000-02-29T23:59:59Z", "2100-12-31T00:00:00Z"] {
            #expect(UTCTimestamp(parsing: text)?.description == text)
        }
        #expect(UTCTimestamp(parsing: "2026-11-30T21:00:00Z")?.secondsSinceEpoch == 1_796_072_400)
        #expect(UTCTimestamp(parsing: "2026-11-30T21:00:00+00:00") == UTCTimestamp(parsing: "2026-11-30T21:00:00Z"))
        for bad in ["2026-02-29T00:00:00Z", "2026-11-30T24:00:00Z", "2026-11-30T21:00:00+01:00", "2026-11-30", "tomorrow"] {
            #expect(UTCTimestamp(parsing: bad) == nil, "\(bad)")
        }
    }

    @Test func aSidecarGrantStopsAtItsExpiry() throws {
        let soon = UTCTimestamp.now().adding(seconds: 2)
        let config = try VeilConfiguration.parse(yaml: """
            identity: x
            upstream: 127.0.0.1:19092
            kms: { f: { type: local, keyring: k } }
            grants:
              decrypt: [{ key: f/a, expires: "\(soon)" }, f/b, { key: f/c, expires: "2020-01-01T00:00:00Z" }]
            """)
        let a = KeyReference(kms: "f", keyId: "a")!, b = KeyReference(kms: "f", keyId: "b")!, c = KeyReference(kms: "f", keyId: "c")!
        #expect(config.grants.allowsDecryption(with: a))
        #expect(config.grants.allowsDecryption(with: b))
        #expect(!config.grants.allowsDecryption(with: c))
        #expect(config.grants.decryptionDenial(for: c) == "grant for f/c expired at 2020-01-01T00:00:00Z")
        #expect(config.grants.decryptionDenial(for: KeyReference(kms: "f", keyId: "z")!) == "no grant for f/z")
        #expect(config.grants.decryptionDenial(for: a, now: soon) != nil)
        #expect(config.grants.decryptionDenial(for: a, now: soon.adding(seconds: -1)) == nil)
    }

    @Test func badExpiriesAreConfigurationErrors() {
        do {
            _ = try VeilConfiguration.parse(yaml: """
                identity: x
                upstream: 127.0.0.1:19092
                kms: { f: { type: local, keyring: k } }
                grants: { decrypt: [{ key: f/a, expires: next week }] }
                """)
            Issue.record("accepted")
        } catch {
            #expect("\(error)".contains("grants.decrypt[0].expires: expected a UTC time"))
        }
    }
}

@Suite struct MatrixTests {
    @Test func tableShowsPurposesAndMarksExpiry() throws {
        let matrix = GrantMatrix(try Catalog.parse(yaml: mixedCatalogYAML), now: noon)
        let table = matrix.table()
        let lines = table.split(separator: "\n").map(String.init)
        #expect(lines[0].hasPrefix("application | finance-pii"))
        #expect(lines.contains { $0.hasPrefix("auditor ") && $0.contains("D! until 2026-12-03T00:00:00Z") && $0.contains("Dx expired 2026-11-01T00:00:00Z") })
        #expect(lines.contains { $0.hasPrefix("billing ") && $0.contains("D, E") || $0.hasPrefix("billing ") && $0.contains("E, D") })
        #expect(lines.contains { $0.hasPrefix("shop ") && $0.contains("| -") })
        #expect(matrix.attention.map(\.application) == ["auditor", "auditor"])
    }

    @Test func pageIsSelfContained() throws {
        let catalog = try Catalog.parse(yaml: mixedCatalogYAML)
        let page = MatrixPage.html(GrantMatrix(catalog, now: noon), catalog: catalog, title: "review <1>")
        #expect(page.contains("<title>review &lt;1&gt;</title>"))
        #expect(!page.contains("<script"))
        #expect(!page.contains("src="))
        #expect(!page.contains("href="))
        #expect(page.contains("class=\"grant decrypt expiring\""))
    }
}
