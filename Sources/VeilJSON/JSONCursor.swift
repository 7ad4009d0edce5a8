/// Why a record value is not the JSON a field policy needs. Never quotes the input, since the
/// message goes to logs and producers and the input may be sensitive: only offsets.
public struct JSONSyntaxError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Byte offset into the value where reading stopped.
    public let offset: Int
    /// What was wrong there.
    public let problem: String

    public init(offset: Int, problem: String) {
        self.offset = offset
        self.problem = problem
    }

    public var description: String { "not valid JSON: \(problem) at byte \(offset)" }
}

/// The kind of a JSON value, read from its first byte.
public enum JSONValueKind: UInt8, Sendable {
    case object, array, string, number, bool, null
}

/// A validating, allocation-free forward reader over JSON bytes (RFC 8259 grammar; bytes at
/// or above 0x80 are accepted without UTF-8 validation, so Veil never rejects a value a
/// lenient producer wrote and a lenient consumer reads).
struct JSONCursor {
    let bytes: UnsafeRawBufferPointer
    var index = 0

    /// Nesting deeper than this is refused, which bounds recursion on hostile input.
    static let maximumDepth = 128

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    @inline(__always)
    var current: UInt8? { index < bytes.count ? bytes[index] : nil }

    func error(_ problem: String) -> JSONSyntaxError { JSONSyntaxError(offset: index, problem: problem) }

    @inline(__always)
    mutating func skipWhitespace() {
        while index < bytes.count {
            let byte = bytes[index]
            guard byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 else { return }
            index += 1
        }
    }

    /// Skips a UTF-8 byte order mark: not JSON, but some producers write one.
    mutating func skipByteOrderMark() {
        if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF { index = 3 }
    }

    @inline(__always)
    mutating func expect(_ byte: UInt8, _ what: String) throws(JSONSyntaxError) {
        guard current == byte else { throw error(current == nil ? "unexpected end, expected \(what)" : "expected \(what)") }
        index += 1
    }

    /// After a container element: consumes a `,` (true: another element follows) or the
    /// closing byte `close` (false: the container ended); anything else is an error.
    @inline(__always)
    mutating func moreElements(close: UInt8, _ what: String) throws(JSONSyntaxError) -> Bool {
        skipWhitespace()
        if current == UInt8(ascii: ",") {
            index += 1
            skipWhitespace()
            return true
        }
        try expect(close, what)
        return false
    }

    /// After the root value: only whitespace may follow.
    mutating func finish() throws(JSONSyntaxError) {
        skipWhitespace()
        guard index == bytes.count else { throw error("data after the end of the document") }
    }

    /// Reads a string from its opening quote; returns the range between the quotes.
    mutating func scanString() throws(JSONSyntaxError) -> (range: Range<Int>, hasEscapes: Bool) {
        try expect(UInt8(ascii: "\""), "'\"'")
        let start = index
        var hasEscapes = false
        while index < bytes.count {
            // Runs of ordinary bytes (no quote, backslash or control byte) are skipped eight at
            // a time: encrypted fields and large payloads are long strings.
            if let base = bytes.baseAddress {
                while index &+ 8 <= bytes.count, !Self.mayEndRun((base + index).loadUnaligned(as: UInt64.self)) {
                    index &+= 8
                }
                if index >= bytes.count { break }
            }
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                index += 1
                return (start..<index - 1, hasEscapes)
            }
            if byte == UInt8(ascii: "\\") {
                hasEscapes = true
                index += 1
                guard let kind = current else { break }
                switch kind {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                     UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    index += 1
                case UInt8(ascii: "u"):
                    index += 1
                    for _ in 0..<4 {
                        guard let digit = current, JSONString.hexDigit(digit) != nil else { throw error("invalid \\u escape") }
                        index += 1
                    }
                default:
                    throw error("invalid escape")
                }
                continue
            }
            guard byte >= 0x20 else { throw error("control character in a string") }
            index += 1
        }
        throw error("unterminated string")
    }

    /// Whether any of the eight bytes in `word` is `"`, `\` or below 0x20. Exact when false;
    /// a true answer only sends the caller to the byte-by-byte loop.
    @inline(__always)
    static func mayEndRun(_ word: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        let quote = word ^ (ones &* 0x22)
        let backslash = word ^ (ones &* 0x5C)
        let zeroInQuote = (quote &- ones) & ~quote
        let zeroInBackslash = (backslash &- ones) & ~backslash
        let control = (word &- ones &* 0x20) & ~word
        return (zeroInQuote | zeroInBackslash | control) & highs != 0
    }

    /// Skips any value, validating it.
    mutating func skipValue(depth: Int) throws(JSONSyntaxError) {
        guard let byte = current else { throw error("unexpected end, expected a value") }
        switch byte {
        case UInt8(ascii: "\""):
            _ = try scanString()
        case UInt8(ascii: "{"):
            guard depth < Self.maximumDepth else { throw error("nested deeper than \(Self.maximumDepth) levels") }
            index += 1
            skipWhitespace()
            if current == UInt8(ascii: "}") { index += 1; return }
            while true {
                _ = try scanString()
                skipWhitespace()
                try expect(UInt8(ascii: ":"), "':'")
                skipWhitespace()
                try skipValue(depth: depth + 1)
                guard try moreElements(close: UInt8(ascii: "}"), "',' or '}'") else { return }
            }
        case UInt8(ascii: "["):
            guard depth < Self.maximumDepth else { throw error("nested deeper than \(Self.maximumDepth) levels") }
            index += 1
            skipWhitespace()
            if current == UInt8(ascii: "]") { index += 1; return }
            while true {
                try skipValue(depth: depth + 1)
                guard try moreElements(close: UInt8(ascii: "]"), "',' or ']'") else { return }
            }
        case UInt8(ascii: "t"): try skipLiteral("true")
        case UInt8(ascii: "f"): try skipLiteral("false")
        case UInt8(ascii: "n"): try skipLiteral("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try skipNumber()
        default: throw error("expected a value")
        }
    }

    mutating func skipLiteral(_ literal: StaticString) throws(JSONSyntaxError) {
        let count = literal.utf8CodeUnitCount
        guard bytes.count - index >= count,
              memcmpEqual(bytes.baseAddress! + index, literal.utf8Start, count)
        else { throw error("invalid literal") }
        index += count
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    mutating func skipNumber() throws(JSONSyntaxError) {
        if current == UInt8(ascii: "-") { index += 1 }
        if current == UInt8(ascii: "0") {
            index += 1
        } else {
            try digits()
        }
        if current == UInt8(ascii: ".") {
            index += 1
            try digits()
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            index += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { index += 1 }
            try digits()
        }
    }

    private mutating func digits() throws(JSONSyntaxError) {
        let start = index
        while let byte = current, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") { index += 1 }
        guard index > start else { throw error("invalid number") }
    }

    /// The kind of the value starting at `index` (whose first byte has been checked to exist).
    static func kind(of byte: UInt8) -> JSONValueKind {
        switch byte {
        case UInt8(ascii: "{"): .object
        case UInt8(ascii: "["): .array
        case UInt8(ascii: "\""): .string
        case UInt8(ascii: "t"), UInt8(ascii: "f"): .bool
        case UInt8(ascii: "n"): .null
        default: .number
        }
    }
}

@inline(__always)
func memcmpEqual(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ count: Int) -> Bool {
    for k in 0..<count where a.load(fromByteOffset: k, as: UInt8.self) != b.load(fromByteOffset: k, as: UInt8.self) {
        return false
    }
    return true
}
