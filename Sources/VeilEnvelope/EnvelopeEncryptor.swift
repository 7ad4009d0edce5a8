import NIOCore

/// Seals record values (or single fields of them) into envelopes.
///
/// Synchronous and allocation-free per record: the caller gets an
/// ``ActiveDataKey`` from a ``DataKeyCache`` (async only when the cache is
/// empty or the key is due for rotation) and then seals any number of records.
public struct EnvelopeEncryptor: Sendable {
    public init() {}

    /// Bytes an envelope of `plaintextCount` bytes takes under `key`.
    public static func sealedByteCount(plaintextCount: Int, key: ActiveDataKey) -> Int {
        headerByteCount(key) + plaintextCount + Envelope.tagByteCount
    }

    /// Appends the envelope of `plaintext` to `buffer`.
    ///
    /// - Parameters:
    ///   - topic: bound into the AAD; nil leaves the topic out (for topics that
    ///     are mirrored under other names). The header records the choice.
    ///   - fieldPath: the field being encrypted, or ``Envelope/wholeValue``.
    public func seal(
        plaintext: UnsafeRawBufferPointer, key: ActiveDataKey, topic: String?, fieldPath: String,
        into buffer: inout ByteBuffer
    ) throws(EnvelopeError) {
        try AssociatedData.validate(fieldPath: fieldPath, topic: topic)
        try seal(plaintext: plaintext, key: key, topic: topic, fieldPath: .string(fieldPath), into: &buffer)
    }

    /// Appends the envelope of `plaintext` with the field path given as bytes: field-level
    /// encryption binds a record id and a concrete location, built per field without a `String`.
    public func seal(
        plaintext: UnsafeRawBufferPointer, key: ActiveDataKey, topic: String?, fieldPathBytes: UnsafeRawBufferPointer,
        into buffer: inout ByteBuffer
    ) throws(EnvelopeError) {
        try AssociatedData.validate(fieldPathCount: fieldPathBytes.count, topic: topic)
        try seal(plaintext: plaintext, key: key, topic: topic, fieldPath: .bytes(fieldPathBytes), into: &buffer)
    }

    @inline(__always)
    private func seal(
        plaintext: UnsafeRawBufferPointer, key: ActiveDataKey, topic: String?, fieldPath: AssociatedData.FieldPath,
        into buffer: inout ByteBuffer
    ) throws(EnvelopeError) {
        let headerCount = Self.headerByteCount(key)
        let total = headerCount + plaintext.count + Envelope.tagByteCount
        var outcome = AESGCMKey.SealOutcome.failed
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: total) { out in
            let base = out.baseAddress!
            Self.writeHeader(key: key, topicBound: topic != nil, to: base)
            let header = UnsafeRawBufferPointer(start: base, count: headerCount)
            outcome = key.cipher.seal(
                limit: ActiveDataKey.hardEncryptionLimit, noncePrefix: key.noncePrefix,
                nonce: base + (headerCount - Envelope.nonceByteCount),
                aad: { use in AssociatedData.withBytes(header: header, fieldPath: fieldPath, topic: topic, use) },
                plaintext: plaintext, ciphertext: base + headerCount, tag: base + headerCount + plaintext.count)
            // Nothing is committed unless the whole envelope was written.
            return outcome == .sealed ? total : 0
        }
        switch outcome {
        case .sealed: return
        case .exhausted: throw .dataKeyExhausted(key.reference)
        case .failed: throw .cryptoFailure("OpenSSL failed to encrypt")
        }
    }

    /// Appends the envelope of `plaintext`'s readable bytes to `buffer`.
    public func seal(
        plaintext: ByteBuffer, key: ActiveDataKey, topic: String?, fieldPath: String, into buffer: inout ByteBuffer
    ) throws(EnvelopeError) {
        let result = plaintext.withUnsafeReadableBytes { bytes in
            Result { () throws(EnvelopeError) in
                try seal(plaintext: bytes, key: key, topic: topic, fieldPath: fieldPath, into: &buffer)
            }
        }
        try result.get()
    }

    @inline(__always)
    static func headerByteCount(_ key: ActiveDataKey) -> Int {
        Envelope.keySectionOffset + key.keySection.count + Envelope.nonceByteCount
    }

    /// Writes everything but the nonce, which the cipher writes once it has
    /// reserved the counter value.
    @inline(__always)
    private static func writeHeader(key: ActiveDataKey, topicBound: Bool, to base: UnsafeMutableRawPointer) {
        base.storeBytes(of: Envelope.magicValue.bigEndian, toByteOffset: 0, as: UInt32.self)
        base.storeBytes(of: Envelope.version, toByteOffset: 4, as: UInt8.self)
        base.storeBytes(of: topicBound ? Envelope.topicBoundFlag : 0, toByteOffset: 5, as: UInt8.self)
        key.keySection.withUnsafeBytes { section in
            (base + Envelope.keySectionOffset).copyMemory(from: section.baseAddress!, byteCount: section.count)
        }
    }
}
