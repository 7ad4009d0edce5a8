/// A compiled set of up to 64 paths, located together in one pass over a document.
///
/// Produce runs this once per record: it validates the whole value (a field policy refuses
/// what is not JSON) and returns the byte range of every value a path selects. Subtrees no
/// path can reach are only validated, not tracked.
public struct JSONPathSet: Sendable {
    /// The paths, in the order matches refer to them.
    public let paths: [JSONPath]
    /// Bit p is set in `endingAt[d]` when path p has exactly d steps.
    private let endingAt: [UInt64]
    private let all: UInt64

    /// Most paths in one set: liveness is tracked as a 64-bit mask.
    public static let capacity = 64

    /// Compiles `paths`; nil if there are more than ``capacity``.
    public init?(_ paths: [JSONPath]) {
        guard paths.count <= Self.capacity else { return nil }
        self.paths = paths
        var endingAt = [UInt64](repeating: 0, count: JSONPath.maximumSteps + 1)
        for (p, path) in paths.enumerated() { endingAt[path.steps.count] |= 1 << UInt64(p) }
        self.endingAt = endingAt
        all = paths.isEmpty ? 0 : (paths.count == 64 ? ~0 : (1 << UInt64(paths.count)) - 1)
    }

    /// Validates `json` and appends a match for every value a path selects, in document order
    /// (by where values start; a value selected by several paths yields one match per path). `matches` is cleared first.
    ///
    /// - Throws: ``JSONSyntaxError`` if `json` is not one well-formed JSON value.
    public func locate(in json: UnsafeRawBufferPointer, into matches: inout JSONFieldMatches) throws(JSONSyntaxError) {
        matches.removeAll()
        var cursor = JSONCursor(json)
        var path = PathStack()
        cursor.skipByteOrderMark()
        cursor.skipWhitespace()
        try cursor.locate(depth: 0, alive: all, set: self, path: &path, into: &matches)
        try cursor.finish()
    }

    @inline(__always)
    func survivors(_ alive: UInt64, depth: Int, member name: UnsafeRawBufferPointer, escaped: Bool) -> UInt64 {
        var result: UInt64 = 0
        var rest = alive
        var unescaped: [UInt8]?
        while rest != 0 {
            let p = rest.trailingZeroBitCount
            rest &= rest - 1
            guard case .member(let wanted) = paths[p].steps[depth] else { continue }
            let equal: Bool
            if escaped {
                if unescaped == nil { unescaped = JSONString.unescape(name) }
                equal = unescaped! == wanted
            } else {
                equal = wanted.count == name.count && wanted.withUnsafeBytes { $0.elementsEqual(name) }
            }
            if equal { result |= 1 << UInt64(p) }
        }
        return result
    }

    @inline(__always)
    func survivors(_ alive: UInt64, depth: Int, element: Int) -> UInt64 {
        var result: UInt64 = 0
        var rest = alive
        while rest != 0 {
            let p = rest.trailingZeroBitCount
            rest &= rest - 1
            switch paths[p].steps[depth] {
            case .anyIndex: result |= 1 << UInt64(p)
            case .index(let i) where i == element: result |= 1 << UInt64(p)
            default: continue
            }
        }
        return result
    }

    @inline(__always)
    func ending(at depth: Int) -> UInt64 { depth < endingAt.count ? endingAt[depth] : 0 }
}

/// Where the paths of a ``JSONPathSet`` matched in one document. Reused across records so that
/// locating allocates nothing once its arrays have grown.
public struct JSONFieldMatches: Sendable {
    /// One selected value.
    public struct Match: Sendable, Equatable {
        /// Index of the path in its ``JSONPathSet``.
        public var path: Int
        /// The value's bytes in the document, quotes included for a string.
        public var value: Range<Int>
        /// What kind of value it is.
        public var kind: JSONValueKind
        /// For strings: whether the contents hold escape sequences.
        public var hasEscapes: Bool
        /// The concrete location (see ``JSONLocation``) in ``JSONFieldMatches/locations``.
        public var location: Range<Int>
    }

    /// The matches, in document order.
    public private(set) var matches: [Match] = []
    /// Concatenated concrete locations, referenced by ``Match/location``.
    public private(set) var locations: [UInt8] = []

    public init() {}

    /// Empties both arrays, keeping their storage.
    public mutating func removeAll() {
        matches.removeAll(keepingCapacity: true)
        locations.removeAll(keepingCapacity: true)
    }

    mutating func append(path: Int, value: Range<Int>, kind: JSONValueKind, hasEscapes: Bool, stack: PathStack, document: UnsafeRawBufferPointer) {
        let start = locations.count
        stack.write(into: &locations, document: document)
        matches.append(Match(path: path, value: value, kind: kind, hasEscapes: hasEscapes, location: start..<locations.count))
    }

    mutating func finish(_ slots: Range<Int>, end: Int, hasEscapes: Bool) {
        for slot in slots {
            matches[slot].value = matches[slot].value.lowerBound..<end
            matches[slot].hasEscapes = hasEscapes
        }
    }
}

