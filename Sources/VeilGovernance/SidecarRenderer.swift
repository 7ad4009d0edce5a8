import VeilConfig
import VeilKMS
import Yams

/// Turns a catalog into one application's sidecar configuration, in exactly the YAML that
/// `veil run` reads (docs/CONFIGURATION.md), and says which keys its local keyrings must hold.
///
/// Only live grants are rendered: a lapsed grant is left out, and one that lapses later keeps
/// its `expires`, which the sidecar enforces by itself.
public struct SidecarRenderer {
    public let catalog: Catalog
    public let now: UTCTimestamp

    public init(_ catalog: Catalog, now: UTCTimestamp = .now()) {
        self.catalog = catalog
        self.now = now
    }

    /// A keyring the application needs: the granted keys of one local domain, copied from the
    /// domain's keyring.
    public struct KeyringPlan: Sendable, Hashable {
        public var domain: String
        public var source: String
        public var destination: String
        public var identity: String
        public var keyIds: [String]
    }

    /// A rendered configuration and the keyrings it points at.
    public struct Rendered: Sendable {
        public var yaml: String
        public var keyrings: [KeyringPlan]
    }

    /// Renders `application`. With `keyringDirectory`, each local domain gets a keyring of the
    /// application's own there (`APP.DOMAIN.keyring`) holding only its granted keys; without,
    /// the configuration points at the domains' keyrings (the shared demo layout).
    public func render(application name: String, keyringDirectory: String? = nil, source: String = "the catalog") throws(RenderError) -> Rendered {
        guard let application = catalog.applications[name] else {
            throw RenderError("no application '\(name)' in the catalog (applications: \(catalog.applicationNames.joined(separator: ", ")))")
        }
        let blocking = CatalogCheck(catalog, now: now).findings().filter { $0.severity == .error && $0.rule != .expiredGrant }
        if !blocking.isEmpty {
            throw RenderError("the catalog has errors; fix them first (veil policy check):\n" + blocking.map { "  \($0)" }.joined(separator: "\n"))
        }
        let grants = catalog.grants(of: name).filter { $0.isLive(at: now) }
        var usedDomains: [String] = []
        for grant in grants where !usedDomains.contains(grant.domain) { usedDomains.append(grant.domain) }
        usedDomains.sort()

        var kms: [(Node, Node)] = []
        var keyrings: [KeyringPlan] = []
        for domainName in usedDomains {
            let domain = catalog.domains[domainName]!
            switch domain.kms {
            case .local(let keyring):
                var path = keyring
                if let keyringDirectory {
                    path = keyringDirectory.hasSuffix("/") ? keyringDirectory + "\(name).\(domainName).keyring" : keyringDirectory + "/\(name).\(domainName).keyring"
                    let ids = Set(grants.filter { $0.domain == domainName }.map { domain.keys[$0.key]! }).sorted()
                    keyrings.append(KeyringPlan(domain: domainName, source: keyring, destination: path, identity: application.identity, keyIds: ids))
                }
                kms.append((YAMLNodes.string(domainName), YAMLNodes.flowMapping([("type", YAMLNodes.string("local")), ("keyring", YAMLNodes.string(path))])))
            case .aws(_, let region, let endpoint, let profile):
                var entries = [("type", YAMLNodes.string("aws-kms")), ("region", YAMLNodes.string(region))]
                if let endpoint { entries.append(("endpoint", YAMLNodes.string(endpoint))) }
                if let profile { entries.append(("profile", YAMLNodes.string(profile))) }
                kms.append((YAMLNodes.string(domainName), YAMLNodes.flowMapping(entries)))
            }
        }

        var root: [(String, Node)] = [("identity", YAMLNodes.string(application.identity))]
        root += application.sidecar.map { ($0.key, $0.value) }
        if !kms.isEmpty { root.append(("kms", Node.mapping(Node.Mapping(kms, .implicit, .block)))) }
        var grantEntries: [(String, Node)] = []
        for purpose in Catalog.Purpose.allCases {
            let list = grants.filter { $0.purpose == purpose }
            guard !list.isEmpty else { continue }
            var seen = Set<String>()
            var items: [Node] = []
            for grant in list {
                let reference = catalog.reference(domain: grant.domain, key: grant.key)!
                // The earliest expiry of duplicate grants is what the sidecar would apply anyway.
                guard seen.insert(reference).inserted else { continue }
                let expiry = list.filter { catalog.reference(domain: $0.domain, key: $0.key) == reference }.compactMap(\.expires).min()
                let unlimited = list.contains { catalog.reference(domain: $0.domain, key: $0.key) == reference && $0.expires == nil }
                if let expiry, !unlimited {
                    items.append(YAMLNodes.flowMapping([("key", YAMLNodes.string(reference)), ("expires", YAMLNodes.string(expiry.description))]))
                } else {
                    items.append(YAMLNodes.string(reference))
                }
            }
            grantEntries.append((purpose.rawValue, Node.sequence(Node.Sequence(items, .implicit, .flow))))
        }
        if !grantEntries.isEmpty { root.append(("grants", YAMLNodes.mapping(grantEntries))) }
        var topics: [Node] = []
        for topic in catalog.topics { topics.append(try self.topic(for: topic, application: name, grants: grants)) }
        if !topics.isEmpty { root.append(("topics", Node.sequence(Node.Sequence(topics, .implicit, .block)))) }

        let body: String
        do {
            body = try Yams.serialize(node: YAMLNodes.mapping(root), width: -1)
        } catch {
            throw RenderError("cannot write YAML: \(error)")
        }
        let header = "# Sidecar configuration of application \(name), rendered by `veil policy render` from \(source).\n"
            + "# Do not edit: change the catalog and render again.\n"
        return Rendered(yaml: header + body, keyrings: keyrings)
    }

