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
    public static let maximumDepth = JSONCursor.maximumDepth

    /// Looks up the top-level field whose (unescaped) name is `name`, given as UTF-8. Decode a
    /// string result's escapes with ``JSONString/unescape(_:)``.
    public static func findTopLevelField(_ name: some Collection<UInt8>, in json: UnsafeRawBufferPointer) -> Result {
        var cursor = JSONCursor(json)
        do {
            return try find(Array(name), with: &cursor)
        } catch {
            return .invalid
        }
    }

    private static func find(_ name: [UInt8], with cursor: inout JSONCursor) throws(JSONSyntaxError) -> Result {
        cursor.skipByteOrderMark()
        cursor.skipWhitespace()
        try cursor.expect(UInt8(ascii: "{"), "an object")
        var result = Result.absent
        cursor.skipWhitespace()
        if cursor.current == UInt8(ascii: "}") {
            cursor.index += 1
        } else {
            while true {
                let key = try cursor.scanString()
                cursor.skipWhitespace()
                try cursor.expect(UInt8(ascii: ":"), "':'")
                cursor.skipWhitespace()
                // Depth 0 for the members' values: the cursor counts containers from there, so
                // `maximumDepth` of them fit inside the top-level object.
                if keyEquals(UnsafeRawBufferPointer(rebasing: cursor.bytes[key.range]), hasEscapes: key.hasEscapes, name) {
                    if result != .absent { result = .duplicate }
                    if cursor.current == UInt8(ascii: "\"") {
                        let value = try cursor.scanString()
                        if result != .duplicate { result = .string(range: value.range, hasEscapes: value.hasEscapes) }
                    } else {
                        try cursor.skipValue(depth: 0)
                        if result != .duplicate { result = .notString }
                    }
                } else {
                    try cursor.skipValue(depth: 0)
                }
                guard try cursor.moreElements(close: UInt8(ascii: "}"), "',' or '}'") else { break }
            }
        }
        try cursor.finish()
        return result
    }

    private static func keyEquals(_ raw: UnsafeRawBufferPointer, hasEscapes: Bool, _ name: [UInt8]) -> Bool {
        hasEscapes ? JSONString.unescape(raw) == name : raw.elementsEqual(name)
    }
}
