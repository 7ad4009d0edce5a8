import NIOCore
import Testing
@testable import VeilWire
import VeilTestSupport

// Small helpers shared by the VeilWire test files.

/// A buffer holding exactly `bytes`.
func buf(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }

/// A buffer from hex text; spaces, newlines and `_` are ignored.
func hexBuf(_ hex: String) -> ByteBuffer { buf(hexBytes(hex)) }

func hexBytes(_ hex: String) -> [UInt8] {
    let digits = hex.filter { $0.isHexDigit }
    precondition(digits.count % 2 == 0, "odd number of hex digits")
    var out: [UInt8] = []
    out.reserveCapacity(digits.count / 2)
    var i = digits.startIndex
    while i < digits.endIndex {
        let j = digits.index(i, offsetBy: 2)
        out.append(UInt8(digits[i..<j], radix: 16)!)
        i = j
    }
    return out
}

func hex(_ b: ByteBuffer) -> String { hex(Array(b.readableBytesView)) }

func hex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef")
    var s = ""
    s.reserveCapacity(bytes.count * 2)
    for b in bytes {
        s.append(digits[Int(b >> 4)])
        s.append(digits[Int(b & 0xF)])
    }
    return s
}

func str(_ s: String) -> ByteBuffer { ByteBuffer(string: s) }

extension ByteBuffer {
    var bytes: [UInt8] { Array(readableBytesView) }
}

/// Runs `body` and returns the kind of the `WireError` it threw, or nil if it
/// returned or threw something else.
func wireError<T>(_ body: () throws -> T) -> WireError.Kind? {
    do {
        _ = try body()
        return nil
    } catch let error as WireError {
        return error.kind
    } catch {
        return nil
    }
}

extension WireError.Kind {
    /// The case name, for asserting on the kind of error without its details.
    var label: String {
        switch self {
        case .truncated: "truncated"
        case .negativeFrameSize: "negativeFrameSize"
        case .frameTooLarge: "frameTooLarge"
        case .tlsOnPlaintextPort: "tlsOnPlaintextPort"
        case .invalidLength: "invalidLength"
        case .varintTooLong: "varintTooLong"
        case .unsupportedVersion: "unsupportedVersion"
        case .unknownApiKey: "unknownApiKey"
        case .crcMismatch: "crcMismatch"
        case .invalidRecordBatch: "invalidRecordBatch"
        case .compression: "compression"
        case .trailingBytes: "trailingBytes"
        case .malformed: "malformed"
        }
    }
}

/// A reader over `bytes` at `version`, flexible or not.
func reader(_ bytes: ByteBuffer, flexible: Bool, version: Int16 = 0) -> WireReader {
    WireReader(buffer: bytes, version: version, flexible: flexible)
}

/// Encodes with a fresh writer and returns the bytes.
func written(flexible: Bool, version: Int16 = 0, _ body: (inout WireWriter) -> Void) -> ByteBuffer {
    var w = WireWriter(buffer: ByteBuffer(), version: version, flexible: flexible)
    body(&w)
    return w.buffer
}

/// A tagged-field section holding `fields` (tag, payload bytes), in the given order.
func tags(_ fields: [(UInt32, [UInt8])]) -> TaggedFields {
    TaggedFields(fields.map { TaggedFields.Field(tag: $0.0, bytes: buf($0.1)) })
}


func randomBytes<G: RandomNumberGenerator>(_ count: Int, using rng: inout G) -> [UInt8] {
    (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
}
