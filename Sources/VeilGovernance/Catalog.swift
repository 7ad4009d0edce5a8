import VeilConfig
import Yams

/// Governance's single source of truth: which domains own which keys in which KMS, the data
/// classes those keys protect, the applications, the grants that let applications use keys,
/// and topic policies written in terms of data classes.
///
/// Parsed from YAML by ``parse(yaml:)``; ``CatalogCheck`` finds what is wrong with it,
/// ``SidecarRenderer`` turns it into per-application sidecar configurations.
public struct Catalog {
    public var domains: [String: Domain]
    public var dataClasses: [String: DataClass]
    public var applications: [String: Application]
    public var grants: [Grant]
    public var topics: [Topic]

    /// A governance domain, e.g. finance: it owns keys, held in its KMS.
    public struct Domain: Sendable {
        public var name: String
        public var kms: KMS
        /// Logical key name to the key's id in the KMS (an ARN for AWS; the keyring id locally).
        public var keys: [String: String]
        /// Key names in file order, for stable output.
        public var keyOrder: [String]
    }

    /// Where a domain's keys live.
    public enum KMS: Sendable, Hashable {
        case local(keyring: String)
        case aws(account: String, region: String, endpoint: String?, profile: String?)

        /// For people: "local keyring keys/finance.keyring", "AWS KMS 1111… us-east-1".
        public var summary: String {
            switch self {
            case .local(let keyring): "local keyring \(keyring)"
            case .aws(let account, let region, _, _): "AWS KMS account \(account) \(region)"
            }
        }
    }

    /// A kind of data (finance-pii, sales-orders) and the key that protects it.
    public struct DataClass: Sendable {
        public var name: String
        public var domain: String
        public var key: String
        public var description: String?
        public var path: String
    }

    /// An application and how its sidecar is deployed.
    public struct Application {
        public var name: String
        /// The sidecar identity (default: the application name).
        public var identity: String
        /// The IAM principal (role ARN) that runs the sidecar, for `veil policy iam`.
        public var awsPrincipal: String?
        /// Deployment settings copied verbatim into the sidecar configuration (listen, upstream, …).
        public var sidecar: [(key: String, value: Node)]
    }

    /// What a grant lets its application do with the key.
    public enum Purpose: String, Sendable, Hashable, CaseIterable {
        case encrypt
        case decrypt
    }

    /// Permission for one application to use one key for one purpose, until an optional expiry.
    public struct Grant: Sendable {
        public var application: String
        public var domain: String
        public var key: String
        public var purpose: Purpose
        public var expires: UTCTimestamp?
        public var approvedBy: String
        public var path: String

        /// `domain/key`, as grants name keys.
        public var keyName: String { "\(domain)/\(key)" }

        /// Whether the grant still allows anything at `now`.
        public func isLive(at now: UTCTimestamp) -> Bool { expires.map { now < $0 } ?? true }
    }

    /// A topic policy in terms of data classes.
    public struct Topic {
        public var match: Node
        /// For messages: the topic name or pattern as written.
        public var label: String
        public var encrypt: Encrypt?
        /// Consumer-side options copied verbatim (on_denied, require_encrypted, …).
        public var options: [(key: String, value: Node)]
        public var path: String

        /// How records are encrypted: the whole value, or JSON fields, headers and the record
        /// key, each under a data class chosen per record or fixed.
        public struct Encrypt {
            public var keyFrom: Node?
            /// Selector value to data class.
            public var classes: [(selector: String, dataClass: String)]
            public var defaultClass: String?
            /// Every record of the topic is of this class.
            public var fixedClass: String?
            /// JSON fields encrypted one by one (field-level encryption); nil: the whole value.
            public var fields: [Part]?
            /// Record headers encrypted by name.
            public var headers: [Part]
            /// The data class whose key encrypts record keys deterministically.
            public var recordKeyClass: String?
            public var options: [(key: String, value: Node)]

            /// Every data class the policy can choose.
            public var allClasses: [String] {
                classes.map(\.dataClass) + [defaultClass, fixedClass, recordKeyClass].compactMap { $0 }
                    + ((fields ?? []) + headers).flatMap(\.selection.classes)
            }
        }

        /// A JSON field (by path) or a header (by name) and the data class it is encrypted as.
        public struct Part {
            public var target: String
            public var selection: Selection
            public var path: String
        }

        /// How a part's data class is chosen.
        public enum Selection {
            /// The topic's own `key_from`/`classes`/`default_class`.
            case topic
            case fixed(String)
            case perRecord(keyFrom: Node, classes: [(selector: String, dataClass: String)], defaultClass: String?)

            var classes: [String] {
                switch self {
                case .topic: []
                case .fixed(let dataClass): [dataClass]
                case .perRecord(_, let classes, let defaultClass): classes.map(\.dataClass) + [defaultClass].compactMap { $0 }
                }
            }
        }

        /// Every data class the policy names.
        public var dataClasses: [String] { encrypt?.allClasses ?? [] }
    }
}

extension Catalog {
    /// The key reference a sidecar uses for `domain`'s key `key`: `DOMAIN/KEY_ID`.
    public func reference(domain: String, key: String) -> String? {
        guard let id = domains[domain]?.keys[key] else { return nil }
        return "\(domain)/\(id)"
    }

    /// Grants of one application, in file order.
    public func grants(of application: String) -> [Grant] { grants.filter { $0.application == application } }

    /// Applications in name order.
    public var applicationNames: [String] { applications.keys.sorted() }

    /// Data classes in name order.
    public var dataClassNames: [String] { dataClasses.keys.sorted() }
}
