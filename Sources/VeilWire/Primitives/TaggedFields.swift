import NIOCore

/// A tagged-field section (KIP-482) whose entries are kept as raw bytes.
///
/// Veil only interprets the few tags it must rewrite; everything else travels back
/// out byte-exact, so newer brokers and clients can add tags without Veil losing them.
public struct TaggedFields: Sendable, Equatable {
    /// One tagged field: its tag and its undecoded payload.
    public struct Field: Sendable, Equatable {
        public var tag: UInt32
        public var bytes: ByteBuffer

        public init(tag: UInt32, bytes: ByteBuffer) {
            self.tag = tag
            self.bytes = bytes
        }
    }

    public var fields: [Field]

    public init(_ fields: [Field] = []) { self.fields = fields }

    public var isEmpty: Bool { fields.isEmpty }

    public subscript(tag: UInt32) -> ByteBuffer? {
        fields.first { $0.tag == tag }?.bytes
    }

    /// Removes and returns the field with `tag`, if present.
    public mutating func take(_ tag: UInt32) -> ByteBuffer? {
        guard let i = fields.firstIndex(where: { $0.tag == tag }) else { return nil }
        return fields.remove(at: i).bytes
    }

    /// Inserts or replaces a field, keeping ascending tag order as the protocol requires.
    public mutating func set(_ tag: UInt32, _ bytes: ByteBuffer) {
        fields.removeAll { $0.tag == tag }
        let i = fields.firstIndex { $0.tag > tag } ?? fields.endIndex
        fields.insert(Field(tag: tag, bytes: bytes), at: i)
    }
}