    private func topic(for topic: Catalog.Topic, application: String, grants: [Catalog.Grant]) throws(RenderError) -> Node {
        var entries: [(String, Node)] = [("match", topic.match)]
        if let encrypt = topic.encrypt {
            let encryptable = Set(grants.filter { $0.purpose == .encrypt }.compactMap { catalog.reference(domain: $0.domain, key: $0.key) })
            let chooser = ClassChooser(catalog: catalog, encryptable: encryptable)
            var block: [(String, Node)] = []
            if let fixed = encrypt.fixedClass {
                if let key = chooser.reference(fixed) { block.append(("key_from", YAMLNodes.flowMapping([("fixed", YAMLNodes.string(key))]))) }
            } else if let keyFrom = encrypt.keyFrom {
                // Only the classes this application may encrypt: any other record is unmatched,
                // and on_unmatched (reject by default) keeps it from being written in clear.
                block += chooser.choice(keyFrom: keyFrom, classes: encrypt.classes, defaultClass: encrypt.defaultClass)
            }
            // An application that may encrypt none of the topic's classes does not produce to
            // it; one that may encrypt some must get every part, or a part it cannot encrypt
            // would be written in clear.
            if encrypt.allClasses.contains(where: { chooser.reference($0) != nil }) {
                let parts = PartRenderer(topic: topic.label, application: application, chooser: chooser, topicSelects: !block.isEmpty)
                if let fields = encrypt.fields { block.append(("fields", try parts.render(fields, target: "path"))) }
                if !encrypt.headers.isEmpty { block.append(("headers", try parts.render(encrypt.headers, target: "name"))) }
                if let recordKey = encrypt.recordKeyClass { block.append(("record_key", YAMLNodes.string(try parts.reference(recordKey, for: "record keys")))) }
            }
            if !block.isEmpty {
                block += encrypt.options.map { ($0.key, $0.value) }
                entries.append(("encrypt", YAMLNodes.mapping(block)))
            }
        }
        entries += topic.options.map { ($0.key, $0.value) }
        return YAMLNodes.mapping(entries)
    }
}

/// Resolves data classes to the key references one application may encrypt with.
struct ClassChooser {
    let catalog: Catalog
    let encryptable: Set<String>

    /// The class's key reference, or nil when the application may not encrypt with it.
    func reference(_ dataClass: String) -> String? {
        guard let resolved = catalog.dataClasses[dataClass], let reference = catalog.reference(domain: resolved.domain, key: resolved.key),
            encryptable.contains(reference)
        else { return nil }
        return reference
    }

    /// `key_from`, `keys` and `default_key` for the classes the application may encrypt; empty
    /// when it may encrypt none of them.
    func choice(keyFrom: Node, classes: [(selector: String, dataClass: String)], defaultClass: String?) -> [(String, Node)] {
        let keys = classes.compactMap { entry in reference(entry.dataClass).map { (entry.selector, YAMLNodes.string($0)) } }
        let fallback = defaultClass.flatMap(reference)
        guard !keys.isEmpty || fallback != nil else { return [] }
        var out: [(String, Node)] = [("key_from", keyFrom)]
        if !keys.isEmpty { out.append(("keys", YAMLNodes.mapping(keys))) }
        if let fallback { out.append(("default_key", YAMLNodes.string(fallback))) }
        return out
    }
}

