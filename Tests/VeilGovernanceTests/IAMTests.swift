import Foundation
import Testing
import VeilGovernance

/// Structure checks against the IAM policy grammar (Version, Statement[], Sid, Effect,
/// Principal, Action, Resource, Condition). tests/interop/test_governance.py also runs the
/// documents through parliament, AWS's policy linter from PyPI.
@Suite struct IAMTests {
    private let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

    private func documents() throws -> [IAMPolicies.Document] {
        let (documents, missing, localOnly) = IAMPolicies(try Catalog.parse(yaml: mixedCatalogYAML), now: noon).documents()
        #expect(missing.isEmpty)
        // shop's two grants on the local sales keyring; the auditor's sales grant has lapsed.
        #expect(localOnly.map(\.application) == ["shop", "shop"])
        return documents
    }

    private func json(_ document: IAMPolicies.Document) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(document.json.utf8)) as? [String: Any])
    }

    @Test func everyDocumentFollowsTheGrammar() throws {
        let docs = try documents()
        #expect(docs.map(\.fileName) == ["iam/auditor.json", "iam/billing.json", "kms/finance.pii.json"])
        for document in docs {
            let policy = try json(document)
            #expect(Set(policy.keys) == ["Version", "Statement"])
            #expect(policy["Version"] as? String == "2012-10-17")
            let statements = try #require(policy["Statement"] as? [[String: Any]])
            #expect(!statements.isEmpty)
            var sids = Set<String>()
            for statement in statements {
                #expect(Set(statement.keys).isSubset(of: ["Sid", "Effect", "Principal", "Action", "Resource", "Condition"]))
                let sid = try #require(statement["Sid"] as? String)
                #expect(sid.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) })
                #expect(sids.insert(sid).inserted, "duplicate Sid \(sid)")
                #expect(statement["Effect"] as? String == "Allow")
                let actions = try #require(statement["Action"] as? [String])
                #expect(actions.allSatisfy { $0.hasPrefix("kms:") })
                // Identity policies name no principal; key policies must.
                #expect((statement["Principal"] != nil) == (document.kind == .keyPolicy))
            }
        }
    }

    @Test func grantsBecomeActionsOnTheKeyWithExpiryConditions() throws {
        let docs = try documents()
        let billing = try #require(try json(docs[1])["Statement"] as? [[String: Any]])
        #expect(billing.map { $0["Action"] as? [String] ?? [] } == [["kms:GenerateDataKey"], ["kms:Decrypt"]])
        #expect(billing.allSatisfy { $0["Resource"] as? String == arn && $0["Condition"] == nil })
        let auditor = try #require(try json(docs[0])["Statement"] as? [[String: Any]])
        #expect(auditor.count == 1)
        let condition = try #require(auditor[0]["Condition"] as? [String: [String: String]])
        #expect(condition == ["DateLessThan": ["aws:CurrentTime": "2026-12-03T00:00:00Z"]])
        let key = try #require(try json(docs[2])["Statement"] as? [[String: Any]])
        let principals = key.compactMap { ($0["Principal"] as? [String: String])?["AWS"] }
        #expect(principals == ["arn:aws:iam::111122223333:root", "arn:aws:iam::111122223333:role/billing",
                               "arn:aws:iam::111122223333:role/billing", "arn:aws:iam::444455556666:role/auditor"])
    }
}
