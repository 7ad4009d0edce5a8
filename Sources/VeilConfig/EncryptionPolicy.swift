/// How a topic's records are encrypted on produce: which key each record gets.
public struct EncryptionPolicy: Sendable {
    /// Where the per-record selector comes from.
    public let keySource: KeySource
    /// Selector value → key. Unused with ``KeySource/fixed(_:)``.
    public let keys: [String: KeyReference]
    /// The key for records whose selector is absent or not in ``keys``.
    public let defaultKey: KeyReference?
    /// What happens to a record no key was selected for.
    public let onUnmatched: UnmatchedAction
    /// Whether the topic name is bound into the AAD. Turn off only for topics that are mirrored
    /// under another name, since it is what stops records being replayed into other topics.
    public let bindTopic: Bool
    /// Top-level JSON fields to encrypt individually; `nil` encrypts the whole value.
    public let fields: [String]?

    private let table: KeyTable
    private let jsonField: [UInt8]

    /// Creates a policy.
    public init(
        keySource: KeySource,
        keys: [String: KeyReference] = [:],
        defaultKey: KeyReference? = nil,
        onUnmatched: UnmatchedAction = .reject,
        bindTopic: Bool = true,
        fields: [String]? = nil
    ) {
        self.keySource = keySource
        self.keys = keys
        self.defaultKey = defaultKey
        self.onUnmatched = onUnmatched
        self.bindTopic = bindTopic
        self.fields = fields
        self.table = KeyTable(keys)
        if case .json(let field) = keySource { self.jsonField = Array(field.utf8) } else { self.jsonField = [] }
    }

    /// Every key this policy can select.
    public var allKeys: Set<KeyReference> {
        var all = Set(self.keys.values)
        if let defaultKey = self.defaultKey { all.insert(defaultKey) }
        if case .fixed(let key) = self.keySource { all.insert(key) }
        return all
    }

    /// Chooses the key for one record. Runs per record, so it allocates only when a JSON
    /// selector contains escapes or no key matches.
    ///
    /// - Parameters:
    ///   - value: the record value; `nil` for a tombstone.
    ///   - key: the record key; `nil` when the record has none.
    ///   - headers: the record headers; with repeated names the last one counts, as with
    ///     Kafka's `Headers.lastHeader`.
    public func selectKey(
        value: UnsafeRawBufferPointer?,
        key: UnsafeRawBufferPointer? = nil,
        headers: [(String, [UInt8]?)] = []
    ) -> KeySelection {
        switch self.keySource {
        case .fixed(let reference):
            return .key(reference)
        case .json:
            guard let value else { return self.fallback(selector: nil) }
            switch JSONFieldScanner.findTopLevelField(self.jsonField, in: value) {
            case .string(let range, let hasEscapes):
                let raw = UnsafeRawBufferPointer(rebasing: value[range])
                if !hasEscapes { return self.lookup(raw) }
                return JSONFieldScanner.unescape(raw).withUnsafeBytes { self.lookup($0) }
            case .notString, .absent, .duplicate, .invalid:
                return self.fallback(selector: nil)
            }
        case .header(let name):
            guard let header = headers.last(where: { $0.0 == name }), let bytes = header.1 else {
                return self.fallback(selector: nil)
            }
            return bytes.withUnsafeBytes { self.lookup($0) }
        case .recordKey:
            guard let key else { return self.fallback(selector: nil) }
            return self.lookup(key)
        }
    }

    private func lookup(_ selector: UnsafeRawBufferPointer) -> KeySelection {
        if let reference = self.table.find(selector) { return .key(reference) }
        return self.fallback(selector: String(decoding: selector, as: UTF8.self))
    }

    private func fallback(selector: String?) -> KeySelection {
        if let defaultKey = self.defaultKey { return .key(defaultKey) }
        return .unmatched(selector: selector)
    }
}

/// Where the value that selects a record's key comes from.
public enum KeySource: Hashable, Sendable {
    /// A top-level string field of a JSON record value.
    case json(field: String)
    /// A record header's value (UTF-8).
    case header(name: String)
    /// The record key's bytes (UTF-8).
    case recordKey
    /// Always this key; no selector.
    case fixed(KeyReference)
}

