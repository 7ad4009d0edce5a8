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
        let length = try buffer.readVarint32("record length")
        guard length >= 0, var body = buffer.readSlice(length: Int(length)) else {
            throw WireError(.invalidRecordBatch("record length \(length) exceeds the \(buffer.readableBytes) bytes left"))
        }
        guard let attributes = body.readInteger(as: Int8.self) else {
            throw WireError.truncated("record attributes", needed: 1, available: 0)
        }
        let timestampDelta = try body.readVarint64("record timestamp delta")
        let offsetDelta = try body.readVarint32("record offset delta")
        let key = try readNullable(&body, "record key")
        let value = try readNullable(&body, "record value")
        let headerCount = try body.readVarint32("record header count")
        guard headerCount >= 0, Int(headerCount) <= body.readableBytes else {
            throw WireError(.invalidLength(what: "record header count", length: Int(headerCount)))
        }
        var headers: [RecordHeader] = []
        // Each header takes at least 2 bytes on the wire but ~40 in memory: reserve modestly.
        headers.reserveCapacity(min(Int(headerCount), 64))
        for _ in 0..<headerCount {
            guard var keyBytes = try readNullable(&body, "record header key") else {
                throw WireError(.invalidRecordBatch("null record header key"))
            }
            let key = keyBytes.readString(length: keyBytes.readableBytes) ?? ""
            headers.append(RecordHeader(key: key, value: try readNullable(&body, "record header value")))
        }
        guard body.readableBytes == 0 else {
            throw WireError(.trailingBytes(what: "record", count: body.readableBytes))
        }
        return Record(attributes: attributes, timestampDelta: timestampDelta, offsetDelta: offsetDelta, key: key, value: value, headers: headers)
    }

    private var bodySize: Int {
        func nullableSize(_ b: ByteBuffer?) -> Int {
            guard let b else { return 1 }
            return varintSize(Int64(b.readableBytes)) + b.readableBytes
        }
        var size = 1 + varintSize(timestampDelta) + varintSize(Int64(offsetDelta))
        size += nullableSize(key) + nullableSize(value) + varintSize(Int64(headers.count))
        for h in headers {
            let keyLength = h.key.utf8.count
            size += varintSize(Int64(keyLength)) + keyLength + nullableSize(h.value)
        }
        return size
    }

    private static func writeNullable(_ b: ByteBuffer?, to buffer: inout ByteBuffer) {
        guard let b else { buffer.writeVarint(-1); return }
        buffer.writeVarint(Int64(b.readableBytes))
        buffer.writeImmutableBuffer(b)
    }

    /// Writes the record, length prefix included.
    func write(to buffer: inout ByteBuffer) {
        // (A nested function capturing `buffer` would cost a dynamic exclusivity check per call.)
        buffer.writeVarint(Int64(bodySize))
        buffer.writeInteger(attributes)
        buffer.writeVarint(timestampDelta)
        buffer.writeVarint(Int64(offsetDelta))
        Self.writeNullable(key, to: &buffer)
        Self.writeNullable(value, to: &buffer)
        buffer.writeVarint(Int64(headers.count))
        for h in headers {
            buffer.writeVarint(Int64(h.key.utf8.count))
            buffer.writeString(h.key)
            Self.writeNullable(h.value, to: &buffer)
        }
    }
}
