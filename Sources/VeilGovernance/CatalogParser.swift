import VeilConfig
import Yams

extension Catalog {
    /// Parses a catalog. Shape problems (unknown keys, wrong types, a grant without an approver)
    /// are errors here, named by key path and line as in sidecar configurations; references
    /// between entries are left to ``CatalogCheck``, which reports all of them at once.
    public static func parse(yaml: String) throws(ConfigurationError) -> Catalog {
        let root = try ConfigNode.root(yaml: yaml, emptyProblem: "the catalog is empty")
        let fields = try root.mapping(allowed: ["domains", "data_classes", "applications", "grants", "topics"])
        var catalog = Catalog(domains: [:], dataClasses: [:], applications: [:], grants: [], topics: [])
        for (key, value) in try fields.required("domains").mapping().entries {
            catalog.domains[key.value] = try Self.domain(key.value, value)
        }
        for (key, value) in try fields["data_classes"]?.mapping().entries ?? [] {
            let entry = try value.mapping(allowed: ["domain", "key", "description"])
            catalog.dataClasses[key.value] = DataClass(
                name: key.value, domain: try entry.required("domain").nonEmptyString(),
                key: try entry.required("key").nonEmptyString(), description: try entry["description"]?.string(), path: value.path)
        }
        for (key, value) in try fields["applications"]?.mapping().entries ?? [] {
            let entry = try value.mapping(allowed: ["identity", "aws_principal", "sidecar"])
            var sidecar: [(key: String, value: Node)] = []
            if let node = entry["sidecar"] {
                // What the sidecar file says about deployment; the catalog owns kms, grants and topics.
                let settings = try node.mapping(allowed: [
                    "listen", "upstream", "broker_ports", "advertised_host", "max_frame_bytes", "dek", "listener",
                ])
                sidecar = settings.entries.map { ($0.key.value, $0.value.node) }
            }
            catalog.applications[key.value] = Application(
                name: key.value, identity: try entry["identity"]?.nonEmptyString() ?? key.value,
                awsPrincipal: try entry["aws_principal"]?.nonEmptyString(), sidecar: sidecar)
        }
        for node in try fields["grants"]?.list() ?? [] { catalog.grants.append(try Self.grant(node)) }
        for node in try fields["topics"]?.list() ?? [] { catalog.topics.append(try Self.topic(node)) }
        return catalog
    }

    private static func domain(_ name: String, _ node: ConfigNode) throws(ConfigurationError) -> Domain {
        let fields = try node.mapping(allowed: ["kms", "keys"])
        let kmsNode = try fields.required("kms")
        let kmsFields = try kmsNode.mapping(allowed: ["type", "keyring", "account", "region", "endpoint", "profile"])
        let kms: KMS
        switch try kmsFields.required("type").choice(["local": "local", "aws-kms": "aws-kms"]) {
        case "local":
            kms = .local(keyring: try kmsFields.required("keyring").nonEmptyString())
        default:
            kms = .aws(
                account: try kmsFields.required("account").nonEmptyString(), region: try kmsFields.required("region").nonEmptyString(),
                endpoint: try kmsFields["endpoint"]?.nonEmptyString(), profile: try kmsFields["profile"]?.nonEmptyString())
        }
        var keys: [String: String] = [:]
        var order: [String] = []
        // A key is a name (its id in a local keyring) or `{ name: N, arn: ARN }` for AWS KMS.
        for entry in try fields.required("keys").list() {
            let keyName: String
            let id: String
            if entry.isMapping {
                let key = try entry.mapping(allowed: ["name", "arn", "id"])
                keyName = try key.required("name").nonEmptyString()
                if let arn = try key["arn"]?.nonEmptyString() {
                    id = arn
                } else {
                    id = try key["id"]?.nonEmptyString() ?? keyName
                }
            } else {
                keyName = try entry.nonEmptyString()
                id = keyName
            }
            guard keys[keyName] == nil else { throw entry.error("key '\(keyName)' is listed twice in domain \(name)") }
            if case .aws = kms, !id.hasPrefix("arn:") {
                throw entry.error("a key in an AWS KMS domain needs its ARN: { name: \(keyName), arn: arn:aws:kms:REGION:ACCOUNT:key/ID }")
            }
            keys[keyName] = id
            order.append(keyName)
        }
        return Domain(name: name, kms: kms, keys: keys, keyOrder: order)
    }

