import NIOCore

/// Opens envelopes: authenticates header, field path and (if bound) topic,
/// and releases plaintext only if the tag verifies.
public struct EnvelopeDecryptor: Sendable {
    public init() {}

    /// Appends the plaintext of `envelope` (its readable bytes, parsed into
    /// `header`) to `output`.
    ///
    /// - Parameters:
    ///   - key: the unwrapped DEK for `header.keyID`, from an ``UnwrappedKeyCache``.
    ///   - topic: the topic the record was read from; ignored unless the header
    ///     says the topic is bound.
    ///   - fieldPath: the field being decrypted, or ``Envelope/wholeValue``.
    /// - Throws: ``EnvelopeError/authenticationFailed`` if anything does not
    ///   match; `output` then is unchanged.
    public func open(
        _ envelope: ByteBuffer, header: EnvelopeHeader, key: AESGCMKey, topic: String, fieldPath: String,
        into output: inout ByteBuffer
    ) throws(EnvelopeError) {
        let boundTopic: String? = header.isTopicBound ? topic : nil
        try AssociatedData.validate(fieldPath: fieldPath, topic: boundTopic)
        try open(envelope, header: header, key: key, topic: boundTopic, fieldPath: .string(fieldPath), into: &output)
    }

    /// ``open(_:header:key:topic:fieldPath:into:)`` with the field path given as bytes.
    public func open(
        _ envelope: ByteBuffer, header: EnvelopeHeader, key: AESGCMKey, topic: String, fieldPathBytes: UnsafeRawBufferPointer,
        into output: inout ByteBuffer
    ) throws(EnvelopeError) {
        let boundTopic: String? = header.isTopicBound ? topic : nil
        try AssociatedData.validate(fieldPathCount: fieldPathBytes.count, topic: boundTopic)
        try open(envelope, header: header, key: key, topic: boundTopic, fieldPath: .bytes(fieldPathBytes), into: &output)
    }

    @inline(__always)
    private func open(
        _ envelope: ByteBuffer, header: EnvelopeHeader, key: AESGCMKey, topic boundTopic: String?,
        fieldPath: AssociatedData.FieldPath, into output: inout ByteBuffer
    ) throws(EnvelopeError) {
        guard envelope.readableBytes == header.envelopeByteCount else {
            throw .invalidArgument("header does not describe this envelope")
        }
        let headerCount = header.byteCount
        let textCount = header.ciphertextByteCount
        let opened = envelope.withUnsafeReadableBytes { env -> Bool in
            let base = env.baseAddress!
            var ok = false
            output.writeWithUnsafeMutableBytes(minimumWritableBytes: textCount) { out in
                func run(_ target: UnsafeMutableRawPointer) -> Bool {
                    let header = UnsafeRawBufferPointer(start: base, count: headerCount)
                    return AssociatedData.withBytes(header: header, fieldPath: fieldPath, topic: boundTopic) { aad in
                        key.open(
                            nonce: base + (headerCount - Envelope.nonceByteCount), aad: aad,
                            ciphertext: UnsafeRawBufferPointer(start: base + headerCount, count: textCount),
                            tag: base + headerCount + textCount,
                            plaintext: target)
                    }
                }
                if let target = out.baseAddress {
                    ok = run(target)
                } else {
                    // An empty plaintext may come with no storage; OpenSSL writes nothing then.
                    var spare: UInt8 = 0
                    ok = withUnsafeMutableBytes(of: &spare) { run($0.baseAddress!) }
                }
                // On failure the region was wiped and nothing is committed.
                return ok ? textCount : 0
            }
            return ok
        }
        guard opened else { throw .authenticationFailed }
    }
}
