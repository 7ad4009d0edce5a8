/// Finds one top-level string field in a JSON document without building any objects.
///
/// Key selection runs once per produced record, so this is a single forward pass over the bytes:
/// nested values are skipped (but still validated), and the field's value is returned as a byte
/// range into the input. The whole document is scanned even after the field is found, because a
/// malformed document or a repeated field is ambiguous — different JSON parsers would disagree on
/// the value — and choosing an encryption key from an ambiguous value is not safe.
public enum JSONFieldScanner {
    /// The outcome of a lookup.
    public enum Result: Hashable, Sendable {
        /// The field's value is a string; `range` covers its raw contents between the quotes,
        /// which still contain escape sequences when `hasEscapes` is set.
        case string(range: Range<Int>, hasEscapes: Bool)
        /// The field is present but its value is not a string.
        case notString
        /// The document is a valid object without the field.
        case absent
        /// The field appears more than once at the top level.
        case duplicate
        /// The input is not a well-formed JSON object.
        case invalid
    }

    /// Containers nested more than this many levels inside the top-level object make the document
    /// invalid, bounding recursion on hostile input.
    public static let maximumDepth = 128

    /// Looks up the top-level field whose (unescaped) name is `name`, given as UTF-8.
    public static func findTopLevelField(_ name: some Collection<UInt8>, in json: UnsafeRawBufferPointer) -> Result {
        let name = Array(name)
        var scanner = Scanner(bytes: json)
        return scanner.findField(name) ?? .invalid
    }

    /// Decodes the escape sequences of string contents returned by ``findTopLevelField(_:in:)``.
    ///
    /// Lone surrogates become U+FFFD, as in most JSON decoders. The input must come from the
    /// scanner, which has already validated every escape.
    public static func unescape(_ contents: UnsafeRawBufferPointer) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(contents.count)
        var i = 0
        while i < contents.count {
            let byte = contents[i]
            guard byte == UInt8(ascii: "\\"), i + 1 < contents.count else {
                out.append(byte)
                i += 1
                continue
            }
            let escape = contents[i + 1]
            i += 2
            switch escape {
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = hex4(contents, at: i)
                i += 4
                if (0xD800...0xDBFF).contains(scalar), i + 6 <= contents.count, contents[i] == UInt8(ascii: "\\"),
                    contents[i + 1] == UInt8(ascii: "u")
                {
                    let low = hex4(contents, at: i + 2)
                    if (0xDC00...0xDFFF).contains(low) {
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        i += 6
                    }
                }
                appendUTF8(Unicode.Scalar(scalar) ?? "\u{FFFD}", to: &out)
            default: out.append(escape)  // \" \\ \/
            }
        }
        return out
    }

    private static func hex4(_ bytes: UnsafeRawBufferPointer, at index: Int) -> UInt32 {
        var value: UInt32 = 0
        for offset in 0..<4 { value = value << 4 | UInt32(hexValue(bytes[index + offset]) ?? 0) }
        return value
    }

    fileprivate static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    private static func appendUTF8(_ scalar: Unicode.Scalar, to out: inout [UInt8]) {
        let value = scalar.value
        switch value {
        case 0..<0x80:
            out.append(UInt8(value))
        case 0x80..<0x800:
            out.append(UInt8(0xC0 | value >> 6))
            out.append(UInt8(0x80 | value & 0x3F))
        case 0x800..<0x10000:
            out.append(UInt8(0xE0 | value >> 12))
            out.append(UInt8(0x80 | value >> 6 & 0x3F))
            out.append(UInt8(0x80 | value & 0x3F))
        default:
            out.append(UInt8(0xF0 | value >> 18))
            out.append(UInt8(0x80 | value >> 12 & 0x3F))
            out.append(UInt8(0x80 | value >> 6 & 0x3F))
            out.append(UInt8(0x80 | value & 0x3F))
        }
    }
}

/// The byte-level cursor behind ``JSONFieldScanner``. Every `scan`/`skip` method returns `false`
/// (or `nil`) on malformed input and leaves the cursor wherever it stopped.
private struct Scanner {
    let bytes: UnsafeRawBufferPointer
    var index = 0

    init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var current: UInt8? { self.index < self.bytes.count ? self.bytes[self.index] : nil }

    mutating func skipWhitespace() {
        while let byte = self.current, byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 {
            self.index += 1
        }
    }

    mutating func consume(_ byte: UInt8) -> Bool {
        guard self.current == byte else { return false }
        self.index += 1
        return true
    }

