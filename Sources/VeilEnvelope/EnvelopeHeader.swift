import NIOCore

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
            let magic = Envelope.magic
            guard bytes.count >= magic.count,
                  bytes[0] == magic[0], bytes[1] == magic[1], bytes[2] == magic[2], bytes[3] == magic[3]
            else { return nil }
            guard bytes.count > 5 else { throw .malformed("truncated before the flags") }
            guard bytes[4] == Envelope.version else { throw .unsupportedVersion(bytes[4]) }
            let flags = bytes[5]
            guard flags & ~Envelope.knownFlags == 0 else { throw .malformed("unknown flag bits") }

            var offset = Envelope.keySectionOffset
            func u8() throws(EnvelopeError) -> Int {
                guard offset < bytes.count else { throw .malformed("truncated header") }
                defer { offset += 1 }
                return Int(bytes[offset])
            }
            func u16() throws(EnvelopeError) -> Int {
                guard offset + 2 <= bytes.count else { throw .malformed("truncated header") }
                defer { offset += 2 }
                return Int(bytes[offset]) << 8 | Int(bytes[offset + 1])
            }
            func skip(_ count: Int) throws(EnvelopeError) {
                guard count <= bytes.count - offset else { throw .malformed("truncated header") }
                offset += count
            }

            let kmsCount = try u8()
            guard kmsCount >= 1 else { throw .malformed("empty KMS name") }
            try skip(kmsCount)
            let keyIdCount = try u16()
            guard (1...2048).contains(keyIdCount) else { throw .malformed("key id length out of range") }
            try skip(keyIdCount)
            let wrappedCount = try u16()
            guard (1...Envelope.maximumWrappedKeyLength).contains(wrappedCount) else {
                throw .malformed("wrapped data key length out of range")
            }
            try skip(wrappedCount)
            let keySectionCount = offset - Envelope.keySectionOffset
            try skip(Envelope.nonceByteCount)
            let headerCount = offset
            guard bytes.count - headerCount >= Envelope.tagByteCount else {
                throw .malformed("too short for the authentication tag")
            }
            return Layout(
                flags: flags, keySectionCount: keySectionCount, headerCount: headerCount,
                ciphertextCount: bytes.count - headerCount - Envelope.tagByteCount)
        }
    }
}
