/// Base64 with the URL-safe alphabet and no padding (RFC 4648 §5).
///
/// Encrypted fields are JSON strings; this alphabet needs no JSON escaping, and a serializer
/// that escapes `/` as `\/` cannot alter it. Decoding is strict: a character outside the
/// alphabet, a length that is 1 modulo 4, or non-zero unused bits in the last character fail.
public enum Base64URL {
    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    private static let reverse: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (value, char) in alphabet.enumerated() { table[Int(char)] = UInt8(value) }
        return table
    }()

    /// Characters needed for `count` bytes.
    public static func encodedCount(_ count: Int) -> Int { (count * 4 + 2) / 3 }

    /// Bytes `count` characters decode to, or nil if no input has that length.
    public static func decodedCount(_ count: Int) -> Int? { count % 4 == 1 ? nil : count * 3 / 4 }

    /// Writes the encoding of `input` to `output`, which must hold ``encodedCount(_:)`` bytes.
    public static func encode(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) {
        precondition(output.count >= encodedCount(input.count))
        alphabet.withUnsafeBufferPointer { table in
            var i = 0
            var o = 0
            let n = input.count
            while i + 3 <= n {
                let v = UInt32(input[i]) << 16 | UInt32(input[i + 1]) << 8 | UInt32(input[i + 2])
                output[o] = table[Int(v >> 18)]
                output[o + 1] = table[Int(v >> 12 & 63)]
                output[o + 2] = table[Int(v >> 6 & 63)]
                output[o + 3] = table[Int(v & 63)]
                i += 3
                o += 4
            }
            if n - i == 1 {
                let v = UInt32(input[i]) << 16
                output[o] = table[Int(v >> 18)]
                output[o + 1] = table[Int(v >> 12 & 63)]
            } else if n - i == 2 {
                let v = UInt32(input[i]) << 16 | UInt32(input[i + 1]) << 8
                output[o] = table[Int(v >> 18)]
                output[o + 1] = table[Int(v >> 12 & 63)]
                output[o + 2] = table[Int(v >> 6 & 63)]
            }
        }
    }

    /// Decodes `input` into `output`, which must hold ``decodedCount(_:)`` bytes; returns
    /// false (with `output` partly written) if `input` is not canonical base64url.
    public static func decode(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Bool {
        guard let count = decodedCount(input.count), output.count >= count else { return false }
        return reverse.withUnsafeBufferPointer { table in
            var i = 0
            var o = 0
            let n = input.count
            while i + 4 <= n {
                let a = table[Int(input[i])], b = table[Int(input[i + 1])]
                let c = table[Int(input[i + 2])], d = table[Int(input[i + 3])]
                guard (a | b | c | d) & 0xC0 == 0 else { return false }
                let v = UInt32(a) << 18 | UInt32(b) << 12 | UInt32(c) << 6 | UInt32(d)
                output[o] = UInt8(truncatingIfNeeded: v >> 16)
                output[o + 1] = UInt8(truncatingIfNeeded: v >> 8)
                output[o + 2] = UInt8(truncatingIfNeeded: v)
                i += 4
                o += 3
            }
            switch n - i {
            case 0:
                return true
            case 2:
                let a = table[Int(input[i])], b = table[Int(input[i + 1])]
                guard (a | b) & 0xC0 == 0, b & 0x0F == 0 else { return false }
                output[o] = a << 2 | b >> 4
                return true
            case 3:
                let a = table[Int(input[i])], b = table[Int(input[i + 1])], c = table[Int(input[i + 2])]
                guard (a | b | c) & 0xC0 == 0, c & 0x03 == 0 else { return false }
                output[o] = a << 2 | b >> 4
                output[o + 1] = b << 4 | c >> 2
                return true
            default:
                return false
            }
        }
    }
}
