import NIOCore
import VeilKMS

/// Identifies the data key an envelope was sealed with: the key section of its
/// header (KMS name, key id and wrapped DEK), compared byte for byte.
///
/// Equal key IDs unwrap to the same DEK, so the decryption side caches
/// unwrapped keys under this value and calls the KMS once per data key.
public struct EnvelopeKeyID: Hashable, Sendable, CustomStringConvertible {
    /// `u8 K || kms || u16be I || keyId || u16be W || wrapped`, already bounds-checked.
    let bytes: ByteBuffer

    init(bytes: ByteBuffer) {
        self.bytes = bytes
    }

    /// The key reference, validated as UTF-8 and as a reference (the header
    /// parser only checks structure, to keep the per-record path free of
    /// string work).
    public func reference() throws(EnvelopeError) -> KeyReference {
        let layout = self.layout
        let start = bytes.readerIndex
        guard let kmsBytes = bytes.getBytes(at: start + 1, length: layout.kmsCount),
              let keyIdBytes = bytes.getBytes(at: start + 3 + layout.kmsCount, length: layout.keyIdCount),
              let kms = String(validating: kmsBytes, as: UTF8.self),
              let keyId = String(validating: keyIdBytes, as: UTF8.self),
              let reference = KeyReference(kms: kms, keyId: keyId)
        else { throw .malformed("key reference is not valid UTF-8 or not a valid reference") }
        return reference
    }

    /// The wrapped DEK, to hand to the KMS.
    public var wrappedDataKey: [UInt8] {
        let layout = self.layout
        return bytes.getBytes(at: bytes.readerIndex + 5 + layout.kmsCount + layout.keyIdCount, length: layout.wrappedCount)!
    }

    /// A copy that does not keep the (possibly large) buffer it was sliced from alive.
    public func compacted() -> EnvelopeKeyID {
        var copy = ByteBufferAllocator().buffer(capacity: bytes.readableBytes)
        copy.writeImmutableBuffer(bytes)
        return EnvelopeKeyID(bytes: copy)
    }

    public var description: String {
        let name = (try? reference().description) ?? "<invalid reference>"
        return "EnvelopeKeyID(\(name), wrapped \(layout.wrappedCount) bytes)"
    }

    private var layout: (kmsCount: Int, keyIdCount: Int, wrappedCount: Int) {
        let start = bytes.readerIndex
        let kmsCount = Int(bytes.getInteger(at: start, as: UInt8.self)!)
        let keyIdCount = Int(bytes.getInteger(at: start + 1 + kmsCount, as: UInt16.self)!)
        let wrappedCount = Int(bytes.getInteger(at: start + 3 + kmsCount + keyIdCount, as: UInt16.self)!)
        return (kmsCount, keyIdCount, wrappedCount)
    }
}