/// The concrete location of one value, written into the AAD of its envelope.
///
/// `$`, then per step `["` raw member name `"]` (the name's bytes exactly as they appear
/// between the quotes in the document, escapes and all) or `[` decimal index `]`. A
/// location names one place in one document: member names are quoted, so `{"a.b":…}` and
/// `{"a":{"b":…}}` differ, and indices are concrete, so elements cannot be swapped.
public enum JSONLocation {
    /// The location of a header value: `header:` followed by the header name (UTF-8).
    public static let headerPrefix: [UInt8] = Array("header:".utf8)
}

/// The steps from the root to the value being read.
struct PathStack {
    enum Step {
        case member(Range<Int>)
        case element(Int)
    }

    private(set) var steps: [Step] = []

    @inline(__always) mutating func push(_ step: Step) { steps.append(step) }
    @inline(__always) mutating func pop() { steps.removeLast() }

    func write(into out: inout [UInt8], document: UnsafeRawBufferPointer) {
        out.append(UInt8(ascii: "$"))
        for step in steps {
            switch step {
            case .member(let range):
                out.append(UInt8(ascii: "["))
                out.append(UInt8(ascii: "\""))
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: document[range]))
                out.append(UInt8(ascii: "\""))
                out.append(UInt8(ascii: "]"))
            case .element(let i):
                out.append(UInt8(ascii: "["))
                appendDecimal(i, to: &out)
                out.append(UInt8(ascii: "]"))
            }
        }
    }
}

@inline(__always)
func appendDecimal(_ value: Int, to out: inout [UInt8]) {
    if value < 10 {
        out.append(UInt8(ascii: "0") + UInt8(value))
        return
    }
    let start = out.count
    var v = value
    while v > 0 {
        out.append(UInt8(ascii: "0") + UInt8(v % 10))
        v /= 10
    }
    out[start...].reverse()
}

extension JSONCursor {
    /// Reads one value at `index`, matching the members and elements below it against the
    /// paths still alive (bit p: path p matched every step down to here).
    mutating func locate(depth: Int, alive: UInt64, set: JSONPathSet, path: inout PathStack,
                         into matches: inout JSONFieldMatches) throws(JSONSyntaxError) {
        guard alive != 0 else { return try skipValue(depth: depth) }
        guard let byte = current else { throw error("unexpected end, expected a value") }
        if byte == UInt8(ascii: "{") {
            guard depth < Self.maximumDepth else { throw error("nested deeper than \(Self.maximumDepth) levels") }
            index += 1
            skipWhitespace()
            if current == UInt8(ascii: "}") { index += 1; return }
            while true {
                let name = try scanString()
                skipWhitespace()
                try expect(UInt8(ascii: ":"), "':'")
                skipWhitespace()
                let next = set.survivors(alive, depth: depth, member: UnsafeRawBufferPointer(rebasing: bytes[name.range]), escaped: name.hasEscapes)
                path.push(.member(name.range))
                try child(depth: depth, next: next, set: set, path: &path, into: &matches)
                path.pop()
                guard try moreElements(close: UInt8(ascii: "}"), "',' or '}'") else { return }
            }
        } else if byte == UInt8(ascii: "[") {
            guard depth < Self.maximumDepth else { throw error("nested deeper than \(Self.maximumDepth) levels") }
            index += 1
            skipWhitespace()
            if current == UInt8(ascii: "]") { index += 1; return }
            var element = 0
            while true {
                let next = set.survivors(alive, depth: depth, element: element)
                path.push(.element(element))
                try child(depth: depth, next: next, set: set, path: &path, into: &matches)
                path.pop()
                element += 1
                guard try moreElements(close: UInt8(ascii: "]"), "',' or ']'") else { return }
            }
        } else {
            // A scalar has nothing below it for the remaining paths.
            try skipValue(depth: depth)
        }
    }

    @inline(__always)
    private mutating func child(depth: Int, next: UInt64, set: JSONPathSet, path: inout PathStack,
                                into matches: inout JSONFieldMatches) throws(JSONSyntaxError) {
        let complete = next & set.ending(at: depth + 1)
        guard complete != 0 else {
            return try locate(depth: depth + 1, alive: next, set: set, path: &path, into: &matches)
        }
        let start = index
        guard let first = current else { throw error("unexpected end, expected a value") }
        let kind = JSONCursor.kind(of: first)
        // Appended before reading the value, so matches stay in document order even when
        // longer paths match inside it; the ends are filled in afterwards.
        let firstSlot = matches.matches.count
        var rest = complete
        while rest != 0 {
            let p = rest.trailingZeroBitCount
            rest &= rest - 1
            matches.append(path: p, value: start..<start, kind: kind, hasEscapes: false, stack: path, document: bytes)
        }
        let lastSlot = matches.matches.count
        var hasEscapes = false
        if kind == .string {
            hasEscapes = try scanString().hasEscapes
        } else {
            try locate(depth: depth + 1, alive: next & ~complete, set: set, path: &path, into: &matches)
        }
        matches.finish(firstSlot..<lastSlot, end: index, hasEscapes: hasEscapes)
    }
}