/// Renders the field, header and record-key parts of a topic for an application that
/// encrypts on it, refusing when a part would be left unencrypted.
struct PartRenderer {
    let topic: String
    let application: String
    let chooser: ClassChooser
    /// Whether the rendered topic selection gives bare parts a key.
    let topicSelects: Bool

    func reference(_ dataClass: String, for what: String) throws(RenderError) -> String {
        guard let reference = chooser.reference(dataClass) else { throw refusal(what, classes: [dataClass]) }
        return reference
    }

    func render(_ parts: [Catalog.Topic.Part], target: String) throws(RenderError) -> Node {
        var items: [Node] = []
        for part in parts {
            let what = "\(target) '\(part.target)'"
            switch part.selection {
            case .topic:
                guard topicSelects else { throw refusal(what, classes: []) }
                items.append(YAMLNodes.string(part.target))
            case .fixed(let dataClass):
                items.append(YAMLNodes.flowMapping([(target, YAMLNodes.string(part.target)), ("key", YAMLNodes.string(try reference(dataClass, for: what)))]))
            case .perRecord(let keyFrom, let classes, let defaultClass):
                let choice = chooser.choice(keyFrom: keyFrom, classes: classes, defaultClass: defaultClass)
                guard !choice.isEmpty else { throw refusal(what, classes: part.selection.classes) }
                items.append(YAMLNodes.mapping([(target, YAMLNodes.string(part.target))] + choice))
            }
        }
        return .sequence(Node.Sequence(items, .implicit, .block))
    }

    private func refusal(_ what: String, classes: [String]) -> RenderError {
        let named = classes.isEmpty ? "the topic's classes" : "data class " + classes.joined(separator: " or ")
        return RenderError(
            "application \(application) encrypts on topic \(topic) but may not encrypt its \(what) (\(named)): "
                + "its records would carry that part in clear. Grant the class's key for encrypt, or remove the application's encrypt grants for the topic")
    }
}

/// Rendering refused: the application is unknown or the catalog is inconsistent.
public struct RenderError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Builds YAML nodes whose scalars read back as what they were written as: a string that
/// YAML could take for a number, boolean or null is quoted.
enum YAMLNodes {
    static func string(_ text: String) -> Node {
        .scalar(Node.Scalar(text, .implicit, isPlainSafe(text) ? .plain : .doubleQuoted))
    }

    static func mapping(_ entries: [(String, Node)]) -> Node {
        .mapping(Node.Mapping(entries.map { (string($0.0), $0.1) }, .implicit, .block))
    }

    static func flowMapping(_ entries: [(String, Node)]) -> Node {
        .mapping(Node.Mapping(entries.map { (string($0.0), $0.1) }, .implicit, .flow))
    }

    private static let reserved: Set<String> = ["true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"]

    static func isPlainSafe(_ text: String) -> Bool {
        guard let first = text.unicodeScalars.first, first.properties.isAlphabetic || first == "/" || first.properties.numericType != nil else {
            return false
        }
        guard !reserved.contains(text.lowercased()) else { return false }
        let allowed = text.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "-_./@".unicodeScalars.contains($0) || $0 == ":") }
        guard allowed, !text.hasSuffix(":"), !text.contains(": ") else { return false }
        // Starting with a letter it is a string; starting with a digit it may be a number, a
        // timestamp or YAML 1.1's sexagesimal 1:30, so only an IPv4 HOST:PORT stays plain.
        if first.properties.isAlphabetic || first == "/" { return true }
        return !text.unicodeScalars.contains { $0.properties.isAlphabetic } && text.contains(":") && text.filter { $0 == "." }.count == 3
    }
}

/// Writes the keyrings a rendered configuration points at.
public enum KeyringWriter {
    /// Replaces each destination with a fresh keyring holding exactly the planned keys, so a
    /// revoked grant disappears from the application's keyring too.
    public static func write(_ plans: [SidecarRenderer.KeyringPlan]) throws(RenderError) {
        for plan in plans {
            let temporary = plan.destination + ".rendering"
            _ = unlink(temporary)
            do {
                try KeyringFile.create(at: temporary, identity: plan.identity)
                for id in plan.keyIds { try KeyringFile.grant(id, from: plan.source, to: temporary) }
            } catch {
                _ = unlink(temporary)
                throw RenderError("cannot write keyring \(plan.destination) from domain \(plan.domain)'s keyring \(plan.source): \(error)")
            }
            guard rename(temporary, plan.destination) == 0 else {
                _ = unlink(temporary)
                throw RenderError("cannot move the new keyring into place at \(plan.destination)")
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
