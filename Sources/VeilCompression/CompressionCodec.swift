/// A Kafka record-batch compression codec, as stored in bits 0-2 of the batch attributes.
///
/// The raw values are the wire values, so `CompressionCodec(rawValue:)` decodes the field directly.
public enum CompressionCodec: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case none = 0
    case gzip = 1
    case snappy = 2
    case lz4 = 3
    case zstd = 4

    /// The mask selecting the codec bits of a record batch's `attributes` field.
    public static let attributesMask: Int16 = 0x07

    /// Decodes the codec from a record batch's `attributes` field.
    ///
    /// Bits 0-2 can encode 5, 6 and 7, which Kafka has never assigned; those are refused here so
    /// the wire codec never forwards a batch it cannot read back.
    public init(batchAttributes: Int16) throws {
        let raw = UInt8(truncatingIfNeeded: batchAttributes & Self.attributesMask)
        guard let codec = CompressionCodec(rawValue: raw) else {
            throw CompressionError(codec: nil, kind: .unsupportedCodec(raw: raw))
        }
        self = codec
    }

    /// The lowercase name Kafka uses in its `compression.type` settings.
    public var description: String {
        switch self {
        case .none: "none"
        case .gzip: "gzip"
        case .snappy: "snappy"
        case .lz4: "lz4"
        case .zstd: "zstd"
        }
    }
}
