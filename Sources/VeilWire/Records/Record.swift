import NIOCore

/// A record header: a string key and a nullable byte value.
public struct RecordHeader: Sendable, Equatable {
    public var key: String
    public var value: ByteBuffer?

    public init(key: String, value: ByteBuffer?) {
        self.key = key
        self.value = value
    }
}

/// One record inside a magic-2 batch. Key, value and header values are slices of the
/// batch's (decompressed) bytes, so decoding copies no payload.
public struct Record: Sendable, Equatable {
    public var attributes: Int8
    public var timestampDelta: Int64
    public var offsetDelta: Int32
    public var key: ByteBuffer?
    public var value: ByteBuffer?
    public var headers: [RecordHeader]

    public init(attributes: Int8 = 0, timestampDelta: Int64, offsetDelta: Int32, key: ByteBuffer?, value: ByteBuffer?, headers: [RecordHeader] = []) {
        self.attributes = attributes
        self.timestampDelta = timestampDelta
        self.offsetDelta = offsetDelta
        self.key = key
        self.value = value
        self.headers = headers
    }

    private static func readNullable(_ buffer: inout ByteBuffer, _ what: String) throws -> ByteBuffer? {
        let length = try buffer.readVarint32(what)
        if length == -1 { return nil }
        guard length >= 0 else { throw WireError(.invalidLength(what: what, length: Int(length))) }
        guard let slice = buffer.readSlice(length: Int(length)) else {
            throw WireError.truncated(what, needed: Int(length), available: buffer.readableBytes)
        }
        return slice
    }

    /// Reads one record (length-prefixed) from `buffer`.
    static func read(from buffer: inout ByteBuffer) throws -> Record {
        // The fixed fields are parsed with one access to the bytes (a ByteBuffer read per
        // varint byte costs a dynamic exclusivity check each); key and value become slices.
        let start = buffer.readerIndex
        let fields = try buffer.withUnsafeReadableBytes { try RecordFields.parse($0) }
        let key = fields.key.map { buffer.getSlice(at: start + $0.offset, length: $0.count)! }
        let value = fields.value.map { buffer.getSlice(at: start + $0.offset, length: $0.count)! }
        var headers: [RecordHeader] = []
        if fields.headerCount > 0 {
            var body = buffer.getSlice(at: start + fields.headersOffset, length: fields.end - fields.headersOffset)!
            // Each header takes at least 2 bytes on the wire but ~40 in memory: reserve modestly.
            headers.reserveCapacity(min(fields.headerCount, 64))
            for _ in 0..<fields.headerCount {
                guard var keyBytes = try readNullable(&body, "record header key") else {
                    throw WireError(.invalidRecordBatch("null record header key"))
                }
                let key = keyBytes.readString(length: keyBytes.readableBytes) ?? ""
                headers.append(RecordHeader(key: key, value: try readNullable(&body, "record header value")))
            }
            guard body.readableBytes == 0 else {
                throw WireError(.trailingBytes(what: "record", count: body.readableBytes))
            }
        } else if fields.headersOffset != fields.end {
            throw WireError(.trailingBytes(what: "record", count: fields.end - fields.headersOffset))
        }
        buffer.moveReaderIndex(forwardBy: fields.end)
        return Record(attributes: fields.attributes, timestampDelta: fields.timestampDelta, offsetDelta: fields.offsetDelta,
                      key: key, value: value, headers: headers)
    }

    /// Bytes of the record after its length prefix.
    var bodySize: Int { bodySize(valueByteCount: value?.readableBytes) }

    /// Bytes of the record after its length prefix if its value had `valueByteCount` bytes (nil: null).
    func bodySize(valueByteCount: Int?) -> Int {
        1 + varintSize(timestampDelta) + varintSize(Int64(offsetDelta))
            + Self.nullableSize(key?.readableBytes) + Self.nullableSize(valueByteCount) + headersSize
    }

