/// A path to values inside a JSON document, as written in a topic policy:
/// `customer.email`, `items[*].card`, `lines[0].price`, `["odd.name"].x`.
///
/// A path is a list of steps from the document root. Each step is a member name, a fixed
/// array index or `[*]` (every element). There is no recursive descent and no member
/// wildcard: a field policy names exact places, so that what gets encrypted can be read off
/// the configuration.
public struct JSONPath: Hashable, Sendable, CustomStringConvertible {
    /// One step of a path.
    public enum Step: Hashable, Sendable {
        /// An object member, by its unescaped name (UTF-8).
        case member([UInt8])
        /// One array element, counting from 0.
        case index(Int)
        /// Every element of an array.
        case anyIndex
    }

    /// The steps, from the root. Never empty.
    public let steps: [Step]

    /// Paths longer than this are refused; they also bound the scanner's work per value.
    public static let maximumSteps = 64

    /// Creates a path from steps; `nil` if there are none or too many.
    public init?(steps: [Step]) {
        guard !steps.isEmpty, steps.count <= Self.maximumSteps else { return nil }
        self.steps = steps
    }

    /// Parses the policy syntax.
    ///
    /// - A leading `$` is optional (`$.a.b` is `a.b`).
    /// - `name` and `.name` name a member; the name runs to the next `.` or `[` and may hold any
    ///   other character, spaces included.
    /// - `["name"]` names a member whose name contains `.`, `[` or `]`; the name is a JSON string
    ///   literal, escapes included.
    /// - `[N]` is element N; `[*]` is every element.
    public init(parsing text: String) throws(JSONPathError) {
        let bytes = Array(text.utf8)
        var steps: [Step] = []
        var i = 0
        func fail(_ problem: String) -> JSONPathError { JSONPathError(path: text, problem: problem) }
        if bytes.first == UInt8(ascii: "$") { i = 1 }
        var expectName = i == 0
        while i < bytes.count {
            let byte = bytes[i]
            if byte == UInt8(ascii: "[") {
                guard let close = bytes[i...].firstIndex(of: UInt8(ascii: "]")) else { throw fail("'[' without ']'") }
                if bytes[i + 1] == UInt8(ascii: "\"") {
                    // A quoted name may itself contain ']', so find the end of the string literal.
                    var j = i + 2
                    var escaped = false
                    while j < bytes.count {
                        if escaped { escaped = false } else if bytes[j] == UInt8(ascii: "\\") { escaped = true } else if bytes[j] == UInt8(ascii: "\"") { break }
                        j += 1
                    }
                    guard j + 1 < bytes.count, bytes[j + 1] == UInt8(ascii: "]") else {
                        throw fail("a quoted name must be written [\"name\"]")
                    }
                    let literal = bytes[(i + 1)...j]
                    let name = literal.withContiguousStorageIfAvailable { raw in
                        JSONString.decodeLiteral(UnsafeRawBufferPointer(raw))
                    } ?? Array(literal).withUnsafeBytes { JSONString.decodeLiteral($0) }
                    guard let name else { throw fail("invalid string literal in [\"…\"]") }
                    steps.append(.member(name))
                    i = j + 2
                } else {
                    let inner = bytes[(i + 1)..<close]
                    if inner.elementsEqual("*".utf8) {
                        steps.append(.anyIndex)
                    } else {
                        guard !inner.isEmpty, inner.count <= 9,
                              inner.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
                              inner.count == 1 || inner.first != UInt8(ascii: "0")
                        else { throw fail("expected [*], [N] or [\"name\"]") }
                        steps.append(.index(inner.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }))
                    }
                    i = close + 1
                }
                expectName = false
                continue
            }
            if byte == UInt8(ascii: ".") {
                guard !expectName else { throw fail("empty member name") }
                i += 1
                expectName = true
                guard i < bytes.count else { throw fail("ends with '.'") }
                continue
            }
            guard expectName else { throw fail("expected '.' or '[' before a member name") }
            guard byte != UInt8(ascii: "]") else { throw fail("unexpected ']'") }
            var j = i
            while j < bytes.count, bytes[j] != UInt8(ascii: "."), bytes[j] != UInt8(ascii: "["), bytes[j] != UInt8(ascii: "]") {
                j += 1
            }
            steps.append(.member(Array(bytes[i..<j])))
            i = j
            expectName = false
        }
        guard !steps.isEmpty else { throw fail("names no field; omit fields to encrypt the whole value") }
        guard steps.count <= Self.maximumSteps else { throw fail("more than \(Self.maximumSteps) steps") }
        self.steps = steps
    }

    /// Whether any step is `[*]`.
    public var hasWildcard: Bool { steps.contains(.anyIndex) }

    /// Whether some value could be selected by both paths, or one path selects a value inside
    /// one the other selects. Field policies refuse such pairs: encrypting a value and a part of
    /// it under different keys has no single meaning.
    public func overlaps(_ other: JSONPath) -> Bool {
        for (a, b) in zip(steps, other.steps) {
            switch (a, b) {
            case (.member(let x), .member(let y)): if x != y { return false }
            case (.index(let x), .index(let y)): if x != y { return false }
            case (.anyIndex, .index), (.index, .anyIndex), (.anyIndex, .anyIndex): continue
            default: return false
            }
        }
        return true
    }

    /// The policy syntax, normalised: bare names where they are unambiguous, `["…"]` otherwise.
    public var description: String {
        var out = ""
        for (n, step) in steps.enumerated() {
            switch step {
            case .member(let name):
                let plain = !name.isEmpty && name.first != UInt8(ascii: "$")
                    && !name.contains(where: { $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "[") || $0 == UInt8(ascii: "]") || $0 == UInt8(ascii: "\"") || $0 < 0x20 })
                    && String(validating: name, as: UTF8.self) != nil
                if plain {
                    if n > 0 { out += "." }
                    out += String(decoding: name, as: UTF8.self)
                } else {
                    out += "[" + JSONString.literal(name) + "]"
                }
            case .index(let i): out += "[\(i)]"
            case .anyIndex: out += "[*]"
            }
        }
        return out
    }
}

/// A field path in a policy that cannot be parsed.
public struct JSONPathError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The path as written.
    public let path: String
    /// What is wrong with it.
    public let problem: String

    public init(path: String, problem: String) {
        self.path = path
        self.problem = problem
    }

    public var description: String { "invalid JSON path '\(path)': \(problem)" }
}
