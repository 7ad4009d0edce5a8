/// Checks that bytes are exactly one JSON value (optionally preceded by a UTF-8 byte order
/// mark and surrounded by whitespace), with the grammar field-level encryption relies on.
public enum JSONValidator {
    /// Throws ``JSONSyntaxError`` unless `json` is one well-formed JSON value.
    public static func validate(_ json: UnsafeRawBufferPointer) throws(JSONSyntaxError) {
        var cursor = JSONCursor(json)
        cursor.skipByteOrderMark()
        cursor.skipWhitespace()
        try cursor.skipValue(depth: 0)
        try cursor.finish()
    }

    /// ``validate(_:)-(UnsafeRawBufferPointer)`` for an array.
    public static func validate(_ json: [UInt8]) throws(JSONSyntaxError) {
        let result = json.withUnsafeBytes { bytes in
            Result { () throws(JSONSyntaxError) in try validate(bytes) }
        }
        try result.get()
    }
}

/// The text form of an encrypted field, which keeps the record valid JSON:
///
/// ```
/// "veil:1:" base64url(envelope)      (a JSON string; base64url without padding)
/// ```
/// `1` is the version of this text form; the envelope inside has its own version. The form
/// needs no JSON escapes, so it is found by a plain prefix comparison.
public enum EncryptedField {
    /// What every encrypted field's string starts with.
    public static let prefix: [UInt8] = Array("veil:1:".utf8)

    /// Bytes of the JSON string token (quotes included) for an envelope of `count` bytes.
    public static func tokenByteCount(envelopeByteCount count: Int) -> Int {
        2 + prefix.count + Base64URL.encodedCount(count)
    }
}
