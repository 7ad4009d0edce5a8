import Yams

/// A YAML node together with its key path, so every conversion failure can say where it happened.
///
/// Parsing goes through this type only; it turns Yams' loosely typed tree into typed values or a
/// ``ConfigurationError`` naming the path, the expectation and the line.
package struct ConfigNode {
    package let node: Node
    package let path: String

    package init(node: Node, path: String) {
        self.node = node
        self.path = path
    }

    package var line: Int? { self.node.mark?.line }

    package func error(_ problem: String) -> ConfigurationError {
        ConfigurationError(path: self.path, problem: problem, line: self.line)
    }

    /// Re-throws a path-less parse error (from `HostPort(parsing:)` etc.) at this node.
    package func located<T>(_ body: () throws(ConfigurationError) -> T) throws(ConfigurationError) -> T {
        do {
            return try body()
        } catch {
            throw ConfigurationError(path: self.path, problem: error.problem, line: self.line)
        }
    }

    package var kind: String {
        switch self.node {
        case .scalar: self.isNull ? "null" : "a scalar"
        case .mapping: "a mapping"
        case .sequence: "a list"
        case .alias: "an alias"
        }
    }

    package var isNull: Bool {
        if case .scalar = self.node { return self.node.tag.rawValue == Tag.Name.null.rawValue }
        return false
    }

    package var isSequence: Bool {
        if case .sequence = self.node { return true }
        return false
    }

    package var isMapping: Bool {
        if case .mapping = self.node { return true }
        return false
    }

    package func string() throws(ConfigurationError) -> String {
        guard case .scalar(let scalar) = self.node, !self.isNull else { throw self.error("expected a string, got \(self.kind)") }
        return scalar.string
    }

    package func nonEmptyString() throws(ConfigurationError) -> String {
        let value = try self.string()
        guard !value.isEmpty else { throw self.error("must not be empty") }
        return value
    }

    package func int(in range: ClosedRange<Int>) throws(ConfigurationError) -> Int {
        guard case .scalar = self.node, self.node.tag.rawValue == Tag.Name.int.rawValue, let value = self.node.int else {
            throw self.error("expected an integer, got \(self.describeValue)")
        }
        guard range.contains(value) else {
            throw self.error("must be between \(range.lowerBound) and \(range.upperBound), got \(value)")
        }
        return value
    }

    package func bool() throws(ConfigurationError) -> Bool {
        guard case .scalar = self.node, self.node.tag.rawValue == Tag.Name.bool.rawValue, let value = self.node.bool else {
            throw self.error("expected true or false, got \(self.describeValue)")
        }
        return value
    }

    /// One of a fixed set of words, e.g. `on_denied: drop`.
    package func choice<T>(_ options: KeyValuePairs<String, T>) throws(ConfigurationError) -> T {
        let names = options.map(\.key).joined(separator: ", ")
        guard case .scalar(let scalar) = self.node, !self.isNull else {
            throw self.error("expected one of \(names), got \(self.kind)")
        }
        guard let match = options.first(where: { $0.key == scalar.string }) else {
            throw self.error("expected one of \(names), got '\(scalar.string)'")
        }
        return match.value
    }

    package func list() throws(ConfigurationError) -> [ConfigNode] {
        guard case .sequence(let sequence) = self.node else { throw self.error("expected a list, got \(self.kind)") }
        return sequence.enumerated().map { ConfigNode(node: $1, path: "\(self.path)[\($0)]") }
    }

    /// The node as a mapping whose keys must all be in `allowed`, so typos are caught rather than ignored.
    package func mapping(allowed: [String]) throws(ConfigurationError) -> ConfigMapping {
        try self.mapping { key throws(ConfigurationError) in
            guard allowed.contains(key.value) else {
                let hint = Self.closest(to: key.value, in: allowed).map { "did you mean '\($0)'? " } ?? ""
                throw key.node.error("unknown key '\(key.value)' (\(hint)expected one of \(allowed.joined(separator: ", ")))")
            }
        }
    }

    /// The node as a mapping with free-form keys (names chosen by the user, like KMS names).
    package func mapping(validatingKey validate: (ConfigMapping.Key) throws(ConfigurationError) -> Void = { _ in })
        throws(ConfigurationError) -> ConfigMapping
    {
        guard case .mapping(let mapping) = self.node else { throw self.error("expected a mapping, got \(self.kind)") }
        var entries: [(key: ConfigMapping.Key, value: ConfigNode)] = []
        for (keyNode, valueNode) in mapping {
            guard case .scalar(let scalar) = keyNode else {
                throw ConfigNode(node: keyNode, path: self.path).error("mapping keys must be strings")
            }
            let childPath = self.path.isEmpty ? scalar.string : "\(self.path).\(scalar.string)"
            let key = ConfigMapping.Key(value: scalar.string, node: ConfigNode(node: keyNode, path: childPath))
            try validate(key)
            entries.append((key, ConfigNode(node: valueNode, path: childPath)))
        }
        return ConfigMapping(owner: self, entries: entries)
    }

    /// The allowed key a typo most likely meant: within two edits, and closer than any other.
    static func closest(to word: String, in candidates: [String]) -> String? {
        let letters = Array(word)
        // An edit distance is at least the difference in length, so most candidates are
        // ruled out without filling a table (fuzzed or pasted keys can be long).
        let scored = candidates.compactMap { candidate -> (String, Int)? in
            let other = Array(candidate)
            guard abs(other.count - letters.count) <= 2 else { return nil }
            let distance = editDistance(letters, other)
            return distance <= 2 && distance < letters.count ? (candidate, distance) : nil
        }
        guard let best = scored.min(by: { $0.1 < $1.1 }), scored.filter({ $0.1 == best.1 }).count == 1 else { return nil }
        return best.0
    }

    /// Edit distance counting insertions, deletions, substitutions and swaps of adjacent
    /// letters (the usual typos: `tsl` is one edit from `tls`).
    static func editDistance(_ a: String, _ b: String) -> Int {
        editDistance(Array(a), Array(b))
    }

    private static func editDistance(_ a: [Character], _ b: [Character]) -> Int {
        // Three rolling rows, reused: the swap rule looks two rows back.
        var beforePrevious = [Int](repeating: 0, count: b.count + 1)
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in stride(from: 1, through: a.count, by: 1) {
            current[0] = i
            for j in stride(from: 1, through: b.count, by: 1) {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    current[j] = min(current[j], beforePrevious[j - 2] + 1)
                }
            }
            swap(&beforePrevious, &previous)
            swap(&previous, &current)
        }
        return previous[b.count]
    }

    private var describeValue: String {
        if case .scalar(let scalar) = self.node, !self.isNull { return "'\(scalar.string)'" }
        return self.kind
    }
}

