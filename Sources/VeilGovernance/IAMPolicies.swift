import VeilConfig
import VeilJSON

/// The AWS side of a catalog: per application an IAM identity policy, per AWS KMS key a key
/// policy, both granting exactly the catalog's live grants on AWS-domain keys.
///
/// Encrypt grants become `kms:GenerateDataKey` (Veil asks KMS for one data key per DEK),
/// decrypt grants `kms:Decrypt`; an expiry becomes a `DateLessThan aws:CurrentTime`
/// condition, so AWS stops honouring the grant at the same second the sidecar does.
/// Grants on local-keyring domains have no AWS counterpart and are listed as such.
public struct IAMPolicies {
    public let catalog: Catalog
    public let now: UTCTimestamp

    public init(_ catalog: Catalog, now: UTCTimestamp = .now()) {
        self.catalog = catalog
        self.now = now
    }

    /// One policy document, with a file name for `--out-dir`.
    public struct Document: Sendable, Hashable {
        public enum Kind: String, Sendable { case identityPolicy = "iam", keyPolicy = "kms" }
        public var kind: Kind
        /// The application (identity policies) or `DOMAIN.KEY` (key policies).
        public var name: String
        /// The policy as JSON text.
        public var json: String
        public var fileName: String { "\(kind.rawValue)/\(name).json" }
    }

    private struct Statement {
        var sid: String
        var principal: String?
        var actions: [String]
        var resource: String
        var expires: UTCTimestamp?
    }

    /// Identity policies for applications with an `aws_principal`, then key policies; applications
    /// with AWS grants but no principal are reported in `missingPrincipals`.
    public func documents() -> (documents: [Document], missingPrincipals: [String], localOnly: [Catalog.Grant]) {
        var identity: [String: [Statement]] = [:]
        var keys: [String: (arn: String, account: String, statements: [Statement])] = [:]
        var missing = Set<String>()
        var localOnly: [Catalog.Grant] = []
        for grant in catalog.grants where grant.isLive(at: now) {
            guard let application = catalog.applications[grant.application], let domain = catalog.domains[grant.domain],
                let keyID = domain.keys[grant.key]
            else { continue }
            guard case .aws(let account, _, _, _) = domain.kms else {
                localOnly.append(grant)
                continue
            }
            let action = grant.purpose == .encrypt ? "kms:GenerateDataKey" : "kms:Decrypt"
            let sid = Self.sid("Veil", grant.purpose.rawValue, grant.domain, grant.key, grant.application)
            if let principal = application.awsPrincipal {
                identity[application.name, default: []].append(Statement(sid: sid, principal: nil, actions: [action], resource: keyID, expires: grant.expires))
                let name = "\(grant.domain).\(grant.key)"
                keys[name, default: (keyID, account, [])].statements.append(
                    Statement(sid: sid, principal: principal, actions: [action], resource: "*", expires: grant.expires))
            } else {
                missing.insert(application.name)
            }
        }
        var documents: [Document] = []
        for name in identity.keys.sorted() {
            documents.append(Document(kind: .identityPolicy, name: name, json: Self.policy(identity[name]!)))
        }
        for name in keys.keys.sorted() {
            let key = keys[name]!
            // Without an administrator statement a key policy locks the account out of its own key.
            let admin = Statement(sid: "EnableAccountAdministration", principal: "arn:aws:iam::\(key.account):root", actions: ["kms:*"], resource: "*", expires: nil)
            documents.append(Document(kind: .keyPolicy, name: name, json: Self.policy([admin] + key.statements)))
        }
        return (documents, missing.sorted(), localOnly)
    }

    /// Statement ids may hold only letters and digits.
    static func sid(_ parts: String...) -> String {
        parts.map { part in
            part.split(whereSeparator: { !($0.isLetter || $0.isNumber) || !$0.isASCII }).map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
        }.joined()
    }

    private static func policy(_ statements: [Statement]) -> String {
        func s(_ text: String) -> String { JSONString.literal(text.utf8) }
        let body = statements.map { statement in
            var fields = ["\"Sid\": \(s(statement.sid))", "\"Effect\": \"Allow\""]
            if let principal = statement.principal { fields.append("\"Principal\": {\"AWS\": \(s(principal))}") }
            fields.append("\"Action\": [" + statement.actions.map(s).joined(separator: ", ") + "]")
            fields.append("\"Resource\": \(s(statement.resource))")
            if let expires = statement.expires {
                fields.append("\"Condition\": {\"DateLessThan\": {\"aws:CurrentTime\": \(s(expires.description))}}")
            }
            return "    {\n      " + fields.joined(separator: ",\n      ") + "\n    }"
        }
        return "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [\n" + body.joined(separator: ",\n") + "\n  ]\n}\n"
    }
}
