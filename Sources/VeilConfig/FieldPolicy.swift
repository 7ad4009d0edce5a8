import VeilJSON

/// How one encrypted part (a JSON field, a header, or the whole value) gets its key: a fixed
/// key, or a selector read from the record and looked up in a map.
public struct KeyChoice: Sendable {
    /// Where the selector comes from; ``KeySource/fixed(_:)`` for a fixed key.
    public let source: KeySource
    /// Selector value → key.
    public let keys: [String: KeyReference]
    /// The key when the selector is missing or not in ``keys``.
    public let defaultKey: KeyReference?
    /// For a JSON selector on a field-level topic: the path it is read from.
    public let selectorPath: JSONPath?
    private let table: KeyTable

    /// Creates a choice. A JSON source's field is parsed as a path (it must name one value).
    public init(source: KeySource, keys: [String: KeyReference] = [:], defaultKey: KeyReference? = nil) throws(JSONPathError) {
        self.source = source
        self.keys = keys
        self.defaultKey = defaultKey
        table = KeyTable(keys)
        if case .json(let field) = source {
            let path = try JSONPath(parsing: field)
            guard !path.hasWildcard else {
                throw JSONPathError(path: field, problem: "a key selector must name one value; [*] is not allowed")
            }
            selectorPath = path
        } else {
            selectorPath = nil
        }
    }

    /// A fixed key.
    public static func fixed(_ key: KeyReference) -> KeyChoice {
        // A fixed source has no path, so this cannot throw.
        try! KeyChoice(source: .fixed(key))
    }

    /// Every key this choice can select.
    public var allKeys: Set<KeyReference> {
        var all = Set(keys.values)
        if let defaultKey { all.insert(defaultKey) }
        if case .fixed(let key) = source { all.insert(key) }
        return all
    }

    /// Chooses the key given the selector bytes (an unescaped string, a header value or the
    /// record key); `nil` when the record has no selector. Ignored for a fixed key.
    public func select(selector: UnsafeRawBufferPointer?) -> KeySelection {
        if case .fixed(let key) = source { return .key(key) }
        guard let selector else { return fallback(nil) }
        if let key = table.find(selector) { return .key(key) }
        return fallback(String(decoding: selector, as: UTF8.self))
    }

    private func fallback(_ selector: String?) -> KeySelection {
        if let defaultKey { return .key(defaultKey) }
        return .unmatched(selector: selector)
    }
}

/// One JSON field (or every value one path selects) encrypted on its own.
public struct FieldEncryptionRule: Sendable {
    /// Which values.
    public let path: JSONPath
    /// Which key.
    public let choice: KeyChoice

    public init(path: JSONPath, choice: KeyChoice) {
        self.path = path
        self.choice = choice
    }
}

/// One record header, by name, whose value is encrypted.
public struct HeaderEncryptionRule: Sendable {
    /// The header name (every header of that name is encrypted).
    public let name: String
    /// Which key.
    public let choice: KeyChoice

    public init(name: String, choice: KeyChoice) {
        self.name = name
        self.choice = choice
    }
}

/// What happens to a record value that is not JSON on a topic with field-level encryption.
public enum InvalidJSONAction: String, Hashable, Sendable {
    /// The produce request fails for that partition, naming the topic and the reason.
    case reject
    /// The value is written as it is, unencrypted.
    case plaintext
}

/// What a consumer receives in place of an encrypted field, header or record key it may not
/// decrypt.
public enum DeniedFieldAction: String, Hashable, Sendable {
    /// The member, element or header is removed.
    case remove
    /// The value becomes JSON `null` (a header value becomes a null value).
    case null
    /// The value becomes the topic's `field_placeholder`.
    case redact
    /// The encrypted string stays as it is.
    case ciphertext
    /// The fetch fails for that partition.
    case error

    /// The rule that corresponds to a topic's whole-record `on_denied`.
    public init(_ action: DeniedAction) {
        switch action {
        case .drop: self = .remove
        case .redact: self = .redact
        case .ciphertext: self = .ciphertext
        case .error: self = .error
        }
    }
}

extension KeyChoice {
    /// Parses a field's or header's own key, if it has one: `key: KMS/KEY`, or `key_from` with
    /// `keys` and `default_key`. Nil when the entry names none (it then uses the topic's).
    init?(entry fields: ConfigMapping, at node: ConfigNode, kms: [String: KMSConfiguration]) throws(ConfigurationError) {
        let fixed = fields["key"]
        let from = fields["key_from"]
        if fixed == nil, from == nil {
            for key in ["keys", "default_key"] where fields[key] != nil {
                throw fields[key]!.error("only used with key_from")
            }
            return nil
        }
        if let fixed {
            guard from == nil else { throw node.error("set either key or key_from, not both") }
            for key in ["keys", "default_key"] where fields[key] != nil {
                throw fields[key]!.error("not used with key; remove it")
            }
            self = .fixed(try KeyReference(fixed, kms: kms))
            return
        }
        try self.init(selection: fields, at: node, kms: kms)
    }

