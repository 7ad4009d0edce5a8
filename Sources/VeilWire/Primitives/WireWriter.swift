import NIOCore

/// Writes Kafka protocol primitives into a `ByteBuffer` for one message version.
public struct WireWriter {
    public var buffer: ByteBuffer
    public let version: Int16
    public let flexible: Bool
    /// When set, byte fields of at least `spillMinimum` bytes are not copied into `buffer`:
    /// what was written so far and the field itself are appended here instead, so the message
    /// is the concatenation of these parts and then `buffer`. A rewritten Fetch response
    /// carries megabytes of records that would otherwise be copied once more just to frame them.
    public var spilled: [ByteBuffer]?
    public static let spillMinimum = 32 << 10

    public init(buffer: ByteBuffer, version: Int16, flexible: Bool) {
        self.buffer = buffer
        self.version = version
        self.flexible = flexible
    }

    /// Runs `body` with a writer appending to `buffer`. The buffer is moved into the
    /// writer and back rather than copied: writing through a copy while the caller still
    /// holds the original makes NIO copy every byte already in the buffer (and drop the
    /// capacity the caller reserved).
    public static func append(to buffer: inout ByteBuffer, version: Int16, flexible: Bool, _ body: (inout WireWriter) -> Void) {
        var writer = WireWriter(buffer: ByteBuffer(), version: version, flexible: flexible)
        swap(&writer.buffer, &buffer)
        body(&writer)
        swap(&writer.buffer, &buffer)
    }

    public mutating func int8(_ v: Int8) { buffer.writeInteger(v) }
    public mutating func int16(_ v: Int16) { buffer.writeInteger(v) }
    public mutating func int32(_ v: Int32) { buffer.writeInteger(v) }
    public mutating func int64(_ v: Int64) { buffer.writeInteger(v) }
    public mutating func uint32(_ v: UInt32) { buffer.writeInteger(v) }
    public mutating func bool(_ v: Bool) { buffer.writeInteger(v ? UInt8(1) : 0) }

    public mutating func uuid(_ v: KafkaUUID) {
        buffer.writeInteger(v.high)
        buffer.writeInteger(v.low)
    }

    public mutating func unsignedVarint(_ v: UInt32) { buffer.writeUnsignedVarint(UInt64(v)) }

    private mutating func length(_ n: Int?, classicInt16: Bool) {
        if flexible {
            buffer.writeUnsignedVarint(n.map { UInt64($0) + 1 } ?? 0)
        } else if classicInt16 {
            buffer.writeInteger(Int16(n ?? -1))
        } else {
            buffer.writeInteger(Int32(n ?? -1))
        }
    }

    public mutating func nullableString(_ s: String?) {
        guard let s else { return length(nil, classicInt16: true) }
        length(s.utf8.count, classicInt16: true)
        buffer.writeString(s)
    }

    public mutating func string(_ s: String) { nullableString(s) }

    public mutating func nullableBytes(_ b: ByteBuffer?) {
        guard let b else { return length(nil, classicInt16: false) }
        length(b.readableBytes, classicInt16: false)
        if spilled != nil, b.readableBytes >= Self.spillMinimum {
            spilled!.append(buffer)
            spilled!.append(b)
            buffer = ByteBuffer()
            return
        }
        buffer.writeImmutableBuffer(b)
    }

    public mutating func bytes(_ b: ByteBuffer) { nullableBytes(b) }

    public mutating func nullableArray<T>(_ items: [T]?, _ element: (inout WireWriter, T) -> Void) {
        guard let items else { return length(nil, classicInt16: false) }
        length(items.count, classicInt16: false)
        for item in items { element(&self, item) }
    }

    public mutating func array<T>(_ items: [T], _ element: (inout WireWriter, T) -> Void) {
        nullableArray(items, element)
    }

    public mutating func taggedFields(_ tags: TaggedFields) {
        guard flexible else { return }
        buffer.writeUnsignedVarint(UInt64(tags.fields.count))
        for field in tags.fields {
            buffer.writeUnsignedVarint(UInt64(field.tag))
            buffer.writeUnsignedVarint(UInt64(field.bytes.readableBytes))
            buffer.writeImmutableBuffer(field.bytes)
        }
    }

    /// Encodes a tagged struct's payload with a nested writer at the same version.
    public func nested(_ body: (inout WireWriter) -> Void) -> ByteBuffer {
        var inner = WireWriter(buffer: ByteBuffer(), version: version, flexible: flexible)
        body(&inner)
        return inner.buffer
    }
}
