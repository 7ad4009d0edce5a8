import VeilConfig

/// What `veil policy check` reports about a catalog: one finding per problem, with the key
/// path it is about.
public struct Finding: Sendable, Hashable, CustomStringConvertible {
    public enum Severity: String, Sendable { case error, warning }
    /// Which rule fired, for tests and scripts.
    public enum Rule: String, Sendable {
        case danglingReference = "dangling-reference"
        case keyNotOwned = "key-not-owned"
        case undecryptableClass = "undecryptable-class"
        case expiredGrant = "expired-grant"
        case expiringGrant = "expiring-grant"
        case duplicateIdentity = "duplicate-identity"
    }

    public var severity: Severity
    public var rule: Rule
    public var path: String
    public var message: String

    public var description: String { "\(severity.rawValue): \(path): \(message) [\(rule.rawValue)]" }
}

/// The consistency rules of a catalog: every name resolves, every grant is on a key its
/// domain owns, every data class a topic uses is readable by someone, no grant has lapsed.
public struct CatalogCheck {
    public let catalog: Catalog
    public let now: UTCTimestamp
    /// Grants expiring within this many seconds are warned about.
    public let warnWithin: Int64

    public init(_ catalog: Catalog, now: UTCTimestamp = .now(), warnWithin: Int64 = 7 * 86_400) {
        self.catalog = catalog
        self.now = now
        self.warnWithin = warnWithin
    }

    /// All findings, errors first, then in file order.
    public func findings() -> [Finding] {
        var out: [Finding] = []
        func error(_ rule: Finding.Rule, _ path: String, _ message: String) { out.append(Finding(severity: .error, rule: rule, path: path, message: message)) }
        let domains = catalog.domains.keys.sorted().joined(separator: ", ")
        for name in catalog.dataClassNames {
            let dataClass = catalog.dataClasses[name]!
            guard let domain = catalog.domains[dataClass.domain] else {
                error(.danglingReference, dataClass.path + ".domain", "data class \(name) names domain '\(dataClass.domain)', which is not in the catalog (domains: \(domains))")
                continue
            }
            if domain.keys[dataClass.key] == nil {
                error(.keyNotOwned, dataClass.path + ".key", "data class \(name) uses key '\(dataClass.key)', which domain \(domain.name) does not own (it owns: \(domain.keyOrder.joined(separator: ", ")))")
            }
        }
        var identities: [String: String] = [:]
        for name in catalog.applicationNames {
            let identity = catalog.applications[name]!.identity
            if let other = identities[identity] {
                error(.duplicateIdentity, "applications.\(name).identity", "identity '\(identity)' is also application \(other)'s; audit trails could not tell them apart")
            }
            identities[identity] = name
        }
        for grant in catalog.grants {
            if catalog.applications[grant.application] == nil {
                error(.danglingReference, grant.path + ".application", "grant names application '\(grant.application)', which is not in the catalog")
            }
            if let domain = catalog.domains[grant.domain] {
                if domain.keys[grant.key] == nil {
                    error(.keyNotOwned, grant.path + ".key", "grant on key \(grant.keyName), which domain \(grant.domain) does not own (it owns: \(domain.keyOrder.joined(separator: ", ")))")
                }
            } else {
                error(.danglingReference, grant.path + ".key", "grant names domain '\(grant.domain)', which is not in the catalog (domains: \(domains))")
            }
            if let expires = grant.expires {
                if expires <= now {
                    error(.expiredGrant, grant.path + ".expires", "\(grant.purpose.rawValue) grant of \(grant.keyName) to \(grant.application) expired at \(expires); remove or renew it")
                } else if expires.secondsSinceEpoch - now.secondsSinceEpoch <= warnWithin {
                    out.append(Finding(severity: .warning, rule: .expiringGrant, path: grant.path + ".expires",
                                       message: "\(grant.purpose.rawValue) grant of \(grant.keyName) to \(grant.application) expires at \(expires)"))
                }
            }
        }
        for topic in catalog.topics {
            for dataClass in Set(topic.dataClasses).sorted() {
                guard let resolved = catalog.dataClasses[dataClass] else {
                    error(.danglingReference, topic.path + ".encrypt", "topic \(topic.label) uses data class '\(dataClass)', which is not in the catalog")
                    continue
                }
                let readers = catalog.grants.filter {
                    $0.purpose == .decrypt && $0.domain == resolved.domain && $0.key == resolved.key && $0.isLive(at: now)
                        && catalog.applications[$0.application] != nil
                }
                if readers.isEmpty {
                    error(.undecryptableClass, topic.path + ".encrypt",
                          "topic \(topic.label) writes data class \(dataClass) (key \(resolved.domain)/\(resolved.key)), which no application may decrypt")
                }
            }
        }
        return out.filter { $0.severity == .error } + out.filter { $0.severity == .warning }
    }
}