/// A YAML mapping whose values are looked up by key, with paths attached.
package struct ConfigMapping {
    package struct Key {
        package let value: String
        package let node: ConfigNode
    }

    package let owner: ConfigNode
    package let entries: [(key: Key, value: ConfigNode)]

    /// The value at `key`, or `nil` when the key is absent or explicitly null.
    package subscript(key: String) -> ConfigNode? {
        guard let entry = self.entries.first(where: { $0.key.value == key }), !entry.value.isNull else { return nil }
        return entry.value
    }

    package func required(_ key: String) throws(ConfigurationError) -> ConfigNode {
        guard let value = self[key] else {
            let path = self.owner.path.isEmpty ? key : "\(self.owner.path).\(key)"
            throw ConfigurationError(path: path, problem: "required", line: self.owner.line)
        }
        return value
    }
}

extension ConfigNode {
    /// The root of a YAML document, for parsers of files that share this one's error style.
    package static func root(yaml: String, emptyProblem: String) throws(ConfigurationError) -> ConfigNode {
        let root: Node
        do {
            guard let document = try Yams.compose(yaml: yaml) else {
                throw ConfigurationError(path: "", problem: emptyProblem)
            }
            root = document
        } catch let error as ConfigurationError {
            throw error
        } catch {
            throw ConfigurationError(path: "", problem: "invalid YAML: \(error)")
        }
        return ConfigNode(node: root, path: "")
    }
}
