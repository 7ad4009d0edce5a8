import Synchronization
import VeilJSON

/// What Veil does for the topics one `topics:` entry matches.
public struct TopicPolicy: Sendable {
    /// Which topic names this policy applies to.
    public let match: TopicMatcher
    /// How records are encrypted on produce; `nil` when this sidecar only consumes the topic.
    public let encrypt: EncryptionPolicy?
    /// What a consumer receives for records it may not decrypt.
    public let onDenied: DeniedAction
    /// The value that replaces a denied record under ``DeniedAction/redact``.
    public let redactPlaceholder: String
    /// Whether plaintext records found on this topic at fetch time are refused (injection defence).
    public let requireEncrypted: Bool
    /// What a consumer receives for an encrypted field, header or record key it may not decrypt.
    public let onDeniedField: DeniedFieldAction
    /// The JSON text that replaces a denied field under ``DeniedFieldAction/redact`` (its UTF-8
    /// bytes also replace a denied header value).
    public let fieldPlaceholder: String

    /// The default ``redactPlaceholder``.
    public static let defaultRedactPlaceholder = #"{"redacted":true}"#
    /// The default ``fieldPlaceholder``: a JSON string, so a string field stays a string.
    public static let defaultFieldPlaceholder = #""[redacted]""#

    /// Creates a policy.
    public init(
        match: TopicMatcher,
        encrypt: EncryptionPolicy? = nil,
        onDenied: DeniedAction = .drop,
        redactPlaceholder: String = TopicPolicy.defaultRedactPlaceholder,
        requireEncrypted: Bool = true,
        onDeniedField: DeniedFieldAction? = nil,
        fieldPlaceholder: String = TopicPolicy.defaultFieldPlaceholder
    ) {
        self.match = match
        self.encrypt = encrypt
        self.onDenied = onDenied
        self.redactPlaceholder = redactPlaceholder
        self.requireEncrypted = requireEncrypted
        self.onDeniedField = onDeniedField ?? DeniedFieldAction(onDenied)
        self.fieldPlaceholder = fieldPlaceholder
    }
}

/// Selects topics by exact name, prefix, or regular expression.
public enum TopicMatcher: Sendable, CustomStringConvertible {
    /// The topic name equals this string.
    case exact(String)
    /// The topic name starts with this string.
    case prefix(String)
    /// The whole topic name matches this expression.
    case regex(TopicPattern)

    /// Whether `topic` is selected.
    public func matches(_ topic: String) -> Bool {
        switch self {
        case .exact(let name): topic == name
        case .prefix(let prefix): topic.hasPrefix(prefix)
        case .regex(let pattern): pattern.matches(topic)
        }
    }

    public var description: String {
        switch self {
        case .exact(let name): name
        case .prefix(let prefix): "prefix \(prefix)"
        case .regex(let pattern): "regex \(pattern.source)"
        }
    }
}

/// A regular expression compiled once at load time and matched against whole topic names.
public struct TopicPattern: Sendable {
    /// The expression as written.
    public let source: String
    private let compiled: CompiledRegex

    /// Compiles `source`.
    public init(_ source: String) throws(ConfigurationError) {
        do {
            self.compiled = CompiledRegex(try Regex(source))
        } catch {
            throw ConfigurationError(path: "", problem: "invalid regular expression '\(source)': \(error)")
        }
        self.source = source
    }

    /// Whether the whole of `topic` matches, as with Java's `Pattern.matches`.
    public func matches(_ topic: String) -> Bool {
        self.compiled.wholeMatches(topic)
    }
}

/// Owns a `Regex`, which is not `Sendable`, behind a lock.
///
/// Policy lookups are cached per topic name, so matching is rare and the lock costs nothing
/// measurable, while sharing the regex across event loops stays provably safe.
private final class CompiledRegex: Sendable {
    private let regex: Mutex<Regex<AnyRegexOutput>>

    init(_ regex: sending Regex<AnyRegexOutput>) {
        self.regex = Mutex(regex)
    }

    func wholeMatches(_ text: String) -> Bool {
        self.regex.withLock { regex in (try? regex.wholeMatch(in: text)) != nil }
    }
}

/// What a consuming application receives in place of a record it is not allowed to decrypt.
public enum DeniedAction: String, Hashable, Sendable {
    /// The record is removed from the fetch response.
    case drop
    /// The value is replaced by the topic's redact placeholder.
    case redact
    /// The encrypted record is passed through unchanged.
    case ciphertext
    /// The fetch fails for that partition.
    case error
}

extension TopicPolicy {
    init(_ node: ConfigNode, kms: [String: KMSConfiguration]) throws(ConfigurationError) {
        let fields = try node.mapping(allowed: [
            "match", "encrypt", "on_denied", "redact_placeholder", "require_encrypted", "on_denied_field",
            "field_placeholder",
        ])
        let placeholder = try fields["field_placeholder"].map { node throws(ConfigurationError) -> String in
            let text = try node.string()
            do {
                try JSONValidator.validate(Array(text.utf8))
            } catch {
                throw node.error("must be JSON text, such as \"***\" (quotes included) or null: \(error)")
            }
            return text
        }
        self.init(
            match: try TopicMatcher(fields.required("match")),
            encrypt: try fields["encrypt"].map { node throws(ConfigurationError) in
                try EncryptionPolicy(node, kms: kms)
            },
            onDenied: try fields["on_denied"]?.choice([
                "drop": DeniedAction.drop, "redact": .redact, "ciphertext": .ciphertext, "error": .error,
            ]) ?? .drop,
            redactPlaceholder: try fields["redact_placeholder"]?.string() ?? Self.defaultRedactPlaceholder,
            requireEncrypted: try fields["require_encrypted"]?.bool() ?? true,
            onDeniedField: try Self.deniedFieldAction(fields),
            fieldPlaceholder: placeholder ?? Self.defaultFieldPlaceholder)
    }
}

extension TopicPolicy {
    /// `on_denied_field`; a bare YAML `null` means the `null` rule, not "absent".
    fileprivate static func deniedFieldAction(_ fields: ConfigMapping) throws(ConfigurationError) -> DeniedFieldAction? {
        guard let entry = fields.entries.first(where: { $0.key.value == "on_denied_field" }) else { return nil }
        if entry.value.isNull { return .null }
        return try entry.value.choice([
            "remove": DeniedFieldAction.remove, "null": .null, "redact": .redact, "ciphertext": .ciphertext, "error": .error,
        ])
    }
}

extension TopicMatcher {
    /// Accepts a bare name (exact), or `{ exact: … }`, `{ prefix: … }`, `{ regex: … }`.
    init(_ node: ConfigNode) throws(ConfigurationError) {
        guard node.isMapping else {
            self = .exact(try node.nonEmptyString())
            return
        }
        let fields = try node.mapping(allowed: ["exact", "prefix", "regex"])
        guard fields.entries.count == 1, let (key, value) = fields.entries.first.map({ ($0.key.value, $0.value) })
        else {
            throw node.error("expected exactly one of exact, prefix, regex")
        }
        let text = try value.nonEmptyString()
        switch key {
        case "exact": self = .exact(text)
        case "prefix": self = .prefix(text)
        default: self = .regex(try value.located { () throws(ConfigurationError) in try TopicPattern(text) })
        }
    }
}