    /// Bytes of a nullable length-prefixed field of `count` bytes (nil: null).
    private static func nullableSize(_ count: Int?) -> Int {
        guard let count else { return 1 }
        return varintSize(Int64(count)) + count
    }

    /// Writes the record, length prefix included, with a value of `valueByteCount` bytes that
    /// `writeValue` appends to `buffer` in place of ``value``: a decrypted value goes straight
    /// into the outgoing batch instead of into a buffer of its own first.
    ///
    /// If `writeValue` throws, `buffer` is left as it was before the call.
    public func write(to buffer: inout ByteBuffer, valueByteCount: Int,
                      writeValue: (inout ByteBuffer) throws -> Void) rethrows {
        // Not generic over a typed error: across modules an unspecialized generic costs more
        // per record than the record's own bytes.
        let body = bodySize(valueByteCount: valueByteCount)
        let total = varintSize(Int64(body)) + body
        let start = buffer.writerIndex
        buffer.reserveCapacity(minimumWritableBytes: total)
        let prefix = total - valueByteCount - headersSize
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: prefix) { out in
            var w = RawRecordWriter(out)
            w.leadingFields(of: self, bodySize: body)
            w.varint(Int64(valueByteCount))
            precondition(w.offset == prefix, "record prefix computed as \(prefix) but \(w.offset) bytes written")
            return prefix
        }
        do {
            try writeValue(&buffer)
        } catch {
            buffer.moveWriterIndex(to: start)
            throw error
        }
        precondition(buffer.writerIndex - start == prefix + valueByteCount, "record value is not the \(valueByteCount) bytes announced")
        writeHeaders(to: &buffer)
    }

    /// Bytes of the header count and headers.
    private var headersSize: Int {
        var size = varintSize(Int64(headers.count))
        for h in headers {
            let keyLength = h.key.utf8.count
            size += varintSize(Int64(keyLength)) + keyLength + Self.nullableSize(h.value?.readableBytes)
        }
        return size
    }

    private func writeHeaders(to buffer: inout ByteBuffer) {
        let size = headersSize
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { out in
            var w = RawRecordWriter(out)
            w.headers(headers)
            precondition(w.offset == size, "record headers computed as \(size) but \(w.offset) bytes written")
            return size
        }
    }

    /// Writes the record, length prefix included.
    func write(to buffer: inout ByteBuffer) {
        write(to: &buffer, bodySize: bodySize)
    }

    /// Writes the record whose ``bodySize`` the caller has already computed.
    func write(to buffer: inout ByteBuffer, bodySize: Int) {
        // One access to the output for the whole record: ByteBuffer writes of single
        // fields cost a capacity check and a dynamic exclusivity check each.
        let total = varintSize(Int64(bodySize)) + bodySize
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: total) { out in
            var w = RawRecordWriter(out)
            w.leadingFields(of: self, bodySize: bodySize)
            w.nullable(value)
            w.headers(headers)
            precondition(w.offset == total, "record size computed as \(total) but \(w.offset) bytes written")
            return total
        }
    }
}

/// The fixed fields of one record and where its key, value and headers lie, relative to
/// the start of the length prefix.
struct RecordFields {
    var attributes: Int8
    var timestampDelta: Int64
    var offsetDelta: Int32
    var key: (offset: Int, count: Int)?
    var value: (offset: Int, count: Int)?
    var headerCount: Int
    var headersOffset: Int
    /// Bytes from the length prefix to the end of the record.
    var end: Int

