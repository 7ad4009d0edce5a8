/// JSON string escapes, both ways. Only names and selector values go through here, so these
/// helpers favour clarity over speed; record values are never unescaped.
public enum JSONString {
    /// Decodes the contents of a string (between the quotes) that a scanner has validated.
    ///
    /// Lone surrogates become U+FFFD, as in most JSON decoders.
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
            let kind = contents[i + 1]
            i += 2
            switch kind {
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "u"):
                guard i + 4 <= contents.count, var scalar = hex4(contents, i) else {
                    out.append(contentsOf: [0xEF, 0xBF, 0xBD])
                    i = contents.count
                    continue
                }
                i += 4
                if (0xD800..<0xDC00).contains(scalar), i + 6 <= contents.count,
                   contents[i] == UInt8(ascii: "\\"), contents[i + 1] == UInt8(ascii: "u"),
                   let low = hex4(contents, i + 2), (0xDC00..<0xE000).contains(low)
                {
                    scalar = 0x10000 + ((scalar - 0xD800) << 10 | (low - 0xDC00))
                    i += 6
                }
                out.append(contentsOf: Unicode.Scalar(scalar).map { Array(String($0).utf8) } ?? [0xEF, 0xBF, 0xBD])
            default:
                out.append(kind)  // \" \\ \/
            }
        }
        return out
    }

    /// Decodes a complete literal, quotes included; nil unless it is exactly one valid string.
    public static func decodeLiteral(_ literal: UnsafeRawBufferPointer) -> [UInt8]? {
        var scanner = JSONCursor(literal)
        guard let contents = try? scanner.scanString(), scanner.index == literal.count else { return nil }
        return unescape(UnsafeRawBufferPointer(rebasing: literal[contents.range]))
    }

    /// A JSON string literal (with quotes) for `bytes`, escaping only what JSON requires.
    public static func literal(_ bytes: some Sequence<UInt8>) -> String {
        var out: [UInt8] = [UInt8(ascii: "\"")]
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out += Array("\\u00".utf8) + [hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
        return String(decoding: out, as: UTF8.self)
    }

    static func hexDigit(_ byte: UInt8) -> UInt32? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(byte - UInt8(ascii: "A") + 10)
        default: nil
        }
    }

    private static func hex4(_ bytes: UnsafeRawBufferPointer, _ at: Int) -> UInt32? {
        var value: UInt32 = 0
        for k in 0..<4 {
            guard let digit = hexDigit(bytes[at + k]) else { return nil }
            value = value << 4 | digit
        }
        return value
    }
}
