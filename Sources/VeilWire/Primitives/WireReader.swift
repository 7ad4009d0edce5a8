import NIOCore

/// Reads Kafka protocol primitives from a `ByteBuffer` for one message version.
///
/// `flexible` selects the compact encodings (KIP-482) so each message type can be
/// written once with version-dependent fields, rather than once per version.
public struct WireReader {
    public var buffer: ByteBuffer
    public let version: Int16
    public let flexible: Bool

    public init(buffer: ByteBuffer, version: Int16, flexible: Bool) {
        self.buffer = buffer
        self.version = version
        self.flexible = flexible
    }

    @inline(__always)
    private mutating func fixed<T: FixedWidthInteger>(_: T.Type, _ what: String) throws -> T {
        guard let v = buffer.readInteger(as: T.self) else {
            throw WireError.truncated(what, needed: MemoryLayout<T>.size, available: buffer.readableBytes)
        }
        return v
    }

    public mutating func int8(_ what: String = "int8") throws -> Int8 { try fixed(Int8.self, what) }
    public mutating func int16(_ what: String = "int16") throws -> Int16 { try fixed(Int16.self, what) }
    public mutating func int32(_ what: String = "int32") throws -> Int32 { try fixed(Int32.self, what) }
    public mutating func int64(_ what: String = "int64") throws -> Int64 { try fixed(Int64.self, what) }
    public mutating func uint32(_ what: String = "uint32") throws -> UInt32 { try fixed(UInt32.self, what) }

    public mutating func bool(_ what: String = "bool") throws -> Bool { try int8(what) != 0 }

    public mutating func uuid(_ what: String = "uuid") throws -> KafkaUUID {
        let high = try fixed(UInt64.self, what)
        let low = try fixed(UInt64.self, what)
        return KafkaUUID(high: high, low: low)
    }

    public mutating func unsignedVarint(_ what: String = "unsigned varint") throws -> UInt32 {
        try buffer.readUnsignedVarint32(what)
    }

    public mutating func varint(_ what: String = "varint") throws -> Int32 { try buffer.readVarint32(what) }
    public mutating func varlong(_ what: String = "varlong") throws -> Int64 { try buffer.readVarint64(what) }

    /// Reads a length prefix: int16/int32 classic or compact unsigned varint (n+1, 0 = null).
    /// Returns nil for null, and bounds the length by what is actually readable so a
    /// hostile length never drives an allocation.
    private mutating func length(_ what: String, classicInt16: Bool) throws -> Int? {
        let n: Int
        if flexible {
            let raw = try unsignedVarint(what)
            if raw == 0 { return nil }
            n = Int(raw) - 1
        } else if classicInt16 {
            let raw = try int16(what)
            if raw == -1 { return nil }
            n = Int(raw)
        } else {
            let raw = try int32(what)
            if raw == -1 { return nil }
            n = Int(raw)
        }
        guard n >= 0 else { throw WireError(.invalidLength(what: what, length: n)) }
        return n
    }

    public mutating func nullableString(_ what: String = "string") throws -> String? {
        guard let n = try length(what, classicInt16: true) else { return nil }
        guard let bytes = buffer.readSlice(length: n) else {
            throw WireError.truncated(what, needed: n, available: buffer.readableBytes)
        }
        return try bytes.validatedUTF8String(what)
    }

    public mutating func string(_ what: String = "string") throws -> String {
        guard let s = try nullableString(what) else {
            throw WireError(.malformed("\(what) is null but not nullable"))
        }
        return s
    }

    public mutating func nullableBytes(_ what: String = "bytes") throws -> ByteBuffer? {
        guard let n = try length(what, classicInt16: false) else { return nil }
        guard let b = buffer.readSlice(length: n) else {
            throw WireError.truncated(what, needed: n, available: buffer.readableBytes)
        }
        return b
    }

    public mutating func bytes(_ what: String = "bytes") throws -> ByteBuffer {
        guard let b = try nullableBytes(what) else {
            throw WireError(.malformed("\(what) is null but not nullable"))
        }
        return b
    }

    /// Reads an array; each element must take at least one byte, which bounds the count.
    public mutating func nullableArray<T>(_ what: String = "array", _ element: (inout WireReader) throws -> T) throws -> [T]? {
        guard let n = try length(what, classicInt16: false) else { return nil }
        guard n <= buffer.readableBytes else {
            throw WireError(.invalidLength(what: what, length: n))
        }
        var out: [T] = []
        // The count is bounded by the bytes present, but an element can be far larger in
        // memory than on the wire: reserve modestly and let the array grow as elements decode.
        out.reserveCapacity(Swift.min(n, 1024))
        for _ in 0..<n { out.append(try element(&self)) }
        return out
    }