    static func parse(_ bytes: UnsafeRawBufferPointer) throws -> RecordFields {
        var r = RawRecordReader(bytes: bytes, offset: 0, end: bytes.count)
        let length = try r.varint32("record length")
        guard length >= 0, Int(length) <= r.end - r.offset else {
            throw WireError(.invalidRecordBatch("record length \(length) exceeds the \(r.end - r.offset) bytes left"))
        }
        r.end = r.offset + Int(length)
        guard r.offset < r.end else { throw WireError.truncated("record attributes", needed: 1, available: 0) }
        let attributes = Int8(bitPattern: bytes[r.offset])
        r.offset += 1
        let timestampDelta = try r.varint64("record timestamp delta")
        let offsetDelta = try r.varint32("record offset delta")
        let key = try r.nullable("record key")
        let value = try r.nullable("record value")
        let headerCount = try r.varint32("record header count")
        guard headerCount >= 0, Int(headerCount) <= r.end - r.offset else {
            throw WireError(.invalidLength(what: "record header count", length: Int(headerCount)))
        }
        return RecordFields(attributes: attributes, timestampDelta: timestampDelta, offsetDelta: offsetDelta, key: key, value: value,
                            headerCount: Int(headerCount), headersOffset: r.offset, end: r.end)
    }
}

/// Reads zigzag varints and length-prefixed ranges from raw bytes, within `end`.
struct RawRecordReader {
    let bytes: UnsafeRawBufferPointer
    var offset: Int
    var end: Int

    private mutating func unsignedVarint(_ what: String, maxBits: Int) throws -> UInt64 {
        var result: UInt64 = 0
        var shift = 0
        while true {
            guard offset < end else { throw WireError.truncated(what, needed: 1, available: 0) }
            let byte = bytes[offset]
            offset += 1
            // The last byte of a maximal varint may only carry the bits that remain.
            if shift + 7 > maxBits && UInt64(byte) >> (maxBits - shift) != 0 { throw WireError(.varintTooLong(what: what)) }
            result |= UInt64(byte & 0x7F) << UInt64(shift)
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    mutating func varint32(_ what: String) throws -> Int32 {
        let raw = UInt32(try unsignedVarint(what, maxBits: 32))
        return Int32(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    mutating func varint64(_ what: String) throws -> Int64 {
        let raw = try unsignedVarint(what, maxBits: 64)
        return Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    /// A length-prefixed byte range (-1 = null), skipped over.
    mutating func nullable(_ what: String) throws -> (offset: Int, count: Int)? {
        let length = try varint32(what)
        if length == -1 { return nil }
        guard length >= 0 else { throw WireError(.invalidLength(what: what, length: Int(length))) }
        guard Int(length) <= end - offset else {
            throw WireError.truncated(what, needed: Int(length), available: end - offset)
        }
        defer { offset += Int(length) }
        return (offset, Int(length))
    }
}

/// Writes a record's fields into memory already sized for them.
struct RawRecordWriter {
    let out: UnsafeMutableRawBufferPointer
    var offset = 0

    init(_ out: UnsafeMutableRawBufferPointer) { self.out = out }

    mutating func byte(_ b: UInt8) {
        out[offset] = b
        offset += 1
    }

    mutating func varint(_ value: Int64) {
        var v = UInt64(bitPattern: (value << 1) ^ (value >> 63))
        while v >= 0x80 {
            byte(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        byte(UInt8(truncatingIfNeeded: v))
    }

    mutating func bytes(_ source: UnsafeRawBufferPointer) {
        guard source.count > 0 else { return }
        precondition(source.count <= out.count - offset)
        (out.baseAddress! + offset).copyMemory(from: source.baseAddress!, byteCount: source.count)
        offset += source.count
    }

    mutating func nullable(_ b: ByteBuffer?) {
        guard let b else { return varint(-1) }
        varint(Int64(b.readableBytes))
        b.withUnsafeReadableBytes { bytes($0) }
    }

    /// The length prefix and the fields before the value.
    mutating func leadingFields(of record: Record, bodySize: Int) {
        varint(Int64(bodySize))
        byte(UInt8(bitPattern: record.attributes))
        varint(record.timestampDelta)
        varint(Int64(record.offsetDelta))
        nullable(record.key)
    }

    mutating func headers(_ headers: [RecordHeader]) {
        varint(Int64(headers.count))
        for h in headers {
            varint(Int64(h.key.utf8.count))
            string(h.key)
            nullable(h.value)
        }
    }

    mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { bytes(UnsafeRawBufferPointer($0)) }
    }
}