    private static func grant(_ node: ConfigNode) throws(ConfigurationError) -> Grant {
        let fields = try node.mapping(allowed: ["application", "key", "purpose", "expires", "approved_by"])
        let keyNode = try fields.required("key")
        let key = try keyNode.nonEmptyString()
        let parts = key.split(separator: "/", maxSplits: 1)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
            throw keyNode.error("expected DOMAIN/KEY, such as finance/department-key, got '\(key)'")
        }
        var expires: UTCTimestamp?
        if let node = fields["expires"] {
            let text = try node.nonEmptyString()
            guard let time = UTCTimestamp(parsing: text) else {
                throw node.error("expected a UTC time such as 2026-11-30T21:00:00Z, got '\(text)'")
            }
            expires = time
        }
        return Grant(
            application: try fields.required("application").nonEmptyString(), domain: String(parts[0]), key: String(parts[1]),
            purpose: try fields.required("purpose").choice(["encrypt": Purpose.encrypt, "decrypt": Purpose.decrypt]),
            expires: expires, approvedBy: try fields.required("approved_by").nonEmptyString(), path: node.path)
    }

    private static func topic(_ node: ConfigNode) throws(ConfigurationError) -> Topic {
        let fields = try node.mapping(allowed: [
            "match", "encrypt", "on_denied", "redact_placeholder", "require_encrypted", "on_denied_field", "field_placeholder",
        ])
        let match = try fields.required("match")
        let label = match.isMapping ? (try? match.mapping().entries.first.map { try $0.value.string() }) ?? nil : try? match.string()
        var encrypt: Topic.Encrypt?
        if let node = fields["encrypt"] {
            let entry = try node.mapping(allowed: [
                "key_from", "classes", "default_class", "fixed_class", "fields", "headers", "record_key", "on_unmatched",
                "on_invalid_json", "bind_topic",
            ])
            let classes = try Self.classes(entry["classes"])
            let fixed = try entry["fixed_class"]?.nonEmptyString()
            let topicSelects = fixed != nil || entry["key_from"] != nil
            let parts = try entry["fields"].map { node throws(ConfigurationError) in
                try Self.parts(node, target: "path", topicSelects: topicSelects)
            }
            let headers = try entry["headers"].map { node throws(ConfigurationError) in
                try Self.parts(node, target: "name", topicSelects: topicSelects)
            } ?? []
            let recordKey = try entry["record_key"]?.nonEmptyString()
            let partwise = parts != nil || !headers.isEmpty || recordKey != nil
            guard fixed != nil || entry["key_from"] != nil || partwise else {
                throw node.error("needs key_from with classes (a data class per record), fixed_class, or fields/headers/record_key")
            }
            if parts == nil, entry["on_invalid_json"] != nil {
                throw node.error("on_invalid_json applies to field-level encryption only; add fields or remove it")
            }
            encrypt = Topic.Encrypt(
                keyFrom: entry["key_from"]?.node, classes: classes, defaultClass: try entry["default_class"]?.nonEmptyString(),
                fixedClass: fixed, fields: parts, headers: headers, recordKeyClass: recordKey,
                options: entry.entries.filter { ["on_unmatched", "on_invalid_json", "bind_topic"].contains($0.key.value) }
                    .map { ($0.key.value, $0.value.node) })
        }
        return Topic(
            match: match.node, label: label ?? "topics[\(node.path)]", encrypt: encrypt,
            options: fields.entries.filter { !["match", "encrypt"].contains($0.key.value) }.map { ($0.key.value, $0.value.node) },
            path: node.path)
    }

    private static func classes(_ node: ConfigNode?) throws(ConfigurationError) -> [(selector: String, dataClass: String)] {
        var classes: [(selector: String, dataClass: String)] = []
        for (key, value) in try node?.mapping().entries ?? [] {
            classes.append((key.value, try value.nonEmptyString()))
        }
        return classes
    }

    /// `fields` (target `path`) or `headers` (target `name`): each a bare target that uses the
    /// topic's class selection, or `{ TARGET: …, class: C }`, or `{ TARGET: …, key_from: …,
    /// classes: …, default_class: … }`.
    private static func parts(_ node: ConfigNode, target: String, topicSelects: Bool) throws(ConfigurationError) -> [Topic.Part] {
        var parts: [Topic.Part] = []
        func topicSelection(_ entry: ConfigNode, _ name: String) throws(ConfigurationError) -> Topic.Selection {
            guard topicSelects else {
                throw entry.error("'\(name)' names no class, and the topic has no key_from or fixed_class to choose one")
            }
            return .topic
        }
        for entry in try node.list() {
            guard entry.isMapping else {
                let name = try entry.nonEmptyString()
                parts.append(Topic.Part(target: name, selection: try topicSelection(entry, name), path: entry.path))
                continue
            }
            let fields = try entry.mapping(allowed: [target, "class", "key_from", "classes", "default_class"])
            let name = try fields.required(target).nonEmptyString()
            let selection: Topic.Selection
            if let fixed = fields["class"] {
                guard fields["key_from"] == nil, fields["classes"] == nil, fields["default_class"] == nil else {
                    throw fixed.error("class and key_from/classes/default_class exclude each other")
                }
                selection = .fixed(try fixed.nonEmptyString())
            } else if let keyFrom = fields["key_from"] {
                selection = .perRecord(
                    keyFrom: keyFrom.node, classes: try Self.classes(fields["classes"]),
                    defaultClass: try fields["default_class"]?.nonEmptyString())
            } else {
                guard fields["classes"] == nil, fields["default_class"] == nil else {
                    throw entry.error("classes and default_class need key_from")
                }
                selection = try topicSelection(entry, name)
            }
            parts.append(Topic.Part(target: name, selection: selection, path: entry.path))
        }
        return parts
    }
}
