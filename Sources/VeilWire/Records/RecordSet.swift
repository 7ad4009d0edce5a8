import NIOCore

/// The `records` field of Produce and Fetch, split into its entries without decoding them.
///
/// Entries share one framing (offset int64, size int32, then size bytes), so a v2 batch,
/// a legacy magic 0/1 message and a partial entry can all be told apart and kept.
public enum RecordSetEntry: Sendable, Equatable {
    /// A magic-2 record batch's complete bytes.
    case batch(ByteBuffer)
    /// A legacy magic 0 or 1 message (with its offset and size prefix), passed through untouched.
    case legacy(ByteBuffer)
    /// A partial entry at the end: brokers cut Fetch responses at max bytes. Kept as is.
    case truncated(ByteBuffer)

    public var bytes: ByteBuffer {
        switch self {
        case .batch(let b), .legacy(let b), .truncated(let b): return b
        }
    }
}

/// Splits and joins record sets.
public enum RecordSet {
    /// Size (after the offset and size fields) of the smallest legacy magic-0 message.
    static let minimumEntrySize: Int32 = 14

    /// Splits `records` into entries. Only a malformed *complete* entry is an error.
    public static func split(_ records: ByteBuffer) throws -> [RecordSetEntry] {
        var buffer = records
        var entries: [RecordSetEntry] = []
        while buffer.readableBytes > 0 {
            guard buffer.readableBytes >= 12,
                  let size = buffer.getInteger(at: buffer.readerIndex + 8, as: Int32.self)
            else {
                entries.append(.truncated(buffer.readSlice(length: buffer.readableBytes)!))
                break
            }
            // The smallest entry of any format is a legacy v0 message (14 bytes after the
            // size). A smaller size is corrupt, and would put the magic byte read below
            // outside the entry, so an entry could be classified by its neighbour's bytes.
            guard size >= minimumEntrySize else {
                throw WireError(.invalidLength(what: "record batch length", length: Int(size)))
            }
            guard buffer.readableBytes >= 12 + Int(size) else {
                entries.append(.truncated(buffer.readSlice(length: buffer.readableBytes)!))
                break
            }
            let magic = buffer.getInteger(at: buffer.readerIndex + 16, as: Int8.self)!
            let entry = buffer.readSlice(length: 12 + Int(size))!
            switch magic {
            case 2: entries.append(.batch(entry))
            case 0, 1: entries.append(.legacy(entry))
            default: throw WireError(.invalidRecordBatch("unknown magic \(magic)"))
            }
        }
        return entries
    }
}