    /// Returns `nil` for malformed input.
    mutating func findField(_ name: [UInt8]) -> JSONFieldScanner.Result? {
        // A UTF-8 byte order mark is not JSON, but some producers write one.
        if self.bytes.count >= 3, self.bytes[0] == 0xEF, self.bytes[1] == 0xBB, self.bytes[2] == 0xBF { self.index = 3 }
        self.skipWhitespace()
        guard self.consume(UInt8(ascii: "{")) else { return nil }
        var result = JSONFieldScanner.Result.absent
        self.skipWhitespace()
        if !self.consume(UInt8(ascii: "}")) {
            while true {
                guard let key = self.scanString() else { return nil }
                self.skipWhitespace()
                guard self.consume(UInt8(ascii: ":")) else { return nil }
                self.skipWhitespace()
                if self.keyEquals(key, name) {
                    if result != .absent { result = .duplicate }
                    if self.current == UInt8(ascii: "\"") {
                        guard let value = self.scanString() else { return nil }
                        if result != .duplicate { result = .string(range: value.range, hasEscapes: value.hasEscapes) }
                    } else {
                        guard self.skipValue(depth: 1) else { return nil }
                        if result != .duplicate { result = .notString }
                    }
                } else {
                    guard self.skipValue(depth: 1) else { return nil }
                }
                self.skipWhitespace()
                if self.consume(UInt8(ascii: ",")) {
                    self.skipWhitespace()
                    continue
                }
                guard self.consume(UInt8(ascii: "}")) else { return nil }
                break
            }
        }
        self.skipWhitespace()
        return self.index == self.bytes.count ? result : nil
    }

    func keyEquals(_ key: (range: Range<Int>, hasEscapes: Bool), _ name: [UInt8]) -> Bool {
        let raw = UnsafeRawBufferPointer(rebasing: self.bytes[key.range])
        if !key.hasEscapes { return raw.elementsEqual(name) }
        return JSONFieldScanner.unescape(raw) == name
    }

    /// Scans a string starting at its opening quote, validating escapes and rejecting raw
    /// control characters, and returns the range of its contents.
    mutating func scanString() -> (range: Range<Int>, hasEscapes: Bool)? {
        guard self.consume(UInt8(ascii: "\"")) else { return nil }
        let start = self.index
        var hasEscapes = false
        while let byte = self.current {
            switch byte {
            case UInt8(ascii: "\""):
                self.index += 1
                return (start..<self.index - 1, hasEscapes)
            case UInt8(ascii: "\\"):
                hasEscapes = true
                self.index += 1
                guard let escape = self.current else { return nil }
                self.index += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                    UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    continue
                case UInt8(ascii: "u"):
                    for _ in 0..<4 {
                        guard let digit = self.current, JSONFieldScanner.hexValue(digit) != nil else { return nil }
                        self.index += 1
                    }
                default:
                    return nil
                }
            case 0x00..<0x20:
                return nil
            default:
                self.index += 1
            }
        }
        return nil
    }

    mutating func skipValue(depth: Int) -> Bool {
        guard depth <= JSONFieldScanner.maximumDepth, let byte = self.current else { return false }
        switch byte {
        case UInt8(ascii: "\""):
            return self.scanString() != nil
        case UInt8(ascii: "{"):
            return self.skipContainer(close: UInt8(ascii: "}"), depth: depth) { scanner in
                guard scanner.scanString() != nil else { return false }
                scanner.skipWhitespace()
                guard scanner.consume(UInt8(ascii: ":")) else { return false }
                scanner.skipWhitespace()
                return scanner.skipValue(depth: depth + 1)
            }
        case UInt8(ascii: "["):
            return self.skipContainer(close: UInt8(ascii: "]"), depth: depth) { $0.skipValue(depth: depth + 1) }
        case UInt8(ascii: "t"):
            return self.skipLiteral("true")
        case UInt8(ascii: "f"):
            return self.skipLiteral("false")
        case UInt8(ascii: "n"):
            return self.skipLiteral("null")
        default:
            return self.skipNumber()
        }
    }

    /// Skips `{…}` or `[…]` from the opening bracket, using `element` for each member.
    mutating func skipContainer(close: UInt8, depth: Int, element: (inout Scanner) -> Bool) -> Bool {
        self.index += 1
        self.skipWhitespace()
        if self.consume(close) { return true }
        while true {
            guard element(&self) else { return false }
            self.skipWhitespace()
            if self.consume(close) { return true }
            guard self.consume(UInt8(ascii: ",")) else { return false }
            self.skipWhitespace()
        }
    }

    mutating func skipLiteral(_ literal: StaticString) -> Bool {
        let count = literal.utf8CodeUnitCount
        guard self.bytes.count - self.index >= count else { return false }
        for offset in 0..<count where self.bytes[self.index + offset] != literal.utf8Start[offset] {
            return false
        }
        self.index += count
        return true
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    mutating func skipNumber() -> Bool {
        _ = self.consume(UInt8(ascii: "-"))
        if self.consume(UInt8(ascii: "0")) {
            // A leading zero stands alone.
        } else {
            guard self.skipDigits() else { return false }
        }
        if self.consume(UInt8(ascii: ".")) {
            guard self.skipDigits() else { return false }
        }
        if self.consume(UInt8(ascii: "e")) || self.consume(UInt8(ascii: "E")) {
            if !self.consume(UInt8(ascii: "+")) { _ = self.consume(UInt8(ascii: "-")) }
            guard self.skipDigits() else { return false }
        }
        return true
    }

    /// Skips one or more digits.
    mutating func skipDigits() -> Bool {
        let start = self.index
        while let byte = self.current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) { self.index += 1 }
        return self.index > start
    }
}