/// What happens to a record whose selector matches no key and no `default_key` is set.
public enum UnmatchedAction: String, Hashable, Sendable {
    /// The produce request fails for that partition; nothing is written in plaintext by accident.
    case reject
    /// The record is written unencrypted.
    case plaintext
}

/// The result of key selection for one record.
public enum KeySelection: Hashable, Sendable {
    /// Encrypt under this key.
    case key(KeyReference)
    /// No key applies; `selector` is the value that matched nothing, or `nil` when the selector
    /// was missing (no such field, header or record key, a non-string or non-JSON value).
    case unmatched(selector: String?)
}

/// Selector → key lookup without building a `String` per record.
///
/// Policies map a handful of values, so a length-filtered linear scan over UTF-8 bytes beats
/// hashing; large maps fall back to a dictionary.
struct KeyTable: Sendable {
    private let entries: [(bytes: [UInt8], reference: KeyReference)]
    private let dictionary: [String: KeyReference]?

    private static let linearLimit = 16

    init(_ keys: [String: KeyReference]) {
        self.entries = keys.map { (Array($0.key.utf8), $0.value) }
        self.dictionary = keys.count > Self.linearLimit ? keys : nil
    }

    func find(_ selector: UnsafeRawBufferPointer) -> KeyReference? {
        if let dictionary = self.dictionary {
            return dictionary[String(decoding: selector, as: UTF8.self)]
        }
        for entry in self.entries where entry.bytes.count == selector.count {
            if entry.bytes.withUnsafeBytes({ $0.elementsEqual(selector) }) { return entry.reference }
        }
        return nil
    }
}

extension EncryptionPolicy {
    init(_ node: ConfigNode, kms: [String: KMSConfiguration]) throws(ConfigurationError) {
        let fields = try node.mapping(allowed: [
            "key_from", "keys", "default_key", "on_unmatched", "bind_topic", "fields",
        ])
        let source = try KeySource(fields.required("key_from"), kms: kms)
        var keys: [String: KeyReference] = [:]
        if let keysNode = fields["keys"] {
            if case .fixed = source { throw keysNode.error("not used with key_from fixed; remove it") }
            for (key, value) in try keysNode.mapping().entries {
                keys[key.value] = try KeyReference(value, kms: kms)
            }
        }
        let defaultKey = try fields["default_key"].map { node throws(ConfigurationError) in
            try KeyReference(node, kms: kms)
        }
        if case .fixed = source {
        } else if keys.isEmpty && defaultKey == nil {
            throw ConfigurationError(
                path: "\(node.path).keys", problem: "required: map selector values to keys, or set default_key",
                line: node.line)
        }
        var fieldNames: [String]?
        if let fieldsNode = fields["fields"] {
            var names: [String] = []
            for entry in try fieldsNode.list() { names.append(try entry.nonEmptyString()) }
            guard !names.isEmpty else { throw fieldsNode.error("must list at least one field, or be omitted") }
            fieldNames = names
        }
        self.init(
            keySource: source,
            keys: keys,
            defaultKey: defaultKey,
            onUnmatched: try fields["on_unmatched"]?.choice([
                "reject": UnmatchedAction.reject, "plaintext": .plaintext,
            ]) ?? .reject,
            bindTopic: try fields["bind_topic"]?.bool() ?? true,
            fields: fieldNames)
    }
}

extension KeySource {
    /// Accepts `{ json: FIELD }`, `{ header: NAME }`, `{ record_key: true }`, `{ fixed: KMS/KEY }`.
    init(_ node: ConfigNode, kms: [String: KMSConfiguration]) throws(ConfigurationError) {
        let options = "json, header, record_key, fixed"
        guard node.isMapping else { throw node.error("expected one of \(options), as in { json: department }") }
        let fields = try node.mapping(allowed: ["json", "header", "record_key", "fixed"])
        guard fields.entries.count == 1, let (key, value) = fields.entries.first.map({ ($0.key.value, $0.value) })
        else {
            throw node.error("expected exactly one of \(options)")
        }
        switch key {
        case "json": self = .json(field: try value.nonEmptyString())
        case "header": self = .header(name: try value.nonEmptyString())
        case "fixed": self = .fixed(try KeyReference(value, kms: kms))
        default:
            guard try value.bool() else { throw value.error("must be true (omit key_from.record_key otherwise)") }
            self = .recordKey
        }
    }
}