    /// Parses `key_from` (required), `keys` and `default_key` from a mapping.
    init(selection fields: ConfigMapping, at node: ConfigNode, kms: [String: KMSConfiguration]) throws(ConfigurationError) {
        let sourceNode = try fields.required("key_from")
        let source = try KeySource(sourceNode, kms: kms)
        var keys: [String: KeyReference] = [:]
        if let keysNode = fields["keys"] {
            if case .fixed = source { throw keysNode.error("not used with key_from fixed; remove it") }
            for (key, value) in try keysNode.mapping().entries {
                keys[key.value] = try KeyReference(value, kms: kms)
            }
        }
        let defaultKey = try fields["default_key"].map { node throws(ConfigurationError) in try KeyReference(node, kms: kms) }
        if case .fixed = source {
        } else if keys.isEmpty && defaultKey == nil {
            throw ConfigurationError(
                path: "\(node.path).keys", problem: "required: map selector values to keys, or set default_key", line: node.line)
        }
        do {
            try self.init(source: source, keys: keys, defaultKey: defaultKey)
        } catch {
            throw ConfigurationError(path: "\(sourceNode.path).json", problem: error.description, line: sourceNode.line)
        }
    }
}

extension FieldEncryptionRule {
    /// `PATH`, or `{ path: PATH, key: … | key_from: … }`.
    init(_ node: ConfigNode, inherited: KeyChoice?, kms: [String: KMSConfiguration]) throws(ConfigurationError) {
        let text: String
        var choice: KeyChoice?
        var pathNode = node
        if node.isMapping {
            let fields = try node.mapping(allowed: ["path", "key", "key_from", "keys", "default_key"])
            pathNode = try fields.required("path")
            text = try pathNode.nonEmptyString()
            choice = try KeyChoice(entry: fields, at: node, kms: kms)
        } else {
            text = try node.nonEmptyString()
        }
        let path: JSONPath
        do {
            path = try JSONPath(parsing: text)
        } catch {
            throw pathNode.error(error.description)
        }
        guard let choice = choice ?? inherited else {
            throw node.error("names no key: give it key or key_from, or set encrypt.key_from for every field")
        }
        self.init(path: path, choice: choice)
    }
}

extension HeaderEncryptionRule {
    /// `NAME`, or `{ name: NAME, key: … | key_from: … }`.
    init(_ node: ConfigNode, inherited: KeyChoice?, kms: [String: KMSConfiguration]) throws(ConfigurationError) {
        var choice: KeyChoice?
        let name: String
        if node.isMapping {
            let fields = try node.mapping(allowed: ["name", "key", "key_from", "keys", "default_key"])
            name = try fields.required("name").nonEmptyString()
            choice = try KeyChoice(entry: fields, at: node, kms: kms)
        } else {
            name = try node.nonEmptyString()
        }
        guard let choice = choice ?? inherited else {
            throw node.error("names no key: give it key or key_from, or set encrypt.key_from for every header")
        }
        self.init(name: name, choice: choice)
    }
}

/// The JSON paths a part-by-part policy reads from each record value, compiled once at load:
/// the field paths (path i is field rule i), then the distinct JSON key selectors.
public struct PartwiseScanPlan: Sendable {
    /// Every path, located together in one pass.
    public let paths: JSONPathSet
    /// How many leading paths are field rules.
    public let fieldCount: Int
    /// Per field rule: the index in ``paths`` of its JSON key selector, if it has one.
    public let fieldSelectors: [Int?]
    /// Per header rule: the index in ``paths`` of its JSON key selector, if it has one.
    public let headerSelectors: [Int?]

    /// Nil if the rules need more than ``JSONPathSet/capacity`` paths (the parser refuses that).
    public init?(fields: [FieldEncryptionRule], headers: [HeaderEncryptionRule]) {
        var paths = fields.map(\.path)
        var selectorIndex: [JSONPath: Int] = [:]
        func slot(_ choice: KeyChoice) -> Int? {
            guard let path = choice.selectorPath else { return nil }
            if let index = selectorIndex[path] { return index }
            paths.append(path)
            selectorIndex[path] = paths.count - 1
            return paths.count - 1
        }
        fieldSelectors = fields.map { slot($0.choice) }
        headerSelectors = headers.map { slot($0.choice) }
        fieldCount = fields.count
        guard let set = JSONPathSet(paths) else { return nil }
        self.paths = set
    }
}
