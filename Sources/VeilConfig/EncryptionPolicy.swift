import VeilJSON

/// How a topic's records are encrypted on produce: which key each record gets, and whether the
/// whole value or single JSON fields are encrypted (plus, opt-in, headers and the record key).
public struct EncryptionPolicy: Sendable {
    /// Where the per-record selector comes from. `nil` only on field-level topics whose fields
    /// and headers all name their own keys.
    public let keySource: KeySource?
    /// Selector value → key. Unused with ``KeySource/fixed(_:)``.
    public let keys: [String: KeyReference]
    /// The key for records whose selector is absent or not in ``keys``.
    public let defaultKey: KeyReference?
    /// What happens to a record no key was selected for.
    public let onUnmatched: UnmatchedAction
    /// Whether the topic name is bound into the AAD. Turn off only for topics that are mirrored
    /// under another name, since it is what stops records being replayed into other topics.
    public let bindTopic: Bool
    /// The paths of the JSON fields encrypted individually; `nil` encrypts the whole value.
    public var fields: [String]? { fieldRules?.map(\.path.description) }
    /// JSON fields encrypted individually, each under its own key; `nil` encrypts the whole value.
    public let fieldRules: [FieldEncryptionRule]?
    /// Headers whose values are encrypted (opt-in).
    public let headerRules: [HeaderEncryptionRule]
    /// When set, record keys are encrypted deterministically under a key derived from this one.
    public let recordKey: KeyReference?
    /// What happens to a value that is not JSON when ``fieldRules`` is set.
    public let onInvalidJSON: InvalidJSONAction
    /// The JSON paths read per record for fields and key selectors; nil when there are none.
    public let scanPlan: PartwiseScanPlan?

    private let table: KeyTable
    private let jsonField: [UInt8]

    /// Creates a policy.
    public init(
        keySource: KeySource?,
        keys: [String: KeyReference] = [:],
        defaultKey: KeyReference? = nil,
        onUnmatched: UnmatchedAction = .reject,
        bindTopic: Bool = true,
        fieldRules: [FieldEncryptionRule]? = nil,
        headerRules: [HeaderEncryptionRule] = [],
        recordKey: KeyReference? = nil,
        onInvalidJSON: InvalidJSONAction = .reject
    ) {
        self.keySource = keySource
        self.keys = keys
        self.defaultKey = defaultKey
        self.onUnmatched = onUnmatched
        self.bindTopic = bindTopic
        self.fieldRules = fieldRules
        self.headerRules = headerRules
        self.recordKey = recordKey
        self.onInvalidJSON = onInvalidJSON
        self.scanPlan = fieldRules != nil || !headerRules.isEmpty
            ? PartwiseScanPlan(fields: fieldRules ?? [], headers: headerRules) : nil
        self.table = KeyTable(keys)
        if case .json(let field) = keySource { self.jsonField = Array(field.utf8) } else { self.jsonField = [] }
    }

    /// Every key this policy can select.
    public var allKeys: Set<KeyReference> {
        var all = Set(self.keys.values)
        if let defaultKey = self.defaultKey { all.insert(defaultKey) }
        if case .fixed(let key) = self.keySource { all.insert(key) }
        for rule in self.fieldRules ?? [] { all.formUnion(rule.choice.allKeys) }
        for rule in self.headerRules { all.formUnion(rule.choice.allKeys) }
        if let recordKey = self.recordKey { all.insert(recordKey) }
        return all
    }

    /// Whether anything is encrypted part by part: fields, headers or the record key.
    public var isPartwise: Bool { fieldRules != nil || !headerRules.isEmpty || recordKey != nil }

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
        case nil:
            return .unmatched(selector: nil)
        case .fixed(let reference):
            return .key(reference)
        case .json:
            guard let value else { return self.fallback(selector: nil) }
            switch JSONFieldScanner.findTopLevelField(self.jsonField, in: value) {
            case .string(let range, let hasEscapes):
                let raw = UnsafeRawBufferPointer(rebasing: value[range])
                if !hasEscapes { return self.lookup(raw) }
                return JSONString.unescape(raw).withUnsafeBytes { self.lookup($0) }
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
            "key_from", "keys", "default_key", "on_unmatched", "bind_topic", "fields", "headers", "record_key",
            "on_invalid_json",
        ])
        // The topic-level selection: required for whole-value encryption, optional when every
        // field and header names its own key.
        var topicChoice: KeyChoice?
        if fields["key_from"] != nil {
            topicChoice = try KeyChoice(selection: fields, at: node, kms: kms)
        } else {
            for key in ["keys", "default_key"] where fields[key] != nil {
                throw fields[key]!.error("only used with key_from")
            }
        }
        var fieldRules: [FieldEncryptionRule]?
        if let fieldsNode = fields["fields"] {
            var rules: [FieldEncryptionRule] = []
            for entry in try fieldsNode.list() {
                let rule = try FieldEncryptionRule(entry, inherited: topicChoice, kms: kms)
                if let clash = rules.firstIndex(where: { $0.path.overlaps(rule.path) }) {
                    throw entry.error(
                        "path \(rule.path) overlaps \(fieldsNode.path)[\(clash)] (\(rules[clash].path)): a value and a part of it cannot be encrypted separately")
                }
                rules.append(rule)
            }
            guard !rules.isEmpty else { throw fieldsNode.error("must list at least one field, or be omitted") }
            fieldRules = rules
        }
        var headerRules: [HeaderEncryptionRule] = []
        if let headersNode = fields["headers"] {
            for entry in try headersNode.list() {
                let rule = try HeaderEncryptionRule(entry, inherited: topicChoice, kms: kms)
                guard !headerRules.contains(where: { $0.name == rule.name }) else {
                    throw entry.error("header '\(rule.name)' is listed twice")
                }
                headerRules.append(rule)
            }
            guard !headerRules.isEmpty else { throw headersNode.error("must list at least one header, or be omitted") }
        }
        var recordKey: KeyReference?
        if let recordKeyNode = fields["record_key"] {
            if recordKeyNode.isMapping {
                let entry = try recordKeyNode.mapping(allowed: ["key"])
                recordKey = try KeyReference(entry.required("key"), kms: kms)
            } else {
                recordKey = try KeyReference(recordKeyNode, kms: kms)
            }
        }
        if fieldRules != nil || !headerRules.isEmpty,
           PartwiseScanPlan(fields: fieldRules ?? [], headers: headerRules) == nil
        {
            throw node.error("at most \(JSONPathSet.capacity) JSON paths per topic, fields and key selectors together")
        }
        if fieldRules == nil, topicChoice == nil {
            throw ConfigurationError(
                path: "\(node.path).key_from", problem: "required unless fields are encrypted instead of the whole value",
                line: node.line)
        }
        if let invalid = fields["on_invalid_json"], fieldRules == nil {
            throw invalid.error("only used with fields")
        }
        self.init(
            keySource: topicChoice?.source,
            keys: topicChoice?.keys ?? [:],
            defaultKey: topicChoice?.defaultKey,
            onUnmatched: try fields["on_unmatched"]?.choice([
                "reject": UnmatchedAction.reject, "plaintext": .plaintext,
            ]) ?? .reject,
            bindTopic: try fields["bind_topic"]?.bool() ?? true,
            fieldRules: fieldRules,
            headerRules: headerRules,
            recordKey: recordKey,
            onInvalidJSON: try fields["on_invalid_json"]?.choice([
                "reject": InvalidJSONAction.reject, "plaintext": .plaintext,
            ]) ?? .reject)
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
