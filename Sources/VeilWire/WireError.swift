import VeilCompression

/// A typed failure to read or write the Kafka wire protocol.
///
/// Every malformed input Veil meets surfaces as one of these kinds, so a caller can
/// log a specific reason and close exactly the connection that sent it.
public struct WireError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong.
    public enum Kind: Sendable, Equatable {
        case truncated(what: String, needed: Int, available: Int)
        case negativeFrameSize(Int32)
        case frameTooLarge(size: Int, limit: Int)
        case tlsOnPlaintextPort(size: Int)
        case invalidLength(what: String, length: Int)
        case varintTooLong(what: String)
        case unsupportedVersion(apiKey: Int16, version: Int16)
        case unknownApiKey(Int16)
        case crcMismatch(stored: UInt32, computed: UInt32)
        case invalidRecordBatch(String)
        case compression(String)
        case trailingBytes(what: String, count: Int)
        case malformed(String)
    }

    public var kind: Kind

    public init(_ kind: Kind) { self.kind = kind }

    public var description: String {
        switch kind {
        case .truncated(let what, let needed, let available):
            return "truncated \(what): needed \(needed) bytes, \(available) available"
        case .negativeFrameSize(let size):
            return "negative frame size \(size)"
        case .frameTooLarge(let size, let limit):
            return "frame size \(size) exceeds the limit of \(limit) bytes"
        case .tlsOnPlaintextPort(let size):
            return "frame size \(size) (0x\(String(size, radix: 16))) looks like a TLS ClientHello: the client is speaking TLS to a plaintext listener"
        case .invalidLength(let what, let length):
            return "invalid length \(length) for \(what)"
        case .varintTooLong(let what):
            return "varint for \(what) is longer than its type allows"
        case .unsupportedVersion(let apiKey, let version):
            return "unsupported version \(version) of \(ApiKey(rawValue: apiKey).name)"
        case .unknownApiKey(let key):
            return "unknown API key \(key)"
        case .crcMismatch(let stored, let computed):
            return "record batch CRC-32C mismatch: stored 0x\(String(stored, radix: 16)), computed 0x\(String(computed, radix: 16))"
        case .invalidRecordBatch(let reason):
            return "invalid record batch: \(reason)"
        case .compression(let reason):
            return "compressed records: \(reason)"
        case .trailingBytes(let what, let count):
            return "\(count) unexpected trailing bytes after \(what)"
        case .malformed(let reason):
            return "malformed message: \(reason)"
        }
    }
}

extension WireError {
    @usableFromInline
    static func truncated(_ what: String, needed: Int, available: Int) -> WireError {
        WireError(.truncated(what: what, needed: needed, available: available))
    }

    init(_ error: CompressionError) {
        self.init(.compression(error.description))
    }
}