    public mutating func array<T>(_ what: String = "array", _ element: (inout WireReader) throws -> T) throws -> [T] {
        try nullableArray(what, element) ?? []
    }

    public mutating func taggedFields() throws -> TaggedFields {
        guard flexible else { return TaggedFields() }
        let count = try unsignedVarint("tagged field count")
        guard count <= buffer.readableBytes else {
            throw WireError(.invalidLength(what: "tagged field count", length: Int(count)))
        }
        var fields: [TaggedFields.Field] = []
        var previous: Int64 = -1
        for _ in 0..<count {
            let tag = try unsignedVarint("tag")
            guard Int64(tag) > previous else {
                throw WireError(.malformed("tagged fields out of order (tag \(tag) after \(previous))"))
            }
            previous = Int64(tag)
            let size = Int(try unsignedVarint("tagged field size"))
            guard let bytes = buffer.readSlice(length: size) else {
                throw WireError.truncated("tagged field \(tag)", needed: size, available: buffer.readableBytes)
            }
            fields.append(TaggedFields.Field(tag: tag, bytes: bytes))
        }
        return TaggedFields(fields)
    }

    /// Reads a tagged struct's payload with a nested reader at the same version. The
    /// struct must fill the payload: bytes left over would be lost on re-encoding.
    public func nested<T>(_ bytes: ByteBuffer, _ body: (inout WireReader) throws -> T) throws -> T {
        var inner = WireReader(buffer: bytes, version: version, flexible: flexible)
        let value = try body(&inner)
        try inner.expectEnd("tagged field payload")
        return value
    }

    public func expectEnd(_ what: String) throws {
        if buffer.readableBytes != 0 {
            throw WireError(.trailingBytes(what: what, count: buffer.readableBytes))
        }
    }
}

extension ByteBuffer {
    /// The readable bytes as a String, which must be valid UTF-8. Decoding with repair
    /// would silently change the bytes (and their length) when the value is written back.
    func validatedUTF8String(_ what: String) throws -> String {
        let s = String(decoding: readableBytesView, as: UTF8.self)
        guard s.utf8.elementsEqual(readableBytesView) else {
            throw WireError(.malformed("\(what) is not valid UTF-8"))
        }
        return s
    }

    @inlinable
    mutating func readUnsignedVarint32(_ what: String) throws -> UInt32 {
        var result: UInt32 = 0
        var shift: UInt32 = 0
        while true {
            guard let byte = readInteger(as: UInt8.self) else {
                throw WireError.truncated(what, needed: 1, available: 0)
            }
            if shift == 28 && byte > 0x0F { throw WireError(.varintTooLong(what: what)) }
            result |= UInt32(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    @inlinable
    mutating func readUnsignedVarint64(_ what: String) throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard let byte = readInteger(as: UInt8.self) else {
                throw WireError.truncated(what, needed: 1, available: 0)
            }
            if shift == 63 && byte > 0x01 { throw WireError(.varintTooLong(what: what)) }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    /// Zigzag-decoded 32-bit varint (record fields).
    @inlinable
    public mutating func readVarint32(_ what: String) throws -> Int32 {
        let raw = try readUnsignedVarint32(what)
        return Int32(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    /// Zigzag-decoded 64-bit varlong (record timestamp deltas).
    @inlinable
    public mutating func readVarint64(_ what: String) throws -> Int64 {
        let raw = try readUnsignedVarint64(what)
        return Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    @inlinable
    @discardableResult
    public mutating func writeUnsignedVarint(_ value: UInt64) -> Int {
        var v = value
        var n = 0
        while v >= 0x80 {
            writeInteger(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
            n += 1
        }
        writeInteger(UInt8(truncatingIfNeeded: v))
        return n + 1
    }

    @inlinable
    @discardableResult
    public mutating func writeVarint(_ value: Int64) -> Int {
        writeUnsignedVarint(UInt64(bitPattern: (value << 1) ^ (value >> 63)))
    }
}

/// Byte count of an unsigned varint, for precomputing record lengths.
@inlinable
public func unsignedVarintSize(_ value: UInt64) -> Int {
    var v = value
    var n = 1
    while v >= 0x80 { v >>= 7; n += 1 }
    return n
}

/// Byte count of a zigzag varint.
@inlinable
public func varintSize(_ value: Int64) -> Int {
    unsignedVarintSize(UInt64(bitPattern: (value << 1) ^ (value >> 63)))
}
