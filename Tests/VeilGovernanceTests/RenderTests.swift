import Foundation
import Testing
import VeilConfig
import VeilGovernance
import VeilKMS

@Suite struct RenderTests {
    /// The rendered configurations of the seed's three applications mean exactly what the
    /// hand-written config/*.yaml files mean.
    @Test(arguments: [("owner", "config/owner.yaml"), ("finance-consumer", "config/finance.yaml"), ("sales-consumer", "config/sales.yaml")])
    func seedApplicationsRenderToTheSeedConfigurations(app: String, file: String) throws {
        let rendered = try SidecarRenderer(try seedCatalog(), now: noon).render(application: app)
        let got = try VeilConfiguration.parse(yaml: rendered.yaml)
        let want = try VeilConfiguration.parse(yaml: try repositoryFile(file))
        #expect(got.identity == want.identity)
        #expect(got.listen == want.listen)
        #expect(got.upstream.bootstrap == want.upstream.bootstrap)
        #expect(got.brokerPorts == want.brokerPorts)
        #expect(got.kms == want.kms)
        #expect(got.grants == want.grants)
        #expect(got.topics.count == want.topics.count)
        for (g, w) in zip(got.topics, want.topics) {
            #expect("\(g.match)" == "\(w.match)")
            #expect(g.onDenied == w.onDenied)
            #expect(g.requireEncrypted == w.requireEncrypted)
            #expect((g.encrypt == nil) == (w.encrypt == nil))
            if let ge = g.encrypt, let we = w.encrypt {
                #expect(ge.keys == we.keys)
                #expect(ge.keySource == we.keySource)
                #expect(ge.defaultKey == we.defaultKey)
                #expect(ge.onUnmatched == we.onUnmatched)
            }
        }
        #expect(rendered.keyrings.isEmpty)
    }

    @Test func expiriesAreRenderedAndLapsedGrantsLeftOut() throws {
        let catalog = try Catalog.parse(yaml: mixedCatalogYAML)
        let auditor = try VeilConfiguration.parse(yaml: try SidecarRenderer(catalog, now: noon).render(application: "auditor").yaml)
        let pii = KeyReference(kms: "finance", keyId: "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab")!
        // The sales grant lapsed on 2026-11-01: not rendered at all, so no sales KMS either.
        #expect(auditor.grants.decrypt == [pii])
        #expect(auditor.grants.decryptExpiry == [pii: UTCTimestamp(parsing: "2026-12-03T00:00:00Z")!])
        #expect(auditor.kms.keys.sorted() == ["finance"])
        #expect(auditor.kms["finance"]?.backend == .awsKMS(region: "us-east-1", endpoint: nil, profile: nil))
        // No encrypt grant for the topics' classes: consumer-side policy only.
        #expect(auditor.topics.allSatisfy { $0.encrypt == nil })
        #expect(auditor.topics[1].onDenied == .redact)
    }

    @Test func encryptBlocksHoldOnlyClassesTheApplicationMayEncrypt() throws {
        let catalog = try Catalog.parse(yaml: mixedCatalogYAML)
        let billing = try VeilConfiguration.parse(yaml: try SidecarRenderer(catalog, now: noon).render(application: "billing").yaml)
        #expect(billing.topics[0].encrypt?.keySource == .fixed(KeyReference(kms: "finance", keyId: "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab")!))
        #expect(billing.topics[1].encrypt == nil)
        let shop = try VeilConfiguration.parse(yaml: try SidecarRenderer(catalog, now: noon).render(application: "shop").yaml)
        #expect(shop.topics[0].encrypt == nil)
        #expect(shop.topics[1].encrypt?.keys == ["order": KeyReference(kms: "sales", keyId: "orders")!])
    }

    @Test func inconsistentCatalogsAreNotRendered() throws {
        let catalog = try Catalog.parse(yaml: mixedCatalogYAML + "\n  - match: x\n    encrypt: { fixed_class: missing }\n")
        #expect(throws: RenderError.self) { try SidecarRenderer(catalog, now: noon).render(application: "shop") }
        #expect(throws: RenderError.self) { try SidecarRenderer(try seedCatalog(), now: noon).render(application: "nobody") }
    }

    /// With a keyring directory each application gets keyrings of its own with only its grants.
    @Test func applicationKeyringsHoldOnlyGrantedKeys() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for domain in ["finance", "sales"] {
            try KeyringFile.create(at: "\(dir)/\(domain).keyring", identity: domain)
            try KeyringFile.createKey("department-key", in: "\(dir)/\(domain).keyring")
            try KeyringFile.createKey("unrelated", in: "\(dir)/\(domain).keyring")
        }
        let yaml = try repositoryFile("config/catalog.yaml").replacingOccurrences(of: "keys/", with: "\(dir)/")
        let catalog = try Catalog.parse(yaml: yaml)
        let rendered = try SidecarRenderer(catalog, now: noon).render(application: "finance-consumer", keyringDirectory: dir + "/out")
        try FileManager.default.createDirectory(atPath: dir + "/out", withIntermediateDirectories: true)
        try KeyringWriter.write(rendered.keyrings)
        let config = try VeilConfiguration.parse(yaml: rendered.yaml)
        #expect(config.kms["finance"]?.backend == .local(keyring: "\(dir)/out/finance-consumer.finance.keyring"))
        #expect(config.kms["sales"] == nil)
        let keyring = try KeyringFile.list("\(dir)/out/finance-consumer.finance.keyring")
        #expect(keyring.identity == "finance-consumer")
        #expect(keyring.keyIds == ["department-key"])
        // Rendering again after the grant is gone replaces the keyring instead of keeping the key.
        let revoked = try Catalog.parse(yaml: yaml.replacingOccurrences(
            of: "  - { application: finance-consumer, key: finance/department-key, purpose: decrypt, approved_by: finance data owner }\n",
            with: "  - { application: sales-consumer, key: finance/department-key, purpose: decrypt, approved_by: finance data owner }\n"))
        let again = try SidecarRenderer(revoked, now: noon).render(application: "finance-consumer", keyringDirectory: dir + "/out")
        #expect(again.keyrings.isEmpty)
        #expect(try VeilConfiguration.parse(yaml: again.yaml).grants.decrypt.isEmpty)
    }
}
