import NIOCore
import VeilKMS

/// The parsed header of an envelope: enough to find its data key and to open it.
///
/// Parsing checks structure only and never allocates for a well-formed
/// envelope; it is safe on any input (every length is bounds-checked).
public struct EnvelopeHeader: Sendable {
    /// Format version (1).
    public let version: UInt8
    /// Whether the topic name is part of the AAD.
    public let isTopicBound: Bool
    /// Which data key sealed the envelope.
    public let keyID: EnvelopeKeyID
    /// Bytes from the magic through the nonce.
    public let byteCount: Int
    /// Length of the ciphertext, equal to the plaintext's.
    public let ciphertextByteCount: Int

    /// Total envelope length this header describes.
    public var envelopeByteCount: Int { byteCount + ciphertextByteCount + Envelope.tagByteCount }

    /// Parses the readable bytes of `bytes`.
    ///
    /// - Returns: nil if the bytes do not start with the envelope magic (a
    ///   plaintext value).
    /// - Throws: ``EnvelopeError/malformed(_:)`` or
    ///   ``EnvelopeError/unsupportedVersion(_:)`` for bytes that start with the
    ///   magic but are not a valid envelope.
    public static func parse(_ bytes: ByteBuffer) throws(EnvelopeError) -> EnvelopeHeader? {
        let result = bytes.withUnsafeReadableBytes { raw in
            Result { () throws(EnvelopeError) in try Layout.parse(raw) }
        }
        guard let layout = try result.get() else { return nil }
        let keySection = bytes.getSlice(
            at: bytes.readerIndex + Envelope.keySectionOffset, length: layout.keySectionCount)!
        return EnvelopeHeader(layout: layout, keyID: EnvelopeKeyID(bytes: keySection))
    }

    /// Parses raw bytes (for fuzzing and callers without a `ByteBuffer`).
    /// The key ID is copied out of `bytes`.
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(EnvelopeError) -> EnvelopeHeader? {
        guard let layout = try Layout.parse(bytes) else { return nil }
        let section = UnsafeRawBufferPointer(
            rebasing: bytes[Envelope.keySectionOffset..<(Envelope.keySectionOffset + layout.keySectionCount)])
        var buffer = ByteBufferAllocator().buffer(capacity: section.count)
        buffer.writeBytes(section)
        return EnvelopeHeader(layout: layout, keyID: EnvelopeKeyID(bytes: buffer))
    }

    private init(layout: Layout, keyID: EnvelopeKeyID) {
        version = Envelope.version
        isTopicBound = layout.flags & Envelope.topicBoundFlag != 0
        self.keyID = keyID
        byteCount = layout.headerCount
        ciphertextByteCount = layout.ciphertextCount
    }

    /// Offsets and lengths found by walking the header.
    struct Layout {
        var flags: UInt8
        var keySectionCount: Int
        var headerCount: Int
        var ciphertextCount: Int

        static func parse(_ bytes: UnsafeRawBufferPointer) throws(EnvelopeError) -> Layout? {
            guard bytes.count >= 4,
                  UInt32(bigEndian: bytes.loadUnaligned(as: UInt32.self)) == Envelope.magicValue
            else { return nil }
            guard bytes.count > 5 else { throw .malformed("truncated before the flags") }
            guard bytes[4] == Envelope.version else { throw .unsupportedVersion(bytes[4]) }
            let flags = bytes[5]
            guard flags & ~Envelope.knownFlags == 0 else { throw .malformed("unknown flag bits") }

            // Each step checks the bytes remain before reading them; arithmetic
            // stays far from overflow since every length is at most 16 bits.
            let count = bytes.count
            var offset = Envelope.keySectionOffset
            guard offset < count else { throw .malformed("truncated header") }
            let kmsCount = Int(bytes[offset])
            guard kmsCount >= 1 else { throw .malformed("empty KMS name") }
            offset += 1 + kmsCount
            guard offset + 2 <= count else { throw .malformed("truncated header") }
            let keyIdCount = Int(bytes[offset]) << 8 | Int(bytes[offset + 1])
            guard (1...KeyReference.maximumKeyIdLength).contains(keyIdCount) else {
                throw .malformed("key id length out of range")
            }
            offset += 2 + keyIdCount
            guard offset + 2 <= count else { throw .malformed("truncated header") }
            let wrappedCount = Int(bytes[offset]) << 8 | Int(bytes[offset + 1])
            guard (1...Envelope.maximumWrappedKeyLength).contains(wrappedCount) else {
                throw .malformed("wrapped data key length out of range")
            }
            offset += 2 + wrappedCount
            guard offset <= count else { throw .malformed("truncated header") }
            let keySectionCount = offset - Envelope.keySectionOffset
            let headerCount = offset + Envelope.nonceByteCount
            guard headerCount <= count else { throw .malformed("truncated header") }
            guard count - headerCount >= Envelope.tagByteCount else {
                throw .malformed("too short for the authentication tag")
            }
            return Layout(
                flags: flags, keySectionCount: keySectionCount, headerCount: headerCount,
                ciphertextCount: count - headerCount - Envelope.tagByteCount)
        }
    }
}
